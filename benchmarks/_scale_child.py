"""The triggerer-like client process of ``triggerer_scale.py``: N triggers in one event loop.

Started by the parent as ``python _scale_child.py CONFIG_JSON``; talks JSON lines (commands on
stdin, messages on the ``msg_fd`` pipe). Runs every trigger through Airflow's own
``TriggerRunner.run_trigger``, measures CPU, RSS, loop lag and GC over the window it is given.
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import json
import os
import sys
import time
from typing import Any

import _common as C


def run_child(cfg: dict[str, Any]) -> None:
    # Imports run where the parent runs (the server's core), so the next client can load while
    # the current one is measured; the process moves to the client core before its warm-up.
    msg_fd = int(cfg["msg_fd"])

    def send(kind: str, **payload: Any) -> None:
        os.write(msg_fd, (json.dumps({"kind": kind, **payload}) + "\n").encode())

    import logging

    import psutil

    # Logging as Airflow sets it up on import (structlog, INFO), as in a triggerer: per-poll log
    # lines (ours: progress; HttpSensorTrigger: a warning per 404) cost what they cost there. The
    # output goes to this process's log file.
    logging.basicConfig(stream=sys.stderr, level=logging.INFO)

    import _bare_triggers as B
    from airflow.jobs.triggerer_job_runner import TriggerRunner
    from airflow.triggers.base import BaseTrigger

    client: str = cfg["client"]
    url: str = cfg["url"]

    def make_trigger(task_id: str, poll_interval: float) -> BaseTrigger:
        return B.make_trigger(client, url, task_id, poll_interval)

    proc = psutil.Process()
    events: list[tuple[str, float, str]] = []
    id_to_task: dict[int, str] = {}
    errors: list[str] = []
    use_runner = bool(cfg.get("runner", True))

    class TimedEvents(list):  # type: ignore[type-arg]
        """Stands in for TriggerRunner.events: records when each event was queued."""

        def append(self, entry: Any) -> None:
            payload = getattr(entry.event, "payload", None)
            st = payload.get("status", "") if isinstance(payload, dict) else str(payload)
            events.append((id_to_task.get(entry.trigger_id, "?"), time.time(), str(st)))

    runner = TriggerRunner()
    runner.events = TimedEvents()  # type: ignore[assignment]

    async def drive(trigger_id: int, trigger: BaseTrigger) -> None:
        try:
            if use_runner:
                await runner.run_trigger(trigger_id, trigger)
            else:
                async for ev in trigger.run():
                    payload = ev.payload
                    st = payload.get("status", "") if isinstance(payload, dict) else str(payload)
                    events.append((id_to_task[trigger_id], time.time(), str(st)))
                    break
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # record, keep the others running
            errors.append(f"{type(exc).__name__}: {exc}"[:300])

    next_id = [0]

    def start(task_id: str, poll_interval: float) -> asyncio.Task[None]:
        next_id[0] += 1
        tid = next_id[0]
        id_to_task[tid] = task_id
        trig = make_trigger(task_id, poll_interval)
        trig.trigger_id = tid
        runner.triggers[tid] = {"task": None, "is_watcher": False, "name": f"bench-{tid}", "events": 0}  # type: ignore[typeddict-item]
        t = asyncio.get_running_loop().create_task(drive(tid, trig))
        runner.triggers[tid]["task"] = t
        return t

    B.preload(client)  # its modules load now, not on the first poll
    send("loaded")

    warm = json.loads(sys.stdin.readline())
    C.pin(C.CLIENT_CORE)
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)

    async def warmup() -> None:
        # One full poll path per client (connection lookup, shared pool, lazy imports) before
        # the baseline RSS; the warm-up tasks are already finished, so each trigger yields at once.
        for task_id in warm["warmup_tasks"]:
            await asyncio.wait_for(start(task_id, 0.0 if client == "harness" else 0.2), 60)

    loop.run_until_complete(warmup())
    warm_errors = list(errors)
    errors.clear()
    events.clear()
    gc.collect()
    rss0 = proc.memory_info().rss
    send("ready", rss=rss0, warm_events=len(warm["warmup_tasks"]), warm_errors=warm_errors)

    plan = json.loads(sys.stdin.readline())
    tasks: list[str] = plan["tasks"]
    start_at: float = plan["start_at"]
    n = len(tasks)
    interval: float = plan["poll_interval"]
    settle: float = plan["settle"]
    window: float = plan["window"]
    parts: int = plan.get("parts", 1)

    lag: list[float] = []
    rss_samples: list[int] = []
    measuring = [False]

    # Garbage-collector pauses in the window: how much of the loop lag they explain.
    gc_pauses: list[tuple[int, float]] = []
    gc_ends: list[float] = []  # when each pause ended (wall clock), to place it in a part
    gc_started = [0.0]

    def on_gc(phase: str, info: dict[str, Any]) -> None:
        if not measuring[0]:
            return
        if phase == "start":
            gc_started[0] = time.perf_counter()
        elif gc_started[0]:
            gc_pauses.append((int(info.get("generation", -1)), time.perf_counter() - gc_started[0]))
            gc_ends.append(time.time())

    gc.callbacks.append(on_gc)

    async def lag_probe() -> None:
        while True:
            t0 = time.perf_counter()
            await asyncio.sleep(0.05)
            if measuring[0]:
                lag.append(time.perf_counter() - t0 - 0.05)

    async def rss_probe() -> None:
        while True:
            if measuring[0]:
                rss_samples.append(proc.memory_info().rss)
            await asyncio.sleep(0.5)

    async def main() -> None:
        probes = [loop.create_task(lag_probe()), loop.create_task(rss_probe())]
        running: list[asyncio.Task[None]] = []
        await asyncio.sleep(max(0.0, start_at - time.time()))
        t_start = time.time()
        # Staggered creation: trigger i starts at i/N of one interval, so polls spread evenly.
        for i, task_id in enumerate(tasks):
            due = t_start + interval * i / n
            if due > time.time() + 0.002:
                await asyncio.sleep(due - time.time())
            running.append(start(task_id, interval))
        await asyncio.sleep(max(0.0, t_start + interval + settle - time.time()))
        gc.collect()
        measuring[0] = True
        waited0 = _runq_wait_s()
        cpu0, wall0 = time.process_time(), time.time()
        send("mark", phase="start", t=wall0)
        # The window in equal parts, the parent counting polls at each mark: CPU per poll per
        # part shows how steady the figure was (other load on the machine, a GC burst).
        cpu_marks, wall_marks = [cpu0], [wall0]
        for k in range(parts):
            await asyncio.sleep(max(0.0, wall0 + window * (k + 1) / parts - time.time()))
            cpu_marks.append(time.process_time())
            wall_marks.append(time.time())
            if k + 1 < parts:
                send("mark", phase=f"part{k + 1}", t=time.time())
        cpu1, wall1 = cpu_marks[-1], time.time()
        waited1 = _runq_wait_s()
        measuring[0] = False
        send("mark", phase="end", t=wall1)
        rss_end = proc.memory_info().rss
        alive = sum(not t.done() for t in running)
        # Report first, then tear down: a client whose pool has collapsed can take minutes to
        # cancel thousands of requests, and that is not part of the measurement.
        send(
            "result",
            cpu_s=cpu1 - cpu0,
            cpu_marks=cpu_marks,
            gc_s_parts=[
                sum(d for (_g, d), end in zip(gc_pauses, gc_ends, strict=True) if lo <= end < hi)
                for lo, hi in itertools.pairwise(wall_marks)
            ],
            runq_wait_s=None if waited0 is None or waited1 is None else waited1 - waited0,
            window_s=wall1 - wall0,
            t_window_start=wall0,
            t_window_end=wall1,
            rss0=rss0,
            rss_peak=max([*rss_samples, rss_end]),
            rss_end=rss_end,
            lag=lag,
            events=events,
            alive_at_end=alive,
            gc_pause_max_s=max((d for _g, d in gc_pauses), default=0.0),
            gc_pause_total_s=sum(d for _g, d in gc_pauses),
            gc_gen2_runs=sum(1 for g, _d in gc_pauses if g == 2),
            gc_objects_end=len(gc.get_objects()),
            errors=len(errors),
            error_sample=errors[:3],
        )
        for t in [*running, *probes]:
            t.cancel()
        # asyncio.wait does not wait for cancellation to finish past its timeout (wait_for does).
        await asyncio.wait([*running, *probes], timeout=10)
        await B.close_shared()

    loop.run_until_complete(main())
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # leftover tasks of a collapsed client would only slow the exit down


def _runq_wait_s() -> float | None:
    """Seconds this process's main thread has waited for a CPU while runnable (Linux schedstat):
    time other processes took from it, which no CPU-time figure shows."""
    try:
        with open("/proc/self/schedstat") as fh:
            return int(fh.read().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return None


if __name__ == "__main__":
    run_child(json.loads(sys.argv[1]))
