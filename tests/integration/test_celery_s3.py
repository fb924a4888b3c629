"""Issue 12: the production shape, CeleryExecutor on Redis with renders in S3-compatible storage.

A cluster of this module's own (``celery_stack.py``): Redis broker, PostgreSQL result
backend, two Celery workers, two triggerers, moto's S3 server on loopback. The example
pipeline runs for 2 days with ``storage_root`` in the bucket; one triggerer is killed while
both hold its deferred renders; then a Celery worker is killed while it uploads a 120 MiB
render. A watcher lists the bucket all along: no partial object may ever be listed.
The tests run in file order (the first launches the pipeline runs the second checks).
Figures: ``build/integration-figures.json`` under ``celery_s3``, and printed as
``CELERY-S3 FIGURE: name = value`` (``pytest -s`` shows them).
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest
from celery_stack import (
    BIG_RENDER_BYTES,
    BUCKET,
    CLIPS,
    DAG_ID,
    DAYS,
    KILL_DAG_ID,
    KILL_KEY,
    KILL_PROMPT,
    KILL_RENDER_SECONDS,
    LOGS_DIR,
    RENDERS_PER_DAY,
    ROOT_PREFIX,
    S3_CONN_ID,
    STYLES,
    TRIGGERER_CAPACITY,
    VIDEO_ID,
    WORKERS,
    CeleryStack,
)
from cluster import AirflowCluster
from loopback_s3 import sha256_file, temp_target
from stack import INSTALL_SCRIPT
from waiting import wait_for

pytestmark = [pytest.mark.airflow_integration, pytest.mark.timeout(600)]

PREFIX = "CELERY-S3 FIGURE:"
ALL_KEYS = {(day, clip, style) for day in DAYS for clip in CLIPS for style in STYLES}


def report(fig: dict[str, Any], **values: Any) -> None:
    """Record figures for build/integration-figures.json and print them under one prefix."""
    fig.update(values)
    for name, value in values.items():
        print(f"{PREFIX} {name} = {json.dumps(value, default=str)}")


@pytest.fixture(scope="module")
def celery(figures: dict[str, Any]) -> Iterator[CeleryStack]:
    if not sys.platform.startswith("linux"):
        pytest.skip("the Airflow integration suite needs Linux (PostgreSQL, Redis from Debian)")
    if not shutil.which("redis-server"):
        subprocess.run(["bash", str(INSTALL_SCRIPT)], check=True, timeout=900)
    AirflowCluster.reap_stale()
    shutil.rmtree(LOGS_DIR, ignore_errors=True)
    LOGS_DIR.mkdir(parents=True)
    fig = figures["celery_s3"] = {}
    started = CeleryStack()
    try:
        started.start()
        report(fig, start_seconds={k: round(v, 2) for k, v in started.timings.items()})
        yield started
    finally:
        t0 = time.monotonic()
        started.close()
        if started.watcher is not None:
            fig["bucket_listings"] = started.watcher.listings
        fig["stop_seconds"] = round(time.monotonic() - t0, 2)
        fig["total_seconds"] = started.seconds_since("start")
        leftovers = started.leftovers()
        fig["leftovers_after_teardown"] = leftovers
        assert not leftovers, f"processes or ports left behind: {leftovers}"


@pytest.fixture
def fig(figures: dict[str, Any], celery: CeleryStack) -> dict[str, Any]:
    figures_of_module: dict[str, Any] = figures["celery_s3"]
    return figures_of_module


def _restyle_states(celery: CeleryStack) -> list[tuple[str, int, str | None]]:
    return [(day, t["map_index"], t["state"]) for day, run_id in celery.runs.items() for t in celery.restyles(run_id)]


def _held_by(celery: CeleryStack) -> dict[str, int | None]:
    """Deferred restyle task instance id -> the triggerer job holding its trigger."""
    assert celery.cluster is not None
    rows = celery.cluster.sql(
        "SELECT ti.id::text, t.triggerer_id FROM task_instance ti JOIN trigger t ON ti.trigger_id = t.id "
        "WHERE ti.dag_id = %s AND ti.run_id = ANY(%s) AND ti.task_id = 'restyle' AND ti.state = 'deferred'",
        (DAG_ID, list(celery.runs.values())),
    )
    return {str(i): (None if j is None else int(j)) for i, j in rows}


# ---------------------------------------------------------------------------------------------
# Two triggerers hold the pipeline's deferred renders; one is killed
# ---------------------------------------------------------------------------------------------


def test_triggerer_killed_while_both_hold_deferred_renders(celery: CeleryStack, fig: dict[str, Any]) -> None:
    cluster = celery.cluster
    assert cluster is not None
    triggerers = {c.job_id: c for c in cluster.components.values() if c.kind == "triggerer"}
    assert len(triggerers) == 2 and None not in triggerers, triggerers
    celery.launch_days()
    total = len(ALL_KEYS)

    both_since: list[float] = []

    def both_hold() -> dict[str, int | None] | None:
        held = _held_by(celery)
        if len({j for j in held.values() if j is not None}) < 2:
            return None
        both_since[:] = both_since or [time.monotonic()]
        # Every render deferred (capacity makes both hold some), or the runs out of step: kill now.
        return held if len(held) == total or time.monotonic() - both_since[0] >= 5 else None

    held = wait_for(
        both_hold,
        timeout=240,
        interval=0.25,
        what="both triggerers to hold deferred restyles",
        on_timeout=lambda: f"owners {celery.trigger_owners()}, restyles {_restyle_states(celery)}",
    )
    per_job = {j: sum(1 for o in held.values() if o == j) for j in triggerers}
    victim_job = max(per_job, key=lambda j: per_job[j])
    (survivor_job,) = [j for j in triggerers if j != victim_job]
    victims = {ti for ti, job in held.items() if job == victim_job}
    t_kill = time.monotonic()
    cluster.kill(triggerers[victim_job].name)

    first_moved: list[float] = []

    def taken_over() -> bool:
        now = _held_by(celery)
        moved = [ti for ti in victims if now.get(ti) != victim_job]
        if moved and not first_moved:
            first_moved.append(time.monotonic())
        return len(moved) == len(victims)

    wait_for(taken_over, timeout=180, interval=0.25, what="the other triggerer to take over every trigger")
    t_takeover = time.monotonic()
    for run_id in celery.runs.values():
        cluster.wait_task_states(
            DAG_ID,
            run_id,
            "restyle",
            lambda states: len(states) == RENDERS_PER_DAY and set(states) <= {"success", "failed", "up_for_retry"},
            timeout=240,
            what="every restyle done",
        )
    t_done = time.monotonic()
    tis = [t for run_id in celery.runs.values() for t in celery.restyles(run_id)]
    counts = celery.submissions()
    report(
        fig,
        triggerer_capacity=TRIGGERER_CAPACITY,
        deferred_at_kill=len(held),
        held_per_triggerer_at_kill={str(j): n for j, n in per_job.items()},
        killed_triggerer_held=len(victims),
        takeover_first_seconds=round(first_moved[0] - t_kill, 2),
        takeover_all_seconds=round(t_takeover - t_kill, 2),
        triggerer_kill_to_all_restyled_seconds=round(t_done - t_kill, 2),
        pipeline_submissions=sum(counts.values()),
    )
    assert min(per_job.values()) >= 1, per_job
    assert sorted((t["state"], t["try_number"]) for t in tis) == [("success", 1)] * total, [
        (t["map_index"], t["state"], t["try_number"]) for t in tis
    ]
    assert set(counts) == ALL_KEYS and set(counts.values()) == {1}, f"renders paid more than once: {counts}"
    assert survivor_job in cluster.alive_jobs("triggerer")


# ---------------------------------------------------------------------------------------------
# Every render of the 2 days in the bucket, byte for byte what the API rendered, paid once
# ---------------------------------------------------------------------------------------------


def test_the_pipeline_stores_every_render_in_the_bucket_once(celery: CeleryStack, fig: dict[str, Any]) -> None:
    cluster = celery.cluster
    assert cluster is not None and celery.watcher is not None
    runs = celery.launch_days()
    for run_id in runs.values():
        run = cluster.wait_run(DAG_ID, run_id, timeout=300)
        assert run["state"] == "success", sorted(
            (t["task_id"], t["map_index"], t["state"]) for t in cluster.task_instances(DAG_ID, run_id)
        )
    pipeline_seconds = celery.seconds_since("launch")
    objects = celery.objects(f"{ROOT_PREFIX}/")
    tasks = celery.emulator.stats()["tasks"]
    checked_bytes = 0
    for day, clip, style in sorted(ALL_KEYS):
        key = celery.render_key(day, clip, style)
        assert key in objects, f"{key} not in the bucket: {sorted(objects)}"
        sidecar = json.loads(celery.s3.get_object(Bucket=BUCKET, Key=f"{key}.comet.json")["Body"].read())
        rendered = celery.emulator_render(sidecar["runway_task_id"])
        digest, size = celery.object_sha256(key)
        assert size == objects[key] == sidecar["size_bytes"] == rendered.stat().st_size, (key, size, sidecar)
        assert digest == sha256_file(rendered), f"{key} differs from the emulator's render"
        assert tasks[sidecar["runway_task_id"]]["downloads"] == 1, tasks[sidecar["runway_task_id"]]
        checked_bytes += size
    counts = celery.submissions()
    manifests = {
        day: json.loads(
            celery.s3.get_object(Bucket=BUCKET, Key=f"{ROOT_PREFIX}/published/{day}/manifest.json")["Body"].read()
        )
        for day in DAYS
    }
    published = [f"{ROOT_PREFIX}/published/{d}/{VIDEO_ID}/{s}.mp4" for d in DAYS for s in STYLES]
    left_temp = sorted(k for k in objects if temp_target(k))
    seen_temp = celery.watcher.temp_objects(f"{ROOT_PREFIX}/")
    partial = celery.watcher.partial_objects(objects, f"{ROOT_PREFIX}/")
    report(
        fig,
        pipeline_days=len(runs),
        pipeline_renders=len(ALL_KEYS),
        pipeline_submissions_per_render=sorted(set(counts.values())),
        pipeline_render_bytes_checked=checked_bytes,
        pipeline_seconds=pipeline_seconds,
        pipeline_bucket_objects=len(objects),
        pipeline_temp_objects_listed=seen_temp,
        pipeline_partial_objects_listed=partial,
        pipeline_notifications=len(celery.emulator.inbox("notify")),
    )
    assert set(counts) == ALL_KEYS and set(counts.values()) == {1}, counts
    assert [m["renders"]["submit"] for m in manifests.values()] == [RENDERS_PER_DAY] * len(DAYS), manifests
    assert all(k in objects and objects[k] > 0 for k in published), sorted(objects)
    assert not left_temp, f"temporary objects left in the bucket: {left_temp}"
    # S3 stores go in place: not even a complete temporary copy is ever listed (S3 has no rename).
    assert not seen_temp, f"temporary objects were listed during the stores: {seen_temp}"
    assert not partial, f"partial objects were visible in the bucket: {partial}"


# ---------------------------------------------------------------------------------------------
# A Celery worker killed while it uploads a render
# ---------------------------------------------------------------------------------------------


def test_worker_killed_while_storing_a_render(celery: CeleryStack, fig: dict[str, Any]) -> None:
    cluster, emu, watcher = celery.cluster, celery.emulator, celery.watcher
    assert cluster is not None and watcher is not None
    emu.configure(render_seconds=KILL_RENDER_SECONDS)
    output = f"s3://{S3_CONN_ID}@{BUCKET}/{KILL_KEY}"
    conf = {"video": emu.media_url("kill/big.mp4"), "prompt": KILL_PROMPT, "output_path": output}
    run_id = cluster.trigger(KILL_DAG_ID, conf, run_id=f"it_celery_kill_{int(time.time() * 1000)}")

    def storing() -> dict[str, Any] | None:
        """The render's multipart upload, once open (its first part on the wire): S3 stores are
        uploaded in place (listed only once complete); a temporary sibling's upload counts too."""
        return next((u for u in celery.open_uploads("kill/") if KILL_KEY in (u["Key"], temp_target(u["Key"]))), None)

    upload = wait_for(storing, timeout=240, interval=0.05, what="the render's upload to open")
    (ti,) = cluster.task_instances(KILL_DAG_ID, run_id, task_id="restyle")
    worker = wait_for(lambda: celery.worker_running(ti["id"]), timeout=10, interval=0.05, what="the task's worker")
    t_kill, killed_at = time.monotonic(), dt.datetime.now(dt.timezone.utc)
    cluster.kill(worker)
    at_kill = celery.objects("kill/")
    uploaded_at_kill = sum(int(p["Size"]) for p in celery.upload_parts(upload))

    run = cluster.wait_run(KILL_DAG_ID, run_id, timeout=240)
    t_done = time.monotonic()
    (ti,) = cluster.task_instances(KILL_DAG_ID, run_id, task_id="restyle")
    submitted = [i for i, t in emu.stats()["tasks"].items() if t["prompt"] == KILL_PROMPT]
    result = cluster.xcom(KILL_DAG_ID, run_id, "restyle")
    retry_log = cluster.task_log(KILL_DAG_ID, run_id, "restyle", 2) if ti["try_number"] >= 2 else ""
    final = celery.objects("kill/")
    digest, size = celery.object_sha256(KILL_KEY) if KILL_KEY in final else ("", 0)
    sidecar = json.loads(celery.s3.get_object(Bucket=BUCKET, Key=f"{KILL_KEY}.comet.json")["Body"].read())
    retry_started = dt.datetime.fromisoformat(ti["start_date"]) if ti.get("start_date") else None
    orphans = celery.open_uploads("kill/")
    report(
        fig,
        worker_killed=worker,
        worker_kill_render_bytes=BIG_RENDER_BYTES,
        worker_kill_bytes_uploaded_at_kill=uploaded_at_kill,
        worker_kill_objects_at_kill=at_kill,
        worker_kill_try_number=ti["try_number"],
        worker_kill_submissions=len(submitted),
        worker_kill_downloads=emu.stats()["tasks"][submitted[0]]["downloads"] if submitted else None,
        worker_kill_retry_start_seconds=round((retry_started - killed_at).total_seconds(), 2)
        if retry_started
        else None,
        worker_kill_retry_seconds=round(t_done - t_kill, 2),
        worker_kill_temp_objects_listed=watcher.temp_objects("kill/"),
        worker_kill_partial_objects_listed=watcher.partial_objects(final, "kill/"),
        worker_kill_open_uploads_after=[
            {
                "key": u["Key"],
                "upload_id": u["UploadId"],
                "parts_bytes": sum(int(p["Size"]) for p in celery.upload_parts(u)),
            }
            for u in orphans
        ],
    )
    # The killed try's upload was never completed (the kill came mid-upload), and the retry's
    # store of the same key aborted it: nothing is left open (S3 bills open uploads).
    assert KILL_KEY not in at_kill, at_kill
    assert orphans == [], f"uploads left open in the bucket: {orphans}"
    assert uploaded_at_kill < BIG_RENDER_BYTES
    assert run["state"] == "success" and ti["state"] == "success" and ti["try_number"] == 2, (run["state"], ti)
    assert len(submitted) == 1, f"the retry submitted again: {submitted}"
    assert result["decision"] == "resume" and result["task_id"] == submitted[0], result
    assert f"Runway task {submitted[0]}" in retry_log and "Resuming" in retry_log
    assert size == BIG_RENDER_BYTES == sidecar["size_bytes"] and digest == sha256_file(
        celery.emulator_render(submitted[0])
    )
    assert sorted(final) == [KILL_KEY, f"{KILL_KEY}.comet.json"], f"left in the bucket: {sorted(final)}"
    assert not fig["worker_kill_partial_objects_listed"], "partial objects were visible in the bucket"
    assert not fig["worker_kill_temp_objects_listed"], "temporary objects were listed during the stores"
    (other,) = [w for w in WORKERS if w != worker]
    assert cluster.components[other].alive(), f"{other}, which ran the retry, is gone"
