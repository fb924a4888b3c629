"""Session fixtures of the Airflow integration suite (``pytest -m airflow_integration``).

One cluster per session: PostgreSQL, API server, scheduler (LocalExecutor), DAG processor,
triggerer, and one CometAPI emulator per scenario. Component logs: build/integration-logs/.
Figures: build/integration-figures.json.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.append(str(Path(__file__).resolve().parents[2]))  # comet_provider, even when not installed

from cluster import AirflowCluster
from scenarios import Runs
from stack import BUILD_DIR, Stack, ensure_system_deps, reset_logs_dir

FIGURES_PATH = BUILD_DIR / "integration-figures.json"
FIGURES: dict[str, Any] = {}
_HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if _HERE in Path(str(item.path)).resolve().parents:
            item.add_marker(pytest.mark.airflow_integration)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if _HERE not in Path(report.fspath).resolve().parents or not FIGURES:
        return
    durations = FIGURES.setdefault("test_seconds", {})
    name = report.nodeid.split("::")[-1]
    entry = durations.setdefault(name, {})
    entry[report.when] = round(report.duration, 2)
    if report.when == "call":
        entry["outcome"] = report.outcome


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if not FIGURES:
        return
    FIGURES_PATH.parent.mkdir(parents=True, exist_ok=True)
    FIGURES_PATH.write_text(json.dumps(FIGURES, indent=2, sort_keys=True, default=str) + "\n")


@pytest.fixture(scope="session")
def figures() -> dict[str, Any]:
    """The session's figures; written to build/integration-figures.json at the end."""
    FIGURES.setdefault("generated_at", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    return FIGURES


@pytest.fixture(scope="session")
def stack(figures: dict[str, Any]) -> Iterator[Stack]:
    if not sys.platform.startswith("linux"):
        pytest.skip("the Airflow integration suite needs Linux (PostgreSQL, Chromium from Debian)")
    ensure_system_deps()
    reaped = AirflowCluster.reap_stale()
    if reaped:
        figures["reaped_stale_clusters"] = reaped
    reset_logs_dir()
    started = Stack()
    started.start()
    figures["cluster_start_seconds"] = {k: round(v, 2) for k, v in started.timings.items()}
    try:
        yield started
    finally:
        t0 = time.monotonic()
        started.close()
        figures["cluster_stop_seconds"] = round(time.monotonic() - t0, 2)
        leftovers = started.leftovers()
        figures["leftovers_after_teardown"] = leftovers
        assert not leftovers, f"processes or ports left behind: {leftovers}"


@pytest.fixture(scope="session")
def cluster(stack: Stack) -> AirflowCluster:
    assert stack.cluster is not None
    return stack.cluster


@pytest.fixture(scope="session")
def runs(stack: Stack) -> Runs:
    return Runs(stack)
