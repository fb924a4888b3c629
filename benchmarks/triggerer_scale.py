"""N deferred restyles in one triggerer event loop: our trigger vs Airflow's HTTP provider.

For each N and each client, a fresh client process (pinned to core 0) runs N triggers
concurrently in one asyncio loop through Airflow's own ``TriggerRunner.run_trigger`` (the
coroutine the triggerer wraps every trigger in: greenback portal, log context, tracing span,
event queue, ``cleanup()``), polling the API server in another process (pinned to core 1).
Triggers start staggered over one poll interval, so the load is a steady ``--rate`` polls/s
(poll_interval = N / rate); some renders finish during the measured window.

Clients (same harness, same feed endpoint, same load):
  ours          comet_provider.triggers.runway.RunwayTaskTrigger
  http_sensor   airflow.providers.http.triggers.http.HttpSensorTrigger, POST with a JSON body
                and the Bearer header from an http connection (via a shim that answers 404
                until the render is done: the sensor fires on the first non-404 answer)
  httpx         a trigger around one shared bare httpx.AsyncClient
  httpx_aiohttp the same over httpx-aiohttp's transport
  aiohttp       a trigger around one shared bare aiohttp.ClientSession: the measured floor
  harness       a trigger that polls nothing: the triggerer wrapper's own memory per trigger

Figures per run (over the measured window only):
  cpu_ms_per_poll   client process CPU time (user+sys, all threads) / polls the server saw
  cpu_part_spread   the same per quarter of the window: range around its trend / median
  rss_kib_per_trig  (peak RSS in the window - RSS before the triggers were created) / N
  lag p50/p99/max   overshoot of a probe coroutine sleeping 50 ms
  detect p50/p99    render finished (server clock) -> trigger event queued (same host clock)
  runq_wait_frac    share of the window the client waited for a CPU (other load; schedstat)

--quick is the full run's N = 1,000 row with a 10 s window instead of 20 s (ours, http_sensor,
httpx, aiohttp; ~1.5 min): the same load and warm-up (imports, connection lookup and pool, each
trigger's first polls all before the window), so its ratios match that row's within ~15 % on a
quiet machine. It says so, or why not (the client waited for a CPU, CPU per poll moved within
the window, too few lag samples).

Usage: python benchmarks/triggerer_scale.py [--quick] [--n N ...] [--clients a,b] [--window S]
The last line printed is JSON (keys fixed, for the largest N).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import select
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C
from _py_spy import finish_py_spy, start_py_spy

ALL_CLIENTS = ["ours", "http_sensor", "httpx", "httpx_aiohttp", "aiohttp", "harness"]
QUICK_CLIENTS = ["ours", "http_sensor", "httpx", "aiohttp"]
# Quick mode is a full run's N = 1,000 row with a shorter window: same load, same warm-up.
QUICK_N = 1000
QUICK_WINDOW_S = 10.0
LABELS = {
    "ours": "RunwayTaskTrigger (ours)",
    "http_sensor": "HttpSensorTrigger",
    "httpx": "bare httpx",
    "httpx_aiohttp": "httpx over httpx-aiohttp",
    "aiohttp": "bare aiohttp (floor)",
    "harness": "harness only (no polls)",
}
OURS_MODULE = "comet_provider.triggers.runway"
FINISHED_KEYS = ("finished_at", "finish_time", "completed_at", "done_at", "ended_at", "end_time")
WARMUP_RENDER_S = 0.05


def _steal_jiffies() -> tuple[int, int] | None:
    """(steal, total) jiffies over all CPUs: time the hypervisor gave to other guests."""
    try:
        with open("/proc/stat") as fh:
            fields = [int(x) for x in fh.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    return (fields[7] if len(fields) > 7 else 0), sum(fields)


# =============================================================================================
# Parent: server, load plan, child processes, figures
# =============================================================================================


def _finished_at(task: dict[str, Any], render_seconds: float) -> float | None:
    """When the server finished the task (wall clock).

    The emulator's stats give ``submitted_at`` (wall clock) but no finish time; it is set up
    with no not-exist window, no queue and no throttling, so a task ends exactly
    ``render_seconds`` after submission (its ``state()``). The fake server reports it.
    """
    for key in FINISHED_KEYS:
        value = task.get(key)
        if isinstance(value, int | float) and value > 0:
            return float(value)
    submitted = task.get("submitted_at")
    if isinstance(submitted, int | float) and submitted > 0:
        return float(submitted) + render_seconds
    return None


class Submitter:
    """Submits renders to the server from the parent process (not the client under test)."""

    def __init__(self, url: str) -> None:
        self.url = url

    async def _submit(self, count: int, concurrency: int = 32) -> list[str]:
        import aiohttp

        out: list[str] = []
        sem = asyncio.Semaphore(concurrency)
        body = {
            "video": "https://example.invalid/source.mp4",
            "prompt": "benchmark",
            "model": "gen4",
            "options": {},
        }
        headers = {"Authorization": f"Bearer {C.API_KEY}", "X-Runway-Version": C.RUNWAY_VERSION}
        async with aiohttp.ClientSession() as session:

            async def one() -> None:
                async with sem:
                    for attempt in range(5):
                        async with session.post(f"{self.url}/runway/pro/video2video", json=body, headers=headers) as r:
                            if r.status == 200:
                                data = await r.json()
                                out.append(str(data["data"]["task_id"]))
                                return
                        await asyncio.sleep(0.2 * (attempt + 1))
                    raise RuntimeError("submit failed 5 times")

            await asyncio.gather(*(one() for _ in range(count)))
        return out

    def submit(self, count: int) -> list[str]:
        if count <= 0:
            return []
        return asyncio.run(self._submit(count))


class Shim:
    """``_fake_comet.py shim``: the 404-until-done front the HttpSensorTrigger polls."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.url = ""
        self.proc: subprocess.Popen[str] | None = None

    def __enter__(self) -> Shim:
        self.proc = subprocess.Popen(
            [
                sys.executable,
                str(C.HERE / "_fake_comet.py"),
                "shim",
                "--upstream",
                self.upstream,
                "--cpu",
                str(C.SERVER_CORE),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        self.url = self.proc.stdout.readline().strip()
        if not self.url.startswith("http"):
            raise RuntimeError("shim did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()


class Child:
    """One client process: spawned early (imports overlap the previous run), measured later."""

    def __init__(
        self, server: C.Server, shim_url: str, client: str, n: int, args: argparse.Namespace, scratch: Path
    ) -> None:
        self.client, self.n = client, n
        url = shim_url if client == "http_sensor" else server.url
        r_fd, w_fd = os.pipe()
        cfg = {"client": client, "url": url, "msg_fd": w_fd, "runner": not args.no_runner}
        env = C.scratch_airflow_env(scratch / "airflow", C.comet_conn_env(server.url))
        # The HttpSensorTrigger's connection points at the shim, so the sensor waits for the render.
        env.update({k: v.replace(server.url, shim_url) for k, v in C.comet_conn_env(server.url).items() if "HTTP" in k})
        self.log_path = scratch / f"{client}-{n}-{time.monotonic_ns()}.log"
        with open(self.log_path, "w") as log:
            self.proc = subprocess.Popen(
                [sys.executable, str(Path(__file__).parent / "_scale_child.py"), json.dumps(cfg)],
                stdin=subprocess.PIPE,
                stdout=log,
                stderr=log,
                env=env,
                pass_fds=(w_fd,),
                text=True,
            )
        os.close(w_fd)
        self.fd = r_fd
        self.buf = b""
        self.deadline = time.time() + 600
        self.loaded = False

    def wait_loaded(self) -> None:
        """Until the child has imported its client (once)."""
        if not self.loaded:
            self.recv("loaded")
            self.loaded = True

    def recv(self, kind: str) -> dict[str, Any]:
        """The child's next message (one JSON line), or an error at EOF or past the deadline."""
        while b"\n" not in self.buf:
            ready, _, _ = select.select([self.fd], [], [], max(0.0, self.deadline - time.time()))
            if not ready:
                self.proc.kill()
                raise RuntimeError(f"{self.client} N={self.n}: no {kind!r} message before the deadline")
            chunk = os.read(self.fd, 1 << 20)
            if not chunk:
                self.proc.wait(5)
                tail = self.log_path.read_text()[-3000:]
                raise RuntimeError(f"{self.client} N={self.n}: child exited ({self.proc.returncode}) early:\n{tail}")
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\n")
        msg = json.loads(line)
        if msg.get("kind") != kind:
            raise RuntimeError(f"{self.client} N={self.n}: expected {kind!r}, got {msg!r}")
        return msg

    def send(self, payload: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(payload) + "\n")
        self.proc.stdin.flush()

    def close(self) -> None:
        if self.fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self.fd)
            self.fd = -1
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


PARTS = 4  # the measured window is cut in this many parts, to show how steady CPU per poll was


def run_one(
    server: C.Server, child: Child, args: argparse.Namespace, warm_task: str, next_child: Child | None = None
) -> dict[str, Any]:
    client, n = child.client, child.n
    interval = n / args.rate
    settle = max(1.0, min(3.0, interval * 0.2))
    window = args.window if args.window else max(20.0, 1.6 * interval)
    child.deadline = time.time() + 180 + interval + settle + window * 2
    idle = client == "harness"
    try:
        child.wait_loaded()
        child.send({"warmup_tasks": [warm_task]})
        ready = child.recv("ready")
        if ready["warm_errors"]:
            raise RuntimeError(f"{client}: warm-up failed: {ready['warm_errors']}")
        # Load: most renders outlast the run; a fraction finish, spread over the window.
        finishing = 0 if idle else round(n * args.finish_fraction)
        long_render = interval + settle + window + 600.0
        server.configure(render_seconds=long_render)
        sub = Submitter(server.url)
        t_sub = time.time()
        tasks = [f"idle-{i}" for i in range(n)] if idle else sub.submit(n - finishing)
        render_of = dict.fromkeys(tasks, long_render)
        rate = max((n - finishing) / max(time.time() - t_sub, 1e-3), 50.0)
        start_at = time.time() + finishing / rate + 1.0
        levels = 10 if finishing >= 10 else max(finishing, 1)
        for k in range(levels if finishing else 0):
            count = finishing * (k + 1) // levels - finishing * k // levels
            target = start_at + interval + settle + window * (0.05 + 0.8 * k / max(levels - 1, 1))
            render = max(0.5, target - time.time())
            server.configure(render_seconds=render)
            batch = sub.submit(count)
            render_of.update(dict.fromkeys(batch, render))
            tasks += batch
        random.Random(n).shuffle(tasks)
        if next_child is not None:
            # Quick mode: the next client has been importing since this run began; it must be
            # done before this window opens (imports on the other core still share caches).
            next_child.wait_loaded()
        start_at = max(start_at, time.time() + 0.2)
        child.send(
            {
                "tasks": tasks,
                "start_at": start_at,
                "poll_interval": interval,
                "settle": settle,
                "window": window,
                "parts": PARTS,
            }
        )
        child.recv("mark")
        feeds = [server.feeds()]
        steal0 = _steal_jiffies()
        spy = start_py_spy(args.py_spy, child.proc.pid, f"{child.client}-{child.n}", window) if args.py_spy else None
        for _part in range(PARTS):
            child.recv("mark")
            feeds.append(server.feeds())
        steal1 = _steal_jiffies()
        res = child.recv("result")
        child.proc.wait(60)
    finally:
        child.close()
    profile = finish_py_spy(spy) if spy else None
    stats = server.stats().get("tasks", {})
    server.reset()  # the next run starts from an empty task table
    finished = {tid: _finished_at(stats.get(tid, {}), render_of[tid]) for tid in tasks}
    latencies = []
    for task_id, t_event, _st in res["events"]:
        f = finished.get(task_id)
        if f is not None:
            latencies.append(max(0.0, t_event - f))
    detected = {e[0] for e in res["events"]}
    due = [
        tid
        for tid, f in finished.items()
        if f is not None and res["t_window_start"] <= f <= res["t_window_end"] - interval * 1.2 - 1.0
    ]
    missed = sum(tid not in detected for tid in due)
    polls = feeds[-1] - feeds[0]
    lag = res["lag"]
    server.configure(render_seconds=args.render_seconds)
    cpu_marks = res["cpu_marks"]
    part_cpu = [
        (cpu_marks[k + 1] - cpu_marks[k]) * 1000 / (feeds[k + 1] - feeds[k])
        for k in range(PARTS)
        if feeds[k + 1] > feeds[k]
    ]
    # Without the collector's pauses: a 250 ms gen-2 pause lands in one part or another, and is
    # the client's own cost (it stays in cpu_ms_per_poll), not a sign of other load.
    part_cpu_ex_gc = [
        (cpu_marks[k + 1] - cpu_marks[k] - res["gc_s_parts"][k]) * 1000 / (feeds[k + 1] - feeds[k])
        for k in range(PARTS)
        if feeds[k + 1] > feeds[k]
    ]
    steal = None
    if steal0 is not None and steal1 is not None and steal1[1] > steal0[1]:
        steal = round((steal1[0] - steal0[0]) / (steal1[1] - steal0[1]), 4)
    return {
        "client": client,
        "n": n,
        "poll_interval_s": interval,
        "window_s": round(res["window_s"], 2),
        "polls": polls,
        "polls_per_s": round(polls / res["window_s"], 1),
        "cpu_ms_per_poll": round(res["cpu_s"] * 1000 / polls, 4) if polls else None,
        # How much the figure moved between the window's parts around its trend, GC pauses left
        # out: moves from outside the client.
        "cpu_part_spread": _spread(part_cpu_ex_gc),
        "cpu_ms_per_poll_parts": [round(x, 4) for x in part_cpu],
        "polls_parts": [feeds[k + 1] - feeds[k] for k in range(PARTS)],
        "cpu_util": round(res["cpu_s"] / res["window_s"], 3),
        "rss_kib_per_trigger": round((res["rss_peak"] - res["rss0"]) / 1024 / n, 2),
        "lag_p50_s": C.percentile(lag, 50),
        "lag_p99_s": C.percentile(lag, 99),
        "lag_max_s": max(lag) if lag else None,
        "lag_samples": len(lag),
        "detected": len(latencies),
        "missed": None if idle else missed,
        "detect_p50_s": C.percentile(latencies, 50),
        "detect_p99_s": C.percentile(latencies, 99),
        "errors": res["errors"],
        "error_sample": res["error_sample"],
        "gc_pause_max_s": res["gc_pause_max_s"],
        "gc_pause_total_s": res["gc_pause_total_s"],
        "gc_gen2_runs": res["gc_gen2_runs"],
        "gc_objects_end": res["gc_objects_end"],
        # Share of the window the client waited for a CPU while runnable (other processes), and
        # the hypervisor's steal over all CPUs: the load the CPU-time figures cannot show.
        "runq_wait_frac": None if res["runq_wait_s"] is None else round(res["runq_wait_s"] / res["window_s"], 4),
        "steal_frac": steal,
        "profile": profile,
        "alive_at_end": res["alive_at_end"],
    }


def _spread(values: list[float]) -> float | None:
    """Range of ``values`` around their straight-line trend, over their median.

    The trend is the load's own: renders finish through the window, so fewer polls share the
    loop's fixed costs as it goes on. What is left around it is noise (other load, bursts).
    """
    middle = C.median(values)
    if len(values) < 3 or not middle:
        return None
    n = len(values)
    mean_x, mean_y = (n - 1) / 2, sum(values) / n
    slope = sum((x - mean_x) * (y - mean_y) for x, y in enumerate(values)) / sum((x - mean_x) ** 2 for x in range(n))
    residuals = [y - (mean_y + slope * (x - mean_x)) for x, y in enumerate(values)]
    return round((max(residuals) - min(residuals)) / middle, 3)


# When a run's figures can stand for a quiet machine's (quick mode's verdict).
MAX_RUNQ_WAIT = 0.02  # the client waited for a CPU at most 2 % of its window
MAX_STEAL = 0.02
MAX_PART_SPREAD = 0.2  # CPU per poll (GC pauses and trend aside) moved at most this much between quarters
MIN_LAG_SAMPLES = 150  # p99 then excludes at least one sample


def comparability(results: list[dict[str, Any]], ns: list[int]) -> tuple[bool, list[str]]:
    """Whether the runs at ``ns`` measured the code rather than the machine, and if not, why."""
    reasons = []
    for r in results:
        if r["n"] not in ns:
            continue
        who = f"{r['client']} N={r['n']}"
        if r.get("runq_wait_frac") is not None and r["runq_wait_frac"] > MAX_RUNQ_WAIT:
            reasons.append(f"{who} waited for a CPU {r['runq_wait_frac']:.0%} of its window (other load)")
        if r.get("steal_frac") is not None and r["steal_frac"] > MAX_STEAL:
            reasons.append(f"{who}: hypervisor steal {r['steal_frac']:.0%}")
        if r.get("cpu_part_spread") is not None and r["cpu_part_spread"] > MAX_PART_SPREAD:
            reasons.append(f"{who}: CPU per poll moved {r['cpu_part_spread']:.0%} within the window")
        if r["client"] == "ours" and r.get("lag_samples", 0) < MIN_LAG_SAMPLES:
            reasons.append(f"{who}: {r.get('lag_samples', 0)} lag samples, too few for a p99")
    return not reasons, reasons


SUMMED = ("detected", "missed", "errors", "polls")


def aggregate(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (client, N): the median of repeated runs (counts summed)."""
    groups: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for r in runs:
        groups.setdefault((r["client"], r["n"]), []).append(r)
    out = []
    for rows in groups.values():
        if len(rows) == 1:
            out.append({**rows[0], "repeats": 1})
            continue
        merged: dict[str, Any] = {"repeats": len(rows)}
        for key, value in rows[0].items():
            values = [r[key] for r in rows]
            if key in ("n", "poll_interval_s"):
                merged[key] = value
            elif key in SUMMED:
                merged[key] = None if None in values else sum(values)
            elif isinstance(value, float | int) and not isinstance(value, bool) and None not in values:
                merged[key] = C.median(values)
            else:
                merged[key] = value
        merged["cpu_ms_per_poll_runs"] = [r["cpu_ms_per_poll"] for r in rows]
        out.append(merged)
    return out


def plot(results: list[dict[str, Any]], path: Path, failed: list[dict[str, Any]] | None = None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FixedLocator, NullFormatter, NullLocator

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.4))
    ns = sorted({r["n"] for r in results} | {f["n"] for f in failed or []})
    for client in ALL_CLIENTS:
        rows = sorted((r for r in results if r["client"] == client), key=lambda r: r["n"])
        if not rows or client == "harness":  # no polls: nothing to plot per poll
            continue
        xs = [r["n"] for r in rows]
        missing = [f"{f['n']:,}" for f in failed or [] if f["client"] == client]
        label = LABELS[client] + (f" (N={', '.join(missing)}: did not finish)" if missing else "")
        (line,) = ax1.plot(xs, [r["cpu_ms_per_poll"] for r in rows], marker="o", label=label)
        ax2.plot(xs, [(r["lag_p99_s"] or 0) * 1000 for r in rows], marker="o", color=line.get_color())
    ax2.axhline(20, color="grey", linestyle="--", linewidth=0.8)
    ax2.annotate("target for ours: 20 ms", (ns[0], 20), fontsize=7, color="grey", va="bottom")
    ax1.set_title("client CPU per poll")
    ax1.set_ylabel("ms CPU / poll")
    ax1.set_ylim(bottom=0, top=ax1.get_ylim()[1] * 1.35)
    ax2.set_title("event-loop lag p99 (50 ms probe)")
    ax2.set_ylabel("ms")
    ax2.set_yscale("log")
    for ax in (ax1, ax2):
        ax.set_xlabel("concurrent triggers N (~200 polls/s in total)")
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(FixedLocator(ns))
        ax.xaxis.set_minor_locator(NullLocator())
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xticklabels([f"{n:,}" for n in ns])
        ax.grid(True, which="both", alpha=0.3)
    ax1.legend(fontsize=7.5, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="N=100, a few seconds per client (< 60 s)")
    parser.add_argument("--n", action="append", default=None, help="N (repeat or comma list)")
    parser.add_argument("--clients", default=None, help=f"comma list from {','.join(ALL_CLIENTS)}")
    parser.add_argument("--rate", type=float, default=200.0, help="total polls/s (poll_interval = N/rate)")
    parser.add_argument("--repeat", type=int, default=1, help="interleaved repeats; figures are medians")
    parser.add_argument("--window", type=float, default=None, help="measured seconds per run")
    parser.add_argument("--finish-fraction", type=float, default=0.2)
    parser.add_argument("--render-seconds", type=float, default=600.0)
    parser.add_argument("--no-runner", action="store_true", help="iterate run() bare, not in TriggerRunner")
    parser.add_argument("--out", default=None, help="write all figures as JSON here")
    parser.add_argument(
        "--save", action="store_true", help="save results/ and the plot (default only for a default full run)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the client processes' logs")
    parser.add_argument("--py-spy", default=None, metavar="DIR", help="py-spy each client over its window into DIR")
    parser.add_argument("--plot", default=None, help="PNG path (default: benchmarks/triggerer_scale.png, full mode)")
    args = parser.parse_args()
    C.pin(C.SERVER_CORE)  # the parent only submits renders and reads counters: keep it off core 0
    load_at_start = C.machine_info().get("loadavg_1m")
    if args.n:
        ns = sorted({int(x) for v in args.n for x in str(v).split(",") if x})
    else:
        ns = [QUICK_N] if args.quick else [200, 1000, 5000]
    if args.quick and args.window is None:
        args.window = QUICK_WINDOW_S
    clients = args.clients.split(",") if args.clients else (QUICK_CLIENTS if args.quick else ALL_CLIENTS)
    if "ours" in clients and not C.provider_available(OURS_MODULE):
        print(f"error: {OURS_MODULE} is not importable; run with --clients excluding 'ours'", file=sys.stderr)
        sys.exit(2)

    scratch = Path(tempfile.mkdtemp(prefix="comet-bench-scale-"))
    results: list[dict[str, Any]] = []
    with C.Server(render_seconds=args.render_seconds) as server, Shim(server.url) as shim:
        print(f"server: {server.kind} at {server.url}; client core {C.CLIENT_CORE}, server core {C.SERVER_CORE}")
        print(f"machine: {json.dumps(C.machine_info())}")
        failed: list[dict[str, Any]] = []
        partial = scratch / "partial.json"
        print(f"runs so far are kept in {partial}")
        plan = [(n, client) for _rep in range(args.repeat) for n in ns for client in clients]
        children: list[Child] = []
        try:
            for i, (n, client) in enumerate(plan):
                if len(children) <= i:
                    children.append(Child(server, shim.url, client, n, args, scratch))
                next_child = None
                if args.quick and i + 1 < len(plan):
                    # Quick mode: the next client imports (on the server core) while this run
                    # warms up; run_one waits for it before opening the window.
                    next_child = Child(server, shim.url, plan[i + 1][1], plan[i + 1][0], args, scratch)
                    children.append(next_child)
                server.configure(render_seconds=WARMUP_RENDER_S)
                warm = Submitter(server.url).submit(1)[0]
                time.sleep(WARMUP_RENDER_S + 0.3)
                server.configure(render_seconds=args.render_seconds)
                try:
                    r = run_one(server, children[i], args, warm, next_child)
                except RuntimeError as exc:  # one broken run must not lose the others
                    print(f"  N={n:>5} {client:<14} FAILED: {exc}", flush=True)
                    failed.append({"client": client, "n": n, "failed": str(exc)[:500]})
                    with contextlib.suppress(Exception):
                        server.reset()
                    continue
                results.append(r)
                if partial is not None:
                    partial.write_text(json.dumps({"runs": results, "failed": failed}, indent=1))
                print(
                    f"  N={n:>5} {client:<14} {r['polls_per_s']:>6} polls/s  "
                    f"{C.fmt(r['cpu_ms_per_poll'])} ms/poll  lag p99 {C.fmt(r['lag_p99_s'])} s  "
                    f"{C.fmt(r['rss_kib_per_trigger'], 1)} KiB/trigger  errors {r['errors']}",
                    flush=True,
                )
                if r["profile"] and r["profile"].get("samples"):
                    prof = r["profile"]
                    print(
                        f"    py-spy ({prof['samples']} busy samples), self by package: "
                        + ", ".join(f"{k} {v}%" for k, v in list(prof["self_by_package_pct"].items())[:10])
                    )
                    print("    inclusive: " + ", ".join(f"{k} {v}%" for k, v in prof["inclusive_pct"].items()))
                    print(
                        "    hottest leaves: "
                        + "; ".join(f"{k} {v}%" for k, v in list(prof["top_leaves_pct"].items())[:6])
                    )
        finally:
            for child in children:
                child.close()

    raw_runs = results
    results = aggregate(raw_runs)
    print()
    repeats = f", median of {args.repeat} interleaved repeats" if args.repeat > 1 else ""
    print(f"Triggerer scale, {args.rate:.0f} polls/s total, server: {server.kind}{repeats}")
    C.print_table(
        [
            "N",
            "client",
            "polls/s",
            "ms CPU/poll",
            "CPU util",
            "KiB/trigger",
            "lag p50 ms",
            "lag p99 ms",
            "lag max ms",
            "detect p50 s",
            "detect p99 s",
            "detected",
            "missed",
            "errors",
            "gc max ms",
        ],
        [
            [
                r["n"],
                r["client"],
                r["polls_per_s"],
                r["cpu_ms_per_poll"],
                r["cpu_util"],
                r["rss_kib_per_trigger"],
                None if r["lag_p50_s"] is None else r["lag_p50_s"] * 1000,
                None if r["lag_p99_s"] is None else r["lag_p99_s"] * 1000,
                None if r["lag_max_s"] is None else r["lag_max_s"] * 1000,
                r["detect_p50_s"],
                r["detect_p99_s"],
                r["detected"],
                r["missed"],
                r["errors"],
                r["gc_pause_max_s"] * 1000,
            ]
            for r in results
        ],
    )

    def get(client: str, n: int) -> dict[str, Any] | None:
        return next((r for r in results if r["client"] == client and r["n"] == n), None)

    per_n: dict[str, Any] = {}
    print()
    print("Ratios for ours (CPU per poll, memory per trigger):")
    for n in ns:
        ours = get("ours", n)
        if ours is None:
            continue
        row: dict[str, Any] = {}
        for other in ("http_sensor", "aiohttp", "httpx", "httpx_aiohttp"):
            o = get(other, n)
            if o is not None:
                row[f"cpu_vs_{other}"] = C.ratio(ours["cpu_ms_per_poll"], o["cpu_ms_per_poll"])
                row[f"rss_vs_{other}"] = C.ratio(ours["rss_kib_per_trigger"], o["rss_kib_per_trigger"])
        row["lag_p99_s"] = ours["lag_p99_s"]
        harness_n = get("harness", n)
        if harness_n is not None:  # the wrapper's own share of every client's memory per trigger
            row["rss_harness_kib"] = harness_n["rss_kib_per_trigger"]
        per_n[str(n)] = row
        print(f"  N={n}: " + ", ".join(f"{k}={C.fmt(v)}" for k, v in row.items()))

    top = max(ns)
    ours, sensor, floor, bare = (get(c, top) for c in ("ours", "http_sensor", "aiohttp", "httpx"))
    bare_n = top
    if bare is None:
        # Bare httpx can collapse at large N (see README); compare at the largest N it finished.
        done = [n for n in ns if get("httpx", n) is not None and get("ours", n) is not None]
        if done:
            bare_n = max(done)
            bare = get("httpx", bare_n)
            ours_at_bare = get("ours", bare_n)
        else:
            ours_at_bare = None
    else:
        ours_at_bare = ours

    def cpu(r: dict[str, Any] | None) -> float | None:
        return None if r is None else r["cpu_ms_per_poll"]

    comparable, reasons = comparability(results, [top]) if args.quick else (None, [])
    if args.quick and failed:
        comparable, reasons = False, [*reasons, *(f"{f['client']} N={f['n']} did not finish" for f in failed)]
    if args.quick:
        print()
        if comparable:
            print(f"Quick run: comparable with a full run's N={top} row (per_n['{top}']), within ~15 %.")
        else:
            print(f"Quick run: NOT comparable with a full run ({'; '.join(reasons)}).")
    harness = get("harness", top)
    figures = {
        "n": top,
        "cpu_per_poll_vs_http_sensor": C.ratio(cpu(ours), cpu(sensor)),
        "cpu_per_poll_vs_aiohttp_floor": C.ratio(cpu(ours), cpu(floor)),
        "cpu_per_poll_vs_bare_httpx": C.ratio(cpu(ours_at_bare), cpu(bare)),
        "bare_httpx_n": bare_n if bare is not None else None,
        "loop_lag_p99_s": None if ours is None else ours["lag_p99_s"],
        "rss_per_trigger_vs_http_sensor": C.ratio(
            None if ours is None else ours["rss_kib_per_trigger"],
            None if sensor is None else sensor["rss_kib_per_trigger"],
        ),
        "detect_latency_p99_s": None if ours is None else ours["detect_p99_s"],
        "cpu_ms_per_poll": {r["client"]: r["cpu_ms_per_poll"] for r in results if r["n"] == top},
        "per_n": per_n,
        "failed_runs": [f"{f['client']} N={f['n']}" for f in failed],
        "repeat": args.repeat,
        "quick": bool(args.quick),
        "server": server.kind,
        "loadavg_1m_start": load_at_start,
        "loadavg_1m": C.machine_info().get("loadavg_1m"),
        "comparable_with_full": comparable,
        "not_comparable_because": reasons,
        "rss_kib_per_trigger_harness": None if harness is None else harness["rss_kib_per_trigger"],
    }
    if args.out:
        Path(args.out).write_text(json.dumps({"figures": figures, "runs": results, "raw_runs": raw_runs}, indent=1))
    default_run = not (args.quick or args.n or args.clients or args.window or args.no_runner)
    if args.save or (default_run and not args.plot):
        plot_path = Path(args.plot) if args.plot else C.HERE / "triggerer_scale.png"
        plot(results, plot_path, failed)
        (C.HERE / "results").mkdir(exist_ok=True)
        (C.HERE / "results" / "triggerer_scale.json").write_text(
            json.dumps(
                {
                    "machine": C.machine_info(),
                    "figures": figures,
                    "runs": results,
                    "raw_runs": raw_runs,
                    "failed": failed,
                },
                indent=1,
            )
        )
        print(f"plot: {plot_path}; figures: benchmarks/results/triggerer_scale.json")
    elif args.plot:
        plot(results, Path(args.plot), failed)
    if not args.keep and not args.py_spy and not failed:
        shutil.rmtree(scratch, ignore_errors=True)
    else:
        print(f"client logs kept in {scratch}")
    C.emit_json(figures)


if __name__ == "__main__":
    main()
