"""RunwayWaiter, wait_sync, outcome, RunwayTaskTrigger (serialize, run with a fake API) and task_from_event."""

from __future__ import annotations

import asyncio
import importlib
import json
import time
from typing import Any

import httpx
import pytest

from comet_provider.exceptions import (
    CometAuthError,
    CometConnectionError,
    CometError,
    CometMalformedResponseError,
    CometRateLimitError,
    CometServerError,
    RunwayTaskFailedError,
    RunwayTaskNotFoundError,
    RunwayTaskTimeoutError,
)
from comet_provider.models import RunwayStatus, RunwayTask
from comet_provider.triggers import runway as trigger_module
from comet_provider.triggers.runway import EVENT_STATUSES, RunwayTaskTrigger, task_from_event
from comet_provider.utils.polling import RunwayWaiter, outcome, wait_sync

from ._fakes import FAST_RETRY, SECRET, FakeApi, error_envelope, feed_answer, html_page, make_hook

URL = "https://cdn.test/out.mp4"


class RecordingLog:
    def __init__(self) -> None:
        self.records: list[tuple[str, str]] = []

    def _record(self, level: str, msg: str, *args: Any) -> None:
        self.records.append((level, msg % args if args else msg))

    def info(self, msg: str, *args: Any) -> None:
        self._record("info", msg, *args)

    def warning(self, msg: str, *args: Any) -> None:
        self._record("warning", msg, *args)

    def debug(self, msg: str, *args: Any) -> None:
        self._record("debug", msg, *args)

    def error(self, msg: str, *args: Any) -> None:
        self._record("error", msg, *args)

    def of(self, level: str) -> list[str]:
        return [text for lvl, text in self.records if lvl == level]


def waiter(
    poll_interval: float = 1.0, deadline: float | None = None, submitted_at: float | None = None
) -> RunwayWaiter:
    return RunwayWaiter(
        "t-1", poll_interval=poll_interval, deadline=deadline, submitted_at=submitted_at, log=RecordingLog()
    )


def task(status: RunwayStatus, progress: float = 0.0, **kwargs: Any) -> RunwayTask:
    return RunwayTask("t-1", status, progress, **kwargs)


# -- RunwayWaiter ------------------------------------------------------------------------------------


def test_progress_is_logged_only_when_it_changes() -> None:
    w = waiter()
    sequence = [
        task(RunwayStatus.PENDING),
        task(RunwayStatus.PENDING),
        task(RunwayStatus.RUNNING, 0.10),
        task(RunwayStatus.RUNNING, 0.10),
        task(RunwayStatus.RUNNING, 0.105),
        task(RunwayStatus.RUNNING, 0.30),
        task(RunwayStatus.RUNNING, 0.30),
        task(RunwayStatus.SUCCEEDED, 1.0, video_url=URL),
    ]
    ended = [w.on_task(t) for t in sequence]
    assert ended == [False] * 7 + [True]
    lines = w.log.of("info")
    assert len(lines) == 4
    assert "PENDING" in lines[0] and "0%" in lines[0]
    assert "RUNNING" in lines[1] and "10%" in lines[1]
    assert "30%" in lines[2]
    assert "SUCCEEDED" in lines[3] and "100%" in lines[3]


@pytest.mark.parametrize("status", [RunwayStatus.FAILED, RunwayStatus.CANCELLED, RunwayStatus.SUCCEEDED])
def test_terminal_statuses_end_the_wait(status: RunwayStatus) -> None:
    assert waiter().on_task(task(status, video_url=URL)) is True


@pytest.mark.parametrize(
    "error",
    [
        CometServerError("502", status_code=502),
        CometRateLimitError("429", retry_after=1, status_code=429),
        CometConnectionError("timed out", request_sent=True),
        CometConnectionError("refused", request_sent=False),
    ],
)
def test_transient_errors_do_not_end_the_wait(error: CometError) -> None:
    w = waiter()
    w.on_error(error)
    w.on_error(error)
    assert w.errors_in_a_row == 2
    assert len(w.log.of("warning")) == 2
    assert "t-1" in w.log.of("warning")[0]
    w.on_task(task(RunwayStatus.RUNNING, 0.5))
    assert w.errors_in_a_row == 0


def test_not_found_after_the_task_was_seen_is_tolerated() -> None:
    w = waiter()
    w.on_task(task(RunwayStatus.RUNNING, 0.2))
    w.on_error(RunwayTaskNotFoundError("gone", status_code=400, error_code="task_not_exist"))
    assert w.errors_in_a_row == 1


def test_not_found_before_the_task_was_seen_is_fatal() -> None:
    error = RunwayTaskNotFoundError("gone", status_code=400, error_code="task_not_exist")
    with pytest.raises(RunwayTaskNotFoundError):
        waiter().on_error(error)


@pytest.mark.parametrize(
    "error",
    [
        CometAuthError("401", status_code=401),
        CometMalformedResponseError("SUCCESS without URL"),
        CometError("something else"),
    ],
)
def test_fatal_errors_are_raised(error: CometError) -> None:
    w = waiter()
    w.on_task(task(RunwayStatus.RUNNING))
    with pytest.raises(type(error)) as info:
        w.on_error(error)
    assert info.value is error


def test_next_sleep_is_the_interval_with_jitter() -> None:
    w = waiter(poll_interval=2.0)
    sleeps = [w.next_sleep() for _ in range(200)]
    assert all(1.8 <= s <= 2.2 for s in sleeps)
    assert len(set(sleeps)) > 1


def test_next_sleep_never_passes_the_deadline() -> None:
    w = waiter(poll_interval=30.0, deadline=time.time() + 1.0)
    assert 0.0 <= w.next_sleep() <= 1.0
    w.on_error(CometServerError("503", status_code=503))
    assert 0.0 <= w.next_sleep() <= 1.0
    expired = waiter(poll_interval=30.0, deadline=time.time() - 5)
    assert expired.next_sleep() == 0.0
    assert expired.expired()
    assert expired.remaining() is not None and expired.remaining() < 0


def test_next_sleep_backs_off_after_errors() -> None:
    w = waiter(poll_interval=0.01)
    for _ in range(5):
        w.on_error(CometServerError("503", status_code=503))
    # Five failed polls in a row: the 5th backoff step is at least half of 0.5 * 2**4 = 8 s.
    assert w.next_sleep() >= 4.0
    w.on_task(task(RunwayStatus.RUNNING))
    assert w.next_sleep() <= 0.011


def test_next_sleep_honours_retry_after_but_not_below_the_interval() -> None:
    w = waiter(poll_interval=1.0)
    w.on_error(CometRateLimitError("429", retry_after=7.0, status_code=429))
    assert w.next_sleep() == 7.0
    w2 = waiter(poll_interval=5.0)
    w2.on_error(CometRateLimitError("429", retry_after=0.5, status_code=429))
    assert w2.next_sleep() == 5.0


def test_no_deadline_never_expires() -> None:
    w = waiter(deadline=None)
    assert w.remaining() is None
    assert not w.expired()


def test_timeout_error_names_the_task_and_last_status() -> None:
    w = waiter(deadline=time.time() - 1)
    w.on_task(task(RunwayStatus.RUNNING, 0.4))
    error = w.timeout_error()
    assert isinstance(error, RunwayTaskTimeoutError)
    assert error.runway_task_id == "t-1"
    assert error.retryable
    assert "t-1" in str(error) and "RUNNING" in str(error)


# -- wait_sync and outcome -------------------------------------------------------------------------------


class ScriptedHook:
    """Duck-typed hook: get_task answers from a script (tasks or errors)."""

    def __init__(self, *steps: RunwayTask | CometError) -> None:
        self.steps = list(steps)
        self.calls: list[tuple[str, float | None]] = []

    def get_task(self, runway_task_id: str, *, submitted_at: float | None = None) -> RunwayTask:
        self.calls.append((runway_task_id, submitted_at))
        step = self.steps.pop(0) if len(self.steps) > 1 else self.steps[0]
        if isinstance(step, CometError):
            raise step
        return step


def test_wait_sync_returns_the_finished_task_through_transient_errors() -> None:
    hook = ScriptedHook(
        task(RunwayStatus.PENDING),
        CometRateLimitError("429", retry_after=0.0, status_code=429),  # Retry-After 0 keeps the test fast
        task(RunwayStatus.RUNNING, 0.5),
        CometConnectionError("timed out", request_sent=True),
        task(RunwayStatus.SUCCEEDED, 1.0, video_url=URL),
    )
    w = waiter(poll_interval=0.001, submitted_at=123.0)
    done = wait_sync(hook, w)  # type: ignore[arg-type]
    assert done.status is RunwayStatus.SUCCEEDED
    assert len(hook.calls) == 5
    assert all(call == ("t-1", 123.0) for call in hook.calls)


def test_wait_sync_returns_failed_tasks_for_the_caller_to_judge() -> None:
    hook = ScriptedHook(task(RunwayStatus.FAILED, fail_reason="x", failure_code="ASSET.INVALID"))
    assert wait_sync(hook, waiter(poll_interval=0.001)).status is RunwayStatus.FAILED  # type: ignore[arg-type]


def test_wait_sync_raises_fatal_errors() -> None:
    hook = ScriptedHook(CometAuthError("401", status_code=401))
    with pytest.raises(CometAuthError):
        wait_sync(hook, waiter(poll_interval=0.001))  # type: ignore[arg-type]
    assert len(hook.calls) == 1


def test_wait_sync_times_out_at_the_deadline() -> None:
    hook = ScriptedHook(task(RunwayStatus.RUNNING, 0.2))
    with pytest.raises(RunwayTaskTimeoutError) as info:
        wait_sync(hook, waiter(poll_interval=0.01, deadline=time.time() + 0.1))  # type: ignore[arg-type]
    assert info.value.runway_task_id == "t-1"
    assert "RUNNING" in str(info.value)


def test_outcome() -> None:
    from airflow.sdk.exceptions import AirflowFailException

    ok = task(RunwayStatus.SUCCEEDED, 1.0, video_url=URL)
    assert outcome(ok) == ok.to_dict()
    with pytest.raises(AirflowFailException, match=r"SAFETY\.INPUT\.TEXT"):
        outcome(task(RunwayStatus.FAILED, failure_code="SAFETY.INPUT.TEXT", fail_reason="flagged"))
    with pytest.raises(RunwayTaskFailedError) as info:
        outcome(task(RunwayStatus.FAILED, failure_code="INTERNAL.BAD_OUTPUT.CODE01"))
    assert info.value.retryable
    with pytest.raises(RunwayTaskFailedError):
        outcome(task(RunwayStatus.CANCELLED))


# -- RunwayTaskTrigger: serialization ----------------------------------------------------------------


def test_serialize_round_trip() -> None:
    trigger = RunwayTaskTrigger(
        "t-1", comet_conn_id="my_comet", poll_interval=7, deadline=1_900_000_000, submitted_at=1_800_000_000.5
    )
    classpath, kwargs = trigger.serialize()
    module_name, _, class_name = classpath.rpartition(".")
    cls = getattr(importlib.import_module(module_name), class_name)
    assert cls is RunwayTaskTrigger
    # Stored as JSON in the metadata DB: primitives only.
    restored_kwargs = json.loads(json.dumps(kwargs))
    again = cls(**restored_kwargs)
    assert again.serialize() == (classpath, kwargs)
    assert kwargs == {
        "runway_task_id": "t-1",
        "comet_conn_id": "my_comet",
        "poll_interval": 7.0,
        "deadline": 1_900_000_000.0,
        "submitted_at": 1_800_000_000.5,
    }


def test_serialize_defaults_round_trip() -> None:
    classpath, kwargs = RunwayTaskTrigger("t-2").serialize()
    assert json.loads(json.dumps(kwargs)) == kwargs
    assert RunwayTaskTrigger(**kwargs).serialize() == (classpath, kwargs)
    assert kwargs["deadline"] is None and kwargs["submitted_at"] is None
    assert kwargs["comet_conn_id"] == "comet_default"


def test_trigger_holds_no_key(comet_conn: Any) -> None:
    trigger = RunwayTaskTrigger("t-1", deadline=time.time() + 60)
    assert SECRET not in json.dumps(trigger.serialize())
    assert SECRET not in repr(trigger)
    assert SECRET not in str(vars(trigger))


# -- RunwayTaskTrigger.run against a fake API ------------------------------------------------------------


@pytest.fixture
def trigger_api(monkeypatch: pytest.MonkeyPatch, fake_api: FakeApi) -> FakeApi:
    """The trigger's hook talks to ``fake_api`` with fast retries."""
    monkeypatch.setattr(
        trigger_module, "CometHook", lambda conn_id="comet_default": make_hook(fake_api, retry_policy=FAST_RETRY)
    )
    return fake_api


async def first_event(trigger: RunwayTaskTrigger) -> dict[str, Any]:
    async def run() -> dict[str, Any]:
        events = [event async for event in trigger.run()]
        assert len(events) == 1
        return events[0].payload

    payload = await asyncio.wait_for(run(), timeout=20)
    assert payload["status"] in EVENT_STATUSES
    assert payload["runway_task_id"] == "t-1"
    json.dumps(payload)  # events are stored as JSON
    return payload


async def test_trigger_success_through_transient_errors(trigger_api: FakeApi) -> None:
    trigger_api.script(
        httpx.Response(400, json={"code": "task_not_exist", "message": "task_not_exist", "data": None}),
        feed_answer("QUEUED", "PENDING", task_id="t-1"),
        html_page(502, "502 Bad Gateway"),
        html_page(502, "502 Bad Gateway"),
        html_page(502, "502 Bad Gateway"),
        html_page(502, "502 Bad Gateway"),
        html_page(502, "502 Bad Gateway"),  # more than one hook call's retries: the trigger keeps waiting
        feed_answer("IN_PROGRESS", "RUNNING", task_id="t-1", progress="50%"),
        httpx.ReadTimeout("slow"),
        feed_answer("SUCCESS", "SUCCEEDED", task_id="t-1", video_url=URL),
    )
    trigger = RunwayTaskTrigger("t-1", poll_interval=0.001, deadline=time.time() + 30, submitted_at=time.time())
    event = await first_event(trigger)
    assert event["status"] == "success"
    done = task_from_event(event)
    assert done.status is RunwayStatus.SUCCEEDED and done.video_url == URL
    assert len(trigger_api.requests) == 10


async def test_trigger_failed_event(trigger_api: FakeApi) -> None:
    trigger_api.script(
        feed_answer(
            "FAILURE",
            "FAILED",
            task_id="t-1",
            fail_reason="The request was rejected by content moderation.",
            data={"id": "t-1", "status": "FAILED", "failureCode": "SAFETY.INPUT.TEXT"},
        )
    )
    event = await first_event(RunwayTaskTrigger("t-1", poll_interval=0.001, deadline=time.time() + 30))
    assert event["status"] == "failed"
    assert "SAFETY.INPUT.TEXT" in event["message"]
    failed = task_from_event(event)
    assert failed.failure_code == "SAFETY.INPUT.TEXT"
    with pytest.raises(RunwayTaskFailedError) as info:
        failed.raise_for_status()
    assert info.value.is_safety


async def test_trigger_timeout_event(trigger_api: FakeApi) -> None:
    trigger_api.script(feed_answer("IN_PROGRESS", "RUNNING", task_id="t-1", progress="10%"))
    event = await first_event(RunwayTaskTrigger("t-1", poll_interval=0.01, deadline=time.time() + 0.2))
    assert event["status"] == "timeout"
    with pytest.raises(RunwayTaskTimeoutError) as info:
        task_from_event(event)
    assert info.value.runway_task_id == "t-1"


async def test_trigger_deadline_already_passed(trigger_api: FakeApi) -> None:
    trigger_api.script(feed_answer("IN_PROGRESS", "RUNNING", task_id="t-1"))
    event = await first_event(RunwayTaskTrigger("t-1", poll_interval=5, deadline=time.time() - 1))
    assert event["status"] == "timeout"


async def test_trigger_error_event_on_fatal_errors_without_the_key(trigger_api: FakeApi) -> None:
    trigger_api.script(error_envelope(401, f"Invalid token Bearer {SECRET}", code="invalid_api_key"))
    event = await first_event(RunwayTaskTrigger("t-1", poll_interval=0.001, deadline=time.time() + 30))
    assert event["status"] == "error"
    assert event["error_type"] == "CometAuthError"
    assert SECRET not in json.dumps(event)
    with pytest.raises(CometError):
        task_from_event(event)
    assert len(trigger_api.requests) == 1


# -- task_from_event --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "summary",
    [
        task(RunwayStatus.SUCCEEDED, 1.0, video_url=URL).to_dict(),
        task(RunwayStatus.FAILED, fail_reason="x", failure_code="ASSET.INVALID").to_dict(),
        task(RunwayStatus.CANCELLED).to_dict(),
    ],
)
def test_task_from_event_for_finished_tasks(summary: dict[str, Any]) -> None:
    status = "success" if summary["status"] == "SUCCEEDED" else "failed"
    restored = task_from_event({"status": status, "runway_task_id": "t-1", "message": "m", "task": summary})
    assert restored.to_dict() == summary


def test_task_from_event_timeout_and_error() -> None:
    with pytest.raises(RunwayTaskTimeoutError) as info:
        task_from_event({"status": "timeout", "runway_task_id": "t-7", "message": "waited too long"})
    assert info.value.runway_task_id == "t-7"
    assert "waited too long" in str(info.value)
    with pytest.raises(CometError, match="boom"):
        task_from_event({"status": "error", "runway_task_id": "t-7", "message": "boom"})
    with pytest.raises(CometError):
        task_from_event({"status": "error", "runway_task_id": "t-7"})


@pytest.mark.parametrize(
    "event",
    [
        None,
        [],
        "success",
        {},
        {"status": None},
        {"status": "SUCCESS"},
        {"status": "done", "task": {}},
        {"status": "success"},
        {"status": "success", "task": "t-1"},
        {"status": "failed", "task": None},
        {"status": "success", "task": {"task_id": "t-1", "status": "BOGUS"}},
        {"status": "success", "task": {"status": "SUCCEEDED"}},
    ],
)
def test_task_from_event_rejects_malformed_events(event: Any) -> None:
    with pytest.raises(CometError):
        task_from_event(event)
