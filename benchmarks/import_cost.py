"""What importing the provider costs a DAG file, next to Airflow's HTTP provider.

In fresh interpreters (``--repeat`` times each, median): ``import airflow.sdk`` first (every DAG
file pays that anyway), then time the target import and count the modules it adds to
``sys.modules``. Network calls during the import are counted by patching
``socket.socket.connect``/``connect_ex``, ``socket.create_connection`` and
``socket.getaddrinfo`` before it.

Targets:
  ours_operator   comet_provider.operators.runway            (what a DAG file imports)
  ours_all        + comet_provider.sensors.runway + comet_provider.triggers.runway
  http_operator   airflow.providers.http.operators.http      (the reference)

Usage: python benchmarks/import_cost.py [--quick] [--repeat R]
The last line printed is JSON: import_time_vs_http_operator, network_calls_at_import, ...
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C

TARGETS: dict[str, list[str]] = {
    "ours_operator": ["comet_provider.operators.runway"],
    "ours_all": [
        "comet_provider.operators.runway",
        "comet_provider.sensors.runway",
        "comet_provider.triggers.runway",
    ],
    "http_operator": ["airflow.providers.http.operators.http"],
}

# Runs in a fresh interpreter; prints one JSON line.
PROBE = r"""
import json, socket, sys, time
import airflow.sdk  # the baseline every DAG file pays

calls = []
def _wrap(owner, name):
    original = getattr(owner, name)
    def counted(*args, **kwargs):
        calls.append(name)
        return original(*args, **kwargs)
    setattr(owner, name, counted)
for owner, name in ((socket.socket, "connect"), (socket.socket, "connect_ex"),
                    (socket, "create_connection"), (socket, "getaddrinfo")):
    _wrap(owner, name)

before = set(sys.modules)
t0 = time.perf_counter()
for name in MODULES:
    __import__(name)
elapsed = time.perf_counter() - t0
added = sorted(set(sys.modules) - before)
print(json.dumps({"s": elapsed, "modules": len(added), "network_calls": len(calls),
                  "calls": calls[:10], "added_sample": [m for m in added if "comet" not in m][:40]}))
"""


def probe(modules: list[str], env: dict[str, str]) -> dict[str, Any]:
    code = PROBE.replace("MODULES", repr(modules))
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    if out.returncode != 0:
        raise RuntimeError(f"import of {modules} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="1 run per target instead of 9, no warm-up pass")
    parser.add_argument("--repeat", type=int, default=None)
    args = parser.parse_args()
    repeat = args.repeat or (1 if args.quick else 9)

    home = Path(tempfile.mkdtemp(prefix="comet-bench-import-"))
    env = C.scratch_airflow_env(home)
    if not args.quick:
        # Warm the bytecode caches once, so every measured run reads .pyc files alike.
        for modules in TARGETS.values():
            probe(modules, env)
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in TARGETS}
    for _ in range(repeat):  # interleaved, so machine noise hits all targets alike
        for name, modules in TARGETS.items():
            runs[name].append(probe(modules, env))

    summary: dict[str, dict[str, Any]] = {}
    for name, results in runs.items():
        summary[name] = {
            "ms": round(1000 * (C.median([r["s"] for r in results]) or 0.0), 1),
            "ms_min": round(1000 * min(r["s"] for r in results), 1),
            "modules": int(C.median([r["modules"] for r in results]) or 0),
            "network_calls": max(r["network_calls"] for r in results),
        }
    print(f"Import cost after `import airflow.sdk` (fresh interpreters, median of {repeat})")
    print(f"machine: {json.dumps(C.machine_info())}")
    C.print_table(
        ["target", "ms (median)", "ms (min)", "new modules", "network calls"],
        [[name, s["ms"], s["ms_min"], s["modules"], s["network_calls"]] for name, s in summary.items()],
    )
    ours, http = summary["ours_operator"], summary["http_operator"]
    sample = runs["ours_operator"][0]["added_sample"]
    print(f"\nnon-comet modules the operator import adds (first 40): {', '.join(sample) or 'none'}")
    figures = {
        "import_time_vs_http_operator": C.ratio(ours["ms"], http["ms"]),
        "modules_vs_http_operator": C.ratio(ours["modules"], http["modules"]),
        "network_calls_at_import": max(summary["ours_all"]["network_calls"], ours["network_calls"]),
        "ours_operator_ms": ours["ms"],
        "ours_operator_modules": ours["modules"],
        "ours_all_ms": summary["ours_all"]["ms"],
        "ours_all_modules": summary["ours_all"]["modules"],
        "http_operator_ms": http["ms"],
        "http_operator_modules": http["modules"],
        "repeat": repeat,
        "quick": bool(args.quick),
        "loadavg_1m": C.machine_info().get("loadavg_1m"),
    }
    if not args.quick:
        (C.HERE / "results").mkdir(exist_ok=True)
        (C.HERE / "results" / "import_cost.json").write_text(
            json.dumps({"machine": C.machine_info(), "figures": figures, "summary": summary}, indent=1)
        )
    shutil.rmtree(home, ignore_errors=True)
    C.emit_json(figures)


if __name__ == "__main__":
    main()
