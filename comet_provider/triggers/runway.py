"""Trigger that waits on a Runway task in the triggerer, holding no worker slot."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from comet_provider.exceptions import CometError, RunwayTaskFailedError, RunwayTaskTimeoutError
from comet_provider.hooks.comet import CometHook
from comet_provider.models import RunwayTask
from comet_provider.utils.polling import RunwayWaiter

__all__ = ["RunwayTaskTrigger", "task_from_event"]

#: Every event's ``status`` is one of these.
EVENT_STATUSES = frozenset({"success", "failed", "timeout", "error"})


class RunwayTaskTrigger(BaseTrigger):
    """Poll a Runway task until it ends, the deadline passes, or an error no wait can fix.

    :param runway_task_id: the task to wait on.
    :param comet_conn_id: the ``comet`` connection (only its id is serialized, never the key).
    :param poll_interval: seconds between polls.
    :param deadline: absolute epoch seconds at which to give up (survives triggerer restarts).
    :param submitted_at: epoch seconds of the submission, for the ``task_not_exist`` grace period.

    Yields one event: ``{"status": "success" | "failed" | "timeout" | "error",
    "runway_task_id", "task" (a :meth:`RunwayTask.to_dict`, when it ended), "message"}``.
    """

    def __init__(
        self,
        runway_task_id: str,
        comet_conn_id: str = CometHook.default_conn_name,
        poll_interval: float = 10.0,
        deadline: float | None = None,
        submitted_at: float | None = None,
    ) -> None:
        super().__init__()
        self.runway_task_id = runway_task_id
        self.comet_conn_id = comet_conn_id
        self.poll_interval = float(poll_interval)
        self.deadline = None if deadline is None else float(deadline)
        self.submitted_at = None if submitted_at is None else float(submitted_at)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "runway_task_id": self.runway_task_id,
                "comet_conn_id": self.comet_conn_id,
                "poll_interval": self.poll_interval,
                "deadline": self.deadline,
                "submitted_at": self.submitted_at,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        async with CometHook(self.comet_conn_id) as hook:
            event = await self._wait(hook)
        yield TriggerEvent(event)

    async def _wait(self, hook: CometHook) -> dict[str, Any]:
        """Poll until there is something to report; return the event's payload."""
        waiter = RunwayWaiter(
            self.runway_task_id,
            poll_interval=self.poll_interval,
            deadline=self.deadline,
            submitted_at=self.submitted_at,
            log=self.log,
        )
        while True:
            try:
                remaining = waiter.remaining()
                poll = hook.aget_task(self.runway_task_id, submitted_at=self.submitted_at)
                if remaining is None or remaining > hook.longest_call():
                    task = await poll
                else:  # near the deadline the hook's own retries must not carry us past it
                    task = await asyncio.wait_for(poll, max(remaining, 0.001))
            except asyncio.TimeoutError:
                pass  # the hook was still retrying at the deadline
            except CometError as exc:
                try:
                    waiter.on_error(exc)
                except CometError as fatal:
                    return self._event("error", str(fatal), error_type=type(fatal).__name__)
            except Exception as exc:  # a bug must end the wait with a reason, not a silent hang
                return self._event("error", f"{type(exc).__name__}: {exc}", error_type="Exception")
            else:
                if waiter.on_task(task):
                    return self._finished(task)
                del task  # its parsed payload would otherwise live on through the sleep
            if waiter.expired():
                return self._event("timeout", str(waiter.timeout_error()))
            await asyncio.sleep(waiter.next_sleep())

    async def on_kill(self) -> None:
        self.log.warning(
            "The Airflow task waiting on Runway task %s was stopped, but CometAPI documents no cancel "
            "endpoint: the render continues remotely. Find it under that id in the CometAPI dashboard.",
            self.runway_task_id,
        )

    def _finished(self, task: RunwayTask) -> dict[str, Any]:
        if task.is_successful:
            return self._event("success", f"Runway task {task.task_id} succeeded.", task=task.to_dict())
        return self._event("failed", str(RunwayTaskFailedError(task)), task=task.to_dict())

    def _event(self, status: str, message: str, **extra: Any) -> dict[str, Any]:
        return {"status": status, "runway_task_id": self.runway_task_id, "message": message, **extra}


def task_from_event(event: dict[str, Any] | None) -> RunwayTask:
    """The finished task carried by a trigger event; raises for timeouts, errors and odd events."""
    if not isinstance(event, dict) or event.get("status") not in EVENT_STATUSES:
        raise CometError(f"Unexpected event from RunwayTaskTrigger: {event!r}")
    status = event["status"]
    if status == "timeout":
        raise RunwayTaskTimeoutError(str(event.get("runway_task_id")), str(event.get("message")))
    if status == "error":
        raise CometError(str(event.get("message") or "RunwayTaskTrigger failed without a message"))
    task = event.get("task")
    if not isinstance(task, dict):
        raise CometError(f"RunwayTaskTrigger sent a {status!r} event without the task: {event!r}")
    return RunwayTask.from_dict(task)
