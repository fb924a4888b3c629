"""CometAPI hook: Runway video-to-video over httpx, sync and async.

Both twins share everything but the I/O: settings from the ``comet``
connection, request bodies, response mapping, and one :class:`RetryPolicy`.
The async side uses one pooled client per event loop (the triggerer runs
thousands of triggers on one loop: they share its connections) and looks the
connection up with Airflow's async API, never the blocking one.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import os
import time
import uuid
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
from airflow.sdk import BaseHook

from comet_provider import __version__
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
    RunwayTaskNotFoundError,
    redact,
)
from comet_provider.models import RunwayStatus, RunwayTask
from comet_provider.utils.retry import RetryCallback, RetryPolicy
from comet_provider.utils.validation import build_video2video_payload, check_http_url, check_task_id

if TYPE_CHECKING:
    from airflow.sdk import Connection, ObjectStoragePath

__all__ = ["CometHook", "CometSettings", "DownloadResult", "RunwayStatus", "RunwayTask"]

DEFAULT_BASE_URL = "https://api.cometapi.com"
DEFAULT_RUNWAY_VERSION = "2024-11-06"
DEFAULT_TIMEOUT = 30.0
SUBMIT_PATH = "/runway/pro/video2video"
FEED_PATH = "/runway/feed"
_USER_AGENT = f"airflow-provider-comet/{__version__}"
# `code` is a number on submit and a string on feed; any of these means success.
_OK_CODES = frozenset({"success", "ok", "200", "0"})


@dataclass(frozen=True)
class CometSettings:
    """Everything a request needs, read once from the Airflow connection."""

    conn_id: str
    base_url: str
    api_key: str = field(repr=False)
    runway_version: str = DEFAULT_RUNWAY_VERSION
    timeout: float = DEFAULT_TIMEOUT
    callback_url: str | None = None
    headers: httpx.Headers = field(init=False, repr=False, compare=False)
    timeout_extension: dict[str, Any] = field(init=False, repr=False, compare=False)
    urls: dict[str, httpx.URL] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Parsed once: URL parsing was the largest client-side cost of a poll.
        object.__setattr__(self, "urls", {path: httpx.URL(self.base_url + path) for path in (SUBMIT_PATH, FEED_PATH)})
        object.__setattr__(self, "timeout_extension", {"timeout": _timeout(self.timeout).as_dict()})
        # Built once (as httpx.Headers, which requests copy cheaply): no per-poll encoding.
        object.__setattr__(
            self,
            "headers",
            httpx.Headers(
                {
                    "Authorization": f"Bearer {self.api_key}",
                    "X-Runway-Version": self.runway_version,
                    "Content-Type": "application/json",
                    "Accept": "application/json",
                    "User-Agent": _USER_AGENT,
                }
            ),
        )

    @classmethod
    def from_connection(cls, conn: Connection, extra: dict[str, Any]) -> CometSettings:
        """Validate a ``comet`` connection; each problem names the field to fix."""
        conn_id = conn.conn_id
        api_key = (conn.password or "").strip()
        if not api_key:
            raise CometConfigError(
                f"Connection {conn_id!r} has no API key: put your CometAPI key in its Password field."
            )
        host = (conn.host or "").strip()
        if not host:
            base_url = DEFAULT_BASE_URL
        elif any(ch.isspace() for ch in host):
            raise CometConfigError(f"Connection {conn_id!r}: Host contains whitespace: {conn.host!r}.")
        else:
            if "://" not in host:
                host = f"https://{host}"
            parts = httpx.URL(host) if _valid_url(host) else None
            if parts is None or parts.scheme not in ("http", "https") or not parts.host:
                raise CometConfigError(
                    f"Connection {conn_id!r}: Host must be a base URL such as https://api.cometapi.com "
                    f"or http://127.0.0.1:8765, got {conn.host!r}."
                )
            if conn.port and parts.port is None:
                parts = parts.copy_with(port=int(conn.port))
            base_url = str(parts).rstrip("/")
        version = extra.get("runway_version") or DEFAULT_RUNWAY_VERSION
        if not isinstance(version, str):
            raise CometConfigError(f"Connection {conn_id!r}: extra 'runway_version' must be text.")
        raw_timeout = extra.get("timeout")
        try:
            timeout = float(raw_timeout) if raw_timeout not in (None, "") else DEFAULT_TIMEOUT
        except (TypeError, ValueError):
            timeout = -1.0
        if not 0 < timeout <= 600:
            raise CometConfigError(
                f"Connection {conn_id!r}: extra 'timeout' must be seconds between 0 and 600, got {raw_timeout!r}."
            )
        callback_url = extra.get("callback_url") or None
        if callback_url is not None:
            try:
                callback_url = check_http_url("callback_url", callback_url)
            except CometError as exc:
                raise CometConfigError(f"Connection {conn_id!r}: extra {exc}") from None
        return cls(conn_id, base_url, api_key, version.strip(), timeout, callback_url)


def _valid_url(text: str) -> bool:
    try:
        httpx.URL(text)
    except (httpx.InvalidURL, TypeError, ValueError):
        return False
    return True


@dataclass(frozen=True)
class DownloadResult:
    """Where a render was stored and how it went."""

    destination: str
    size_bytes: int
    seconds: float


class _LoopTransport:
    """The async transport of one event loop, how many hooks hold it open, and the
    connection settings they share (one lookup and one copy for thousands of triggers)."""

    __slots__ = ("leases", "settings", "transport")

    def __init__(self, transport: httpx.AsyncBaseTransport) -> None:
        self.transport = transport
        self.leases = 0
        self.settings: dict[str, tuple[float, CometSettings]] = {}


#: How long triggers on one event loop reuse a connection's settings: a changed key or
#: host reaches new waits within this time.
_SHARED_SETTINGS_TTL = 60.0


# One async transport (one connection pool) per event loop, shared by every hook on it:
# thousands of triggers in one triggerer share its connections.
_LOOP_TRANSPORTS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopTransport] = weakref.WeakKeyDictionary()


def _loop_transport() -> _LoopTransport:
    loop = asyncio.get_running_loop()
    entry = _LOOP_TRANSPORTS.get(loop)
    if entry is None:
        # Imported here so that DAG parsing never pays for aiohttp.
        from comet_provider.hooks._aiohttp_transport import AiohttpTransport

        entry = _LOOP_TRANSPORTS[loop] = _LoopTransport(AiohttpTransport())
    return entry


async def close_shared_async_client() -> None:
    """Close this event loop's shared pool (for async code that used the hook outside ``async with``)."""
    entry = _LOOP_TRANSPORTS.pop(asyncio.get_running_loop(), None)
    if entry is not None:
        await entry.transport.aclose()


class CometHook(BaseHook):
    """Talks to CometAPI's Runway endpoints.

    :param comet_conn_id: a ``comet`` connection: API key in Password, base URL in
        Host (empty: ``https://api.cometapi.com``), extras ``runway_version`` and ``timeout``.
    :param retry_policy: how transient failures are retried (sync and async alike).
    :param not_found_grace: seconds after submission during which CometAPI's
        ``task_not_exist`` means "not visible yet" rather than "no such task".
    :param transport: / :param async_transport: httpx transports to use instead of the
        defaults (e.g. ``httpx.MockTransport`` in tests).
    """

    conn_name_attr = "comet_conn_id"
    default_conn_name = "comet_default"
    conn_type = "comet"
    hook_name = "CometAPI (Runway)"

    def __init__(
        self,
        comet_conn_id: str = default_conn_name,
        *,
        retry_policy: RetryPolicy | None = None,
        not_found_grace: float = 120.0,
        transport: httpx.BaseTransport | None = None,
        async_transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__()
        self._transport = transport
        self._async_transport = async_transport
        self.comet_conn_id = comet_conn_id
        self.retry_policy = retry_policy or RetryPolicy()
        self.not_found_grace = not_found_grace
        self._settings: CometSettings | None = None
        self._client: httpx.Client | None = None

    def longest_call(self) -> float:
        """Seconds one call can take at most, retries included (once settings are known)."""
        timeout = self._settings.timeout if self._settings is not None else DEFAULT_TIMEOUT
        return self.retry_policy.max_elapsed + timeout

    # -- settings ---------------------------------------------------------------------------------

    def get_settings(self) -> CometSettings:
        """The connection's settings (looked up once per hook)."""
        if self._settings is None:
            conn = self.get_connection(self.comet_conn_id)
            self._settings = CometSettings.from_connection(conn, conn.extra_dejson)
        return self._settings

    async def aget_settings(self) -> CometSettings:
        """Async twin of :meth:`get_settings`: never blocks the event loop."""
        if self._settings is None:
            shared = None if self._async_transport else _LOOP_TRANSPORTS.get(asyncio.get_running_loop())
            cached = shared.settings.get(self.comet_conn_id) if shared else None
            if cached is not None and cached[0] > time.monotonic():
                self._settings = cached[1]
                return cached[1]
            from airflow.providers.common.compat.connection import (
                get_async_connection,
                get_async_extra_dejson,
            )

            conn = await get_async_connection(self.comet_conn_id, hook=self)
            extra = await get_async_extra_dejson(conn)
            self._settings = CometSettings.from_connection(conn, extra)
            if shared is not None:
                shared.settings[self.comet_conn_id] = (time.monotonic() + _SHARED_SETTINGS_TTL, self._settings)
        return self._settings

    # -- public API -------------------------------------------------------------------------------

    def submit_video2video(
        self,
        video: str,
        prompt: str,
        model: str = "gen4",
        options: dict[str, Any] | None = None,
        callback_url: str | None = None,
    ) -> RunwayTask:
        """Start a restyle of ``video`` (an http(s) URL) in the style ``prompt``. This call is paid.

        Returns the new task (status PENDING). Retried only where no render can
        have started; otherwise raises :class:`CometSubmissionUncertainError`.
        """
        body = build_video2video_payload(
            video=video, prompt=prompt, model=model, options=options, callback_url=callback_url
        )
        settings = self.get_settings()
        self._default_callback(body, settings)
        try:
            answer = self._request(settings, SUBMIT_PATH, body, idempotent=False)
        except CometError as exc:
            raise self._submission_error(exc) from exc
        return self._submitted_task(answer)

    async def asubmit_video2video(
        self,
        video: str,
        prompt: str,
        model: str = "gen4",
        options: dict[str, Any] | None = None,
        callback_url: str | None = None,
    ) -> RunwayTask:
        """Async twin of :meth:`submit_video2video`."""
        body = build_video2video_payload(
            video=video, prompt=prompt, model=model, options=options, callback_url=callback_url
        )
        settings = await self.aget_settings()
        self._default_callback(body, settings)
        try:
            answer = await self._arequest(settings, SUBMIT_PATH, body, idempotent=False)
        except CometError as exc:
            raise self._submission_error(exc) from exc
        return self._submitted_task(answer)

    def get_task(self, runway_task_id: str, *, submitted_at: float | None = None) -> RunwayTask:
        """The task's current state (``POST /runway/feed``).

        :param submitted_at: epoch seconds of the submission; within
            ``not_found_grace`` of it, ``task_not_exist`` reads as PENDING.
        """
        task_id = check_task_id(runway_task_id)
        settings = self.get_settings()
        try:
            answer = self._request(settings, FEED_PATH, {"task_id": task_id}, idempotent=True)
        except RunwayTaskNotFoundError as exc:
            return self._not_found(task_id, submitted_at, exc)
        return RunwayTask.from_feed(answer, task_id=task_id)

    async def aget_task(self, runway_task_id: str, *, submitted_at: float | None = None) -> RunwayTask:
        """Async twin of :meth:`get_task`."""
        task_id = check_task_id(runway_task_id)
        settings = self._settings or await self.aget_settings()
        try:
            answer = await self._arequest(settings, FEED_PATH, {"task_id": task_id}, idempotent=True)
        except RunwayTaskNotFoundError as exc:
            return self._not_found(task_id, submitted_at, exc)
        return RunwayTask.from_feed(answer, task_id=task_id)

    def download(self, url: str, destination: str | os.PathLike[str] | ObjectStoragePath) -> DownloadResult:
        """Stream ``url`` into ``destination`` in bounded memory, atomically.

        ``destination`` is a local path, a ``file://``/``s3://``/``memory://``... URL,
        or an :class:`~airflow.sdk.ObjectStoragePath`. Bytes go to a temporary
        sibling first and are renamed into place only when complete and matching
        Content-Length: the destination never holds a partial file. The API key is
        not sent (render URLs are on a CDN, not CometAPI).
        """
        source = check_http_url("url", url)
        started = time.monotonic()
        retrying = self.retry_policy.start(on_retry=self._retry_logger("render download"))
        while True:
            try:
                stored, size = self._download_once(source, destination)
                return DownloadResult(stored, size, time.monotonic() - started)
            except CometError as exc:
                time.sleep(retrying.after(exc))

    def test_connection(self) -> tuple[bool, str]:
        """Make one cheap authenticated call (a feed lookup of a made-up task id)."""
        try:
            settings = self.get_settings()
            self._request(settings, FEED_PATH, {"task_id": "airflow-connection-test"}, idempotent=True)
        except RunwayTaskNotFoundError:
            pass  # the key was accepted; the made-up task does not exist, as expected
        except Exception as exc:  # the UI shows the reason, whatever went wrong (unknown conn id too)
            return False, str(exc)
        return True, f"Connected to {settings.base_url}: the API key was accepted."

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def __enter__(self) -> CometHook:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    async def __aenter__(self) -> CometHook:
        """Hold the event loop's shared pool open; the last hook out closes it.

        Async calls made outside ``async with`` leave the pool open until
        :func:`close_shared_async_client` is awaited on that loop.
        """
        if self._async_transport is None:
            _loop_transport().leases += 1
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._async_transport is not None:
            return
        loop = asyncio.get_running_loop()
        entry = _LOOP_TRANSPORTS.get(loop)
        if entry is None:
            return
        entry.leases -= 1
        if entry.leases <= 0:
            del _LOOP_TRANSPORTS[loop]
            await entry.transport.aclose()

    # -- shared pieces ---------------------------------------------------------------------------

    @staticmethod
    def _default_callback(body: dict[str, Any], settings: CometSettings) -> None:
        if "callback_url" not in body and settings.callback_url:
            body["callback_url"] = settings.callback_url

    @staticmethod
    def _submitted_task(answer: dict[str, Any]) -> RunwayTask:
        data = answer.get("data")
        task_id = data.get("task_id") if isinstance(data, dict) else None
        if not isinstance(task_id, str) or not task_id.strip():
            raise CometMalformedResponseError(
                "CometAPI accepted the submission but returned no data.task_id, so the render cannot be "
                "tracked. Look for it in the CometAPI dashboard before submitting again."
            )
        return RunwayTask(task_id=task_id.strip(), status=RunwayStatus.PENDING, raw=answer)

    @staticmethod
    def _submission_error(exc: CometError) -> CometError:
        if RetryPolicy.is_retryable(exc, idempotent=True) and not RetryPolicy.is_retryable(exc, idempotent=False):
            return CometSubmissionUncertainError(
                f"The submission may have reached CometAPI and started a paid render, but no answer came "
                f"back ({exc}). It was not resubmitted automatically. Check the CometAPI dashboard for a "
                "new Runway task before running this again.",
                cause=exc,
            )
        return exc

    def _not_found(self, task_id: str, submitted_at: float | None, exc: RunwayTaskNotFoundError) -> RunwayTask:
        if submitted_at is not None and time.time() - submitted_at < self.not_found_grace:
            return RunwayTask(task_id=task_id, status=RunwayStatus.PENDING, raw={"code": "task_not_exist"})
        since = f", {time.time() - submitted_at:.0f}s after submission" if submitted_at else ""
        raise RunwayTaskNotFoundError(
            f"CometAPI has no Runway task {task_id!r}{since}. Tasks are visible only to the API key "
            f"that created them: check the id and connection {self.comet_conn_id!r}.",
            status_code=exc.status_code,
            error_code=exc.error_code,
        ) from None

    # -- sync I/O ----------------------------------------------------------------------------------

    def _sync_client(self, settings: CometSettings) -> httpx.Client:
        if self._client is None:
            self._client = httpx.Client(
                timeout=_timeout(settings.timeout), follow_redirects=False, transport=self._transport
            )
        return self._client

    def _request(self, settings: CometSettings, path: str, body: dict[str, Any], *, idempotent: bool) -> dict[str, Any]:
        client = self._sync_client(settings)
        content = json.dumps(body).encode()
        retrying = self.retry_policy.start(idempotent=idempotent, on_retry=self._retry_logger(path))
        while True:
            try:
                try:
                    response = client.post(settings.base_url + path, content=content, headers=settings.headers)
                except httpx.TransportError as exc:
                    raise _transport_error(exc, settings, path) from None
                return _answer(response.status_code, response.headers, response.content, settings, path)
            except CometError as exc:
                time.sleep(retrying.after(exc))

    def _download_once(self, url: str, destination: str | os.PathLike[str] | ObjectStoragePath) -> tuple[str, int]:
        target, local = _resolve_destination(destination)
        if self._transport is None:
            from comet_provider.hooks._download_transport import DownloadTransport

            transport: httpx.BaseTransport = DownloadTransport()
        else:
            transport = self._transport
        client = httpx.Client(timeout=httpx.Timeout(60.0, connect=10.0), follow_redirects=True, transport=transport)
        tmp_name = f".{target.name}.{uuid.uuid4().hex[:12]}.part"
        tmp: Any = target.parent / tmp_name
        try:
            # iter_raw() stores the bytes as sent: ask for no content coding, or a CDN may gzip the file.
            with client, client.stream("GET", url, headers={"Accept-Encoding": "identity"}) as response:
                if response.status_code != 200:
                    response.read()
                    raise _download_error(response.status_code, url)
                expected = response.headers.get("Content-Length")
                if local:
                    target.parent.mkdir(parents=True, exist_ok=True)
                with open(tmp, "wb") if local else tmp.open("wb") as sink:
                    for chunk in response.iter_raw():
                        sink.write(chunk)
                size = response.num_bytes_downloaded
            if expected is not None and expected.isdigit() and int(expected) != size:
                raise CometConnectionError(
                    f"The render download was cut short: {size} of {expected} bytes arrived.",
                    request_sent=True,
                )
            if local:
                os.replace(tmp, target)
            else:
                tmp.rename(target)
            return str(target), size
        except httpx.TransportError as exc:
            raise CometConnectionError(
                f"Downloading the render failed: {type(exc).__name__}: {exc}",
                request_sent=not isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout)),
            ) from None
        finally:
            _remove_quietly(tmp, local)

    # -- async I/O ---------------------------------------------------------------------------------

    async def _arequest(
        self, settings: CometSettings, path: str, body: dict[str, Any], *, idempotent: bool
    ) -> dict[str, Any]:
        # Driven through the transport, not an AsyncClient: the client layer costs more CPU per
        # poll than the request itself (benchmarks/README.md), and adds nothing this call needs.
        transport = self._async_transport or _loop_transport().transport
        content = json.dumps(body).encode()
        url = settings.urls[path]
        retrying = self.retry_policy.start(idempotent=idempotent, on_retry=self._retry_logger(path))
        while True:
            try:
                request = httpx.Request(
                    "POST", url, content=content, headers=settings.headers, extensions=settings.timeout_extension
                )
                try:
                    response = await transport.handle_async_request(request)
                    await response.aread()
                except httpx.TransportError as exc:
                    raise _transport_error(exc, settings, path) from None
                return _answer(response.status_code, response.headers, response.content, settings, path)
            except CometError as exc:
                await asyncio.sleep(retrying.after(exc))

    def _retry_logger(self, what: str) -> RetryCallback:
        def log_retry(error: CometError, delay: float, next_attempt: int) -> None:
            self.log.warning(
                "CometAPI %s: %s. Retrying in %.1fs (attempt %d of %d).",
                what,
                error,
                delay,
                next_attempt,
                self.retry_policy.max_attempts,
            )

        return log_retry


# -- response mapping (pure functions, shared by both twins) --------------------------------------


def _timeout(seconds: float) -> httpx.Timeout:
    return httpx.Timeout(seconds, connect=min(seconds, 10.0))


def _transport_error(exc: httpx.TransportError, settings: CometSettings, path: str) -> CometConnectionError:
    # Only a connection that could not be opened proves the request never left.
    request_sent = not isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout))
    what = "timed out" if isinstance(exc, httpx.TimeoutException) else "failed"
    detail = redact(str(exc) or type(exc).__name__, settings.api_key)
    return CometConnectionError(
        f"Request to {settings.base_url}{path} {what} ({type(exc).__name__}: {detail}). "
        "Check that the Host of connection "
        f"{settings.conn_id!r} is reachable from this machine.",
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


def _answer(status: int, headers: httpx.Headers, content: bytes, settings: CometSettings, path: str) -> dict[str, Any]:
    """The JSON answer of a successful call, or the most specific :class:`CometError`."""
    try:
        body = json.loads(content) if content else None
    except ValueError:
        body = None
    if 200 <= status < 300 and isinstance(body, dict):
        code = body.get("code")
        if code is None or code in (200, 0) or (isinstance(code, str) and code.lower() in _OK_CODES):
            return body
    error_code, message = _error_fields(body)
    where = f"{settings.base_url}{path}"
    if error_code == "task_not_exist":
        raise RunwayTaskNotFoundError(
            f"CometAPI answered task_not_exist at {where}", status_code=status, error_code=error_code
        )
    shown = redact(message, settings.api_key) if message else _describe_body(headers, content)
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
    if status in (401, 403):
        raise CometAuthError(
            f"CometAPI rejected the API key (HTTP {status} at {where}: {shown}). Put a valid CometAPI key "
            f"in the Password field of connection {settings.conn_id!r}.",
            **common,
        )
    if status == 408 or status >= 500:
        raise CometServerError(f"CometAPI had a server error (HTTP {status} at {where}: {shown}).", **common)
    advice = ""
    if error_code == "callback_url_empty":
        advice = (
            " This endpoint wants a callback_url: pass callback_url= or set a 'callback_url' extra "
            f"on connection {settings.conn_id!r}."
        )
    raise CometBadRequestError(f"CometAPI refused the request (HTTP {status} at {where}: {shown}).{advice}", **common)


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
    return (str(code) if code is not None else None), (str(message) if message else None)


def _request_id(message: str | None) -> str | None:
    if message and "request id:" in message:
        # "... (request id: X)" may be followed by " (param: ...)": stop at the first ")".
        return message.rsplit("request id:", 1)[1].split(")", 1)[0].strip() or None
    return None


def _describe_body(headers: httpx.Headers, content: bytes) -> str:
    ctype = headers.get("Content-Type", "")
    if "html" in ctype or content.lstrip()[:1] == b"<":
        return "an HTML error page, likely from a proxy in front of the API"
    if not content:
        return "an empty body"
    return f"a non-JSON body of {len(content)} bytes"


def _download_error(status: int, url: str) -> CometError:
    host = httpx.URL(url).host
    if status in (403, 404, 410):
        return CometBadRequestError(
            f"The render at {host} answered HTTP {status}. Runway output URLs expire 24-48 hours after the "
            "render: store renders with output_path soon after they finish.",
            status_code=status,
        )
    if status == 429 or status == 408 or status >= 500:
        return CometServerError(f"The render host {host} answered HTTP {status}.", status_code=status)
    return CometAPIError(f"The render host {host} answered HTTP {status}.", status_code=status)


def _resolve_destination(destination: Any) -> tuple[Any, bool]:
    """(path, is_local): local paths stay :class:`Path`; other schemes become ObjectStoragePath."""
    if isinstance(destination, (str, os.PathLike)) and not isinstance(destination, Path):
        text = os.fspath(destination)
        if "://" not in text:
            return Path(text).expanduser(), True
        if text.startswith("file://"):
            return Path(text[len("file://") :]), True
        from airflow.sdk import ObjectStoragePath

        destination = ObjectStoragePath(text)
    if isinstance(destination, Path):
        return destination, True
    protocol = getattr(destination, "protocol", None)
    if protocol in ("file", "local") or (isinstance(protocol, tuple) and "file" in protocol):
        return Path(destination.path), True
    return destination, False


def _remove_quietly(tmp: Any, local: bool) -> None:
    try:
        if local:
            os.unlink(tmp)
        elif tmp.exists():
            tmp.unlink()
    except (FileNotFoundError, OSError):
        pass
