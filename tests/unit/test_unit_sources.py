"""Sources: classified and checked before any request, resolved to what Runway fetches, signatures masked.

The signing tests run against moto's standalone S3 server over real HTTP, behind a gate that
checks presigned URLs as S3 does (tests/unit/_signed_gate.py); they are skipped where s3fs
and moto are not installed (the lowest-Airflow venv).
"""

from __future__ import annotations

import base64
import json
import logging
import pathlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest

from comet_provider.exceptions import CometValidationError
from comet_provider.utils.sources import (
    IMAGE_DATA_URI_LIMIT,
    MAX_SIGNED_URL_SECONDS,
    VIDEO_DATA_URI_LIMIT,
    ResolvedSource,
    Source,
    check_source,
    data_uri_length,
    resolve_source,
    shown_uri,
    signed_url_lifetime,
)

OFFICIAL = "official"
PRO = "pro"


@pytest.fixture(autouse=True)
def cloud_filesystems(monkeypatch: pytest.MonkeyPatch) -> None:
    """s3, gs and abfs count as having an Airflow filesystem (their providers need not be installed)."""
    import airflow.sdk.io

    real = airflow.sdk.io.has_fs
    monkeypatch.setattr(airflow.sdk.io, "has_fs", lambda scheme: scheme in ("s3", "gs", "abfs") or real(scheme))


def sparse(path: Path, size: int) -> Path:
    with path.open("wb") as handle:
        handle.truncate(size)  # no data written: only the size is set
    return path


# -- classification --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "kind", "location"),
    [
        ("https://cdn.test/a.mp4?sig=abc", "url", "https://cdn.test/a.mp4?sig=abc"),
        (" http://127.0.0.1:8765/a.mp4 ", "url", "http://127.0.0.1:8765/a.mp4"),
        ("s3://bucket/clips/a.mp4", "storage", "s3://bucket/clips/a.mp4"),
        ("s3://my_conn@bucket/clips/a.mp4", "storage", "s3://my_conn@bucket/clips/a.mp4"),
        ("gs://bucket/a b.mp4", "storage", "gs://bucket/a b.mp4"),
        ("abfs://container/dir/a.mp4", "storage", "abfs://container/dir/a.mp4"),
        ("s3://bucket/odd@key.mp4", "storage", "s3://bucket/odd@key.mp4"),
    ],
)
@pytest.mark.parametrize("route", [PRO, OFFICIAL])
def test_urls_and_storage_locations(value: str, kind: str, location: str, route: str) -> None:
    assert check_source("video", value, media="video", route=route) == Source("video", location, kind, "video")


def test_object_storage_path_keeps_its_connection() -> None:
    from airflow.sdk import ObjectStoragePath

    path = ObjectStoragePath("s3://osp_check_only@bucket/clips/a.mp4")
    source = check_source("video", path, media="video", route=PRO)
    assert (source.kind, source.location) == ("storage", "s3://osp_check_only@bucket/clips/a.mp4")
    path = ObjectStoragePath("s3://bucket/clips/b.mp4", conn_id="osp_check_other")
    assert check_source("video", path, media="video", route=PRO).location == "s3://osp_check_other@bucket/clips/b.mp4"


@pytest.mark.parametrize(
    ("value", "says"),
    [
        (None, "NoneType"),
        (42, "int"),
        (b"s3://bucket/a.mp4", "bytes"),
        (["https://cdn.test/a.mp4"], "list"),
        ("", "empty"),
        ("   ", "empty"),
        ("data:video/mp4;base64,AAAA", "path"),
        ("s3://", "no bucket"),
        ("s3://conn@/a.mp4", "no bucket"),
        ("s3://bucket", "no object"),
        ("gs://bucket/", "no object"),
        ("file://otherhost/tmp/a.mp4", "another host"),
        ("https://", "no host"),
        ("https://cdn.test/my clip.mp4", "whitespace"),
    ],
)
def test_unusable_values_name_the_field(value: Any, says: str) -> None:
    with pytest.raises(CometValidationError) as info:
        check_source("references[2]", value, media="image", route=OFFICIAL)
    assert info.value.field == "references[2]"
    assert says in str(info.value)


@pytest.mark.parametrize("route", [PRO, OFFICIAL])
def test_a_scheme_without_an_airflow_filesystem_is_refused(route: str) -> None:
    with pytest.raises(CometValidationError) as info:
        check_source("video", "ftp://files.test/clip.mp4?token=abcdef99", media="video", route=route)
    assert info.value.field == "video"
    assert "ftp://" in str(info.value) and "install the provider" in str(info.value)
    assert "abcdef99" not in str(info.value)


def test_s3_with_the_amazon_provider_installed() -> None:
    pytest.importorskip("airflow.providers.amazon.aws.fs.s3")
    from airflow.sdk.io.fs import has_fs

    assert has_fs("s3")  # the real registry, not this module's stand-in
    assert check_source("video", "s3://b/k.mp4", media="video", route=PRO).kind == "storage"


def test_errors_never_show_a_query() -> None:
    with pytest.raises(CometValidationError) as info:
        check_source("video", "s3://bucket?X-Amz-Signature=deadbeefcafe", media="video", route=PRO)
    assert "deadbeefcafe" not in str(info.value)


# -- local files -----------------------------------------------------------------------------------


def test_local_file_on_the_official_route(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    clip = sparse(tmp_path / "clip.MP4", 10)
    expected = Source("video", str(clip), "local", "video")
    assert check_source("video", str(clip), media="video", route=OFFICIAL) == expected
    assert check_source("video", clip, media="video", route=OFFICIAL) == expected
    assert check_source("video", clip.as_uri(), media="video", route=OFFICIAL) == expected
    assert check_source("video", f"file://localhost{clip}", media="video", route=OFFICIAL) == expected
    monkeypatch.chdir(tmp_path)
    assert check_source("video", "clip.MP4", media="video", route=OFFICIAL) == expected  # made absolute
    monkeypatch.setenv("HOME", str(tmp_path))
    assert check_source("video", "~/clip.MP4", media="video", route=OFFICIAL) == expected


def test_local_object_storage_path_is_a_local_file(tmp_path: Path) -> None:
    from airflow.sdk import ObjectStoragePath

    still = sparse(tmp_path / "still.webp", 10)
    source = check_source("references[0]", ObjectStoragePath(still.as_uri()), media="image", route=OFFICIAL)
    assert source == Source("references[0]", str(still), "local", "image")


@pytest.mark.parametrize("as_value", [str, Path, Path.as_uri])
def test_local_file_on_the_gen4_route_says_how_to_stage_it(tmp_path: Path, as_value: Any) -> None:
    clip = sparse(tmp_path / "clip.mp4", 10)
    with pytest.raises(CometValidationError) as info:
        check_source("video", as_value(clip), media="video", route=PRO)
    text = str(info.value)
    assert info.value.field == "video"
    assert "signs URLs" in text and "public_url_template" in text and "gen4_aleph" in text


@pytest.mark.parametrize(
    ("name", "media", "says"),
    [
        ("missing.mp4", "video", "No such file"),
        ("clip.avi", "video", ".mov, .mp4, .webm"),
        ("still.gif", "image", ".jpeg, .jpg, .png, .webp"),
        ("clip.mp4", "image", ".png"),  # a video given as a reference image
        ("no_extension", "video", ".mp4"),
    ],
)
def test_unusable_local_files(tmp_path: Path, name: str, media: Any, says: str) -> None:
    for existing in ("clip.avi", "still.gif", "clip.mp4", "no_extension"):
        sparse(tmp_path / existing, 10)
    with pytest.raises(CometValidationError) as info:
        check_source("video", str(tmp_path / name), media=media, route=OFFICIAL)
    assert says in str(info.value)


def test_a_directory_is_not_a_file(tmp_path: Path) -> None:
    (tmp_path / "dir.mp4").mkdir()
    with pytest.raises(CometValidationError, match="not a file"):
        check_source("video", str(tmp_path / "dir.mp4"), media="video", route=OFFICIAL)


# The whole data: URI counts: "data:video/mp4;base64," is 22 characters, "data:video/quicktime;base64," 28.
# 11_999_982 bytes -> 15_999_976 base64 characters; one byte more -> 15_999_980.
@pytest.mark.parametrize(
    ("name", "media", "size", "accepted"),
    [
        ("clip.mp4", "video", 11_999_982, True),
        ("clip.mp4", "video", 11_999_983, False),
        ("clip.mov", "video", 11_999_982, False),  # the longer media type tips it over
        ("clip.mov", "video", 11_999_979, True),
        ("still.png", "image", 3_749_982, True),
        ("still.png", "image", 3_749_983, False),
        ("clip.webm", "video", 40_000_000_000, False),  # never read: only its size is looked at
    ],
)
def test_data_uri_limit_from_the_file_size(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, media: Any, size: int, accepted: bool
) -> None:
    path = sparse(tmp_path / name, size)

    def no_reading(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("check_source read the file")

    monkeypatch.setattr(pathlib.Path, "open", no_reading)
    monkeypatch.setattr(pathlib.Path, "read_bytes", no_reading)
    if accepted:
        assert check_source("video", str(path), media=media, route=OFFICIAL).kind == "local"
        return
    with pytest.raises(CometValidationError) as info:
        check_source("video", str(path), media=media, route=OFFICIAL)
    limit = VIDEO_DATA_URI_LIMIT if media == "video" else IMAGE_DATA_URI_LIMIT
    text = str(info.value)
    assert f"{limit / 1e6:.1f} MB" in text and "signs URLs" in text and "public_url_template" in text


def test_local_file_resolves_to_a_data_uri(tmp_path: Path) -> None:
    data = bytes(range(256)) * 41 + b"end"
    still = tmp_path / "still.jpeg"
    still.write_bytes(data)
    resolved = resolve_source(check_source("references[0]", still, media="image", route=OFFICIAL), expires_in=60)
    header, _, payload = resolved.uri.partition(",")
    assert header == "data:image/jpeg;base64"
    assert base64.b64decode(payload, validate=True) == data
    assert len(resolved.uri) == data_uri_length(len(data), "image/jpeg")
    assert resolved.shown == f"data:image/jpeg;base64,… ({len(data)} bytes)"
    assert payload[:40] not in repr(resolved) and payload[:40] not in str(resolved)


def test_a_file_that_grew_past_the_limit_is_refused_at_resolve(tmp_path: Path) -> None:
    still = sparse(tmp_path / "still.png", 10)
    source = check_source("references[0]", still, media="image", route=OFFICIAL)
    sparse(still, 4_000_000)
    with pytest.raises(CometValidationError) as info:
        resolve_source(source, expires_in=60)
    assert info.value.field == "references[0]" and "5.0 MB" in str(info.value)


# -- shown, lifetime -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("uri", "shown"),
    [
        ("https://b.s3.test/k.mp4?X-Amz-Signature=abc#frag", "https://b.s3.test/k.mp4"),
        ("https://cdn.test/a.mp4", "https://cdn.test/a.mp4"),
        ("data:video/mp4;base64,AAAA", "data:video/mp4;base64,… (3 bytes)"),
        ("data:image/png;base64,AAA=", "data:image/png;base64,… (2 bytes)"),
        ("data:image/png;base64,AA==", "data:image/png;base64,… (1 bytes)"),
    ],
)
def test_shown_uri(uri: str, shown: str) -> None:
    assert shown_uri(uri) == shown


@pytest.mark.parametrize(
    ("timeout", "seconds"), [(None, 3600), (0, 3600), (600, 4200), (600.2, 4201), (10**9, MAX_SIGNED_URL_SECONDS)]
)
def test_signed_url_lifetime(timeout: float | None, seconds: int) -> None:
    assert signed_url_lifetime(timeout) == seconds


def test_a_url_is_sent_as_given() -> None:
    url = "https://cdn.test/a.mp4?token=abcdef123456"
    resolved = resolve_source(check_source("video", url, media="video", route=PRO), expires_in=60)
    assert resolved == ResolvedSource(uri=url, shown="https://cdn.test/a.mp4")
    assert "abcdef123456" not in repr(resolved)


# -- signing through filesystems that can or cannot sign (no S3 needed) ----------------------------


@pytest.fixture(scope="module")
def fake_stores() -> None:
    """``fakesign://`` signs like a cloud store; ``nosign://`` is a filesystem without ``sign``."""
    import fsspec
    from airflow.sdk.io import attach
    from fsspec.implementations.memory import MemoryFileSystem

    class SigningFS(MemoryFileSystem):
        protocol = ("fakesign",)

        def sign(self, path: str, expiration: int = 100, **kwargs: Any) -> str:
            if "explode" in path:
                raise RuntimeError("upstream said no for https://fake.test/x?Signature=LEAKEDSIG999")
            if "ftp" in path:
                return "ftp://fake.test/x?Signature=FTPSIG12345"
            return f"https://fake.test/k.mp4?Expires={expiration}&Signature=FAKESIGNATURE{expiration}XYZ"

    class NoSignFS(MemoryFileSystem):
        protocol = ("nosign",)

    for fs in (SigningFS, NoSignFS):
        fsspec.register_implementation(fs.protocol[0], fs, clobber=True)
        attach(protocol=fs.protocol[0], fs=fs())


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_a_filesystem_that_cannot_sign_names_the_field(fake_stores: None) -> None:
    source = Source("references[1]", "nosign://bucket/still.png", "storage", "image")
    with pytest.raises(CometValidationError) as info:
        resolve_source(source, expires_in=60)
    assert info.value.field == "references[1]"
    assert "cannot sign" in str(info.value) and "public_url_template" in str(info.value)


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize(("key", "says"), [("explode.mp4", "RuntimeError"), ("ftp.mp4", "no http(s) URL")])
def test_signing_failures_show_no_signature(fake_stores: None, key: str, says: str) -> None:
    with pytest.raises(CometValidationError) as info:
        resolve_source(Source("video", f"fakesign://bucket/{key}", "storage", "video"), expires_in=60)
    assert says in str(info.value)
    assert "LEAKEDSIG999" not in str(info.value) and "FTPSIG" not in str(info.value)


def test_no_registered_filesystem_names_the_field() -> None:
    with pytest.raises(CometValidationError) as info:
        resolve_source(Source("video", "nowhere://bucket/a.mp4", "storage", "video"), expires_in=60)
    assert info.value.field == "video" and "nowhere" in str(info.value)


def assert_masked(url: str, *secrets: str, visible: str | None = None) -> None:
    """``url`` logged through Airflow's masker (as text, a structlog event and a logging record)."""
    from airflow.providers.common.compat.sdk import redact
    from airflow.sdk._shared.secrets_masker import SecretsMasker, _secrets_masker
    from airflow.sdk.log import mask_logs

    record = logging.LogRecord("airflow.task", logging.INFO, __file__, 1, "fetching %s", (url,), None)
    enabled = SecretsMasker.mask_secrets_in_logs
    SecretsMasker.enable_log_masking()
    try:
        _secrets_masker().filter(record)
    finally:
        SecretsMasker.mask_secrets_in_logs = enabled
    outputs = {
        "redact": str(redact(f"fetching {url}")),
        "structlog": str(mask_logs(None, "info", {"event": "fetching", "url": url})),
        "logging": record.getMessage(),
    }
    for how, text in outputs.items():
        assert (visible or urlsplit(url).path) in text, how  # the location stays readable
        for secret in secrets:
            assert secret not in text, f"{how}: {text}"


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_signed_urls_are_masked(fake_stores: None) -> None:
    resolved = resolve_source(Source("video", "fakesign://bucket/k.mp4", "storage", "video"), expires_in=77)
    assert resolved.uri == "https://fake.test/k.mp4?Expires=77&Signature=FAKESIGNATURE77XYZ"
    assert resolved.shown == "https://fake.test/k.mp4"
    assert "FAKESIGNATURE" not in repr(resolved) + str(resolved)
    assert_masked(resolved.uri, "FAKESIGNATURE77XYZ")
    # The signature alone (say, in a parsed error body) is masked too, not only the whole query.
    assert_masked(
        "https://fake.test/k.mp4 answered: Signature FAKESIGNATURE77XYZ expired",
        "FAKESIGNATURE77XYZ",
        visible="https://fake.test/k.mp4 answered",
    )


# -- real signing: moto's S3 server over HTTP, a connection's own credentials ----------------------

ACCESS_KEY = "AKIDCOMETTEST000001"
SECRET_KEY = "comet-test-secret-key-0123456789"
BUCKET = "studio-private"


@dataclass
class S3:
    gate: Any
    client: Any

    def put(self, key: str, body: bytes, content_type: str = "video/mp4") -> None:
        self.client.put_object(Bucket=BUCKET, Key=key, Body=body, ContentType=content_type)


@pytest.fixture(scope="module")
def s3() -> Iterator[S3]:
    pytest.importorskip("s3fs")
    boto3 = pytest.importorskip("boto3")
    moto_server = pytest.importorskip("moto.server")
    from ._signed_gate import SignedGate

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # it logs every URL, signature included
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        upstream = f"http://{host}:{port}"
        client = boto3.client(
            "s3",
            endpoint_url=upstream,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            region_name="us-east-1",
        )
        client.create_bucket(Bucket=BUCKET)
        with SignedGate(upstream, SECRET_KEY) as gate, pytest.MonkeyPatch.context() as env:
            extra = {"endpoint_url": gate.endpoint, "region_name": "us-east-1"}
            for conn_id, more in (
                ("COMET_TEST_S3V4", {"config_kwargs": {"signature_version": "s3v4"}}),
                ("COMET_TEST_S3", {}),  # botocore's default presigning (SigV2 for S3)
            ):
                conn = {"conn_type": "aws", "login": ACCESS_KEY, "password": SECRET_KEY, "extra": {**extra, **more}}
                env.setenv(f"AIRFLOW_CONN_{conn_id}", json.dumps(conn))
            yield S3(gate, client)
    finally:
        server.stop()


def get(url: str) -> Any:
    import httpx

    return httpx.get(url, timeout=10)


def test_a_private_object_is_served_only_signed(s3: S3) -> None:
    s3.put("clips/shot 1.mp4", b"private footage")
    source = check_source("video", "s3://comet_test_s3v4@studio-private/clips/shot 1.mp4", media="video", route=PRO)
    resolved = resolve_source(source, expires_in=900)
    params = dict(parse_qsl(urlsplit(resolved.uri).query))
    assert params["X-Amz-Expires"] == "900"
    assert params["X-Amz-Credential"].startswith(ACCESS_KEY + "/")  # the connection's own credentials
    answer = get(resolved.uri)
    assert (answer.status_code, answer.content) == (200, b"private footage")
    assert answer.headers["content-type"] == "video/mp4"
    assert resolved.shown == f"{s3.gate.endpoint}/{BUCKET}/clips/shot%201.mp4"
    assert get(resolved.shown).status_code == 403  # the bucket is private: no signature, no bytes
    assert_masked(resolved.uri, params["X-Amz-Signature"], urlsplit(resolved.uri).query)


def test_tampered_and_expired_signatures_are_refused(s3: S3) -> None:
    s3.put("clips/a.mp4", b"a")
    s3.put("clips/b.mp4", b"b")
    uri = resolve_source(
        Source("video", "s3://comet_test_s3v4@studio-private/clips/a.mp4", "storage", "video"), expires_in=3600
    ).uri
    signature = dict(parse_qsl(urlsplit(uri).query))["X-Amz-Signature"]
    flipped = signature[:-1] + ("0" if signature[-1] != "0" else "1")
    assert get(uri).status_code == 200
    assert get(uri.replace(signature, flipped)).status_code == 403
    assert get(uri.replace("/clips/a.mp4", "/clips/b.mp4")).status_code == 403  # another object
    assert get(uri.replace("X-Amz-Expires=3600", "X-Amz-Expires=7200")).status_code == 403
    now = s3.gate.clock()
    s3.gate.clock = lambda: now + 3601  # an hour and a second later
    try:
        assert get(uri).status_code == 403
    finally:
        s3.gate.clock = time.time
    assert s3.gate.refusals[-1] == "Request has expired"
    assert get(uri).status_code == 200


def test_lifetime_is_capped_at_seven_days(s3: S3) -> None:
    s3.put("clips/long.mp4", b"long")
    uri = resolve_source(
        Source("video", "s3://comet_test_s3v4@studio-private/clips/long.mp4", "storage", "video"),
        expires_in=30 * 24 * 3600,
    ).uri
    assert dict(parse_qsl(urlsplit(uri).query))["X-Amz-Expires"] == str(MAX_SIGNED_URL_SECONDS)
    assert get(uri).status_code == 200


def test_default_presigning_is_checked_and_masked_too(s3: S3) -> None:
    s3.put("refs/palette.png", b"\x89PNG palette", content_type="image/png")
    source = check_source(
        "references[0]", "s3://comet_test_s3@studio-private/refs/palette.png", media="image", route=OFFICIAL
    )
    uri = resolve_source(source, expires_in=600).uri
    params = dict(parse_qsl(urlsplit(uri).query))
    assert get(uri).content == b"\x89PNG palette"
    assert get(uri.replace(params["Expires"], str(int(params["Expires"]) + 1))).status_code == 403
    assert_masked(uri, params["Signature"])


def test_sigv2_signing_warns_how_to_get_sigv4(s3: S3, caplog: pytest.LogCaptureFixture) -> None:
    s3.put("clips/v2.mp4", b"v2")
    for conn_id, warned in (("comet_test_s3", True), ("comet_test_s3v4", False)):
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="comet_provider.utils.sources"):
            resolve_source(Source("video", f"s3://{conn_id}@{BUCKET}/clips/v2.mp4", "storage", "video"), expires_in=60)
        assert ("SigV2" in caplog.text and '"signature_version": "s3v4"' in caplog.text) is warned, caplog.text


@pytest.mark.parametrize(("conn_id", "param"), [("comet_test_s3v4", "X-Amz-Signature"), ("comet_test_s3", "Signature")])
def test_signing_logs_no_signature(s3: S3, caplog: pytest.LogCaptureFixture, conn_id: str, param: str) -> None:
    """Even at DEBUG, where botocore logs every signature it computes."""
    s3.put("clips/quiet.mp4", b"q")
    with caplog.at_level(logging.DEBUG):
        uri = resolve_source(
            Source("video", f"s3://{conn_id}@studio-private/clips/quiet.mp4", "storage", "video"), expires_in=600
        ).uri
    assert "botocore" in caplog.text  # DEBUG logging was on while signing
    assert dict(parse_qsl(urlsplit(uri).query))[param] not in caplog.text
