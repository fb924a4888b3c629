"""Operator and sensor scenarios run by tests/operators/test_operators_dags.py.

The tasks are independent scenarios grouped in one DAG, since each `airflow dags test` run costs
seconds of start-up; `airflow dags test` runs them one at a time. Runway fails the renders of
`fail_plain`, `fail_safety` and `cancel_sync` on purpose; every other task must succeed.
"""

from __future__ import annotations

import shutil
import sys
from datetime import timedelta
from pathlib import Path

from airflow.sdk import dag

sys.path.insert(0, str(Path(__file__).parent))
from _optest_env import LATE_VIDEO_PATH, LATE_VIDEO_URL, OUT_DIR, SAMPLE_PATH, START, VIDEO_URL

from comet_provider.operators.runway import RunwayVideo2VideoOperator
from comet_provider.sensors.runway import RunwayTaskSensor


def _stage_late_video(context: object) -> None:
    """on_retry_callback: the source clip appears only after try 1's render has failed."""
    shutil.copyfile(SAMPLE_PATH, LATE_VIDEO_PATH)


@dag(dag_id="optest_main", schedule=None, start_date=START, catchup=False, tags=["optest"])
def optest_main() -> None:
    # 1. Deferrable, stored to a local path and to a file:// URL.
    defer_local = RunwayVideo2VideoOperator(
        task_id="defer_local",
        video=VIDEO_URL,
        prompt="pencil sketch",
        deferrable=True,
        poll_interval=0.5,
        timeout=120,
        output_path=f"{OUT_DIR}/local/{{{{ ti.task_id }}}}.mp4",
    )
    defer_file_url = RunwayVideo2VideoOperator(
        task_id="defer_file_url",
        video=VIDEO_URL,
        prompt="watercolor painting",
        structure_transformation=0.4,
        deferrable=True,
        poll_interval=0.5,
        timeout=timedelta(minutes=2),
        output_path=f"file://{OUT_DIR}/file-url/render.mp4",
    )

    # 2. Sync (polls on the worker); mapped, to show the map index label.
    sync = RunwayVideo2VideoOperator.partial(
        task_id="sync",
        video=VIDEO_URL,
        deferrable=False,
        poll_interval=0.5,
        timeout=120,
        output_path=f"{OUT_DIR}/sync/{{{{ ti.map_index }}}}.mp4",
    ).expand(prompt=["oil painting, thick brush strokes"])

    # 5a. Try 1 times out while Runway still renders; try 2 resumes the same render.
    retry_resume = RunwayVideo2VideoOperator(
        task_id="retry_resume",
        video=VIDEO_URL,
        prompt="retro pixel art",
        deferrable=True,
        poll_interval=0.5,
        timeout=2,
        retries=1,
        retry_delay=timedelta(seconds=1),
    )

    # 5b. Try 1's render fails (its source is missing); try 2 submits afresh and succeeds.
    retry_after_failure = RunwayVideo2VideoOperator(
        task_id="retry_after_failure",
        video=LATE_VIDEO_URL,
        prompt="stained glass",
        deferrable=True,
        poll_interval=0.5,
        timeout=120,
        retries=1,
        retry_delay=timedelta(seconds=1),
        on_retry_callback=_stage_late_video,
    )

    # 4. Runway fails the render: plain failure (deferrable), content-safety refusal (no retry
    # although retries=2), cancellation (sync).
    fail_plain = RunwayVideo2VideoOperator(
        task_id="fail_plain",
        video=VIDEO_URL,
        prompt="glitch art [fail]",
        deferrable=True,
        poll_interval=0.5,
        timeout=120,
    )
    fail_safety = RunwayVideo2VideoOperator(
        task_id="fail_safety",
        video=VIDEO_URL,
        prompt="forbidden style [fail:SAFETY.INPUT.TEXT]",
        deferrable=True,
        poll_interval=0.5,
        timeout=120,
        retries=2,
        retry_delay=timedelta(seconds=1),
    )
    cancel_sync = RunwayVideo2VideoOperator(
        task_id="cancel_sync",
        video=VIDEO_URL,
        prompt="sepia film [cancel]",
        deferrable=False,
        poll_interval=0.5,
        timeout=120,
    )

    # 3. Submit only, then a sensor waits: in poke mode, deferrable, and in reschedule mode, each on
    # a fresh render.
    # `airflow dags test` runs every schedulable task before looking again, so this chain starts
    # only when all the tasks above have finished (all_done): nothing then runs between a
    # submission and its sensor, and each sensor really waits on a render in progress.
    submit_poke = RunwayVideo2VideoOperator(
        task_id="submit_for_poke",
        video=VIDEO_URL,
        prompt="neon glow",
        wait_for_completion=False,
        trigger_rule="all_done",
    )
    sensor_poke = RunwayTaskSensor(
        task_id="sensor_poke",
        runway_task_id="{{ ti.xcom_pull(task_ids='submit_for_poke')['task_id'] }}",
        deferrable=False,
        mode="poke",
        poke_interval=0.5,
        timeout=120,
    )
    submit_defer = RunwayVideo2VideoOperator(
        task_id="submit_for_defer",
        video=VIDEO_URL,
        prompt="charcoal drawing",
        wait_for_completion=False,
    )
    sensor_defer = RunwayTaskSensor(
        task_id="sensor_defer",
        runway_task_id="{{ ti.xcom_pull(task_ids='submit_for_defer', key='runway_task_id') }}",
        deferrable=True,
        poke_interval=0.5,
        timeout=120,
    )
    submit_reschedule = RunwayVideo2VideoOperator(
        task_id="submit_for_reschedule",
        video=VIDEO_URL,
        prompt="comic book inks",
        wait_for_completion=False,
    )
    sensor_reschedule = RunwayTaskSensor(
        task_id="sensor_reschedule",
        runway_task_id="{{ ti.xcom_pull(task_ids='submit_for_reschedule')['task_id'] }}",
        deferrable=False,
        mode="reschedule",
        poke_interval=1,
        timeout=120,
    )
    submit_poke >> sensor_poke >> submit_defer >> sensor_defer >> submit_reschedule >> sensor_reschedule
    [
        defer_local,
        defer_file_url,
        sync,
        retry_resume,
        retry_after_failure,
        fail_plain,
        fail_safety,
        cancel_sync,
    ] >> submit_poke


optest_main()
