"""Runway's own format, as CometAPI relays it: the ``POST /runwayml/v1/video_to_video`` body and
the bare task answered by ``GET /runwayml/v1/tasks/{id}``.

A body Runway refuses comes back the way the gateway relays an upstream error (its task error
``{"code", "message", "data": null}`` with Runway's validation error as the message), each
problem naming its field (``promptText``, ``references[0].uri``, ...).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from comet_provider.testing.emulator.sources import check_data_uri, source_identity
from comet_provider.testing.emulator.wire import Errors, Reject, dumps

MAX_PROMPT_TEXT = 1000
MAX_SEED = 4_294_967_295
CONTENT_MODERATION_THRESHOLDS = ("auto", "low")
_KEYS = frozenset({"videoUri", "promptText", "model", "seed", "references", "ratio", "contentModeration"})
_RATIO = re.compile(r"([1-9][0-9]{0,4}):([1-9][0-9]{0,4})")
_PATH_PART = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


@dataclass(frozen=True)
class OfficialInputs:
    """A validated official-format submission (URIs hidden from repr: they may be signed or huge)."""

    video_uri: str = field(repr=False)
    prompt_text: str
    model: str
    seed: int | None = None
    references: tuple[str, ...] = field(default=(), repr=False)
    ratio: str | None = None
    content_moderation: dict[str, str] | None = None
    #: :func:`source_identity` of the clip and of each reference, worked out once (a data: URI is hashed).
    source: str = field(init=False)
    reference_sources: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "source", source_identity(self.video_uri))
        object.__setattr__(self, "reference_sources", tuple(source_identity(uri) for uri in self.references))


def _uri(value: Any, param: str, media: str) -> str:
    if not isinstance(value, str) or not value:
        raise Reject(400, "Expected a non-empty string", param=param)
    if value[:5].lower() == "data:":
        try:
            check_data_uri(value, media)
        except ValueError as exc:
            raise Reject(400, f"Invalid data URI: it {exc}", param=param) from None
        return value
    try:
        parts = urlsplit(value)
        host = parts.hostname
    except ValueError:
        host = None
        parts = None
    if parts is None or parts.scheme.lower() not in ("http", "https") or not host or any(c.isspace() for c in value):
        raise Reject(400, f"Invalid {media} URI: expected an http(s) URL or a base64 data: URI", param=param)
    return value


def _seed(value: Any) -> int:
    # JSON has one number type: 7.0 is the integer 7, as for Runway's own (JavaScript) validation.
    integral = isinstance(value, int) or (isinstance(value, float) and math.isfinite(value) and value.is_integer())
    if isinstance(value, bool) or not integral or not 0 <= value <= MAX_SEED:
        raise Reject(400, f"Expected an integer between 0 and {MAX_SEED}", param="seed")
    return int(value)


def _references(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise Reject(400, 'Expected an array of {"type": "image", "uri": ...}', param="references")
    uris = []
    for n, item in enumerate(value):
        where = f"references[{n}]"
        if not isinstance(item, Mapping):
            raise Reject(400, 'Expected an object {"type": "image", "uri": ...}', param=where)
        unknown = sorted(set(item) - {"type", "uri"})
        if unknown:
            raise Reject(400, f"Unrecognized key(s) in object: {', '.join(map(repr, unknown))}", param=where)
        if item.get("type") != "image":
            raise Reject(400, "Invalid literal value, expected 'image'", param=f"{where}.type")
        uris.append(_uri(item.get("uri"), f"{where}.uri", "image"))
    return tuple(uris)


def _moderation(value: Any) -> dict[str, str]:
    if not isinstance(value, Mapping):
        raise Reject(400, "Expected an object", param="contentModeration")
    unknown = sorted(set(value) - {"publicFigureThreshold"})
    if unknown:
        raise Reject(400, f"Unrecognized key(s) in object: {', '.join(map(repr, unknown))}", param="contentModeration")
    threshold = value.get("publicFigureThreshold")
    if threshold is None:
        return {}
    if threshold not in CONTENT_MODERATION_THRESHOLDS:
        raise Reject(400, "Expected 'auto' | 'low'", param="contentModeration.publicFigureThreshold")
    return {"publicFigureThreshold": str(threshold)}


def validate_official(body: Mapping[str, Any]) -> OfficialInputs:
    """The submission in ``body``; :class:`Reject` naming the first bad field (Runway's camelCase path)."""
    unknown = sorted(set(body) - _KEYS)
    if unknown:
        raise Reject(400, f"Unrecognized key(s) in object: {', '.join(map(repr, unknown))}", param=unknown[0])
    if body.get("videoUri") is None:
        raise Reject(400, "Required", param="videoUri")
    video_uri = _uri(body["videoUri"], "videoUri", "video")
    prompt = body.get("promptText")
    if prompt is None:
        raise Reject(400, "Required", param="promptText")
    if not isinstance(prompt, str) or not prompt.strip():
        raise Reject(400, "Expected a non-empty string", param="promptText")
    if len(prompt) > MAX_PROMPT_TEXT:
        raise Reject(400, f"String must contain at most {MAX_PROMPT_TEXT} character(s)", param="promptText")
    model = body.get("model")
    if model is None:
        raise Reject(400, "Required", param="model")
    if not isinstance(model, str) or not model.strip():
        raise Reject(400, "Expected a model name such as 'gen4_aleph'", param="model")
    seed = None if body.get("seed") is None else _seed(body["seed"])
    references = () if body.get("references") is None else _references(body["references"])
    ratio = body.get("ratio")
    if ratio is not None and (not isinstance(ratio, str) or _RATIO.fullmatch(ratio) is None):
        raise Reject(400, "Expected 'WIDTH:HEIGHT', e.g. '1280:720'", param="ratio")
    moderation = None if body.get("contentModeration") is None else _moderation(body["contentModeration"])
    return OfficialInputs(video_uri, prompt, model.strip(), seed, references, ratio, moderation)


def _path(param: str) -> list[str | int]:
    return [int(index) if index else name for name, index in _PATH_PART.findall(param)]


def rejected(errors: Errors, exc: Reject) -> web.Response:
    """Runway's validation error, relayed the way the gateway relays an upstream error."""
    issue = {"code": "invalid", "path": _path(exc.param), "message": exc.message}
    runway = {"error": "Validation of body failed", "issues": [issue]}
    body = {"code": "fail_to_fetch_task", "message": dumps(runway).decode(), "data": None}
    return web.Response(
        body=dumps(body),
        status=exc.status,
        content_type="application/json",
        charset="utf-8",
        headers={"X-Oneapi-Request-Id": errors.request_id()},
    )


def bare_task(wrapper: Mapping[str, Any], render_url: str | None) -> dict[str, Any]:
    """Runway's task object for the state in ``wrapper`` (the feed envelope's ``data``).

    ``render_url`` is the output (None when the task has none, or the emulator withholds it)."""
    inner = wrapper["data"]
    task: dict[str, Any] = {"id": inner["id"], "status": inner["status"], "createdAt": inner["createdAt"]}
    if inner["status"] == "RUNNING":
        task["progress"] = inner.get("progress", 0.0)
    elif inner["status"] == "SUCCEEDED" and render_url is not None:
        task["output"] = [render_url]
    elif inner["status"] == "FAILED":
        task["failure"] = inner.get("failure", "")
        if inner.get("failureCode"):
            task["failureCode"] = inner["failureCode"]
    return task
