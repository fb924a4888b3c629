"""RunwayTaskTrigger.run() against the emulator: success, failure, timeout, faults, and a clean shutdown."""

from __future__ import annotations

import asyncio
import gc
import json
import threading
import time
import warnings
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from unittest import mock

import aiohttp
import pytest
from airflow.sdk import BaseHook, Connection

from comet_provider.exceptions import RunwayTaskFailedError, RunwayTaskNotFoundError, RunwayTaskTimeoutError
from comet_provider.hooks.comet import CometHook
from comet_provider.models import RunwayStatus
from comet_provider.testing import CometEmulator
from comet_provider.triggers import runway as trigger_module
from comet_provider.triggers.runway import RunwayTaskTrigger
from comet_provider.utils.polling import task_from_event

from ._support import FAST_RETRY, FEED_FAULT_KINDS, SCRIPTED_FEED_FAULTS, SECRET


class FastRetryHook(CometHook):
    """The trigger's hook with quick retries (the trigger itself takes no retry policy)."""

    def __init__(self, comet_conn_id: str = CometHook.default_conn_name, **kwargs: Any) -> None:
        kwargs.setdefault("retry_policy", FAST_RETRY)
        super().__init__(comet_conn_id, **kwargs)


def run_checked(make: Callable[[], Awaitable[Any]]) -> tuple[Any, list[str], int]:
    """Run ``make()`` on a fresh event loop, as the triggerer would; return its result, every
    complaint about a client left open, and how many aiohttp sessions the run created.

    Complaints are (1) sessions created during the run and not closed when it ended, and
    (2) aiohttp's own "Unclosed client session/connector" reports (ResourceWarning or the
    loop's exception handler) for anything collected once the loop is gone.
    """
    complaints: list[str] = []
    sessions: list[aiohttp.ClientSession] = []
    original_init = aiohttp.ClientSession.__init__

    def recording_init(self: aiohttp.ClientSession, *args: Any, **kwargs: Any) -> None:
        original_init(self, *args, **kwargs)
        sessions.append(self)

    async def main() -> Any:
        asyncio.get_running_loop().set_exception_handler(lambda loop, ctx: complaints.append(str(ctx.get("message"))))
        return await asyncio.wait_for(make(), timeout=30)

    gc.collect()  # earlier garbage must not be blamed on this run
    with (
        warnings.catch_warnings(record=True) as caught,
        mock.patch.object(aiohttp.ClientSession, "__init__", recording_init),
    ):
        warnings.simplefilter("always")
        result = asyncio.run(main())
        complaints += [f"still open after the run: {session!r}" for session in sessions if not session.closed]
        for _ in range(3):
            gc.collect()
    complaints += [str(w.message) for w in caught]
    keep = ("still open", "Unclosed client session", "Unclosed connector")
    return result, [c for c in complaints if c.startswith(keep)], len(sessions)


async def only_event(trigger: RunwayTaskTrigger) -> dict[str, Any]:
    events = [event.payload async for event in trigger.run()]
    assert len(events) == 1
    json.dumps(events[0])  # stored as JSON by the triggerer
    return events[0]


def new_trigger(task_id: str, submitted_at: float, timeout: float = 30.0) -> RunwayTaskTrigger:
    return RunwayTaskTrigger(task_id, poll_interval=0.05, deadline=time.time() + timeout, submitted_at=submitted_at)


def submit(hook: CometHook, video: str, prompt: str = "pixelated style") -> tuple[str, float]:
    submitted_at = time.time()
    try:
        return hook.submit_video2video(video, prompt).task_id, submitted_at
    finally:
        hook.close()  # so that only the trigger's own connections are left to check


def test_unclosed_session_detector_works() -> None:
    """Positive control for :func:`run_checked`."""

    async def leak() -> None:
        aiohttp.ClientSession()

    _, complaints, sessions = run_checked(leak)
    assert sessions == 1
    assert complaints


def test_success_event_and_download(
    emu: CometEmulator,
    clip_url: str,
    clip_bytes: bytes,
    tmp_path: Path,
    hook: CometHook,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    task_id, submitted_at = submit(hook, clip_url)

    loop_thread = threading.get_ident()  # run_checked runs the loop on this thread

    # Below Airflow 3.3.2 common-compat does these sync lookups in a worker thread: allowed there.
    def blocking(original: Any) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            if threading.get_ident() == loop_thread:
                raise AssertionError("the trigger must not use blocking connection lookups")
            return original(*args, **kwargs)

        return call

    get_connection = BaseHook.get_connection.__func__  # type: ignore[attr-defined]
    monkeypatch.setattr(BaseHook, "get_connection", classmethod(blocking(get_connection)))
    monkeypatch.setattr(Connection, "extra_dejson", property(blocking(Connection.extra_dejson.fget)))  # type: ignore[attr-defined]
    event, complaints, sessions = run_checked(lambda: only_event(new_trigger(task_id, submitted_at)))
    monkeypatch.undo()

    assert complaints == []
    assert sessions >= 1  # the check above had something to look at
    assert event["status"] == "finished"
    assert event["runway_task_id"] == task_id
    done = task_from_event(event)
    assert done.status is RunwayStatus.SUCCEEDED
    assert done.raise_for_status() is done
    assert done.video_url is not None
    hook.download(done.video_url, tmp_path / "render.mp4")
    assert (tmp_path / "render.mp4").read_bytes() == clip_bytes
    assert emu.stats()["submissions"] == 1


def test_failed_event_for_a_safety_refusal(emu: CometEmulator, clip_url: str, hook: CometHook) -> None:
    task_id, submitted_at = submit(hook, clip_url, "[fail:SAFETY.INPUT.TEXT] something violent")
    event, complaints, sessions = run_checked(lambda: only_event(new_trigger(task_id, submitted_at)))
    assert complaints == []
    assert sessions >= 1  # the check above had something to look at
    assert event["status"] == "finished"
    failed = task_from_event(event)
    assert failed.status is RunwayStatus.FAILED
    with pytest.raises(RunwayTaskFailedError) as info:
        failed.raise_for_status()
    assert info.value.is_safety
    assert not info.value.retryable


def test_cancelled_render_is_a_failed_event(emu: CometEmulator, clip_url: str, hook: CometHook) -> None:
    task_id, submitted_at = submit(hook, clip_url, "[cancel] noir")
    event, _, _ = run_checked(lambda: only_event(new_trigger(task_id, submitted_at)))
    assert event["status"] == "finished"
    assert task_from_event(event).status is RunwayStatus.CANCELLED


def test_timeout_event_when_the_deadline_comes_first(emu: CometEmulator, clip_url: str, hook: CometHook) -> None:
    emu.configure(render_seconds=20)
    task_id, submitted_at = submit(hook, clip_url)
    event, complaints, sessions = run_checked(lambda: only_event(new_trigger(task_id, submitted_at, timeout=0.6)))
    assert complaints == []
    assert sessions >= 1  # the check above had something to look at
    assert event["status"] == "timeout"
    with pytest.raises(RunwayTaskTimeoutError) as info:
        task_from_event(event)
    assert info.value.runway_task_id == task_id
    # The render goes on remotely; the next try can wait on it again.
    assert emu.stats()["tasks"][task_id]["status"] in ("QUEUED", "IN_PROGRESS")


def test_transient_faults_do_not_end_the_wait(
    emu: CometEmulator, set_connection: Any, clip_url: str, hook: CometHook, monkeypatch: pytest.MonkeyPatch
) -> None:
    task_id, submitted_at = submit(hook, clip_url)
    set_connection(extra={"timeout": 0.5})
    emu.configure(
        faults={
            "rate": 0.35,
            "kinds": FEED_FAULT_KINDS,
            "endpoints": ["feed"],
            "retry_after": 0.05,
            "slow_seconds": 0.8,
            "seed": 11,
        },
        fail_next=SCRIPTED_FEED_FAULTS,
    )
    monkeypatch.setattr(trigger_module, "CometHook", FastRetryHook)
    event, complaints, sessions = run_checked(lambda: only_event(new_trigger(task_id, submitted_at)))
    assert complaints == []
    assert sessions >= 1  # the check above had something to look at
    assert event["status"] == "finished", event
    assert task_from_event(event).video_url
    faults = emu.stats()["faults"]
    for kind in ("drop", "slow", "task_not_exist", "503_html", "500", "429"):
        assert faults.get(kind, 0) >= 1, (kind, faults)


def test_triggers_share_the_loop_pool_and_close_it_at_the_end(
    emu: CometEmulator, clip_url: str, hook: CometHook
) -> None:
    quick_id, quick_at = submit(hook, clip_url)
    emu.configure(render_seconds=1.0)
    slow_id, slow_at = submit(hook, clip_url)

    async def both() -> list[dict[str, Any]]:
        # The first trigger ends (and leaves) while the second still polls through the same pool.
        return list(
            await asyncio.gather(only_event(new_trigger(quick_id, quick_at)), only_event(new_trigger(slow_id, slow_at)))
        )

    events, complaints, sessions = run_checked(both)
    assert complaints == []
    assert sessions == 1  # one connection pool for every trigger on the loop
    assert [task_from_event(e).status for e in events] == [RunwayStatus.SUCCEEDED] * 2
    assert [e["runway_task_id"] for e in events] == [quick_id, slow_id]


def test_wrong_key_ends_with_an_error_event_without_the_key(
    emu: CometEmulator, set_connection: Any, clip_url: str, hook: CometHook
) -> None:
    task_id, submitted_at = submit(hook, clip_url)
    set_connection(password="sk-wrong-key-000000")
    trigger = new_trigger(task_id, submitted_at)
    event, complaints, sessions = run_checked(lambda: only_event(trigger))
    assert complaints == []
    assert sessions >= 1  # the check above had something to look at
    assert event["status"] == "error"
    assert event["error_type"] == "CometAuthError"
    text = json.dumps(event) + repr(trigger) + json.dumps(trigger.serialize())
    assert "sk-wrong-key-000000" not in text
    assert SECRET not in text
    assert emu.stats(tasks=False)["auth_failures"] == 1


def test_wrong_id_ends_with_a_not_found_error_after_the_grace_period(
    emu: CometEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    class QuickGraceHook(FastRetryHook):
        def __init__(self, comet_conn_id: str = CometHook.default_conn_name, **kwargs: Any) -> None:
            super().__init__(comet_conn_id, not_found_grace=0.3, **kwargs)

    monkeypatch.setattr(trigger_module, "CometHook", QuickGraceHook)
    event, complaints, _ = run_checked(lambda: only_event(new_trigger("no-such-task", time.time())))
    assert complaints == []
    assert event["status"] == "error"
    with pytest.raises(RunwayTaskNotFoundError, match="no-such-task"):
        task_from_event(event)
    assert emu.stats(tasks=False)["feeds"] > 1  # "not visible yet" during the grace period
