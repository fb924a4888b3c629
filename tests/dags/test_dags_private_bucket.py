"""The example pipeline on a private bucket, without a CDN: ``airflow dags test`` against the emulator.

``storage_root`` is on moto's standalone S3 server (its own process, real HTTP on loopback)
and ``public_url_template`` is not set: each staged clip is handed to the operator as its
``s3://`` location, and Runway (the emulator) fetches it through the signed GET URL the
provider makes with the bucket's own connection; the reference style's image, in the same
bucket, is signed too. The signatures reach the emulator and nothing else: not the XCom,
the rendered fields, the manifest or the run's log.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any
from urllib.parse import parse_qs, urlsplit

import media_utils as mu
import pytest

pytestmark = [pytest.mark.dags_test, pytest.mark.timeout(1800)]

BUCKET, CONN_ID = "studio", "studio_s3"
KEYS = {"aws_access_key_id": "dags-test-key", "aws_secret_access_key": "dags-test-secret"}
STYLES = ("neon", "house-look")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """moto's S3 server on a loopback port; its URL."""
    port = _free_port()
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    try:
        give_up = time.monotonic() + 60  # a bound on a hang, not a measurement
        while True:
            assert proc.poll() is None, log.read_text()[-2000:]
            assert time.monotonic() < give_up, "moto did not start listening"
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.2)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="module")
def bucket_run(demo: ModuleType, s3_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    import boto3

    s3 = boto3.client("s3", endpoint_url=s3_server, region_name="us-east-1", **KEYS)
    s3.create_bucket(Bucket=BUCKET)
    root = tmp_path_factory.mktemp("runway-s3") / "sandbox"
    settings = {
        "storage_root": f"s3://{CONN_ID}@{BUCKET}/runway",
        "staging_root": None,  # <storage_root>/staging, private like the rest
        "public_url_template": None,
        "clip_seconds": 5,
    }
    with demo.demo_sandbox(root, settings=settings) as sandbox:
        conn = {
            "conn_type": "aws",
            "login": KEYS["aws_access_key_id"],
            "password": KEYS["aws_secret_access_key"],
            # SigV4 presigned URLs (botocore presigns SigV2 unless told; newer buckets refuse SigV2)
            "extra": {
                "endpoint_url": s3_server,
                "region_name": "us-east-1",
                "config_kwargs": {"signature_version": "s3v4"},
            },
        }
        sandbox.env[f"AIRFLOW_CONN_{CONN_ID.upper()}"] = json.dumps(conn)
        local = demo.sample_video(root / "city-walk.mp4", seconds=10.0)
        s3.upload_file(str(local), BUCKET, "runway/incoming/2025-06-01/city-walk.mp4")
        # the demo's reference style, with its image moved into the bucket
        entry = demo.reference_style(sandbox)[demo.REFERENCE_STYLE]
        s3.upload_file(entry["references"][0].removeprefix("file://"), BUCKET, "looks/sunset.png")
        styles = {
            "neon": demo.DEMO_STYLES["neon"],
            "house-look": {**entry, "references": [f"s3://{CONN_ID}@{BUCKET}/looks/sunset.png"]},
        }
        run = sandbox.dags_test(demo.PIPELINE_DAG, demo.DEMO_LOGICAL_DATE, conf={"styles": styles})
        assert run.ok, f"{demo.PIPELINE_DAG} failed:\n{run.tail()}"
        yield SimpleNamespace(demo=demo, sandbox=sandbox, s3=s3, url=s3_server, run=run, source=local)


def _object(run: Any, key: str) -> bytes:
    return bytes(run.s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())


def test_clips_and_the_reference_reach_runway_as_signed_urls_of_the_private_bucket(bucket_run: Any) -> None:
    tasks = list(bucket_run.sandbox.emulator.stats()["tasks"].values())
    assert len(tasks) == 4  # 2 clips x 2 styles, each paid once
    staging = f"{bucket_run.url}/{BUCKET}/runway/staging/2025-06-01/city-walk/"
    gen4 = sorted((t for t in tasks if t["route"] == "pro"), key=lambda t: t["video"])
    assert [t["video"].split("?")[0] for t in gen4] == [f"{staging}clip_00{i}.mp4" for i in range(2)]
    for task in gen4:  # a presigned GET, valid for the render's timeout and Runway's fetch
        query = parse_qs(urlsplit(task["video"]).query)
        assert query["X-Amz-Signature"] and int(query["X-Amz-Expires"][0]) == 300 + 3600
    official = sorted((t for t in tasks if t["route"] == "official"), key=lambda t: t["source"])
    assert [t["source"] for t in official] == [f"{staging}clip_00{i}.mp4" for i in range(2)]
    assert all(t["references"] == [f"{bucket_run.url}/{BUCKET}/looks/sunset.png"] for t in official)
    assert all(t["render"] == "done" for t in tasks)


def test_the_day_is_published_in_the_bucket(bucket_run: Any) -> None:
    manifest = json.loads(_object(bucket_run, "runway/published/2025-06-01/manifest.json"))
    (video,) = manifest["videos"]
    assert list(video["styles"]) == list(STYLES)
    assert video["styles"]["house-look"]["references"] == [f"s3://{CONN_ID}@{BUCKET}/looks/sunset.png"]
    assert manifest["renders"]["renders"] == 4 and manifest["renders"]["reuse_stored"] == 0
    local = bucket_run.sandbox.root / "published"
    local.mkdir()
    for style in STYLES:
        path = local / f"{style}.mp4"
        path.write_bytes(_object(bucket_run, f"runway/published/2025-06-01/city-walk/{style}.mp4"))
        assert mu.probe_video(path).duration == pytest.approx(10.0, abs=0.3)
        assert mu.frame_difference(bucket_run.source, path, 5.0) > 8.0, style
    sheet = local / "contact-sheet.png"
    sheet.write_bytes(_object(bucket_run, "runway/published/2025-06-01/city-walk/contact-sheet.png"))
    from PIL import Image

    with Image.open(sheet) as img:  # original + 2 styles, the reference style with its image
        assert img.size == (150 + 4 * 248 + 8, 36 + 28 + 3 * 188 + 8)


def _column(airflow: Any, column: str, table: str) -> list[str]:
    return [str(value) for (value,) in airflow.query(f"SELECT {column} FROM {table}")]


def test_no_signature_is_kept_anywhere_but_at_runway(bucket_run: Any) -> None:
    tasks = bucket_run.sandbox.emulator.stats()["tasks"].values()
    signatures = {parse_qs(urlsplit(t["video"]).query)["X-Amz-Signature"][0] for t in tasks if t["route"] == "pro"}
    assert len(signatures) == 2
    airflow = bucket_run.sandbox.airflow
    kept = {
        "xcom": _column(airflow, "value", "xcom"),
        "rendered fields": _column(airflow, "rendered_fields", "rendered_task_instance_fields"),
        "manifest": [_object(bucket_run, "runway/published/2025-06-01/manifest.json").decode()],
        "run log": [Path(bucket_run.run.log_path).read_text(errors="replace")],
    }
    for where, texts in kept.items():
        assert not [s for s in signatures for text in texts if s in text], f"a signature is in the {where}"
    # what is kept is the location
    assert any(f"s3://{CONN_ID}@{BUCKET}/runway/staging/" in text for text in kept["rendered fields"])
