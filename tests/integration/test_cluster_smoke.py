"""The cluster itself, independent of the provider: a task defers with Airflow's own trigger."""

from __future__ import annotations

from typing import Any

import pytest
from cluster import AirflowCluster

pytestmark = [pytest.mark.airflow_integration, pytest.mark.timeout(600)]


def test_builtin_trigger_defers_and_fires(cluster: AirflowCluster, figures: dict[str, Any]) -> None:
    cluster.wait_dag("it_smoke_defer")
    run_id = cluster.trigger("it_smoke_defer", {"count": 3, "wait_seconds": 25})
    cluster.wait_task_states(
        "it_smoke_defer",
        run_id,
        "wait",
        lambda states: len(states) == 3 and all(s in ("deferred", "success") for s in states),
        timeout=120,
        what="3 deferred sensors",
    )
    run = cluster.wait_run("it_smoke_defer", run_id, timeout=120)
    assert run["state"] == "success"
    tis = cluster.task_instances("it_smoke_defer", run_id, task_id="wait")
    assert sorted(t["state"] for t in tis) == ["success"] * 3
    log = cluster.task_log("it_smoke_defer", run_id, "wait", 1, 0)
    assert "trigger completed" in log or "Trigger fired event" in log
