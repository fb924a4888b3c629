"""Issue 12: behind an egress proxy, with metrics through Airflow's StatsD, in a real Airflow.

A LocalExecutor cluster of this module's own (``proxy_metrics_stack.py``): the emulators'
host is a name only the counting forward proxy resolves, so every request that reached them
went through it; the proxy names the component whose socket sent each one. Three runs start
together: two plain-http renders (proxy with credentials in the connection's ``proxy`` extra),
one https render through a CONNECT tunnel (``HTTPS_PROXY``, the test CA as ``ca_bundle``) and
one with a wrong ``ca_bundle``; then a rerun reuses a stored render. Airflow's StatsD client
sends to a UDP listener of the suite's. The tests run in file order.
Figures: ``build/integration-figures.json`` under ``proxy_metrics``, printed as
``PROXY-METRICS FIGURE: name = value`` (``pytest -s``). The module sorts before
``test_cluster_smoke.py``, so it runs before the session's LocalExecutor cluster starts.
"""

from __future__ import annotations

import base64
import json
import shutil
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cluster import AirflowCluster
from proxy_metrics_stack import (
    ALIAS,
    CONN_BAD_PROXY,
    CONN_HTTP,
    CONN_TLS,
    CONN_WRONG_CA,
    DAG_ID,
    LOGS_DIR,
    NOT_EXIST_SECONDS,
    PROXY_USER,
    QUEUE_SECONDS,
    RENDER_SECONDS,
    STATSD_PREFIX,
    ProxyMetricsStack,
)
from stack import ensure_system_deps
from waiting import wait_for

from comet_provider.utils import metrics

pytestmark = [pytest.mark.airflow_integration, pytest.mark.timeout(600)]

PREFIX = "PROXY-METRICS FIGURE:"
READY_SECONDS = NOT_EXIST_SECONDS + QUEUE_SECONDS  # when a render starts showing progress
PROMPTS = ("pixelated 8-bit video game style", "neon cyberpunk glow")
#: Every name the provider documents (metrics.py and the README's Deploying table).
DOCUMENTED = {
    metrics.RENDERS_SUBMITTED,
    metrics.RENDERS_RESUMED,
    metrics.RENDERS_REUSED,
    metrics.RENDERS_SUCCEEDED,
    *(f"{metrics.RENDERS_FAILED}.{cls}" for cls in metrics.FAILURE_CLASSES),
    metrics.SUBMISSION_RETRIES,
    metrics.POLL_ERRORS,
    metrics.RENDER_DURATION,
    metrics.RENDER_FIRST_PROGRESS,
    metrics.DOWNLOAD_DURATION,
    metrics.DOWNLOAD_BYTES,
    metrics.DOWNLOAD_THROUGHPUT,
}


def stat(name: str) -> str:
    """``name`` as StatsD receives it: behind Airflow's ``statsd_prefix``."""
    return f"{STATSD_PREFIX}.{name}"


def report(fig: dict[str, Any], **values: Any) -> None:
    """Record figures for build/integration-figures.json and print them under one prefix."""
    fig.update(values)
    for name, value in values.items():
        print(f"{PREFIX} {name} = {json.dumps(value, default=str, sort_keys=True)}")


@pytest.fixture(scope="module")
def pm(figures: dict[str, Any]) -> Iterator[ProxyMetricsStack]:
    if not sys.platform.startswith("linux"):
        pytest.skip("the Airflow integration suite needs Linux (PostgreSQL from Debian, /proc)")
    ensure_system_deps()
    AirflowCluster.reap_stale()
    shutil.rmtree(LOGS_DIR, ignore_errors=True)
    LOGS_DIR.mkdir(parents=True)
    fig = figures["proxy_metrics"] = {}
    started = ProxyMetricsStack()
    try:
        started.start()
        # All at once: they overlap while the emulators render.
        started.launch("http", [started.case(CONN_HTTP, f"http-{i}", prompt) for i, prompt in enumerate(PROMPTS)])
        started.launch("tls", [started.case(CONN_TLS, "tls-0", PROMPTS[0])])
        started.launch("wrong_ca", [started.case(CONN_WRONG_CA, "wrong-ca-0", PROMPTS[0])])
        started.launch("bad_proxy", [started.case(CONN_BAD_PROXY, "bad-proxy-0", PROMPTS[0])])
        report(fig, start_seconds={k: round(v, 2) for k, v in started.timings.items()})
        yield started
    finally:
        t0 = time.monotonic()
        started.close()
        fig["proxy_tally"] = started.proxy.tally()
        fig["statsd_packets"] = started.statsd.packets
        fig["stop_seconds"] = round(time.monotonic() - t0, 2)
        fig["total_seconds"] = started.seconds_since("start")
        leftovers = started.leftovers()
        fig["leftovers_after_teardown"] = leftovers
        assert not leftovers, f"processes or ports left behind: {leftovers}"


@pytest.fixture
def fig(figures: dict[str, Any], pm: ProxyMetricsStack) -> dict[str, Any]:
    figures_of_module: dict[str, Any] = figures["proxy_metrics"]
    return figures_of_module


def _finished(pm: ProxyMetricsStack, name: str, timeout: float = 240) -> tuple[str, list[dict[str, Any]]]:
    """The run's final state and its restyle task instances."""
    assert pm.cluster is not None
    run = pm.cluster.wait_run(DAG_ID, pm.runs[name], timeout=timeout)
    tis = sorted(pm.cluster.task_instances(DAG_ID, pm.runs[name], "restyle"), key=lambda t: t["map_index"])
    return str(run["state"]), tis


def _results(pm: ProxyMetricsStack, name: str, tis: list[dict[str, Any]]) -> list[dict[str, Any]]:
    assert pm.cluster is not None
    return [pm.cluster.xcom(DAG_ID, pm.runs[name], "restyle", map_index=t["map_index"]) for t in tis]


def _by_op(pm: ProxyMetricsStack) -> dict[str, dict[str, int]]:
    """Requests and bytes through the proxy per operation (all origins)."""
    out: dict[str, dict[str, int]] = {}
    for e in list(pm.proxy.events):
        row = out.setdefault(e.op, {"requests": 0, "bytes_up": 0, "bytes_down": 0})
        row["requests"] += 1
        row["bytes_up"] += e.bytes_up
        row["bytes_down"] += e.bytes_down
    return out


# ---------------------------------------------------------------------------------------------
# Proxy
# ---------------------------------------------------------------------------------------------


def test_http_renders_pass_the_proxy_from_worker_and_triggerer(pm: ProxyMetricsStack, fig: dict[str, Any]) -> None:
    state, tis = _finished(pm, "http")
    assert state == "success", [(t["map_index"], t["state"]) for t in tis]
    results = _results(pm, "http", tis)
    plain = [e for e in list(pm.proxy.events) if e.method != "CONNECT"]
    per_origin = Counter((e.origin, e.op) for e in plain)
    downloads = {e.path: e for e in plain if e.op == "download"}
    stored = {r["output_path"]: Path(r["output_path"]).stat().st_size for r in results}
    report(
        fig,
        http_requests_by_origin={f"{o} {op}": n for (o, op), n in sorted(per_origin.items())},
        http_download_bytes=sorted(e.bytes_down for e in downloads.values()),
        http_stored_bytes=sorted(stored.values()),
        http_submissions_at_emulator=pm.emulator.stats(tasks=False)["submissions"],
    )
    assert [t["try_number"] for t in tis] == [1, 1]
    assert all(r["video_url"].startswith(f"http://{ALIAS}:") for r in results), results
    # Submit and store in the task on the worker, every poll in the triggerer: all through the proxy.
    assert per_origin[("worker", "submit")] == len(tis), per_origin
    assert per_origin[("triggerer", "poll")] >= len(tis), per_origin
    assert not [k for k in per_origin if k[1] == "poll" and k[0] != "triggerer"], per_origin
    assert not [k for k in per_origin if k[1] == "submit" and k[0] != "worker"], per_origin
    assert [e.origin for e in downloads.values()] == ["worker", "worker"]
    assert sorted(e.bytes_down for e in downloads.values()) == sorted(stored.values())
    assert min(stored.values()) > 0
    assert per_origin[("worker", "source_head")] >= len(tis)  # the pay-once fingerprint's HEAD
    assert not [k for k in per_origin if k[0] == "?"], per_origin  # every request came from the cluster
    assert pm.emulator.stats(tasks=False)["submissions"] == len(tis)
    for path in stored:
        assert Path(f"{path}.comet.json").is_file()


def test_https_renders_pass_connect_tunnels_with_the_ca_bundle(pm: ProxyMetricsStack, fig: dict[str, Any]) -> None:
    assert pm.tls is not None
    state, tis = _finished(pm, "tls")
    assert state == "success", [(t["map_index"], t["state"]) for t in tis]
    (result,) = _results(pm, "tls", tis)
    _finished(pm, "wrong_ca")  # its refused tunnel is counted too
    target = f"{ALIAS}:{pm.tls.port}"
    tunnels = [e for e in list(pm.proxy.events) if e.method == "CONNECT"]
    by_origin = Counter(e.origin for e in tunnels)
    size = Path(result["output_path"]).stat().st_size
    report(
        fig,
        tls_tunnels_by_origin=dict(by_origin),
        tls_tunnel_bytes_down_by_origin={o: sum(e.bytes_down for e in tunnels if e.origin == o) for o in by_origin},
        tls_stored_bytes=size,
        tls_handshakes=pm.tls.handshakes,
        tls_refused_handshakes=pm.tls.refused_handshakes,
    )
    assert result["video_url"].startswith(f"https://{ALIAS}:")
    assert {e.path for e in tunnels} == {target}
    assert by_origin["triggerer"] >= 1  # the polls (aiohttp), through a tunnel with the CA bundle
    assert by_origin["worker"] >= 2  # submit and download (and the wrong bundle's try)
    assert set(by_origin) <= {"worker", "triggerer"}, by_origin
    # Every tunnel reached the TLS front: those with the right bundle completed the handshake.
    assert pm.tls.handshakes + pm.tls.refused_handshakes == len(tunnels)
    assert sum(e.bytes_down for e in tunnels if e.origin == "worker") > size  # the render, inside TLS
    assert pm.tls_emulator.stats(tasks=False)["submissions"] == 1


def test_a_wrong_ca_bundle_fails_the_task_saying_so(pm: ProxyMetricsStack, fig: dict[str, Any]) -> None:
    assert pm.cluster is not None and pm.certs is not None and pm.tls is not None
    state, (ti,) = _finished(pm, "wrong_ca")
    log = pm.cluster.task_log(DAG_ID, pm.runs["wrong_ca"], "restyle", ti["try_number"], ti["map_index"])
    expected = f"could not be verified with the CA bundle {pm.certs.other_ca}"
    start = log.find("The TLS certificate")
    report(fig, wrong_ca_state=ti["state"], wrong_ca_message=log[start : start + 300] if start >= 0 else None)
    assert state == "failed" and ti["state"] == "failed" and ti["try_number"] == 1
    assert expected in log, log[-3000:]
    assert f"'ca_bundle' of connection '{CONN_WRONG_CA}'" in log
    assert pm.tls.refused_handshakes >= 1
    assert pm.tls_emulator.stats(tasks=False)["submissions"] == 1  # the https run's only


def test_a_wrong_proxy_password_fails_the_task_saying_so(pm: ProxyMetricsStack, fig: dict[str, Any]) -> None:
    assert pm.cluster is not None
    state, (ti,) = _finished(pm, "bad_proxy")
    log = pm.cluster.task_log(DAG_ID, pm.runs["bad_proxy"], "restyle", ti["try_number"], ti["map_index"])
    start = log.find("407")
    report(fig, bad_proxy_refused=pm.proxy.refused, bad_proxy_message=log[max(start - 150, 0) : start + 150])
    assert state == "failed" and ti["state"] == "failed" and ti["try_number"] == 1
    assert "HTTP 407" in log, log[-3000:]
    assert pm.proxy.refused >= 1
    assert pm.emulator.stats(tasks=False)["submissions"] == 2  # the http run's only


# ---------------------------------------------------------------------------------------------
# Metrics
# ---------------------------------------------------------------------------------------------


def test_statsd_receives_the_documented_counters_and_timers(pm: ProxyMetricsStack, fig: dict[str, Any]) -> None:
    sd = pm.statsd
    renders = 3  # 2 plain http, 1 https; the wrong bundle's task never submitted
    stored = [p.stat().st_size for p in sorted(pm.renders.glob("*.mp4"))]

    def arrived() -> bool:
        return (
            sd.total(stat(metrics.RENDERS_SUCCEEDED)) >= renders
            and len(sd.values(stat(metrics.DOWNLOAD_DURATION), "ms")) >= renders
            and len(sd.values(stat(metrics.RENDER_DURATION), "ms")) >= renders
        )

    wait_for(arrived, timeout=30, interval=0.5, what="the provider's metrics at the StatsD listener")
    names = {m.name for m in list(sd.metrics)}
    durations = sd.values(stat(metrics.RENDER_DURATION), "ms")
    first_progress = sd.values(stat(metrics.RENDER_FIRST_PROGRESS), "ms")
    report(
        fig,
        metric_names=sorted(names),
        metric_counters={
            n: sd.total(n) for n in sorted(names) if any(m.kind == "c" for m in sd.metrics if m.name == n)
        },
        metric_origins={n: dict(sd.origins(n)) for n in sorted(names)},
        render_duration_ms=sorted(round(v) for v in durations),
        first_progress_ms=sorted(round(v) for v in first_progress),
        download_duration_ms=sorted(round(v, 1) for v in sd.values(stat(metrics.DOWNLOAD_DURATION), "ms")),
        statsd_packets_seen=sd.packets,
    )
    assert all(n.startswith(f"{STATSD_PREFIX}.comet_provider.") for n in names), names
    assert {n.removeprefix(f"{STATSD_PREFIX}.") for n in names} <= DOCUMENTED, names
    submissions = pm.emulator.stats(tasks=False)["submissions"] + pm.tls_emulator.stats(tasks=False)["submissions"]
    assert sd.total(stat(metrics.RENDERS_SUBMITTED)) == renders == submissions
    assert sd.total(stat(metrics.RENDERS_SUCCEEDED)) == renders
    for name in (metrics.RENDERS_REUSED, metrics.RENDERS_RESUMED, metrics.SUBMISSION_RETRIES, metrics.POLL_ERRORS):
        assert sd.total(stat(name)) == 0, name
    assert not [n for n in names if f".{metrics.RENDERS_FAILED}." in n], names
    # One per render, from the triggerer that saw it end, never shorter than the emulator takes
    # (less the moment between the emulator taking the submission and the task recording it).
    assert len(durations) == renders and min(durations) >= (READY_SECONDS + RENDER_SECONDS - 0.5) * 1000, durations
    assert set(sd.origins(stat(metrics.RENDER_DURATION))) == {"triggerer"}
    # The first polls saw the queued render at 0 %; progress shows from READY_SECONDS on.
    assert len(first_progress) == renders, first_progress
    assert min(first_progress) >= (READY_SECONDS - 0.5) * 1000 and max(first_progress) <= max(durations)
    assert set(sd.origins(stat(metrics.RENDER_FIRST_PROGRESS))) == {"triggerer"}
    assert len(sd.values(stat(metrics.DOWNLOAD_DURATION), "ms")) == renders
    assert len(stored) == renders and sd.total(stat(metrics.DOWNLOAD_BYTES)) == sum(stored)
    throughput = sd.values(stat(metrics.DOWNLOAD_THROUGHPUT), "g")
    assert len(throughput) == renders and min(throughput) > 0
    assert set(sd.origins(stat(metrics.RENDERS_SUBMITTED))) == {"worker"}


def test_a_rerun_reuses_the_stored_render_and_counts_it(pm: ProxyMetricsStack, fig: dict[str, Any]) -> None:
    sd = pm.statsd
    before_ops = pm.proxy.ops()
    submitted = sd.total(stat(metrics.RENDERS_SUBMITTED))
    emulator_before = pm.emulator.stats(tasks=False)["submissions"]
    pm.launch("rerun", [pm.case(CONN_HTTP, "http-0", PROMPTS[0])])
    state, tis = _finished(pm, "rerun")
    assert state == "success", [(t["map_index"], t["state"]) for t in tis]
    (result,) = _results(pm, "rerun", tis)
    wait_for(lambda: sd.total(stat(metrics.RENDERS_REUSED)) >= 1, timeout=30, what="the reused counter")
    new_ops = pm.proxy.ops() - before_ops
    report(fig, rerun_decision=result["decision"], rerun_proxy_requests=dict(new_ops))
    assert result["decision"] == "reuse_stored"
    assert sd.total(stat(metrics.RENDERS_REUSED)) == 1
    assert sd.total(stat(metrics.RENDERS_SUBMITTED)) == submitted
    assert pm.emulator.stats(tasks=False)["submissions"] == emulator_before
    assert dict(new_ops) == {"source_head": 1}, new_ops  # the fingerprint's HEAD, nothing paid or fetched


def test_the_proxy_credentials_are_in_no_log(pm: ProxyMetricsStack, fig: dict[str, Any]) -> None:
    assert pm.cluster is not None
    forms = {
        form
        for password in (pm.proxy_password, pm.wrong_proxy_password)
        for form in (password, base64.b64encode(f"{PROXY_USER}:{password}".encode()).decode())
    }
    files = [p for p in LOGS_DIR.rglob("*") if p.is_file()]
    task_logs = [p for p in files if pm.cluster.task_logs_dir in p.parents]
    leaked = [str(p) for p in files if any(form in p.read_text(errors="replace") for form in forms)]
    api_logs = [
        pm.cluster.task_log(DAG_ID, run_id, t["task_id"], t["try_number"], t["map_index"])
        for run_id in pm.runs.values()
        for t in pm.cluster.task_instances(DAG_ID, run_id, "restyle")
    ]
    text = "\n".join(p.read_text(errors="replace") for p in task_logs)
    report(
        fig,
        log_files_scanned=len(files),
        task_log_files=len(task_logs),
        proxy_by_op=_by_op(pm),
        proxy_tally=pm.proxy.tally(),
    )
    assert not leaked, leaked
    assert not [log for log in api_logs if any(form in log for form in forms)]
    # The scan read what it had to: the tasks' own lines and the triggerer's part of their logs.
    assert "Submitted Runway task" in text and "Runway task" in text and "SUCCEEDED" in text
    assert len(api_logs) == len(pm.runs) + 1  # one restyle a run, two in the http run
