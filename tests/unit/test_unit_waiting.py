"""comet_provider.utils.polling: RunwayWaiter, wait_sync / await_task, outcome, and the event encoding."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

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
from comet_provider.utils.polling import (
    EVENT_STATUSES,
    RunwayWaiter,
    await_task,
    encode_event,
    outcome,
    task_from_event,
    wait_sync,
)

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
    poll_interval: float = 1.0, deadline: float | None = None, submitted_at: float | None = None, seen: bool = False
) -> RunwayWaiter:
    return RunwayWaiter(
        "t-1", poll_interval=poll_interval, deadline=deadline, submitted_at=submitted_at, log=RecordingLog(), seen=seen
    )


def task(status: RunwayStatus, progress: float = 0.0, **kwargs: Any) -> RunwayTask:
    return RunwayTask("t-1", status, progress, **kwargs)


#: What the hook answers for a task_not_exist within its grace period: "not visible yet".
NOT_VISIBLE_YET = RunwayTask("t-1", RunwayStatus.PENDING, raw={"code": "task_not_exist"})
NOT_FOUND = RunwayTaskNotFoundError("gone", status_code=400, error_code="task_not_exist")


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
    assert w.seen
    w.on_error(NOT_FOUND)
    assert w.errors_in_a_row == 1
    # ... and so is the hook's stand-in for it: nothing logged, the last status kept.
    logged = len(w.log.records)
    assert w.on_task(NOT_VISIBLE_YET) is False
    assert w.last_status == "RUNNING" and len(w.log.records) == logged


def test_not_found_before_the_task_was_seen_is_fatal() -> None:
    with pytest.raises(RunwayTaskNotFoundError):
        waiter().on_error(NOT_FOUND)


def test_not_visible_yet_is_not_seen() -> None:
    """The grace period's stand-in must not make an unknown id look known once the grace is over."""
    w = waiter()
    assert w.on_task(NOT_VISIBLE_YET) is False
    assert not w.seen
    assert "PENDING" in w.log.of("info")[0]
    with pytest.raises(RunwayTaskNotFoundError):
        w.on_error(NOT_FOUND)


def test_seen_carries_over_from_an_earlier_poke() -> None:
    w = waiter(seen=True)
    w.on_error(NOT_FOUND)
    assert w.errors_in_a_row == 1


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


# -- wait_sync and its async twin await_task ------------------------------------------------------------


class ScriptedHook:
    """Duck-typed hook: get_task / aget_task answer from one script (tasks, or exceptions to raise)."""

    def __init__(self, *steps: RunwayTask | Exception, longest_call: float = 60.0, delay: float = 0.0) -> None:
        self.steps = list(steps)
        self.calls: list[tuple[str, float | None]] = []
        self.routes: list[str] = []
        self._longest_call = longest_call
        self.delay = delay

    def longest_call(self) -> float:
        return self._longest_call

    def get_task(self, runway_task_id: str, *, submitted_at: float | None = None, route: str = "pro") -> RunwayTask:
        self.calls.append((runway_task_id, submitted_at))
        self.routes.append(route)
        step = self.steps.pop(0) if len(self.steps) > 1 else self.steps[0]
        if isinstance(step, Exception):
            raise step
        return step

    async def aget_task(
        self, runway_task_id: str, *, submitted_at: float | None = None, route: str = "pro"
    ) -> RunwayTask:
        await asyncio.sleep(self.delay)
        return self.get_task(runway_task_id, submitted_at=submitted_at, route=route)


def wait(mode: str, hook: ScriptedHook, w: RunwayWaiter) -> RunwayTask:
    """``wait_sync`` or ``await_task``: every loop test holds for both twins."""
    if mode == "sync":
        return wait_sync(hook, w)  # type: ignore[arg-type]
    return asyncio.run(await_task(hook, w))  # type: ignore[arg-type]


@pytest.fixture(params=["sync", "async"])
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_wait_returns_the_finished_task_through_transient_errors(mode: str) -> None:
    hook = ScriptedHook(
        task(RunwayStatus.PENDING),
        CometRateLimitError("429", retry_after=0.0, status_code=429),  # Retry-After 0 keeps the test fast
        task(RunwayStatus.RUNNING, 0.5),
        CometConnectionError("timed out", request_sent=True),
        task(RunwayStatus.SUCCEEDED, 1.0, video_url=URL),
    )
    w = waiter(poll_interval=0.001, submitted_at=123.0)
    done = wait(mode, hook, w)
    assert done.status is RunwayStatus.SUCCEEDED
    assert len(hook.calls) == 5
    assert all(call == ("t-1", 123.0) for call in hook.calls)
    assert set(hook.routes) == {"pro"}


def test_wait_polls_on_the_route_the_task_was_submitted_on(mode: str) -> None:
    hook = ScriptedHook(task(RunwayStatus.RUNNING, 0.5), task(RunwayStatus.SUCCEEDED, 1.0, video_url=URL))
    w = RunwayWaiter("t-1", poll_interval=0.001, deadline=None, submitted_at=None, log=RecordingLog(), route="official")
    assert wait(mode, hook, w).status is RunwayStatus.SUCCEEDED
    assert hook.routes == ["official", "official"]


def test_wait_returns_failed_tasks_for_the_caller_to_judge(mode: str) -> None:
    hook = ScriptedHook(task(RunwayStatus.FAILED, fail_reason="x", failure_code="ASSET.INVALID"))
    assert wait(mode, hook, waiter(poll_interval=0.001)).status is RunwayStatus.FAILED


def test_wait_raises_fatal_errors(mode: str) -> None:
    hook = ScriptedHook(CometAuthError("401", status_code=401))
    with pytest.raises(CometAuthError):
        wait(mode, hook, waiter(poll_interval=0.001))
    assert len(hook.calls) == 1


def test_wait_times_out_at_the_deadline(mode: str) -> None:
    hook = ScriptedHook(task(RunwayStatus.RUNNING, 0.2))
    with pytest.raises(RunwayTaskTimeoutError) as info:
        wait(mode, hook, waiter(poll_interval=0.01, deadline=time.time() + 0.1))
    assert info.value.runway_task_id == "t-1"
    assert "RUNNING" in str(info.value)


def test_wait_fails_an_unknown_id_once_the_grace_period_is_over(mode: str) -> None:
    hook = ScriptedHook(NOT_VISIBLE_YET, NOT_VISIBLE_YET, NOT_FOUND)
    with pytest.raises(RunwayTaskNotFoundError):
        wait(mode, hook, waiter(poll_interval=0.001, deadline=time.time() + 30))
    assert len(hook.calls) == 3


def test_await_task_does_not_let_a_slow_call_pass_the_deadline() -> None:
    """Near the deadline a call that the hook would still be retrying is cut off."""
    hook = ScriptedHook(task(RunwayStatus.RUNNING), longest_call=60.0, delay=30.0)
    w = waiter(poll_interval=0.01, deadline=time.time() + 0.2)

    async def bounded() -> RunwayTask:
        return await asyncio.wait_for(await_task(hook, w), timeout=10)  # type: ignore[arg-type]

    with pytest.raises(RunwayTaskTimeoutError):
        asyncio.run(bounded())


def test_await_task_does_not_catch_bugs() -> None:
    """Unexpected exceptions propagate (encode_event turns them into error events)."""
    with pytest.raises(ZeroDivisionError):
        wait("async", ScriptedHook(ZeroDivisionError("bug")), waiter(poll_interval=0.001))


# -- outcome --------------------------------------------------------------------------------------------


def test_outcome() -> None:
    from comet_provider._compat import AirflowFailException

    ok = task(RunwayStatus.SUCCEEDED, 1.0, video_url=URL)
    assert outcome(ok) == ok.to_dict()
    assert outcome(ok)["runway_task_id"] == outcome(ok)["task_id"] == "t-1"
    with pytest.raises(AirflowFailException, match=r"SAFETY\.INPUT\.TEXT"):
        outcome(task(RunwayStatus.FAILED, failure_code="SAFETY.INPUT.TEXT", fail_reason="flagged"))
    with pytest.raises(RunwayTaskFailedError) as info:
        outcome(task(RunwayStatus.FAILED, failure_code="INTERNAL.BAD_OUTPUT.CODE01"))
    assert info.value.retryable
    with pytest.raises(RunwayTaskFailedError):
        outcome(task(RunwayStatus.CANCELLED))
    with pytest.raises(ValueError, match="RUNNING"):
        outcome(task(RunwayStatus.RUNNING))


# -- the trigger event: encode_event / task_from_event ---------------------------------------------------


@pytest.mark.parametrize(
    "finished",
    [
        task(RunwayStatus.SUCCEEDED, 1.0, video_url=URL),
        task(RunwayStatus.FAILED, fail_reason="x", failure_code="SAFETY.INPUT.TEXT"),
        task(RunwayStatus.CANCELLED),
    ],
)
def test_a_finished_task_travels_whole_and_is_judged_once(finished: RunwayTask) -> None:
    event = json.loads(json.dumps(encode_event("t-1", finished)))  # stored as JSON
    assert event == {"status": "finished", "runway_task_id": "t-1", "task": finished.to_dict()}
    restored = task_from_event(event)
    assert restored == finished
    if finished.is_successful:
        assert outcome(restored) == outcome(finished)
    else:
        with pytest.raises(Exception) as from_event:
            outcome(restored)
        with pytest.raises(Exception) as directly:
            outcome(finished)
        assert (type(from_event.value), str(from_event.value)) == (type(directly.value), str(directly.value))


@pytest.mark.parametrize("status", ["success", "failed"])
def test_events_of_the_previous_version_still_decode(status: str) -> None:
    summary = {"task_id": "t-1", "status": "FAILED" if status == "failed" else "SUCCEEDED", "video_url": URL}
    assert (
        task_from_event({"status": status, "runway_task_id": "t-1", "message": "m", "task": summary}).task_id == "t-1"
    )


def test_timeout_event_round_trip() -> None:
    error = RunwayTaskTimeoutError.after("t-7", 12.0, "RUNNING")
    event = encode_event("t-7", error)
    assert event["status"] == "timeout" and event["status"] in EVENT_STATUSES
    with pytest.raises(RunwayTaskTimeoutError) as info:
        task_from_event(event)
    assert info.value.runway_task_id == "t-7"
    assert str(info.value) == str(error)
    assert info.value.retryable


@pytest.mark.parametrize(
    ("error", "raised"),
    [
        (RunwayTaskNotFoundError("no such task", status_code=400), RunwayTaskNotFoundError),
        (CometAuthError("key rejected", status_code=401), CometAuthError),
        (CometMalformedResponseError("SUCCESS without URL"), CometMalformedResponseError),
        (CometError("something else"), CometError),
        (ZeroDivisionError("a bug"), CometError),
    ],
)
def test_error_event_round_trip(error: Exception, raised: type[Exception]) -> None:
    """A fatal error raises the same class after the triggerer as on the worker (ours only)."""
    event = json.loads(json.dumps(encode_event("t-7", error)))
    assert event["status"] == "error"
    with pytest.raises(CometError) as info:
        task_from_event(event)
    assert type(info.value) is raised
    assert str(error) in str(info.value)


def test_error_events_without_a_known_type_or_message() -> None:
    with pytest.raises(CometError, match="boom") as info:
        task_from_event({"status": "error", "runway_task_id": "t-7", "message": "boom", "error_type": "SystemExit"})
    assert type(info.value) is CometError
    with pytest.raises(CometError, match="without a message"):
        task_from_event({"status": "error", "runway_task_id": "t-7", "error_type": ["odd"]})


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
