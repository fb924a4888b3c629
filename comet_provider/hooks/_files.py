"""The hook's file methods: storing a render, checking its link, and a source's identity.

A mixin of :class:`~comet_provider.hooks.comet.CometHook`: these calls go to render and source
hosts under the connection's network policy, or the environment's alone when there is no
connection. The API key rides only on a render the API's own host serves (the gateway's
``/v1/videos/{id}/content`` proxy URL, when Runway gave it no URL of its own).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import httpx

from comet_provider.exceptions import CometError
from comet_provider.hooks._network import NetworkPolicy
from comet_provider.utils import metrics
from comet_provider.utils.validation import check_http_url

if TYPE_CHECKING:
    from airflow.sdk import ObjectStoragePath
    from airflow.sdk.types import Logger

    from comet_provider.hooks._download import ApiKeyFor
    from comet_provider.hooks._settings import CometSettings
    from comet_provider.utils.retry import RetryCallback, RetryPolicy

__all__ = ["DOWNLOAD_TIMEOUT", "SOURCE_HEAD_TIMEOUT", "DownloadResult", "RenderFiles"]

DOWNLOAD_TIMEOUT = httpx.Timeout(60.0, connect=10.0)
#: A source's HEAD: its identity is a nicety, not worth a long wait.
SOURCE_HEAD_TIMEOUT = httpx.Timeout(10.0)


@dataclass(frozen=True)
class DownloadResult:
    """Where a render was stored and how it went."""

    destination: str
    size_bytes: int
    seconds: float


class RenderFiles:
    """Render downloads, render-link checks and source identities (mixed into ``CometHook``)."""

    if TYPE_CHECKING:  # provided by CometHook
        _transport: httpx.BaseTransport | None
        _settings: CometSettings | None
        _env_network: NetworkPolicy | None
        retry_policy: RetryPolicy

        @property
        def log(self) -> Logger: ...

        def get_settings(self) -> CometSettings: ...

        def _retry_logger(self, what: str) -> RetryCallback: ...

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
                stored, size = fetch_render(
                    self._fetch_transport(), source, destination, DOWNLOAD_TIMEOUT, self._api_key_for(source)
                )
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
                return probe_render(self._fetch_transport(), source, SOURCE_HEAD_TIMEOUT, self._api_key_for(source))
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

    def _api_key_for(self, url: str) -> ApiKeyFor | None:
        """The API key for ``url`` if the connection's own host serves it, else None (a CDN never gets it)."""
        from comet_provider.hooks._download import origin

        self._network()  # reads the connection's settings, if there is a connection
        settings = self._settings
        if settings is None or origin(url) != origin(settings.base_url):
            return None
        return origin(settings.base_url), f"Bearer {settings.api_key}"

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
