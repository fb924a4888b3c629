"""CometHook.download: destinations, atomicity, retries, and no API key sent to the render host."""

from __future__ import annotations

import gzip
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fsspec
import httpx
import pytest
from airflow.sdk import ObjectStoragePath

from comet_provider.exceptions import CometBadRequestError, CometConnectionError, CometServerError, CometValidationError
from comet_provider.hooks.comet import DownloadResult
from comet_provider.utils.retry import RetryPolicy

from ._fakes import FAST_RETRY, SECRET, FakeApi, make_hook

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
    """A fresh ``memory://`` folder for ObjectStoragePath (Airflow registers no memory filesystem itself)."""
    from airflow.sdk.io import store

    fs = fsspec.filesystem("memory")
    store.attach("memory", fs=fs)
    root = f"dl-{uuid.uuid4().hex[:8]}"
    yield f"memory://{root}"
    if fs.exists(f"/{root}"):
        fs.rm(f"/{root}", recursive=True)


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


@pytest.mark.parametrize("status", [403, 404, 410])
def test_expired_render_url_is_explained_and_not_retried(tmp_path: Path, fake_api: FakeApi, status: int) -> None:
    fake_api.script(httpx.Response(status, content=b"<Error>AccessDenied</Error>"))
    with pytest.raises(CometBadRequestError) as info:
        make_hook(fake_api, retry_policy=FAST_RETRY).download(RENDER_URL, tmp_path / "out.mp4")
    assert info.value.status_code == status
    assert "expire" in str(info.value)
    assert len(fake_api.requests) == 1
    assert list(tmp_path.iterdir()) == []


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
