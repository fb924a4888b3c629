"""Callbacks: the task's final wrapper POSTed to its ``callback_url``, and inboxes that can receive them."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from aiohttp import ClientSession, ClientTimeout, web

from comet_provider.testing.emulator.settings import EmulatorConfig
from comet_provider.testing.emulator.timeline import EmulatedTask
from comet_provider.testing.emulator.wire import dumps, json_response, safe_url

log = logging.getLogger("comet_provider.testing")

_INBOX_LIMIT = 10_000
_SECRET_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie"})


async def _sleep_until(task: EmulatedTask, offset: float) -> None:
    delay = task.created_mono + offset - time.monotonic()
    if delay > 0:
        await asyncio.sleep(delay)


class Callbacks:
    """Sends one callback per task once it is terminal; failures are counted, never raised."""

    def __init__(
        self, config: Callable[[], EmulatorConfig], session: Callable[[], ClientSession], base_url: Callable[[], str]
    ) -> None:
        self._config = config
        self._session = session
        self._base_url = base_url
        self.clear_counts()

    def clear_counts(self) -> None:
        self.sent = 0
        self.failed = 0
        self.errors: deque[str] = deque(maxlen=20)

    async def run(self, task: EmulatedTask) -> None:
        assert task.callback_url is not None
        await _sleep_until(task, max(task.start_at, task.not_exist_at))
        await task.done.wait()
        now = time.monotonic()
        if task.render_error is None:
            await _sleep_until(task, task.end_at)
            # Timers may fire a hair early; the task is terminal from end_at on.
            now = max(time.monotonic(), task.created_mono + task.end_at)
        payload = task.wrapper(now, self._base_url())
        try:
            timeout = ClientTimeout(total=self._config().callback_timeout)
            async with self._session().post(
                task.callback_url,
                data=dumps(payload),
                headers={"Content-Type": "application/json", "User-Agent": "comet-emulator-callback"},
                timeout=timeout,
            ) as resp:
                await resp.read()
                if resp.status >= 300:
                    raise RuntimeError(f"HTTP {resp.status}")
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.failed += 1
            self.errors.append(f"{task.id}: {safe_url(task.callback_url)}: {str(exc) or type(exc).__name__}")
            log.debug("callback for task %s failed: %s", task.id, exc)
        else:
            self.sent += 1

    def to_dict(self) -> dict[str, Any]:
        return {"sent": self.sent, "failed": self.failed, "errors": list(self.errors)}


class Inboxes:
    """``/_emulator/inbox/<name>``: stores any request (callbacks, notifications) for tests to read back."""

    def __init__(self) -> None:
        self.boxes: dict[str, deque[dict[str, Any]]] = {}

    def clear(self) -> None:
        self.boxes.clear()

    def add_routes(self, router: web.UrlDispatcher) -> None:
        router.add_get("/_emulator/inbox/{name}", self._list)
        router.add_delete("/_emulator/inbox/{name}", self._clear_one)
        router.add_route("POST", "/_emulator/inbox/{name}", self._store)
        router.add_route("PUT", "/_emulator/inbox/{name}", self._store)

    async def _store(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        raw = await request.read()
        text = raw.decode("utf-8", "replace")
        try:
            body: Any = json.loads(text) if text.strip() else None
            is_json = body is not None
        except ValueError:
            body, is_json = text, False
        # Credentials are never stored: tests read these back and may print them.
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _SECRET_HEADERS}
        entry = {
            "method": request.method,
            "path": request.path,
            "query": dict(request.query),
            "headers": headers,
            "received_at": time.time(),
            "json": is_json,
            "body": body,
        }
        inbox = self.boxes.setdefault(name, deque(maxlen=_INBOX_LIMIT))
        inbox.append(entry)
        return json_response({"status": "ok", "count": len(inbox)})

    async def _list(self, request: web.Request) -> web.StreamResponse:
        return json_response(list(self.boxes.get(request.match_info["name"], ())))

    async def _clear_one(self, request: web.Request) -> web.StreamResponse:
        self.boxes.pop(request.match_info["name"], None)
        return json_response({"status": "ok"})
