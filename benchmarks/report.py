"""Rewrite the figures section of benchmarks/README.md (and the plot) from benchmarks/results/.

The full (non ``--quick``) runs of the benchmark scripts save their figures in
``benchmarks/results/*.json``; this turns them into the README's tables, between the
``<!-- figures:start -->`` and ``<!-- figures:end -->`` markers, and redraws
``triggerer_scale.png``.

Usage: python benchmarks/report.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C

RESULTS = C.HERE / "results"
README = C.HERE / "README.md"
START, END = "<!-- figures:start -->", "<!-- figures:end -->"


def _load(name: str) -> dict[str, Any] | None:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def _f(value: Any, digits: int = 2) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _verdict(ok: bool | None) -> str:
    return "–" if ok is None else ("met" if ok else "**missed**")


def _check(value: float | None, limit: float) -> str:
    return _verdict(None if value is None else value <= limit)


def _machine(data: dict[str, Any]) -> str:
    m = data.get("machine", {})
    start = data.get("figures", {}).get("loadavg_1m_start")
    load = f"{start} at the start, {m.get('loadavg_1m')} at the end" if start is not None else m.get("loadavg_1m")
    return f"{m.get('cpus')} × {m.get('cpu_model', '?')}, Python {m.get('python')}, 1-min load average {load}"


def _table(headers: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    out += ["| " + " | ".join(row) + " |" for row in rows]
    return out


def scale_section(data: dict[str, Any]) -> list[str]:
    from triggerer_scale import LABELS

    runs = data["runs"]
    fig = data["figures"]
    lines = [
        f"### Triggerer scale (`triggerer_scale.py`, server: {fig.get('server')})",
        "",
        f"Machine: {_machine(data)}.",
        "",
    ]
    rows = []
    for r in sorted(runs, key=lambda r: (r["n"], list(LABELS).index(r["client"]))):
        rows.append(
            [
                str(r["n"]),
                LABELS[r["client"]],
                _f(r["polls_per_s"], 0),
                _f(r["cpu_ms_per_poll"], 3),
                _f(r["rss_kib_per_trigger"], 1),
                _f(None if r["lag_p50_s"] is None else r["lag_p50_s"] * 1000, 1),
                _f(None if r["lag_p99_s"] is None else r["lag_p99_s"] * 1000, 1),
                _f(None if r["lag_max_s"] is None else r["lag_max_s"] * 1000, 0),
                _f(r["detect_p50_s"], 2),
                _f(r["detect_p99_s"], 2),
                str(r["errors"]),
            ]
        )
    lines += _table(
        [
            "N",
            "client",
            "polls/s",
            "ms CPU / poll",
            "KiB / trigger",
            "lag p50 ms",
            "lag p99 ms",
            "lag max ms",
            "detect p50 s",
            "detect p99 s",
            "errors",
        ],
        rows,
    )
    failed = data.get("failed") or []
    if failed:
        lines += [
            "",
            "Runs that did not finish: " + "; ".join(f"{f['client']} N={f['n']}: {f['failed'][:160]}" for f in failed),
        ]
    # Issue 14's targets, at each N the run has of 1,000 and 5,000 (the headline JSON is the largest N).
    target_rows = []
    per_n = fig.get("per_n") or {}
    for n in sorted((k for k in per_n if k in ("1000", "5000")), key=int) or [str(fig["n"])]:
        row = per_n.get(n, {})
        cpu_sensor, cpu_floor = row.get("cpu_vs_http_sensor"), row.get("cpu_vs_aiohttp")
        rss, lag = row.get("rss_vs_http_sensor"), row.get("lag_p99_s")
        harness = row.get("rss_harness_kib")
        target_rows += [
            [f"N = {n}: CPU per poll ≤ 0.5 × HttpSensorTrigger", _f(cpu_sensor, 3), _check(cpu_sensor, 0.5)],
            [f"N = {n}: CPU per poll ≤ 1.2 × aiohttp floor", _f(cpu_floor, 3), _check(cpu_floor, 1.2)],
            [f"N = {n}: loop lag p99 < 20 ms", _f(None if lag is None else lag * 1000, 1) + " ms", _check(lag, 0.020)],
            [f"N = {n}: memory per trigger ≤ 0.3 × HttpSensorTrigger", _f(rss, 3), _check(rss, 0.3)],
        ]
        if harness is not None:
            target_rows.append(
                [
                    f"N = {n}: harness alone (no polls), KiB per trigger (info: in every client's figure)",
                    _f(harness, 1),
                    "–",
                ]
            )
    target_rows += [
        [
            f"CPU per poll vs bare httpx (info; at N = {fig.get('bare_httpx_n')})",
            _f(fig.get("cpu_per_poll_vs_bare_httpx"), 3),
            "–",
        ],
        ["detection latency p99 (info)", _f(fig.get("detect_latency_p99_s")) + " s", "–"],
    ]
    lines += ["", "Targets (issue 14):", "", *_table(["target", "figure", "verdict"], target_rows), ""]
    lines += [
        "![CPU per poll and loop lag vs N](triggerer_scale.png)",
    ]
    return lines


def download_section(data: dict[str, Any]) -> list[str]:
    fig = data["figures"]
    tp, rss = fig.get("throughput_vs_curl"), fig.get("rss_growth_mib")
    ours_cpu, curl_cpu = fig.get("ours_cpu_s_per_gib"), fig.get("curl_cpu_s_per_gib")
    cpu = round(ours_cpu / curl_cpu, 3) if ours_cpu and curl_cpu else None
    s3_rss = fig.get("s3_rss_growth_mib")
    return [
        f"### Download (`download.py`, {fig['size_mib']} MiB, {fig.get('repeat')} runs each, median)",
        "",
        f"Machine: {_machine(data)}.",
        "",
        *_table(
            ["client", "MiB/s", "CPU s per GiB", "peak RSS growth"],
            [
                ["`curl -o`", _f(fig.get("curl_mib_s"), 0), _f(fig.get("curl_cpu_s_per_gib")), "–"],
                [
                    "`CometHook.download`",
                    _f(fig.get("ours_mib_s"), 0),
                    _f(fig.get("ours_cpu_s_per_gib")),
                    f"{_f(rss, 1)} MiB",
                ],
                *(
                    [
                        [
                            "`CometHook.download` → S3 (moto on loopback, 1 run)",
                            _f(fig.get("s3_mib_s"), 0),
                            _f(fig.get("s3_cpu_s_per_gib")),
                            f"{_f(s3_rss, 1)} MiB",
                        ]
                    ]
                    if s3_rss is not None
                    else []
                ),
            ],
        ),
        "",
        *_table(
            ["target", "figure", "verdict"],
            [
                ["throughput ≥ 0.9 × curl", _f(tp), _verdict(None if tp is None else tp >= 0.9)],
                ["CPU per GiB ≤ 1.2 × curl", _f(cpu), _check(cpu, 1.2)],
                ["peak RSS growth < 64 MiB", f"{_f(rss, 1)} MiB", _verdict(None if rss is None else rss < 64)],
                *(
                    [["S3 store: peak RSS growth < 64 MiB", f"{_f(s3_rss, 1)} MiB", _verdict(s3_rss < 64)]]
                    if s3_rss is not None
                    else []
                ),
            ],
        ),
        *(
            ["", "The S3 row's throughput is moto's (a Python server), not S3's: read it for memory, not speed."]
            if s3_rss is not None
            else []
        ),
    ]


def import_section(data: dict[str, Any]) -> list[str]:
    fig = data["figures"]
    s = data["summary"]
    ratio = fig.get("import_time_vs_http_operator")
    return [
        f"### Import cost (`import_cost.py`, after `import airflow.sdk`, median of {fig.get('repeat')})",
        "",
        f"Machine: {_machine(data)}.",
        "",
        *_table(
            ["import", "ms", "new modules", "network calls"],
            [
                [
                    "`comet_provider.operators.runway`",
                    _f(s["ours_operator"]["ms"], 1),
                    str(s["ours_operator"]["modules"]),
                    str(s["ours_operator"]["network_calls"]),
                ],
                [
                    "… + `.sensors.runway` + `.triggers.runway`",
                    _f(s["ours_all"]["ms"], 1),
                    str(s["ours_all"]["modules"]),
                    str(s["ours_all"]["network_calls"]),
                ],
                [
                    "`airflow.providers.http.operators.http`",
                    _f(s["http_operator"]["ms"], 1),
                    str(s["http_operator"]["modules"]),
                    str(s["http_operator"]["network_calls"]),
                ],
            ],
        ),
        "",
        *_table(
            ["target", "figure", "verdict"],
            [
                [
                    "import time ≤ 1/3 of the http operator's",
                    _f(ratio, 3),
                    _verdict(None if ratio is None else ratio <= 1 / 3),
                ],
                [
                    "no network calls at import",
                    str(fig.get("network_calls_at_import")),
                    _verdict(fig.get("network_calls_at_import") == 0),
                ],
            ],
        ),
    ]


def worker_section(data: dict[str, Any]) -> list[str]:
    fig = data["figures"]
    d, s = data["deferrable"], data["sync"]
    return [
        f"### Worker time per restyle (`worker_slots.py`, render {fig['render_s']:g} s, "
        f"poll every {fig['poll_s']:g} s)",
        "",
        f"Machine: {_machine(data)}.",
        "",
        *_table(
            ["mode", "worker s (slot held)", "stints", "trigger s (triggerer)", "`dags test` wall s"],
            [
                [
                    "deferrable",
                    _f(d["worker_s"]),
                    " + ".join(_f(x) for x in d["worker_stints"]),
                    _f(d["trigger_s"]),
                    _f(d["dags_test_wall_s"], 1),
                ],
                [
                    "sync (`deferrable=False`)",
                    _f(s["worker_s"]),
                    " + ".join(_f(x) for x in s["worker_stints"]),
                    "–",
                    _f(s["dags_test_wall_s"], 1),
                ],
            ],
        ),
        "",
        f"Deferrable mode holds a worker slot for {_f(fig.get('worker_share_deferrable'), 3)} of the time "
        "polling on the worker does (worker process start-up not included: a real deployment pays it "
        "once more per deferral).",
    ]


def main() -> None:
    import argparse

    argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter).parse_args()
    lines: list[str] = []
    for name, section in (
        ("triggerer_scale", scale_section),
        ("download", download_section),
        ("import_cost", import_section),
        ("worker_slots", worker_section),
    ):
        data = _load(name)
        if data is None:
            lines += [f"### {name}", "", f"No full run saved yet (`python benchmarks/{name}.py`).", ""]
            continue
        lines += [*section(data), ""]
    text = README.read_text()
    head, _, rest = text.partition(START)
    _, _, tail = rest.partition(END)
    README.write_text(head + START + "\n" + "\n".join(lines) + END + tail)
    scale = _load("triggerer_scale")
    if scale is not None:
        from triggerer_scale import plot

        plot(scale["runs"], C.HERE / "triggerer_scale.png")
    print(f"updated {README}")


if __name__ == "__main__":
    main()
