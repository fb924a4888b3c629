"""Smoke DAG for the integration cluster: mapped tasks that defer with Airflow's own trigger.

conf: ``{"count": N, "wait_seconds": S}`` — N mapped ``DateTimeSensorAsync`` instances, each
waiting until S seconds after the run was created (absolute, so a restarted triggerer
resumes the same deadline).
"""

from __future__ import annotations

import datetime as dt

from airflow.providers.standard.sensors.date_time import DateTimeSensorAsync
from airflow.sdk import dag, task


@dag(
    dag_id="it_smoke_defer",
    schedule=None,
    start_date=dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc),
    catchup=False,
    max_active_tasks=128,
    params={"count": 2, "wait_seconds": 5},
    tags=["integration"],
)
def it_smoke_defer() -> None:
    @task
    def deadlines(**context: object) -> list[str]:
        params = context["params"]
        run = context["dag_run"]
        base = run.run_after  # type: ignore[attr-defined]
        wait = dt.timedelta(seconds=float(params["wait_seconds"]))  # type: ignore[index]
        return [(base + wait).isoformat() for _ in range(int(params["count"]))]  # type: ignore[index]

    DateTimeSensorAsync.partial(task_id="wait").expand(target_time=deadlines())


it_smoke_defer()
