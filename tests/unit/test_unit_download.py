"""CometHook.download: destinations, atomicity, retries, and no API key sent to the render host."""

from __future__ import annotations

import gzip
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from airflow.sdk import ObjectStoragePath

from comet_provider.exceptions import (
    CometAPIError,
    CometConnectionError,
    CometServerError,
    CometValidationError,
    RenderUnavailableError,
)
from comet_provider.hooks.comet import DownloadResult
from comet_provider.utils.retry import RetryPolicy

from ._fakes import FAST_RETRY, SECRET, FakeApi, make_hook, memory_folder

RENDER_URL = "https://cdn.test/renders/abc.mp4"
VIDEO = bytes(range(256)) * 400  # 100 KiB that is not all one byte


class Chunks(httpx.SyncByteStream):
    """A body sent in pieces, optionally failing after them (a connection dropped mid-body)."""

    def __init__(self, chunks: list[bytes], fail: Exception | None = None) -> None:
        self.chunks = chunks
        self.fail = fail

    def __iter__(self) -> Iterator[bytes]:
        yield from self.chunks
        if self.fail is not None:
            raise self.fail


def full_body(_: httpx.Request | None = None) -> httpx.Response:
    return httpx.Response(
        200,
        headers={"Content-Type": "video/mp4", "Content-Length": str(len(VIDEO))},
        stream=Chunks([VIDEO[:40_000], VIDEO[40_000:]]),
    )


def short_body(_: httpx.Request | None = None) -> httpx.Response:
    """Promises the whole video, sends half, then the stream just ends."""
    return httpx.Response(
        200,
        headers={"Content-Type": "video/mp4", "Content-Length": str(len(VIDEO))},
        stream=Chunks([VIDEO[: len(VIDEO) // 2]]),
    )


def dropped_body(_: httpx.Request | None = None) -> httpx.Response:
    """Sends part of the video, then the connection breaks."""
    return httpx.Response(
        200,
        headers={"Content-Type": "video/mp4", "Content-Length": str(len(VIDEO))},
        stream=Chunks([VIDEO[:30_000]], fail=httpx.ReadError("connection reset by peer")),
    )


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".part" in p.name)


@pytest.fixture
def memory_root() -> Iterator[str]:
    with memory_folder("dl") as root:
        yield root


# -- destinations --------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["str", "path", "file-url", "file-objectstoragepath"])
def test_download_to_local_destinations(tmp_path: Path, fake_api: FakeApi, kind: str) -> None:
    fake_api.script(full_body)
    target = tmp_path / "nested" / "deeper" / "out.mp4"
    destination: Any = {
        "str": str(target),
        "path": target,
        "file-url": f"file://{target}",
        "file-objectstoragepath": ObjectStoragePath(f"file://{target}"),
    }[kind]
    result = make_hook(fake_api, retry_policy=FAST_RETRY).download(RENDER_URL, destination)
    assert isinstance(result, DownloadResult)
    assert target.read_bytes() == VIDEO
    assert result.size_bytes == len(VIDEO)
    assert Path(result.destination) == target
    assert result.seconds >= 0
    assert leftovers(target.parent) == []


@pytest.mark.parametrize("as_string", [False, True])
def test_download_to_memory_object_storage(fake_api: FakeApi, memory_root: str, as_string: bool) -> None:
    fake_api.script(full_body)
    url = f"{memory_root}/renders/out.mp4"
    destination: Any = url if as_string else ObjectStoragePath(url)
    result = make_hook(fake_api, retry_policy=FAST_RETRY).download(RENDER_URL, destination)
    stored = ObjectStoragePath(url)
    assert stored.read_bytes() == VIDEO
    assert result.size_bytes == len(VIDEO)
    assert [p.name for p in stored.parent.iterdir()] == ["out.mp4"]


def test_download_does_not_send_the_api_key(tmp_path: Path, fake_api: FakeApi) -> None:
    fake_api.script(full_body)
    make_hook(fake_api, retry_policy=FAST_RETRY).download(RENDER_URL, tmp_path / "out.mp4")
    (request,) = fake_api.requests
    assert request.method == "GET"
    assert str(request.url) == RENDER_URL
    assert "authorization" not in request.headers
    assert SECRET not in str(request.headers.raw)
    assert SECRET not in str(request.url)


def test_download_stores_the_video_bytes_not_a_transfer_encoding(tmp_path: Path, fake_api: FakeApi) -> None:
    """A CDN may compress whatever the client says it accepts: the file must hold the video itself."""

    def cdn(request: httpx.Request) -> httpx.Response:
        if "gzip" in request.headers.get("Accept-Encoding", ""):
            packed = gzip.compress(VIDEO)
            return httpx.Response(
                200, headers={"Content-Encoding": "gzip", "Content-Length": str(len(packed))}, stream=Chunks([packed])
            )
        return full_body()

    fake_api.script(cdn)
    target = tmp_path / "out.mp4"
    make_hook(fake_api, retry_policy=FAST_RETRY).download(RENDER_URL, target)
    assert target.read_bytes() == VIDEO


# -- atomicity ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("broken", [short_body, dropped_body], ids=["short", "dropped"])
def test_failed_download_leaves_nothing(tmp_path: Path, fake_api: FakeApi, broken: Any) -> None:
    fake_api.script(broken)
    target = tmp_path / "out.mp4"
    with pytest.raises(CometConnectionError) as info:
        make_hook(fake_api, retry_policy=FAST_RETRY).download(RENDER_URL, target)
    assert info.value.retryable
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []
    assert len(fake_api.requests) == FAST_RETRY.max_attempts


def test_short_download_says_how_much_arrived(tmp_path: Path, fake_api: FakeApi) -> None:
    fake_api.script(short_body)
    with pytest.raises(CometConnectionError) as info:
        make_hook(fake_api, retry_policy=RetryPolicy(max_attempts=1)).download(RENDER_URL, tmp_path / "o.mp4")
    assert str(len(VIDEO) // 2) in str(info.value)
    assert str(len(VIDEO)) in str(info.value)


@pytest.mark.parametrize("broken", [short_body, dropped_body], ids=["short", "dropped"])
def test_failed_download_keeps_the_existing_destination(tmp_path: Path, fake_api: FakeApi, broken: Any) -> None:
    fake_api.script(broken)
    target = tmp_path / "out.mp4"
    target.write_bytes(b"previous render")
    with pytest.raises(CometConnectionError):
        make_hook(fake_api, retry_policy=FAST_RETRY).download(RENDER_URL, target)
    assert target.read_bytes() == b"previous render"
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("broken", [short_body, dropped_body], ids=["short", "dropped"])
def test_failed_download_to_object_storage_leaves_nothing(fake_api: FakeApi, memory_root: str, broken: Any) -> None:
    fake_api.script(broken)
    folder = ObjectStoragePath(f"{memory_root}/renders")
    with pytest.raises(CometConnectionError):
        make_hook(fake_api, retry_policy=FAST_RETRY).download(RENDER_URL, folder / "out.mp4")
    assert not (folder / "out.mp4").exists()
    assert not folder.exists() or list(folder.iterdir()) == []


@pytest.mark.parametrize("broken", [short_body, dropped_body], ids=["short", "dropped"])
def test_download_retried_after_a_broken_transfer(tmp_path: Path, fake_api: FakeApi, broken: Any) -> None:
    fake_api.script(broken, full_body)
    target = tmp_path / "out.mp4"
    target.write_bytes(b"previous render")
    result = make_hook(fake_api, retry_policy=FAST_RETRY).download(RENDER_URL, target)
    assert target.read_bytes() == VIDEO
    assert result.size_bytes == len(VIDEO)
    assert len(fake_api.requests) == 2
    assert leftovers(tmp_path) == []


# -- HTTP errors from the render host ------------------------------------------------------------------


SIGNED_URL = f"{RENDER_URL}?Expires=1700000000&Signature=s3cr3t-signature"


@pytest.mark.parametrize("status", [403, 404, 410])
def test_expired_render_link_is_unavailable_and_not_retried(tmp_path: Path, fake_api: FakeApi, status: int) -> None:
    fake_api.script(httpx.Response(status, content=b"<Error>AccessDenied</Error>"))
    with pytest.raises(RenderUnavailableError) as info:
        make_hook(fake_api, retry_policy=FAST_RETRY).download(SIGNED_URL, tmp_path / "out.mp4")
    assert info.value.status_code == status
    assert info.value.url == RENDER_URL
    assert not info.value.retryable
    assert "expired" in str(info.value)
    assert "s3cr3t-signature" not in str(info.value)
    assert len(fake_api.requests) == 1
    assert list(tmp_path.iterdir()) == []


def page(content_type: str, body: bytes = b"<html><body>Link expired</body></html>") -> httpx.Response:
    headers = {"Content-Type": content_type, "Content-Length": str(len(body))}
    return httpx.Response(200, headers=headers, stream=Chunks([body]))


@pytest.mark.parametrize(
    "answer",
    [
        page("text/html; charset=utf-8"),
        page("text/plain", b"Request has expired"),
        page("application/json", b'{"error": "expired"}'),
        page("application/xml", b"<Error><Code>AccessDenied</Code></Error>"),
        page("text/xml", b"<Error><Code>AccessDenied</Code></Error>"),
        page("application/problem+json", b'{"title": "gone"}'),
        page("application/octet-stream", b"\n  <!DOCTYPE html><html><body>Sign in</body></html>"),
        page("video/mp4", b"<html><body>Sign in</body></html>"),
        page("", b"<?xml version='1.0'?><Error/>"),
        page("video/mp4", b""),
    ],
    ids=[
        "html",
        "text",
        "json",
        "xml",
        "text-xml",
        "problem-json",
        "html-as-octets",
        "html-as-mp4",
        "xml-untyped",
        "empty",
    ],
)
def test_a_page_instead_of_the_video_is_unavailable(tmp_path: Path, fake_api: FakeApi, answer: httpx.Response) -> None:
    fake_api.script(answer)
    target = tmp_path / "out.mp4"
    target.write_bytes(b"previous render")
    with pytest.raises(RenderUnavailableError) as info:
        make_hook(fake_api, retry_policy=FAST_RETRY).download(SIGNED_URL, target)
    assert info.value.status_code == 200
    assert "instead of a video" in str(info.value)
    assert "s3cr3t-signature" not in str(info.value)
    assert len(fake_api.requests) == 1
    assert target.read_bytes() == b"previous render"
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("content_type", ["video/mp4", "application/octet-stream", "binary/octet-stream", ""])
def test_video_bodies_are_stored_whatever_their_type(tmp_path: Path, fake_api: FakeApi, content_type: str) -> None:
    fake_api.script(httpx.Response(200, headers={"Content-Type": content_type}, stream=Chunks([VIDEO])))
    target = tmp_path / "out.mp4"
    make_hook(fake_api, retry_policy=FAST_RETRY).download(RENDER_URL, target)
    assert target.read_bytes() == VIDEO


@pytest.mark.parametrize(("status", "error"), [(400, CometAPIError), (401, CometAPIError), (418, CometAPIError)])
def test_other_client_errors_keep_their_mapping(tmp_path: Path, fake_api: FakeApi, status: int, error: type) -> None:
    fake_api.script(httpx.Response(status))
    with pytest.raises(error) as info:
        make_hook(fake_api, retry_policy=FAST_RETRY).download(RENDER_URL, tmp_path / "out.mp4")
    assert not isinstance(info.value, RenderUnavailableError)
    assert len(fake_api.requests) == 1


def test_render_host_server_errors_are_retried(tmp_path: Path, fake_api: FakeApi) -> None:
    fake_api.script(httpx.Response(503), httpx.Response(502), full_body)
    target = tmp_path / "out.mp4"
    make_hook(fake_api, retry_policy=FAST_RETRY).download(RENDER_URL, target)
    assert target.read_bytes() == VIDEO
    assert len(fake_api.requests) == 3


def test_persistent_server_errors_end_the_download(tmp_path: Path, fake_api: FakeApi) -> None:
    fake_api.script(httpx.Response(500))
    with pytest.raises(CometServerError):
        make_hook(fake_api, retry_policy=FAST_RETRY).download(RENDER_URL, tmp_path / "out.mp4")
    assert len(fake_api.requests) == FAST_RETRY.max_attempts
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("url", ["ftp://cdn.test/a.mp4", "file:///etc/passwd", "", "cdn.test/a.mp4"])
def test_download_url_is_validated(tmp_path: Path, fake_api: FakeApi, url: str) -> None:
    with pytest.raises(CometValidationError) as info:
        make_hook(fake_api).download(url, tmp_path / "out.mp4")
    assert info.value.field == "url"
    assert fake_api.requests == []
    assert not os.listdir(tmp_path)


# -- the reused buffer (the transport's "readinto" extension) -------------------------------------------


class Reader:
    """A body served through ``readinto`` in pieces of at most ``step`` bytes, as a socket would."""

    def __init__(self, data: bytes, step: int) -> None:
        self.data = data
        self.step = step
        self.offset = 0
        self.buffers: set[int] = set()

    def readinto(self, buffer: memoryview) -> int:
        self.buffers.add(id(buffer.obj))
        piece = self.data[self.offset : self.offset + min(self.step, len(buffer))]
        buffer[: len(piece)] = piece
        self.offset += len(piece)
        return len(piece)


@pytest.mark.parametrize("destination", ["local", "memory"])
def test_readinto_bodies_arrive_whole_through_one_buffer(
    tmp_path: Path, fake_api: FakeApi, memory_root: str, destination: str
) -> None:
    data = os.urandom(3 * (1 << 20) + 12_345)  # several buffer fills, the last one partial
    reader = Reader(data, step=700_001)
    fake_api.script(
        lambda _: httpx.Response(
            200,
            headers={"Content-Type": "video/mp4", "Content-Length": str(len(data))},
            extensions={"readinto": reader.readinto},
        )
    )
    target: Any = tmp_path / "out.mp4" if destination == "local" else ObjectStoragePath(f"{memory_root}/out.mp4")
    result = make_hook(fake_api, retry_policy=FAST_RETRY).download(RENDER_URL, target)
    assert target.read_bytes() == data
    assert result.size_bytes == len(data)
    assert len(reader.buffers) == 1


def test_readinto_body_cut_short_leaves_nothing(tmp_path: Path, fake_api: FakeApi) -> None:
    reader = Reader(VIDEO[:1000], step=400)
    fake_api.script(
        lambda _: httpx.Response(
            200, headers={"Content-Length": str(len(VIDEO))}, extensions={"readinto": reader.readinto}
        )
    )
    with pytest.raises(CometConnectionError, match=f"1000 of {len(VIDEO)}"):
        make_hook(fake_api, retry_policy=RetryPolicy(max_attempts=1)).download(RENDER_URL, tmp_path / "out.mp4")
    assert list(tmp_path.iterdir()) == []


# -- redirects (followed by the hook itself, not an httpx.Client) ------------------------------------------


def test_redirects_are_followed_to_the_render(tmp_path: Path, fake_api: FakeApi) -> None:
    fake_api.script(httpx.Response(302, headers={"Location": "/signed/abc.mp4?sig=1"}), full_body)
    target = tmp_path / "out.mp4"
    make_hook(fake_api, retry_policy=FAST_RETRY).download(RENDER_URL, target)
    assert target.read_bytes() == VIDEO
    assert [str(r.url) for r in fake_api.requests] == [RENDER_URL, "https://cdn.test/signed/abc.mp4?sig=1"]
    assert all(r.headers["Accept-Encoding"] == "identity" for r in fake_api.requests)


@pytest.mark.parametrize(
    ("location", "message"), [(RENDER_URL, "more than 10 times"), ("file:///etc/passwd", "'file' URL")]
)
def test_bad_redirects_end_the_download(tmp_path: Path, fake_api: FakeApi, location: str, message: str) -> None:
    fake_api.script(httpx.Response(302, headers={"Location": location}))
    with pytest.raises(CometAPIError, match=message):
        make_hook(fake_api, retry_policy=FAST_RETRY).download(RENDER_URL, tmp_path / "out.mp4")
    assert len(fake_api.requests) <= 11
    assert list(tmp_path.iterdir()) == []
