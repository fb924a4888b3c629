"""Quick runs of every benchmark in benchmarks/: they run, and their last line is the JSON that
checks outside the project read (fixed keys, sane values). No timing assertions: the figures
themselves are only meaningful from a full run on a quiet machine (benchmarks/README.md); the
quick runs of triggerer_scale and download say whether theirs are comparable, and why not.

The four scripts start together (one fixture) so the suite takes about as long as the slowest.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.benchmark, pytest.mark.timeout(420)]

REPO = Path(__file__).resolve().parents[2]
BENCH = REPO / "benchmarks"
SCRIPTS = ("triggerer_scale", "download", "import_cost", "worker_slots")
TIMEOUT_S = 300

KEYS: dict[str, set[str]] = {
    "triggerer_scale": {
        "n",
        "cpu_per_poll_vs_http_sensor",
        "cpu_per_poll_vs_aiohttp_floor",
        "cpu_per_poll_vs_bare_httpx",
        "loop_lag_p99_s",
        "rss_per_trigger_vs_http_sensor",
        "detect_latency_p99_s",
    },
    "download": {"size_mib", "throughput_vs_curl", "rss_growth_mib"},
    "import_cost": {"import_time_vs_http_operator", "network_calls_at_import"},
    "worker_slots": {"render_s", "worker_s_deferrable", "worker_s_sync"},
}


class Run:
    def __init__(self, name: str, workdir: Path) -> None:
        self.name = name
        self.log = workdir / f"{name}.out"
        self.err = workdir / f"{name}.err"
        env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW_CONN_")}
        env["PYTHONUNBUFFERED"] = "1"
        with open(self.log, "w") as out, open(self.err, "w") as err:
            self.proc = subprocess.Popen(
                [sys.executable, str(BENCH / f"{name}.py"), "--quick"],
                cwd=REPO,
                stdout=out,
                stderr=err,
                env=env,
            )
        self.started = time.monotonic()

    def result(self) -> tuple[int, str]:
        try:
            code = self.proc.wait(timeout=max(1.0, TIMEOUT_S - (time.monotonic() - self.started)))
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            pytest.fail(f"{self.name} --quick ran over {TIMEOUT_S}s:\n{self.tail()}")
        return code, self.log.read_text()

    def tail(self) -> str:
        return f"--- stdout\n{self.log.read_text()[-3000:]}\n--- stderr\n{self.err.read_text()[-3000:]}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture(scope="module")
def runs() -> Iterator[dict[str, Run]]:
    workdir = Path(tempfile.mkdtemp(prefix="comet-bench-quick-"))
    started = {name: Run(name, workdir) for name in SCRIPTS}
    try:
        yield started
    finally:
        for run in started.values():
            run.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def figures_of(run: Run) -> dict[str, Any]:
    code, out = run.result()
    assert code == 0, f"{run.name} --quick exited {code}:\n{run.tail()}"
    lines = [line for line in out.splitlines() if line.strip()]
    assert lines, f"{run.name} printed nothing"
    try:
        figures = json.loads(lines[-1])
    except ValueError:
        pytest.fail(f"{run.name}: last line is not JSON: {lines[-1]!r}\n{run.tail()}")
    assert isinstance(figures, dict)
    missing = KEYS[run.name] - figures.keys()
    assert not missing, f"{run.name}: missing JSON keys {sorted(missing)}"
    return figures


def positive(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0


def verdict_is_consistent(f: dict[str, Any]) -> None:
    """A quick run says whether it stands for a full run; "no" always comes with its reasons."""
    assert f["quick"] is True
    assert isinstance(f["comparable_with_full"], bool)
    reasons = f["not_comparable_because"]
    assert isinstance(reasons, list) and all(isinstance(r, str) and r for r in reasons)
    assert f["comparable_with_full"] == (not reasons)


def test_triggerer_scale_quick(runs: dict[str, Run]) -> None:
    f = figures_of(runs["triggerer_scale"])
    assert isinstance(f["n"], int) and f["n"] > 0
    for key in (
        "cpu_per_poll_vs_http_sensor",
        "cpu_per_poll_vs_aiohttp_floor",
        "cpu_per_poll_vs_bare_httpx",
        "rss_per_trigger_vs_http_sensor",
    ):
        if key == "cpu_per_poll_vs_bare_httpx" and f[key] is None:
            # An informational peer that did not finish its window (seen once on a loaded CI run):
            # allowed only when the verdict says so.
            assert any("did not finish" in reason for reason in f["not_comparable_because"]), f
            continue
        assert positive(f[key]), (key, f[key])
        assert f[key] < 100, (key, f[key])
    assert positive(f["loop_lag_p99_s"]) and f["loop_lag_p99_s"] < 60
    # Renders finish during the window: the trigger saw them, within minutes at most.
    assert isinstance(f["detect_latency_p99_s"], (int, float)) and 0 <= f["detect_latency_p99_s"] < 300
    verdict_is_consistent(f)


def test_download_quick(runs: dict[str, Run]) -> None:
    f = figures_of(runs["download"])
    assert positive(f["size_mib"]) and f["size_mib"] <= 256
    assert positive(f["throughput_vs_curl"]) and f["throughput_vs_curl"] < 100
    assert isinstance(f["rss_growth_mib"], (int, float)) and 0 <= f["rss_growth_mib"] < 4096
    verdict_is_consistent(f)


def test_import_cost_quick(runs: dict[str, Run]) -> None:
    f = figures_of(runs["import_cost"])
    assert positive(f["import_time_vs_http_operator"]) and f["import_time_vs_http_operator"] < 100
    assert isinstance(f["network_calls_at_import"], int) and f["network_calls_at_import"] >= 0


def test_worker_slots_quick(runs: dict[str, Run]) -> None:
    f = figures_of(runs["worker_slots"])
    assert positive(f["render_s"])
    assert positive(f["worker_s_deferrable"]) and positive(f["worker_s_sync"])
    # Polling on the worker holds the slot for the whole render (sanity, not a timing target).
    assert f["worker_s_sync"] >= f["render_s"] * 0.5
