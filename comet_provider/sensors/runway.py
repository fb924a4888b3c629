"""Sensor that waits for an existing Runway task to end."""

from __future__ import annotations

import time
from collections.abc import Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseSensorOperator, PokeReturnValue, conf

from comet_provider.exceptions import CometError

if TYPE_CHECKING:
    from airflow.sdk import Context

    from comet_provider.hooks.comet import CometHook
    from comet_provider.utils.polling import RunwayWaiter

__all__ = ["RunwayTaskSensor"]


class RunwayTaskSensor(BaseSensorOperator):
    """Wait for ``runway_task_id`` to end; return the same result dict as the operator.

    Works in ``poke`` and ``reschedule`` mode, or deferrable (the triggerer waits).
    A failed or cancelled render fails the sensor with Runway's reason; transient
    API trouble only delays it. Pairs with
    ``RunwayVideo2VideoOperator(wait_for_completion=False)``.

    :param runway_task_id: the Runway task to wait on (templated).
    :param comet_conn_id: the ``comet`` connection whose key submitted the task.
    :param deferrable: wait in the triggerer (default ``[operators] default_deferrable``).
    """

    template_fields: Sequence[str] = ("runway_task_id",)
    ui_color = "#e3d9ff"

    def __init__(
        self,
        *,
        runway_task_id: str,
        comet_conn_id: str = "comet_default",
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("poke_interval", 10)
        super().__init__(**kwargs)
        self.runway_task_id = runway_task_id
        self.comet_conn_id = comet_conn_id
        self.deferrable = deferrable
        self._waiter: RunwayWaiter | None = None

    @cached_property
    def hook(self) -> CometHook:
        from comet_provider.hooks.comet import CometHook

        return CometHook(self.comet_conn_id)

    def execute(self, context: Context) -> Any:
        if not self.deferrable:
            return super().execute(context)
        # One check first: a task that already ended needs no trip through the triggerer.
        done = self.poke(context)
        if isinstance(done, PokeReturnValue) and done.is_done:
            return done.xcom_value
        from comet_provider.triggers.runway import RunwayTaskTrigger

        waiter = self._get_waiter()
        self.defer(
            trigger=RunwayTaskTrigger(
                runway_task_id=waiter.runway_task_id,
                comet_conn_id=self.comet_conn_id,
                poll_interval=self.poke_interval,
                deadline=time.time() + self.timeout,
                submitted_at=waiter.submitted_at,
            ),
            method_name="execute_complete",
            timeout=None,
        )

    def poke(self, context: Context) -> PokeReturnValue:
        waiter = self._get_waiter()
        try:
            task = self.hook.get_task(waiter.runway_task_id, submitted_at=waiter.submitted_at)
        except CometError as exc:
            waiter.on_error(exc)  # raises what waiting cannot fix
            return PokeReturnValue(is_done=False)
        if not waiter.on_task(task):
            return PokeReturnValue(is_done=False)
        from comet_provider.utils.polling import outcome

        return PokeReturnValue(is_done=True, xcom_value=outcome(task))

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> dict[str, Any]:
        from airflow.sdk.exceptions import AirflowSensorTimeout

        from comet_provider.exceptions import RunwayTaskTimeoutError
        from comet_provider.triggers.runway import task_from_event
        from comet_provider.utils.polling import outcome

        try:
            return outcome(task_from_event(event))
        except RunwayTaskTimeoutError as exc:
            # The same exception as a timed-out poke or reschedule sensor (honours soft_fail).
            if self.soft_fail:
                from airflow.sdk.exceptions import AirflowSkipException

                raise AirflowSkipException(str(exc)) from exc
            raise AirflowSensorTimeout(str(exc)) from exc

    def _get_waiter(self) -> RunwayWaiter:
        if self._waiter is None:
            from comet_provider.utils.polling import RunwayWaiter
            from comet_provider.utils.validation import check_task_id

            # The task may be seconds old (a submit-only task just upstream): not-yet-visible is
            # tolerated for the hook's grace period from this sensor's start.
            self._waiter = RunwayWaiter(
                check_task_id(self.runway_task_id),
                poll_interval=self.poke_interval,
                deadline=None,
                submitted_at=time.time(),
                log=self.log,
            )
        return self._waiter
