"""The official route (model gen4_aleph, Runway's own format) through the same operator and sensor.

Scenarios run by tests/operators/test_operators_official.py: deferrable with a local source and
reference sent as data: URIs, sync with URLs and a seed, submit-only + a sensor on the official
route, a retry that resumes the same render, and a content-safety refusal.
"""

from __future__ import annotations

import sys
from datetime import timedelta
from pathlib import Path

from airflow.sdk import dag

sys.path.insert(0, str(Path(__file__).parent))
from _optest_env import OUT_DIR, REFERENCE_PATH, REFERENCE_URL, SAMPLE_PATH, START, VIDEO_URL

from comet_provider.operators.runway import RunwayVideo2VideoOperator
from comet_provider.sensors.runway import RunwayTaskSensor

ALEPH = {"model": "gen4_aleph", "poll_interval": 0.5, "timeout": 120}


@dag(dag_id="optest_official", schedule=None, start_date=START, catchup=False, tags=["optest"])
def optest_official() -> None:
    # Local files: the clip and the style image go to CometAPI as data: URIs.
    aleph_local = RunwayVideo2VideoOperator(
        task_id="aleph_local",
        video=SAMPLE_PATH,
        references=[REFERENCE_PATH],
        prompt="match the look of the reference",
        ratio="1280:720",
        deferrable=True,
        output_path=f"{OUT_DIR}/official/aleph_local.mp4",
        **ALEPH,
    )
    # URLs and a seed, waiting on the worker.
    aleph_sync = RunwayVideo2VideoOperator(
        task_id="aleph_sync",
        video=VIDEO_URL,
        references=REFERENCE_URL,
        prompt="seeded aleph take",
        seed=1234,
        content_moderation={"publicFigureThreshold": "low"},
        deferrable=False,
        output_path=f"{OUT_DIR}/official/aleph_sync.mp4",
        **ALEPH,
    )
    # Try 1 times out while Runway renders; try 2 resumes it on the official route.
    aleph_retry = RunwayVideo2VideoOperator(
        task_id="aleph_retry",
        video=VIDEO_URL,
        prompt="aleph resumed",
        deferrable=True,
        model="gen4_aleph",
        poll_interval=0.5,
        timeout=2,
        retries=1,
        retry_delay=timedelta(seconds=1),
    )
    aleph_safety = RunwayVideo2VideoOperator(
        task_id="aleph_safety",
        video=VIDEO_URL,
        prompt="forbidden aleph [fail:SAFETY.INPUT.TEXT]",
        deferrable=True,
        retries=2,
        retry_delay=timedelta(seconds=1),
        **ALEPH,
    )
    aleph_submit = RunwayVideo2VideoOperator(
        task_id="aleph_submit",
        video=VIDEO_URL,
        prompt="aleph for a sensor",
        model="gen4_aleph",
        wait_for_completion=False,
        trigger_rule="all_done",
    )
    aleph_sensor = RunwayTaskSensor(
        task_id="aleph_sensor",
        runway_task_id="{{ ti.xcom_pull(task_ids='aleph_submit')['runway_task_id'] }}",
        route="{{ ti.xcom_pull(task_ids='aleph_submit')['route'] }}",
        deferrable=True,
        poke_interval=0.5,
        timeout=120,
    )
    [aleph_local, aleph_sync, aleph_retry, aleph_safety] >> aleph_submit >> aleph_sensor


optest_official()
