"""The DAG of the proxy and metrics scenarios (tests/integration/test_cluster_proxy_metrics.py).

A run's ``conf`` holds ``{"cases": [{operator kwargs}, ...]}``; ``restyle`` is mapped over them
with ``expand_kwargs``, one deferrable Runway render per case. Each case names its own
``comet_conn_id`` (plain http through the proxy, https through a CONNECT tunnel, a wrong CA
bundle), ``video``, ``prompt`` and ``output_path``.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from airflow.sdk import dag, task

from comet_provider.operators.runway import RunwayVideo2VideoOperator


@dag(
    dag_id="it_proxy_metrics",
    schedule=None,
    start_date=dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc),
    catchup=False,
    max_active_runs=8,
    params={"cases": []},
    tags=["integration", "comet"],
)
def it_proxy_metrics() -> None:
    @task(retries=0)
    def cases(**context: Any) -> list[dict[str, Any]]:
        return list(context["params"]["cases"])

    RunwayVideo2VideoOperator.partial(
        task_id="restyle", deferrable=True, poll_interval=1, timeout=300, retries=0
    ).expand_kwargs(cases())


it_proxy_metrics()
