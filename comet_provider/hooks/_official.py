"""The official-format route's request and answer (``POST /runwayml/v1/video_to_video``).

Pure functions, no I/O. The hook gets sources already resolved (an http(s) URL, possibly
signed, or a ``data:`` URI); no message here ever shows more of one than :func:`shown_uri`.
The operator's full per-route validation happens earlier (:mod:`comet_provider.utils.validation`);
these checks only keep a malformed call from reaching a paid endpoint.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from comet_provider.exceptions import CometMalformedResponseError, CometValidationError, without_query
from comet_provider.models import RunwayStatus, RunwayTask

__all__ = ["MAX_PROMPT_TEXT_CHARS", "MAX_SEED", "official_body", "official_submitted_task", "shown_uri"]

#: Runway's limit for ``promptText``.
MAX_PROMPT_TEXT_CHARS = 1000
MAX_SEED = 4_294_967_295
_THRESHOLDS = frozenset({"auto", "low"})
_SPACE = re.compile(r"\s")


def shown_uri(uri: str) -> str:
    """``uri`` as it may appear in a message: a URL without its query, a ``data:`` URI by its type and size."""
    if uri[:5].lower() == "data:":
        head = uri[: uri.find(",")] if "," in uri[:200] else uri[:40]
        return f"{head},… ({len(uri)} characters)"
    return without_query(uri)


def _check_uri(field: str, value: Any) -> str:
    if not isinstance(value, str):
        raise CometValidationError(field, f"expected an http(s) URL or a data: URI, got {type(value).__name__}")
    uri = value.strip()
    colon = uri.find(":", 0, 16)  # bounded: a data: URI may be megabytes long
    scheme = uri[:colon].lower() if colon > 0 else ""
    if scheme not in ("http", "https", "data"):
        shown = scheme or "none"
        raise CometValidationError(
            field, f"scheme {shown!r} is not supported: pass a resolved source (an http(s) URL or a data: URI)"
        )
    if scheme == "data" and not uri[: max(uri.find(","), 0)].lower().endswith(";base64"):
        raise CometValidationError(field, f"{shown_uri(uri)} is not a base64 data: URI")
    if _SPACE.search(uri):  # a regex: a data: URI may be megabytes long
        raise CometValidationError(field, f"{shown_uri(uri)} contains whitespace; percent-encode it")
    if scheme != "data":
        try:
            host = urlsplit(uri).hostname
        except ValueError:
            host = None
        if not host:
            raise CometValidationError(field, f"{shown_uri(uri)} is not a URL with a host")
    return uri


def official_body(
    *,
    video_uri: str,
    prompt_text: str,
    model: str,
    seed: int | None = None,
    references: Sequence[str | Mapping[str, Any]] | None = None,
    ratio: str | None = None,
    content_moderation: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The JSON body of an official-format video-to-video submission; each problem names its field."""
    body: dict[str, Any] = {"videoUri": _check_uri("video_uri", video_uri)}
    if not isinstance(prompt_text, str) or not prompt_text.strip():
        raise CometValidationError("prompt_text", "must be a non-empty string")
    text = prompt_text.strip()
    if len(text) > MAX_PROMPT_TEXT_CHARS:
        raise CometValidationError(
            "prompt_text", f"is {len(text)} characters long; Runway accepts at most {MAX_PROMPT_TEXT_CHARS}"
        )
    body["promptText"] = text
    if not isinstance(model, str) or not model.strip():
        raise CometValidationError("model", f"expected a model name such as 'gen4_aleph', got {model!r}")
    body["model"] = model.strip()
    if seed is not None:
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
            raise CometValidationError("seed", f"expected an integer between 0 and {MAX_SEED}, got {seed!r}")
        body["seed"] = seed
    if references is not None:
        body["references"] = _references(references)
    if ratio is not None:
        body["ratio"] = _ratio(ratio)
    if content_moderation is not None:
        body["contentModeration"] = _moderation(content_moderation)
    return body


def _references(references: Any) -> list[dict[str, str]]:
    if isinstance(references, (str, Mapping)) or not isinstance(references, Sequence):
        raise CometValidationError("references", f"expected a list of image URIs, got {type(references).__name__}")
    items = []
    for n, item in enumerate(references):
        field = f"references[{n}]"
        if isinstance(item, Mapping):  # already Runway's shape
            if item.get("type", "image") != "image":
                raise CometValidationError(field, f"only 'image' references exist, got type {item.get('type')!r}")
            item = item.get("uri")
        items.append({"type": "image", "uri": _check_uri(field, item)})
    return items


def _ratio(ratio: Any) -> str:
    parts = ratio.strip().split(":") if isinstance(ratio, str) else []
    if len(parts) != 2 or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise CometValidationError("ratio", f"expected 'WIDTH:HEIGHT' such as '1280:720', got {ratio!r}")
    return f"{int(parts[0])}:{int(parts[1])}"


def _moderation(value: Any) -> dict[str, str]:
    if not isinstance(value, Mapping):
        raise CometValidationError(
            "content_moderation", f"expected {{'publicFigureThreshold': 'auto' | 'low'}}, got {value!r}"
        )
    unknown = set(value) - {"publicFigureThreshold", "public_figure_threshold"}
    threshold = value.get("publicFigureThreshold", value.get("public_figure_threshold"))
    if unknown or threshold not in _THRESHOLDS:
        raise CometValidationError(
            "content_moderation", f"expected {{'publicFigureThreshold': 'auto' | 'low'}}, got {dict(value)!r}"
        )
    return {"publicFigureThreshold": threshold}


def official_submitted_task(answer: dict[str, Any]) -> RunwayTask:
    """The new task from the submission's answer: Runway's ``{"id"}``, or the envelope's ``data.task_id``."""
    task_id = answer.get("id")
    data = answer.get("data")
    if not (isinstance(task_id, str) and task_id.strip()) and isinstance(data, dict):
        task_id = data.get("task_id") or data.get("id")
    if not isinstance(task_id, str) or not task_id.strip():
        raise CometMalformedResponseError(
            "CometAPI accepted the submission but returned no task id ('id' or data.task_id), so the render "
            "cannot be tracked. Look for it in the CometAPI dashboard before submitting again."
        )
    return RunwayTask(task_id=task_id.strip(), status=RunwayStatus.PENDING, raw=answer)
