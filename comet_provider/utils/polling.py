"""Waiting on one Runway task: the logic shared by the trigger, the operator and the sensor.

:class:`RunwayWaiter` holds no I/O. The trigger drives it with ``await``, the
sync paths with :func:`wait_sync`; both therefore treat progress, transient
errors and deadlines the same way.
"""

from __future__ import annotations

import random
import time
from typing import TYPE_CHECKING, Any

from comet_provider.exceptions import (
    CometError,
    RunwayTaskFailedError,
    RunwayTaskNotFoundError,
    RunwayTaskTimeoutError,
)
from comet_provider.utils.retry import RetryPolicy

if TYPE_CHECKING:
    from comet_provider.hooks.comet import CometHook
    from comet_provider.models import RunwayTask

__all__ = ["RunwayWaiter", "outcome", "wait_sync"]

# Between polls that failed: grows from the poll interval up to a minute.
_ERROR_BACKOFF = RetryPolicy(max_backoff=60.0)


class RunwayWaiter:
    """What to do next while waiting on a Runway task.

    Transient trouble never ends the wait: only the deadline does. A
    ``task_not_exist`` for a task already seen is a gateway blip, not an end.
    """

    def __init__(
        self,
        runway_task_id: str,
        *,
        poll_interval: float,
        deadline: float | None,
        submitted_at: float | None,
        log: Any,
    ) -> None:
        self.runway_task_id = runway_task_id
        self.poll_interval = poll_interval
        self.deadline = deadline
        self.submitted_at = submitted_at
        self.log = log
        self.started = time.time()
        # Only what the next decision needs: thousands of waits live in one triggerer.
        self.last_status: str | None = None
        self.last_progress = 0.0
        self.errors_in_a_row = 0
        self._last_error: CometError | None = None

    def on_task(self, task: RunwayTask) -> bool:
        """Record a poll's answer; True when the task has ended."""
        self.errors_in_a_row = 0
        if task.raw.get("code") == "task_not_exist" and self.last_status is not None:
            return False  # a gateway blip about a task already seen: nothing new to report
        status = task.status.value
        # Every status change and every 10% of progress: enough to follow a render in the task
        # log, and cheap (formatting a line per poll was a fifth of a poll's CPU).
        if status != self.last_status or int(task.progress * 10) != int(self.last_progress * 10):
            self.log.info("Runway task %s: %s, %d%% done.", task.task_id, status, round(task.progress * 100))
        self.last_status = status
        self.last_progress = task.progress
        return task.is_terminal

    def on_error(self, error: CometError) -> None:
        """Record a failed poll; re-raise what waiting longer cannot fix."""
        seen = self.last_status is not None
        if not (error.retryable or (seen and isinstance(error, RunwayTaskNotFoundError))):
            raise error
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
        return RunwayTaskTimeoutError.after(self.runway_task_id, time.time() - self.started, self.last_status)


def wait_sync(hook: CometHook, waiter: RunwayWaiter) -> RunwayTask:
    """Poll until the task ends (returned, whatever its outcome) or the deadline passes (raised)."""
    while True:
        try:
            task = hook.get_task(waiter.runway_task_id, submitted_at=waiter.submitted_at)
        except CometError as exc:
            waiter.on_error(exc)
        else:
            if waiter.on_task(task):
                return task
        if waiter.expired():
            raise waiter.timeout_error()
        time.sleep(waiter.next_sleep())


def outcome(task: RunwayTask) -> dict[str, Any]:
    """The result of a finished task for XCom, or the exception that fails the Airflow task.

    Content-safety refusals fail without retries: the same input is refused again.
    """
    from airflow.sdk.exceptions import AirflowFailException

    try:
        return task.raise_for_status().to_dict()
    except RunwayTaskFailedError as exc:
        if exc.is_safety:
            raise AirflowFailException(str(exc)) from exc
        raise
