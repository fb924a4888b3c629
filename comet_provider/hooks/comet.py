"""CometAPI hook: Runway video-to-video over httpx, sync and async, on both routes.

Routes: "pro" (``POST /runway/pro/video2video``, polled on ``POST /runway/feed``) and
"official", Runway's own format (``POST /runwayml/v1/video_to_video``, polled with
``GET /runwayml/v1/tasks/{id}``). Both twins share everything but the I/O: settings from the
``comet`` connection (:mod:`._settings`), request bodies (:mod:`._official` for the official
route), response mapping (:mod:`._errors`), and one :class:`RetryPolicy`. The async side uses one
pooled transport per event loop (:mod:`._pool`: the triggerer runs thousands of triggers on one
loop) and looks the connection up with Airflow's async API, never the blocking one. Renders are
stored through :mod:`._files` and :mod:`.storage`.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Mapping, Sequence
from json.encoder import encode_basestring_ascii
from typing import Any
from urllib.parse import quote

import httpx
from airflow.sdk import BaseHook

from comet_provider.exceptions import CometError, RunwayTaskNotFoundError
from comet_provider.hooks import _pool
from comet_provider.hooks._errors import _answer, _submission_error, _submitted_task, _transport_error
from comet_provider.hooks._files import DOWNLOAD_TIMEOUT, SOURCE_HEAD_TIMEOUT, DownloadResult, RenderFiles
from comet_provider.hooks._network import NetworkPolicy, read_answer
from comet_provider.hooks._official import official_body, official_submitted_task
from comet_provider.hooks._pool import close_shared_async_client
from comet_provider.hooks._settings import (
    DEFAULT_BASE_URL,
    DEFAULT_RUNWAY_VERSION,
    DEFAULT_TIMEOUT,
    FEED_PATH,
    OFFICIAL_SUBMIT_PATH,
    OFFICIAL_TASK_PATH,
    SUBMIT_PATH,
    CometSettings,
    check_route,
    http_timeout,
)
from comet_provider.models import RunwayStatus, RunwayTask
from comet_provider.utils import metrics
from comet_provider.utils.retry import RetryCallback, RetryPolicy
from comet_provider.utils.validation import build_video2video_payload, check_task_id

__all__ = [
    "DEFAULT_BASE_URL",
    "DEFAULT_RUNWAY_VERSION",
    "DEFAULT_TIMEOUT",
    "DOWNLOAD_TIMEOUT",
    "FEED_PATH",
    "OFFICIAL_SUBMIT_PATH",
    "OFFICIAL_TASK_PATH",
    "SOURCE_HEAD_TIMEOUT",
    "SUBMIT_PATH",
    "CometHook",
    "CometSettings",
    "DownloadResult",
    "RunwayStatus",
    "RunwayTask",
    "close_shared_async_client",
]

_SUBMIT_PATHS = frozenset({SUBMIT_PATH, OFFICIAL_SUBMIT_PATH})
_DEFAULT_RETRY = RetryPolicy()


class CometHook(RenderFiles, BaseHook):
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
        self.retry_policy = retry_policy or _DEFAULT_RETRY  # frozen: one for every hook
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

    def submit_video_to_video(
        self,
        video_uri: str,
        prompt_text: str,
        model: str = "gen4_aleph",
        seed: int | None = None,
        references: Sequence[str | Mapping[str, Any]] | None = None,
        ratio: str | None = None,
        content_moderation: Mapping[str, Any] | None = None,
    ) -> RunwayTask:
        """Start a restyle on the official-format route (Runway's own API shape). This call is paid.

        ``video_uri`` and each of ``references`` (style images) are resolved sources: an http(s)
        URL, signed or public, or a base64 ``data:`` URI; no message shows a ``data:`` URI or a
        URL's query string. ``content_moderation`` is ``{"publicFigureThreshold": "auto" | "low"}``.
        Returns the new task (status PENDING), polled with ``route="official"``. Retried only where no
        render can have started; otherwise raises :class:`CometSubmissionUncertainError`.
        """
        body = official_body(
            video_uri=video_uri,
            prompt_text=prompt_text,
            model=model,
            seed=seed,
            references=references,
            ratio=ratio,
            content_moderation=content_moderation,
        )
        settings = self.get_settings()
        try:
            answer = self._request(settings, OFFICIAL_SUBMIT_PATH, body, idempotent=False)
        except CometError as exc:
            raise _submission_error(exc) from exc
        return official_submitted_task(answer)

    async def asubmit_video_to_video(
        self,
        video_uri: str,
        prompt_text: str,
        model: str = "gen4_aleph",
        seed: int | None = None,
        references: Sequence[str | Mapping[str, Any]] | None = None,
        ratio: str | None = None,
        content_moderation: Mapping[str, Any] | None = None,
    ) -> RunwayTask:
        """Async twin of :meth:`submit_video_to_video`."""
        body = official_body(
            video_uri=video_uri,
            prompt_text=prompt_text,
            model=model,
            seed=seed,
            references=references,
            ratio=ratio,
            content_moderation=content_moderation,
        )
        settings = await self.aget_settings()
        try:
            answer = await self._arequest(settings, OFFICIAL_SUBMIT_PATH, body, idempotent=False)
        except CometError as exc:
            raise _submission_error(exc) from exc
        return official_submitted_task(answer)

    def get_task(self, runway_task_id: str, *, submitted_at: float | None = None, route: str = "pro") -> RunwayTask:
        """The task's current state: ``POST /runway/feed`` (route "pro"), or ``GET /runwayml/v1/tasks/{id}``
        (route "official", the route it was submitted on).

        :param submitted_at: epoch seconds of the submission; within ``not_found_grace`` of it,
            ``task_not_exist`` (or, on the official route, a 404) reads as PENDING.
        """
        task_id = check_task_id(runway_task_id)
        official = check_route(route) == "official"
        settings = self.get_settings()
        try:
            if official:
                answer = self._request(settings, OFFICIAL_TASK_PATH + quote(task_id, safe=""), None, idempotent=True)
            else:
                answer = self._request(settings, FEED_PATH, {"task_id": task_id}, idempotent=True)
            return RunwayTask.from_feed(answer, task_id=task_id)  # inside: "data": null is not-found too
        except RunwayTaskNotFoundError as exc:
            return self._not_found(task_id, submitted_at, exc)

    async def aget_task(
        self, runway_task_id: str, *, submitted_at: float | None = None, route: str = "pro"
    ) -> RunwayTask:
        """Async twin of :meth:`get_task`."""
        task_id = check_task_id(runway_task_id)
        official = route != "pro" and check_route(route) == "official"  # one comparison on the feed's path
        settings = self._settings or await self.aget_settings()
        try:
            if official:
                answer = await self._aget(settings, OFFICIAL_TASK_PATH, quote(task_id, safe=""))
            else:
                # The bytes json.dumps({"task_id": ...}) gives, without its per-call encoder set-up.
                content = f'{{"task_id": {encode_basestring_ascii(task_id)}}}'.encode()
                answer = await self._arequest(settings, FEED_PATH, content, idempotent=True)
            return RunwayTask.from_feed(answer, task_id=task_id)
        except RunwayTaskNotFoundError as exc:
            return self._not_found(task_id, submitted_at, exc)

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
        answered = f" ({exc})" if exc.status_code == 404 else ""  # a 404 may also be a Host without the route
        raise RunwayTaskNotFoundError(
            f"CometAPI has no Runway task {task_id!r}{since}{answered}. CometAPI shows a task only to the "
            f"account that created it: check the id, and that connection {self.comet_conn_id!r} holds a key "
            "of that account.",
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

    def _request(
        self, settings: CometSettings, path: str, body: dict[str, Any] | None, *, idempotent: bool
    ) -> dict[str, Any]:
        """POST ``body`` as JSON to ``path``, or GET ``path`` when ``body`` is None."""
        client = self._sync_client(settings)
        content = None if body is None else json.dumps(body).encode()
        method, url = ("GET", settings.base_url + path) if content is None else ("POST", settings.urls[path])
        retrying = self.retry_policy.start(idempotent=idempotent, on_retry=self._retry_logger(path))
        while True:
            try:
                try:
                    request = client.build_request(method, url, content=content, headers=settings.headers)
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

    async def _aget(self, settings: CometSettings, path: str, tail: str) -> dict[str, Any]:
        """GET ``path`` + ``tail`` (an idempotent read) with :meth:`_arequest`'s retries."""
        where = path + tail
        started = time.monotonic()
        retrying = None
        while True:
            try:
                try:
                    status, headers, answer = await _pool.get(self._async_transport, settings, path, tail)
                except httpx.TransportError as exc:
                    raise _transport_error(exc, settings, where) from None
                return _answer(status, headers, answer, settings, where)
            except CometError as exc:
                if retrying is None:
                    retrying = self.retry_policy.start(on_retry=self._retry_logger(path), started=started)
                await asyncio.sleep(retrying.after(exc))

    def _retry_logger(self, what: str) -> RetryCallback:
        def log_retry(error: CometError, delay: float, next_attempt: int) -> None:
            if what in _SUBMIT_PATHS:
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
