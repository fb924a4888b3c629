"""Issue 7: the provider in a real Airflow (PostgreSQL, LocalExecutor, separate triggerers).

The tests run in file order and share one cluster. Later scenarios' runs are launched early
(``runs.launch`` is idempotent) so their renders overlap with the triggerer kills; each test
asserts on its own run. Figures go to build/integration-figures.json.
"""

from __future__ import annotations

import itertools
import json
import re
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from browser import chromium, wait_until
from cluster import AirflowCluster
from postgres import find_pg_bindir
from scenarios import COUNTS, Runs, ScenarioRun
from slots import SlotSampler
from stack import BUILD_DIR, EMULATORS, LOGS_DIR, Stack
from waiting import wait_for

pytestmark = [pytest.mark.airflow_integration, pytest.mark.timeout(600)]

PENDING_STATES = ("none", "scheduled", "queued", "running", "up_for_retry", "up_for_reschedule", "restarting")


def _summary(values: list[float]) -> dict[str, float]:
    return {
        "min": round(min(values), 2),
        "mean": round(statistics.fmean(values), 2),
        "max": round(max(values), 2),
    }


def _assert_each_completed_once(runs: Runs, run: ScenarioRun, *, tries: int = 1) -> list[dict[str, Any]]:
    """Every restyle succeeded on try ``tries``, and the emulator saw one submission per task."""
    tis = runs.restyle_tis(run)
    assert len(tis) == len(run.cases), f"expected {len(run.cases)} mapped tasks, got {len(tis)}"
    bad = [(t["map_index"], t["state"], t["try_number"]) for t in tis if t["state"] != "success"]
    assert not bad, f"restyle tasks not successful (map_index, state, try): {bad}"
    assert [t["try_number"] for t in tis] == [tries] * len(tis)
    submissions = run.submissions_by_prompt()
    twice = {p: n for p, n in submissions.items() if n != 1}
    assert not twice, f"submissions per task should be exactly 1: {twice}"
    assert run.emulator.stats(tasks=False)["submissions"] == len(run.cases)
    return tis


def _wait_deferred(runs: Runs, run: ScenarioRun, *, at_least: int, timeout: float) -> dict[str, int]:
    """Wait until ``at_least`` restyles are deferred and none is still on its way there."""

    def ready() -> dict[str, int] | None:
        states = runs.restyle_states(run)
        on_the_way = sum(states.get(s, 0) for s in PENDING_STATES)
        if sum(states.values()) == len(run.cases) and states.get("deferred", 0) >= at_least and not on_the_way:
            return states
        return None

    return wait_for(
        ready,
        timeout=timeout,
        interval=0.5,
        what=f"{at_least}+ deferred restyles in {run.dag_id}",
        on_timeout=lambda: f"states: {runs.restyle_states(run)}",
    )


# ---------------------------------------------------------------------------------------------
# 1. Deferral frees the worker
# ---------------------------------------------------------------------------------------------


def test_s1_deferral_frees_worker_slots(runs: Runs, cluster: AirflowCluster, figures: dict[str, Any]) -> None:
    n = COUNTS["s1"]
    render = float(EMULATORS["s1"]["render_seconds"])
    with SlotSampler(cluster, interval=0.2) as sampler:
        run = runs.launch("s1")
        sampler.watch.append((run.dag_id, run.run_id))

        def deferred_and_idle() -> dict[str, Any] | None:
            states = runs.restyle_states(run)
            if states.get("deferred") != n:
                return None
            busy = cluster.busy_workers()
            pool = cluster.pool()
            if busy or pool["running_slots"] or pool["queued_slots"]:
                return None
            return {"states": states, "pool": pool}

        idle = wait_for(
            deferred_and_idle,
            timeout=150,
            interval=0.3,
            what="every s1 restyle deferred while every executor slot is free",
            on_timeout=lambda: f"states {runs.restyle_states(run)}, busy {cluster.busy_workers()}",
        )
        final = cluster.wait_run(run.dag_id, run.run_id, timeout=240)
    assert final["state"] == "success"
    tis = _assert_each_completed_once(runs, run)
    assert idle["pool"]["deferred_slots"] >= n

    slot = [sampler.slot_seconds_of(t["id"]) for t in tis]
    deferred = [sampler.state_seconds.get(t["id"], {}).get("deferred", 0.0) for t in tis]
    durations = [float(t["duration"] or 0.0) for t in tis]
    # Seconds each restyle was deferred while no worker held it, and seconds during which every
    # restyle was deferred and every executor worker idle.
    free = dict.fromkeys((t["id"] for t in tis), 0.0)
    all_idle = 0.0
    for prev, cur in itertools.pairwise(sampler.samples):
        step = cur["t"] - prev["t"]
        held = " ".join(cur["busy"])
        restyles = {i: st for i, (task, st) in cur["states"].items() if task == "restyle"}
        for ti_id in free:
            if restyles.get(ti_id) == "deferred" and ti_id not in held:
                free[ti_id] += step
        if len(restyles) == n and all(st == "deferred" for st in restyles.values()) and not cur["busy"]:
            all_idle += step
    # Each restyle ran on a worker twice (submit, then resume) and held no slot while Runway rendered.
    assert all(s > 0 for s in slot), f"the sampler never saw a restyle on a worker: {slot}"
    assert min(free.values()) > render / 2, f"seconds deferred without a worker slot: {sorted(free.values())}"
    assert all_idle > 0
    figures["s1_deferral"] = {
        "restyles": n,
        "render_seconds": render,
        "emulator_task_seconds": render + 1.5,  # + not-visible (1 s) + queued (0.5 s)
        "worker_slot_seconds_per_restyle": _summary(slot),
        "deferred_seconds_per_restyle": _summary(deferred),
        "deferred_without_worker_seconds_per_restyle": _summary(list(free.values())),
        "task_wall_seconds_per_restyle": _summary(durations),
        "slot_seconds_over_render_seconds": round(statistics.fmean(slot) / render, 3),
        "seconds_all_deferred_and_every_worker_idle": round(all_idle, 2),
        "pool_while_all_deferred": {k: idle["pool"][k] for k in ("open_slots", "running_slots", "deferred_slots")},
        "parallelism": cluster.parallelism,
        "note": (
            "worker slot-seconds are the two short worker runs of each restyle (submit+defer, resume); "
            "they do not grow with the render time, a blocking wait would hold a slot for all of it"
        ),
    }


# ---------------------------------------------------------------------------------------------
# 2. Triggerer killed (-9) and restarted while 20+ tasks are deferred
# ---------------------------------------------------------------------------------------------


def test_s2_triggerer_kill_and_restart(runs: Runs, cluster: AirflowCluster, figures: dict[str, Any]) -> None:
    run = runs.launch("s2")

    def twenty_deferred() -> dict[str, int] | None:
        states = runs.restyle_states(run)
        return states if states.get("deferred", 0) >= 20 else None

    states = wait_for(
        twenty_deferred,
        timeout=240,
        interval=0.5,
        what="20+ deferred s2 restyles",
        on_timeout=lambda: f"states: {runs.restyle_states(run)}",
    )
    runs.notes["trigger_rows"] = cluster.sql("SELECT id, classpath, kwargs FROM trigger")

    t_kill = time.monotonic()
    cluster.kill("triggerer")
    # Work goes on without a triggerer: more renders are submitted and deferred (s4, s5), the
    # bad-input matrix fails on the workers (s8). They all wait through the outage.
    for key in ("s4", "s5", "s8"):
        runs.launch(key)
    time.sleep(2)
    during = runs.restyle_states(run)
    assert during.get("success", 0) == states.get("success", 0), f"tasks finished with no triggerer: {during}"

    comp = cluster.start_triggerer("triggerer", wait=True)
    t_restarted = time.monotonic()
    new_job = comp.job_id

    def recovered() -> bool:
        owners = runs.trigger_owners(run)
        return all(job == new_job for job in owners)

    wait_for(recovered, timeout=120, interval=0.25, what="the restarted triggerer to own every s2 trigger")
    t_recovered = time.monotonic()
    # Scenario 3's second triggerer starts up while these renders finish.
    if "triggerer-2" not in cluster.components:
        cluster.start_triggerer("triggerer-2")
    final = cluster.wait_run(run.dag_id, run.run_id, timeout=300)
    t_done = time.monotonic()
    assert final["state"] == "success"
    _assert_each_completed_once(runs, run)
    submissions = run.submissions_by_prompt()
    figures["s2_triggerer_restart"] = {
        "restyles": len(run.cases),
        "states_at_kill": states,
        "seconds_launch_to_kill": round(t_kill - run.triggered_at, 2),
        "render_seconds": EMULATORS["s2"]["render_seconds"],
        "submissions_per_task": {"min": min(submissions.values()), "max": max(submissions.values())},
        "restart_seconds": round(t_restarted - t_kill, 2),
        "recovery_seconds_after_restart": round(t_recovered - t_restarted, 2),
        "recovery_seconds_after_kill": round(t_recovered - t_kill, 2),
        "kill_to_all_done_seconds": round(t_done - t_kill, 2),
        "triggerer_health_check_threshold": cluster.triggerer_health_check_threshold,
    }


# ---------------------------------------------------------------------------------------------
# 3. Two triggerers, one killed mid-run
# ---------------------------------------------------------------------------------------------


def test_s3_two_triggerers_one_killed(runs: Runs, cluster: AirflowCluster, figures: dict[str, Any]) -> None:
    for name in ("triggerer", "triggerer-2"):
        comp = cluster.components.get(name)
        if comp is None or not comp.alive():
            comp = cluster.start_triggerer(name)
        cluster.wait_job(comp)
    alive = cluster.wait_triggerers(2)
    run = runs.launch("s3")
    n = len(run.cases)
    _wait_deferred(runs, run, at_least=n, timeout=240)

    def assigned() -> dict[int | None, int] | None:
        owners = runs.trigger_owners(run)
        return owners if None not in owners and sum(owners.values()) == n else None

    owners = wait_for(assigned, timeout=60, what="every s3 trigger assigned")
    victim_job = max(owners, key=lambda j: owners[j] or 0)
    victim = next(c for c in cluster.components.values() if c.kind == "triggerer" and c.job_id == victim_job)
    survivors = [j for j in cluster.alive_jobs("triggerer") if j != victim_job]
    assert survivors, f"no second triggerer alive (alive jobs {alive})"

    t_kill = time.monotonic()
    cluster.kill(victim.name)
    wait_for(
        lambda: all(job in survivors for job in runs.trigger_owners(run)),
        timeout=120,
        interval=0.25,
        what="the surviving triggerer to take over every s3 trigger",
    )
    t_takeover = time.monotonic()
    final = cluster.wait_run(run.dag_id, run.run_id, timeout=300)
    t_done = time.monotonic()
    assert final["state"] == "success"
    _assert_each_completed_once(runs, run)
    figures["s3_two_triggerers"] = {
        "restyles": n,
        "triggers_per_triggerer_before_kill": {str(k): v for k, v in owners.items()},
        "killed_triggerer_held": owners[victim_job],
        "takeover_seconds_after_kill": round(t_takeover - t_kill, 2),
        "kill_to_all_done_seconds": round(t_done - t_kill, 2),
        "submissions_per_task": sorted(set(run.submissions_by_prompt().values())),
    }


# ---------------------------------------------------------------------------------------------
# 4. A try that times out is retried, and the retry waits on the same render
# ---------------------------------------------------------------------------------------------


def test_s4_retry_resumes_the_same_render(runs: Runs, cluster: AirflowCluster, figures: dict[str, Any]) -> None:
    run = runs.launch("s4")
    final = cluster.wait_run(run.dag_id, run.run_id, timeout=300)
    assert final["state"] == "success"
    tis = _assert_each_completed_once(runs, run, tries=2)
    emulator_ids = run.emulator_task_ids()
    details = []
    for ti, case in zip(tis, run.cases, strict=True):
        (runway_id,) = emulator_ids[case["prompt"]]
        first = cluster.task_log(run.dag_id, run.run_id, "restyle", 1, ti["map_index"])
        second = cluster.task_log(run.dag_id, run.run_id, "restyle", 2, ti["map_index"])
        assert f"Submitted Runway task {runway_id}" in first
        assert "was not finished after waiting" in first, "try 1 should fail on its own timeout"
        assert f"Resuming Runway task {runway_id}" in second
        assert "Submitted Runway task" not in second
        xcom_id = cluster.xcom(run.dag_id, run.run_id, "restyle", "runway_task_id", ti["map_index"])
        assert xcom_id == runway_id
        stored = cluster.sql(
            "SELECT value FROM task_state_store WHERE dag_id = %s AND run_id = %s AND task_id = 'restyle' "
            "AND map_index = %s",
            (run.dag_id, run.run_id, ti["map_index"]),
        )
        assert any(runway_id in str(v) for (v,) in stored), f"task_state_store rows: {stored}"
        details.append({"map_index": ti["map_index"], "runway_task_id": runway_id, "tries": ti["try_number"]})
    figures["s4_retry"] = {
        "restyles": len(tis),
        "timeout_seconds": 25,
        "render_seconds": EMULATORS["s4"]["render_seconds"],
        "tries_per_task": sorted({t["try_number"] for t in tis}),
        "submissions_per_task": sorted(set(run.submissions_by_prompt().values())),
    }


# ---------------------------------------------------------------------------------------------
# 5. Fault storm
# ---------------------------------------------------------------------------------------------


def test_s5_fault_storm(runs: Runs, cluster: AirflowCluster, figures: dict[str, Any]) -> None:
    run = runs.launch("s5")
    final = cluster.wait_run(run.dag_id, run.run_id, timeout=300)
    stats = run.emulator.stats(tasks=False)
    assert final["state"] == "success", f"emulator stats: {stats}"
    _assert_each_completed_once(runs, run)
    faults = stats["faults"]
    submit_429s = EMULATORS["s5"]["fail_next"][0]["count"]
    # Every refused submit was retried (429 is safe: nothing started), and nothing else was.
    assert stats["submit_attempts"] == stats["submissions"] + submit_429s, stats
    for kind in EMULATORS["s5"]["faults"]["kinds"]:
        assert faults.get(kind, 0) > 0, f"no {kind} fault was injected: {faults}"
    figures["s5_fault_storm"] = {
        "restyles": len(run.cases),
        "faults_injected": faults,
        "feed_fault_rate": EMULATORS["s5"]["faults"]["rate"],
        "feeds": stats["feeds"],
        "submit_attempts": stats["submit_attempts"],
        "submissions": stats["submissions"],
        "submissions_per_task": sorted(set(run.submissions_by_prompt().values())),
    }


# ---------------------------------------------------------------------------------------------
# 8. Bad input
# ---------------------------------------------------------------------------------------------


def test_s8_bad_input_matrix(runs: Runs, cluster: AirflowCluster, figures: dict[str, Any]) -> None:
    run = runs.launch("s8")
    assert len(run.cases) >= 40
    final = cluster.wait_run(run.dag_id, run.run_id, timeout=300)
    assert final["state"] == "failed"
    tis = runs.restyle_tis(run)
    assert len(tis) == len(run.cases)
    wrong: list[str] = []
    for ti, field in zip(tis, run.expected_fields, strict=True):
        if ti["state"] != "failed" or ti["try_number"] != 1:
            wrong.append(f"#{ti['map_index']} ({field}): state {ti['state']}, try {ti['try_number']}")
            continue
        log = cluster.task_log(run.dag_id, run.run_id, "restyle", 1, ti["map_index"])
        if f"Invalid '{field}'" not in log:
            found = re.findall(r"Invalid '[^']+'", log)
            wrong.append(f"#{ti['map_index']} expected field {field!r}, log names {found or 'no field'}")
    assert not wrong, "\n".join(wrong)
    stats = run.emulator.stats(tasks=False)
    seen = (stats["submit_attempts"], stats["submissions"], stats["feeds"], stats["auth_failures"])
    assert seen == (0, 0, 0, 0), stats
    figures["s8_bad_input"] = {
        "cases": len(run.cases),
        "fields": sorted(set(run.expected_fields)),
        "requests_reaching_emulator": stats["submit_attempts"] + stats["feeds"],
    }


# ---------------------------------------------------------------------------------------------
# 6. The API key appears nowhere
# ---------------------------------------------------------------------------------------------


def _decrypt_if_needed(value: str, fernet_key: str) -> str:
    if value.startswith("{"):
        return value
    from cryptography.fernet import Fernet, InvalidToken

    try:
        return Fernet(fernet_key.encode()).decrypt(value.encode()).decode()
    except (InvalidToken, ValueError):
        return value


def test_s6_api_key_appears_nowhere(runs: Runs, stack: Stack, cluster: AirflowCluster, figures: dict[str, Any]) -> None:
    key = stack.api_key
    for name in ("s1", "s4", "s5", "s8"):
        runs.launch(name)
    for run in runs.launched.values():
        cluster.wait_run(run.dag_id, run.run_id, timeout=300)

    leaks: list[str] = []
    scanned: dict[str, int] = {}

    def scan(where: str, text: str) -> None:
        scanned[where.split(":")[0]] = scanned.get(where.split(":")[0], 0) + len(text)
        if key in text:
            leaks.append(where)

    # Task logs (worker and trigger parts) and every component's log, triggerers' included.
    for path in sorted(LOGS_DIR.rglob("*")):
        if path.is_file():
            scan(f"file:{path.relative_to(LOGS_DIR)}", path.read_text(errors="replace"))
    # Task logs as the API serves them.
    for run in runs.launched.values():
        tis = runs.restyle_tis(run)
        scan(f"api-ti:{run.dag_id}", json.dumps(tis, default=str))  # rendered_fields included
        for ti in tis:
            for try_number in range(1, int(ti["try_number"]) + 1):
                log = cluster.task_log(run.dag_id, run.run_id, "restyle", try_number, ti["map_index"])
                scan(f"api-log:{run.dag_id}/{ti['map_index']}/{try_number}", log)
        for entry in cluster.xcom_entries(run.dag_id, run.run_id):
            scan(f"api-xcom:{run.dag_id}/{entry['task_id']}/{entry['key']}", json.dumps(entry, default=str))
    # The metadata DB, table by table, then all of it.
    fernet_key = cluster.env["AIRFLOW__CORE__FERNET_KEY"]
    queries = {
        "xcom": "SELECT value::text FROM xcom",
        "rendered_task_instance_fields": "SELECT rendered_fields::text FROM rendered_task_instance_fields",
        "trigger": "SELECT kwargs FROM trigger",
        "task_state_store": "SELECT value FROM task_state_store",
        "task_instance": "SELECT ti::text FROM task_instance ti",
        "task_instance_history": "SELECT h::text FROM task_instance_history h",
        "dag_run": "SELECT dr::text FROM dag_run dr",
        "log": "SELECT l::text FROM log l",
    }
    for table, query in queries.items():
        for (value,) in cluster.sql(query):
            scan(f"db:{table}", _decrypt_if_needed(str(value), fernet_key) if table == "trigger" else str(value))
    # Triggers are deleted once they fire: the rows saved while 20+ tasks were deferred.
    for row_id, classpath, kwargs in runs.notes.get("trigger_rows", []):
        scan(f"db-trigger-while-deferred:{row_id}", f"{classpath} {_decrypt_if_needed(str(kwargs), fernet_key)}")
    bindir = find_pg_bindir()
    dump = subprocess.run(
        [
            str(bindir / "pg_dump"),
            "-h",
            "127.0.0.1",
            "-p",
            str(cluster.postgres.port),
            "-U",
            cluster.postgres.superuser,
            "--no-owner",
            cluster.postgres.database,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    scan("pg_dump:airflow", dump.stdout)

    assert not leaks, f"the API key leaked into: {leaks}"
    # The scan read real content: renders' ids are in the logs, XComs and trigger rows.
    assert scanned.get("api-log", 0) > 10_000 and scanned.get("db", 0) > 10_000, scanned
    assert runs.notes.get("trigger_rows") or "s2" not in runs.launched
    assert "RunwayTaskTrigger" in dump.stdout or "runway_task_id" in dump.stdout
    figures["s6_secrets"] = {"leaks": leaks, "bytes_scanned": scanned}


# ---------------------------------------------------------------------------------------------
# 7. UI
# ---------------------------------------------------------------------------------------------


def test_s7_ui_shows_extra_link_and_mapped_names(runs: Runs, cluster: AirflowCluster, figures: dict[str, Any]) -> None:
    from selenium.webdriver.common.by import By

    run = runs.launch("s1")
    final = cluster.wait_run(run.dag_id, run.run_id, timeout=300)
    assert final["state"] == "success"
    tis = runs.restyle_tis(run)
    link = cluster.extra_links(run.dag_id, run.run_id, "restyle", tis[0]["map_index"])["Runway video"]
    assert link.startswith(run.emulator.url) and link.endswith(".mp4"), link
    BUILD_DIR.mkdir(parents=True, exist_ok=True)
    base = f"{cluster.base_url}/dags/{run.dag_id}/runs/{run.run_id}/tasks/restyle"
    shots: list[str] = []
    t0 = time.monotonic()
    with chromium() as driver:
        # The finished restyle task: its Details tab carries the extra link.
        driver.get(f"{base}/mapped/{tis[0]['map_index']}/details")

        def video_link(d: Any) -> Any:
            for anchor in d.find_elements(By.TAG_NAME, "a"):
                if anchor.text.strip() == "Runway video":
                    return anchor
            return None

        anchor = wait_until(driver, video_link, timeout=60, what="the 'Runway video' extra link")
        assert anchor.get_attribute("href") == link
        path = BUILD_DIR / "integration-ui-restyle-task.png"
        driver.save_screenshot(str(path))
        shots.append(str(path.relative_to(BUILD_DIR.parent)))

        # The mapped instances, named after their prompts.
        driver.get(f"{base}/mapped")
        expected = list(run.prompts)

        def names_shown(d: Any) -> bool:
            body = d.find_element(By.TAG_NAME, "body").text
            return all(name in body for name in expected)

        try:
            wait_until(driver, names_shown, timeout=45, what="the mapped task names (prompts)")
        finally:
            path = BUILD_DIR / "integration-ui-mapped-tasks.png"
            driver.save_screenshot(str(path))
            shots.append(str(path.relative_to(BUILD_DIR.parent)))
    figures["s7_ui"] = {"screenshots": shots, "seconds": round(time.monotonic() - t0, 2), "link": link}
    assert all(Path(BUILD_DIR.parent / s).stat().st_size > 10_000 for s in shots)
