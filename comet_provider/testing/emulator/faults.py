"""Fault injection: one-shot ``fail_next`` queues and seeded random faults, failing as CometAPI's gateway does."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable

from aiohttp import web

from comet_provider.testing.emulator.settings import FAULT_ENDPOINTS, EmulatorConfig
from comet_provider.testing.emulator.wire import Errors, task_not_exist

_HTML_PAGES = {
    "502_html": (502, "502 Bad Gateway"),
    "503_html": (503, "503 Service Temporarily Unavailable"),
    "504_html": (504, "504 Gateway Time-out"),
}
_SATURATED_ZH = "上游负载已饱和，请稍后再试"


def _html_page(title: str) -> bytes:
    return (
        f"<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n"
        f"<center><h1>{title}</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
    ).encode()


def _retry_after(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


class Faults:
    """Decides whether a request fails and how; counts every fault served (``stats()["faults"]``)."""

    def __init__(self, config: Callable[[], EmulatorConfig], errors: Errors) -> None:
        self._config = config
        self._errors = errors
        self.counts: dict[str, int] = {}
        self.reseed()

    def clear_counts(self) -> None:
        self.counts.clear()

    def reseed(self) -> None:
        seed = self._config().faults.seed
        # One generator per endpoint: the fault sequence on feed does not depend on submits.
        self._rngs = {ep: random.Random(f"{seed}:{ep}") for ep in FAULT_ENDPOINTS}
        self._hits_429 = 0

    def pick(self, endpoint: str) -> str | None:
        """The fault kind for this request to ``endpoint``, or None: ``fail_next`` first, then chance."""
        config = self._config()
        queue = config.fail_next
        for i, entry in enumerate(queue):
            if entry["endpoint"] == endpoint:
                entry["count"] -= 1
                if entry["count"] <= 0:
                    del queue[i]
                return str(entry["kind"])
        faults = config.faults
        if faults.rate <= 0 or endpoint not in faults.endpoints:
            return None
        rng = self._rngs[endpoint]
        if rng.random() >= faults.rate:
            return None
        kinds = [k for k in faults.kinds if k != "task_not_exist" or endpoint == "feed"]
        return rng.choice(kinds) if kinds else None

    async def inject(self, endpoint: str, request: web.Request) -> web.StreamResponse | None:
        """The faulty answer for this request, or None to carry on (after a delay for "slow")."""
        kind = self.pick(endpoint)
        return None if kind is None else await self._answer(kind, request)

    async def _answer(self, kind: str, request: web.Request) -> web.StreamResponse | None:
        self.counts[kind] = self.counts.get(kind, 0) + 1
        faults = self._config().faults
        if kind == "slow":
            await asyncio.sleep(faults.slow_seconds)
            return None
        if kind == "drop":
            if request.transport is not None:
                request.transport.close()
            return web.Response(status=500)  # never reaches the client
        if kind == "429":
            self._hits_429 += 1
            message = _SATURATED_ZH if self._hits_429 % 2 else "Rate limit reached, please try again later"
            response = self._errors.response(429, message, code="rate_limit_exceeded")
            response.headers["Retry-After"] = _retry_after(faults.retry_after)
            return response
        if kind == "500":
            return self._errors.response(500, "internal server error", code="internal_error")
        if kind in _HTML_PAGES:
            status, title = _HTML_PAGES[kind]
            return web.Response(body=_html_page(title), status=status, content_type="text/html")
        if kind == "task_not_exist":
            return task_not_exist()
        return None
