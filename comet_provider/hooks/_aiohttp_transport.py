"""The async transport: one aiohttp session per event loop, for the trigger's polls.

Measured (benchmarks/README.md): polling through ``httpx.AsyncClient`` costs about 3x the CPU
of bare aiohttp per request. The hook's own calls use :meth:`AiohttpTransport.post`: a
prepared URL, headers and timeouts per connection, the body read whole, and no httpx objects
(building an ``httpx.Request``/``httpx.Response`` per poll cost more instructions than the rest
of the hook); :meth:`AiohttpTransport.get` polls the official route's task path the same way. As an
``httpx.AsyncBaseTransport`` it also serves httpx requests. All map
failures to httpx's errors precisely: only a connection that could not be opened becomes
``ConnectError``/``ConnectTimeout`` (the request never left), which is what decides whether a
paid submission may be retried.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import aiohttp
import httpx
import yarl
from multidict import CIMultiDict

from comet_provider.hooks._network import aread_answer

if TYPE_CHECKING:
    from comet_provider.hooks._settings import CometSettings

# A prepared request target, built once per (settings, path): URL, headers, timeouts, and the
# network policy's proxy (URL without credentials, and those) and TLS context (True: aiohttp's default).
_Route = tuple[yarl.URL, "CIMultiDict[str]", aiohttp.ClientTimeout, yarl.URL | None, aiohttp.BasicAuth | None, Any]

__all__ = ["AiohttpTransport"]


class AiohttpTransport(httpx.AsyncBaseTransport):
    """One aiohttp session (one connection pool) serving every request on an event loop."""

    def __init__(self, *, max_connections: int = 200, keepalive_expiry: float = 30.0) -> None:
        self._max_connections = max_connections
        self._keepalive_expiry = keepalive_expiry
        self._session: aiohttp.ClientSession | None = None
        self._timeouts: dict[tuple[Any, ...], aiohttp.ClientTimeout] = {}
        self._urls: dict[str, yarl.URL] = {}
        self._routes: dict[int, tuple[CometSettings, dict[str, _Route]]] = {}

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=self._max_connections, keepalive_timeout=self._keepalive_expiry)
            # No cookies: every call carries its own auth, and a shared jar would mix tenants.
            self._session = aiohttp.ClientSession(connector=connector, cookie_jar=aiohttp.DummyCookieJar())
        return self._session

    def _timeout(self, request: httpx.Request) -> aiohttp.ClientTimeout:
        spec = request.extensions.get("timeout") or {}
        key = (spec.get("connect"), spec.get("read"), spec.get("pool"))
        timeout = self._timeouts.get(key)
        if timeout is None:
            timeout = self._timeouts[key] = aiohttp.ClientTimeout(
                total=None, sock_connect=key[0], sock_read=key[1], connect=key[2]
            )
        return timeout

    def _url(self, request: httpx.Request) -> yarl.URL:
        # The same few URLs are polled over and over: parse each once.
        text = str(request.url)
        url = self._urls.get(text)
        if url is None:
            if len(self._urls) > 256:
                self._urls.clear()
            url = self._urls[text] = yarl.URL(text, encoded=True)
        return url

    def _route(self, settings: CometSettings, path: str) -> _Route:
        # Keyed by identity (the entry holds the settings, so the id stays theirs): hashing the
        # settings dataclass would cost more than the rest of this lookup.
        entry = self._routes.get(id(settings))
        if entry is None or entry[0] is not settings:
            if len(self._routes) >= 64:
                self._routes.clear()
            entry = self._routes[id(settings)] = (settings, {})
        route = entry[1].get(path)
        if route is None:
            spec = settings.timeout_extension["timeout"]
            timeout = aiohttp.ClientTimeout(
                total=None, sock_connect=spec.get("connect"), sock_read=spec.get("read"), connect=spec.get("pool")
            )
            url = yarl.URL(settings.base_url + path, encoded=True)
            network = settings.network
            proxy = network.route(settings.base_url)
            # aiohttp's default context is the system's CAs: only a ca_bundle or verify=false needs ours.
            ssl_context = network.ssl_context() if network.custom_trust else True
            route = entry[1][path] = (
                url,
                CIMultiDict(settings.headers.items()),
                timeout,
                yarl.URL(proxy.url) if proxy else None,
                aiohttp.BasicAuth(*proxy.auth) if proxy and proxy.auth else None,
                ssl_context,
            )
        return route

    async def post(self, settings: CometSettings, path: str, content: bytes) -> tuple[int, Mapping[str, str], bytes]:
        """POST ``content`` (JSON) to ``path``: status, headers and the whole body.

        The poll's own path: no httpx objects built per request (they cost more CPU than the
        request itself); failures raise the same httpx errors as :meth:`handle_async_request`.
        """
        session = self._session
        if session is None or session.closed:
            session = self._get_session()
        url, headers, timeout, proxy, proxy_auth, ssl_context = self._route(settings, path)
        try:
            async with session.post(
                url,
                data=content,
                headers=headers,
                timeout=timeout,
                allow_redirects=False,
                proxy=proxy,
                proxy_auth=proxy_auth,
                ssl=ssl_context,
                auto_decompress=False,  # decoded by aread_answer, never past the cap
            ) as r:
                limit = settings.network.max_answer_bytes
                declared = r.headers.get("Content-Length", "")
                if declared.isdigit() and int(declared) <= limit and "Content-Encoding" not in r.headers:
                    # A poll's usual answer: its length, under the cap, is known and there is nothing
                    # to decode, so it is read whole (what aread_answer returns, without its loop).
                    body = await r.read()
                else:
                    body = await aread_answer(r.content.iter_any(), r.headers, limit)
                return r.status, r.headers, body
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            raise _httpx_error(exc, None) from exc

    async def get(self, settings: CometSettings, path: str, tail: str = "") -> tuple[int, Mapping[str, str], bytes]:
        """GET ``path`` + ``tail`` (``tail`` percent-encoded, e.g. a task id): as :meth:`post`, with the
        same prepared headers, timeouts, proxy and TLS (prepared once per ``path``, not per id)."""
        session = self._session
        if session is None or session.closed:
            session = self._get_session()
        url, headers, timeout, proxy, proxy_auth, ssl_context = self._route(settings, path)
        if tail:
            url = yarl.URL(settings.base_url + path + tail, encoded=True)
        try:
            async with session.get(
                url,
                headers=headers,
                timeout=timeout,
                allow_redirects=False,
                proxy=proxy,
                proxy_auth=proxy_auth,
                ssl=ssl_context,
                auto_decompress=False,
            ) as r:
                return r.status, r.headers, await _read_capped(r, settings.network.max_answer_bytes)
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            raise _httpx_error(exc, None) from exc

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        session = self._get_session()
        try:
            async with session.request(
                request.method,
                self._url(request),
                data=request.content or None,
                headers=request.headers,
                timeout=self._timeout(request),
                allow_redirects=False,
                auto_decompress=True,
            ) as response:
                body = await response.read()
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            raise _httpx_error(exc, request) from exc
        # Body already decoded by aiohttp: drop the encoding so httpx does not decode it twice.
        headers = [(k, v) for k, v in response.raw_headers if k.lower() != b"content-encoding"]
        return httpx.Response(response.status, headers=headers, content=body, request=request)

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


async def _read_capped(r: aiohttp.ClientResponse, limit: int) -> bytes:
    """The whole decoded body, never past ``limit`` (what :meth:`AiohttpTransport.post` does inline)."""
    declared = r.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) <= limit and "Content-Encoding" not in r.headers:
        return await r.read()
    return await aread_answer(r.content.iter_any(), r.headers, limit)


def _httpx_error(exc: BaseException, request: httpx.Request | None) -> httpx.TransportError:
    """The httpx error for an aiohttp failure. Only a connection that could not be opened is a
    ``ConnectError``/``ConnectTimeout``: the request never left."""
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return httpx.ConnectTimeout(str(exc) or "timed out connecting", request=request)
    if isinstance(exc, aiohttp.ClientConnectorError):
        return httpx.ConnectError(str(exc), request=request)
    if isinstance(exc, (aiohttp.SocketTimeoutError, asyncio.TimeoutError)):
        return httpx.ReadTimeout(str(exc) or "timed out waiting for the answer", request=request)
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return httpx.RemoteProtocolError(str(exc) or "server closed the connection without answering", request=request)
    if isinstance(exc, aiohttp.InvalidURL):
        return httpx.UnsupportedProtocol(str(exc), request=request)
    return httpx.ReadError(f"{type(exc).__name__}: {exc}", request=request)
