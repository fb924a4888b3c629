"""Storing a finished render: ``CometHook.download`` next to ``curl -o`` of the same URL.

The emulator (core 1) serves ``GET /_emulator/blob?size=BYTES``. For each repeat, in turn:
``curl -o FILE URL`` and a fresh Python process (core 0 for both clients) that runs
``CometHook().download(url, ObjectStoragePath("file:///...")))`` after an untimed 1 MiB
download (imports, storage layer). Throughput is bytes / the download's own wall time (curl's
``time_total``; the timed ``download()`` call). Peak RSS growth
is the child's RSS above its level just before the call: sampled every 10 ms by a thread, and
the kernel's ``ru_maxrss`` when the download raised it.

Then (unless --no-s3, or moto/s3fs are missing) the same render stored into an S3 API served over
real HTTP on loopback (moto's standalone server on core 1, reached through an ``aws`` connection
and the amazon provider's s3fs): a multipart upload, with its peak RSS growth; S3 stores are
written in place (no temporary object), so this is the path a production store takes.

--quick: 256 MiB and 5 repeats (~15 s) instead of 1 GiB and 3; it says whether its repeats agreed
closely enough to stand for a full run.

Usage: python benchmarks/download.py [--quick] [--size-mib M] [--repeat R]
The last line printed is JSON: size_mib, throughput_vs_curl, rss_growth_mib, ...
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C

MIB = 1 << 20
# Quick: a quarter of the full run's render, 5 interleaved repeats (short runs are noisier).
# Large enough that a download's fixed costs (process, connection, rename) stay a few percent.
QUICK_MIB = 256
QUICK_REPEAT = 5
#: Repeats of one client further apart than this ((max - min) / median): the machine was busy.
MAX_RUN_SPREAD = 0.15

CHILD = r"""
import json, os, resource, sys, threading, time
import psutil
from airflow.sdk import ObjectStoragePath
from comet_provider.hooks.comet import CometHook

url, dest, warm_url = sys.argv[1], sys.argv[2], sys.argv[3]
proc = psutil.Process()
hook = CometHook()
place = dest if "://" in dest else "file://" + dest
target = ObjectStoragePath(place)
# Warm-up, not timed: a 1 MiB download first (lazy imports, the storage layer, the transport).
warm = ObjectStoragePath(place + ".warm")
hook.download(warm_url, warm)
warm.unlink()
rss0 = proc.memory_info().rss
ru0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
peak = [rss0]
done = threading.Event()
def sample():
    while not done.is_set():
        peak[0] = max(peak[0], proc.memory_info().rss)
        time.sleep(0.01)
t = threading.Thread(target=sample, daemon=True)
t.start()
t0, c0 = time.perf_counter(), time.process_time()
result = hook.download(url, target)
elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
done.set(); t.join()
ru1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
top = ru1 if ru1 > ru0 else peak[0]
stored = os.path.getsize(dest) if "://" not in dest else target.stat().st_size
print(json.dumps({"s": elapsed, "cpu_s": cpu, "bytes": stored,
                  "reported": getattr(result, "size_bytes", None), "rss0": rss0,
                  "rss_growth": max(top, peak[0]) - rss0, "sampled_growth": peak[0] - rss0}))
"""


def run_curl(url: str, dest: Path) -> dict[str, Any]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run(
        ["curl", "-sS", "--noproxy", "*", "-o", str(dest), "-w", "%{time_total} %{size_download}", url],
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
        preexec_fn=lambda: C.pin(C.CLIENT_CORE),
    )
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    seconds, size = out.stdout.split()
    return {"s": float(seconds), "cpu_s": cpu, "bytes": int(float(size))}


def run_ours(url: str, dest: Path | str, env: dict[str, str], warm_url: str) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, url, str(dest), warm_url],
        capture_output=True,
        text=True,
        timeout=900,
        env=env,
        check=False,
        preexec_fn=lambda: C.pin(C.CLIENT_CORE),
    )
    if out.returncode != 0:
        raise RuntimeError(f"CometHook.download failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


S3_CONN = "bench_s3"
S3_BUCKET = "bench-renders"


def run_s3(url: str, env: dict[str, str], warm_url: str, size: int) -> dict[str, Any] | None:
    """One store of ``url`` into moto's S3 server over HTTP; None when moto or s3fs is missing."""
    import importlib.util

    if not all(importlib.util.find_spec(m) for m in ("moto", "s3fs", "boto3")):
        print("S3: skipped (moto[server], s3fs or boto3 not installed)")
        return None
    import boto3
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)  # this process: core 1
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        boto3.client(
            "s3", endpoint_url=endpoint, aws_access_key_id="k", aws_secret_access_key="s", region_name="us-east-1"
        ).create_bucket(Bucket=S3_BUCKET)
        conn = {"conn_type": "aws", "login": "k", "password": "s", "extra": {"endpoint_url": endpoint}}
        s3_env = {**env, f"AIRFLOW_CONN_{S3_CONN.upper()}": json.dumps(conn)}
        run = run_ours(url, f"s3://{S3_CONN}@{S3_BUCKET}/render.mp4", s3_env, warm_url)
        if run["bytes"] != size:
            raise RuntimeError(f"S3: stored {run['bytes']} bytes, expected {size}")
        return run
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_MIB} MiB, {QUICK_REPEAT} repeats")
    parser.add_argument("--size-mib", type=int, default=None, help=f"render size (default 1024; quick {QUICK_MIB})")
    parser.add_argument("--repeat", type=int, default=None, help=f"runs per client (default 3; quick {QUICK_REPEAT})")
    parser.add_argument("--no-s3", action="store_true", help="skip the S3 (moto) store")
    parser.add_argument(
        "--dest-dir",
        default=None,
        help="where files are stored (default: /dev/shm when it has room, so the disk's writeback "
        "does not decide the figures; else the temp dir)",
    )
    args = parser.parse_args()
    size_mib = args.size_mib or (QUICK_MIB if args.quick else 1024)
    repeat = args.repeat or (QUICK_REPEAT if args.quick else 3)
    if shutil.which("curl") is None:
        sys.exit("error: curl is not installed")
    if not C.provider_available("comet_provider.hooks.comet"):
        sys.exit("error: comet_provider.hooks.comet is not importable")
    C.pin(C.SERVER_CORE)

    base = args.dest_dir
    if base is None and os.path.isdir("/dev/shm"):
        free = shutil.disk_usage("/dev/shm").free
        base = "/dev/shm" if free > 3 * size_mib * MIB else None
    work = Path(tempfile.mkdtemp(prefix="comet-bench-download-", dir=base))
    try:
        with C.Server(render_seconds=1.0) as server:
            env = C.scratch_airflow_env(work / "airflow", C.comet_conn_env(server.url))
            url = f"{server.url}/_emulator/blob?size={size_mib * MIB}"
            warm_url = f"{server.url}/_emulator/blob?size={MIB}"
            # The first request makes the blob on the server; read it once so both clients then
            # get it from the page cache alike.
            run_curl(url, Path(os.devnull))
            run_curl(warm_url, Path(os.devnull))
            curl_runs: list[dict[str, Any]] = []
            ours_runs: list[dict[str, Any]] = []
            for i in range(repeat):
                dest = work / f"curl-{i}.bin"
                curl_runs.append(run_curl(url, dest))
                dest.unlink()
                dest = work / "out" / f"render-{i}.mp4"
                dest.parent.mkdir(exist_ok=True)
                ours_runs.append(run_ours(url, dest, env, warm_url))
                if ours_runs[-1]["bytes"] != size_mib * MIB:
                    raise RuntimeError(f"stored {ours_runs[-1]['bytes']} bytes, expected {size_mib * MIB}")
                dest.unlink()
            s3_run = None if args.no_s3 or args.quick else run_s3(url, env, warm_url, size_mib * MIB)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    def mib_s(run: dict[str, Any]) -> float:
        return run["bytes"] / MIB / run["s"]

    curl_tp = C.median([mib_s(r) for r in curl_runs]) or 0.0
    ours_tp = C.median([mib_s(r) for r in ours_runs]) or 0.0
    growth = max(r["rss_growth"] for r in ours_runs) / MIB
    s3_growth = s3_run["rss_growth"] / MIB if s3_run else None
    print(
        f"Download of a {size_mib} MiB render from the emulator ({server.kind}) into {work.parent}, "
        f"{repeat} run(s) each"
    )
    print(f"machine: {json.dumps(C.machine_info())}")

    def cpu_per_gib(runs: list[dict[str, Any]]) -> float | None:
        return C.median([r["cpu_s"] * (1 << 30) / r["bytes"] for r in runs if r["bytes"]])

    C.print_table(
        ["client", "MiB/s (median)", "runs MiB/s", "CPU s per GiB", "peak RSS growth MiB"],
        [
            ["curl -o", curl_tp, " ".join(f"{mib_s(r):.0f}" for r in curl_runs), cpu_per_gib(curl_runs), None],
            [
                "CometHook.download",
                ours_tp,
                " ".join(f"{mib_s(r):.0f}" for r in ours_runs),
                cpu_per_gib(ours_runs),
                growth,
            ],
            *(
                [["CometHook.download -> S3 (moto)", mib_s(s3_run), "1 run", cpu_per_gib([s3_run]), s3_growth]]
                if s3_run
                else []
            ),
        ],
    )
    reasons = []
    for name, runs in (("curl", curl_runs), ("CometHook.download", ours_runs)):
        rates = [mib_s(r) for r in runs]
        spread = (max(rates) - min(rates)) / (C.median(rates) or 1.0)
        if len(rates) < 2:
            reasons.append(f"one {name} run: no way to tell its noise")
        elif spread > MAX_RUN_SPREAD:
            reasons.append(f"{name} runs {spread:.0%} apart (other load)")
    if args.quick:
        verdict = f"NOT comparable ({'; '.join(reasons)})" if reasons else "comparable with a full run, within ~15 %"
        print(f"Quick run: {verdict}.")
    figures = {
        "size_mib": size_mib,
        "throughput_vs_curl": C.ratio(ours_tp, curl_tp),
        "rss_growth_mib": round(growth, 2),
        "ours_mib_s": round(ours_tp, 1),
        "curl_mib_s": round(curl_tp, 1),
        "ours_cpu_s_per_gib": cpu_per_gib(ours_runs),
        "curl_cpu_s_per_gib": cpu_per_gib(curl_runs),
        "repeat": repeat,
        "quick": bool(args.quick),
        "loadavg_1m": C.machine_info().get("loadavg_1m"),
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "s3_mib_s": round(mib_s(s3_run), 1) if s3_run else None,
        "s3_rss_growth_mib": round(s3_growth, 2) if s3_growth is not None else None,
        "s3_cpu_s_per_gib": cpu_per_gib([s3_run]) if s3_run else None,
        "comparable_with_full": not reasons,
        "not_comparable_because": reasons,
    }
    if not args.quick:
        (C.HERE / "results").mkdir(exist_ok=True)
        (C.HERE / "results" / "download.json").write_text(
            json.dumps(
                {"machine": C.machine_info(), "figures": figures, "ours": ours_runs, "curl": curl_runs, "s3": s3_run},
                indent=1,
            )
        )
    C.emit_json(figures)


if __name__ == "__main__":
    main()
