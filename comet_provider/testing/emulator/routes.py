"""The API routes: CometAPI's own (``POST /runway/pro/video2video``, polled with ``POST /runway/feed``)
and Runway's format (``POST /runwayml/v1/video_to_video``, polled with ``GET /runwayml/v1/tasks/{id}``).

Both routes create tasks in the one task store and poll the same timelines; only the shapes differ."""

from __future__ import annotations

import hmac
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from aiohttp import web

from comet_provider.testing.emulator import official
from comet_provider.testing.emulator.wire import Reject, json_body, json_response, task_not_exist

if TYPE_CHECKING:
    from comet_provider.testing.emulator.server import EmulatorServer


def validate_submit(body: Mapping[str, Any]) -> tuple[str, str, str, dict[str, Any], str | None]:
    """(video, prompt, model, options, callback_url) from a submit body; :class:`Reject` naming the bad field."""
    values: dict[str, str] = {}
    for name in ("video", "prompt", "model"):
        value = body.get(name)
        if value is None or (isinstance(value, str) and not value.strip()):
            raise Reject(400, f"{name} is required", param=name)
        if not isinstance(value, str):
            raise Reject(400, f"{name} must be a string", param=name)
        values[name] = value.strip()
    if not values["video"].lower().startswith(("http://", "https://")):
        raise Reject(400, "video must be an http(s) URL", param="video")
    options = body.get("options")
    if options is None:
        options = {}
    if not isinstance(options, dict):
        raise Reject(400, "options must be an object", param="options")
    st = options.get("structure_transformation")
    if st is not None and (isinstance(st, bool) or not isinstance(st, (int, float)) or not 0.0 <= float(st) <= 1.0):
        raise Reject(
            400,
            "options.structure_transformation must be a number between 0 and 1",
            param="options.structure_transformation",
        )
    flip = options.get("flip")
    if flip is not None and not isinstance(flip, bool):
        raise Reject(400, "options.flip must be a boolean", param="options.flip")
    seconds = options.get("seconds")
    if seconds is not None and (
        isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not 0 < seconds <= 60
    ):
        raise Reject(400, "options.seconds must be a number in (0, 60]", param="options.seconds")
    callback_url = body.get("callback_url")
    if callback_url is not None and not isinstance(callback_url, str):
        raise Reject(400, "callback_url must be a string", param="callback_url")
    return values["video"], values["prompt"], values["model"], options, callback_url or None


#: The routes, by the name the provider and the stats use.
ROUTES = ("pro", "official")


class ApiRoutes:
    """Both routes with CometAPI's auth, headers and answer shapes; counts attempts, polls, auth failures."""

    def __init__(self, server: EmulatorServer) -> None:
        self.server = server
        self.clear_counts()

    def clear_counts(self) -> None:
        self.submit_attempts = 0
        self.route_attempts = dict.fromkeys(ROUTES, 0)
        self.feeds = 0
        self.task_polls = 0
        self.auth_failures = 0

    def add_routes(self, router: web.UrlDispatcher) -> None:
        router.add_post("/runway/pro/video2video", self._submit)
        router.add_post("/runway/feed", self._feed)
        router.add_post("/runwayml/v1/video_to_video", self._official_submit)
        router.add_get("/runwayml/v1/tasks/{task_id}", self._official_task)

    def _check_request(self, request: web.Request) -> web.Response | None:
        config = self.server.config
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        token = token.strip()
        ok = scheme.lower() == "bearer" and bool(token)
        if ok and config.api_key is not None:
            ok = hmac.compare_digest(token.encode(), config.api_key.encode())
        if not ok:
            self.auth_failures += 1
            return self.server.errors.response(401, "Invalid token", code="invalid_api_key")
        if config.require_version_header and not request.headers.get("X-Runway-Version", "").strip():
            return self.server.errors.response(400, "the X-Runway-Version header is required (e.g. 2024-11-06)")
        return None

    async def _submit(self, request: web.Request) -> web.StreamResponse:
        started = time.perf_counter()
        self.submit_attempts += 1
        self.route_attempts["pro"] += 1
        rejected = self._check_request(request)
        if rejected is not None:
            return rejected
        # Faults come before anything is created: a faulted submit never starts a render.
        faulted = await self.server.faults.inject("submit", request)
        if faulted is not None:
            return faulted
        try:
            video, prompt, model, options, callback_url = validate_submit(await json_body(request))
        except Reject as exc:
            return self.server.errors.rejected(exc)
        task = self.server.create_task(video, prompt, model, options, callback_url)
        created = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(task.created_wall))
        data = {
            "task_id": task.id,
            "state": "",
            "status": "",
            "prompt": prompt,
            "prompt_en": "",
            "video_url": "",
            "last_frame": "",
            "msg": "",
            "create_time": created,
            "update_time": created,
            "poster": "",
        }
        exec_time = round(max(time.perf_counter() - started, 0.001), 3)
        return json_response({"code": 200, "msg": "成功", "data": data, "exec_time": exec_time})

    async def _feed(self, request: web.Request) -> web.StreamResponse:
        self.feeds += 1
        rejected = self._check_request(request)
        if rejected is not None:
            return rejected
        try:
            body = await json_body(request)
        except Reject as exc:
            return self.server.errors.rejected(exc)
        task_id = body.get("task_id")
        if not isinstance(task_id, str) or not task_id:
            return self.server.errors.response(400, "task_id is required", param="task_id")
        faulted = await self.server.faults.inject("feed", request)
        if faulted is not None:
            return faulted
        return self._task_answer(task_id, "envelope")

    def _task_answer(self, task_id: str, shape: str) -> web.Response:
        task = self.server.tasks.get(task_id)
        if task is None:
            return task_not_exist()
        task.feeds += 1
        now = time.monotonic()
        if not task.visible(now):
            return task_not_exist()
        return web.Response(
            body=task.feed_body(now, self.server.base_url, self.server.generation, shape),
            content_type="application/json",
            charset="utf-8",
        )

    async def _official_submit(self, request: web.Request) -> web.StreamResponse:
        self.submit_attempts += 1
        self.route_attempts["official"] += 1
        rejected = self._check_request(request)
        if rejected is not None:
            return rejected
        faulted = await self.server.faults.inject("submit", request)
        if faulted is not None:
            return faulted
        try:
            body = await json_body(request)
        except Reject as exc:
            return self.server.errors.rejected(exc)
        try:
            inputs = official.validate_official(body)
        except Reject as exc:
            return official.rejected(self.server.errors, exc)
        task = self.server.create_task(inputs.video_uri, inputs.prompt_text, inputs.model, {}, None, official=inputs)
        return json_response({"id": task.id})

    async def _official_task(self, request: web.Request) -> web.StreamResponse:
        self.task_polls += 1
        rejected = self._check_request(request)
        if rejected is not None:
            return rejected
        faulted = await self.server.faults.inject("feed", request)
        if faulted is not None:
            return faulted
        return self._task_answer(request.match_info["task_id"], self.server.config.official_task_shape)
