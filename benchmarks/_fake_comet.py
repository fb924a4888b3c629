"""Throwaway CometAPI stand-in and the HttpSensorTrigger shim, for the benchmarks only.

``serve``: the endpoints the benchmarks use (submit, feed, stats, configure, blob). The
benchmarks prefer the project's emulator (``comet_provider.testing``); this exists so they run
(and can be compared) without it: set ``COMET_BENCH_FAKE_SERVER=1`` to force it.

``shim``: a pass-through in front of ``/runway/feed`` that answers 404 while the task is not
terminal. ``HttpSensorTrigger`` fires on the first non-404 answer and cannot look into a body,
so this is the only way it can wait for a render on this API; the shim runs on the server's
core, so the client under test does exactly the per-poll work it would against a 404 endpoint.

Run: ``python benchmarks/_fake_comet.py [serve|shim --upstream URL] [--port P] [--cpu C]``;
it prints its base URL on the first line of stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import time
import uuid
from typing import Any

from aiohttp import ClientSession, ClientTimeout, TCPConnector, web

TERMINAL_WRAPPER = {"SUCCESS", "FAILURE"}


class FakeComet:
    def __init__(self, api_key: str, render_seconds: float) -> None:
        self.api_key = api_key
        self.settings: dict[str, Any] = {"render_seconds": render_seconds, "fail_every": 0}
        self.feeds = 0
        self.submissions = 0
        self.tasks: dict[str, dict[str, Any]] = {}
        self.base_url = ""

    def _auth(self, request: web.Request) -> web.Response | None:
        if request.headers.get("Authorization") != f"Bearer {self.api_key}":
            return web.json_response(
                {"error": {"message": "invalid token", "type": "comet_api_error", "code": "invalid"}},
                status=401,
            )
        return None

    def _state(self, task: dict[str, Any]) -> tuple[str, str, float]:
        now = time.time()
        if now >= task["finished_at"]:
            return ("FAILURE", "FAILED", 1.0) if task["fail"] else ("SUCCESS", "SUCCEEDED", 1.0)
        done = (now - task["submitted_at"]) / max(task["render_seconds"], 1e-6)
        return "IN_PROGRESS", "RUNNING", max(0.0, min(done, 0.99))

    async def submit(self, request: web.Request) -> web.Response:
        if (denied := self._auth(request)) is not None:
            return denied
        body = await request.json()
        self.submissions += 1
        task_id = str(uuid.uuid4())
        now = time.time()
        render = float(self.settings["render_seconds"])
        fail_every = int(self.settings.get("fail_every") or 0)
        self.tasks[task_id] = {
            "submitted_at": now,
            "render_seconds": render,
            "finished_at": now + render,
            "fail": bool(fail_every and self.submissions % fail_every == 0),
            "prompt": body.get("prompt", ""),
        }
        return web.json_response({"code": 200, "msg": "成功", "data": {"task_id": task_id}, "exec_time": 0.01})

    async def feed(self, request: web.Request) -> web.Response:
        if (denied := self._auth(request)) is not None:
            return denied
        self.feeds += 1
        body = await request.json()
        task_id = body.get("task_id", "")
        task = self.tasks.get(task_id)
        if task is None:
            return web.json_response({"code": "task_not_exist", "message": "task_not_exist", "data": None}, status=400)
        wrapper, inner, progress = self._state(task)
        inner_data: dict[str, Any] = {"id": task_id, "status": inner, "progress": round(progress, 3)}
        if inner == "SUCCEEDED":
            inner_data["output"] = [f"{self.base_url}/_emulator/blob?size=1024&task={task_id}"]
        if inner == "FAILED":
            inner_data["failure"] = "synthetic failure"
            inner_data["failureCode"] = "INTERNAL.BAD_OUTPUT.CODE01"
        return web.json_response(
            {
                "code": "success",
                "message": "",
                "data": {
                    "task_id": task_id,
                    "action": "VIDEO_TO_VIDEO",
                    "status": wrapper,
                    "fail_reason": inner_data.get("failure", ""),
                    "submit_time": int(task["submitted_at"]),
                    "start_time": int(task["submitted_at"]),
                    "finish_time": int(task["finished_at"]) if wrapper in TERMINAL_WRAPPER else 0,
                    "progress": f"{int(progress * 100)}%",
                    "data": inner_data,
                },
            }
        )

    async def stats(self, request: web.Request) -> web.Response:
        out: dict[str, Any] = {"feeds": self.feeds, "submissions": self.submissions}
        if request.query.get("tasks", "1") != "0":
            out["tasks"] = {
                tid: {
                    "status": self._state(t)[1],
                    "submitted_at": t["submitted_at"],
                    "finished_at": t["finished_at"],
                }
                for tid, t in self.tasks.items()
            }
        return web.json_response(out)

    async def configure(self, request: web.Request) -> web.Response:
        self.settings.update(await request.json())
        return web.json_response(self.settings)

    async def reset(self, request: web.Request) -> web.Response:
        self.tasks.clear()
        self.feeds = self.submissions = 0
        return web.json_response({})

    async def blob(self, request: web.Request) -> web.StreamResponse:
        size = int(request.query.get("size", "1048576"))
        resp = web.StreamResponse(headers={"Content-Type": "video/mp4", "Content-Length": str(size)})
        await resp.prepare(request)
        chunk = (b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 4096)[: 1 << 20]
        left = size
        while left > 0:
            part = chunk[: min(left, len(chunk))]
            await resp.write(part)
            left -= len(part)
        await resp.write_eof()
        return resp

    def app(self) -> web.Application:
        app = web.Application(client_max_size=16 << 20)
        app.router.add_post("/runway/pro/video2video", self.submit)
        app.router.add_post("/runway/feed", self.feed)
        app.router.add_get("/_emulator/stats", self.stats)
        app.router.add_post("/_emulator/configure", self.configure)
        app.router.add_post("/_emulator/reset", self.reset)
        app.router.add_get("/_emulator/blob", self.blob)
        return app


class FeedShim:
    """Forward ``POST /runway/feed``; answer 404 unless the task is terminal."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.session: ClientSession | None = None

    async def feed(self, request: web.Request) -> web.Response:
        assert self.session is not None
        body = await request.read()
        headers = {k: v for k, v in request.headers.items() if k.lower() in {"authorization", "x-runway-version"}}
        headers["Content-Type"] = "application/json"
        async with self.session.post(f"{self.upstream}/runway/feed", data=body, headers=headers) as up:
            payload = await up.read()
            status = up.status
        if status == 200:
            with contextlib.suppress(ValueError, AttributeError, TypeError):
                data = json.loads(payload).get("data") or {}
                if str(data.get("status", "")).upper() not in TERMINAL_WRAPPER:
                    return web.Response(status=404, text="404: render not finished")
        return web.Response(status=status, body=payload, content_type="application/json")

    def app(self) -> web.Application:
        async def on_startup(_: web.Application) -> None:
            self.session = ClientSession(connector=TCPConnector(limit=200), timeout=ClientTimeout(total=60))

        async def on_cleanup(_: web.Application) -> None:
            if self.session is not None:
                await self.session.close()

        app = web.Application()
        app.on_startup.append(on_startup)
        app.on_cleanup.append(on_cleanup)
        app.router.add_post("/runway/feed", self.feed)
        return app


async def _serve(app: web.Application, port: int, on_url: Any = None) -> None:
    runner = web.AppRunner(app, access_log=None, handle_signals=True)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port, backlog=4096)
    await site.start()
    sockets = site._server.sockets if site._server else []  # type: ignore[union-attr]
    url = f"http://127.0.0.1:{sockets[0].getsockname()[1]}"
    if on_url is not None:
        on_url(url)
    print(url, flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("mode", nargs="?", default="serve", choices=["serve", "shim"])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--cpu", type=int, default=-1)
    parser.add_argument("--api-key", default="bench-key")
    parser.add_argument("--render-seconds", type=float, default=30.0)
    parser.add_argument("--upstream", default="")
    args = parser.parse_args()
    if args.cpu >= 0:
        with contextlib.suppress(AttributeError, OSError):
            os.sched_setaffinity(0, {args.cpu})
    if args.mode == "shim":
        app = FeedShim(args.upstream).app()
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(_serve(app, args.port))
        return
    fake = FakeComet(args.api_key, args.render_seconds)

    def on_url(url: str) -> None:
        fake.base_url = url

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(fake.app(), args.port, on_url))


if __name__ == "__main__":
    main()
