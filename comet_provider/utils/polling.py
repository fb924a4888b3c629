"""Waiting on one Runway task: the one module the trigger, the operator and the sensor share.

- :class:`RunwayWaiter` decides what to do after each poll (no I/O);
- :func:`wait_sync` and its async twin :func:`await_task` are the poll loop, on a worker or in
  the triggerer (whose event is :func:`encode_event` of what it returned or raised);
- :func:`outcome` is the one decision of what a finished task means for the Airflow task;
- :func:`encode_event` / :func:`task_from_event` are the trigger event's encoding.

Trigger events (JSON, stored by Airflow)::

    {"status": "finished", "runway_task_id": id, "task": RunwayTask.to_dict()}   # judge with outcome()
    {"status": "timeout",  "runway_task_id": id, "message": str}
    {"status": "error",    "runway_task_id": id, "message": str, "error_type": exception class name}
"""

from __future__ import annotations

import random
import time
from typing import TYPE_CHECKING, Any

from comet_provider import exceptions
from comet_provider.exceptions import (
    CometError,
    RunwayTaskFailedError,
    RunwayTaskNotFoundError,
    RunwayTaskTimeoutError,
)
from comet_provider.models import RunwayTask
from comet_provider.utils import metrics
from comet_provider.utils.retry import RetryPolicy

if TYPE_CHECKING:
    from comet_provider.hooks.comet import CometHook

__all__ = [
    "EVENT_STATUSES",
    "RunwayWaiter",
    "await_task",
    "encode_event",
    "outcome",
    "task_from_event",
    "wait_sync",
]

#: Every event's ``status`` is one of these ("success" and "failed": events of version 0.1,
#: still found in the metadata DB of tasks deferred before an upgrade).
EVENT_STATUSES = frozenset({"finished", "timeout", "error", "success", "failed"})

# Fatal errors an "error" event turns back into (same class on every path); others read as CometError.
_REBUILT_ERRORS = frozenset(
    {
        "CometAPIError",
        "CometAuthError",
        "CometBadRequestError",
        "CometConfigError",
        "CometMalformedResponseError",
        "RunwayTaskNotFoundError",
    }
)

# Between polls that failed: grows from the poll interval up to a minute.
_ERROR_BACKOFF = RetryPolicy(max_backoff=60.0)


class RunwayWaiter:
    """What to do next while waiting on a Runway task.

    Transient trouble never ends the wait: only the deadline does. Once CometAPI has
    shown the task (``seen``), a ``task_not_exist`` is a gateway blip, not an end; the
    hook's "not visible yet" stand-in (within the grace period) does not count as seen.

    :param seen: whether an earlier poke already saw the task (a sensor in reschedule mode).
    :param route: the route the task was submitted on, "pro" or "official": where it is polled.
    """

    # Thousands of waits live in one triggerer: no per-instance __dict__.
    __slots__ = (
        "_last_error",
        "deadline",
        "errors_in_a_row",
        "last_progress",
        "last_status",
        "log",
        "poll_interval",
        "route",
        "runway_task_id",
        "seen",
        "started",
        "submitted_at",
    )

    def __init__(
        self,
        runway_task_id: str,
        *,
        poll_interval: float,
        deadline: float | None,
        submitted_at: float | None,
        log: Any,
        seen: bool = False,
        route: str = "pro",
    ) -> None:
        self.runway_task_id = runway_task_id
        self.route = route
        self.poll_interval = poll_interval
        self.deadline = deadline
        self.submitted_at = submitted_at
        self.log = log
        self.seen = seen
        self.started = time.time()
        # Only what the next decision needs.
        self.last_status: str | None = None
        self.last_progress = 0.0
        self.errors_in_a_row = 0
        self._last_error: CometError | None = None

    def on_task(self, task: RunwayTask) -> bool:
        """Record a poll's answer; True when the task has ended."""
        self.errors_in_a_row = 0
        if task.raw.get("code") == "task_not_exist":
            if self.seen:
                return False  # a gateway blip about a task already seen: nothing new to report
        else:
            self.seen = True
        status = task.status._value_  # the plain text; .value is a property, read on every poll
        if task.progress and not self.last_progress and self.last_status is not None:
            metrics.render_progressed(self.submitted_at)  # the first poll after one at 0% that saw progress
        # Every status change and every 10% of progress: enough to follow a render in the task
        # log, and cheap (formatting a line per poll was a fifth of a poll's CPU).
        if status != self.last_status or int(task.progress * 10) != int(self.last_progress * 10):
            self.log.info("Runway task %s: %s, %d%% done.", task.task_id, status, round(task.progress * 100))
        self.last_status = status
        self.last_progress = task.progress
        if task.is_terminal:
            metrics.render_ended(self.submitted_at, status)
            return True
        return False

    def on_error(self, error: CometError) -> None:
        """Record a failed poll; re-raise what waiting longer cannot fix."""
        if not (error.retryable or (self.seen and isinstance(error, RunwayTaskNotFoundError))):
            raise error
        metrics.poll_failed(error)
        self.errors_in_a_row += 1
        self._last_error = error
        self.log.warning(
            "Polling Runway task %s failed (%s); still waiting (%d failed polls in a row).",
            self.runway_task_id,
            error,
            self.errors_in_a_row,
        )

    def remaining(self) -> float | None:
        return None if self.deadline is None else self.deadline - time.time()

    def expired(self) -> bool:
        return self.deadline is not None and time.time() >= self.deadline

    def next_sleep(self) -> float:
        """The pause before the next poll: the interval, longer after errors, never past the deadline."""
        if self.errors_in_a_row:
            delay = max(self.poll_interval, _ERROR_BACKOFF.backoff(self.errors_in_a_row, self._last_error))
        else:
            # +-10% so thousands of waits started together spread out.
            delay = self.poll_interval * random.uniform(0.9, 1.1)
        remaining = self.remaining()
        if remaining is not None:
            delay = min(delay, max(remaining, 0.0))
        return delay

    def timeout_error(self) -> RunwayTaskTimeoutError:
        metrics.render_failed("timeout")
        return RunwayTaskTimeoutError.after(self.runway_task_id, time.time() - self.started, self.last_status)


def wait_sync(hook: CometHook, waiter: RunwayWaiter) -> RunwayTask:
    """Poll until the task ends (returned, whatever its outcome) or the deadline passes (raised).

    Raises :class:`RunwayTaskTimeoutError` at the deadline and any :class:`CometError` that
    waiting cannot fix (a wrong key, an unknown task past the grace period, ...).
    """
    while True:
        try:
            task = hook.get_task(waiter.runway_task_id, submitted_at=waiter.submitted_at, route=waiter.route)
        except CometError as exc:
            waiter.on_error(exc)
        else:
            if waiter.on_task(task):
                return task
        if waiter.expired():
            raise waiter.timeout_error()
        time.sleep(waiter.next_sleep())


async def await_task(hook: CometHook, waiter: RunwayWaiter) -> RunwayTask:
    """Async twin of :func:`wait_sync` (same returns and raises), through the hook's async calls."""
    import asyncio

    task_id = waiter.runway_task_id
    submitted_at = waiter.submitted_at
    route = waiter.route
    while True:
        try:
            remaining = waiter.remaining()
            # The call's coroutine is never bound to a name: kept, it would live on through the sleep.
            if remaining is None or remaining > hook.longest_call():
                task = await hook.aget_task(task_id, submitted_at=submitted_at, route=route)
            else:  # near the deadline the hook's own retries must not carry us past it
                task = await asyncio.wait_for(
                    hook.aget_task(task_id, submitted_at=submitted_at, route=route), max(remaining, 0.001)
                )
        except asyncio.TimeoutError:
            pass  # the hook was still retrying at the deadline
        except CometError as exc:
            waiter.on_error(exc)
        else:
            if waiter.on_task(task):
                return task
            del task  # its parsed payload would otherwise live on through the sleep
        if waiter.expired():
            raise waiter.timeout_error()
        await asyncio.sleep(waiter.next_sleep())


def encode_event(runway_task_id: str, result: RunwayTask | Exception) -> dict[str, Any]:
    """The event for a finished task, or for what ended the wait instead (see the module docstring)."""
    if isinstance(result, RunwayTask):
        return {"status": "finished", "runway_task_id": runway_task_id, "task": result.to_dict()}
    if isinstance(result, RunwayTaskTimeoutError):
        return {"status": "timeout", "runway_task_id": runway_task_id, "message": str(result)}
    if isinstance(result, CometError):
        message, error_type = str(result), type(result).__name__
    else:
        message, error_type = f"{type(result).__name__}: {result}", "Exception"
    return {"status": "error", "runway_task_id": runway_task_id, "message": message, "error_type": error_type}


def task_from_event(event: dict[str, Any] | None) -> RunwayTask:
    """The finished task an event carries (judge it with :func:`outcome`).

    Raises what ended the wait otherwise: :class:`RunwayTaskTimeoutError`, the fatal error
    (same class as on the sync path where it is one of ours), or :class:`CometError` for an odd event.
    """
    if not isinstance(event, dict) or event.get("status") not in EVENT_STATUSES:
        raise CometError(f"Unexpected event from RunwayTaskTrigger: {event!r}")
    status = event["status"]
    if status == "timeout":
        raise RunwayTaskTimeoutError(str(event.get("runway_task_id")), str(event.get("message")))
    if status == "error":
        message = str(event.get("message") or "RunwayTaskTrigger failed without a message")
        error_type = event.get("error_type")
        known = isinstance(error_type, str) and error_type in _REBUILT_ERRORS
        raise (getattr(exceptions, str(error_type)) if known else CometError)(message)
    task = event.get("task")
    if not isinstance(task, dict):
        raise CometError(f"RunwayTaskTrigger sent a {status!r} event without the task: {event!r}")
    return RunwayTask.from_dict(task)


def outcome(task: RunwayTask) -> dict[str, Any]:
    """The result of a finished task for XCom, or the exception that fails the Airflow task.

    The result is :meth:`RunwayTask.to_dict`: ``runway_task_id`` (``task_id``, an alias of it),
    ``status``, ``progress``, ``video_url``, ``poster``, ``last_frame``, ``fail_reason``,
    ``failure_code``. Failed or cancelled renders raise :class:`RunwayTaskFailedError`;
    content-safety refusals raise ``AirflowFailException`` (no retries: the same input is refused again).
    """
    from comet_provider._compat import AirflowFailException

    try:
        result = task.raise_for_status().to_dict()
    except RunwayTaskFailedError as exc:
        metrics.render_failed("safety" if exc.is_safety else "other")
        if exc.is_safety:
            raise AirflowFailException(str(exc)) from exc
        raise
    metrics.incr(metrics.RENDERS_SUCCEEDED)
    return result
