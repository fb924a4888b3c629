"""Renders that Runway fails (run by tests/operators/test_operators_dags.py)."""

from __future__ import annotations

import sys
from datetime import timedelta
from pathlib import Path

from airflow.sdk import dag

sys.path.insert(0, str(Path(__file__).parent))
from _optest_env import START, VIDEO_URL  # noqa: E402

from comet_provider.operators.runway import RunwayVideo2VideoOperator  # noqa: E402


@dag(dag_id="optest_failures", schedule=None, start_date=START, catchup=False, tags=["optest"])
def optest_failures() -> None:
    RunwayVideo2VideoOperator(
        task_id="fail_plain",
        video=VIDEO_URL,
        prompt="glitch art [fail]",
        deferrable=True,
        poll_interval=0.5,
        timeout=120,
    )
    RunwayVideo2VideoOperator(
        task_id="fail_safety",
        video=VIDEO_URL,
        prompt="forbidden style [fail:SAFETY.INPUT.TEXT]",
        deferrable=True,
        poll_interval=0.5,
        timeout=120,
        retries=2,
        retry_delay=timedelta(seconds=1),
    )
    RunwayVideo2VideoOperator(
        task_id="cancel_sync",
        video=VIDEO_URL,
        prompt="sepia film [cancel]",
        deferrable=False,
        poll_interval=0.5,
        timeout=120,
    )


optest_failures()
