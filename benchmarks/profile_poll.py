"""Where one poll's CPU goes: our trigger's poll path, layer by layer, against the emulator.

Not one of the fixed benchmarks: a diagnosis tool for ``triggerer_scale.py``'s CPU-per-poll
figure. Each layer runs ``--polls`` polls of one render from ``--concurrency`` coroutines on
one event loop (this process pinned to core 0, the emulator to core 1), and reports process
CPU per poll; then cProfile splits our full poll (``CometHook.aget_task``) by package.

Layers:
  aiohttp_json     shared aiohttp.ClientSession: post(json=) + await r.json()   (the floor)
  aiohttp_bytes    the same, body read as bytes and parsed with json.loads
  httpx_aiohttp    shared httpx.AsyncClient over httpx_aiohttp.AiohttpTransport, content=
  httpx            shared httpx.AsyncClient with its own transport (httpcore)
  hook_arequest    CometHook._arequest (the loop's aiohttp pool, no httpx objects, + _answer)
  hook_aget_task   CometHook.aget_task (+ RunwayTask.from_feed): the trigger's poll
  proposed_aiohttp the hook's own mapping (_answer + RunwayTask.from_feed) over a bare shared
                   aiohttp.ClientSession (what the hook has done since its poll left httpx)
  httpx_aiohttp_tuned  httpx over httpx-aiohttp with a prebuilt httpx.URL and no cookie jar
  trigger          RunwayTaskTrigger.run() with poll_interval=0 (+ RunwayWaiter)
  *_greenback      the same under greenback.ensure_portal(), as the triggerer runs triggers
                   (with --greenback)

Usage: python benchmarks/profile_poll.py [--polls 2000] [--concurrency 20] [--no-cprofile]
CPU time moves with other load on the machine; poll_instructions.py counts instructions instead.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import os
import pstats
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C

Poll = Callable[[], Awaitable[Any]]


def _submit_one(url: str) -> str:
    import urllib.request

    body = {"video": "https://example.invalid/a.mp4", "prompt": "profile", "model": "gen4", "options": {}}
    req = urllib.request.Request(
        f"{url}/runway/pro/video2video",
        data=json.dumps(body).encode(),
        headers={
            "Authorization": f"Bearer {C.API_KEY}",
            "X-Runway-Version": C.RUNWAY_VERSION,
            "Content-Type": "application/json",
        },
        method="POST",
    )
    with urllib.request.urlopen(req, timeout=30) as resp:  # loopback only
        return str(json.loads(resp.read())["data"]["task_id"])


async def _drive(poll: Poll, polls: int, concurrency: int, greenback_portal: bool) -> tuple[float, float]:
    left = [polls]

    async def worker() -> None:
        if greenback_portal:
            import greenback

            await greenback.ensure_portal()
        while left[0] > 0:
            left[0] -= 1
            await poll()

    for _ in range(min(20, polls)):  # warm: pool, lazy imports, connection settings
        await poll()
    cpu0, wall0 = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.process_time() - cpu0, time.perf_counter() - wall0


async def _layers(url: str, task_id: str, args: argparse.Namespace) -> list[list[Any]]:
    import aiohttp
    import httpx
    from httpx_aiohttp import AiohttpTransport

    from comet_provider.hooks.comet import FEED_PATH, CometHook, close_shared_async_client

    headers = {"Authorization": f"Bearer {C.API_KEY}", "X-Runway-Version": C.RUNWAY_VERSION}
    feed = f"{url}/runway/feed"
    session = aiohttp.ClientSession()
    hx_aio = httpx.AsyncClient(transport=AiohttpTransport())
    hx = httpx.AsyncClient()
    hook = CometHook()
    settings = await hook.aget_settings()
    content = json.dumps({"task_id": task_id}).encode()
    hx_headers = {**headers, "Content-Type": "application/json"}

    async def aiohttp_json() -> Any:
        async with session.post(feed, json={"task_id": task_id}, headers=headers) as r:
            return await r.json()

    async def aiohttp_bytes() -> Any:
        async with session.post(feed, data=content, headers=hx_headers) as r:
            return json.loads(await r.read())

    async def httpx_aiohttp() -> Any:
        return (await hx_aio.post(feed, content=content, headers=hx_headers)).json()

    async def httpx_own() -> Any:
        return (await hx.post(feed, content=content, headers=hx_headers)).json()

    async def hook_arequest() -> Any:
        return await hook._arequest(settings, FEED_PATH, {"task_id": task_id}, idempotent=True)

    async def hook_aget_task() -> Any:
        return await hook.aget_task(task_id)

    from comet_provider.hooks.comet import _answer
    from comet_provider.models import RunwayTask

    async def proposed_aiohttp() -> Any:
        async with session.post(feed, data=content, headers=settings.headers) as r:
            body = await r.read()
            answer = _answer(r.status, r.headers, body, settings, FEED_PATH)  # type: ignore[arg-type]
        return RunwayTask.from_feed(answer, task_id=task_id)

    class _NoCookies(httpx.Cookies):
        def extract_cookies(self, response: httpx.Response) -> None:
            return None

    tuned = httpx.AsyncClient(transport=AiohttpTransport())
    tuned._cookies = _NoCookies()  # type: ignore[attr-defined]
    feed_url = httpx.URL(feed)

    async def httpx_aiohttp_tuned() -> Any:
        return (await tuned.post(feed_url, content=content, headers=hx_headers)).json()

    layers: dict[str, Poll] = {
        "aiohttp_json": aiohttp_json,
        "aiohttp_bytes": aiohttp_bytes,
        "httpx_aiohttp": httpx_aiohttp,
        "httpx": httpx_own,
        "hook_arequest": hook_arequest,
        "hook_aget_task": hook_aget_task,
        "proposed_aiohttp": proposed_aiohttp,
        "httpx_aiohttp_tuned": httpx_aiohttp_tuned,
    }
    # Interleaved rounds, median per layer: other load on the machine hits every layer alike.
    samples: dict[str, list[tuple[float, float]]] = defaultdict(list)
    portals = (False, True) if args.greenback else (False,)
    for _round in range(args.rounds):
        for name, poll in layers.items():
            for portal in portals:
                cpu, wall = await _drive(poll, args.polls, args.concurrency, portal)
                samples[name + ("_greenback" if portal else "")].append((cpu * 1000 / args.polls, args.polls / wall))
        samples["trigger (RunwayTaskTrigger.run)"].append(await _trigger_row(task_id, args))
    rows: list[list[Any]] = []
    for label, values in samples.items():
        cpu_ms = statistics.median(v[0] for v in values)
        rows.append([label, cpu_ms, statistics.median(v[1] for v in values), min(v[0] for v in values)])
    await session.close()
    await hx_aio.aclose()
    await hx.aclose()
    await tuned.aclose()
    await close_shared_async_client()
    return rows


async def _trigger_row(task_id: str, args: argparse.Namespace) -> tuple[float, float]:
    """The whole trigger loop; polls counted by wrapping the hook's poll."""
    from comet_provider.hooks.comet import CometHook
    from comet_provider.triggers.runway import RunwayTaskTrigger

    count = [0]
    original = CometHook.aget_task

    async def counting(self: CometHook, runway_task_id: str, **kw: Any) -> Any:
        count[0] += 1
        if count[0] > args.polls:
            raise asyncio.CancelledError
        return await original(self, runway_task_id, **kw)

    CometHook.aget_task = counting  # type: ignore[method-assign]

    async def one() -> None:
        trig = RunwayTaskTrigger(runway_task_id=task_id, poll_interval=0.0)
        try:
            async for _ in trig.run():
                break
        except asyncio.CancelledError:
            pass

    try:
        cpu0, wall0 = time.process_time(), time.perf_counter()
        await asyncio.gather(*(one() for _ in range(args.concurrency)))
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    finally:
        CometHook.aget_task = original  # type: ignore[method-assign]
    polls = min(count[0], args.polls) or 1
    return cpu * 1000 / polls, polls / wall


def _package(filename: str) -> str:
    parts = filename.replace(os.sep, "/")
    for key in (
        "comet_provider",
        "httpx_aiohttp",
        "httpx",
        "httpcore",
        "aiohttp",
        "yarl",
        "multidict",
        "asyncio",
        "json",
        "enum",
        "logging",
        "structlog",
        "greenback",
        "anyio",
        "airflow",
        "dataclasses",
        "typing",
        "email",
        "urllib",
    ):
        if f"/{key}/" in parts or parts.endswith(f"/{key}.py"):
            return key
    if filename.startswith("~") or filename.startswith("<"):
        return "builtins (C)"
    return "other"


async def _cprofile(task_id: str, args: argparse.Namespace) -> list[list[Any]]:
    from comet_provider.hooks.comet import CometHook

    hook = CometHook()
    for _ in range(20):
        await hook.aget_task(task_id)
    prof = cProfile.Profile()
    prof.enable()
    left = [args.polls]

    async def worker() -> None:
        while left[0] > 0:
            left[0] -= 1
            await hook.aget_task(task_id)

    await asyncio.gather(*(worker() for _ in range(args.concurrency)))
    prof.disable()
    from comet_provider.hooks.comet import close_shared_async_client

    await close_shared_async_client()
    stats = pstats.Stats(prof)
    by_pkg: dict[str, float] = defaultdict(float)
    total = 0.0
    for (filename, _line, _name), (_cc, _nc, tottime, _ct, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        by_pkg[_package(filename)] += tottime
        total += tottime
    rows = [[pkg, t * 1000 / args.polls, 100 * t / total] for pkg, t in sorted(by_pkg.items(), key=lambda kv: -kv[1])]
    print("\ncProfile of CometHook.aget_task: own time by package (cProfile inflates absolute times)")
    C.print_table(["package", "ms/poll (profiled)", "% of poll"], rows)
    print("\nTop functions by own time:")
    stats.sort_stats("tottime").print_stats(args.top)
    print("\nTop functions by cumulative time:")
    stats.sort_stats("cumulative").print_stats(args.top)
    return rows


async def _memory(url: str, server: C.Server, args: argparse.Namespace) -> None:
    """Bytes per waiting trigger, by allocation site (tracemalloc), ours vs the bare aiohttp floor.

    N triggers each poll once and then sleep (poll_interval 1 h), iterated bare (no runner);
    the difference between snapshots before and after, divided by N, grouped by source line.
    """
    import gc
    import tracemalloc

    import aiohttp

    from comet_provider.hooks.comet import close_shared_async_client
    from comet_provider.triggers.runway import RunwayTaskTrigger

    n = args.memory
    ids = [_submit_one(url) for _ in range(min(n, 50))]
    headers = {"Authorization": f"Bearer {C.API_KEY}", "X-Runway-Version": C.RUNWAY_VERSION}
    session = aiohttp.ClientSession()

    async def floor(task_id: str) -> None:
        while True:
            async with session.post(f"{url}/runway/feed", json={"task_id": task_id}, headers=headers) as r:
                await r.json()
            await asyncio.sleep(3600)

    async def ours(task_id: str) -> None:
        async for _ in RunwayTaskTrigger(runway_task_id=task_id, poll_interval=3600).run():
            return

    for name, make in (("aiohttp floor", floor), ("RunwayTaskTrigger", ours)):
        # warm: one of each, so imports, the connection lookup and the pool exist before
        warm = asyncio.ensure_future(make(ids[0]))
        await asyncio.sleep(0.5)
        gc.collect()
        feeds0 = server.feeds()
        tracemalloc.start(8)
        before = tracemalloc.take_snapshot()
        tasks = [asyncio.ensure_future(make(ids[i % len(ids)])) for i in range(n)]
        deadline = time.monotonic() + 120
        while server.feeds() - feeds0 < n and time.monotonic() < deadline:  # noqa: ASYNC110 - polls a counter
            await asyncio.sleep(0.2)
        await asyncio.sleep(0.5)
        gc.collect()
        after = tracemalloc.take_snapshot()
        tracemalloc.stop()
        stats = after.compare_to(before, "lineno")
        total = sum(st.size_diff for st in stats)
        print(f"\n{name}: {total / n / 1024:.1f} KiB per waiting trigger (tracemalloc, N={n}); top sites:")
        for st in stats[: args.top]:
            frame = st.traceback[0]
            where = f"{frame.filename.split('site-packages/')[-1].split('/work/main/')[-1]}:{frame.lineno}"
            print(f"  {st.size_diff / n:8.0f} B/trigger  {st.count_diff / n:5.1f} objs  {where}")
        for t in [*tasks, warm]:
            t.cancel()
        await asyncio.gather(*tasks, warm, return_exceptions=True)
    await session.close()
    await close_shared_async_client()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--polls", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds per layer (median)")
    parser.add_argument("--greenback", action="store_true", help="also run each layer in a greenback portal")
    parser.add_argument("--no-cprofile", action="store_true")
    parser.add_argument("--memory", type=int, default=0, metavar="N", help="only: bytes per waiting trigger")
    args = parser.parse_args()
    import logging

    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    with C.Server(render_seconds=3600) as server:
        os.environ.update(C.comet_conn_env(server.url))
        task_id = _submit_one(server.url)
        C.pin(C.CLIENT_CORE)
        if args.memory:
            asyncio.run(_memory(server.url, server, args))
            return
        print(
            f"server: {server.kind}; {args.rounds} rounds x {args.polls} polls per layer, "
            f"{args.concurrency} concurrent; load {C.machine_info().get('loadavg_1m')}"
        )
        rows = asyncio.run(_layers(server.url, task_id, args))
        floor = rows[0][1]
        print()
        C.print_table(
            ["layer", "ms CPU/poll (median)", "min", "polls/s", "x aiohttp_json"],
            [[name, cpu, low, rate, cpu / floor] for name, cpu, rate, low in rows],
        )
        if not args.no_cprofile:
            asyncio.run(_cprofile(task_id, args))
    C.emit_json({"layers_ms_cpu_per_poll": {r[0]: round(r[1], 4) for r in rows}})


if __name__ == "__main__":
    main()
