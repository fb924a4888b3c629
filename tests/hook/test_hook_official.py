"""The official route's poll (``GET /runwayml/v1/tasks/{id}``) over real loopback sockets.

The async twin goes through the event loop's shared aiohttp pool, as the triggerer's polls do: the
same network policy as the feed (proxy, CA bundle, 1 MiB answer cap) and no httpx objects per poll.
A small answering server stands for CometAPI here; the emulator's own official route is exercised
in the flow tests below it.
"""

from __future__ import annotations

import asyncio
import base64
import json
import struct
import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from comet_provider.exceptions import CometBadRequestError, CometConnectionError, RunwayTaskNotFoundError
from comet_provider.hooks.comet import CometHook
from comet_provider.models import RunwayStatus, RunwayTask
from comet_provider.testing import CometEmulator
from comet_provider.triggers import runway as trigger_module
from comet_provider.triggers.runway import RunwayTaskTrigger
from comet_provider.utils.polling import RunwayWaiter, await_task, outcome, task_from_event, wait_sync

from ._proxy import AnswerServer, Certificates, ForwardProxy, TlsFront, endless_chunks, head, make_certificates
from ._support import FAST_RETRY, SCRIPTED_FEED_FAULTS, SECRET

ALIAS = "comet-official.proxy-only.test"
TASK_ID = "task 1/ü"
TASK_PATH = "/runwayml/v1/tasks/task%201%2F%C3%BC"
MIB = 1 << 20
MODES = ("sync", "async")


def bare_task(**fields: Any) -> Callable[[], Iterator[bytes]]:
    body = json.dumps({"id": TASK_ID, "status": "RUNNING", "progress": 0.5, **fields}).encode()

    def answer() -> Iterator[bytes]:
        yield head("200 OK", {"Content-Type": "application/json", "Content-Length": str(len(body))}) + body

    return answer


def poll(mode: str, task_id: str = TASK_ID) -> RunwayTask:
    hook = CometHook(retry_policy=FAST_RETRY)
    if mode == "sync":
        with hook:
            return hook.get_task(task_id, route="official")

    async def main() -> RunwayTask:
        async with hook:
            return await hook.aget_task(task_id, route="official")

    return asyncio.run(main())


@pytest.fixture
def no_proxy_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    return monkeypatch


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return make_certificates(tmp_path_factory.mktemp("certs"), ["localhost"])


@pytest.mark.parametrize("mode", MODES)
def test_the_poll_is_a_get_of_the_quoted_id(set_connection: Callable[..., None], no_proxy_env: Any, mode: str) -> None:
    with AnswerServer(bare_task()) as server:
        set_connection(host=server.url)
        task = poll(mode)
    assert (task.task_id, task.status, task.progress) == (TASK_ID, RunwayStatus.RUNNING, 0.5)
    ((request_line, headers),) = server.requests
    assert request_line == f"GET {TASK_PATH} HTTP/1.1"
    assert headers["authorization"] == f"Bearer {SECRET}"
    assert headers["x-runway-version"]
    assert "content-length" not in headers or headers["content-length"] == "0"


def test_async_polls_build_no_httpx_objects(
    set_connection: Callable[..., None], no_proxy_env: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    with AnswerServer(bare_task()) as server:
        set_connection(host=server.url)

        def refuse(*args: Any, **kwargs: Any) -> None:
            raise AssertionError("an httpx object was built for a poll")

        monkeypatch.setattr(httpx.Request, "__init__", refuse)
        monkeypatch.setattr(httpx.Response, "__init__", refuse)
        assert poll("async").status is RunwayStatus.RUNNING
    assert len(server.requests) == 1


@pytest.mark.parametrize("mode", MODES)
def test_the_poll_goes_through_the_proxy(set_connection: Callable[..., None], no_proxy_env: Any, mode: str) -> None:
    with ForwardProxy(aliases={ALIAS: "127.0.0.1"}) as proxy, AnswerServer(bare_task()) as server:
        set_connection(host=f"http://{ALIAS}:{server.port}")  # a name only the proxy resolves
        no_proxy_env.setenv("HTTP_PROXY", proxy.url)
        assert poll(mode).status is RunwayStatus.RUNNING
    assert proxy.requests == {("GET", TASK_PATH): 1}


@pytest.mark.parametrize("mode", MODES)
def test_the_poll_trusts_the_ca_bundle(
    set_connection: Callable[..., None], no_proxy_env: Any, certs: Certificates, mode: str
) -> None:
    with AnswerServer(bare_task()) as server, TlsFront(server.port, certs.cert, certs.key) as tls:
        set_connection(host=f"https://localhost:{tls.port}", extra={"ca_bundle": str(certs.ca)})
        assert poll(mode).status is RunwayStatus.RUNNING
    assert tls.handshakes == 1 and tls.refused_handshakes == 0


@pytest.mark.parametrize("mode", MODES)
def test_answers_over_the_cap_are_refused_unread(
    set_connection: Callable[..., None], no_proxy_env: Any, mode: str
) -> None:
    with AnswerServer(lambda: endless_chunks(b"x" * 65536, 32 * MIB)) as server:
        set_connection(host=server.url)
        with pytest.raises(CometConnectionError) as info:
            poll(mode)
    assert "was refused" in str(info.value) and "1 MiB cap" in str(info.value)
    assert TASK_PATH in str(info.value)
    assert not server.finished


@pytest.mark.parametrize("mode", MODES)
def test_a_succeeded_bare_task_carries_its_output(
    set_connection: Callable[..., None], no_proxy_env: Any, mode: str
) -> None:
    out = "https://cdn.test/renders/out.mp4?_jwt=x"
    with AnswerServer(bare_task(status="SUCCEEDED", progress=1, output=[out])) as server:
        set_connection(host=server.url)
        task = poll(mode)
    assert (task.status, task.video_url, task.progress) == (RunwayStatus.SUCCEEDED, out, 1.0)


# -- the whole official route against the emulator ---------------------------------------------------


def png(rgb: tuple[int, int, int], size: int = 8) -> bytes:
    """A small solid-colour PNG (a style reference image)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\x00" + bytes(rgb) * size for _ in range(size))
    header = struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def data_uri(media_type: str, content: bytes) -> str:
    return f"data:{media_type};base64,{base64.b64encode(content).decode()}"


@pytest.fixture
def style_url(emu: CometEmulator) -> str:
    media_dir = emu.media_dir
    assert media_dir is not None
    (media_dir / "style.png").write_bytes(png((200, 40, 160)))
    return emu.media_url("style.png")


def submit_and_wait(mode: str, hook: CometHook, video_uri: str, **kwargs: Any) -> RunwayTask:
    """Submit on the official route and wait as the operator (sync) or the trigger (async) does."""

    def waiter(task: RunwayTask, submitted_at: float) -> RunwayWaiter:
        return RunwayWaiter(
            task.task_id,
            poll_interval=0.05,
            deadline=time.time() + 30,
            submitted_at=submitted_at,
            log=hook.log,
            route="official",
        )

    if mode == "sync":
        with hook:
            submitted_at = time.time()
            return wait_sync(
                hook, waiter(hook.submit_video_to_video(video_uri, "in its colours", **kwargs), submitted_at)
            )

    async def main() -> RunwayTask:
        async with hook:
            submitted_at = time.time()
            task = await hook.asubmit_video_to_video(video_uri, "in its colours", **kwargs)
            return await await_task(hook, waiter(task, submitted_at))

    return asyncio.run(main())


@pytest.mark.parametrize("shape", ["bare", "envelope"])
@pytest.mark.parametrize("mode", MODES)
def test_official_route_end_to_end(
    emu: CometEmulator, clip_url: str, clip_bytes: bytes, style_url: str, tmp_path: Path, mode: str, shape: str
) -> None:
    # Each poll fault once, before any answer (slow answers left out: they only make the test slow).
    emu.configure(official_task_shape=shape, fail_next=[f for f in SCRIPTED_FEED_FAULTS if f["kind"] != "slow"])
    hook = CometHook(retry_policy=FAST_RETRY)
    done = submit_and_wait(
        mode,
        hook,
        clip_url,
        seed=7,
        references=[style_url],
        ratio="1280:720",
        content_moderation={"publicFigureThreshold": "auto"},
    )
    assert done.status is RunwayStatus.SUCCEEDED and done.progress == 1.0
    assert done.video_url is not None
    hook.download(done.video_url, tmp_path / "render.mp4")
    assert (tmp_path / "render.mp4").read_bytes() == clip_bytes  # "copy" renders hand the source back
    stats = emu.stats()
    assert stats["submissions"] == 1
    assert sum(emu.submission_counts(route="official").values()) == 1
    assert sum(emu.submission_counts(route="pro").values()) == 0
    (task,) = stats["tasks"].values()
    assert (task["seed"], task["ratio"]) == (7, "1280:720")
    for kind in ("drop", "task_not_exist", "503_html", "500", "429"):
        assert stats["faults"].get(kind, 0) >= 1, (kind, stats["faults"])


@pytest.mark.parametrize("mode", MODES)
def test_data_uri_sources_are_fetched_by_the_emulator(
    emu: CometEmulator, clip_bytes: bytes, tmp_path: Path, mode: str
) -> None:
    hook = CometHook(retry_policy=FAST_RETRY)
    reference = data_uri("image/png", png((10, 200, 30)))
    done = submit_and_wait(mode, hook, data_uri("video/mp4", clip_bytes), references=[reference], seed=1)
    assert done.status is RunwayStatus.SUCCEEDED and done.video_url is not None
    hook.download(done.video_url, tmp_path / "render.mp4")
    assert (tmp_path / "render.mp4").read_bytes() == clip_bytes


@pytest.mark.parametrize("mode", MODES)
def test_a_source_runway_refuses_fails_naming_the_field(emu: CometEmulator, clip_url: str, mode: str) -> None:
    # A video where an image belongs: the hook cannot know, Runway (the emulator) refuses it.
    wrong = data_uri("video/mp4", b"\x00\x00\x00\x18ftypmp42" * 4)
    with pytest.raises(CometBadRequestError) as info:
        submit_and_wait(mode, CometHook(retry_policy=FAST_RETRY), clip_url, references=[wrong])
    message = str(info.value)
    assert "references.0.uri" in message
    assert "base64," not in message and wrong[30:60] not in message
    assert emu.stats(tasks=False)["submissions"] == 0


@pytest.mark.parametrize("mode", MODES)
def test_a_fresh_official_task_is_pending_not_missing(emu: CometEmulator, clip_url: str, mode: str) -> None:
    emu.configure(not_exist_seconds=30)
    with CometHook(retry_policy=FAST_RETRY) as hook:
        task = hook.submit_video_to_video(clip_url, "in its colours")
        if mode == "sync":
            seen = hook.get_task(task.task_id, submitted_at=time.time(), route="official")
        else:

            async def poll() -> RunwayTask:
                async with hook:
                    return await hook.aget_task(task.task_id, submitted_at=time.time(), route="official")

            seen = asyncio.run(poll())
        assert seen.status is RunwayStatus.PENDING and seen.raw == {"code": "task_not_exist"}
        with pytest.raises(RunwayTaskNotFoundError):
            hook.get_task(task.task_id, submitted_at=time.time() - 3600, route="official")


def test_the_trigger_waits_on_the_official_route(
    emu: CometEmulator, clip_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(trigger_module, "CometHook", lambda conn_id: CometHook(conn_id, retry_policy=FAST_RETRY))
    with CometHook(retry_policy=FAST_RETRY) as hook:
        task = hook.submit_video_to_video(clip_url, "in its colours", seed=3)
    kwargs = RunwayTaskTrigger(
        task.task_id, poll_interval=0.05, deadline=time.time() + 30, submitted_at=time.time(), route="official"
    ).serialize()[1]
    trigger = RunwayTaskTrigger(**json.loads(json.dumps(kwargs)))  # as the triggerer rebuilds it

    async def only_event() -> dict[str, Any]:
        (event,) = [event.payload async for event in trigger.run()]
        return event

    event = asyncio.run(asyncio.wait_for(only_event(), timeout=30))
    result = outcome(task_from_event(event))
    assert result["status"] == "SUCCEEDED" and result["video_url"]
    assert emu.stats(tasks=False)["submissions"] == 1
