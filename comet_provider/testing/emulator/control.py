"""The control API under ``/_emulator/`` (no auth): health, stats, config, reset, link expiry.

Inboxes (``callbacks.Inboxes``) and blobs (``files.Files``) add their own routes there.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

from aiohttp import web

from comet_provider.testing.emulator.sources import source_identity
from comet_provider.testing.emulator.wire import Reject, json_body, json_response

if TYPE_CHECKING:
    from comet_provider.testing.emulator.server import EmulatorServer
    from comet_provider.testing.emulator.timeline import EmulatedTask


def task_inputs(task: EmulatedTask) -> dict[str, Any]:
    """What a task was paid for. ``source`` identifies the clip whatever its signature (a URL
    without its query, a ``data:`` URI by digest); official tasks never show a whole URI."""
    official = task.official
    if official is None:
        return {"route": task.route, "source": source_identity(task.video), "video": task.video}
    return {
        "route": task.route,
        "source": official.source,
        "video": official.source,
        "seed": official.seed,
        "references": list(official.reference_sources),
        "ratio": official.ratio,
        "content_moderation": official.content_moderation,
    }


def build_stats(server: EmulatorServer, include_tasks: bool = True) -> dict[str, Any]:
    """Counters since the last reset, and (``include_tasks``) every task with its inputs and status."""
    now = time.monotonic()
    ttl = server.config.link_ttl
    result: dict[str, Any] = {
        "submissions": server.task_counter,
        "submit_attempts": server.api.submit_attempts,
        "routes": {
            route: {"submissions": server.route_submissions[route], "submit_attempts": attempts}
            for route, attempts in server.api.route_attempts.items()
        },
        "feeds": server.api.feeds,
        "task_polls": server.api.task_polls,
        "in_flight": server.in_flight.count(now),
        "peak_in_flight": server.in_flight.peak,
        "faults": dict(server.faults.counts),
        "callbacks": server.callbacks.to_dict(),
        "auth_failures": server.api.auth_failures,
        "renders": {
            "done": server.render_jobs.done,
            "failed": server.render_jobs.failed,
            "active": sum(1 for t in server.tasks.values() if t.render_state() == "pending"),
        },
        "links": server.files.to_dict(),
    }
    if include_tasks:
        result["tasks"] = {
            task.id: {
                "prompt": task.prompt,
                **task_inputs(task),
                "model": task.model,
                "options": task.options,
                "callback_url": task.callback_url,
                "submitted_at": task.created_wall,
                "status": task.state(now)[0],
                "feeds": task.feeds,
                "url_placement": task.placement,
                "render": task.render_state(),
                "downloads": task.downloads,
                "link_expired": task.link_expired(now, ttl),
            }
            for task in server.tasks.values()
        }
    return result


class ControlRoutes:
    def __init__(self, server: EmulatorServer) -> None:
        self.server = server

    def add_routes(self, router: web.UrlDispatcher) -> None:
        router.add_get("/_emulator/health", self._health)
        router.add_get("/_emulator/stats", self._stats)
        router.add_get("/_emulator/config", self._get_config)
        router.add_post("/_emulator/config", self._post_config)
        router.add_post("/_emulator/reset", self._reset)
        router.add_post("/_emulator/expire", self._expire)

    async def _health(self, request: web.Request) -> web.StreamResponse:
        return json_response({"status": "ok", "url": self.server.url})

    async def _stats(self, request: web.Request) -> web.StreamResponse:
        include = request.query.get("tasks", "1").lower() not in ("0", "false", "no")
        return json_response(build_stats(self.server, include_tasks=include))

    async def _get_config(self, request: web.Request) -> web.StreamResponse:
        return json_response(self.server.public_config())

    async def _post_config(self, request: web.Request) -> web.StreamResponse:
        errors = self.server.errors
        try:
            body = await json_body(request)
            self.server.config.update(body)
        except Reject as exc:
            return errors.rejected(exc)
        except ValueError as exc:
            return errors.response(400, str(exc), code="invalid_config")
        # Only a faults update restarts the fault sequence.
        self.server.apply_config(reseed="faults" in body)
        return json_response(self.server.public_config())

    async def _optional_body(self, request: web.Request) -> dict[str, Any]:
        raw = await request.read()
        if not raw.strip():
            return {}
        try:
            body = json.loads(raw)
        except ValueError:
            raise Reject(400, "request body is not valid JSON") from None
        return body if isinstance(body, dict) else {}

    async def _reset(self, request: web.Request) -> web.StreamResponse:
        try:
            body = await self._optional_body(request)
        except Reject as exc:
            return self.server.errors.rejected(exc)
        await self.server.reset(config=bool(body.get("config")))
        return json_response({"status": "ok"})

    async def _expire(self, request: web.Request) -> web.StreamResponse:
        """``{"task_id": ID}`` expires that task's links; no body expires every link issued so far."""
        errors = self.server.errors
        try:
            body = await self._optional_body(request)
        except Reject as exc:
            return errors.rejected(exc)
        task_id = body.get("task_id")
        if task_id is not None and not isinstance(task_id, str):
            return errors.response(400, "task_id must be a string", param="task_id")
        if task_id is not None and task_id not in self.server.tasks:
            return errors.response(404, f"no task {task_id!r}", param="task_id", code="task_not_found")
        expired = self.server.expire_links(task_id)
        return json_response({"status": "ok", "expired": expired})
