"""Shared pieces of the hook tests: the key, a fast retry policy, and the two ways to wait (sync and async)."""

from __future__ import annotations

import asyncio
import socket
import time
from typing import Any

from comet_provider.hooks.comet import CometHook
from comet_provider.models import RunwayTask
from comet_provider.utils.polling import RunwayWaiter, await_task, wait_sync
from comet_provider.utils.retry import RetryPolicy

SECRET = "sk-test-SECRET-0123456789abcdef"

#: Quick retries that still honour the emulator's (small) Retry-After.
FAST_RETRY = RetryPolicy(max_attempts=8, max_elapsed=30.0, initial_backoff=0.01, max_backoff=0.05, max_retry_after=0.2)

#: Every feed fault the emulator knows.
FEED_FAULT_KINDS = ["429", "500", "502_html", "503_html", "drop", "slow", "task_not_exist"]

#: Each feed fault once, up front (then the random ones): every kind is surely exercised.
SCRIPTED_FEED_FAULTS = [
    {"endpoint": "feed", "kind": kind, "count": 1}
    for kind in ("drop", "slow", "task_not_exist", "503_html", "500", "429")
]

POLL_INTERVAL = 0.05
MODES = ("sync", "async")


def new_waiter(hook: CometHook, task_id: str, submitted_at: float, timeout: float = 30.0) -> RunwayWaiter:
    return RunwayWaiter(
        task_id, poll_interval=POLL_INTERVAL, deadline=time.time() + timeout, submitted_at=submitted_at, log=hook.log
    )


def submit_and_wait_sync(hook: CometHook, video: str, prompt: str = "pixelated style", **kwargs: Any) -> RunwayTask:
    submitted_at = time.time()
    task = hook.submit_video2video(video, prompt, **kwargs)
    return wait_sync(hook, new_waiter(hook, task.task_id, submitted_at))


async def submit_and_wait_async(
    hook: CometHook, video: str, prompt: str = "pixelated style", **kwargs: Any
) -> RunwayTask:
    """The trigger's own wait (``await_task``), through the hook's async twins."""
    submitted_at = time.time()
    task = await hook.asubmit_video2video(video, prompt, **kwargs)
    return await await_task(hook, new_waiter(hook, task.task_id, submitted_at))


def run_flow(mode: str, hook: CometHook, video: str, prompt: str = "pixelated style", **kwargs: Any) -> RunwayTask:
    """Submit and wait through the sync or the async twins (the async ones inside ``async with hook``)."""
    if mode == "sync":
        with hook:
            return submit_and_wait_sync(hook, video, prompt, **kwargs)

    async def main() -> RunwayTask:
        async with hook:
            return await submit_and_wait_async(hook, video, prompt, **kwargs)

    return asyncio.run(main())


def closed_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
