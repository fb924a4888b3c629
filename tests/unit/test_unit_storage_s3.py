"""Storing into S3 over real HTTP (moto's server on loopback): a store is all or nothing.

S3 has no rename, so a temporary sibling would be listed whole while it is copied into place;
and closing a writer completes its multipart upload. The object is written in place and its
upload aborted on failure: at no time does the bucket list a partial or temporary object.
The bucket is versioned, so an object that was listed even for a moment leaves a version behind.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from comet_provider.hooks.storage import AtomicFile, read_bytes, stat_size

BUCKET = "renders"
CONN = "comet_test_store"
MIB = 1 << 20


@pytest.fixture(scope="module")
def s3() -> Iterator[Any]:
    pytest.importorskip("s3fs")
    boto3 = pytest.importorskip("boto3")
    moto_server = pytest.importorskip("moto.server")
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        client = boto3.client(
            "s3", endpoint_url=endpoint, aws_access_key_id="k", aws_secret_access_key="s", region_name="us-east-1"
        )
        client.create_bucket(Bucket=BUCKET)
        client.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
        conn = {"conn_type": "aws", "login": "k", "password": "s", "extra": {"endpoint_url": endpoint}}
        with pytest.MonkeyPatch.context() as env:
            env.setenv(f"AIRFLOW_CONN_{CONN.upper()}", json.dumps(conn))
            yield client
    finally:
        server.stop()


def listed(client: Any) -> dict[str, int]:
    return {o["Key"]: o["Size"] for o in client.list_objects_v2(Bucket=BUCKET).get("Contents", [])}


def ever_stored(client: Any, prefix: str) -> list[tuple[str, int]]:
    """Every version of every object under ``prefix`` ever completed (deleted ones too), oldest first."""
    versions = client.list_object_versions(Bucket=BUCKET, Prefix=prefix).get("Versions", [])
    return [(v["Key"], v["Size"]) for v in sorted(versions, key=lambda v: v["LastModified"])]


def open_uploads(client: Any) -> list[str]:
    return [u["Key"] for u in client.list_multipart_uploads(Bucket=BUCKET).get("Uploads", [])]


def test_a_multipart_store_is_listed_only_when_complete(s3: Any) -> None:
    where = f"s3://{CONN}@{BUCKET}/day/whole.mp4"
    with AtomicFile(where) as sink:
        for _ in range(12):  # several parts (s3fs uploads in 5 MiB+ blocks)
            sink.write(b"r" * MIB)
            assert listed(s3) == {}, "something was listed before the store completed"
        sink.commit()
    assert listed(s3) == {"day/whole.mp4": 12 * MIB}
    assert ever_stored(s3, "day/") == [("day/whole.mp4", 12 * MIB)], "a temporary object was stored"
    assert open_uploads(s3) == []
    assert stat_size(where) == 12 * MIB


def test_a_failed_store_keeps_the_old_object_and_lists_nothing_new(s3: Any) -> None:
    where = f"s3://{CONN}@{BUCKET}/day/kept.mp4"
    with AtomicFile(where) as sink:
        sink.write(b"previous render")
        sink.commit()
    with pytest.raises(RuntimeError), AtomicFile(where) as sink:
        for _ in range(12):
            sink.write(b"n" * MIB)
        raise RuntimeError("the render download was cut short")
    assert read_bytes(where) == b"previous render"
    assert {k: v for k, v in listed(s3).items() if k.startswith("day/")} == {
        "day/whole.mp4": 12 * MIB,
        "day/kept.mp4": len(b"previous render"),
    }
    assert open_uploads(s3) == [], "the aborted store left a multipart upload open (billed on S3)"
    # Nothing of the failed store was ever completed, not even for a moment.
    assert [k for k, size in ever_stored(s3, "day/") if size == 12 * MIB] == ["day/whole.mp4"]


def test_a_store_aborts_the_upload_a_killed_try_left_open_on_its_key_only(s3: Any) -> None:
    # What a worker killed mid-store leaves: an open multipart upload with a part in it.
    key, neighbour = "day/killed.mp4", "day/killed.mp4.comet.json"
    left = [s3.create_multipart_upload(Bucket=BUCKET, Key=k)["UploadId"] for k in (key, neighbour)]
    s3.upload_part(Bucket=BUCKET, Key=key, UploadId=left[0], PartNumber=1, Body=b"k" * (5 * MIB))
    with AtomicFile(f"s3://{CONN}@{BUCKET}/{key}") as sink:
        sink.write(b"the retry's render")
        sink.commit()
    assert read_bytes(f"s3://{CONN}@{BUCKET}/{key}") == b"the retry's render"
    # The dead try's upload of that key is gone; another key's (same prefix) is not touched.
    assert open_uploads(s3) == [neighbour]
    s3.abort_multipart_upload(Bucket=BUCKET, Key=neighbour, UploadId=left[1])
