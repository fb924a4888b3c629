"""CometHook.source_identity: one HEAD for http(s) sources, a stat for stored ones, never an exception."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from airflow.sdk import ObjectStoragePath

from comet_provider.hooks.storage import write_bytes_atomic

from ._fakes import SECRET, FakeApi, make_hook, memory_folder

SOURCE = "https://media.test/day/clip.mp4"
SIGNED = f"{SOURCE}?X-Amz-Signature=s3cr3t-signature"


@pytest.fixture
def memory_root() -> Iterator[str]:
    with memory_folder("id") as root:
        yield root


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"ETag": '"v1"'}, 'etag="v1"'),
        ({"Last-Modified": "Wed, 21 Oct 2026 07:28:00 GMT"}, "last-modified=Wed, 21 Oct 2026 07:28:00 GMT"),
        ({"Content-Length": "1234"}, "content-length=1234"),
        (
            {"ETag": 'W/"v2"', "Last-Modified": "Wed, 21 Oct 2026 07:28:00 GMT", "Content-Length": "99"},
            'etag=W/"v2";last-modified=Wed, 21 Oct 2026 07:28:00 GMT;content-length=99',
        ),
    ],
    ids=["etag", "last-modified", "length", "all"],
)
def test_http_identity_from_head(fake_api: FakeApi, headers: dict[str, str], expected: str) -> None:
    fake_api.script(httpx.Response(200, headers=headers))
    assert make_hook(fake_api).source_identity(SOURCE) == expected
    (request,) = fake_api.requests
    assert request.method == "HEAD"
    assert str(request.url) == SOURCE
    assert "authorization" not in request.headers
    assert SECRET not in str(request.headers.raw)


def test_a_different_upload_behind_the_same_url_is_a_different_identity(fake_api: FakeApi) -> None:
    fake_api.script(httpx.Response(200, headers={"ETag": '"v1"'}), httpx.Response(200, headers={"ETag": '"v2"'}))
    hook = make_hook(fake_api)
    assert hook.source_identity(SOURCE) != hook.source_identity(SOURCE)


def test_redirects_are_followed(fake_api: FakeApi) -> None:
    fake_api.script(
        httpx.Response(302, headers={"Location": "https://cdn.test/real/clip.mp4"}),
        httpx.Response(200, headers={"ETag": '"cdn"'}),
    )
    assert make_hook(fake_api).source_identity(SOURCE) == 'etag="cdn"'
    assert [str(r.url) for r in fake_api.requests] == [SOURCE, "https://cdn.test/real/clip.mp4"]


@pytest.mark.parametrize(
    "answer",
    [
        httpx.Response(200),
        httpx.Response(405, headers={"ETag": '"error-page"'}),
        httpx.Response(404),
        httpx.Response(503),
        httpx.ConnectError("connection refused"),
        httpx.ReadTimeout("timed out"),
    ],
    ids=["no-headers", "405", "404", "503", "refused", "timeout"],
)
def test_unknown_http_identity_is_none_and_logged(
    fake_api: FakeApi, answer: httpx.Response | Exception, caplog: pytest.LogCaptureFixture
) -> None:
    fake_api.script(answer)
    with caplog.at_level(logging.DEBUG):
        assert make_hook(fake_api).source_identity(SIGNED) is None
    assert len(fake_api.requests) == 1  # no retries
    assert "media.test/day/clip.mp4" in caplog.text
    assert "s3cr3t-signature" not in caplog.text


def test_local_sources(tmp_path: Path) -> None:
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"video")
    hook = make_hook(FakeApi())  # no request may be made: FakeApi with no script fails on any
    identity = hook.source_identity(str(clip))
    assert identity is not None and "size=5" in identity
    assert hook.source_identity(f"file://{clip}") == identity
    assert hook.source_identity(clip) == identity
    assert hook.source_identity(ObjectStoragePath(f"file://{clip}")) == identity


def test_object_storage_source(memory_root: str) -> None:
    write_bytes_atomic(f"{memory_root}/clip.mp4", b"video")
    identity = make_hook(FakeApi()).source_identity(ObjectStoragePath(f"{memory_root}/clip.mp4"))
    assert identity is not None and "size=5" in identity


@pytest.mark.parametrize("source", ["/no/such/clip.mp4", "unknownscheme://x/clip.mp4", ""])
def test_unreadable_stored_sources_are_none(source: str) -> None:
    assert make_hook(FakeApi()).source_identity(source) is None
