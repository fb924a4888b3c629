"""Issue 10: a render is paid for once over its whole life, in a real Airflow.

The example pipeline on the session's cluster (PostgreSQL, LocalExecutor, triggerer):
a backfill within a 3-slot pool, clears, expired links, ``force_render``, the spend
plan's cap and approval, and a task killed with SIGKILL right after it submitted.
The tests run in file order on one set of emulators (``pay_once_stack.py``); the first
one also launches the backfill and the runs the spend plan must stop, so they overlap.
Figures: ``build/integration-figures.json`` under ``pay_once``.
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cluster import AirflowCluster
from pay_once_stack import (
    APPROVED_DAY,
    BACKFILL_DAYS,
    CLEARED_DAYS,
    CLIPS,
    DAG_ID,
    EXPIRED_DAY,
    FORCED_DAY,
    KILL_DAG_ID,
    OVER_CAP_DAY,
    POOL,
    POOL_SLOTS,
    REJECTED_DAY,
    RENDERS_PER_DAY,
    STYLES,
    PayOnceStack,
)
from stack import Stack
from waiting import wait_for

pytestmark = [pytest.mark.airflow_integration, pytest.mark.timeout(600)]

EXPECTED_KEYS = {(day, clip, style) for day in BACKFILL_DAYS for clip in CLIPS for style in STYLES}
KILL_PROMPT = "worker kill: hand-drawn pencil sketch"


@pytest.fixture(scope="module")
def pay(stack: Stack, figures: dict[str, Any]) -> Iterator[PayOnceStack]:
    started = PayOnceStack(stack)
    figures["pay_once"] = {}
    try:
        started.start()
        figures["pay_once"]["setup_seconds"] = started.seconds_since("start")
        yield started
    finally:
        started.stop_runs()
        figures["pay_once"]["total_seconds"] = started.seconds_since("start")
        started.close()


@pytest.fixture
def fig(figures: dict[str, Any], pay: PayOnceStack) -> dict[str, Any]:
    figures_of_module: dict[str, Any] = figures["pay_once"]
    return figures_of_module


def _wait_success(cluster: AirflowCluster, dag_id: str, run_id: str, timeout: float) -> None:
    run = cluster.wait_run(dag_id, run_id, timeout=timeout)
    if run["state"] != "success":
        states = sorted((t["task_id"], t["map_index"], t["state"]) for t in cluster.task_instances(dag_id, run_id))
        raise AssertionError(f"{dag_id}/{run_id} ended {run['state']}: {states}")


def _wait_cleared_done(pay: PayOnceStack, run_id: str, tries: dict[int, int], timeout: float) -> list[dict[str, Any]]:
    """Until every cleared restyle ran once more and succeeded, and the run is done again."""

    def done() -> list[dict[str, Any]] | None:
        tis = {t["map_index"]: t for t in pay.restyles(run_id)}
        if any(tis[i]["try_number"] <= n or tis[i]["state"] != "success" for i, n in tries.items()):
            return None
        return list(tis.values()) if pay.cluster.dag_run(DAG_ID, run_id)["state"] == "success" else None

    return wait_for(
        done,
        timeout=timeout,
        interval=1,
        what=f"the cleared restyles of {run_id} to succeed again",
        on_timeout=lambda: str([(t["map_index"], t["state"], t["try_number"]) for t in pay.restyles(run_id)]),
    )


# ---------------------------------------------------------------------------------------------
# A task killed right after its submission reached the emulator
# ---------------------------------------------------------------------------------------------


def test_worker_killed_while_polling_resumes_its_render(pay: PayOnceStack, fig: dict[str, Any]) -> None:
    cluster, emu = pay.cluster, pay.kill_emulator
    source = pay.staging / "kill" / "source.mp4"
    source.parent.mkdir(parents=True)
    source.write_bytes((pay.storage / "incoming" / BACKFILL_DAYS[0] / "walk.mp4").read_bytes())
    output = pay.storage / "kill" / "render.mp4"
    conf = {"video": emu.media_url("kill/source.mp4"), "prompt": KILL_PROMPT, "output_path": str(output)}
    run_id = cluster.trigger(KILL_DAG_ID, conf, run_id=f"it_pay_kill_{int(time.time() * 1000)}")

    def polling() -> dict[str, Any] | None:
        tasks = [dict(t, id=i) for i, t in emu.stats()["tasks"].items() if t["prompt"] == KILL_PROMPT]
        # Its first status request: the submission's answer arrived and the task is waiting on it.
        return tasks[0] if tasks and tasks[0]["feeds"] >= 1 else None

    render = wait_for(polling, timeout=120, interval=0.1, what="the sync-mode task to poll its render")
    (ti,) = cluster.task_instances(KILL_DAG_ID, run_id, task_id="restyle")
    proc = wait_for(lambda: cluster.task_process(ti["id"]), timeout=10, interval=0.1, what="the task's process")
    proc.send_signal(signal.SIGKILL)
    killed_at = time.monotonic()
    status_at_kill = emu.stats()["tasks"][render["id"]]["status"]

    # Overlap the slower scenarios with this one's retry.
    pay.start_backfill()
    pay.launch_gate_runs()

    _wait_success(cluster, KILL_DAG_ID, run_id, timeout=240)
    (ti,) = cluster.task_instances(KILL_DAG_ID, run_id, task_id="restyle")
    submissions = [i for i, t in emu.stats()["tasks"].items() if t["prompt"] == KILL_PROMPT]
    result = cluster.xcom(KILL_DAG_ID, run_id, "restyle")
    retry_log = cluster.task_log(KILL_DAG_ID, run_id, "restyle", 2)
    sidecar = json.loads(Path(f"{output}.comet.json").read_text())
    fig.update(
        worker_kill_submissions=len(submissions),
        worker_kill_try_number=ti["try_number"],
        worker_kill_status_at_kill=status_at_kill,
        worker_kill_recovery_seconds=round(time.monotonic() - killed_at, 2),
    )
    assert status_at_kill not in ("SUCCESS", "FAILURE"), "the render ended before the kill: nothing was proven"
    assert ti["state"] == "success" and ti["try_number"] == 2
    assert submissions == [render["id"]], f"the retry submitted again: {submissions}"
    assert result["decision"] == "resume" and result["task_id"] == render["id"]
    assert f"Runway task {render['id']}" in retry_log and "Resuming" in retry_log
    assert sidecar["runway_task_id"] == render["id"] and output.stat().st_size == sidecar["size_bytes"]


# ---------------------------------------------------------------------------------------------
# Backfill: one submission per (day, clip, style), never more renders in flight than pool slots
# ---------------------------------------------------------------------------------------------


def test_backfill_submits_once_per_render_within_the_pool(pay: PayOnceStack, fig: dict[str, Any]) -> None:
    cluster = pay.cluster
    pay.start_backfill()
    runs = pay.backfill_runs()
    assert sorted(runs) == list(BACKFILL_DAYS), pay.backfill_output
    for run_id in runs.values():
        _wait_success(cluster, DAG_ID, run_id, timeout=480)
    stats = pay.emulator.stats(tasks=False)
    counts = pay.submissions()
    backfilled = {k: n for k, n in counts.items() if k[0] in BACKFILL_DAYS}
    pool = cluster.pool(POOL)
    decisions = sorted({r["decision"] for run_id in runs.values() for r in pay.results(run_id).values()})
    plans = [cluster.xcom(DAG_ID, run_id, "spend_plan")["totals"] for run_id in runs.values()]
    fig.update(
        backfill_days=len(runs),
        backfill_expected_submissions=len(EXPECTED_KEYS),
        backfill_submissions=sum(backfilled.values()),
        backfill_peak_in_flight=stats["peak_in_flight"],
        pool_slots=pool["slots"],
        pool_include_deferred=pool["include_deferred"],
        backfill_seconds=pay.seconds_since("backfill"),
    )
    assert pool["slots"] == POOL_SLOTS and pool["include_deferred"]
    assert set(backfilled) == EXPECTED_KEYS
    assert sorted(set(backfilled.values())) == [1], f"renders paid more than once: {backfilled}"
    assert 1 <= stats["peak_in_flight"] <= POOL_SLOTS, stats
    assert decisions == ["submit"]
    # The plan made before any submission said what the tasks then did.
    assert [(p["submit"], p["reuse_stored"]) for p in plans] == [(RENDERS_PER_DAY, 0)] * len(runs), plans
    for day in BACKFILL_DAYS:
        for clip in CLIPS:
            for style in STYLES:
                assert Path(f"{pay.render_path(day, clip, style)}.comet.json").is_file()


# ---------------------------------------------------------------------------------------------
# Clear two days' restyles: the stored renders are the answer
# ---------------------------------------------------------------------------------------------


def test_clearing_two_days_reuses_their_stored_renders(pay: PayOnceStack, fig: dict[str, Any]) -> None:
    cluster, runs = pay.cluster, pay.backfill_runs()
    before = pay.stored(CLEARED_DAYS)
    submissions = pay.emulator.stats(tasks=False)["submissions"]
    downloads = pay.emulator.stats(tasks=False)["links"]["downloads"]
    tries = {day: {t["map_index"]: t["try_number"] for t in pay.restyles(runs[day])} for day in CLEARED_DAYS}
    t0 = time.monotonic()
    for day in CLEARED_DAYS:
        cleared = cluster.clear_tasks(DAG_ID, runs[day], ["restyle"])
        assert len(cleared) == RENDERS_PER_DAY, cleared
    for day in CLEARED_DAYS:
        _wait_cleared_done(pay, runs[day], tries[day], timeout=240)
    after = pay.emulator.stats(tasks=False)
    results = [r for day in CLEARED_DAYS for r in pay.results(runs[day]).values()]
    log = cluster.task_log(DAG_ID, runs[CLEARED_DAYS[0]], "restyle", tries[CLEARED_DAYS[0]][0] + 1, 0)
    fig.update(
        clear_days=len(CLEARED_DAYS),
        clear_tasks=len(results),
        clear_new_submissions=after["submissions"] - submissions,
        clear_downloads=after["links"]["downloads"] - downloads,
        clear_seconds=round(time.monotonic() - t0, 2),
    )
    assert after["submissions"] == submissions
    assert after["links"]["downloads"] == downloads, "a reused render was downloaded again"
    assert pay.stored(CLEARED_DAYS) == before, "stored renders changed (bytes or modification time)"
    assert len(before) == 2 * len(CLEARED_DAYS) * RENDERS_PER_DAY  # renders and their sidecars
    assert [r["decision"] for r in results] == ["reuse_stored"] * len(results)
    assert "Reusing the stored render" in log


# ---------------------------------------------------------------------------------------------
# Every link expired, one stored render deleted, its task cleared: one new render
# ---------------------------------------------------------------------------------------------


def test_expired_links_and_a_deleted_render_cost_one_submission(pay: PayOnceStack, fig: dict[str, Any]) -> None:
    cluster, emu = pay.cluster, pay.emulator
    run_id = pay.backfill_runs()[EXPIRED_DAY]
    key = (EXPIRED_DAY, CLIPS[0], next(iter(STYLES)))
    index = pay.map_index_of(run_id, key[1], key[2])
    (ti,) = [t for t in pay.restyles(run_id) if t["map_index"] == index]
    before = pay.submissions()
    expired = emu.expire_links()
    refused = emu.stats(tasks=False)["links"]["expired"]
    pay.render_path(*key).unlink()
    t0 = time.monotonic()
    cluster.clear_tasks(DAG_ID, run_id, [("restyle", index)])
    _wait_cleared_done(pay, run_id, {index: ti["try_number"]}, timeout=240)
    after = pay.submissions()
    new = {k: after[k] - before.get(k, 0) for k in after if after[k] != before.get(k, 0)}
    result = pay.results(run_id)[index]
    sidecar = json.loads(Path(f"{pay.render_path(*key)}.comet.json").read_text())
    log = cluster.task_log(DAG_ID, run_id, "restyle", ti["try_number"] + 1, index)
    fig.update(
        expired_links=expired,
        expired_resubmissions=sum(new.values()),
        expired_refused_downloads=emu.stats(tasks=False)["links"]["expired"] - refused,
        expired_seconds=round(time.monotonic() - t0, 2),
    )
    assert expired == len(EXPECTED_KEYS)
    assert new == {key: 1}, f"new submissions: {new}"
    assert result["decision"] == "submit" and sidecar["runway_task_id"] == result["task_id"]
    assert pay.render_path(*key).stat().st_size == sidecar["size_bytes"]
    assert fig["expired_refused_downloads"] >= 1, "the earlier render's expired link was never tried"
    assert "no longer serves" in log


# ---------------------------------------------------------------------------------------------
# The spend plan: over the cap fails, over the approval threshold waits for a person
# ---------------------------------------------------------------------------------------------


def test_a_run_over_max_renders_fails_before_submitting(pay: PayOnceStack, fig: dict[str, Any]) -> None:
    cluster = pay.cluster
    run_id = pay.launch("over_cap")
    run = cluster.wait_run(DAG_ID, run_id, timeout=300)
    tis = cluster.task_instances(DAG_ID, run_id)
    failed = [t for t in tis if t["state"] == "failed"]
    restyled = [t for t in tis if t["task_id"] == "restyle" and t["state"] not in ("upstream_failed", "skipped", None)]
    fig["over_cap_submissions"] = pay.submitted_on(OVER_CAP_DAY)
    assert run["state"] == "failed"
    assert fig["over_cap_submissions"] == 0
    assert not restyled, restyled
    assert [t["task_id"] for t in failed] == ["spend_plan"], [(t["task_id"], t["state"]) for t in tis]
    log = cluster.task_log(DAG_ID, run_id, failed[0]["task_id"], failed[0]["try_number"], failed[0]["map_index"])
    assert "max_renders_per_run" in log


def _approval(pay: PayOnceStack, name: str, fig: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    run_id = pay.launch(name)
    detail = wait_for(
        lambda: pay.pending_approval(run_id),
        timeout=300,
        interval=1,
        what=f"the {name} run to wait for approval",
        on_timeout=lambda: str([(t["task_id"], t["state"]) for t in pay.cluster.task_instances(DAG_ID, run_id)]),
    )
    ti = detail["task_instance"]
    (seen,) = pay.cluster.task_instances(DAG_ID, run_id, task_id=ti["task_id"])
    fig[f"{name}_waiting_state"] = seen["state"]
    assert seen["state"] in ("awaiting_input", "deferred")
    assert pay.cluster.dag_run(DAG_ID, run_id)["state"] == "running"
    return run_id, detail


def test_a_rejected_run_submits_nothing(pay: PayOnceStack, fig: dict[str, Any]) -> None:
    run_id, detail = _approval(pay, "rejected", fig)
    assert pay.submitted_on(REJECTED_DAY) == 0
    ti = detail["task_instance"]
    pay.cluster.respond_hitl(DAG_ID, run_id, ti["task_id"], ["Reject"], ti["map_index"])
    pay.cluster.wait_run(DAG_ID, run_id, timeout=180)
    restyled = [t for t in pay.restyles(run_id) if t["state"] not in ("skipped", "upstream_failed", None)]
    fig["rejected_submissions"] = pay.submitted_on(REJECTED_DAY)
    assert fig["rejected_submissions"] == 0
    assert not restyled, restyled


def test_an_approved_run_waits_then_renders(pay: PayOnceStack, fig: dict[str, Any]) -> None:
    run_id, detail = _approval(pay, "approved", fig)
    waited_for = pay.seconds_since("launch_approved")
    assert pay.submitted_on(APPROVED_DAY) == 0, "renders were submitted before the approval"
    assert str(RENDERS_PER_DAY) in (detail.get("body") or ""), detail.get("body")
    ti = detail["task_instance"]
    t0 = time.monotonic()
    pay.cluster.respond_hitl(DAG_ID, run_id, ti["task_id"], ["Approve"], ti["map_index"])
    # The force run shares the pool with this one (next test).
    pay.launch("forced")
    _wait_success(pay.cluster, DAG_ID, run_id, timeout=300)
    counts = {k: n for k, n in pay.submissions().items() if k[0] == APPROVED_DAY}
    fig.update(
        approved_submissions=sum(counts.values()),
        approved_waited_seconds=waited_for,
        approved_run_seconds=round(time.monotonic() - t0, 2),
    )
    assert sorted(counts.values()) == [1] * RENDERS_PER_DAY, counts


# ---------------------------------------------------------------------------------------------
# force_render: another take of every render
# ---------------------------------------------------------------------------------------------


def test_force_render_submits_every_render_again(pay: PayOnceStack, fig: dict[str, Any]) -> None:
    run_id = pay.launch("forced")
    _wait_success(pay.cluster, DAG_ID, run_id, timeout=300)
    counts = {k: n for k, n in pay.submissions().items() if k[0] == FORCED_DAY}
    results = pay.results(run_id)
    backfilled = pay.results(pay.backfill_runs()[FORCED_DAY])
    plan = pay.cluster.xcom(DAG_ID, run_id, "spend_plan")["totals"]
    stats = pay.emulator.stats(tasks=False)
    fig.update(
        force_submissions=sum(counts.values()) - len(STYLES) * len(CLIPS),
        force_seconds=pay.seconds_since("launch_forced"),
        peak_in_flight=stats["peak_in_flight"],
        total_submissions=stats["submissions"],
    )
    # One from the backfill, one forced take each.
    assert sorted(counts.values()) == [2] * RENDERS_PER_DAY, counts
    assert [r["decision"] for r in results.values()] == ["submit"] * RENDERS_PER_DAY
    assert plan["submit"] == RENDERS_PER_DAY, plan  # the plan counts forced takes as paid
    for index, result in results.items():
        # The new take replaced the stored one, and its sidecar says so.
        sidecar = json.loads(Path(f"{result['output_path'].removeprefix('file://')}.comet.json").read_text())
        assert sidecar["runway_task_id"] == result["task_id"] != backfilled[index]["task_id"]
    assert stats["peak_in_flight"] <= POOL_SLOTS, stats
