"""The reference clients of the triggerer benchmarks: minimal triggers around one shared bare client.

Used by ``triggerer_scale.py`` and ``poll_instructions.py`` so both measure the same peers.
``aiohttp`` is the floor: what a poll costs with nothing but a shared ``aiohttp.ClientSession``.
``harness`` polls nothing: what the triggerer's own wrapper costs per waiting trigger.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import _common as C
from airflow.triggers.base import BaseTrigger, TriggerEvent

BARE_CLIENTS = ("aiohttp", "httpx", "httpx_aiohttp")
TERMINAL = frozenset({"SUCCESS", "FAILURE", "SUCCEEDED", "FAILED", "CANCELLED", "CANCELED"})
HEADERS = {"Authorization": f"Bearer {C.API_KEY}", "X-Runway-Version": C.RUNWAY_VERSION}

# One client per kind for every trigger in the process (one event loop), as in a triggerer.
_SHARED: dict[str, Any] = {}


def status_of(body: Any) -> str:
    data = (body or {}).get("data") or {}
    return str(data.get("status", "")).upper()


class _BarePollTrigger(BaseTrigger):
    """Poll the feed with a client shared by every trigger in the loop; yield when terminal."""

    def __init__(self, feed_url: str, runway_task_id: str, poll_interval: float) -> None:
        super().__init__()
        self.feed_url = feed_url
        self.runway_task_id = runway_task_id
        self.poll_interval = poll_interval

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (f"{__name__}.{type(self).__name__}", {"runway_task_id": self.runway_task_id})

    async def poll(self) -> Any:
        raise NotImplementedError

    async def run(self) -> AsyncIterator[TriggerEvent]:
        while True:
            body = await self.poll()
            st = status_of(body)
            if st in TERMINAL:
                yield TriggerEvent({"status": st, "runway_task_id": self.runway_task_id})
                return
            await asyncio.sleep(self.poll_interval)


class AiohttpTrigger(_BarePollTrigger):
    async def poll(self) -> Any:
        import aiohttp

        session = _SHARED.get("aiohttp")
        if session is None:
            session = _SHARED["aiohttp"] = aiohttp.ClientSession()
        async with session.post(self.feed_url, json={"task_id": self.runway_task_id}, headers=HEADERS) as r:
            return await r.json()


class HttpxTrigger(_BarePollTrigger):
    async def poll(self) -> Any:
        import httpx

        ac = _SHARED.get("httpx")
        if ac is None:
            ac = _SHARED["httpx"] = httpx.AsyncClient()
        r = await ac.post(self.feed_url, json={"task_id": self.runway_task_id}, headers=HEADERS)
        return r.json()


class HttpxAiohttpTrigger(_BarePollTrigger):
    async def poll(self) -> Any:
        import httpx
        from httpx_aiohttp import AiohttpTransport

        ac = _SHARED.get("httpx_aiohttp")
        if ac is None:
            ac = _SHARED["httpx_aiohttp"] = httpx.AsyncClient(transport=AiohttpTransport())
        r = await ac.post(self.feed_url, json={"task_id": self.runway_task_id}, headers=HEADERS)
        return r.json()


class IdleTrigger(BaseTrigger):
    """Wakes every ``poll_interval`` and polls nothing; with ``poll_interval`` 0 it ends at once (warm-up)."""

    def __init__(self, runway_task_id: str, poll_interval: float) -> None:
        super().__init__()
        self.runway_task_id = runway_task_id
        self.poll_interval = poll_interval

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (f"{__name__}.{type(self).__name__}", {"runway_task_id": self.runway_task_id})

    async def run(self) -> AsyncIterator[TriggerEvent]:
        while self.poll_interval > 0:  # noqa: ASYNC110 - a timer loop is what it stands for
            await asyncio.sleep(self.poll_interval)
        yield TriggerEvent({"status": "idle", "runway_task_id": self.runway_task_id})


def make_trigger(client: str, url: str, task_id: str, poll_interval: float) -> BaseTrigger:
    """The trigger of ``client`` waiting on ``task_id`` at ``url`` (the shim's, for ``http_sensor``)."""
    if client == "ours":
        from comet_provider.triggers.runway import RunwayTaskTrigger

        return RunwayTaskTrigger(runway_task_id=task_id, poll_interval=poll_interval)
    if client == "http_sensor":
        from airflow.providers.http.triggers.http import HttpSensorTrigger

        return HttpSensorTrigger(
            endpoint="runway/feed",
            http_conn_id="comet_http",
            method="POST",
            data=json.dumps({"task_id": task_id}),
            poke_interval=poll_interval,
        )
    if client == "harness":
        return IdleTrigger(task_id, poll_interval)
    cls = {"aiohttp": AiohttpTrigger, "httpx": HttpxTrigger, "httpx_aiohttp": HttpxAiohttpTrigger}[client]
    return cls(f"{url}/runway/feed", task_id, poll_interval)


def preload(client: str) -> None:
    """Import the client's modules now, not on the first poll."""
    if client == "ours":
        import comet_provider.triggers.runway  # noqa: F401
    elif client == "http_sensor":
        import airflow.providers.http.triggers.http  # noqa: F401
    elif client in BARE_CLIENTS:
        import aiohttp  # noqa: F401
        import httpx  # noqa: F401
        import httpx_aiohttp  # noqa: F401


async def close_shared() -> None:
    for key in BARE_CLIENTS:
        obj = _SHARED.pop(key, None)
        if obj is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(obj.close() if key == "aiohttp" else obj.aclose(), 5)
