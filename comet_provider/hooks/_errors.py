"""Answers to errors: pure functions from what a server said to the most specific :class:`CometError`.

Shared by the sync and async twins (CometAPI answers) and the render download
(render-host answers). Nothing here does I/O, and no message holds the API key or
a signed URL's query string.
"""

from __future__ import annotations

import email.utils
import json
import re
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import httpx

from comet_provider.exceptions import (
    CometAPIError,
    CometAuthError,
    CometBadRequestError,
    CometConfigError,
    CometConnectionError,
    CometError,
    CometMalformedResponseError,
    CometRateLimitError,
    CometServerError,
    CometSubmissionUncertainError,
    RenderUnavailableError,
    RunwayTaskNotFoundError,
    redact,
    without_query,
)
from comet_provider.hooks._network import AnswerTooLarge, UnverifiedCertificate, certificate_failure
from comet_provider.hooks._settings import OFFICIAL_TASK_PATH
from comet_provider.models import RunwayStatus, RunwayTask
from comet_provider.utils.retry import RetryPolicy

if TYPE_CHECKING:
    from comet_provider.hooks._settings import CometSettings

__all__ = [
    "_answer",
    "_render_answer_error",
    "_render_transport_error",
    "_retry_after",
    "_submission_error",
    "_submitted_task",
    "_transport_error",
    "scrub",
]

# `code` is a number on submit and a string on feed; any of these means success.
_OK_CODES = frozenset({"success", "ok", "200", "0"})
#: Render links that answer these are gone for good: a new render is needed.
_GONE = frozenset({403, 404, 410})
#: What a page starts with, where a video was expected (a video never starts with "<").
_PAGE_STARTS = (b"<!doctype", b"<html", b"<?xml")
_DECODER = json.JSONDecoder()
_DATA_URI = re.compile(r"data:[^\s,\"'<>]*,[^\s\"'<>)\]}]*")
_URL_QUERY = re.compile(r"(\b[a-zA-Z][\w+.-]*://[^\s?#\"'<>]+)[?#][^\s\"'<>)\]}]*")
_SIGNATURE = re.compile(
    r"(?i)\b(x-amz-signature|x-amz-security-token|x-amz-credential|x-goog-signature|x-goog-credential|"
    r"signature|sig|token)=[^\s&\"'<>]+"
)

# -- CometAPI ----------------------------------------------------------------------------------------


def _transport_error(exc: httpx.TransportError, settings: CometSettings, path: str) -> CometError:
    network = settings.network
    failure = certificate_failure(exc)
    if failure is not None or isinstance(exc, UnverifiedCertificate):  # no retry fixes the trust settings
        return CometConfigError(network.certificate_message(httpx.URL(settings.base_url).host, failure))
    detail = scrub(redact(network.redact(str(exc) or type(exc).__name__), settings.api_key))
    if isinstance(exc, AnswerTooLarge):
        return CometConnectionError(
            f"CometAPI's answer at {settings.base_url}{path} was refused: {detail}. API answers are small "
            "JSON documents: a gateway or proxy in front of the API may be broken.",
            request_sent=True,
        )
    # Only a connection that could not be opened proves the request never left.
    request_sent = not isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout))
    what = "timed out" if isinstance(exc, httpx.TimeoutException) else "failed"
    proxy = network.shown_proxy(settings.base_url)
    via = f" through the proxy {proxy}" if proxy else ""
    return CometConnectionError(
        f"Request to {settings.base_url}{path}{via} {what} ({type(exc).__name__}: {detail}). "
        f"Check that the Host of connection {settings.conn_id!r} is reachable from this machine"
        f"{' through that proxy' if proxy else ''}.",
        request_sent=request_sent,
    )


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            parsed = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):  # neither seconds nor an HTTP date: ignore it
            return None
        return max(0.0, parsed.timestamp() - time.time())


def _answer(
    status: int, headers: Mapping[str, str], content: bytes, settings: CometSettings, path: str
) -> dict[str, Any]:
    """The JSON answer of a successful call, or the most specific :class:`CometError`."""
    body = _json_or_none(content)
    if 200 <= status < 300 and isinstance(body, dict):
        code = body.get("code")
        if code is None or code in (200, 0) or (isinstance(code, str) and _ok_code(code)):
            return body
    error_code, message = _error_fields(body)
    where = f"{settings.base_url}{path}"
    if error_code == "task_not_exist" or (status == 404 and path.startswith(OFFICIAL_TASK_PATH)):
        raise RunwayTaskNotFoundError(
            f"CometAPI answered {error_code or f'HTTP {status}'} at {where}", status_code=status, error_code=error_code
        )
    # Server text may echo the request: never a data: URI or a signed URL's query in a message.
    shown = scrub(redact(message, settings.api_key)) if message else _describe_body(headers, content)
    common: dict[str, Any] = {"status_code": status, "error_code": error_code, "request_id": _request_id(shown)}
    if 200 <= status < 300:
        raise CometMalformedResponseError(
            f"CometAPI answered HTTP {status} at {where} with an unexpected body ({shown}).", **common
        )
    if status == 429:
        retry_after = _retry_after(headers.get("Retry-After"))
        raise CometRateLimitError(
            f"CometAPI is rate limiting or saturated (HTTP 429 at {where}: {shown}).",
            retry_after=retry_after,
            **common,
        )
    if status == 407:
        raise _proxy_refused(settings.base_url)
    if status in (401, 403):
        raise CometAuthError(
            f"CometAPI rejected the API key (HTTP {status} at {where}: {shown}). Put a valid CometAPI key "
            f"in the Password field of connection {settings.conn_id!r}.",
            **common,
        )
    if status == 408 or status >= 500:
        raise CometServerError(f"CometAPI had a server error (HTTP {status} at {where}: {shown}).", **common)
    advice = ""
    if 300 <= status < 400:
        location = without_query(headers.get("Location", "")) or "nowhere"
        advice = (
            f" It redirects to {location}, which is not followed (the API key would go along): "
            f"set the Host of connection {settings.conn_id!r} to the API's own URL."
        )
    if error_code == "callback_url_empty":
        advice = (
            " This endpoint wants a callback_url: pass callback_url= or set a 'callback_url' extra "
            f"on connection {settings.conn_id!r}."
        )
    raise CometBadRequestError(f"CometAPI refused the request (HTTP {status} at {where}: {shown}).{advice}", **common)


def scrub(text: str) -> str:
    """``text`` without data: URIs, URL query strings or signature parameters (what an echoed request may hold)."""
    if "data:" in text:
        text = _DATA_URI.sub("data:…", text)
    if "?" in text or "#" in text:
        text = _URL_QUERY.sub(r"\1", text)
    if "=" in text:
        text = _SIGNATURE.sub(r"\1=***", text)
    return text


def _ok_code(code: str) -> bool:
    return code in _OK_CODES or code.lower() in _OK_CODES  # as sent ("success") first: no lower() per poll


def _json_or_none(content: bytes) -> Any:
    """``json.loads(content)``, or None for an empty or non-JSON body."""
    if not content:
        return None
    try:
        # UTF-8 text through one decoder first: json.loads on bytes sniffs the encoding and
        # sets up per call, a seventh of a poll's parsing. Whatever fails here (another
        # encoding, a BOM, not JSON) gets json.loads' own answer.
        return _DECODER.decode(content.decode())
    except ValueError:
        pass
    try:
        return json.loads(content)
    except ValueError:
        return None


def _submitted_task(answer: dict[str, Any]) -> RunwayTask:
    data = answer.get("data")
    task_id = data.get("task_id") if isinstance(data, dict) else None
    if not isinstance(task_id, str) or not task_id.strip():
        raise CometMalformedResponseError(
            "CometAPI accepted the submission but returned no data.task_id, so the render cannot be "
            "tracked. Look for it in the CometAPI dashboard before submitting again."
        )
    return RunwayTask(task_id=task_id.strip(), status=RunwayStatus.PENDING, raw=answer)


def _submission_error(exc: CometError) -> CometError:
    """What a failed submission means: uncertain where a retry of a read would have been allowed."""
    if RetryPolicy.is_retryable(exc, idempotent=True) and not RetryPolicy.is_retryable(exc, idempotent=False):
        return CometSubmissionUncertainError(
            f"The submission may have reached CometAPI and started a paid render, but no answer came "
            f"back ({exc}). It was not resubmitted automatically. Check the CometAPI dashboard for a "
            "new Runway task before running this again.",
            cause=exc,
        )
    return exc


def _error_fields(body: Any) -> tuple[str | None, str | None]:
    if not isinstance(body, dict):
        return None, None
    error = body.get("error")
    if isinstance(error, dict):
        code = error.get("code") or error.get("type")
        message = error.get("message")
        param = error.get("param")
        if param and isinstance(message, str):
            message = f"{message} (param: {param})"
        return (str(code) if code else None), (str(message) if message else None)
    code = body.get("code")
    message = body.get("message") or body.get("msg")
    if isinstance(error, str) and error:  # Runway's own shape: {"error": "...", "issues": [...]}
        message = error + _issues(body.get("issues"))
    elif isinstance(message, str) and message.startswith("{"):
        # The gateway relays an upstream refusal with the upstream's body as its message.
        upstream = _json_or_none(message.encode())
        if isinstance(upstream, dict) and isinstance(upstream.get("error"), str):
            message = upstream["error"] + _issues(upstream.get("issues"))
    return (str(code) if code is not None else None), (str(message) if message else None)


def _issues(issues: Any) -> str:
    """Runway's validation issues as `` (promptText: too long; ...)``: the fields to fix."""
    if not isinstance(issues, list):
        return ""
    shown = []
    for issue in issues[:5]:
        if isinstance(issue, dict):
            where = issue.get("path")
            where = ".".join(str(p) for p in where) if isinstance(where, list) else where
            shown.append(f"{where}: {issue.get('message')}" if where else str(issue.get("message")))
    return f" ({'; '.join(shown)})" if shown else ""


def _request_id(message: str | None) -> str | None:
    if message and "request id:" in message:
        # "... (request id: X)" may be followed by " (param: ...)": stop at the first ")".
        return message.rsplit("request id:", 1)[1].split(")", 1)[0].strip() or None
    return None


def _describe_body(headers: Mapping[str, str], content: bytes) -> str:
    ctype = headers.get("Content-Type", "")
    if "html" in ctype or content.lstrip()[:1] == b"<":
        return "an HTML error page, likely from a proxy in front of the API"
    if not content:
        return "an empty body"
    return f"a non-JSON body of {len(content)} bytes"


# -- render host -------------------------------------------------------------------------------------


def _render_answer_error(status: int, headers: httpx.Headers, head: bytes | memoryview, url: str) -> CometError | None:
    """Why the render host's answer (status, headers, first body bytes) is not the render; None if it is."""
    if status == 200:
        ctype = headers.get("Content-Type", "").split(";", 1)[0].strip().lower()
        if _is_document_type(ctype):
            return _render_gone(url, status, f"answered with {ctype} instead of a video")
        if bytes(head[:64]).lstrip().lower().startswith(_PAGE_STARTS):
            return _render_gone(url, status, "answered with a web page instead of a video")
        if not head:
            return _render_gone(url, status, "answered with an empty body instead of a video")
        return None
    if status in _GONE:
        return _render_gone(url, status, f"answered HTTP {status}")
    if status == 407:
        return _proxy_refused(url)
    host = httpx.URL(url).host
    if status == 429 or status == 408 or status >= 500:
        return CometServerError(f"The render host {host} answered HTTP {status}.", status_code=status)
    return CometAPIError(f"The render host {host} answered HTTP {status}.", status_code=status)


def _proxy_refused(url: str) -> CometConfigError:
    return CometConfigError(
        f"The proxy on the way to {httpx.URL(url).host} refused its credentials (HTTP 407): check the user and "
        "password in the connection's extra 'proxy' or in HTTP_PROXY / HTTPS_PROXY."
    )


def _render_gone(url: str, status: int, what: str) -> RenderUnavailableError:
    return RenderUnavailableError(
        f"The render link {without_query(url)} {what}: it has expired or no longer serves the render (Runway output "
        "links expire 24-48 hours after the render). Only a new render gives a new link; store renders "
        "with output_path soon after they finish.",
        status_code=status,
        url=url,
    )


def _is_document_type(ctype: str) -> bool:
    return ctype.startswith("text/") or ctype.endswith(("/json", "+json", "/xml", "+xml"))


def _render_transport_error(exc: httpx.TransportError) -> CometConnectionError:
    # Transport errors name the failure, not the URL (whose query may be a signature).
    return CometConnectionError(
        f"Downloading the render failed: {type(exc).__name__}: {exc}",
        request_sent=not isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout)),
    )
