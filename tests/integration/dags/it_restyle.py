"""DAGs of the integration scenarios (tests/integration/test_scenarios.py).

One DAG per scenario, each with its own ``comet`` connection (``comet_s1`` ... pointing at
its own emulator, so each scenario's request counters are its own). A run's ``conf`` holds
``{"cases": [{operator kwargs}, ...]}``; the ``restyle`` task is mapped over them with
``expand_kwargs``, one Runway render per case.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from airflow.sdk import dag, task

from comet_provider.operators.runway import RunwayVideo2VideoOperator

# dag_id -> the operator arguments every mapped instance shares.
SCENARIOS: dict[str, dict[str, Any]] = {
    # 1. deferral frees the worker
    "it_s1_deferral": {"comet_conn_id": "comet_s1", "poll_interval": 1, "timeout": 300, "retries": 0},
    # 2. triggerer killed and restarted while 20+ tasks are deferred
    "it_s2_restart": {"comet_conn_id": "comet_s2", "poll_interval": 2, "timeout": 600, "retries": 0},
    # 3. two triggerers, one killed
    "it_s3_ha": {"comet_conn_id": "comet_s3", "poll_interval": 2, "timeout": 600, "retries": 0},
    # 4. the first try times out waiting (25 s of a 45 s render), the retry resumes the same render
    "it_s4_retry": {
        "comet_conn_id": "comet_s4",
        "poll_interval": 1,
        "timeout": 25,
        "retries": 1,
        "retry_delay": dt.timedelta(seconds=1),
    },
    # 5. fault storm on the emulator
    "it_s5_faults": {"comet_conn_id": "comet_s5", "poll_interval": 1, "timeout": 600, "retries": 0},
    # 8. invalid parameters: every case carries all its arguments, nothing is shared
    "it_s8_bad_input": {"comet_conn_id": "comet_s8", "retries": 0},
}


def build(dag_id: str, shared: dict[str, Any]) -> Any:
    @dag(
        dag_id=dag_id,
        schedule=None,
        start_date=dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc),
        catchup=False,
        max_active_tasks=128,
        max_active_runs=8,
        params={"cases": []},
        tags=["integration", "comet"],
    )
    def scenario() -> None:
        @task(retries=0)
        def cases(**context: Any) -> list[dict[str, Any]]:
            return list(context["params"]["cases"])

        RunwayVideo2VideoOperator.partial(task_id="restyle", deferrable=True, **shared).expand_kwargs(cases())

    return scenario()


for _dag_id, _shared in SCENARIOS.items():
    globals()[_dag_id] = build(_dag_id, _shared)
