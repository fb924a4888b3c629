"""Fast tests of RunwayVideo2VideoOperator's decisions (no Airflow run, no network).

The hook is a mock; the context is a dict with a fake ``ti`` (XCom pushes recorded) and a fake
``task_state_store``. A "try" is one call of ``execute``: a retry is a second call with a new
``ti`` (XCom is cleared between tries) and the same store (it survives retries).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any
from unittest import mock

import jinja2
import pendulum
import pytest
from _operator_fakes import RENDER, SECRET, STATE_KEY, VIDEO, FakeStore, context, event, make_op, run, task
from airflow.sdk import DAG

from comet_provider._compat import AirflowFailException, TaskDeferred
from comet_provider.exceptions import (
    CometConnectionError,
    CometError,
    CometSubmissionUncertainError,
    CometValidationError,
    RunwayTaskFailedError,
    RunwayTaskNotFoundError,
    RunwayTaskTimeoutError,
)
from comet_provider.hooks.comet import DownloadResult
from comet_provider.links.runway import VIDEO_URL_XCOM_KEY, RunwayVideoLink
from comet_provider.models import RunwayStatus
from comet_provider.operators.runway import RUNWAY_TASK_ID_XCOM_KEY, RunwayVideo2VideoOperator
from comet_provider.sensors.runway import RunwayTaskSensor
from comet_provider.triggers.runway import RunwayTaskTrigger


def first_try(op: RunwayVideo2VideoOperator, store: FakeStore) -> dict[str, Any]:
    """Try 1 submits rw-1 and defers; returns what it saved for later tries."""
    outcome = run(op, context(store))
    assert isinstance(outcome, TaskDeferred)
    saved = store.get(STATE_KEY)
    assert saved["runway_task_id"] == "rw-1"
    op.hook.reset_mock()
    op.hook.submit_video2video.return_value = task(RunwayStatus.PENDING, "rw-2")
    return saved


# ---------------------------------------------------------------------------------------------
# The resume decision table


def test_no_saved_state_submits_then_defers_with_an_absolute_deadline() -> None:
    op = make_op(structure_transformation=0.3, flip=True, callback_url="https://hooks.example.com/runway")
    store = FakeStore()
    ctx = context(store)
    before = time.time()
    deferred = run(op, ctx)

    assert isinstance(deferred, TaskDeferred)
    op.hook.submit_video2video.assert_called_once_with(
        video=VIDEO,
        prompt="pencil sketch",
        model="gen4",
        options={"structure_transformation": 0.3, "flip": True},
        callback_url="https://hooks.example.com/runway",
    )
    trigger = deferred.trigger
    assert isinstance(trigger, RunwayTaskTrigger)
    assert trigger.runway_task_id == "rw-1"
    assert trigger.comet_conn_id == "comet_default"
    assert trigger.poll_interval == 0.01
    assert before + 60 <= trigger.deadline <= time.time() + 60
    assert deferred.method_name == "execute_complete"
    saved = store.get(STATE_KEY)
    assert set(saved) == {"runway_task_id", "submitted_at", "fingerprint", "try_number", "forced", "link_gone", "route"}
    assert saved["route"] == "pro"
    assert saved["try_number"] == ctx["ti"].try_number
    assert trigger.submitted_at == saved["submitted_at"]
    # The id is in XCom before the task defers (the UI shows it while Runway renders).
    assert ctx["ti"].pushed[0] == (RUNWAY_TASK_ID_XCOM_KEY, "rw-1")


@pytest.mark.parametrize("status", [RunwayStatus.PENDING, RunwayStatus.RUNNING])
def test_saved_and_still_rendering_defers_on_the_same_task(status: RunwayStatus) -> None:
    op = make_op()
    store = FakeStore()
    saved = first_try(op, store)
    op.hook.get_task.return_value = task(status, progress=0.4)

    ctx = context(store)
    deferred = run(op, ctx)

    op.hook.submit_video2video.assert_not_called()
    op.hook.get_task.assert_called_once_with("rw-1", submitted_at=saved["submitted_at"], route="pro")
    assert isinstance(deferred, TaskDeferred)
    assert deferred.trigger.runway_task_id == "rw-1"
    assert deferred.trigger.submitted_at == saved["submitted_at"]
    assert deferred.trigger.deadline >= time.time() + 59  # a fresh `timeout` for this try
    assert ctx["ti"].xcom(RUNWAY_TASK_ID_XCOM_KEY) == "rw-1"
    assert store.get(STATE_KEY) == saved


def test_saved_and_succeeded_finishes_without_submitting(tmp_path: Any) -> None:
    out = str(tmp_path / "render.mp4")
    op = make_op(output_path=out)
    store = FakeStore()
    first_try(op, store)
    op.hook.get_task.return_value = task(RunwayStatus.SUCCEEDED)
    op.hook.download.return_value = DownloadResult(out, 1234, 0.1)

    ctx = context(store)
    result = run(op, ctx)

    op.hook.submit_video2video.assert_not_called()
    op.hook.download.assert_called_once_with(RENDER, out)
    assert isinstance(result, dict)
    assert result["task_id"] == "rw-1"
    assert result["status"] == "SUCCEEDED"
    assert result["video_url"] == RENDER
    assert result["output_path"] == out
    assert ctx["ti"].xcom(VIDEO_URL_XCOM_KEY) == RENDER


@pytest.mark.parametrize("status", [RunwayStatus.FAILED, RunwayStatus.CANCELLED])
def test_saved_and_failed_submits_anew(status: RunwayStatus) -> None:
    op = make_op()
    store = FakeStore()
    first_try(op, store)
    op.hook.get_task.return_value = task(status, fail_reason="It broke.", failure_code="INTERNAL.BAD_OUTPUT.CODE01")

    deferred = run(op, context(store))

    op.hook.submit_video2video.assert_called_once()
    assert isinstance(deferred, TaskDeferred)
    assert deferred.trigger.runway_task_id == "rw-2"
    assert store.get(STATE_KEY)["runway_task_id"] == "rw-2"


def test_saved_but_unknown_to_cometapi_submits_anew() -> None:
    op = make_op()
    store = FakeStore()
    first_try(op, store)
    op.hook.get_task.side_effect = RunwayTaskNotFoundError("no such task", status_code=400)

    deferred = run(op, context(store))

    op.hook.submit_video2video.assert_called_once()
    assert isinstance(deferred, TaskDeferred)
    assert deferred.trigger.runway_task_id == "rw-2"
    assert store.get(STATE_KEY)["runway_task_id"] == "rw-2"


@pytest.mark.parametrize(
    "change",
    [
        {"prompt": "watercolor"},
        {"video": "https://cdn.example.com/clips/other.mp4"},
        {"structure_transformation": 0.9},
        {"options": {"seconds": 5}},
    ],
    ids=["prompt", "video", "structure_transformation", "options"],
)
def test_saved_with_other_inputs_submits_anew(change: dict[str, Any]) -> None:
    op = make_op()
    store = FakeStore()
    first_try(op, store)
    for name, value in change.items():  # e.g. a templated field rendered differently on the retry
        setattr(op, name, value)

    deferred = run(op, context(store))

    op.hook.get_task.assert_not_called()
    op.hook.submit_video2video.assert_called_once()
    assert isinstance(deferred, TaskDeferred)
    assert deferred.trigger.runway_task_id == "rw-2"
    assert store.get(STATE_KEY)["runway_task_id"] == "rw-2"


@pytest.fixture
def op_log() -> Iterator[mock.MagicMock]:
    """The operator's logger, recorded."""
    logger = mock.MagicMock()
    with mock.patch.object(RunwayVideo2VideoOperator, "log", new_callable=mock.PropertyMock, return_value=logger):
        yield logger


def _messages(method: mock.MagicMock) -> list[str]:
    # Airflow's own "execute cannot be called outside of the Task Runner!" is not the operator's.
    messages = [call.args[0] % call.args[1:] for call in method.call_args_list]
    return [message for message in messages if "outside of the Task Runner" not in message]


def test_without_task_state_store_warns_once_and_submits(op_log: mock.MagicMock) -> None:
    op = make_op()

    deferred = run(op, context(None))

    assert isinstance(deferred, TaskDeferred)
    op.hook.submit_video2video.assert_called_once()
    warnings = _messages(op_log.warning)
    assert len(warnings) == 1, warnings
    assert "task_state_store" in warnings[0]
    assert "\n" not in warnings[0]
    op_log.error.assert_not_called()


def test_a_failing_store_does_not_fail_a_paid_render(op_log: mock.MagicMock) -> None:
    op = make_op()
    store = FakeStore()
    store.set = mock.MagicMock(side_effect=RuntimeError("db down"))  # type: ignore[method-assign]

    deferred = run(op, context(store))

    assert isinstance(deferred, TaskDeferred)
    assert deferred.trigger.runway_task_id == "rw-1"
    [error] = _messages(op_log.error)
    assert "rw-1" in error
    assert "db down" in error


def test_sync_mode_resumes_the_same_task_on_the_worker() -> None:
    op = make_op(deferrable=False)
    store = FakeStore()
    op.hook.get_task.side_effect = [task(RunwayStatus.RUNNING, progress=0.2), task(RunwayStatus.SUCCEEDED)]
    result = op.execute(context(store))  # try 1: submit, then poll until done
    assert result["task_id"] == "rw-1"
    assert op.hook.submit_video2video.call_count == 1

    op.hook.reset_mock()
    op.hook.get_task.side_effect = [task(RunwayStatus.RUNNING, progress=0.6), task(RunwayStatus.SUCCEEDED)]
    result = op.execute(context(store))  # a retry: resumes rw-1
    op.hook.submit_video2video.assert_not_called()
    assert result["task_id"] == "rw-1"
    assert result["status"] == "SUCCEEDED"


def test_sync_mode_timeout_names_the_runway_task() -> None:
    op = make_op(deferrable=False, timeout=0.05)
    op.hook.get_task.return_value = task(RunwayStatus.RUNNING, progress=0.5)
    with pytest.raises(RunwayTaskTimeoutError, match="rw-1") as info:
        op.execute(context(FakeStore()))
    assert info.value.runway_task_id == "rw-1"
    assert info.value.retryable


def test_submit_only_returns_at_once() -> None:
    op = make_op(wait_for_completion=False)
    ctx = context(FakeStore())
    result = op.execute(ctx)
    assert result["task_id"] == "rw-1"
    assert result["status"] == "PENDING"
    assert result["submitted_at"] > 0
    op.hook.get_task.assert_not_called()
    assert ctx["ti"].xcom(RUNWAY_TASK_ID_XCOM_KEY) == "rw-1"


def test_uncertain_submission_fails_without_retry() -> None:
    op = make_op()
    cause = CometConnectionError("read timeout", request_sent=True)
    op.hook.submit_video2video.side_effect = CometSubmissionUncertainError("may have started", cause=cause)
    with pytest.raises(AirflowFailException, match="may have started"):
        op.execute(context(FakeStore()))


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"video": "ftp://bucket/clip.mp4"}, "video"),
        ({"video": "/no/such/clip.mp4"}, "video"),
        ({"prompt": ""}, "prompt"),
        ({"structure_transformation": 1.5}, "structure_transformation"),
        ({"flip": "yes"}, "flip"),
        ({"options": "fast"}, "options"),
        ({"callback_url": "ftp://hooks.example.com"}, "callback_url"),
        # Fields of the other route, named before anything is sent.
        ({"seed": 7}, "seed"),
        ({"references": ["https://cdn.example.com/look.png"]}, "references"),
        ({"model": "gen4_aleph", "flip": True}, "flip"),
        ({"model": "gen4_aleph", "seed": -1}, "seed"),
        ({"model": "gen4_aleph", "ratio": "wide"}, "ratio"),
        ({"model": "gen4_aleph", "content_moderation": {"publicFigureThreshold": "high"}}, "content_moderation"),
        ({"model": "gen5"}, "route"),
    ],
)
def test_invalid_input_fails_before_any_request(kwargs: dict[str, Any], field: str) -> None:
    op = make_op(**kwargs)
    store = FakeStore()
    with pytest.raises(AirflowFailException, match=f"Invalid '{field}'.*nothing was sent to CometAPI"):
        op.execute(context(store))
    assert op.hook.method_calls == []
    assert store.data == {}


# ---------------------------------------------------------------------------------------------
# execute_complete


def test_execute_complete_success_stores_the_render(tmp_path: Any) -> None:
    out = str(tmp_path / "render.mp4")
    op = make_op(output_path=out)
    op.hook.download.return_value = DownloadResult(out, 10, 0.01)
    ctx = context(FakeStore())
    result = op.execute_complete(ctx, event("success", task=task(RunwayStatus.SUCCEEDED).to_dict()))
    assert result["status"] == "SUCCEEDED"
    assert result["output_path"] == out
    assert {"task_id", "video_url", "poster", "last_frame"} <= set(result)
    op.hook.download.assert_called_once_with(RENDER, out)
    assert ctx["ti"].xcom(VIDEO_URL_XCOM_KEY) == RENDER


def test_execute_complete_success_without_output_path_downloads_nothing() -> None:
    op = make_op()
    result = op.execute_complete(context(None), event("success", task=task(RunwayStatus.SUCCEEDED).to_dict()))
    assert "output_path" not in result
    op.hook.download.assert_not_called()


def test_execute_complete_failed_names_reason_and_code() -> None:
    failed = task(RunwayStatus.FAILED, fail_reason="The model crashed.", failure_code="INTERNAL.BAD_OUTPUT.CODE01")
    with pytest.raises(RunwayTaskFailedError) as info:
        make_op().execute_complete(context(None), event("failed", task=failed.to_dict()))
    message = str(info.value)
    assert "rw-1" in message
    assert "The model crashed." in message
    assert "INTERNAL.BAD_OUTPUT.CODE01" in message
    assert info.value.retryable


def test_execute_complete_cancelled_fails() -> None:
    cancelled = task(RunwayStatus.CANCELLED, fail_reason="The task was cancelled.")
    with pytest.raises(RunwayTaskFailedError, match="CANCELLED: The task was cancelled"):
        make_op().execute_complete(context(None), event("failed", task=cancelled.to_dict()))


def test_execute_complete_safety_failure_is_final() -> None:
    refused = task(RunwayStatus.FAILED, fail_reason="Rejected by moderation.", failure_code="SAFETY.INPUT.TEXT")
    with pytest.raises(AirflowFailException, match=r"SAFETY\.INPUT\.TEXT.*Rejected by moderation"):
        make_op().execute_complete(context(None), event("failed", task=refused.to_dict()))


def test_execute_complete_timeout_is_retryable_and_names_the_task() -> None:
    message = str(RunwayTaskTimeoutError.after("rw-1", 2.0, "RUNNING"))
    with pytest.raises(RunwayTaskTimeoutError, match="rw-1") as info:
        make_op().execute_complete(context(None), event("timeout", message=message))
    assert info.value.runway_task_id == "rw-1"
    assert info.value.retryable


def test_execute_complete_error_carries_the_message() -> None:
    with pytest.raises(CometError, match="CometAuthError: key rejected"):
        make_op().execute_complete(context(None), event("error", message="CometAuthError: key rejected"))


@pytest.mark.parametrize("bad", [None, {}, {"status": "weird"}, "success", {"status": "success"}])
def test_execute_complete_rejects_odd_events(bad: Any) -> None:
    with pytest.raises(CometError):
        make_op().execute_complete(context(None), bad)


def test_sensor_execute_complete_returns_the_same_dict() -> None:
    sensor = RunwayTaskSensor(task_id="wait", runway_task_id="rw-1", deferrable=True)
    done = task(RunwayStatus.SUCCEEDED)
    assert sensor.execute_complete({}, event("success", task=done.to_dict())) == {**done.to_dict(), "route": "pro"}


# ---------------------------------------------------------------------------------------------
# The trigger the operator builds never carries the key


def test_serialized_trigger_holds_ids_not_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_COMET_DEFAULT",
        json.dumps({"conn_type": "comet", "host": "https://comet.test", "password": SECRET}),
    )
    store = FakeStore()
    deferred = run(make_op(comet_conn_id="comet_default"), context(store))
    assert isinstance(deferred, TaskDeferred)
    classpath, kwargs = deferred.trigger.serialize()
    assert classpath == "comet_provider.triggers.runway.RunwayTaskTrigger"
    assert set(kwargs) == {"runway_task_id", "comet_conn_id", "poll_interval", "deadline", "submitted_at", "route"}
    assert SECRET not in json.dumps(kwargs)
    assert SECRET not in repr(deferred.trigger)
    assert SECRET not in json.dumps(store.data)
    # What the triggerer rebuilds from the row is the same trigger.
    assert RunwayTaskTrigger(**kwargs).serialize() == (classpath, kwargs)


# ---------------------------------------------------------------------------------------------
# UI: extra link, map index label


def test_extra_link_reads_the_pushed_url() -> None:
    from airflow.providers.common.compat.sdk import TaskInstanceKey, XCom

    op = make_op()
    link = RunwayVideoLink()
    assert link.name == "Runway video"
    assert any(isinstance(existing, RunwayVideoLink) for existing in op.operator_extra_links)
    key = TaskInstanceKey(dag_id="d", task_id="restyle", run_id="r", try_number=1)
    with mock.patch.object(XCom, "get_value", return_value=RENDER) as get_value:
        assert link.get_link(op, ti_key=key) == RENDER
    get_value.assert_called_once_with(ti_key=key, key=VIDEO_URL_XCOM_KEY)
    for missing in (None, 42):
        with mock.patch.object(XCom, "get_value", return_value=missing):
            assert link.get_link(op, ti_key=key) == ""


def test_map_index_label_is_the_prompt_for_mapped_tasks_too() -> None:
    long_prompt = "a very long prompt " * 10
    op = make_op(prompt=long_prompt)
    label = jinja2.Environment().from_string(op.map_index_template).render(task=op)
    assert label.startswith("a very long prompt")
    assert len(label) <= 60
    assert make_op(map_index_template="{{ task.task_id }}").map_index_template == "{{ task.task_id }}"
    with DAG("optest_mapped", schedule=None, start_date=pendulum.datetime(2025, 1, 1)):
        mapped = RunwayVideo2VideoOperator.partial(task_id="restyle", video=VIDEO).expand(prompt=["a", "b"])
    # .partial() passes every BaseOperator default explicitly: the label must survive unmapping.
    assert mapped.map_index_template == op.map_index_template
    assert mapped.unmap({"prompt": "a"}).map_index_template == op.map_index_template


# ---------------------------------------------------------------------------------------------
# Parameter errors at DAG parse time


@pytest.mark.parametrize("value", [0, -1, timedelta(0), timedelta(seconds=-3), "10", True, None])
@pytest.mark.parametrize("field", ["poll_interval", "timeout"])
def test_init_rejects_non_positive_durations(field: str, value: Any) -> None:
    with pytest.raises(CometValidationError, match=f"Invalid '{field}'") as info:
        RunwayVideo2VideoOperator(task_id="restyle", video=VIDEO, prompt="p", **{field: value})
    assert info.value.field == field


def test_init_accepts_seconds_and_timedeltas() -> None:
    op = RunwayVideo2VideoOperator(
        task_id="restyle", video=VIDEO, prompt="p", poll_interval=timedelta(seconds=5), timeout=timedelta(minutes=2)
    )
    assert op.poll_interval == 5.0
    assert op.timeout == 120.0


def test_a_source_that_cannot_be_signed_fails_without_retry_and_sends_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Signing happens only at submission, after the decision: its failure still names the field,
    is not retried (no retry fixes missing credentials) and nothing reaches CometAPI."""
    from comet_provider.exceptions import CometValidationError
    from comet_provider.operators import _submission

    def refuse(source: Any, *, expires_in: float) -> Any:
        raise CometValidationError(source.field, "could not sign 's3://studio/clip.mp4': NoCredentialsError")

    monkeypatch.setattr("comet_provider.utils.sources.resolve_source", refuse)
    assert _submission.submit  # the module resolves sources through comet_provider.utils.sources
    op = make_op(video="s3://studio/clip.mp4")
    op.hook.source_identity.return_value = None
    op.hook.get_task.side_effect = AssertionError("nothing to look up")
    with pytest.raises(AirflowFailException, match=r"Invalid 'video'.*nothing was sent to CometAPI"):
        op.execute(context(FakeStore()))
    op.hook.submit_video2video.assert_not_called()
    op.hook.submit_video_to_video.assert_not_called()
