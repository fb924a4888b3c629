"""RunwayTaskSensor: the task_not_exist grace period in poke, reschedule and deferrable mode, and submitted_at.

The hook is the real one over a scripted fake API, with its grace period shortened. A reschedule is
a new sensor object (a new worker process) with the same ``task_state_store``, as in Airflow.
"""

from __future__ import annotations

import asyncio
import json
import time
from datetime import datetime, timedelta, timezone
from typing import Any
from unittest import mock

import httpx
import pytest

from comet_provider._compat import AirflowFailException, AirflowRescheduleException, TaskDeferred
from comet_provider.exceptions import RunwayTaskNotFoundError
from comet_provider.sensors.runway import RunwayTaskSensor
from comet_provider.triggers import runway as trigger_module
from comet_provider.triggers.runway import RunwayTaskTrigger

from ._fakes import FAST_RETRY, SECRET, FakeApi, feed_answer, make_hook

GRACE = 0.2
STATE_KEY = "comet_runway_sensor"
URL = "https://cdn.test/out.mp4"
#: Enough pokes to outlast the grace period many times over; the old per-poke restart never ended.
MAX_POKES = 300


def not_exist() -> httpx.Response:
    return httpx.Response(400, json={"code": "task_not_exist", "message": "task_not_exist", "data": None})


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


class FakeTI:
    """What the sensor asks of ``ti``: Airflow's record of the first reschedule of this try."""

    def __init__(self, first_reschedule: float | None = None) -> None:
        self.first_reschedule = first_reschedule

    def get_first_reschedule_date(self, context: Any) -> datetime | None:
        if self.first_reschedule is None or not context.get("task_reschedule_count"):
            return None
        return datetime.fromtimestamp(self.first_reschedule, tz=timezone.utc)


def context(store: FakeStore | None, reschedules: int = 0, ti: FakeTI | None = None) -> dict[str, Any]:
    ctx: dict[str, Any] = {"ti": ti or FakeTI(), "task_reschedule_count": reschedules}
    if store is not None:
        ctx["task_state_store"] = store
    return ctx


def make_sensor(api: FakeApi, **kwargs: Any) -> RunwayTaskSensor:
    params: dict[str, Any] = {"task_id": "wait", "runway_task_id": "rw-1", "poke_interval": 0.01, "timeout": 60}
    params.update(kwargs)
    sensor = RunwayTaskSensor(**params)
    sensor.hook = make_hook(api, retry_policy=FAST_RETRY, not_found_grace=GRACE)
    return sensor


def reschedule_until_done(api: FakeApi, store: FakeStore | None, **kwargs: Any) -> tuple[Any, int]:
    """Run a reschedule-mode sensor, one new sensor per poke, until it ends; its result and the pokes."""
    ti = FakeTI(first_reschedule=time.time())
    for poke in range(MAX_POKES):
        sensor = make_sensor(api, mode="reschedule", **kwargs)
        try:
            return sensor.execute(context(store, reschedules=poke, ti=ti)), poke + 1
        except AirflowRescheduleException:
            time.sleep(0.005)
    raise AssertionError(f"still waiting after {MAX_POKES} pokes: the grace period restarted")


# -- a wrong id fails after the grace period, in every mode ---------------------------------------------


def test_poke_mode_fails_an_unknown_id_after_the_grace_period(fake_api: FakeApi) -> None:
    fake_api.script(not_exist())
    started = time.time()
    with pytest.raises(RunwayTaskNotFoundError, match="rw-1"):
        make_sensor(fake_api, mode="poke").execute(context(FakeStore()))
    assert time.time() - started >= GRACE
    assert len(fake_api.requests) > 1


@pytest.mark.parametrize("store", [FakeStore, None], ids=["task_state_store", "no_store"])
def test_reschedule_mode_fails_an_unknown_id_after_the_grace_period(fake_api: FakeApi, store: Any) -> None:
    """The bug: each poke restarted the grace period, so a wrong id waited for the sensor's timeout."""
    fake_api.script(not_exist())
    with pytest.raises(RunwayTaskNotFoundError, match="rw-1"):
        reschedule_until_done(fake_api, store() if store else None)
    assert len(fake_api.requests) > 1  # "not visible yet" first


def test_deferrable_mode_fails_an_unknown_id_after_the_grace_period(
    fake_api: FakeApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_api.script(not_exist())
    store = FakeStore()
    ctx = context(store)
    with pytest.raises(TaskDeferred) as deferred:
        make_sensor(fake_api, deferrable=True).execute(ctx)
    trigger = deferred.value.trigger
    assert isinstance(trigger, RunwayTaskTrigger)
    # The trigger counts the grace period from the same moment: the sensor's first poke.
    assert trigger.submitted_at == store.get(STATE_KEY)["first_poke"]

    monkeypatch.setattr(
        trigger_module,
        "CometHook",
        lambda conn_id="comet_default": make_hook(fake_api, retry_policy=FAST_RETRY, not_found_grace=GRACE),
    )

    async def only_event() -> dict[str, Any]:
        events = [event.payload async for event in trigger.run()]
        assert len(events) == 1
        return events[0]

    event = asyncio.run(asyncio.wait_for(only_event(), timeout=20))
    with pytest.raises(RunwayTaskNotFoundError, match="rw-1"):
        make_sensor(fake_api, deferrable=True).execute_complete(ctx, json.loads(json.dumps(event)))


# -- the grace period's start ----------------------------------------------------------------------------


def test_the_first_poke_is_kept_across_reschedules_and_retries(fake_api: FakeApi) -> None:
    fake_api.script(not_exist())
    store = FakeStore()
    with pytest.raises(AirflowRescheduleException):
        make_sensor(fake_api, mode="reschedule").execute(context(store))
    first = store.get(STATE_KEY)
    assert first == {"runway_task_id": "rw-1", "first_poke": first["first_poke"], "seen": False}
    with pytest.raises(AirflowRescheduleException):
        make_sensor(fake_api, mode="reschedule").execute(context(store, reschedules=1))
    assert store.get(STATE_KEY) == first
    assert store.sets == 1
    # Another Runway id (e.g. a cleared upstream submitted anew) starts afresh.
    with pytest.raises(AirflowRescheduleException):
        make_sensor(fake_api, mode="reschedule", runway_task_id="rw-2").execute(context(store))
    assert store.get(STATE_KEY)["runway_task_id"] == "rw-2"
    assert SECRET not in json.dumps(store.data)


@pytest.mark.parametrize(
    "submitted_at",
    [
        time.time() - 1000,
        str(time.time() - 1000),
        datetime.fromtimestamp(time.time() - 1000, tz=timezone.utc).isoformat(),
        datetime.fromtimestamp(time.time() - 1000, tz=timezone.utc).isoformat().replace("+00:00", "Z"),
        datetime.now(timezone.utc) - timedelta(seconds=1000),
    ],
)
def test_submitted_at_starts_the_grace_period(fake_api: FakeApi, submitted_at: Any) -> None:
    """Given a submission long ago, an unknown id fails at the first poke."""
    fake_api.script(not_exist())
    with pytest.raises(RunwayTaskNotFoundError, match="after submission"):
        make_sensor(fake_api, mode="reschedule", submitted_at=submitted_at).execute(context(FakeStore()))
    assert len(fake_api.requests) == 1


def test_deferrable_mode_passes_submitted_at_to_the_trigger(fake_api: FakeApi) -> None:
    fake_api.script(not_exist())
    submitted_at = time.time() - 5
    sensor = make_sensor(fake_api, deferrable=True, submitted_at=str(submitted_at))
    sensor.hook.not_found_grace = 60  # still "not visible yet" at the first check
    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute(context(None))
    assert deferred.value.trigger.submitted_at == pytest.approx(submitted_at, abs=1e-3)


def test_submitted_at_is_templated() -> None:
    assert "submitted_at" in RunwayTaskSensor.template_fields


@pytest.mark.parametrize(
    "bad", [True, "soon", "2025-13-01T00:00:00", float("nan"), -5, time.time() * 1000, [1.0], {"t": 1}]
)
def test_bad_submitted_at_fails_naming_the_field_before_any_request(fake_api: FakeApi, bad: Any) -> None:
    with pytest.raises(AirflowFailException, match="Invalid 'submitted_at'"):
        make_sensor(fake_api, submitted_at=bad).execute(context(FakeStore()))
    assert fake_api.requests == []


@pytest.mark.parametrize("empty", [None, "", "  "])
def test_empty_submitted_at_means_the_first_poke(fake_api: FakeApi, empty: Any) -> None:
    fake_api.script(not_exist())
    with pytest.raises(AirflowRescheduleException):
        make_sensor(fake_api, mode="reschedule", submitted_at=empty).execute(context(FakeStore()))


def test_without_a_store_one_warning_says_what_is_lost(fake_api: FakeApi) -> None:
    fake_api.script(not_exist())
    warnings = []
    for poke in range(3):
        sensor = make_sensor(fake_api, mode="reschedule")
        sensor._cached_logger = mock.Mock()
        with pytest.raises(AirflowRescheduleException):
            sensor.execute(context(None, reschedules=poke, ti=FakeTI(first_reschedule=time.time())))
        warnings += [call.args[0] for call in sensor._cached_logger.warning.call_args_list]
    warnings = [text for text in warnings if "outside of the Task Runner" not in text]  # Airflow's, in tests
    assert len(warnings) == 1
    assert "no task_state_store" in warnings[0] and "submitted_at" in warnings[0]


def test_with_a_store_no_warning(fake_api: FakeApi) -> None:
    fake_api.script(not_exist())
    sensor = make_sensor(fake_api, mode="reschedule")
    sensor._cached_logger = mock.Mock()
    with pytest.raises(AirflowRescheduleException):
        sensor.execute(context(FakeStore()))
    warnings = [call.args[0] for call in sensor._cached_logger.warning.call_args_list]
    assert [text for text in warnings if "outside of the Task Runner" not in text] == []


# -- a task seen once is not lost to a gateway blip after the grace period --------------------------------


def test_a_blip_after_the_task_was_seen_does_not_fail_a_rescheduled_sensor(fake_api: FakeApi) -> None:
    blips = [not_exist() for _ in range(3)]
    fake_api.script(
        feed_answer("IN_PROGRESS", "RUNNING", task_id="rw-1", progress="40%"),
        *blips,
        feed_answer("SUCCESS", "SUCCEEDED", task_id="rw-1", video_url=URL),
    )
    store = FakeStore()
    submitted_long_ago = time.time() - 1000  # every blip comes after the grace period
    result, pokes = reschedule_until_done(fake_api, store, submitted_at=submitted_long_ago)
    assert pokes == 5
    assert result["runway_task_id"] == result["task_id"] == "rw-1"
    assert result["status"] == "SUCCEEDED"
    assert store.get(STATE_KEY)["seen"] is True
    assert store.sets == 2  # the first poke, then the first sight of the task


# -- the official route ------------------------------------------------------------------------------


def bare_task(status: str, **fields: Any) -> httpx.Response:
    return httpx.Response(200, json={"id": "rw-1", "status": status, **fields})


def test_a_task_on_the_official_route_is_polled_there(fake_api: FakeApi) -> None:
    fake_api.script(bare_task("RUNNING", progress=0.5), bare_task("SUCCEEDED", progress=1, output=[URL]))
    result = make_sensor(fake_api, mode="poke", route="official").execute(context(FakeStore()))
    assert (result["status"], result["video_url"], result["route"]) == ("SUCCEEDED", URL, "official")
    assert {(r.method, r.url.path) for r in fake_api.requests} == {("GET", "/runwayml/v1/tasks/rw-1")}


def test_deferrable_mode_hands_the_route_to_the_trigger(fake_api: FakeApi, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_api.script(bare_task("RUNNING"))
    with pytest.raises(TaskDeferred) as deferred:
        make_sensor(fake_api, deferrable=True, route="official").execute(context(FakeStore()))
    trigger = deferred.value.trigger
    assert trigger.serialize()[1]["route"] == "official"
    fake_api.script(bare_task("SUCCEEDED", output=[URL]))
    monkeypatch.setattr(trigger_module, "CometHook", lambda conn_id="comet_default": make_hook(fake_api))

    async def only_event() -> dict[str, Any]:
        (event,) = [event.payload async for event in trigger.run()]
        return event

    event = asyncio.run(asyncio.wait_for(only_event(), timeout=20))
    assert event["task"]["video_url"] == URL
    assert {r.method for r in fake_api.requests} == {"GET"}
    result = make_sensor(fake_api, deferrable=True, route="official").execute_complete(context(FakeStore()), event)
    assert (result["status"], result["route"]) == ("SUCCEEDED", "official")


def test_an_unknown_route_fails_naming_the_field_before_any_request(fake_api: FakeApi) -> None:
    with pytest.raises(AirflowFailException, match="Invalid 'route'"):
        make_sensor(fake_api, route="gen4_aleph").execute(context(FakeStore()))
    assert fake_api.requests == []
