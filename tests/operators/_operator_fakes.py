"""Seams shared by the operator's unit tests: a mock hook, a fake ``ti`` per try, a fake ``task_state_store``."""

from __future__ import annotations

import json
from typing import Any
from unittest import mock

from comet_provider._compat import TaskDeferred
from comet_provider.hooks.comet import CometHook
from comet_provider.models import RunwayStatus, RunwayTask
from comet_provider.operators.runway import RunwayVideo2VideoOperator

SECRET = "sk-optest-unit-SECRET-93be1f"
VIDEO = "https://cdn.example.com/clips/source.mp4"
RENDER = "https://cdn.example.com/renders/rw-1.mp4"
STATE_KEY = "comet_runway_task"


class FakeTI:
    """A try's task instance: each one is the next try (XCom starts empty, try_number grows)."""

    tries = 0

    def __init__(self) -> None:
        self.pushed: list[tuple[str, Any]] = []
        FakeTI.tries += 1
        self.try_number = FakeTI.tries

    def xcom_push(self, key: str, value: Any) -> None:
        self.pushed.append((key, value))

    def xcom(self, key: str) -> Any:
        values = [value for pushed_key, value in self.pushed if pushed_key == key]
        assert values, f"nothing pushed under {key!r}: {self.pushed}"
        return values[-1]


class FakeStore:
    """``task_state_store``: ``get`` / ``set``, JSON round-tripped like the real table."""

    def __init__(self) -> None:
        self.data: dict[str, str] = {}
        self.sets = 0

    def get(self, key: str) -> Any:
        value = self.data.get(key)
        return None if value is None else json.loads(value)

    def set(self, key: str, value: Any) -> None:
        self.sets += 1
        self.data[key] = json.dumps(value)


def task(status: RunwayStatus, task_id: str = "rw-1", **fields: Any) -> RunwayTask:
    if status is RunwayStatus.SUCCEEDED:
        fields.setdefault("video_url", RENDER.replace("rw-1", task_id))
        fields.setdefault("poster", f"https://cdn.example.com/renders/{task_id}.jpg")
        fields.setdefault("progress", 1.0)
    return RunwayTask(task_id=task_id, status=status, **fields)


def make_op(**kwargs: Any) -> RunwayVideo2VideoOperator:
    params: dict[str, Any] = {
        "task_id": "restyle",
        "video": VIDEO,
        "prompt": "pencil sketch",
        "deferrable": True,
        "poll_interval": 0.01,
        "timeout": 60,
    }
    params.update(kwargs)
    op = RunwayVideo2VideoOperator(**params)
    op.hook = mock.MagicMock(spec=CometHook)
    op.hook.submit_video2video.return_value = task(RunwayStatus.PENDING)
    op.hook.source_identity.return_value = None
    return op


def context(store: FakeStore | None) -> dict[str, Any]:
    ctx: dict[str, Any] = {"ti": FakeTI()}
    if store is not None:
        ctx["task_state_store"] = store
    return ctx


def run(op: RunwayVideo2VideoOperator, ctx: dict[str, Any]) -> TaskDeferred | dict[str, Any]:
    """One try: the deferral it asked for, or its result."""
    try:
        return op.execute(ctx)
    except TaskDeferred as deferred:
        return deferred


def event(status: str, **extra: Any) -> dict[str, Any]:
    return {"status": status, "runway_task_id": "rw-1", "message": f"{status} event", **extra}
