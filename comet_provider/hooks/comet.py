"""CometAPI hook: Runway video-to-video over httpx, sync and async.

Both twins share everything but the I/O: settings from the ``comet`` connection
(:mod:`._settings`), request bodies, response mapping (:mod:`._errors`), and one
:class:`RetryPolicy`. The async side uses one pooled transport per event loop
(:mod:`._pool`: the triggerer runs thousands of triggers on one loop) and looks the
connection up with Airflow's async API, never the blocking one. Renders are
stored through :mod:`.storage`.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from dataclasses import dataclass
from json.encoder import encode_basestring_ascii
from typing import TYPE_CHECKING, Any

import httpx
from airflow.sdk import BaseHook

from comet_provider.exceptions import CometError, RunwayTaskNotFoundError
from comet_provider.hooks import _pool
from comet_provider.hooks._errors import _answer, _submission_error, _submitted_task, _transport_error
from comet_provider.hooks._network import NetworkPolicy, read_answer
from comet_provider.hooks._pool import close_shared_async_client
from comet_provider.hooks._settings import (
    DEFAULT_BASE_URL,
    DEFAULT_RUNWAY_VERSION,
    DEFAULT_TIMEOUT,
    FEED_PATH,
    SUBMIT_PATH,
    CometSettings,
    http_timeout,
)
from comet_provider.models import RunwayStatus, RunwayTask
from comet_provider.utils import metrics
from comet_provider.utils.retry import RetryCallback, RetryPolicy
from comet_provider.utils.validation import build_video2video_payload, check_http_url, check_task_id

if TYPE_CHECKING:
    from airflow.sdk import ObjectStoragePath

__all__ = [
    "DEFAULT_BASE_URL",
    "DEFAULT_RUNWAY_VERSION",
    "DEFAULT_TIMEOUT",
    "FEED_PATH",
    "SUBMIT_PATH",
    "CometHook",
    "CometSettings",
    "DownloadResult",
    "RunwayStatus",
    "RunwayTask",
    "close_shared_async_client",
]

DOWNLOAD_TIMEOUT = httpx.Timeout(60.0, connect=10.0)
#: A source's HEAD: its identity is a nicety, not worth a long wait.
SOURCE_HEAD_TIMEOUT = httpx.Timeout(10.0)


@dataclass(frozen=True)
class DownloadResult:
    """Where a render was stored and how it went."""

    destination: str
    size_bytes: int
    seconds: float


class CometHook(BaseHook):
    """Talks to CometAPI's Runway endpoints.

    :param comet_conn_id: a ``comet`` connection: API key in Password, base URL in
        Host (empty: ``https://api.cometapi.com``), extras ``runway_version`` and ``timeout``.
    :param retry_policy: how transient failures are retried (sync and async alike).
    :param not_found_grace: seconds after submission during which CometAPI's
        ``task_not_exist`` means "not visible yet" rather than "no such task".
    :param transport: / :param async_transport: httpx transports to use instead of the
        defaults (e.g. ``httpx.MockTransport`` in tests); ``transport`` also carries render
        downloads and source HEADs.
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
        self._env_network: NetworkPolicy | None = None

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
            shared = self._async_transport is None  # hooks on the loop's pool share their settings
            self._settings = _pool.shared_settings(self.comet_conn_id) if shared else None
            if self._settings is None:
                from airflow.providers.common.compat.connection import (
                    get_async_connection,
                    get_async_extra_dejson,
                )

                conn = await get_async_connection(self.comet_conn_id, hook=self)
                extra = await get_async_extra_dejson(conn)
                self._settings = CometSettings.from_connection(conn, extra)
                if shared:
                    _pool.remember_settings(self.comet_conn_id, self._settings)
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
            raise _submission_error(exc) from exc
        return _submitted_task(answer)

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
            raise _submission_error(exc) from exc
        return _submitted_task(answer)

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
        # The bytes json.dumps({"task_id": ...}) gives, without its per-call encoder set-up.
        content = f'{{"task_id": {encode_basestring_ascii(task_id)}}}'.encode()
        try:
            answer = await self._arequest(settings, FEED_PATH, content, idempotent=True)
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

        :raises RenderUnavailableError: the link answered 403/404/410, or 200 with a page
            or an empty body instead of the video (expired): not retried, only a new render helps.
        """
        from comet_provider.hooks._download import fetch_render

        source = check_http_url("url", url)
        started = time.monotonic()
        retrying = self.retry_policy.start(on_retry=self._retry_logger("render download"))
        while True:
            try:
                stored, size = fetch_render(self._fetch_transport(), source, destination, DOWNLOAD_TIMEOUT)
                result = DownloadResult(stored, size, time.monotonic() - started)
                metrics.download_stored(result.size_bytes, result.seconds)
                return result
            except CometError as exc:
                time.sleep(retrying.after(exc))

    def check_render_link(self, url: str) -> None:
        """Raise :class:`RenderUnavailableError` if ``url`` no longer serves the render (its first KiB
        is fetched, without the API key); transient trouble is retried like a download."""
        from comet_provider.hooks._download import probe_render

        source = check_http_url("url", url)
        retrying = self.retry_policy.start(on_retry=self._retry_logger("render link check"))
        while True:
            try:
                return probe_render(self._fetch_transport(), source, SOURCE_HEAD_TIMEOUT)
            except CometError as exc:
                time.sleep(retrying.after(exc))

    def source_identity(self, url: str | os.PathLike[str] | ObjectStoragePath) -> str | None:
        """A string that changes when the video behind ``url`` is replaced; None when unknown.

        http(s): one HEAD (no API key, redirects followed, no retries, 10 s at most) and the
        answer's ETag, Last-Modified and Content-Length. Local paths, ``file://`` and object
        storage: size and modification time, or the ETag the filesystem reports. An unreadable
        identity (refused, 405, unreachable, missing) is None and a log line, never an error; only
        a misconfigured connection (its ``proxy``/``ca_bundle``/``verify``) raises CometConfigError.
        """
        if isinstance(url, str) and url.strip().lower().startswith(("http://", "https://")):
            from comet_provider.hooks._download import head_identity

            return head_identity(self._fetch_transport(), url.strip(), SOURCE_HEAD_TIMEOUT)
        from comet_provider.hooks.storage import stat_identity

        try:
            return stat_identity(url)
        except Exception as exc:  # an unknown identity is an answer, not a failure
            self.log.info("Could not read the identity of source %s (%s); using its path.", url, type(exc).__name__)
            return None

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
            _pool.acquire()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._async_transport is None:
            await _pool.release()

    # -- shared pieces ---------------------------------------------------------------------------

    @staticmethod
    def _default_callback(body: dict[str, Any], settings: CometSettings) -> None:
        if "callback_url" not in body and settings.callback_url:
            body["callback_url"] = settings.callback_url

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
            # Proxy and TLS from the network policy, not httpx's own reading of the environment.
            own = self._transport is None
            self._client = httpx.Client(
                timeout=http_timeout(settings.timeout),
                follow_redirects=False,
                transport=self._transport,
                proxy=settings.network.proxy_for(settings.base_url) if own else None,
                verify=settings.network.ssl_context() if own else True,
                trust_env=False,
            )
        return self._client

    def _request(self, settings: CometSettings, path: str, body: dict[str, Any], *, idempotent: bool) -> dict[str, Any]:
        client = self._sync_client(settings)
        content = json.dumps(body).encode()
        retrying = self.retry_policy.start(idempotent=idempotent, on_retry=self._retry_logger(path))
        while True:
            try:
                try:
                    request = client.build_request(
                        "POST", settings.urls[path], content=content, headers=settings.headers
                    )
                    response = client.send(request, stream=True)
                    try:  # streamed: an answer over the cap is refused before it is read whole
                        answer = read_answer(response, settings.network.max_answer_bytes)
                    finally:
                        response.close()
                except httpx.TransportError as exc:
                    raise _transport_error(exc, settings, path) from None
                return _answer(response.status_code, response.headers, answer, settings, path)
            except CometError as exc:
                time.sleep(retrying.after(exc))

    def _fetch_transport(self) -> httpx.BaseTransport:
        """The transport to render and source hosts (no CometAPI headers ride on it)."""
        if self._transport is not None:
            return self._transport
        from comet_provider.hooks._download_transport import DownloadTransport

        return DownloadTransport(self._network())

    def _network(self) -> NetworkPolicy:
        """The connection's network policy, or the environment's alone without one (no API key needed)."""
        from airflow.providers.common.compat.sdk import AirflowNotFoundException

        if self._settings is not None:
            return self._settings.network
        if self._env_network is None:
            try:
                return self.get_settings().network
            except AirflowNotFoundException:
                self._env_network = NetworkPolicy()
        return self._env_network

    # -- async I/O ---------------------------------------------------------------------------------

    async def _arequest(
        self, settings: CometSettings, path: str, body: dict[str, Any] | bytes, *, idempotent: bool
    ) -> dict[str, Any]:
        content = body if isinstance(body, bytes) else json.dumps(body).encode()
        started = time.monotonic()
        retrying = None  # made on the first failure: most polls need none
        while True:
            try:
                try:
                    # The loop's shared aiohttp pool (no httpx objects built), or a caller's transport.
                    status, headers, answer = await _pool.post(self._async_transport, settings, path, content)
                except httpx.TransportError as exc:
                    raise _transport_error(exc, settings, path) from None
                return _answer(status, headers, answer, settings, path)
            except CometError as exc:
                if retrying is None:
                    retrying = self.retry_policy.start(
                        idempotent=idempotent, on_retry=self._retry_logger(path), started=started
                    )
                await asyncio.sleep(retrying.after(exc))

    def _retry_logger(self, what: str) -> RetryCallback:
        def log_retry(error: CometError, delay: float, next_attempt: int) -> None:
            if what == SUBMIT_PATH:
                metrics.incr(metrics.SUBMISSION_RETRIES)
            self.log.warning(
                "CometAPI %s: %s. Retrying in %.1fs (attempt %d of %d).",
                what,
                error,
                delay,
                next_attempt,
                self.retry_policy.max_attempts,
            )

        return log_retry
