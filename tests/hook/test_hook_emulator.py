"""CometHook end to end against the emulator over loopback: submit, poll, download; faults; test_connection."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from pathlib import Path
from typing import Any

import pytest

from comet_provider.exceptions import (
    CometAuthError,
    CometConnectionError,
    CometMalformedResponseError,
    CometSubmissionUncertainError,
)
from comet_provider.hooks.comet import CometHook
from comet_provider.models import RunwayStatus
from comet_provider.testing import CometEmulator
from comet_provider.utils.retry import RetryPolicy

from ._support import FAST_RETRY, FEED_FAULT_KINDS, MODES, SCRIPTED_FEED_FAULTS, SECRET, closed_port, run_flow

PLACEMENTS = ["video_url", "result_url", "output", "inner_video_url"]


def submit(mode: str, hook: CometHook, video: str, prompt: str = "pixelated style") -> Any:
    if mode == "sync":
        with hook:
            return hook.submit_video2video(video, prompt)

    async def main() -> Any:
        async with hook:
            return await hook.asubmit_video2video(video, prompt)

    return asyncio.run(main())


def get_task(mode: str, hook: CometHook, task_id: str, submitted_at: float | None = None) -> Any:
    if mode == "sync":
        with hook:
            return hook.get_task(task_id, submitted_at=submitted_at)

    async def main() -> Any:
        async with hook:
            return await hook.aget_task(task_id, submitted_at=submitted_at)

    return asyncio.run(main())


# -- end to end, with faults ------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("placement", PLACEMENTS)
def test_end_to_end_through_faults(
    emu: CometEmulator,
    set_connection: Any,
    clip_url: str,
    clip_bytes: bytes,
    tmp_path: Path,
    mode: str,
    placement: str,
) -> None:
    # A short request timeout, so that "slow" feed answers become client-side timeouts.
    set_connection(extra={"timeout": 0.5})
    emu.configure(
        url_placement=placement,
        faults={
            "rate": 0.3,
            "kinds": FEED_FAULT_KINDS,
            "endpoints": ["feed"],
            "retry_after": 0.05,
            "slow_seconds": 0.8,
            "seed": PLACEMENTS.index(placement) * 10 + MODES.index(mode),
        },
        fail_next=[{"endpoint": "submit", "kind": "429", "count": 2}, *SCRIPTED_FEED_FAULTS],
    )
    hook = CometHook(retry_policy=FAST_RETRY)
    done = run_flow(mode, hook, clip_url, "pixelated style", options={"structure_transformation": 0.5})

    assert done.status is RunwayStatus.SUCCEEDED
    assert done.video_url is not None and done.video_url.endswith(f"/renders/{done.task_id}.mp4")
    destination = tmp_path / "out" / "render.mp4"
    result = hook.download(done.video_url, destination)
    assert destination.read_bytes() == clip_bytes
    assert result.size_bytes == len(clip_bytes)

    stats = emu.stats()
    assert stats["submissions"] == 1
    assert stats["submit_attempts"] == 3
    assert list(stats["tasks"]) == [done.task_id]
    task = stats["tasks"][done.task_id]
    assert task["url_placement"] == placement
    assert task["options"] == {"structure_transformation": 0.5}
    assert task["status"] == "SUCCESS"
    # Every scripted fault was served (two 429s on submit, one of each kind on the feed).
    assert stats["faults"]["429"] >= 3
    for kind in ("drop", "slow", "task_not_exist", "503_html", "500"):
        assert stats["faults"].get(kind, 0) >= 1, (kind, stats["faults"])
    assert stats["auth_failures"] == 0


@pytest.mark.parametrize("mode", MODES)
def test_success_without_any_url_is_reported_not_hidden(emu: CometEmulator, clip_url: str, mode: str) -> None:
    emu.configure(url_placement="none")
    with pytest.raises(CometMalformedResponseError) as info:
        run_flow(mode, CometHook(retry_policy=FAST_RETRY), clip_url)
    assert "data.video_url" in str(info.value)
    assert emu.stats()["submissions"] == 1


@pytest.mark.parametrize("mode", MODES)
def test_failed_and_cancelled_renders_end_the_wait(emu: CometEmulator, clip_url: str, mode: str) -> None:
    hook = CometHook(retry_policy=FAST_RETRY)
    failed = run_flow(mode, hook, clip_url, "[fail:SAFETY.INPUT.TEXT] violent style")
    assert failed.status is RunwayStatus.FAILED
    assert failed.failure_code == "SAFETY.INPUT.TEXT"
    cancelled = run_flow(mode, CometHook(retry_policy=FAST_RETRY), clip_url, "[cancel] noir")
    assert cancelled.status is RunwayStatus.CANCELLED


# -- exact fault scenarios ------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_feed_two_html_503_then_success(emu: CometEmulator, clip_url: str, mode: str, hook: CometHook) -> None:
    submitted_at = time.time()
    task = hook.submit_video2video(clip_url, "noir")
    emu.configure(fail_next=[{"endpoint": "feed", "kind": "503_html", "count": 2}])
    current = get_task(mode, hook, task.task_id, submitted_at=submitted_at)
    assert current.task_id == task.task_id
    assert current.status in (RunwayStatus.PENDING, RunwayStatus.RUNNING)
    stats = emu.stats()
    assert stats["faults"] == {"503_html": 2}
    assert stats["feeds"] == 3


@pytest.mark.parametrize("mode", MODES)
def test_submit_429_twice_then_success(emu: CometEmulator, clip_url: str, mode: str, hook: CometHook) -> None:
    emu.configure(faults={"retry_after": 0.05}, fail_next=[{"endpoint": "submit", "kind": "429", "count": 2}])
    task = submit(mode, hook, clip_url)
    stats = emu.stats()
    assert stats["submit_attempts"] == 3
    assert stats["submissions"] == 1
    assert stats["faults"] == {"429": 2}
    assert list(stats["tasks"]) == [task.task_id]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("kind", ["drop", "500", "503_html"])
def test_submit_answer_lost_is_uncertain_and_not_retried(
    emu: CometEmulator, clip_url: str, mode: str, kind: str, hook: CometHook
) -> None:
    emu.configure(fail_next=[{"endpoint": "submit", "kind": kind, "count": 1}])
    with pytest.raises(CometSubmissionUncertainError) as info:
        submit(mode, hook, clip_url)
    assert "dashboard" in str(info.value)
    stats = emu.stats()
    assert stats["submit_attempts"] == 1
    assert stats["faults"] == {kind: 1}
    # The emulator faults before creating anything: no render was started, and none was retried.
    assert stats["submissions"] == 0


@pytest.mark.parametrize("mode", MODES)
def test_submit_timeout_is_uncertain(
    emu: CometEmulator, set_connection: Any, clip_url: str, mode: str, hook: CometHook
) -> None:
    # The answer comes after the client gave up: the client cannot know whether a render started.
    set_connection(extra={"timeout": 0.5})
    emu.configure(faults={"slow_seconds": 1.0}, fail_next=[{"endpoint": "submit", "kind": "slow", "count": 1}])
    with pytest.raises(CometSubmissionUncertainError) as info:
        submit(mode, hook, clip_url)
    assert isinstance(info.value.cause, CometConnectionError)
    assert "timed out" in str(info.value.cause)
    stats = emu.stats(tasks=False)
    assert stats["submit_attempts"] == 1
    assert stats["faults"] == {"slow": 1}


@pytest.mark.parametrize("mode", MODES)
def test_submit_to_a_closed_port_is_retried_then_fails_safely(
    emu: CometEmulator, set_connection: Any, clip_url: str, mode: str
) -> None:
    set_connection(host=f"http://127.0.0.1:{closed_port()}")
    policy = RetryPolicy(max_attempts=3, initial_backoff=0.01, max_backoff=0.02)
    with pytest.raises(CometConnectionError) as info:
        submit(mode, CometHook(retry_policy=policy), clip_url)
    assert not isinstance(info.value, CometSubmissionUncertainError)
    assert info.value.request_sent is False
    assert "127.0.0.1" in str(info.value)


@pytest.mark.parametrize("mode", MODES)
def test_wrong_key_is_an_auth_error(emu: CometEmulator, set_connection: Any, clip_url: str, mode: str) -> None:
    set_connection(password="sk-wrong-key-000000")
    with pytest.raises(CometAuthError) as info:
        submit(mode, CometHook(retry_policy=FAST_RETRY), clip_url)
    assert info.value.status_code == 401
    assert "sk-wrong-key-000000" not in str(info.value)
    stats = emu.stats()
    assert stats["submit_attempts"] == 1
    assert stats["auth_failures"] == 1


def test_download_survives_render_host_faults(
    emu: CometEmulator, clip_url: str, clip_bytes: bytes, tmp_path: Path, hook: CometHook
) -> None:
    done = run_flow("sync", hook, clip_url)
    assert done.video_url is not None
    emu.configure(
        fail_next=[
            {"endpoint": "download", "kind": "drop", "count": 1},
            {"endpoint": "download", "kind": "503_html", "count": 1},
            {"endpoint": "download", "kind": "500", "count": 1},
        ]
    )
    target = tmp_path / "render.mp4"
    hook.download(done.video_url, target)
    assert target.read_bytes() == clip_bytes
    assert emu.stats(tasks=False)["faults"] == {"drop": 1, "503_html": 1, "500": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["render.mp4"]


# -- test_connection ---------------------------------------------------------------------------------


def test_test_connection_true(emu: CometEmulator) -> None:
    ok, message = CometHook(retry_policy=FAST_RETRY).test_connection()
    assert ok is True
    assert emu.url in message
    assert SECRET not in message


def test_test_connection_wrong_key(emu: CometEmulator, set_connection: Any) -> None:
    set_connection(password="sk-wrong-key-000000")
    ok, reason = CometHook(retry_policy=FAST_RETRY).test_connection()
    assert ok is False
    assert "401" in reason
    assert "Password" in reason
    assert "sk-wrong-key-000000" not in reason
    assert SECRET not in reason


def test_test_connection_unreachable(emu: CometEmulator, set_connection: Any) -> None:
    set_connection(host=f"http://127.0.0.1:{closed_port()}")
    policy = RetryPolicy(max_attempts=2, initial_backoff=0.01, max_backoff=0.02)
    ok, reason = CometHook(retry_policy=policy).test_connection()
    assert ok is False
    assert "127.0.0.1" in reason


# -- the key never reaches the logs --------------------------------------------------------------------

EMULATOR_LOGGERS = ("comet_provider.testing", "aiohttp.access", "aiohttp.server", "aiohttp.web")


@pytest.mark.parametrize("mode", MODES)
def test_no_key_in_any_log_over_the_wire(
    emu: CometEmulator,
    clip_url: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
    mode: str,
) -> None:
    caplog.set_level(logging.DEBUG)
    for name in ("httpx", "httpcore", "aiohttp", "aiohttp.client", "asyncio", "comet_provider", "airflow"):
        logging.getLogger(name).setLevel(logging.DEBUG)
    emu.configure(
        faults={"rate": 0.4, "kinds": ["429", "500", "502_html", "drop"], "endpoints": ["feed"], "retry_after": 0.05},
        fail_next=[{"endpoint": "submit", "kind": "429", "count": 1}],
    )
    hook = CometHook(retry_policy=FAST_RETRY)
    done = run_flow(mode, hook, clip_url)
    assert done.video_url is not None
    hook.download(done.video_url, tmp_path / "r.mp4")
    emu.configure(fail_next=[{"endpoint": "submit", "kind": "drop", "count": 1}])
    with pytest.raises(CometSubmissionUncertainError) as info:
        submit(mode, CometHook(retry_policy=FAST_RETRY), clip_url)
    assert SECRET not in repr(info.value) and SECRET not in str(info.value.cause)

    provider_records = [r for r in caplog.records if not r.name.startswith(EMULATOR_LOGGERS)]
    text = "\n".join(f"{r.name} {r.getMessage()} {r.exc_text or ''}" for r in provider_records)
    out = capsys.readouterr()
    assert SECRET not in text
    assert SECRET not in out.out + out.err
    # The capture was live: the hook's retry warnings went through it.
    assert "Retrying in" in out.out + out.err + text
    assert json.dumps(emu.stats()).count(SECRET) == 0
