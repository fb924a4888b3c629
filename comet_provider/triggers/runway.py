"""Trigger that waits on a Runway task in the triggerer, holding no worker slot."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from comet_provider.hooks._settings import check_route
from comet_provider.hooks.comet import CometHook
from comet_provider.models import RunwayTask
from comet_provider.utils.polling import RunwayWaiter, await_task, encode_event, task_from_event

# task_from_event lives in utils.polling; re-exported from its first home.
__all__ = ["RunwayTaskTrigger", "task_from_event"]

_CLASS_LOGS: dict[type, Any] = {}


class RunwayTaskTrigger(BaseTrigger):
    """Poll a Runway task until it ends, the deadline passes, or an error no wait can fix.

    :param runway_task_id: the task to wait on.
    :param comet_conn_id: the ``comet`` connection (only its id is serialized, never the key).
    :param poll_interval: seconds between polls.
    :param deadline: absolute epoch seconds at which to give up (survives triggerer restarts).
    :param submitted_at: epoch seconds of the submission, for the ``task_not_exist`` grace period.
    :param route: the route the task was submitted on: "pro" (``gen4``) or "official" (``gen4_aleph``).
        Rows serialized before the official route existed have none: "pro".

    Yields one event (format: :mod:`comet_provider.utils.polling`): the finished task, a
    timeout, or an error. Resume with ``outcome(task_from_event(event))`` from that module.
    """

    def __init__(
        self,
        runway_task_id: str,
        comet_conn_id: str = CometHook.default_conn_name,
        poll_interval: float = 10.0,
        deadline: float | None = None,
        submitted_at: float | None = None,
        route: str = "pro",
    ) -> None:
        super().__init__()
        self.runway_task_id = runway_task_id
        self.comet_conn_id = comet_conn_id
        self.poll_interval = float(poll_interval)
        self.deadline = None if deadline is None else float(deadline)
        self.submitted_at = None if submitted_at is None else float(submitted_at)
        self.route = check_route(route)  # a plain string in the row, whatever enum it came as

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "runway_task_id": self.runway_task_id,
                "comet_conn_id": self.comet_conn_id,
                "poll_interval": self.poll_interval,
                "deadline": self.deadline,
                "submitted_at": self.submitted_at,
                "route": self.route,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        waiter = RunwayWaiter(
            self.runway_task_id,
            poll_interval=self.poll_interval,
            deadline=self.deadline,
            submitted_at=self.submitted_at,
            log=self._shared_log(),
            route=self.route,
        )
        # No wrapper coroutine around await_task: one frame less held by each of thousands of waits.
        async with CometHook(self.comet_conn_id) as hook:
            try:
                result: RunwayTask | Exception = await await_task(hook, waiter)
            except Exception as exc:  # a bug too must end the wait with a reason, not a silent hang
                result = exc
        yield TriggerEvent(encode_event(self.runway_task_id, result))

    def _shared_log(self) -> Any:
        """The first trigger's logger, for every trigger of this class: same name, same routing (the
        triggerer tells triggers apart by context, not by logger), and 1 KiB less per waiting trigger."""
        log = _CLASS_LOGS.get(type(self))
        if log is None:
            log = _CLASS_LOGS[type(self)] = self.log
        return log

    async def on_kill(self) -> None:
        self.log.warning(
            "The Airflow task waiting on Runway task %s was stopped, but CometAPI documents no cancel "
            "endpoint: the render continues remotely. Find it under that id in the CometAPI dashboard.",
            self.runway_task_id,
        )
