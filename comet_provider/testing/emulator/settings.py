"""What the emulator can be told: :class:`EmulatorConfig`, :class:`FaultConfig` and their validation."""

from __future__ import annotations

import copy
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

PLACEMENTS: tuple[str, ...] = ("video_url", "result_url", "output", "inner_video_url")
URL_PLACEMENTS: tuple[str, ...] = ("rotate", *PLACEMENTS, "none")
RENDER_MODES: tuple[str, ...] = ("ffmpeg", "copy", "synthetic")
#: How ``GET /runwayml/v1/tasks/{id}`` answers: Runway's bare task, or ``/runway/feed``'s envelope.
OFFICIAL_TASK_SHAPES: tuple[str, ...] = ("bare", "envelope")
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


_SECONDS = (
    "not_exist_seconds",
    "queue_seconds",
    "render_seconds",
    "callback_timeout",
    "fetch_timeout",
    "render_timeout",
)


@dataclass
class EmulatorConfig:
    """Everything the emulator can be told. All keys except ``data_dir`` and
    ``log_requests`` can be changed while it runs (``POST /_emulator/config``).

    ``link_ttl``: seconds a render's links (video, poster, last frame) keep working
    after the task succeeded, like a signed CDN URL; None = forever. Expired links
    answer HTTP 403 with an S3-style XML error.

    ``official_task_shape``: the answer of ``GET /runwayml/v1/tasks/{id}``, "bare" (Runway's
    task object) or "envelope" (the same body as ``POST /runway/feed``). Faults for the
    "submit" and "feed" endpoints apply to both routes' submit and poll."""

    api_key: str | None = None
    require_version_header: bool = True
    not_exist_seconds: float = 1.0
    queue_seconds: float = 0.5
    render_seconds: float = 3.0
    concurrency: int = 0
    url_placement: str = "rotate"
    render: str = "ffmpeg"
    official_task_shape: str = "bare"
    render_workers: int = 2
    media_dir: str | None = None
    data_dir: str | None = None
    public_url: str | None = None
    link_ttl: float | None = None
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
        elif key in _SECONDS:
            setattr(self, key, _number(key, value))
        elif key == "link_ttl":
            self.link_ttl = None if value is None else _number(key, value)
        elif key == "concurrency":
            self.concurrency = _integer(key, value)
        elif key == "render_workers":
            self.render_workers = _integer(key, value, minimum=1)
        elif key == "url_placement":
            self.url_placement = _choice(key, value, URL_PLACEMENTS)
        elif key == "render":
            self.render = _choice(key, value, RENDER_MODES)
        elif key == "official_task_shape":
            self.official_task_shape = _choice(key, value, OFFICIAL_TASK_SHAPES)
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
            "official_task_shape": self.official_task_shape,
            "render_workers": self.render_workers,
            "media_dir": self.media_dir,
            "data_dir": self.data_dir,
            "public_url": self.public_url,
            "link_ttl": self.link_ttl,
            "callback_timeout": self.callback_timeout,
            "fetch_timeout": self.fetch_timeout,
            "render_timeout": self.render_timeout,
            "log_requests": self.log_requests,
            "faults": self.faults.to_dict(),
            "fail_next": [dict(item) for item in self.fail_next],
        }
