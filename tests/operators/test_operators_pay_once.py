"""RunwayVideo2VideoOperator over a render's whole life: stored renders, expired links, force_render.

Same seams as test_operators_unit.py: a mock hook whose ``download`` really writes the file, a
fake ``task_state_store`` per task instance (a new DAG run is a new store), one FakeTI per try.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from _operator_fakes import RENDER, STATE_KEY, FakeStore, context, event, make_op, run, task

from comet_provider._compat import AirflowFailException, TaskDeferred
from comet_provider.exceptions import RenderUnavailableError
from comet_provider.hooks.comet import DownloadResult
from comet_provider.models import RunwayStatus
from comet_provider.operators.runway import RUNWAY_TASK_ID_XCOM_KEY, RunwayVideo2VideoOperator

RENDER_BYTES = b"\x00\x00\x00\x18ftypmp42" + b"r" * 500


def storing_op(out: Path, **kwargs: Any) -> RunwayVideo2VideoOperator:
    """An operator whose hook's download writes RENDER_BYTES to the destination, like the real one."""
    op = make_op(output_path=str(out), **kwargs)

    def download(url: str, destination: str) -> DownloadResult:
        Path(destination).write_bytes(RENDER_BYTES)
        return DownloadResult(destination, len(RENDER_BYTES), 0.01)

    op.hook.download.side_effect = download
    return op


def render_and_store(op: RunwayVideo2VideoOperator, store: FakeStore, task_id: str = "rw-1") -> dict[str, Any]:
    """One DAG run's task instance: submit, defer, and finish from the trigger's event."""
    op.hook.submit_video2video.return_value = task(RunwayStatus.PENDING, task_id)
    ctx = context(store)  # execute_complete runs in the same try as the deferral
    assert isinstance(run(op, ctx), TaskDeferred)
    return op.execute_complete(ctx, event("success", task=task(RunwayStatus.SUCCEEDED, task_id).to_dict()))


def sidecar(out: Path) -> dict[str, Any]:
    return json.loads(Path(f"{out}.comet.json").read_text())


def test_a_stored_render_writes_a_sidecar_naming_its_task(tmp_path: Path) -> None:
    out = tmp_path / "day" / "render.mp4"
    out.parent.mkdir()
    op = storing_op(out)
    result = render_and_store(op, FakeStore())
    assert result["decision"] == "submit"
    assert result["runway_task_id"] == "rw-1"
    meta = sidecar(out)
    assert meta["runway_task_id"] == "rw-1"
    assert meta["size_bytes"] == len(RENDER_BYTES)
    assert meta["video"] == "https://cdn.example.com/clips/source.mp4"


def test_another_run_with_the_same_inputs_reuses_the_stored_render(tmp_path: Path) -> None:
    out = tmp_path / "render.mp4"
    render_and_store(storing_op(out), FakeStore())

    op = storing_op(out)  # a rerun of the day: a new task instance, an empty task_state_store
    ctx = context(FakeStore())
    result = op.execute(ctx)

    op.hook.submit_video2video.assert_not_called()
    op.hook.download.assert_not_called()
    op.hook.get_task.assert_not_called()
    assert result["decision"] == "reuse_stored"
    assert result["runway_task_id"] == "rw-1"
    assert result["status"] == "SUCCEEDED"
    assert result["output_path"] == str(out)
    assert ctx["ti"].xcom(RUNWAY_TASK_ID_XCOM_KEY) == "rw-1"
    assert out.read_bytes() == RENDER_BYTES


def test_reuse_also_holds_in_submit_only_and_sync_modes(tmp_path: Path) -> None:
    out = tmp_path / "render.mp4"
    render_and_store(storing_op(out), FakeStore())
    for kwargs in ({"wait_for_completion": False}, {"deferrable": False}):
        op = storing_op(out, **kwargs)
        assert op.execute(context(FakeStore()))["decision"] == "reuse_stored"
        op.hook.submit_video2video.assert_not_called()


@pytest.mark.parametrize(
    "change",
    ["prompt", "source_identity", "render_deleted", "render_replaced", "sidecar_deleted", "force"],
)
def test_changed_inputs_or_a_missing_render_submit_again(tmp_path: Path, change: str) -> None:
    out = tmp_path / "render.mp4"
    first = storing_op(out)
    first.hook.source_identity.return_value = 'etag="v1"'
    render_and_store(first, FakeStore())

    op = storing_op(out, **({"force_render": "True"} if change == "force" else {}))
    op.hook.source_identity.return_value = 'etag="v2"' if change == "source_identity" else 'etag="v1"'
    if change == "prompt":
        op.prompt = "watercolor"
    elif change == "render_deleted":
        out.unlink()
    elif change == "render_replaced":
        out.write_bytes(b"something else")
    elif change == "sidecar_deleted":
        Path(f"{out}.comet.json").unlink()

    deferred = run(op, context(FakeStore()))

    assert isinstance(deferred, TaskDeferred)
    op.hook.submit_video2video.assert_called_once()


def test_force_render_rejects_a_value_that_is_not_a_flag(tmp_path: Path) -> None:
    op = storing_op(tmp_path / "r.mp4", force_render="sometimes")
    with pytest.raises(AirflowFailException, match="force_render"):
        op.execute(context(FakeStore()))
    op.hook.submit_video2video.assert_not_called()


def test_a_retry_of_a_forced_take_resumes_it(tmp_path: Path) -> None:
    out = tmp_path / "render.mp4"
    render_and_store(storing_op(out), FakeStore(), "rw-old")
    op = storing_op(out, force_render=True)
    store = FakeStore()
    op.hook.submit_video2video.return_value = task(RunwayStatus.PENDING, "rw-take")
    assert isinstance(run(op, context(store)), TaskDeferred)  # try 1 submits the take, then the worker dies

    op.hook.reset_mock()
    op.hook.get_task.return_value = task(RunwayStatus.RUNNING, "rw-take")
    deferred = run(op, context(store))  # try 2

    op.hook.submit_video2video.assert_not_called()
    assert isinstance(deferred, TaskDeferred)
    assert deferred.trigger.runway_task_id == "rw-take"


def test_a_gone_link_from_an_earlier_try_submits_once_in_the_same_try(tmp_path: Path) -> None:
    out = tmp_path / "render.mp4"
    op = storing_op(out)
    store = FakeStore()
    assert isinstance(run(op, context(store)), TaskDeferred)  # try 1 submitted rw-1; storage then failed
    op.hook.reset_mock()
    op.hook.get_task.return_value = task(RunwayStatus.SUCCEEDED)
    op.hook.download.side_effect = RenderUnavailableError("The render link answered HTTP 403.", status_code=403)
    op.hook.submit_video2video.return_value = task(RunwayStatus.PENDING, "rw-2")

    deferred = run(op, context(store))  # try 2, two days later

    op.hook.download.assert_called_once_with(RENDER, str(out))
    op.hook.submit_video2video.assert_called_once()
    assert isinstance(deferred, TaskDeferred)
    assert deferred.trigger.runway_task_id == "rw-2"
    assert store.get(STATE_KEY)["runway_task_id"] == "rw-2"
    assert store.get(STATE_KEY)["link_gone"] is False


def test_a_gone_link_of_a_render_from_this_try_fails_without_a_loop(tmp_path: Path) -> None:
    out = tmp_path / "render.mp4"
    op = storing_op(out)
    store = FakeStore()
    ctx = context(store)
    assert isinstance(run(op, ctx), TaskDeferred)
    op.hook.download.side_effect = RenderUnavailableError("The render link answered HTTP 410.", status_code=410)

    with pytest.raises(AirflowFailException, match="rw-1"):
        op.execute_complete(ctx, event("success", task=task(RunwayStatus.SUCCEEDED).to_dict()))
    op.hook.submit_video2video.assert_called_once()  # try 1's own submission only
    assert not Path(f"{out}.comet.json").exists()


def test_the_id_is_recorded_before_anything_else_can_fail() -> None:
    op = make_op(deferrable=False)
    store = FakeStore()
    ctx = context(store)

    def lost(key: str, value: Any) -> None:
        raise RuntimeError("worker lost")

    ctx["ti"].xcom_push = lost
    with pytest.raises(RuntimeError, match="worker lost"):
        op.execute(ctx)
    assert store.get(STATE_KEY)["runway_task_id"] == "rw-1"


def test_resumed_results_say_resume(tmp_path: Path) -> None:
    op = make_op()
    store = FakeStore()
    assert isinstance(run(op, context(store)), TaskDeferred)
    op.hook.get_task.return_value = task(RunwayStatus.SUCCEEDED)
    assert op.execute(context(store))["decision"] == "resume"


def test_without_output_path_a_resumed_render_has_its_link_checked() -> None:
    op = make_op()
    store = FakeStore()
    assert isinstance(run(op, context(store)), TaskDeferred)
    op.hook.reset_mock()
    op.hook.get_task.return_value = task(RunwayStatus.SUCCEEDED)
    op.hook.check_render_link.side_effect = RenderUnavailableError(
        "The render link answered HTTP 404.", status_code=404
    )
    op.hook.submit_video2video.return_value = task(RunwayStatus.PENDING, "rw-2")

    deferred = run(op, context(store))

    op.hook.check_render_link.assert_called_once_with(RENDER)
    op.hook.submit_video2video.assert_called_once()
    assert isinstance(deferred, TaskDeferred)
    assert deferred.trigger.runway_task_id == "rw-2"


def test_without_output_path_a_live_link_is_resumed_as_is() -> None:
    op = make_op()
    store = FakeStore()
    assert isinstance(run(op, context(store)), TaskDeferred)
    op.hook.reset_mock()
    op.hook.get_task.return_value = task(RunwayStatus.SUCCEEDED)
    result = op.execute(context(store))
    op.hook.check_render_link.assert_called_once_with(RENDER)
    op.hook.submit_video2video.assert_not_called()
    assert result["video_url"] == RENDER
