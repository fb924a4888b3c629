"""The operator and the sensor end to end: ``airflow dags test`` against the CometAPI emulator.

Two DAG runs for the whole module (see ``dags/``): ``optest_main`` (deferrable, sync,
submit-only + sensors, both retry scenarios, renders that Runway fails) and
``optest_bad_input`` (validation). Each test reads what its tasks left in the metadata
DB, the run's log and the emulator's statistics.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from _optest_support import SECRET, DagRun, OpTestEnv

from comet_provider._compat import AIRFLOW_V_3_3_PLUS

pytestmark = [pytest.mark.dags_test, pytest.mark.timeout(900)]

RESULT_KEYS = {"task_id", "status", "video_url", "poster", "last_frame"}
DEFERRED = "Pausing task as DEFERRED"
NO_STORE_WARNING = "This Airflow has no task_state_store"
needs_task_state_store = pytest.mark.airflow_version(
    ">=3.3", reason="resuming a render across tries needs task_state_store, new in Airflow 3.3"
)


def _progress_lines(log: str, runway_id: str) -> list[str]:
    return re.findall(rf"Runway task {re.escape(runway_id)}: (?:PENDING|RUNNING), \d+% done", log)


def _assert_stored_render(run: DagRun, result: dict, expected_path: Path) -> None:
    assert result["output_path"] == str(expected_path)
    assert expected_path.is_file()
    render = run.renders[result["task_id"]]
    assert expected_path.read_bytes() == render


def test_only_the_renders_runway_fails_fail(main_run: DagRun) -> None:
    states = dict(
        main_run.query(
            "select task_id, state from task_instance where dag_id = ? and run_id = ?",
            main_run.dag_id,
            main_run.run_id,
        )
    )
    expected_failures = {"fail_plain", "fail_safety", "cancel_sync"}
    if not AIRFLOW_V_3_3_PLUS:  # no resume: try 2 submits anew and times out like try 1
        expected_failures.add("retry_resume")
    assert {task_id for task_id, state in states.items() if state != "success"} == expected_failures, states
    assert {states[task_id] for task_id in expected_failures} == {"failed"}
    assert set(states) == expected_failures | {
        "defer_local",
        "defer_file_url",
        "sync",
        "retry_resume",
        "retry_after_failure",
        "submit_for_poke",
        "sensor_poke",
        "submit_for_defer",
        "sensor_defer",
        "submit_for_reschedule",
        "sensor_reschedule",
    }
    # The run itself succeeds: its leaves (the sensor chain, trigger_rule all_done) do.
    assert main_run.result.ok, main_run.tail()


# ---------------------------------------------------------------------------------------------
# 1. Deferrable success, stored to a local path and to a file:// URL


@pytest.mark.parametrize(
    ("task_id", "relative_path", "prompt"),
    [
        ("defer_local", "local/defer_local.mp4", "pencil sketch"),
        ("defer_file_url", "file-url/render.mp4", "watercolor painting"),
    ],
)
def test_deferrable_success_stores_the_render(
    main_run: DagRun, optest_env: OpTestEnv, task_id: str, relative_path: str, prompt: str
) -> None:
    ti = main_run.ti(task_id)
    assert ti["state"] == "success", main_run.log(task_id)
    assert ti["try_number"] == 1
    assert ti["trigger_id"] is not None, "the task never deferred"

    result = main_run.xcom(task_id)
    assert RESULT_KEYS | {"output_path"} <= set(result)
    assert result["status"] == "SUCCEEDED"
    _assert_stored_render(main_run, result, optest_env.out_dir / relative_path)
    assert (optest_env.out_dir / relative_path).read_bytes() != optest_env.sample.read_bytes(), "not a render"

    runway_id = result["task_id"]
    [submitted] = main_run.emulator_tasks(prompt)
    assert submitted["id"] == runway_id
    assert main_run.xcom(task_id, "runway_task_id") == runway_id
    # The UI's extra link: computed from the pushed URL when the task finished.
    assert main_run.xcom(task_id, "runway_video_url") == result["video_url"]
    assert main_run.xcom(task_id, "_link_RunwayVideoLink") == result["video_url"]

    # Deferred while Runway rendered: the trigger's progress lines sit between the deferral
    # and the resumed task storing the render.
    log = main_run.log(task_id)
    deferred_at = log.index(DEFERRED)
    assert "new_state=deferred" in log
    trigger_at = log.index("[DAG TEST] running trigger in line")
    progress = _progress_lines(log[trigger_at:], runway_id)
    assert progress, f"no progress lines from the trigger:\n{log}"
    assert f"Runway task {runway_id}: SUCCEEDED, 100% done" in log
    assert deferred_at < trigger_at < log.index(progress[0]) < log.index("Stored the render")
    assert log.count(f"Submitted Runway task {runway_id}") == 1


def test_deferrable_passes_options(main_run: DagRun) -> None:
    [task] = main_run.emulator_tasks("watercolor painting")
    assert task["options"] == {"structure_transformation": 0.4}
    assert task["model"] == "gen4"


# ---------------------------------------------------------------------------------------------
# 2. Sync (deferrable=False), mapped


def test_sync_success(main_run: DagRun, optest_env: OpTestEnv) -> None:
    prompt = "oil painting, thick brush strokes"
    ti = main_run.ti("sync", map_index=0)
    assert ti["state"] == "success", main_run.log("sync", 0)
    assert ti["trigger_id"] is None, "deferrable=False must not defer"
    # map_index_template default: the prompt labels the mapped instance.
    assert ti["rendered_map_index"] == prompt

    result = main_run.xcom("sync", map_index=0)
    assert result["status"] == "SUCCEEDED"
    _assert_stored_render(main_run, result, optest_env.out_dir / "sync" / "0.mp4")
    [submitted] = main_run.emulator_tasks(prompt)
    assert submitted["id"] == result["task_id"]

    log = main_run.log("sync", 0)
    assert DEFERRED not in log
    assert "running trigger in line" not in log
    assert _progress_lines(log, result["task_id"]), "the worker logged no progress while polling"


# ---------------------------------------------------------------------------------------------
# 3. Submit only, then RunwayTaskSensor (poke, deferrable, reschedule)


@pytest.mark.parametrize(
    ("submit_task", "sensor_task", "prompt", "mode"),
    [
        ("submit_for_poke", "sensor_poke", "neon glow", "poke"),
        ("submit_for_defer", "sensor_defer", "charcoal drawing", "deferrable"),
        ("submit_for_reschedule", "sensor_reschedule", "comic book inks", "reschedule"),
    ],
)
def test_submit_only_then_sensor(main_run: DagRun, submit_task: str, sensor_task: str, prompt: str, mode: str) -> None:
    submitted = main_run.xcom(submit_task)
    assert submitted["status"] == "PENDING"
    runway_id = submitted["task_id"]
    assert main_run.xcom(submit_task, "runway_task_id") == runway_id
    assert [task["id"] for task in main_run.emulator_tasks(prompt)] == [runway_id]
    submit_log = main_run.log(submit_task)
    assert DEFERRED not in submit_log
    assert "Stored the render" not in submit_log

    ti = main_run.ti(sensor_task)
    assert ti["state"] == "success", main_run.log(sensor_task)
    result = main_run.xcom(sensor_task)
    assert result["task_id"] == runway_id
    assert result["status"] == "SUCCEEDED"
    # The sensor's result is the operator's, less what only the operator knows.
    assert set(result) == set(main_run.xcom("defer_local")) - {"output_path", "decision"}
    assert result["video_url"].endswith(f"/renders/{runway_id}.mp4")

    log = main_run.log(sensor_task)
    # The sensor waited (the render was still going when it started), in the expected way.
    assert _progress_lines(log, runway_id), f"{sensor_task} did not wait:\n{log}"
    assert ti["try_number"] == 1
    assert (ti["trigger_id"] is not None) is (mode == "deferrable")
    assert (DEFERRED in log) is (mode == "deferrable")
    reschedules = main_run.query(
        "select count(*) from task_reschedule join task_instance on task_instance.id = task_reschedule.ti_id "
        "where task_instance.run_id = ? and task_instance.task_id = ?",
        main_run.run_id,
        sensor_task,
    )[0][0]
    if mode == "reschedule":
        assert reschedules >= 1
        assert len(main_run.tries(sensor_task)) == reschedules + 1  # one worker run per poke
    else:
        assert reschedules == 0
        assert len(main_run.tries(sensor_task)) == 1


# ---------------------------------------------------------------------------------------------
# 4. Runway fails the render


def test_runway_failure_fails_the_task_with_reason_and_code(main_run: DagRun) -> None:
    ti = main_run.ti("fail_plain")
    assert ti["state"] == "failed"
    [task] = main_run.emulator_tasks("glitch art [fail]")
    log = main_run.log("fail_plain")
    assert f"Runway task {task['id']} ended FAILED [INTERNAL.BAD_OUTPUT.CODE01]" in log
    assert "An unexpected error occurred while generating the video" in log
    assert "RunwayTaskFailedError" in log


def test_runway_cancel_fails_the_sync_task(main_run: DagRun) -> None:
    assert main_run.ti("cancel_sync")["state"] == "failed"
    [task] = main_run.emulator_tasks("sepia film [cancel]")
    log = main_run.log("cancel_sync")
    assert f"Runway task {task['id']} ended CANCELLED" in log
    assert "The task was cancelled" in log


def test_safety_failure_is_not_retried(main_run: DagRun) -> None:
    ti = main_run.ti("fail_safety")
    assert ti["state"] == "failed"  # not up_for_retry although retries=2
    assert ti["try_number"] == 1
    assert len(main_run.tries("fail_safety")) == 1
    assert len(main_run.emulator_tasks("forbidden style [fail:SAFETY.INPUT.TEXT]")) == 1
    log = main_run.log("fail_safety")
    assert "AirflowFailException" in log
    assert "[SAFETY.INPUT.TEXT]" in log
    assert "rejected by content moderation" in log


# ---------------------------------------------------------------------------------------------
# 5. Retries resume instead of resubmitting


@needs_task_state_store
def test_retry_after_timeout_resumes_the_same_render(main_run: DagRun) -> None:
    ti = main_run.ti("retry_resume")
    assert ti["state"] == "success", main_run.log("retry_resume")
    assert ti["try_number"] == 2
    assert main_run.query(
        "select try_number from task_instance_history where dag_id = ? and run_id = ? and task_id = ?",
        main_run.dag_id,
        main_run.run_id,
        "retry_resume",
    ) == [(1,)]

    [submitted] = main_run.emulator_tasks("retro pixel art")  # one submission for two tries
    runway_id = submitted["id"]
    first, second = main_run.tries("retry_resume")
    # Try 1: the trigger's deadline (timeout=2) passes while Runway renders.
    assert DEFERRED in first
    assert "RunwayTaskTimeoutError" in first
    assert f"Runway task {runway_id} was not finished after waiting" in first
    assert "a retry of this Airflow task waits on" in first and "the same Runway task" in first
    # Try 2: the id comes back from task_state_store, nothing is submitted. Whether the render
    # is still going when try 2 starts depends on the machine's speed: both paths must resume.
    resumed = re.search(rf"Resuming Runway task {re.escape(runway_id)} from an earlier try \((\w+)\)", second)
    assert resumed, second
    assert "Submitted Runway task" not in second
    if resumed.group(1) == "SUCCEEDED":
        assert DEFERRED not in second  # finished on the worker
    else:
        assert DEFERRED in second  # waits on the same render again
        assert f"Runway task {runway_id}: SUCCEEDED, 100% done" in second
    result = main_run.xcom("retry_resume")
    assert result["task_id"] == runway_id
    assert result["status"] == "SUCCEEDED"
    assert main_run.xcom("retry_resume", "runway_task_id") == runway_id


@needs_task_state_store
def test_retry_after_failed_render_submits_afresh(main_run: DagRun) -> None:
    ti = main_run.ti("retry_after_failure")
    assert ti["state"] == "success", main_run.log("retry_after_failure")
    assert ti["try_number"] == 2

    failed, succeeded = main_run.emulator_tasks("stained glass")  # same inputs, two renders
    assert (failed["status"], succeeded["status"]) == ("FAILURE", "SUCCESS")
    first, second = main_run.tries("retry_after_failure")
    assert f"Runway task {failed['id']} ended FAILED [ASSET.INVALID]" in first
    assert f"Runway task {failed['id']} from an earlier try ended FAILED" in second
    assert "submitting a new render" in second
    assert f"Submitted Runway task {succeeded['id']}" in second
    assert main_run.xcom("retry_after_failure")["task_id"] == succeeded["id"]


@pytest.mark.airflow_version("<3.3", reason="from Airflow 3.3 task_state_store lets a retry resume instead")
@pytest.mark.parametrize(
    ("task_id", "prompt"), [("retry_resume", "retro pixel art"), ("retry_after_failure", "stained glass")]
)
def test_without_task_state_store_each_try_warns_once_and_submits(main_run: DagRun, task_id: str, prompt: str) -> None:
    tries = main_run.tries(task_id)
    submitted = main_run.emulator_tasks(prompt)
    assert len(tries) == len(submitted) == 2, main_run.log(task_id)  # one render per try
    for log, task in zip(tries, submitted, strict=True):
        assert log.count(NO_STORE_WARNING) == 1, log
        assert f"Submitted Runway task {task['id']}" in log
        assert "from an earlier try" not in log


# ---------------------------------------------------------------------------------------------
# 6. Bad input sends nothing

BAD_INPUT_FIELDS = {
    "bad_scheme": "video",
    "empty_prompt": "prompt",
    "bad_structure": "structure_transformation",
    "bad_flip": "flip",
    "bad_options": "options",
    "bad_templated_video": "video",
    "bad_callback": "callback_url",
}


def test_bad_input_sends_nothing(bad_input_run: DagRun) -> None:
    assert bad_input_run.result.returncode == 1
    assert bad_input_run.stats["submit_attempts"] == 0
    assert bad_input_run.stats["feeds"] == 0
    assert bad_input_run.stats["tasks"] == {}


@pytest.mark.parametrize(("task_id", "field"), sorted(BAD_INPUT_FIELDS.items()))
def test_bad_input_fails_naming_the_field(bad_input_run: DagRun, task_id: str, field: str) -> None:
    ti = bad_input_run.ti(task_id)
    assert ti["state"] == "failed"
    assert ti["try_number"] == 1  # retries=1, but a validation error is final
    assert len(bad_input_run.tries(task_id)) == 1
    log = bad_input_run.log(task_id)
    assert f"AirflowFailException: Invalid {field!r}" in log
    assert f"(task {task_id!r}; nothing was sent to CometAPI)" in log


def test_templated_value_is_validated_after_rendering(bad_input_run: DagRun) -> None:
    log = bad_input_run.log("bad_templated_video")
    assert "Invalid 'video': no Airflow filesystem handles ftp://" in log
    fields = bad_input_run.query(
        "select rendered_fields from rendered_task_instance_fields where dag_id = ? and run_id = ? and task_id = ?",
        bad_input_run.dag_id,
        bad_input_run.run_id,
        "bad_templated_video",
    )
    assert json.loads(fields[0][0])["video"] == "ftp://x/y.mp4"


# ---------------------------------------------------------------------------------------------
# 7. The API key is nowhere in the metadata DB or the logs


def test_trigger_rows_hold_ids_never_the_key(main_run: DagRun) -> None:
    rows = main_run.query(
        "select classpath, kwargs from trigger where classpath = ?",
        "comet_provider.triggers.runway.RunwayTaskTrigger",
    )
    # defer_local, defer_file_url, sensor_defer, retry_resume, retry_after_failure (x2), fail_plain, fail_safety
    assert len(rows) >= 8
    for _classpath, kwargs in rows:
        assert SECRET not in kwargs
        decoded = json.loads(kwargs)
        if decoded.get("__type") == "dict":  # Airflow 3.1 stores the kwargs serde-wrapped
            decoded = decoded["__var"]
        assert set(decoded) == {"runway_task_id", "comet_conn_id", "poll_interval", "deadline", "submitted_at", "route"}
        assert decoded["comet_conn_id"] == "comet_default"


@needs_task_state_store
def test_task_state_store_holds_ids_never_the_key(main_run: DagRun) -> None:
    tables = {name for (name,) in main_run.query("select name from sqlite_master where type = 'table'")}
    assert "task_state_store" in tables
    rows = main_run.query(
        "select task_id, key, value from task_state_store where dag_id = ? and run_id = ?",
        main_run.dag_id,
        main_run.run_id,
    )
    saved = {task_id: json.loads(value) for task_id, key, value in rows if key == "comet_runway_task"}
    assert {"defer_local", "retry_resume", "retry_after_failure"} <= set(saved)
    for value in saved.values():
        assert set(value) == {
            "runway_task_id",
            "submitted_at",
            "fingerprint",
            "try_number",
            "forced",
            "link_gone",
            "route",
        }
    # retry_after_failure's store was overwritten by try 2's new render.
    assert saved["retry_after_failure"]["runway_task_id"] == main_run.emulator_tasks("stained glass")[-1]["id"]


def test_api_key_is_nowhere_in_the_metadata_db_or_logs(main_run: DagRun, bad_input_run: DagRun) -> None:
    tables = [name for (name,) in main_run.query("select name from sqlite_master where type = 'table'")]
    for table in tables:
        for row in main_run.query(f'select * from "{table}"'):
            assert SECRET not in repr(row), f"the API key leaked into table {table}: {row!r}"
    xcoms = main_run.query("select value from xcom where dag_id = ?", main_run.dag_id)
    assert xcoms
    for run in (main_run, bad_input_run):
        assert SECRET not in run.output, f"the API key appears in the log of {run.dag_id}"
