"""An httpx transport carried by aiohttp, for the async poll path.

Measured (benchmarks/README.md): polling through ``httpx.AsyncClient`` costs
about 3x the CPU of bare aiohttp per request, and the ``httpx-aiohttp`` package
still about 1.8x, mostly in client-side bookkeeping and response streaming.
This transport reads each (small JSON) body whole and is driven without the
client layer, which brings a poll within ~1.2x of the aiohttp floor while the
hook keeps speaking httpx (``httpx.Request``/``httpx.Response``/httpx errors).
It also maps failures precisely: only a connection that could not be opened
becomes ``ConnectError``/``ConnectTimeout`` (the request never left), which is
what decides whether a paid submission may be retried.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import httpx
import yarl

__all__ = ["AiohttpTransport"]


class AiohttpTransport(httpx.AsyncBaseTransport):
    """One aiohttp session (one connection pool) serving every request on an event loop."""

    def __init__(self, *, max_connections: int = 200, keepalive_expiry: float = 30.0) -> None:
        self._max_connections = max_connections
        self._keepalive_expiry = keepalive_expiry
        self._session: aiohttp.ClientSession | None = None
        self._timeouts: dict[tuple[Any, ...], aiohttp.ClientTimeout] = {}
        self._urls: dict[str, yarl.URL] = {}

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
        except aiohttp.ConnectionTimeoutError as exc:
            raise httpx.ConnectTimeout(str(exc) or "timed out connecting", request=request) from exc
        except aiohttp.ClientConnectorError as exc:
            raise httpx.ConnectError(str(exc), request=request) from exc
        except (aiohttp.SocketTimeoutError, asyncio.TimeoutError) as exc:
            raise httpx.ReadTimeout(str(exc) or "timed out waiting for the answer", request=request) from exc
        except aiohttp.ServerDisconnectedError as exc:
            raise httpx.RemoteProtocolError(
                str(exc) or "server closed the connection without answering", request=request
            ) from exc
        except aiohttp.InvalidURL as exc:
            raise httpx.UnsupportedProtocol(str(exc), request=request) from exc
        except aiohttp.ClientError as exc:
            raise httpx.ReadError(f"{type(exc).__name__}: {exc}", request=request) from exc
        # Body already decoded by aiohttp: drop the encoding so httpx does not decode it twice.
        headers = [(k, v) for k, v in response.raw_headers if k.lower() != b"content-encoding"]
        return httpx.Response(response.status, headers=headers, content=body, request=request)

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
