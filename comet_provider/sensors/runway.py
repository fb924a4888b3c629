"""Sensor that waits for an existing Runway task to end."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseSensorOperator, PokeReturnValue

from comet_provider._compat import conf
from comet_provider.exceptions import CometError, CometValidationError

if TYPE_CHECKING:
    from airflow.sdk import Context

    from comet_provider.hooks.comet import CometHook
    from comet_provider.utils.polling import RunwayWaiter

__all__ = ["RunwayTaskSensor"]

#: task_state_store key: when this sensor first polled its Runway task, and whether CometAPI showed it.
_STATE_KEY = "comet_runway_sensor"


class RunwayTaskSensor(BaseSensorOperator):
    """Wait for ``runway_task_id`` to end; return the same result dict as the operator (with its ``route``).

    Works in ``poke`` and ``reschedule`` mode, or deferrable (the triggerer waits).
    A failed or cancelled render fails the sensor with Runway's reason; transient
    API trouble only delays it. Pairs with
    ``RunwayVideo2VideoOperator(wait_for_completion=False)``.

    CometAPI may not know a task for a while after its submission: ``task_not_exist``
    then reads as "not visible yet" for the hook's grace period (2 minutes), counted
    from ``submitted_at``, or else from this sensor's first poke (kept across reschedules
    and retries in ``task_state_store``), never restarted. Past it, an unknown id fails.

    :param runway_task_id: the Runway task to wait on (templated).
    :param submitted_at: when the task was submitted (templated): epoch seconds or an ISO 8601
        time, e.g. ``"{{ ti.xcom_pull('submit')['submitted_at'] }}"`` (the operator's
        submit-only result carries it).
    :param comet_conn_id: the ``comet`` connection whose key submitted the task.
    :param route: the route the task was submitted on: ``"pro"`` (model ``gen4``, the default) or
        ``"official"`` (model ``gen4_aleph``); the operator's submit-only result carries it as ``route``.
    :param deferrable: wait in the triggerer (default ``[operators] default_deferrable``).
    """

    template_fields: Sequence[str] = ("runway_task_id", "submitted_at", "route")
    ui_color = "#e3d9ff"

    def __init__(
        self,
        *,
        runway_task_id: str,
        submitted_at: float | str | datetime | None = None,
        comet_conn_id: str = "comet_default",
        route: str = "pro",
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("poke_interval", 10)
        super().__init__(**kwargs)
        self.runway_task_id = runway_task_id
        self.submitted_at = submitted_at
        self.comet_conn_id = comet_conn_id
        self.route = route
        self.deferrable = deferrable
        self._waiter: RunwayWaiter | None = None
        self._state: _SensorState | None = None

    @cached_property
    def hook(self) -> CometHook:
        from comet_provider.hooks.comet import CometHook

        return CometHook(self.comet_conn_id)

    def execute(self, context: Context) -> Any:
        waiter = self._start(context)
        if not self.deferrable:
            return super().execute(context)
        # One check first: a task that already ended needs no trip through the triggerer.
        done = self.poke(context)
        if done.is_done:
            return done.xcom_value
        from comet_provider.triggers.runway import RunwayTaskTrigger

        self.defer(
            trigger=RunwayTaskTrigger(
                runway_task_id=waiter.runway_task_id,
                comet_conn_id=self.comet_conn_id,
                poll_interval=self.poke_interval,
                deadline=time.time() + self.timeout,
                submitted_at=waiter.submitted_at,
                route=waiter.route,
            ),
            method_name="execute_complete",
            timeout=None,
        )

    def poke(self, context: Context) -> PokeReturnValue:
        waiter = self._waiter or self._start(context)
        try:
            task = self.hook.get_task(waiter.runway_task_id, submitted_at=waiter.submitted_at, route=waiter.route)
        except CometError as exc:
            waiter.on_error(exc)  # raises what waiting cannot fix
            return PokeReturnValue(is_done=False)
        seen_before = waiter.seen
        ended = waiter.on_task(task)
        if waiter.seen and not seen_before and self._state is not None:
            self._state.mark_seen()
        if not ended:
            return PokeReturnValue(is_done=False)
        from comet_provider.utils.polling import outcome

        return PokeReturnValue(is_done=True, xcom_value={**outcome(task), "route": waiter.route})

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> dict[str, Any]:
        from comet_provider._compat import AirflowSensorTimeout
        from comet_provider.exceptions import RunwayTaskTimeoutError
        from comet_provider.hooks._settings import check_route
        from comet_provider.utils.polling import outcome, task_from_event

        try:
            return {**outcome(task_from_event(event)), "route": check_route(self.route)}
        except RunwayTaskTimeoutError as exc:
            # The same exception as a timed-out poke or reschedule sensor (honours soft_fail).
            if self.soft_fail:
                from comet_provider._compat import AirflowSkipException

                raise AirflowSkipException(str(exc)) from exc
            raise AirflowSensorTimeout(str(exc)) from exc

    def _start(self, context: Context) -> RunwayWaiter:
        """Check the rendered fields (before any request) and set up this run's wait."""
        from comet_provider._compat import AirflowFailException
        from comet_provider.hooks._settings import check_route
        from comet_provider.utils.polling import RunwayWaiter
        from comet_provider.utils.validation import check_task_id

        try:
            runway_task_id = check_task_id(self.runway_task_id)
            submitted_at = _epoch_seconds("submitted_at", self.submitted_at)
            route = check_route(self.route)
        except CometValidationError as exc:
            raise AirflowFailException(f"{exc} (task {self.task_id!r}; nothing was sent to CometAPI)") from exc
        self._state = _SensorState(context, runway_task_id, reschedule=self.reschedule, log=self.log)
        self._waiter = RunwayWaiter(
            runway_task_id,
            poll_interval=self.poke_interval,
            deadline=None,
            submitted_at=self._state.first_poke if submitted_at is None else submitted_at,
            log=self.log,
            seen=self._state.seen,
            route=route,
        )
        return self._waiter


class _SensorState:
    """When the sensor first polled its task and whether CometAPI showed it since, kept in
    ``task_state_store`` so that neither starts over with a reschedule or a retry."""

    def __init__(self, context: Context, runway_task_id: str, *, reschedule: bool, log: Any) -> None:
        self._log = log
        self._store = context.get("task_state_store")
        self._runway_task_id = runway_task_id
        saved = self._store.get(_STATE_KEY) if self._store is not None else None
        first_poke = saved.get("first_poke") if isinstance(saved, dict) else None
        if isinstance(saved, dict) and saved.get("runway_task_id") == runway_task_id and _is_number(first_poke):
            self.first_poke = float(first_poke)  # type: ignore[arg-type]
            self.seen = saved.get("seen") is True
            return
        self.seen = False
        if self._store is not None:
            self.first_poke = time.time()
            self._save()
            return
        # Without a store, Airflow's own record of the first reschedule still spans reschedules.
        self.first_poke = (_first_reschedule(context) if reschedule else None) or time.time()
        if not context.get("task_reschedule_count"):
            log.warning(
                "This Airflow has no task_state_store (Airflow 3.3+): the grace period for a Runway task "
                "CometAPI does not show yet counts from this try's first poke, and in reschedule mode a "
                "task_not_exist after it fails the sensor even for a task seen before. Pass submitted_at "
                "to count from the submission."
            )

    def mark_seen(self) -> None:
        self.seen = True
        self._save()

    def _save(self) -> None:
        if self._store is None:
            return
        value: dict[str, Any] = {
            "runway_task_id": self._runway_task_id,
            "first_poke": self.first_poke,
            "seen": self.seen,
        }
        try:
            self._store.set(_STATE_KEY, value)
        except Exception as exc:  # only the grace period's start is at stake: keep waiting
            self._log.warning("Could not record the sensor's first poke in task_state_store (%s).", exc)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _first_reschedule(context: Context) -> float | None:
    if not context.get("task_reschedule_count"):
        return None
    first = context["ti"].get_first_reschedule_date(context)
    return None if first is None else first.timestamp()


def _epoch_seconds(field: str, value: Any) -> float | None:
    """Epoch seconds from a number, a numeric string, an ISO 8601 string or a datetime; None if not given."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    expected = "expected epoch seconds or an ISO 8601 time"
    if isinstance(value, datetime):
        seconds = (value if value.tzinfo else value.replace(tzinfo=timezone.utc)).timestamp()
    elif _is_number(value):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip()
        try:
            seconds = float(text)
        except ValueError:
            try:  # a trailing Z: Python 3.10's fromisoformat does not read it
                moment = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith("Z") else text)
            except ValueError:
                raise CometValidationError(field, f"{expected}, got {value!r}") from None
            seconds = (moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)).timestamp()
    else:
        raise CometValidationError(field, f"{expected}, got {type(value).__name__}")
    if not math.isfinite(seconds) or seconds <= 0:
        raise CometValidationError(field, f"{expected}, got {value!r}")
    if seconds > time.time() + 86400:
        raise CometValidationError(
            field, f"{value!r} is more than a day ahead; epoch seconds expected, not milliseconds"
        )
    return seconds
