"""The storage around the API: finished renders at ``/renders/`` (links that can expire),
source clips at ``/media/`` and sized blobs at ``/_emulator/blob``."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import random
import secrets
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from aiohttp import web

from comet_provider.testing.emulator.faults import Faults
from comet_provider.testing.emulator.settings import EmulatorConfig
from comet_provider.testing.emulator.timeline import EmulatedTask
from comet_provider.testing.emulator.wire import Errors

MAX_BLOB_SIZE = 64 << 30
_BLOB_BLOCK = 1 << 20
# uvloop has no zero-copy sendfile, so aiohttp falls back to executor reads: big chunks
# cut the thread hops (measured ~2x less server CPU per GiB than the 256 KiB default).
FILE_CHUNK = 4 << 20


def _iso_utc(wall: float) -> str:
    return dt.datetime.fromtimestamp(wall, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def expired_link_response(expires_wall: float) -> web.Response:
    """What S3 answers a presigned URL past its expiry: 403 and an XML ``AccessDenied`` error."""
    now = time.time()
    request_id = secrets.token_hex(8).upper()
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        "<Error><Code>AccessDenied</Code><Message>Request has expired</Message>"
        f"<Expires>{_iso_utc(expires_wall)}</Expires>"
        f"<ServerTime>{_iso_utc(now)}</ServerTime>"
        f"<RequestId>{request_id}</RequestId><HostId>{secrets.token_urlsafe(24)}</HostId></Error>"
    )
    return web.Response(
        body=body.encode(),
        status=403,
        content_type="application/xml",
        headers={"x-amz-request-id": request_id},
    )


class Files:
    """File routes; counts render downloads and requests refused on an expired link."""

    def __init__(
        self,
        config: Callable[[], EmulatorConfig],
        tasks: Callable[[], Mapping[str, EmulatedTask]],
        faults: Faults,
        errors: Errors,
        blobs_dir: Path,
    ) -> None:
        self._config = config
        self._tasks = tasks
        self._faults = faults
        self._errors = errors
        self._blobs_dir = blobs_dir
        self._blob_locks: dict[int, asyncio.Lock] = {}
        self._blobs: dict[int, Path] = {}
        self.clear_counts()

    def clear_counts(self) -> None:
        self.downloads = 0
        self.expired = 0

    def to_dict(self) -> dict[str, int]:
        return {"downloads": self.downloads, "expired": self.expired}

    def add_routes(self, router: web.UrlDispatcher) -> None:
        router.add_get("/renders/{name}", self._renders)
        router.add_get("/media/{path:.*}", self._media)
        router.add_get("/_emulator/blob", self._blob)

    async def _renders(self, request: web.Request) -> web.StreamResponse:
        faulted = await self._faults.inject("download", request)
        if faulted is not None:
            return faulted
        task_id, _, suffix = request.match_info["name"].partition(".")
        task = self._tasks().get(task_id)
        if task is None or task.render is None:
            raise web.HTTPNotFound()
        files = {
            "mp4": (task.render.video, "video/mp4"),
            "poster.jpg": (task.render.poster, "image/jpeg"),
            "last_frame.jpg": (task.render.last_frame, "image/jpeg"),
        }
        if suffix not in files:
            raise web.HTTPNotFound()
        expiry = task.link_expiry(self._config().link_ttl)
        if expiry is not None and time.monotonic() >= expiry:
            self.expired += 1
            return expired_link_response(task.wall_time(expiry))
        if suffix == "mp4":
            task.downloads += 1
            self.downloads += 1
        path, content_type = files[suffix]
        return web.FileResponse(path, chunk_size=FILE_CHUNK, headers={"Content-Type": content_type})

    async def _media(self, request: web.Request) -> web.StreamResponse:
        media_dir = self._config().media_dir
        rel = request.match_info["path"]
        parts = rel.split("/")
        if rel.startswith("/") or "\\" in rel or "\x00" in rel or any(p in ("..", ".") for p in parts):
            raise web.HTTPForbidden(text="path traversal is not allowed")
        if media_dir is None:
            raise web.HTTPNotFound()
        path = Path(media_dir).joinpath(*[p for p in parts if p])
        if not path.is_file():
            raise web.HTTPNotFound()
        return web.FileResponse(path, chunk_size=FILE_CHUNK)

    @staticmethod
    def _write_blob(size: int, path: Path) -> None:
        block = random.Random(0x5EED).randbytes(_BLOB_BLOCK)
        partial = path.with_name(path.name + ".partial")
        with partial.open("wb") as out:
            remaining = size
            while remaining > 0:
                chunk = block if remaining >= _BLOB_BLOCK else block[:remaining]
                out.write(chunk)
                remaining -= len(chunk)
        os.replace(partial, path)

    async def _blob(self, request: web.Request) -> web.StreamResponse:
        try:
            size = int(request.query.get("size", ""))
        except ValueError:
            return self._errors.response(400, "size must be an integer number of bytes", param="size")
        if not 0 <= size <= MAX_BLOB_SIZE:
            return self._errors.response(400, f"size must be between 0 and {MAX_BLOB_SIZE}", param="size")
        faulted = await self._faults.inject("download", request)
        if faulted is not None:
            return faulted
        path = self._blobs.get(size)
        if path is None:
            lock = self._blob_locks.setdefault(size, asyncio.Lock())
            async with lock:
                path = self._blobs.get(size)
                if path is None:
                    path = self._blobs_dir / f"blob-{size}.bin"
                    # Off the loop: writing a GiB would stall every other client.
                    await asyncio.to_thread(self._write_blob, size, path)
                    self._blobs[size] = path
        return web.FileResponse(path, chunk_size=FILE_CHUNK, headers={"Content-Type": "application/octet-stream"})
