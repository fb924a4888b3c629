"""The pay-once worker-kill scenario (tests/integration/test_pay_once.py).

One sync-mode restyle (it polls on the worker, so its process is alive while it waits),
``retries=1``: the test kills the task's process with SIGKILL while it polls, and the
retry must resume the render the first try submitted. conf: ``video``, ``prompt``,
``output_path``.
"""

from __future__ import annotations

import datetime as dt

from airflow.sdk import dag

from comet_provider.operators.runway import RunwayVideo2VideoOperator


@dag(
    dag_id="it_pay_once_worker_kill",
    schedule=None,
    start_date=dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc),
    catchup=False,
    params={"video": "", "prompt": "", "output_path": ""},
    tags=["integration", "comet"],
)
def it_pay_once_worker_kill() -> None:
    RunwayVideo2VideoOperator(
        task_id="restyle",
        video="{{ params.video }}",
        prompt="{{ params.prompt }}",
        output_path="{{ params.output_path }}",
        comet_conn_id="comet_pay_kill",
        deferrable=False,
        poll_interval=1,
        timeout=120,
        retries=1,
        retry_delay=dt.timedelta(seconds=2),
    )


it_pay_once_worker_kill()
