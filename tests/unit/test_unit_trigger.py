"""RunwayTaskTrigger: serialize (ids only), and run() against a fake API (the events it yields)."""

from __future__ import annotations

import asyncio
import importlib
import json
import time
from typing import Any

import httpx
import pytest

from comet_provider.exceptions import CometError, CometValidationError, RunwayTaskFailedError, RunwayTaskTimeoutError
from comet_provider.models import RunwayStatus
from comet_provider.triggers import runway as trigger_module
from comet_provider.triggers.runway import RunwayTaskTrigger
from comet_provider.utils.polling import EVENT_STATUSES, outcome, task_from_event

from ._fakes import FAST_RETRY, SECRET, FakeApi, error_envelope, feed_answer, html_page, make_hook

URL = "https://cdn.test/out.mp4"


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
        "route": "pro",
    }


def test_official_route_round_trips() -> None:
    classpath, kwargs = RunwayTaskTrigger("t-1", route="official").serialize()
    assert kwargs["route"] == "official"
    assert RunwayTaskTrigger(**json.loads(json.dumps(kwargs))).serialize() == (classpath, kwargs)


def test_rows_written_before_the_official_route_deserialize_to_pro() -> None:
    old_row = {
        "runway_task_id": "t-1",
        "comet_conn_id": "c",
        "poll_interval": 5.0,
        "deadline": None,
        "submitted_at": None,
    }
    assert RunwayTaskTrigger(**old_row).route == "pro"


def test_unknown_route_is_refused_by_name() -> None:
    with pytest.raises(CometValidationError, match="route"):
        RunwayTaskTrigger("t-1", route="turbo")


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
    assert event["status"] == "finished"
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
    # The event carries the task; only outcome() says what it means.
    assert event["status"] == "finished"
    assert set(event) == {"status", "runway_task_id", "task"}
    failed = task_from_event(event)
    assert failed.failure_code == "SAFETY.INPUT.TEXT"
    with pytest.raises(RunwayTaskFailedError) as info:
        failed.raise_for_status()
    assert info.value.is_safety
    from comet_provider._compat import AirflowFailException

    with pytest.raises(AirflowFailException, match=r"SAFETY\.INPUT\.TEXT"):
        outcome(failed)


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


async def test_trigger_error_event_for_a_bug(monkeypatch: pytest.MonkeyPatch, fake_api: FakeApi) -> None:
    """An unexpected exception ends the wait with an error event, not a silent hang."""

    async def buggy(*args: Any, **kwargs: Any) -> Any:
        raise ZeroDivisionError("a bug")

    def hook_with_a_bug(conn_id: str = "comet_default") -> Any:
        hook = make_hook(fake_api)
        hook.aget_task = buggy  # type: ignore[method-assign]
        return hook

    monkeypatch.setattr(trigger_module, "CometHook", hook_with_a_bug)
    event = await first_event(RunwayTaskTrigger("t-1", poll_interval=0.001, deadline=time.time() + 30))
    assert event["status"] == "error"
    assert event["error_type"] == "Exception"
    assert event["message"] == "ZeroDivisionError: a bug"
    with pytest.raises(CometError, match="a bug"):
        task_from_event(event)


async def test_trigger_fails_an_unknown_id_after_the_grace_period(
    monkeypatch: pytest.MonkeyPatch, fake_api: FakeApi
) -> None:
    monkeypatch.setattr(
        trigger_module,
        "CometHook",
        lambda conn_id="comet_default": make_hook(fake_api, retry_policy=FAST_RETRY, not_found_grace=0.2),
    )
    fake_api.script(httpx.Response(400, json={"code": "task_not_exist", "message": "task_not_exist", "data": None}))
    trigger = RunwayTaskTrigger("t-1", poll_interval=0.02, deadline=time.time() + 30, submitted_at=time.time())
    event = await first_event(trigger)
    assert event["status"] == "error"
    assert event["error_type"] == "RunwayTaskNotFoundError"
    assert len(fake_api.requests) > 1  # not visible yet, for the grace period
