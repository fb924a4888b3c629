"""Worker time per restyle: deferrable vs polling on the worker, under ``airflow dags test``.

A one-task DAG (``RunwayVideo2VideoOperator``) runs twice against the emulator (render time
``--render-s``): once ``deferrable=True``, once ``deferrable=False``. ``airflow dags test``
runs every worker stint of the task in-process through
``airflow.sdk.execution_time.supervisor.run_task_in_process`` and a deferred task's trigger
inline through ``airflow.sdk.definitions.dag._run_inline_trigger``; a thin wrapper around the
real ``airflow`` CLI times each call of those two. Worker time = the sum of the worker stints
(deferrable: submit -> defer, then resume -> finish; sync: the whole wait), which is what holds
a worker slot on a real deployment.

The scratch AIRFLOW_HOME (SQLite) is migrated once and reused between runs
(``--home``; default in the temp dir).

Usage: python benchmarks/worker_slots.py [--quick] [--render-s S]
The last line printed is JSON: render_s, worker_s_deferrable, worker_s_sync, ...
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C

DAG_ID = "comet_bench_worker_slots"
DAG_FILE = f'''"""Benchmark DAG written by benchmarks/worker_slots.py (one restyle)."""
import os
from datetime import datetime

from airflow.sdk import DAG

from comet_provider.operators.runway import RunwayVideo2VideoOperator

with DAG("{DAG_ID}", schedule=None, start_date=datetime(2024, 1, 1), catchup=False, tags=["benchmark"]):
    RunwayVideo2VideoOperator(
        task_id="restyle",
        video=os.environ["COMET_BENCH_VIDEO"],
        prompt="benchmark: pixelated style",
        deferrable=os.environ["COMET_BENCH_DEFERRABLE"] == "1",
        poll_interval=float(os.environ["COMET_BENCH_POLL"]),
        timeout=float(os.environ["COMET_BENCH_TIMEOUT"]),
        retries=0,
    )
'''


def _dags_test_child(out_path: str) -> None:
    """Run the real ``airflow dags test`` with the task's worker stints and inline trigger timed.

    Timed per stint: ``task_runner.run`` + ``task_runner.finalize`` (the task's own work on the
    worker: execute or execute_complete, templating, XComs, deferral, state), the operator's
    ``execute``/``execute_complete`` alone, and ``run_task_in_process`` as a whole (which also
    holds ``dags test``'s in-process API bootstrap: a harness cost, not the task's).
    """
    import airflow.sdk.definitions.dag as dag_mod
    import airflow.sdk.execution_time.supervisor as supervisor
    import airflow.sdk.execution_time.task_runner as task_runner

    from comet_provider.operators.runway import RunwayVideo2VideoOperator as Op

    records: list[dict[str, Any]] = []

    def timed(kind: str, fn: Any) -> Any:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            t0 = time.time()
            result: Any = None
            try:
                result = fn(*args, **kwargs)
                return result
            finally:
                rec: dict[str, Any] = {"kind": kind, "start": t0, "end": time.time()}
                if kind == "stint":
                    rec["state"] = str(getattr(getattr(result, "ti", None), "state", None))
                if kind == "trigger":
                    payload = getattr(result, "payload", None)
                    rec["status"] = payload.get("status") if isinstance(payload, dict) else None
                records.append(rec)

        return wrapper

    supervisor.run_task_in_process = timed("stint", supervisor.run_task_in_process)
    dag_mod._run_inline_trigger = timed("trigger", dag_mod._run_inline_trigger)
    task_runner.run = timed("run", task_runner.run)
    task_runner.finalize = timed("finalize", task_runner.finalize)
    Op.execute = timed("execute", Op.execute)  # type: ignore[method-assign]
    Op.execute_complete = timed("execute_complete", Op.execute_complete)  # type: ignore[method-assign]
    from airflow.__main__ import main

    sys.argv = ["airflow", "dags", "test", DAG_ID]
    code: Any = 0
    try:
        main()
    except SystemExit as exc:
        code = exc.code
    finally:
        Path(out_path).write_text(json.dumps({"records": records, "exit": code}))


def _ensure_home(home: Path, env: dict[str, str]) -> None:
    marker = home / ".comet-bench-migrated"
    (home / "dags").mkdir(parents=True, exist_ok=True)
    (home / "dags" / "comet_bench_worker_slots.py").write_text(DAG_FILE)
    if marker.exists():
        return
    t0 = time.time()
    out = subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"], env=env, capture_output=True, text=True, check=False
    )
    if out.returncode != 0:
        raise RuntimeError(f"airflow db migrate failed:\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}")
    marker.write_text(f"migrated in {time.time() - t0:.1f}s\n")
    print(f"migrated {home} in {time.time() - t0:.1f}s")


def run_mode(deferrable: bool, env: dict[str, str], home: Path) -> dict[str, Any]:
    out_path = home / f"timings-{'deferrable' if deferrable else 'sync'}.json"
    out_path.unlink(missing_ok=True)
    log_path = home / f"dags-test-{'deferrable' if deferrable else 'sync'}.log"
    run_env = {**env, "COMET_BENCH_DEFERRABLE": "1" if deferrable else "0"}
    t0 = time.time()
    with open(log_path, "w") as log:
        proc = subprocess.run(
            [sys.executable, __file__, "--_dags-test", str(out_path)],
            env=run_env,
            stdout=log,
            stderr=subprocess.STDOUT,
            timeout=900,
            check=False,
        )
    wall = time.time() - t0
    if not out_path.exists():
        raise RuntimeError(f"dags test wrote no timings (exit {proc.returncode}):\n{log_path.read_text()[-3000:]}")
    data = json.loads(out_path.read_text())

    def spans(kind: str) -> list[float]:
        return [r["end"] - r["start"] for r in data["records"] if r["kind"] == kind]

    stints = [r for r in data["records"] if r["kind"] == "stint"]
    final = stints[-1]["state"] if stints else None
    if proc.returncode != 0 or not final or "success" not in final.lower():
        raise RuntimeError(
            f"dags test ({'deferrable' if deferrable else 'sync'}) did not succeed "
            f"(exit {proc.returncode}, final state {final}):\n{log_path.read_text()[-3000:]}"
        )
    worker = [a + b for a, b in zip(spans("run"), spans("finalize"), strict=False)]
    return {
        "worker_s": sum(worker),
        "worker_stints": [round(x, 3) for x in worker],
        "operator_s": sum(spans("execute")) + sum(spans("execute_complete")),
        "stints_incl_harness_s": sum(spans("stint")),
        "trigger_s": sum(spans("trigger")),
        "trigger_status": [r.get("status") for r in data["records"] if r["kind"] == "trigger"],
        "task_span_s": (stints[-1]["end"] - stints[0]["start"]) if stints else None,
        "dags_test_wall_s": wall,
        "final_state": final,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="5 s renders")
    parser.add_argument("--render-s", type=float, default=None, help="render time (default 30; quick 5)")
    parser.add_argument("--poll", type=float, default=None, help="poll interval (default render/15, >= 1 s)")
    parser.add_argument("--home", default=None, help="scratch AIRFLOW_HOME, migrated once and reused")
    parser.add_argument("--_dags-test", dest="dags_test", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.dags_test:
        _dags_test_child(args.dags_test)
        return
    render_s = args.render_s or (5.0 if args.quick else 30.0)
    poll = args.poll or max(1.0, render_s / 15)
    import airflow

    home = Path(args.home or Path(tempfile.gettempdir()) / f"comet-bench-airflow-{airflow.__version__}-{os.getuid()}")
    with C.Server(render_seconds=render_s) as server:
        env = C.scratch_airflow_env(
            home,
            {
                **C.comet_conn_env(server.url),
                "AIRFLOW__CORE__DAGS_FOLDER": str(home / "dags"),
                "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
                "COMET_BENCH_VIDEO": f"{server.url}/media/source.mp4",
                "COMET_BENCH_POLL": str(poll),
                "COMET_BENCH_TIMEOUT": str(render_s * 4 + 120),
            },
        )
        _ensure_home(home, env)
        deferrable = run_mode(True, env, home)
        sync = run_mode(False, env, home)
        submissions = server.stats().get("submissions")

    print(f"Worker time per restyle, render {render_s:g} s, poll every {poll:g} s ({server.kind}, dags test)")
    print(f"machine: {json.dumps(C.machine_info())}")
    C.print_table(
        ["mode", "worker s", "stints s", "operator s", "trigger s", "stints incl. harness s", "dags test wall s"],
        [
            [
                name,
                r["worker_s"],
                " + ".join(f"{s:.2f}" for s in r["worker_stints"]),
                r["operator_s"],
                r["trigger_s"] or None,
                r["stints_incl_harness_s"],
                r["dags_test_wall_s"],
            ]
            for name, r in (("deferrable", deferrable), ("sync", sync))
        ],
    )
    print(
        "worker s = task_runner.run + finalize per stint (what holds a worker slot, less process start); "
        "'incl. harness' adds dags test's in-process API bootstrap"
    )
    figures = {
        "render_s": render_s,
        "worker_s_deferrable": round(deferrable["worker_s"], 3),
        "worker_s_sync": round(sync["worker_s"], 3),
        "worker_share_deferrable": round(deferrable["worker_s"] / sync["worker_s"], 3) if sync["worker_s"] else None,
        "trigger_s_deferrable": round(deferrable["trigger_s"], 3),
        "worker_stints_deferrable": deferrable["worker_stints"],
        "poll_s": poll,
        "submissions": submissions,
        "quick": bool(args.quick),
        "loadavg_1m": C.machine_info().get("loadavg_1m"),
    }
    if not args.quick:
        (C.HERE / "results").mkdir(exist_ok=True)
        (C.HERE / "results" / "worker_slots.json").write_text(
            json.dumps(
                {"machine": C.machine_info(), "figures": figures, "deferrable": deferrable, "sync": sync}, indent=1
            )
        )
    C.emit_json(figures)


if __name__ == "__main__":
    main()
