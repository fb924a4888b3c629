"""Checks on what a user asks for, run before any request is sent.

Every error names the field, so a DAG author sees at once what to fix.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from comet_provider.exceptions import CometValidationError
from comet_provider.utils.routes import Route, route_for

if TYPE_CHECKING:
    from comet_provider.utils.sources import Source

__all__ = [
    "MAX_PROMPT_CHARS",
    "MAX_SEED",
    "build_video2video_payload",
    "check_flag",
    "check_http_url",
    "check_task_id",
    "request_route",
    "request_sources",
    "video2video_request",
]

#: Runway's limit for prompt text.
MAX_PROMPT_CHARS = 1000
#: The largest ``seed`` Runway accepts (an unsigned 32-bit integer).
MAX_SEED = 4_294_967_295
_MAX_URL_CHARS = 2048
_GEN4_ONLY = "exists only on the gen4 route (model 'gen4', or route='pro')"
_OFFICIAL_ONLY = "exists only on the official route (model 'gen4_aleph', or route='official')"
_RATIO = re.compile(r"^([1-9][0-9]*):([1-9][0-9]*)$")
_THRESHOLDS = ("auto", "low")


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
    """Validate a gen4 video-to-video request and return the JSON body to send (``video`` an http(s) URL)."""
    return _gen4_body(check_http_url("video", video), prompt, model, options, callback_url)


def _check_prompt(prompt: Any) -> str:
    if not isinstance(prompt, str):
        raise CometValidationError("prompt", f"expected text, got {type(prompt).__name__}")
    text = prompt.strip()
    if not text:
        raise CometValidationError("prompt", "must describe the style; it is empty")
    if len(text) > MAX_PROMPT_CHARS:
        raise CometValidationError(
            "prompt", f"is {len(text)} characters long; Runway accepts at most {MAX_PROMPT_CHARS}"
        )
    return text


def _check_model(model: Any) -> str:
    if not isinstance(model, str) or not model.strip():
        raise CometValidationError("model", f"expected a model name such as 'gen4', got {model!r}")
    return model.strip()


def _gen4_body(video: str, prompt: Any, model: Any, options: Any, callback_url: Any) -> dict[str, Any]:
    text = _check_prompt(prompt)
    model = _check_model(model)
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
    body: dict[str, Any] = {"video": video, "prompt": text, "model": model, "options": opts}
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
    seed: Any = None,
    references: Any = None,
    ratio: Any = None,
    content_moderation: Any = None,
    route: Any = None,
) -> dict[str, Any]:
    """The operator's arguments as the validated request, for the route ``model`` (or ``route``) selects.

    It holds source locations (URLs, storage locations, local paths), never signed URLs or data:
    URIs: it is what the pay-once fingerprint hashes; the operator resolves its sources at submission.
    On the gen4 route it is exactly the gen4 body (``video``, ``prompt``, ``model``, ``options``,
    ``callback_url``); on the official route it starts with ``"route": "official"``.
    """
    from comet_provider.utils.sources import check_source

    chosen = route_for(_check_model(model), route)
    if chosen is Route.PRO:
        _refuse_given(
            _OFFICIAL_ONLY, seed=seed, references=references, ratio=ratio, content_moderation=content_moderation
        )
        source = check_source("video", video, media="video", route=chosen)
        if options is not None and not isinstance(options, Mapping):
            raise CometValidationError("options", f"expected a dict, got {type(options).__name__}")
        merged = dict(options or {})
        if structure_transformation is not None:
            merged["structure_transformation"] = structure_transformation
        if flip is not None:
            merged["flip"] = flip
        return _gen4_body(source.location, prompt, model, merged, callback_url)
    _refuse_given(
        _GEN4_ONLY,
        flip=flip,
        structure_transformation=structure_transformation,
        options=options,
        callback_url=callback_url,
    )
    request: dict[str, Any] = {
        "route": Route.OFFICIAL.value,
        "video": check_source("video", video, media="video", route=chosen).location,
        "prompt": _check_prompt(prompt),
        "model": _check_model(model),
    }
    if _given(seed):
        request["seed"] = _check_seed(seed)
    if _given(references):
        request["references"] = [
            check_source(f"references[{i}]", ref, media="image", route=chosen).location
            for i, ref in enumerate(_reference_list(references))
        ]
    if _given(ratio):
        request["ratio"] = _check_ratio(ratio)
    if _given(content_moderation):
        request["content_moderation"] = _check_moderation(content_moderation)
    return request


def _refuse_given(why: str, **fields: Any) -> None:
    for name, value in fields.items():
        if _given(value):
            raise CometValidationError(name, why)


def _given(value: Any) -> bool:
    # A template renders an unset optional argument as "" (and a dict or list one as empty).
    if isinstance(value, (str, Mapping, list, tuple)):
        return bool(value.strip() if isinstance(value, str) else value)
    return value is not None


def _check_seed(value: Any) -> int:
    seed = value
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():  # templated: text
        seed = int(value.strip())
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise CometValidationError("seed", f"expected a whole number from 0 to {MAX_SEED}, got {value!r}")
    if not 0 <= seed <= MAX_SEED:
        raise CometValidationError("seed", f"must be from 0 to {MAX_SEED}, got {seed}")
    return seed


def _reference_list(value: Any) -> list[Any]:
    if isinstance(value, (list, tuple)):
        return list(value)
    if isinstance(value, str) or hasattr(value, "__fspath__") or getattr(value, "protocol", None) is not None:
        return [value]  # one reference image
    raise CometValidationError(
        "references", f"expected a list of image URLs, storage locations or paths, got {type(value).__name__}"
    )


def _check_ratio(value: Any) -> str:
    text = value.strip().replace(" ", "") if isinstance(value, str) else None
    if text is None or not _RATIO.match(text):
        raise CometValidationError("ratio", f"expected 'WIDTH:HEIGHT' in pixels such as '1280:720', got {value!r}")
    return text


def _check_moderation(value: Any) -> dict[str, str]:
    if not isinstance(value, Mapping):
        raise CometValidationError(
            "content_moderation", f"expected a dict such as {{'publicFigureThreshold': 'auto'}}, got {value!r}"
        )
    keys = {"publicFigureThreshold", "public_figure_threshold"}
    unknown = sorted(str(key) for key in value if key not in keys)
    if unknown or len(value) != 1:
        what = f"unknown keys {unknown}" if unknown else "give publicFigureThreshold once"
        raise CometValidationError("content_moderation", f"{what}; the only setting is publicFigureThreshold")
    [threshold] = value.values()
    if not isinstance(threshold, str) or threshold.strip().lower() not in _THRESHOLDS:
        raise CometValidationError(
            "content_moderation", f"publicFigureThreshold must be 'auto' or 'low', got {threshold!r}"
        )
    return {"publicFigureThreshold": threshold.strip().lower()}


def request_route(request: Mapping[str, Any]) -> Route:
    """The route a :func:`video2video_request` result is for (gen4 requests carry no ``route``)."""
    return Route(request.get("route", Route.PRO.value))


def request_sources(request: Mapping[str, Any]) -> list[Source]:
    """The request's sources in order (the video, then each reference), checked again: a local file
    may have changed since validation."""
    from comet_provider.utils.sources import check_source

    route = request_route(request)
    found = [check_source("video", request["video"], media="video", route=route)]
    for i, ref in enumerate(request.get("references", ())):
        found.append(check_source(f"references[{i}]", ref, media="image", route=route))
    return found


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
