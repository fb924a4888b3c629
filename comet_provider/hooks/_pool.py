"""One async transport (one connection pool) per event loop, shared by every hook on it.

Thousands of triggers in one triggerer share its connections, and the settings of
their connection: one lookup and one copy for all of them. Hooks hold the pool
open with ``async with`` (a lease); the last one out closes it. :func:`post` and
:func:`get` are the hook's ways to send: through the pool, or a caller's httpx transport.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from typing import TYPE_CHECKING

import httpx

if TYPE_CHECKING:
    from collections.abc import Awaitable, Mapping

    from comet_provider.hooks._aiohttp_transport import AiohttpTransport
    from comet_provider.hooks._settings import CometSettings

__all__ = [
    "SHARED_SETTINGS_TTL",
    "acquire",
    "close_shared_async_client",
    "get",
    "loop_transport",
    "post",
    "release",
    "remember_settings",
    "shared_settings",
]

#: How long triggers on one event loop reuse a connection's settings: a changed key or
#: host reaches new waits within this time.
SHARED_SETTINGS_TTL = 60.0


class _LoopPool:
    """The async transport of one event loop, how many hooks hold it open, and the
    connection settings they share."""

    __slots__ = ("leases", "settings", "transport")

    def __init__(self, transport: AiohttpTransport) -> None:
        self.transport = transport
        self.leases = 0
        self.settings: dict[str, tuple[float, CometSettings]] = {}


_POOLS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopPool] = weakref.WeakKeyDictionary()


def _pool() -> _LoopPool:
    loop = asyncio.get_running_loop()
    pool = _POOLS.get(loop)
    if pool is None:
        # Imported here so that DAG parsing never pays for aiohttp.
        from comet_provider.hooks._aiohttp_transport import AiohttpTransport

        pool = _POOLS[loop] = _LoopPool(AiohttpTransport())
    return pool


def loop_transport() -> AiohttpTransport:
    """This event loop's shared transport (created on first use)."""
    return _pool().transport


def post(
    transport: httpx.AsyncBaseTransport | None, settings: CometSettings, path: str, content: bytes
) -> Awaitable[tuple[int, Mapping[str, str], bytes]]:
    """POST ``content`` to ``path``: status, headers, body. Through this loop's shared pool, or through
    ``transport`` (a caller's httpx transport). Returns the call itself: no extra frame per poll."""
    if transport is None:
        return _pool().transport.post(settings, path, content)
    return _httpx_post(transport, settings, path, content)


async def _httpx_post(
    transport: httpx.AsyncBaseTransport, settings: CometSettings, path: str, content: bytes
) -> tuple[int, httpx.Headers, bytes]:
    # Driven without an AsyncClient, whose bookkeeping adds nothing a single POST needs.
    request = httpx.Request(
        "POST", settings.urls[path], content=content, headers=settings.headers, extensions=settings.timeout_extension
    )
    response = await transport.handle_async_request(request)
    await response.aread()
    return response.status_code, response.headers, response.content


def get(
    transport: httpx.AsyncBaseTransport | None, settings: CometSettings, path: str, tail: str = ""
) -> Awaitable[tuple[int, Mapping[str, str], bytes]]:
    """GET ``path`` + ``tail`` (percent-encoded): status, headers, body, as :func:`post`."""
    if transport is None:
        return _pool().transport.get(settings, path, tail)
    return _httpx_get(transport, settings, path + tail)


async def _httpx_get(
    transport: httpx.AsyncBaseTransport, settings: CometSettings, path: str
) -> tuple[int, httpx.Headers, bytes]:
    request = httpx.Request(
        "GET", settings.base_url + path, headers=settings.headers, extensions=settings.timeout_extension
    )
    response = await transport.handle_async_request(request)
    await response.aread()
    return response.status_code, response.headers, response.content


def acquire() -> None:
    """Hold this loop's pool open until the matching :func:`release`."""
    _pool().leases += 1


async def release() -> None:
    """Give back a lease; the last one closes the pool."""
    loop = asyncio.get_running_loop()
    pool = _POOLS.get(loop)
    if pool is None:
        return
    pool.leases -= 1
    if pool.leases <= 0:
        del _POOLS[loop]
        await pool.transport.aclose()


async def close_shared_async_client() -> None:
    """Close this event loop's shared pool (for async code that used the hook outside ``async with``)."""
    pool = _POOLS.pop(asyncio.get_running_loop(), None)
    if pool is not None:
        await pool.transport.aclose()


def shared_settings(conn_id: str) -> CometSettings | None:
    """Settings another hook on this loop read less than :data:`SHARED_SETTINGS_TTL` ago."""
    pool = _POOLS.get(asyncio.get_running_loop())
    cached = pool.settings.get(conn_id) if pool is not None else None
    if cached is not None and cached[0] > time.monotonic():
        return cached[1]
    return None


def remember_settings(conn_id: str, settings: CometSettings) -> None:
    """Share ``settings`` with the other hooks on this loop (only while a pool is open)."""
    pool = _POOLS.get(asyncio.get_running_loop())
    if pool is not None:
        pool.settings[conn_id] = (time.monotonic() + SHARED_SETTINGS_TTL, settings)
