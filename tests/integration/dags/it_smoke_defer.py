"""Smoke DAG for the integration cluster: mapped tasks that defer with Airflow's own trigger.

conf: ``{"count": N, "wait_seconds": S}`` — N mapped ``DateTimeSensorAsync`` instances, each
waiting until S seconds after the upstream task ran (an absolute time, so a restarted
triggerer resumes the same deadline). S must exceed the time the sensors take to start and
defer by ~10 s: Airflow 3.3.2 fails a resumed task whose trigger fired before the scheduler saw
the LocalExecutor's event for the deferring run.
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
    params={"count": 2, "wait_seconds": 25},
    tags=["integration"],
)
def it_smoke_defer() -> None:
    @task
    def deadlines(**context: object) -> list[str]:
        params = context["params"]
        wait = dt.timedelta(seconds=float(params["wait_seconds"]))  # type: ignore[index]
        target = dt.datetime.now(dt.timezone.utc) + wait
        return [target.isoformat()] * int(params["count"])  # type: ignore[index]

    DateTimeSensorAsync.partial(task_id="wait").expand(target_time=deadlines())


it_smoke_defer()
