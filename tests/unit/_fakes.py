"""Scripted fake CometAPI for the unit tests (served through ``httpx.MockTransport``; no sockets)."""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx

from comet_provider.hooks.comet import CometHook
from comet_provider.utils.retry import RetryPolicy

#: A key distinctive enough that finding it anywhere is a leak.
SECRET = "sk-test-SECRET-0123456789abcdef"
BASE_URL = "https://comet.test"
SUBMIT_URL = f"{BASE_URL}/runway/pro/video2video"
FEED_URL = f"{BASE_URL}/runway/feed"

#: Retries without waiting: backoffs of at most a millisecond.
FAST_RETRY = RetryPolicy(
    max_attempts=4, max_elapsed=30.0, initial_backoff=0.0005, max_backoff=0.001, max_retry_after=0.01
)

MODES = ("sync", "async")

Step = httpx.Response | BaseException | Callable[[httpx.Request], Any]


def connection_json(**overrides: Any) -> str:
    conn: dict[str, Any] = {"conn_type": "comet", "host": BASE_URL, "password": SECRET}
    conn.update(overrides)
    return json.dumps(conn)


class FakeApi:
    """Answers requests from a script, one step per request; the last step repeats.

    A step is an ``httpx.Response``, an exception to raise (a transport error),
    or a callable taking the request and returning either.
    """

    def __init__(self, *steps: Step) -> None:
        self.steps: list[Step] = list(steps)
        self.requests: list[httpx.Request] = []

    def script(self, *steps: Step) -> None:
        self.steps = list(steps)

    def handler(self, request: httpx.Request) -> httpx.Response:
        request.read()
        self.requests.append(request)
        if not self.steps:
            raise AssertionError(f"unexpected request {request.method} {request.url}")
        step = self.steps.pop(0) if len(self.steps) > 1 else self.steps[0]
        if callable(step) and not isinstance(step, httpx.Response):
            step = step(request)
        if isinstance(step, BaseException):
            # httpx transport errors need the request to be attached.
            if isinstance(step, httpx.RequestError):
                step.request = request
            raise step
        return step

    @property
    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handler)

    def bodies(self) -> list[Any]:
        return [json.loads(r.content) for r in self.requests]

    def paths(self) -> list[str]:
        return [r.url.path for r in self.requests]


def feed_answer(status: str = "QUEUED", inner: str = "PENDING", task_id: str = "task-1", **data: Any) -> httpx.Response:
    body = {
        "code": "success",
        "message": "",
        "data": {
            "task_id": task_id,
            "action": "VIDEO_TO_VIDEO",
            "status": status,
            "fail_reason": "",
            "progress": "0%",
            "data": {"id": task_id, "status": inner},
            **data,
        },
    }
    return httpx.Response(200, json=body)


def submit_answer(task_id: str = "task-1") -> httpx.Response:
    return httpx.Response(
        200, json={"code": 200, "msg": "成功", "data": {"task_id": task_id, "status": ""}, "exec_time": 0.01}
    )


def error_envelope(
    status: int, message: str, *, code: str = "invalid_request", param: str = "", **headers: str
) -> httpx.Response:
    body = {"error": {"message": message, "type": "comet_api_error", "param": param, "code": code}}
    return httpx.Response(status, json=body, headers=headers)


def html_page(status: int, title: str) -> httpx.Response:
    page = f"<html><head><title>{title}</title></head><body><center><h1>{title}</h1></center></body></html>"
    return httpx.Response(status, content=page.encode(), headers={"Content-Type": "text/html"})


class Twin:
    """Calls the sync or the async twin of a hook method, so one test covers both."""

    def __init__(self, mode: str, hook: CometHook) -> None:
        self.mode = mode
        self.hook = hook

    async def submit(
        self, video: str = "https://media.test/in.mp4", prompt: str = "pixelated style", **kwargs: Any
    ) -> Any:
        if self.mode == "sync":
            return self.hook.submit_video2video(video, prompt, **kwargs)
        return await self.hook.asubmit_video2video(video, prompt, **kwargs)

    async def get_task(self, runway_task_id: str, **kwargs: Any) -> Any:
        if self.mode == "sync":
            return self.hook.get_task(runway_task_id, **kwargs)
        return await self.hook.aget_task(runway_task_id, **kwargs)


def make_hook(api: FakeApi, **kwargs: Any) -> CometHook:
    """A hook whose sync and async requests both go to ``api``."""
    return CometHook(transport=api.transport, async_transport=api.transport, **kwargs)


@contextlib.contextmanager
def memory_folder(prefix: str = "t") -> Iterator[str]:
    """A fresh ``memory://`` folder for ObjectStoragePath (Airflow registers no memory filesystem itself)."""
    import fsspec
    from airflow.sdk.io import store

    fs = fsspec.filesystem("memory")
    store.attach("memory", fs=fs)
    root = f"{prefix}-{uuid.uuid4().hex[:8]}"
    try:
        yield f"memory://{root}"
    finally:
        if fs.exists(f"/{root}"):
            fs.rm(f"/{root}", recursive=True)
