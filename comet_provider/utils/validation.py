"""Checks on what a user asks for, run before any request is sent.

Every error names the field, so a DAG author sees at once what to fix.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from comet_provider.exceptions import CometValidationError

__all__ = [
    "MAX_PROMPT_CHARS",
    "build_video2video_payload",
    "check_flag",
    "check_http_url",
    "check_task_id",
    "video2video_request",
]

#: Runway's limit for prompt text.
MAX_PROMPT_CHARS = 1000
_MAX_URL_CHARS = 2048


def check_http_url(field: str, value: Any) -> str:
    """An absolute http(s) URL with a host, or a :class:`CometValidationError` naming ``field``."""
    if not isinstance(value, str):
        raise CometValidationError(field, f"expected an http(s) URL string, got {type(value).__name__}")
    url = value.strip()
    if not url:
        raise CometValidationError(field, "must not be empty")
    if len(url) > _MAX_URL_CHARS:
        raise CometValidationError(field, f"URL is {len(url)} characters long; the limit is {_MAX_URL_CHARS}")
    if any(ch.isspace() for ch in url):
        raise CometValidationError(field, "URL contains whitespace; percent-encode it")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        raise CometValidationError(field, f"not a valid URL ({exc})") from None
    if parts.scheme not in ("http", "https"):
        shown = parts.scheme or "none"
        raise CometValidationError(
            field,
            f"scheme {shown!r} is not supported; CometAPI fetches it over the internet, so it must be "
            "an http:// or https:// URL (stage local or s3:// files behind a public or presigned URL)",
        )
    if not parts.hostname:
        raise CometValidationError(field, "URL has no host")
    return url


def check_task_id(value: Any, field: str = "runway_task_id") -> str:
    if not isinstance(value, str) or not value.strip():
        raise CometValidationError(field, f"expected a Runway task id, got {value!r}")
    return value.strip()


def _check_number(field: str, value: Any, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise CometValidationError(field, f"expected a number between {low:g} and {high:g}, got {value!r}")
    if not math.isfinite(value) or not low <= value <= high:
        raise CometValidationError(field, f"must be between {low:g} and {high:g}, got {value!r}")
    return value


def build_video2video_payload(
    *,
    video: Any,
    prompt: Any,
    model: Any = "gen4",
    options: Any = None,
    callback_url: Any = None,
) -> dict[str, Any]:
    """Validate a video-to-video request and return the JSON body to send."""
    video_url = check_http_url("video", video)
    if not isinstance(prompt, str):
        raise CometValidationError("prompt", f"expected text, got {type(prompt).__name__}")
    text = prompt.strip()
    if not text:
        raise CometValidationError("prompt", "must describe the style; it is empty")
    if len(text) > MAX_PROMPT_CHARS:
        raise CometValidationError(
            "prompt", f"is {len(text)} characters long; Runway accepts at most {MAX_PROMPT_CHARS}"
        )
    if not isinstance(model, str) or not model.strip():
        raise CometValidationError("model", f"expected a model name such as 'gen4', got {model!r}")
    if options is None:
        options = {}
    if not isinstance(options, Mapping):
        raise CometValidationError("options", f"expected a dict, got {type(options).__name__}")
    opts = dict(options)
    for key in opts:
        if not isinstance(key, str):
            raise CometValidationError("options", f"keys must be strings, got {key!r}")
    if opts.get("structure_transformation") is not None:
        _check_number("structure_transformation", opts["structure_transformation"], 0.0, 1.0)
    if opts.get("flip") is not None and not isinstance(opts["flip"], bool):
        raise CometValidationError("flip", f"expected true or false, got {opts['flip']!r}")
    if opts.get("seconds") is not None:
        _check_number("seconds", opts["seconds"], 1, 60)
    opts = {key: value for key, value in opts.items() if value is not None}
    try:
        json.dumps(opts, allow_nan=False)  # NaN/Infinity are not JSON: the API would refuse the body
    except (TypeError, ValueError) as exc:
        raise CometValidationError("options", f"must be JSON-serializable ({exc})") from None
    body: dict[str, Any] = {"video": video_url, "prompt": text, "model": model.strip(), "options": opts}
    if callback_url is not None and callback_url != "":
        body["callback_url"] = check_http_url("callback_url", callback_url)
    return body


def video2video_request(
    *,
    video: Any,
    prompt: Any,
    model: Any = "gen4",
    structure_transformation: Any = None,
    flip: Any = None,
    options: Any = None,
    callback_url: Any = None,
) -> dict[str, Any]:
    """The operator's arguments as the validated request body (the operator and the spend plan share it)."""
    if options is not None and not isinstance(options, Mapping):
        raise CometValidationError("options", f"expected a dict, got {type(options).__name__}")
    merged = dict(options or {})
    if structure_transformation is not None:
        merged["structure_transformation"] = structure_transformation
    if flip is not None:
        merged["flip"] = flip
    return build_video2video_payload(video=video, prompt=prompt, model=model, options=merged, callback_url=callback_url)


_TRUE = frozenset({"true", "1", "yes", "on"})
_FALSE = frozenset({"false", "0", "no", "off", "", "none"})


def check_flag(field: str, value: Any) -> bool:
    """A bool, or its text as a template renders it ("True", "false", ...)."""
    if isinstance(value, bool):
        return value
    if value is None:
        return False
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise CometValidationError(field, f"expected true or false, got {value!r}")
