"""A local emulator of CometAPI's Runway endpoints (aiohttp.web on loopback).

It plays the API (submit, feed, auth, faults, callbacks) and the "public storage"
around it: source clips staged in ``media_dir`` are served at ``/media/...`` and
finished renders at ``/renders/<task_id>.mp4``. ``/_emulator/...`` is an
unauthenticated control API (stats, config, reset, inboxes, blobs).

Two ways to run it, with the same client-side methods (plain HTTP calls to the
control API): :class:`CometEmulator` (a thread of this process) and
:class:`EmulatorProcess` (``python -m comet_provider.testing`` in a child process).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import datetime as dt
import functools
import heapq
import hmac
import itertools
import json
import logging
import os
import random
import resource
import secrets
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import urlsplit, urlunsplit

from aiohttp import ClientError, ClientSession, ClientTimeout, web

from comet_provider.testing.render import RenderError, RenderOutput, make_placeholder, render_video

if TYPE_CHECKING:
    import httpx

__all__ = [
    "FAULT_ENDPOINTS",
    "FAULT_KINDS",
    "RENDER_MODES",
    "URL_PLACEMENTS",
    "CometEmulator",
    "EmulatorConfig",
    "EmulatorProcess",
    "EmulatorServer",
    "FaultConfig",
    "new_event_loop",
    "serve",
]

log = logging.getLogger("comet_provider.testing")

PLACEMENTS: tuple[str, ...] = ("video_url", "result_url", "output", "inner_video_url")
URL_PLACEMENTS: tuple[str, ...] = ("rotate", *PLACEMENTS, "none")
RENDER_MODES: tuple[str, ...] = ("ffmpeg", "copy", "synthetic")
FAULT_KINDS: tuple[str, ...] = (
    "429",
    "500",
    "502_html",
    "503_html",
    "504_html",
    "drop",
    "slow",
    "task_not_exist",
)
FAULT_ENDPOINTS: tuple[str, ...] = ("submit", "feed", "download")
API_KEY_ENV = "COMET_EMULATOR_API_KEY"
MAX_BLOB_SIZE = 64 << 30
_BLOB_BLOCK = 1 << 20
_INBOX_LIMIT = 10_000
# uvloop has no zero-copy sendfile, so aiohttp falls back to executor reads: big chunks
# cut the thread hops (measured ~2x less server CPU per GiB than the 256 KiB default).
_FILE_CHUNK = 4 << 20
_TERMINAL = frozenset({"SUCCESS", "FAILURE"})


# --------------------------------------------------------------------------- config


def _number(name: str, value: Any, minimum: float = 0.0, maximum: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a number, got {value!r}")
    if value < minimum or (maximum is not None and value > maximum):
        bound = f"between {minimum:g} and {maximum:g}" if maximum is not None else f">= {minimum:g}"
        raise ValueError(f"{name} must be {bound}, got {value!r}")
    return float(value)


def _integer(name: str, value: Any, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


def _boolean(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be true or false, got {value!r}")
    return value


def _choice(name: str, value: Any, choices: Iterable[str]) -> str:
    options = tuple(choices)
    if value not in options:
        raise ValueError(f"{name} must be one of {', '.join(options)}; got {value!r}")
    return str(value)


def _optional_path(name: str, value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, (str, os.PathLike)) or not str(value):
        raise ValueError(f"{name} must be a path or null")
    return os.fspath(value)


@dataclass
class FaultConfig:
    """Random fault injection; ``rate`` is the chance per request to a listed endpoint."""

    rate: float = 0.0
    kinds: list[str] = field(default_factory=lambda: ["429", "500", "502_html", "503_html", "504_html"])
    endpoints: list[str] = field(default_factory=lambda: ["feed"])
    retry_after: float = 1.0
    slow_seconds: float = 2.0
    seed: int = 0

    def update(self, partial: Mapping[str, Any]) -> None:
        for key, value in partial.items():
            if key == "rate":
                self.rate = _number("faults.rate", value, 0.0, 1.0)
            elif key == "kinds":
                if not isinstance(value, list):
                    raise ValueError("faults.kinds must be a list")
                self.kinds = [_choice("faults.kinds[]", k, FAULT_KINDS) for k in value]
            elif key == "endpoints":
                if not isinstance(value, list):
                    raise ValueError("faults.endpoints must be a list")
                self.endpoints = [_choice("faults.endpoints[]", e, FAULT_ENDPOINTS) for e in value]
            elif key == "retry_after":
                self.retry_after = _number("faults.retry_after", value)
            elif key == "slow_seconds":
                self.slow_seconds = _number("faults.slow_seconds", value)
            elif key == "seed":
                self.seed = _integer("faults.seed", value, minimum=-(2**63))
            else:
                raise ValueError(f"unknown faults key {key!r}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "rate": self.rate,
            "kinds": list(self.kinds),
            "endpoints": list(self.endpoints),
            "retry_after": self.retry_after,
            "slow_seconds": self.slow_seconds,
            "seed": self.seed,
        }


def _fail_next(value: Any) -> list[dict[str, Any]]:
    if not isinstance(value, list):
        raise ValueError("fail_next must be a list of {endpoint, kind, count}")
    queue: list[dict[str, Any]] = []
    for item in value:
        if not isinstance(item, Mapping):
            raise ValueError("fail_next entries must be objects")
        unknown = set(item) - {"endpoint", "kind", "count"}
        if unknown:
            raise ValueError(f"unknown fail_next keys: {sorted(unknown)}")
        endpoint = _choice("fail_next.endpoint", item.get("endpoint"), FAULT_ENDPOINTS)
        kind = _choice("fail_next.kind", item.get("kind"), FAULT_KINDS)
        if kind == "task_not_exist" and endpoint != "feed":
            raise ValueError("fail_next kind task_not_exist only applies to the feed endpoint")
        count = _integer("fail_next.count", item.get("count", 1), minimum=1)
        queue.append({"endpoint": endpoint, "kind": kind, "count": count})
    return queue


@dataclass
class EmulatorConfig:
    """Everything the emulator can be told. All keys except ``data_dir`` and
    ``log_requests`` can be changed while it runs (``POST /_emulator/config``)."""

    api_key: str | None = None
    require_version_header: bool = True
    not_exist_seconds: float = 1.0
    queue_seconds: float = 0.5
    render_seconds: float = 3.0
    concurrency: int = 0
    url_placement: str = "rotate"
    render: str = "ffmpeg"
    render_workers: int = 2
    media_dir: str | None = None
    data_dir: str | None = None
    public_url: str | None = None
    callback_timeout: float = 5.0
    fetch_timeout: float = 60.0
    render_timeout: float = 300.0
    log_requests: bool = False
    faults: FaultConfig = field(default_factory=FaultConfig)
    fail_next: list[dict[str, Any]] = field(default_factory=list)

    STARTUP_ONLY: ClassVar[frozenset[str]] = frozenset({"data_dir", "log_requests"})
    READ_ONLY: ClassVar[frozenset[str]] = frozenset({"api_key_set", "url"})

    @classmethod
    def from_kwargs(cls, values: Mapping[str, Any]) -> EmulatorConfig:
        config = cls()
        config.update(values, startup=True)
        return config

    def update(self, partial: Mapping[str, Any], *, startup: bool = False) -> None:
        """Validate and apply ``partial``; raises ValueError naming the bad key.

        Applied atomically: a bad key leaves the config unchanged."""
        staged = copy.deepcopy(self)
        for key, value in partial.items():
            if key in self.READ_ONLY:
                continue
            if key in self.STARTUP_ONLY and not startup:
                if value != getattr(self, key):
                    raise ValueError(f"{key} can only be set when the emulator starts")
                continue
            staged._set(key, value)
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(staged, name))

    def _set(self, key: str, value: Any) -> None:
        if key == "api_key":
            if value is not None and (not isinstance(value, str) or not value.strip()):
                raise ValueError("api_key must be a non-empty string or null")
            self.api_key = value
        elif key in ("require_version_header", "log_requests"):
            setattr(self, key, _boolean(key, value))
        elif key in (
            "not_exist_seconds",
            "queue_seconds",
            "render_seconds",
            "callback_timeout",
            "fetch_timeout",
            "render_timeout",
        ):
            setattr(self, key, _number(key, value))
        elif key == "concurrency":
            self.concurrency = _integer(key, value)
        elif key == "render_workers":
            self.render_workers = _integer(key, value, minimum=1)
        elif key == "url_placement":
            self.url_placement = _choice(key, value, URL_PLACEMENTS)
        elif key == "render":
            self.render = _choice(key, value, RENDER_MODES)
        elif key in ("media_dir", "data_dir"):
            setattr(self, key, _optional_path(key, value))
        elif key == "public_url":
            if value is not None and (not isinstance(value, str) or not value.startswith(("http://", "https://"))):
                raise ValueError("public_url must be an http(s) URL or null")
            self.public_url = value.rstrip("/") if isinstance(value, str) else None
        elif key == "faults":
            if isinstance(value, FaultConfig):
                value = value.to_dict()
            if not isinstance(value, Mapping):
                raise ValueError("faults must be an object")
            self.faults.update(value)
        elif key == "fail_next":
            self.fail_next = _fail_next(value)
        else:
            known = ", ".join(sorted(self.__dataclass_fields__))
            raise ValueError(f"unknown config key {key!r} (known: {known})")

    def to_dict(self) -> dict[str, Any]:
        """Public view: the API key is never included, only whether one is set."""
        return {
            "api_key_set": self.api_key is not None,
            "require_version_header": self.require_version_header,
            "not_exist_seconds": self.not_exist_seconds,
            "queue_seconds": self.queue_seconds,
            "render_seconds": self.render_seconds,
            "concurrency": self.concurrency,
            "url_placement": self.url_placement,
            "render": self.render,
            "render_workers": self.render_workers,
            "media_dir": self.media_dir,
            "data_dir": self.data_dir,
            "public_url": self.public_url,
            "callback_timeout": self.callback_timeout,
            "fetch_timeout": self.fetch_timeout,
            "render_timeout": self.render_timeout,
            "log_requests": self.log_requests,
            "faults": self.faults.to_dict(),
            "fail_next": [dict(item) for item in self.fail_next],
        }


# --------------------------------------------------------------------------- tasks

_FAILURE_TEXT = {
    "SAFETY": "The request was rejected by content moderation.",
    "INTERNAL": "An unexpected error occurred while generating the video.",
    "THIRD_PARTY": "An upstream provider is unavailable.",
    "INPUT_PREPROCESSING": "The input could not be processed.",
    "ASSET": "The input asset is invalid.",
}


def _failure_text(code: str) -> str:
    return _FAILURE_TEXT.get(code.split(".", 1)[0], f"The task failed ({code}).")


def _outcome_for_prompt(prompt: str) -> tuple[str, str]:
    """("success"|"fail"|"cancel", failure code) from the prompt's test tags."""
    lowered = prompt.lower()
    if "[cancel]" in lowered:
        return "cancel", ""
    if "[fail]" in lowered:
        return "fail", "INTERNAL.BAD_OUTPUT.CODE01"
    start = lowered.find("[fail:")
    if start >= 0:
        end = prompt.find("]", start)
        code = prompt[start + 6 : end].strip() if end > start else ""
        return "fail", code or "INTERNAL.BAD_OUTPUT.CODE01"
    return "success", ""


class _Task:
    __slots__ = (
        "_cache_body",
        "_cache_key",
        "callback_url",
        "created_iso",
        "created_mono",
        "created_wall",
        "done",
        "end_at",
        "fail_code",
        "feeds",
        "id",
        "model",
        "not_exist_at",
        "options",
        "outcome",
        "placement",
        "prompt",
        "ready_at",
        "render",
        "render_error",
        "render_finished_wall",
        "render_mode",
        "start_at",
        "video",
    )

    def __init__(
        self,
        task_id: str,
        *,
        prompt: str,
        video: str,
        model: str,
        options: dict[str, Any],
        callback_url: str | None,
        placement: str,
        render_mode: str,
        not_exist_at: float,
        ready_at: float,
        start_at: float,
        end_at: float,
    ) -> None:
        self.id = task_id
        self.prompt = prompt
        self.video = video
        self.model = model
        self.options = options
        self.callback_url = callback_url
        self.placement = placement
        self.render_mode = render_mode
        self.created_mono = time.monotonic()
        self.created_wall = time.time()
        self.created_iso = dt.datetime.fromtimestamp(self.created_wall).astimezone().isoformat(timespec="seconds")
        # Offsets in seconds from creation.
        self.not_exist_at = not_exist_at
        self.ready_at = ready_at
        self.start_at = start_at
        self.end_at = end_at
        self.outcome, self.fail_code = _outcome_for_prompt(prompt)
        self.render: RenderOutput | None = None
        self.render_error: RenderError | None = None
        self.render_finished_wall = 0.0
        self.done = asyncio.Event()
        self.feeds = 0
        self._cache_key: tuple[Any, ...] = ()
        self._cache_body = b""

    def visible(self, now: float) -> bool:
        return now - self.created_mono >= self.not_exist_at

    def state(self, now: float) -> tuple[str, str, int]:
        """(wrapper status, inner Runway status, percent) at monotonic time ``now``."""
        t = now - self.created_mono
        if t < self.not_exist_at:
            return "NOT_START", "PENDING", 0
        if self.render_error is not None and t >= self.start_at:
            return "FAILURE", "FAILED", 100
        if t < self.ready_at:
            return "QUEUED", "PENDING", 0
        if t < self.start_at:
            return "QUEUED", "THROTTLED", 0
        if t < self.end_at:
            span = self.end_at - self.start_at
            return "IN_PROGRESS", "RUNNING", min(99, int(100 * (t - self.start_at) / span))
        if self.outcome == "fail":
            return "FAILURE", "FAILED", 100
        if self.outcome == "cancel":
            return "FAILURE", "CANCELLED", 100
        if self.render is None:
            # The render file is not there yet: never claim success before it is.
            return "IN_PROGRESS", "RUNNING", 99
        return "SUCCESS", "SUCCEEDED", 100

    def wrapper(self, now: float, base_url: str) -> dict[str, Any]:
        status, inner_status, pct = self.state(now)
        inner: dict[str, Any] = {"id": self.id, "status": inner_status, "createdAt": self.created_iso}
        wrapper: dict[str, Any] = {
            "task_id": self.id,
            "action": "VIDEO_TO_VIDEO",
            "status": status,
            "fail_reason": "",
            "submit_time": int(self.created_wall),
            "start_time": 0,
            "finish_time": 0,
            "progress": f"{pct}%",
            "data": inner,
        }
        t = now - self.created_mono
        if t >= self.start_at or status in _TERMINAL:
            wrapper["start_time"] = int(self.created_wall + self.start_at)
        if inner_status == "RUNNING":
            inner["progress"] = round(pct / 100, 2)
        if status == "FAILURE":
            if self.render_error is not None:
                reason, code = self.render_error.reason, self.render_error.code
                finish = max(self.start_at, self.render_finished_wall - self.created_wall)
            elif inner_status == "CANCELLED":
                reason, code, finish = "The task was cancelled.", "", self.end_at
            else:
                reason, code, finish = _failure_text(self.fail_code), self.fail_code, self.end_at
            wrapper["fail_reason"] = reason
            wrapper["finish_time"] = int(self.created_wall + finish)
            inner["failure"] = reason
            if code:
                inner["failureCode"] = code
        elif status == "SUCCESS":
            finish = max(self.end_at, self.render_finished_wall - self.created_wall)
            wrapper["finish_time"] = int(self.created_wall + finish)
            url = f"{base_url}/renders/{self.id}.mp4"
            if self.placement == "video_url":
                wrapper["video_url"] = url
            elif self.placement == "result_url":
                wrapper["result_url"] = url
            elif self.placement == "output":
                inner["output"] = [url]
            elif self.placement == "inner_video_url":
                inner["video_url"] = url
            wrapper["poster"] = f"{base_url}/renders/{self.id}.poster.jpg"
            wrapper["last_frame"] = f"{base_url}/renders/{self.id}.last_frame.jpg"
        return wrapper

    def feed_body(self, now: float, base_url: str, generation: int) -> bytes:
        # Most polls repeat the previous answer: reuse its encoded bytes.
        status, inner_status, pct = self.state(now)
        key = (generation, status, inner_status, pct, self.render is not None)
        if key != self._cache_key:
            payload = {"code": "success", "message": "", "data": self.wrapper(now, base_url)}
            self._cache_body = _dumps(payload)
            self._cache_key = key
        return self._cache_body

    def render_state(self) -> str:
        if self.render is not None:
            return "done"
        if self.render_error is not None:
            return "failed"
        if self.outcome != "success":
            return "skipped"
        return "pending"


# --------------------------------------------------------------------------- server helpers


def _dumps(payload: Any) -> bytes:
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()


def _json_response(payload: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.Response(
        body=_dumps(payload), status=status, content_type="application/json", charset="utf-8", headers=headers
    )


_TASK_NOT_EXIST = _dumps({"code": "task_not_exist", "message": "task_not_exist", "data": None})
_HTML_PAGES = {
    "502_html": (502, "502 Bad Gateway"),
    "503_html": (503, "503 Service Temporarily Unavailable"),
    "504_html": (504, "504 Gateway Time-out"),
}
_SATURATED_ZH = "上游负载已饱和，请稍后再试"


def _html_page(title: str) -> bytes:
    return (
        f"<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n"
        f"<center><h1>{title}</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
    ).encode()


def _safe_url(url: str) -> str:
    """URL without query/fragment/userinfo, for messages (signed URLs carry secrets)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        host = f"[{host}]" if ":" in host else host
        netloc = f"{host}:{parts.port}" if parts.port else host
        return urlunsplit((parts.scheme, netloc, parts.path, "", ""))
    except ValueError:
        return url.split("?", 1)[0]


def _retry_after(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def _raise_fd_limit() -> None:
    # Thousands of concurrent clients need more descriptors than the usual soft limit.
    with contextlib.suppress(ValueError, OSError):
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        target = hard if hard != resource.RLIM_INFINITY else 65536
        target = min(target, 65536)
        if soft < target:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def new_event_loop(kind: str = "auto") -> asyncio.AbstractEventLoop:
    """A uvloop loop when available (``kind="auto"``), else the default asyncio loop."""
    if kind in ("auto", "uvloop"):
        try:
            import uvloop
        except ImportError:
            if kind == "uvloop":
                raise
        else:
            return uvloop.new_event_loop()
    return asyncio.new_event_loop()


class _Reject(Exception):
    """Turns into a JSON error envelope."""

    def __init__(self, status: int, message: str, param: str = "", code: str = "invalid_request") -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code


# --------------------------------------------------------------------------- server


class EmulatorServer:
    """The aiohttp application and its state. Runs on one event loop; not thread-safe."""

    def __init__(self, config: EmulatorConfig | None = None) -> None:
        self.config = config or EmulatorConfig()
        self._initial = copy.deepcopy(self.config)
        self._owns_data_dir = self.config.data_dir is None
        self.data_dir = Path(self.config.data_dir or tempfile.mkdtemp(prefix="comet-emulator-"))
        self.config.data_dir = str(self.data_dir)
        self._initial.data_dir = self.config.data_dir
        self._renders_dir = self.data_dir / "renders"
        self._sources_dir = self.data_dir / "sources"
        self._blobs_dir = self.data_dir / "blobs"
        self.url = ""
        self._runner: web.AppRunner | None = None
        self._session: ClientSession | None = None
        self._jobs: set[asyncio.Task[Any]] = set()
        self._render_sem = asyncio.Semaphore(self.config.render_workers)
        self._render_sem_size = self.config.render_workers
        self._placeholder: RenderOutput | None = None
        self._placeholder_lock = asyncio.Lock()
        self._blob_locks: dict[int, asyncio.Lock] = {}
        self._blobs: dict[int, Path] = {}
        self._generation = 0
        self._request_ids = itertools.count(1)
        self._rid_prefix = secrets.token_hex(3)
        self.inboxes: dict[str, deque[dict[str, Any]]] = {}
        self._clear_state()
        self._apply_config_side_effects()

    # ---- state

    def _clear_state(self) -> None:
        self.tasks: dict[str, _Task] = {}
        self.task_counter = 0
        self.submit_attempts = 0
        self.feeds = 0
        self.auth_failures = 0
        self.fault_counts: dict[str, int] = {}
        self.callbacks_sent = 0
        self.callbacks_failed = 0
        self.callback_errors: deque[str] = deque(maxlen=20)
        self.renders_done = 0
        self.renders_failed = 0
        self._slots: list[float] = []
        self._throttle_concurrency = self.config.concurrency
        self.inboxes.clear()

    def _apply_config_side_effects(self, reseed: bool = True) -> None:
        self._generation += 1
        if reseed:
            seed = self.config.faults.seed
            # One generator per endpoint: the fault sequence on feed does not depend on submits.
            self._rngs = {ep: random.Random(f"{seed}:{ep}") for ep in FAULT_ENDPOINTS}
            self._fault_hits = 0
        if self.config.render_workers != self._render_sem_size:
            self._render_sem = asyncio.Semaphore(self.config.render_workers)
            self._render_sem_size = self.config.render_workers
        if self.config.concurrency != self._throttle_concurrency:
            self._slots = []
            self._throttle_concurrency = self.config.concurrency

    @property
    def base_url(self) -> str:
        return self.config.public_url or self.url

    async def _cancel_jobs(self) -> None:
        jobs = list(self._jobs)
        for job in jobs:
            job.cancel()
        if jobs:
            await asyncio.gather(*jobs, return_exceptions=True)
        self._jobs.clear()

    async def reset(self, config: bool = False) -> None:
        await self._cancel_jobs()
        if config:
            self.config = copy.deepcopy(self._initial)
        else:
            self.config.fail_next = []
        self._clear_state()
        self._apply_config_side_effects()

    def _spawn(self, coro: Any) -> None:
        job = asyncio.ensure_future(coro)
        self._jobs.add(job)
        job.add_done_callback(self._jobs.discard)

    # ---- lifecycle

    def build_app(self) -> web.Application:
        app = web.Application(client_max_size=64 << 20)
        r = app.router
        r.add_post("/runway/pro/video2video", self._submit)
        r.add_post("/runway/feed", self._feed)
        r.add_get("/renders/{name}", self._renders)
        r.add_get("/media/{path:.*}", self._media)
        r.add_get("/_emulator/health", self._health)
        r.add_get("/_emulator/stats", self._stats)
        r.add_get("/_emulator/config", self._get_config)
        r.add_post("/_emulator/config", self._post_config)
        r.add_post("/_emulator/reset", self._reset)
        r.add_get("/_emulator/blob", self._blob)
        r.add_get("/_emulator/inbox/{name}", self._inbox_list)
        r.add_delete("/_emulator/inbox/{name}", self._inbox_clear)
        r.add_route("POST", "/_emulator/inbox/{name}", self._inbox_store)
        r.add_route("PUT", "/_emulator/inbox/{name}", self._inbox_store)
        return app

    async def start(self, host: str = "127.0.0.1", port: int = 0, backlog: int = 4096) -> str:
        """Listen on ``host:port`` (0 = a free port); returns the base URL."""
        _raise_fd_limit()
        for folder in (self._renders_dir, self._sources_dir, self._blobs_dir):
            folder.mkdir(parents=True, exist_ok=True)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        access_log = logging.getLogger("comet_provider.testing.access") if self.config.log_requests else None
        self._runner = web.AppRunner(self.build_app(), access_log=access_log, handle_signals=False)
        await self._runner.setup()
        await web.SockSite(self._runner, sock, backlog=backlog).start()
        bound_port = sock.getsockname()[1]
        shown = f"[{host}]" if family == socket.AF_INET6 else host
        self.url = f"http://{shown}:{bound_port}"
        self._session = ClientSession()
        log.info("CometAPI emulator listening on %s (data in %s)", self.url, self.data_dir)
        return self.url

    async def stop(self) -> None:
        await self._cancel_jobs()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self._owns_data_dir:
            await asyncio.to_thread(shutil.rmtree, self.data_dir, True)

    # ---- request helpers

    def _request_id(self) -> str:
        return f"{time.strftime('%Y%m%d%H%M%S')}{self._rid_prefix}{next(self._request_ids):08d}"

    def _error(self, status: int, message: str, param: str = "", code: str = "invalid_request") -> web.Response:
        rid = self._request_id()
        body = {
            "error": {
                "message": f"{message} (request id: {rid})",
                "type": "comet_api_error",
                "param": param,
                "code": code,
            }
        }
        return _json_response(body, status, headers={"X-Oneapi-Request-Id": rid})

    def _check_request(self, request: web.Request) -> web.Response | None:
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        token = token.strip()
        key = self.config.api_key
        ok = scheme.lower() == "bearer" and bool(token)
        if ok and key is not None:
            ok = hmac.compare_digest(token.encode(), key.encode())
        if not ok:
            self.auth_failures += 1
            return self._error(401, "Invalid token", code="invalid_api_key")
        if self.config.require_version_header and not request.headers.get("X-Runway-Version", "").strip():
            return self._error(400, "the X-Runway-Version header is required (e.g. 2024-11-06)")
        return None

    def _pick_fault(self, endpoint: str) -> str | None:
        queue = self.config.fail_next
        for i, entry in enumerate(queue):
            if entry["endpoint"] == endpoint:
                entry["count"] -= 1
                if entry["count"] <= 0:
                    del queue[i]
                return str(entry["kind"])
        faults = self.config.faults
        if faults.rate <= 0 or endpoint not in faults.endpoints:
            return None
        rng = self._rngs[endpoint]
        if rng.random() >= faults.rate:
            return None
        kinds = [k for k in faults.kinds if k != "task_not_exist" or endpoint == "feed"]
        return rng.choice(kinds) if kinds else None

    async def _fault(self, kind: str, request: web.Request) -> web.Response | None:
        """The faulty answer, or None to carry on normally (after a delay for "slow")."""
        self.fault_counts[kind] = self.fault_counts.get(kind, 0) + 1
        faults = self.config.faults
        if kind == "slow":
            await asyncio.sleep(faults.slow_seconds)
            return None
        if kind == "drop":
            if request.transport is not None:
                request.transport.close()
            return web.Response(status=500)  # never reaches the client
        if kind == "429":
            self._fault_hits += 1
            message = _SATURATED_ZH if self._fault_hits % 2 else "Rate limit reached, please try again later"
            response = self._error(429, message, code="rate_limit_exceeded")
            response.headers["Retry-After"] = _retry_after(faults.retry_after)
            return response
        if kind == "500":
            return self._error(500, "internal server error", code="internal_error")
        if kind in _HTML_PAGES:
            status, title = _HTML_PAGES[kind]
            return web.Response(body=_html_page(title), status=status, content_type="text/html")
        if kind == "task_not_exist":
            return web.Response(body=_TASK_NOT_EXIST, status=400, content_type="application/json")
        return None

    async def _json_body(self, request: web.Request) -> dict[str, Any]:
        raw = await request.read()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            raise _Reject(400, "request body is not valid JSON") from None
        if not isinstance(body, dict):
            raise _Reject(400, "request body must be a JSON object")
        return body

    # ---- API endpoints

    async def _submit(self, request: web.Request) -> web.StreamResponse:
        started = time.perf_counter()
        self.submit_attempts += 1
        rejected = self._check_request(request)
        if rejected is not None:
            return rejected
        # Faults come before anything is created: a faulted submit never starts a render.
        kind = self._pick_fault("submit")
        if kind is not None:
            response = await self._fault(kind, request)
            if response is not None:
                return response
        try:
            body = await self._json_body(request)
            video, prompt, model, options, callback_url = self._validate_submit(body)
        except _Reject as exc:
            return self._error(exc.status, exc.message, exc.param, exc.code)
        task = self._create_task(video, prompt, model, options, callback_url)
        data = {
            "task_id": task.id,
            "state": "",
            "status": "",
            "prompt": prompt,
            "prompt_en": "",
            "video_url": "",
            "last_frame": "",
            "msg": "",
            "create_time": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(task.created_wall)),
            "update_time": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(task.created_wall)),
            "poster": "",
        }
        exec_time = round(max(time.perf_counter() - started, 0.001), 3)
        return _json_response({"code": 200, "msg": "成功", "data": data, "exec_time": exec_time})

    @staticmethod
    def _validate_submit(body: Mapping[str, Any]) -> tuple[str, str, str, dict[str, Any], str | None]:
        values: dict[str, str] = {}
        for name in ("video", "prompt", "model"):
            value = body.get(name)
            if value is None or (isinstance(value, str) and not value.strip()):
                raise _Reject(400, f"{name} is required", param=name)
            if not isinstance(value, str):
                raise _Reject(400, f"{name} must be a string", param=name)
            values[name] = value.strip()
        if not values["video"].lower().startswith(("http://", "https://")):
            raise _Reject(400, "video must be an http(s) URL", param="video")
        options = body.get("options")
        if options is None:
            options = {}
        if not isinstance(options, dict):
            raise _Reject(400, "options must be an object", param="options")
        st = options.get("structure_transformation")
        if st is not None and (isinstance(st, bool) or not isinstance(st, (int, float)) or not 0.0 <= float(st) <= 1.0):
            raise _Reject(
                400,
                "options.structure_transformation must be a number between 0 and 1",
                param="options.structure_transformation",
            )
        flip = options.get("flip")
        if flip is not None and not isinstance(flip, bool):
            raise _Reject(400, "options.flip must be a boolean", param="options.flip")
        seconds = options.get("seconds")
        if seconds is not None and (
            isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not 0 < seconds <= 60
        ):
            raise _Reject(400, "options.seconds must be a number in (0, 60]", param="options.seconds")
        callback_url = body.get("callback_url")
        if callback_url is not None and not isinstance(callback_url, str):
            raise _Reject(400, "callback_url must be a string", param="callback_url")
        return values["video"], values["prompt"], values["model"], options, callback_url or None

    def _create_task(
        self, video: str, prompt: str, model: str, options: dict[str, Any], callback_url: str | None
    ) -> _Task:
        cfg = self.config
        number = self.task_counter
        self.task_counter += 1
        placement = PLACEMENTS[number % 4] if cfg.url_placement == "rotate" else cfg.url_placement
        ready = cfg.not_exist_seconds + cfg.queue_seconds
        start = ready
        now = time.monotonic()
        if cfg.concurrency > 0:
            # Runway-style throttling: a task waits (THROTTLED) for one of `concurrency` slots.
            ready_abs = now + ready
            free = len(self._slots) < cfg.concurrency
            start_abs = ready_abs if free else max(ready_abs, heapq.heappop(self._slots))
            heapq.heappush(self._slots, start_abs + cfg.render_seconds)
            start = start_abs - now
        task = _Task(
            str(uuid.uuid4()),
            prompt=prompt,
            video=video,
            model=model,
            options=options,
            callback_url=callback_url,
            placement=placement,
            render_mode=cfg.render,
            not_exist_at=cfg.not_exist_seconds,
            ready_at=ready,
            start_at=start,
            end_at=start + cfg.render_seconds,
        )
        task.created_mono = now
        self.tasks[task.id] = task
        if task.outcome == "success":
            self._spawn(self._render_job(task))
        else:
            task.done.set()
        if callback_url and callback_url.lower().startswith(("http://", "https://")):
            self._spawn(self._callback_job(task))
        log.debug("task %s created (placement %s, render %s)", task.id, placement, task.render_mode)
        return task

    async def _feed(self, request: web.Request) -> web.StreamResponse:
        self.feeds += 1
        rejected = self._check_request(request)
        if rejected is not None:
            return rejected
        try:
            body = await self._json_body(request)
        except _Reject as exc:
            return self._error(exc.status, exc.message, exc.param, exc.code)
        task_id = body.get("task_id")
        if not isinstance(task_id, str) or not task_id:
            return self._error(400, "task_id is required", param="task_id")
        kind = self._pick_fault("feed")
        if kind is not None:
            response = await self._fault(kind, request)
            if response is not None:
                return response
        task = self.tasks.get(task_id)
        if task is None:
            return web.Response(body=_TASK_NOT_EXIST, status=400, content_type="application/json")
        task.feeds += 1
        now = time.monotonic()
        if not task.visible(now):
            return web.Response(body=_TASK_NOT_EXIST, status=400, content_type="application/json")
        return web.Response(
            body=task.feed_body(now, self.base_url, self._generation),
            content_type="application/json",
            charset="utf-8",
        )

    # ---- rendering and callbacks

    async def _fetch(self, url: str, dest: Path) -> None:
        assert self._session is not None
        partial = dest.with_name(dest.name + ".partial")
        shown = _safe_url(url)
        try:
            timeout = ClientTimeout(total=self.config.fetch_timeout)
            async with self._session.get(url, timeout=timeout) as resp:
                if resp.status != 200:
                    raise RenderError("ASSET.INVALID", f"could not fetch source video: HTTP {resp.status} from {shown}")
                with partial.open("wb") as out:
                    async for chunk in resp.content.iter_chunked(1 << 20):
                        out.write(chunk)
        except (ClientError, asyncio.TimeoutError, OSError) as exc:
            partial.unlink(missing_ok=True)
            detail = str(exc) or type(exc).__name__
            raise RenderError("ASSET.INVALID", f"could not fetch source video from {shown}: {detail}") from None
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        os.replace(partial, dest)

    async def _get_placeholder(self) -> RenderOutput:
        async with self._placeholder_lock:
            if self._placeholder is None:
                folder = self.data_dir / "placeholder"
                folder.mkdir(parents=True, exist_ok=True)
                self._placeholder = await make_placeholder(folder)
            return self._placeholder

    async def _render_job(self, task: _Task) -> None:
        try:
            if task.render_mode == "synthetic":
                output = await self._get_placeholder()
            else:
                source = self._sources_dir / f"{task.id}.source.mp4"
                await self._fetch(task.video, source)
                if task.render_mode == "copy":
                    placeholder = await self._get_placeholder()
                    output = RenderOutput(source, placeholder.poster, placeholder.last_frame)
                else:
                    try:
                        async with self._render_sem:
                            output = await render_video(
                                source,
                                self._renders_dir,
                                task.id,
                                task.prompt,
                                task.options,
                                timeout=self.config.render_timeout,
                            )
                    finally:
                        source.unlink(missing_ok=True)
            task.render = output
            self.renders_done += 1
        except RenderError as exc:
            task.render_error = exc
            self.renders_failed += 1
            log.debug("render of task %s failed: %s", task.id, exc)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("render of task %s crashed", task.id, exc_info=True)
            task.render_error = RenderError("INTERNAL.BAD_OUTPUT.CODE01", f"emulator render error: {exc}")
            self.renders_failed += 1
        finally:
            task.render_finished_wall = time.time()
            task.done.set()

    async def _sleep_until(self, task: _Task, offset: float) -> None:
        delay = task.created_mono + offset - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)

    async def _callback_job(self, task: _Task) -> None:
        assert task.callback_url is not None
        await self._sleep_until(task, max(task.start_at, task.not_exist_at))
        await task.done.wait()
        now = time.monotonic()
        if task.render_error is None:
            await self._sleep_until(task, task.end_at)
            # Timers may fire a hair early; the task is terminal from end_at on.
            now = max(time.monotonic(), task.created_mono + task.end_at)
        payload = task.wrapper(now, self.base_url)
        assert self._session is not None
        try:
            timeout = ClientTimeout(total=self.config.callback_timeout)
            async with self._session.post(
                task.callback_url,
                data=_dumps(payload),
                headers={"Content-Type": "application/json", "User-Agent": "comet-emulator-callback"},
                timeout=timeout,
            ) as resp:
                await resp.read()
                if resp.status >= 300:
                    raise RuntimeError(f"HTTP {resp.status}")
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.callbacks_failed += 1
            self.callback_errors.append(f"{task.id}: {_safe_url(task.callback_url)}: {str(exc) or type(exc).__name__}")
            log.debug("callback for task %s failed: %s", task.id, exc)
        else:
            self.callbacks_sent += 1

    # ---- files

    async def _download_fault(self, request: web.Request) -> web.StreamResponse | None:
        kind = self._pick_fault("download")
        if kind is None or kind == "task_not_exist":
            return None
        return await self._fault(kind, request)

    async def _renders(self, request: web.Request) -> web.StreamResponse:
        faulted = await self._download_fault(request)
        if faulted is not None:
            return faulted
        task_id, _, suffix = request.match_info["name"].partition(".")
        task = self.tasks.get(task_id)
        if task is None or task.render is None:
            raise web.HTTPNotFound()
        files = {
            "mp4": (task.render.video, "video/mp4"),
            "poster.jpg": (task.render.poster, "image/jpeg"),
            "last_frame.jpg": (task.render.last_frame, "image/jpeg"),
        }
        if suffix not in files:
            raise web.HTTPNotFound()
        path, content_type = files[suffix]
        return web.FileResponse(path, chunk_size=_FILE_CHUNK, headers={"Content-Type": content_type})

    async def _media(self, request: web.Request) -> web.StreamResponse:
        media_dir = self.config.media_dir
        rel = request.match_info["path"]
        parts = rel.split("/")
        if rel.startswith("/") or "\\" in rel or "\x00" in rel or any(p in ("..", ".") for p in parts):
            raise web.HTTPForbidden(text="path traversal is not allowed")
        if media_dir is None:
            raise web.HTTPNotFound()
        path = Path(media_dir).joinpath(*[p for p in parts if p])
        if not path.is_file():
            raise web.HTTPNotFound()
        return web.FileResponse(path, chunk_size=_FILE_CHUNK)

    def _write_blob(self, size: int, path: Path) -> None:
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
            return self._error(400, "size must be an integer number of bytes", param="size")
        if not 0 <= size <= MAX_BLOB_SIZE:
            return self._error(400, f"size must be between 0 and {MAX_BLOB_SIZE}", param="size")
        faulted = await self._download_fault(request)
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
        return web.FileResponse(path, chunk_size=_FILE_CHUNK, headers={"Content-Type": "application/octet-stream"})

    # ---- control API

    async def _health(self, request: web.Request) -> web.StreamResponse:
        return _json_response({"status": "ok", "url": self.url})

    def stats(self, include_tasks: bool = True) -> dict[str, Any]:
        now = time.monotonic()
        result: dict[str, Any] = {
            "submissions": self.task_counter,
            "submit_attempts": self.submit_attempts,
            "feeds": self.feeds,
            "faults": dict(self.fault_counts),
            "callbacks": {
                "sent": self.callbacks_sent,
                "failed": self.callbacks_failed,
                "errors": list(self.callback_errors),
            },
            "auth_failures": self.auth_failures,
            "renders": {
                "done": self.renders_done,
                "failed": self.renders_failed,
                "active": sum(1 for t in self.tasks.values() if t.render_state() == "pending"),
            },
        }
        if include_tasks:
            result["tasks"] = {
                task.id: {
                    "prompt": task.prompt,
                    "video": task.video,
                    "model": task.model,
                    "options": task.options,
                    "callback_url": task.callback_url,
                    "submitted_at": task.created_wall,
                    "status": task.state(now)[0],
                    "feeds": task.feeds,
                    "url_placement": task.placement,
                    "render": task.render_state(),
                }
                for task in self.tasks.values()
            }
        return result

    async def _stats(self, request: web.Request) -> web.StreamResponse:
        include = request.query.get("tasks", "1").lower() not in ("0", "false", "no")
        return _json_response(self.stats(include_tasks=include))

    def public_config(self) -> dict[str, Any]:
        return {**self.config.to_dict(), "url": self.url}

    async def _get_config(self, request: web.Request) -> web.StreamResponse:
        return _json_response(self.public_config())

    async def _post_config(self, request: web.Request) -> web.StreamResponse:
        try:
            body = await self._json_body(request)
            self.config.update(body)
        except _Reject as exc:
            return self._error(exc.status, exc.message, exc.param, exc.code)
        except ValueError as exc:
            return self._error(400, str(exc), code="invalid_config")
        # Only a faults update restarts the fault sequence.
        self._apply_config_side_effects(reseed="faults" in body)
        return _json_response(self.public_config())

    async def _reset(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        restore = False
        if raw.strip():
            try:
                body = json.loads(raw)
            except ValueError:
                return self._error(400, "request body is not valid JSON")
            restore = bool(isinstance(body, dict) and body.get("config"))
        await self.reset(config=restore)
        return _json_response({"status": "ok"})

    async def _inbox_store(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        raw = await request.read()
        text = raw.decode("utf-8", "replace")
        try:
            body: Any = json.loads(text) if text.strip() else None
            is_json = body is not None
        except ValueError:
            body, is_json = text, False
        headers = {
            k: v
            for k, v in request.headers.items()
            if k.lower() not in ("authorization", "proxy-authorization", "cookie")
        }
        entry = {
            "method": request.method,
            "path": request.path,
            "query": dict(request.query),
            "headers": headers,
            "received_at": time.time(),
            "json": is_json,
            "body": body,
        }
        inbox = self.inboxes.setdefault(name, deque(maxlen=_INBOX_LIMIT))
        inbox.append(entry)
        return _json_response({"status": "ok", "count": len(inbox)})

    async def _inbox_list(self, request: web.Request) -> web.StreamResponse:
        return _json_response(list(self.inboxes.get(request.match_info["name"], ())))

    async def _inbox_clear(self, request: web.Request) -> web.StreamResponse:
        self.inboxes.pop(request.match_info["name"], None)
        return _json_response({"status": "ok"})


async def serve(
    config: EmulatorConfig,
    host: str = "127.0.0.1",
    port: int = 0,
    ready_file: str | os.PathLike[str] | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    """Run until ``stop`` is set (or SIGTERM/SIGINT when run on the main thread)."""
    import signal

    server = EmulatorServer(config)
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, stop.set)
    try:
        url = await server.start(host, port)
        if ready_file is not None:
            target = Path(ready_file)
            partial = target.with_name(target.name + ".partial")
            partial.write_text(url + "\n")
            os.replace(partial, target)
        print(f"CometAPI emulator listening on {url}", file=sys.stderr, flush=True)
        await stop.wait()
    finally:
        await server.stop()


# --------------------------------------------------------------------------- client side


@functools.lru_cache(maxsize=1)
def _ssl_context() -> ssl.SSLContext:
    # httpx builds (and loads CA files into) a new context per client unless given one: ~50 ms each.
    return ssl.create_default_context()


class _EmulatorClient:
    """Control-API calls shared by :class:`CometEmulator` and :class:`EmulatorProcess`."""

    url: str
    api_key: str | None
    _initial_api_key: str | None = None
    _http_client: httpx.Client | None = None

    def _http(self) -> httpx.Client:
        if not getattr(self, "url", ""):
            raise RuntimeError("the emulator is not running")
        if self._http_client is None:
            import httpx  # only the client side needs it; keeps the server process's start lean

            # trust_env=False: a proxy from the environment must never see loopback traffic.
            self._http_client = httpx.Client(base_url=self.url, timeout=60.0, trust_env=False, verify=_ssl_context())
        return self._http_client

    def _close_http(self) -> None:
        if self._http_client is not None:
            self._http_client.close()
            self._http_client = None

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._http().request(method, path, **kwargs)
        if response.status_code >= 400:
            try:
                message = response.json()["error"]["message"]
            except Exception:
                message = response.text
            if response.status_code == 400:
                raise ValueError(message)
            response.raise_for_status()
        return response.json()

    def health(self) -> bool:
        import httpx

        try:
            return self._http().get("/_emulator/health", timeout=2.0).status_code == 200
        except httpx.HTTPError:
            return False

    def stats(self, tasks: bool = True) -> dict[str, Any]:
        """Counters and (unless ``tasks=False``) every task with its current status."""
        result: dict[str, Any] = self._call("GET", "/_emulator/stats", params={"tasks": int(tasks)})
        return result

    def config(self) -> dict[str, Any]:
        """The current configuration (``api_key_set`` instead of the key)."""
        result: dict[str, Any] = self._call("GET", "/_emulator/config")
        return result

    def configure(self, **partial: Any) -> dict[str, Any]:
        """Change config keys while running; ``faults`` is merged, ``fail_next`` replaced."""
        if "faults" in partial and hasattr(partial["faults"], "to_dict"):
            partial["faults"] = partial["faults"].to_dict()
        partial = {k: os.fspath(v) if isinstance(v, os.PathLike) else v for k, v in partial.items()}
        result: dict[str, Any] = self._call("POST", "/_emulator/config", json=partial)
        if "api_key" in partial:
            self.api_key = partial["api_key"]
        return result

    def reset(self, config: bool = False) -> None:
        """Forget tasks, counters, inboxes and pending one-shot faults; ``config=True``
        also restores the configuration the emulator started with."""
        self._call("POST", "/_emulator/reset", json={"config": config})
        if config:
            self.api_key = self._initial_api_key

    def inbox(self, name: str) -> list[dict[str, Any]]:
        """Requests stored at ``/_emulator/inbox/<name>`` (oldest first)."""
        result: list[dict[str, Any]] = self._call("GET", f"/_emulator/inbox/{name}")
        return result

    def clear_inbox(self, name: str) -> None:
        self._call("DELETE", f"/_emulator/inbox/{name}")

    @property
    def media_dir(self) -> Path | None:
        """The folder served at ``/media/`` (None when unset)."""
        media = self.config()["media_dir"]
        return Path(media) if media else None

    @property
    def data_dir(self) -> Path:
        """Where renders, fetched sources and blobs are written."""
        return Path(self.config()["data_dir"])

    def inbox_url(self, name: str) -> str:
        return f"{self.url}/_emulator/inbox/{name}"

    def media_url(self, relative_path: str) -> str:
        """URL of a file staged in ``media_dir``."""
        return f"{self.url}/media/{relative_path.lstrip('/')}"

    def blob_url(self, size: int) -> str:
        return f"{self.url}/_emulator/blob?size={int(size)}"

    def connection_json(self, conn_type: str = "comet", **extra: Any) -> str:
        """JSON for ``AIRFLOW_CONN_COMET_DEFAULT`` pointing at this emulator."""
        conn: dict[str, Any] = {
            "conn_type": conn_type,
            "host": self.url,
            # Any non-empty token works when the emulator has no key configured.
            "password": self.api_key or "comet-emulator",
        }
        if extra:
            conn["extra"] = extra
        return json.dumps(conn)


class CometEmulator(_EmulatorClient):
    """The emulator in a background thread of this process, with its own event loop.

    ``CometEmulator(**config)`` takes any :class:`EmulatorConfig` key; ``port=0``
    picks a free port. Use as a context manager, or ``start()``/``stop()``.
    """

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, loop: str = "auto", **config: Any) -> None:
        self._config = EmulatorConfig.from_kwargs(config)
        self.host = host
        self.port = port
        self.url = ""
        self.api_key = self._config.api_key
        self._initial_api_key = self.api_key
        self._loop_kind = loop
        self._server: EmulatorServer | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> CometEmulator:
        if self._thread is not None:
            return self
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = new_event_loop(self._loop_kind)
            asyncio.set_event_loop(loop)
            self._loop = loop
            try:
                self._server = EmulatorServer(copy.deepcopy(self._config))
                self.url = loop.run_until_complete(self._server.start(self.host, self.port))
            except BaseException as exc:
                failure.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            try:
                loop.run_forever()
            finally:
                loop.run_until_complete(self._server.stop())
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.close()

        self._thread = threading.Thread(target=run, name="comet-emulator", daemon=True)
        self._thread.start()
        ready.wait()
        if failure:
            self._thread.join()
            self._thread = None
            raise failure[0]
        return self

    def stop(self) -> None:
        self._close_http()
        if self._thread is None or self._loop is None:
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=30)
        self._thread = None
        self._loop = None
        self._server = None
        self.url = ""

    def __enter__(self) -> CometEmulator:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"CometEmulator(url={self.url!r})"


def _package_root() -> str:
    return str(Path(__file__).resolve().parents[2])


class EmulatorProcess(_EmulatorClient):
    """The emulator in a child process (``python -m comet_provider.testing``).

    ``cpu`` (an int or a collection of ints) pins the child with ``sched_setaffinity``.
    The API key travels in the environment, not on the command line (``ps`` shows argv).
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        cpu: int | Iterable[int] | None = None,
        python: str = sys.executable,
        startup_timeout: float = 30.0,
        env: Mapping[str, str] | None = None,
        loop: str = "auto",
        **config: Any,
    ) -> None:
        self._config = EmulatorConfig.from_kwargs(config)  # validate here, not in the child
        # Validated values (paths as strings, FaultConfig as a dict) for the child's --config.
        public = self._config.to_dict()
        self._config_values = {k: public[k] for k in config if k in public}
        self.host = host
        self.port = port
        self.cpus: set[int] | None = None
        if cpu is not None:
            self.cpus = {cpu} if isinstance(cpu, int) else {int(c) for c in cpu}
        self.python = python
        self.startup_timeout = startup_timeout
        self._env = dict(env or {})
        self._loop_kind = loop
        self.url = ""
        self.api_key = self._config.api_key
        self._initial_api_key = self.api_key
        self.process: subprocess.Popen[bytes] | None = None
        self._workdir: Path | None = None
        self.log_path: Path | None = None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def command(self, ready_file: str) -> list[str]:
        cmd = [
            self.python,
            "-m",
            "comet_provider.testing",
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--ready-file",
            ready_file,
            "--loop",
            self._loop_kind,
        ]
        if self._config_values:
            cmd += ["--config", json.dumps(self._config_values)]
        if self.cpus:
            cmd += ["--cpu", ",".join(str(c) for c in sorted(self.cpus))]
        return cmd

    def start(self) -> EmulatorProcess:
        if self.process is not None:
            return self
        self._workdir = Path(tempfile.mkdtemp(prefix="comet-emulator-proc-"))
        ready_file = self._workdir / "ready"
        self.log_path = self._workdir / "emulator.log"
        env = {**os.environ, **self._env}
        env.pop(API_KEY_ENV, None)
        if self.api_key is not None:
            env[API_KEY_ENV] = self.api_key
        root = _package_root()
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
        with self.log_path.open("wb") as log_file:
            self.process = subprocess.Popen(
                self.command(str(ready_file)),
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                env=env,
            )
        if self.cpus:
            # The child pins itself too (--cpu); this covers the moments before it does.
            with contextlib.suppress(OSError):
                os.sched_setaffinity(self.process.pid, self.cpus)
        try:
            self._wait_ready(ready_file)
        except BaseException:
            self.stop()
            raise
        return self

    def _log_tail(self) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")[-4000:]

    def _wait_ready(self, ready_file: Path) -> None:
        assert self.process is not None
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            code = self.process.poll()
            if code is not None:
                raise RuntimeError(f"emulator process exited with {code}:\n{self._log_tail()}")
            if not self.url and ready_file.exists():
                self.url = ready_file.read_text().strip()
            if self.url and self.health():
                return
            time.sleep(0.02)
        raise TimeoutError(f"emulator did not answer within {self.startup_timeout}s:\n{self._log_tail()}")

    def stop(self) -> None:
        self._close_http()
        proc, self.process = self.process, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None
        self.url = ""

    def __enter__(self) -> EmulatorProcess:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"EmulatorProcess(url={self.url!r}, pid={self.pid})"
