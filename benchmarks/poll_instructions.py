"""Instructions per poll, layer by layer, counted by valgrind (callgrind): CPU per poll that load
on the machine cannot move.

``triggerer_scale.py`` measures CPU time, which other processes on a shared VM inflate by 10-30 %
(cache and frequency effects), so ratios near a target flip from run to run. This counts the
client's user-space instructions instead: the same code gives the same count (within ~1 %) on a
busy or a quiet machine. Kernel time (syscalls) is not in it; every client here makes the same
syscalls per poll except HttpSensorTrigger, which also opens a connection per poll.

The client runs under ``valgrind --tool=callgrind`` (one process, pinned to core 0; the emulator
and the HttpSensorTrigger shim run natively on core 1). Each layer polls ``--warm`` times
unmeasured (connection set-up, lazy imports, connection lookup), then ``--polls`` measured polls;
the window's edges are calls to ``os.getppid()`` (``--dump-before=os_getppid``), counted from
the requests aiohttp starts, so every layer is cut at the same point of a poll.

Layers (``--layers``):
  floor        one poll of the floor trigger: shared aiohttp.ClientSession, post(json=) + r.json()
  hook         CometHook.aget_task: our whole poll, request to RunwayTask
  t_floor      the floor trigger (benchmarks/_bare_triggers.py) in TriggerRunner.run_trigger
  t_ours       RunwayTaskTrigger in TriggerRunner.run_trigger (greenback portal, log context, span)
  t_sensor     HttpSensorTrigger in TriggerRunner.run_trigger, through the 404-until-done shim
  t_httpx / t_httpx_aiohttp   the bare httpx peers, likewise
The t_* layers are what ``triggerer_scale.py`` compares; ``--concurrency`` triggers each.

Usage: python benchmarks/poll_instructions.py [--polls 400] [--layers floor,hook,t_floor,t_ours]
About 1-2 s per poll-layer and 100 polls on this machine (valgrind runs ~50x slower).
The last line printed is JSON: {"instructions_per_poll": {layer: n}, "vs_floor": {...}}.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C

LAYERS = ("floor", "hook", "t_floor", "t_ours", "t_sensor", "t_httpx", "t_httpx_aiohttp")
DEFAULT_LAYERS = "floor,hook,t_floor,t_ours,t_sensor"
TRIGGER_CLIENT = {
    "t_floor": "aiohttp",
    "t_ours": "ours",
    "t_sensor": "http_sensor",
    "t_httpx": "httpx",
    "t_httpx_aiohttp": "httpx_aiohttp",
}
# Which per-poll figure each layer is compared with.
FLOOR_OF = {"hook": "floor", "floor": "floor"} | {t: "t_floor" for t in TRIGGER_CLIENT}


# =============================================================================================
# Child: runs under callgrind
# =============================================================================================


def _child(cfg: dict[str, Any]) -> None:
    import logging

    logging.basicConfig(stream=sys.stderr, level=logging.INFO)  # as a triggerer logs (see triggerer_scale)

    import _bare_triggers as B
    import aiohttp
    from airflow.jobs.triggerer_job_runner import TriggerRunner

    for client in {TRIGGER_CLIENT.get(layer, "ours") for layer in cfg["layers"]} | {"aiohttp"}:
        B.preload(client)

    import httpx

    mark = os.getppid  # callgrind dumps its counters when this is entered
    state: dict[str, Any] = {"count": 0, "edges": [], "done": None, "via": "aiohttp"}

    def counting(via: str, original: Any) -> Any:
        def counted(self: Any, *args: Any, **kwargs: Any) -> Any:
            # Plain function returning the original coroutine: no extra await layer in the measure.
            if state["via"] == via:
                state["count"] += 1
                edges = state["edges"]
                if edges and state["count"] == edges[0]:
                    edges.pop(0)
                    mark()
                    if not edges and not state["done"].done():
                        state["done"].set_result(None)
            return original(self, *args, **kwargs)

        return counted

    # Polls are counted where each client's requests start: aiohttp's, or httpx's for the httpx peers.
    aiohttp.ClientSession._request = counting("aiohttp", aiohttp.ClientSession._request)  # type: ignore[method-assign]
    httpx.AsyncClient.send = counting("httpx", httpx.AsyncClient.send)  # type: ignore[method-assign]

    runner = TriggerRunner()
    runner.events = []  # type: ignore[assignment]
    task_ids: list[str] = cfg["task_ids"]

    async def layer(name: str) -> None:
        state["count"] = 0
        state["via"] = "httpx" if name in ("t_httpx", "t_httpx_aiohttp") else "aiohttp"
        state["edges"] = [cfg["warm"], cfg["warm"] + cfg["polls"]]
        state["done"] = asyncio.get_running_loop().create_future()
        if name in TRIGGER_CLIENT:
            client = TRIGGER_CLIENT[name]
            url = cfg["shim_url"] if client == "http_sensor" else cfg["url"]
            tasks = []
            for i in range(cfg["concurrency"]):
                tid = len(runner.triggers) + 1
                trig = B.make_trigger(client, url, task_ids[i % len(task_ids)], cfg["poll_interval"])
                trig.trigger_id = tid
                runner.triggers[tid] = {"task": None, "is_watcher": False, "name": f"{name}-{tid}", "events": 0}  # type: ignore[typeddict-item]
                tasks.append(asyncio.ensure_future(runner.run_trigger(tid, trig)))
            await _counted(state["done"], name, cfg)
        else:
            poll = await _poll_of(name, cfg, B)

            async def worker() -> None:
                while not state["done"].done():
                    await poll()

            tasks = [asyncio.ensure_future(worker()) for _ in range(cfg["concurrency"])]
            await _counted(state["done"], name, cfg)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        print(json.dumps({"layer": name, "count": state["count"]}), flush=True)

    async def main() -> None:
        for name in cfg["layers"]:
            await layer(name)
        await B.close_shared()
        from comet_provider.hooks.comet import close_shared_async_client

        await close_shared_async_client()

    asyncio.run(main())


async def _counted(done: asyncio.Future[None], name: str, cfg: dict[str, Any]) -> None:
    """Until the layer's polls are counted; a layer whose requests are not counted fails, not hangs."""
    try:
        await asyncio.wait_for(asyncio.shield(done), cfg["layer_timeout"])
    except asyncio.TimeoutError:
        raise SystemExit(f"layer {name}: {cfg['warm'] + cfg['polls']} polls not counted in time") from None


async def _poll_of(name: str, cfg: dict[str, Any], B: Any) -> Any:
    task_id = cfg["task_ids"][0]
    if name == "floor":
        trig = B.AiohttpTrigger(f"{cfg['url']}/runway/feed", task_id, 0.0)
        return trig.poll
    if name == "hook":
        from comet_provider.hooks.comet import CometHook

        hook = CometHook()

        async def poll() -> Any:
            return await hook.aget_task(task_id)

        return poll
    raise SystemExit(f"unknown layer {name!r}")


# =============================================================================================
# Parent
# =============================================================================================


def _dump_total(path: Path) -> int:
    for line in path.read_text().splitlines():
        if line.startswith(("summary:", "totals:")):
            return int(line.split()[1])
    raise RuntimeError(f"no totals in {path}")


def measure(args: argparse.Namespace, layers: list[str]) -> dict[str, float]:
    """Instructions per measured poll for each layer (one callgrind run for all of them)."""
    from triggerer_scale import Shim, Submitter

    valgrind = shutil.which("valgrind")
    if valgrind is None:
        raise SystemExit("valgrind not found (apt-get install valgrind)")
    scratch = Path(tempfile.mkdtemp(prefix="comet-bench-instr-"))
    try:
        with C.Server(render_seconds=36000) as server, Shim(server.url) as shim:
            task_ids = Submitter(server.url).submit(max(1, min(args.concurrency, 20)))
            cfg = {
                "url": server.url,
                "shim_url": shim.url,
                "task_ids": task_ids,
                "layers": layers,
                "warm": args.warm,
                "polls": args.polls,
                "concurrency": args.concurrency,
                "poll_interval": args.poll_interval,
                # Under valgrind a poll takes ~50x its native time; a stuck layer fails after this.
                "layer_timeout": 60 + (args.warm + args.polls) * 0.5,
            }
            env = C.scratch_airflow_env(scratch / "airflow", C.comet_conn_env(server.url))
            env.update(
                {k: v.replace(server.url, shim.url) for k, v in C.comet_conn_env(server.url).items() if "HTTP" in k}
            )
            if args.src:  # another checkout of comet_provider (e.g. the code before a change)
                env["PYTHONPATH"] = os.pathsep.join([str(Path(args.src).resolve()), env["PYTHONPATH"]])
            env["PYTHONHASHSEED"] = "0"  # the same dict layouts, so the same counts, run to run
            out = scratch / "cg.out"
            cmd = [
                valgrind,
                "--tool=callgrind",
                "--dump-before=os_getppid",
                f"--callgrind-out-file={out}",
                sys.executable,
                __file__,
                "--child",
                json.dumps(cfg),
            ]
            if shutil.which("taskset"):
                cmd = ["taskset", "-c", str(C.CLIENT_CORE), *cmd]
            t0 = time.monotonic()
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=args.timeout)
            if proc.returncode != 0:
                raise SystemExit(f"client under valgrind failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
            print(f"  callgrind run: {time.monotonic() - t0:.0f} s", flush=True)
        # Dump k ends at mark k: per layer, mark 2i+1 ends the warm-up, 2i+2 the measured window.
        dumps = sorted(
            (p for p in scratch.glob("cg.out.*") if re.fullmatch(r"cg\.out\.\d+", p.name)),
            key=lambda p: int(p.name.rsplit(".", 1)[1]),
        )
        if len(dumps) < 2 * len(layers):
            raise SystemExit(f"expected {2 * len(layers)} callgrind dumps, found {len(dumps)}")
        return {name: _dump_total(dumps[2 * i + 1]) / args.polls for i, name in enumerate(layers)}
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--polls", type=int, default=400, help="measured polls per layer")
    parser.add_argument("--warm", type=int, default=30, help="unmeasured polls first, per layer")
    parser.add_argument("--concurrency", type=int, default=1, help="pollers (or triggers) per layer")
    parser.add_argument("--poll-interval", type=float, default=0.001, help="seconds, for the t_* layers")
    parser.add_argument("--layers", default=DEFAULT_LAYERS, help=f"comma list from {','.join(LAYERS)}")
    parser.add_argument("--runs", type=int, default=1, help="callgrind runs; per-layer medians")
    parser.add_argument("--src", default=None, metavar="DIR", help="import comet_provider from DIR instead")
    parser.add_argument("--timeout", type=float, default=3600)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(json.loads(args.child))
        return
    layers = [x for x in args.layers.split(",") if x]
    unknown = set(layers) - set(LAYERS)
    if unknown:
        parser.error(f"unknown layers {sorted(unknown)}")
    C.pin(C.SERVER_CORE)
    print(
        f"callgrind: {args.polls} polls per layer after {args.warm} warm-up polls, concurrency "
        f"{args.concurrency}; load {C.machine_info().get('loadavg_1m')}",
        flush=True,
    )
    runs = [measure(args, layers) for _ in range(args.runs)]
    per_poll = {name: C.median([r[name] for r in runs]) or 0.0 for name in layers}
    rows = []
    vs_floor: dict[str, float | None] = {}
    for name in layers:
        base = per_poll.get(FLOOR_OF[name])
        vs_floor[name] = C.ratio(per_poll[name], base)
        spread = max(r[name] for r in runs) / min(r[name] for r in runs) - 1 if len(runs) > 1 else None
        rows.append([name, per_poll[name] / 1000, vs_floor[name], spread])
    print()
    C.print_table(["layer", "k instructions / poll", "x its floor", "spread (max/min-1)"], rows)
    vs_sensor = C.ratio(per_poll.get("t_ours"), per_poll.get("t_sensor"))
    if vs_sensor is not None:
        print(f"\nt_ours / t_sensor = {vs_sensor:.3f} (user-space instructions only)")
    C.emit_json(
        {
            "instructions_per_poll": {k: round(v) for k, v in per_poll.items()},
            "vs_floor": vs_floor,
            "t_ours_vs_t_sensor": vs_sensor,
            "polls": args.polls,
            "concurrency": args.concurrency,
            "runs": args.runs,
        }
    )


if __name__ == "__main__":
    main()
