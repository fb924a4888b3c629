"""The official route (gen4_aleph) end to end: ``airflow dags test`` of ``dags/optest_official.py``
against the emulator, which serves Runway's own format. Same operator, trigger, sensor, waiter and
resume machinery as the gen4 route; only the request and the poll's endpoint differ."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from _optest_support import SECRET, DagRun, OpTestEnv

from comet_provider._compat import AIRFLOW_V_3_3_PLUS

pytestmark = [pytest.mark.dags_test, pytest.mark.timeout(900)]


def _digest(path: Path) -> str:
    import base64

    return hashlib.sha256(base64.b64encode(path.read_bytes())).hexdigest()[:16]


def test_only_the_safety_refusal_fails(official_run: DagRun) -> None:
    states = dict(
        official_run.query(
            "select task_id, state from task_instance where dag_id = ? and run_id = ?",
            official_run.dag_id,
            official_run.run_id,
        )
    )
    expected_failures = {"aleph_safety"} | (set() if AIRFLOW_V_3_3_PLUS else {"aleph_retry"})
    assert {t for t, s in states.items() if s != "success"} == expected_failures, official_run.tail()
    assert set(states) == {"aleph_local", "aleph_sync", "aleph_retry", "aleph_safety", "aleph_submit", "aleph_sensor"}


def test_local_sources_go_as_data_uris_and_the_render_is_stored(official_run: DagRun, optest_env: OpTestEnv) -> None:
    ti = official_run.ti("aleph_local")
    assert ti["state"] == "success", official_run.log("aleph_local")
    assert ti["trigger_id"] is not None, "the task never deferred"
    result = official_run.xcom("aleph_local")
    assert result["status"] == "SUCCEEDED"
    assert result["route"] == "official"
    assert result["decision"] == "submit"
    [task] = official_run.emulator_tasks("match the look of the reference")
    assert task["route"] == "official"
    assert task["model"] == "gen4_aleph"
    assert task["ratio"] == "1280:720"
    # The emulator received the files' own bytes (it names a data: URI by the digest of its payload).
    assert task["video"] == f"data:video/mp4;sha256={_digest(optest_env.sample)}"
    assert task["references"] == [f"data:image/png;sha256={_digest(optest_env.media_dir / 'look.png')}"]
    stored = optest_env.out_dir / "official" / "aleph_local.mp4"
    assert result["output_path"] == str(stored)
    assert stored.read_bytes() == official_run.renders[task["id"]]
    assert stored.read_bytes() != optest_env.sample.read_bytes(), "not a render"
    # Polled on the official route: the trigger's row says so.
    [(kwargs,)] = official_run.query("select kwargs from trigger where id = ?", ti["trigger_id"]) or [("{}",)]
    assert '"official"' in kwargs
    log = official_run.log("aleph_local")
    assert "base64," not in log, "a data: URI was logged"


def test_sync_sends_urls_seed_and_moderation(official_run: DagRun, optest_env: OpTestEnv) -> None:
    ti = official_run.ti("aleph_sync")
    assert ti["state"] == "success", official_run.log("aleph_sync")
    assert ti["trigger_id"] is None, "the sync task deferred"
    [task] = official_run.emulator_tasks("seeded aleph take")
    assert task["seed"] == 1234
    assert task["content_moderation"] == {"publicFigureThreshold": "low"}
    assert task["video"] == optest_env.emulator.media_url(optest_env.sample.name)
    assert task["references"] == [optest_env.emulator.media_url("look.png")]
    result = official_run.xcom("aleph_sync")
    assert result["route"] == "official"
    assert Path(result["output_path"]).read_bytes() == official_run.renders[task["id"]]


@pytest.mark.airflow_version(">=3.3", reason="resuming a render across tries needs task_state_store (3.3)")
def test_retry_resumes_the_same_official_render(official_run: DagRun) -> None:
    ti = official_run.ti("aleph_retry")
    assert ti["state"] == "success", official_run.log("aleph_retry")
    assert ti["try_number"] == 2
    [task] = official_run.emulator_tasks("aleph resumed")  # one paid render over both tries
    tries = official_run.tries("aleph_retry")
    assert f"Submitted Runway task {task['id']}" in tries[0]
    assert f"Resuming Runway task {task['id']} from an earlier try" in "\n".join(tries[1:])
    assert official_run.xcom("aleph_retry")["decision"] == "resume"
    [(value,)] = official_run.query(
        "select value from task_state_store where dag_id = ? and run_id = ? and task_id = ? and key = ?",
        official_run.dag_id,
        official_run.run_id,
        "aleph_retry",
        "comet_runway_task",
    )
    assert json.loads(value)["route"] == "official"


def test_safety_refusal_fails_once_without_retrying(official_run: DagRun) -> None:
    ti = official_run.ti("aleph_safety")
    assert ti["state"] == "failed"
    assert ti["try_number"] == 1, "a SAFETY refusal was retried"
    assert len(official_run.emulator_tasks("forbidden aleph [fail:SAFETY.INPUT.TEXT]")) == 1
    assert "SAFETY.INPUT.TEXT" in official_run.log("aleph_safety")


def test_sensor_waits_on_the_official_route(official_run: DagRun) -> None:
    submitted = official_run.xcom("aleph_submit")
    assert submitted["route"] == "official"
    assert submitted["status"] == "PENDING"
    ti = official_run.ti("aleph_sensor")
    assert ti["state"] == "success", official_run.log("aleph_sensor")
    result = official_run.xcom("aleph_sensor")
    assert result["runway_task_id"] == submitted["runway_task_id"]
    assert result["status"] == "SUCCEEDED"
    assert result["route"] == "official"
    # The official route was polled (GET /runwayml/v1/tasks/{id}), never the gen4 feed.
    assert official_run.stats["task_polls"] > 0
    assert official_run.stats["routes"]["official"]["submissions"] == len(official_run.stats["tasks"])


def test_the_api_key_and_data_uris_are_nowhere(official_run: DagRun) -> None:
    tables = [name for (name,) in official_run.query("select name from sqlite_master where type = 'table'")]
    for table in tables:
        for row in official_run.query(f'select * from "{table}"'):
            text = repr(row)
            assert SECRET not in text, f"the API key leaked into table {table}"
            assert ";base64," not in text, f"a data: URI was stored in table {table}"
    assert SECRET not in official_run.output
