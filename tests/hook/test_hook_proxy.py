"""The network policy over real loopback sockets: proxies (absolute URI and CONNECT), TLS trust, answer cap, redirects.

The emulator stands for CometAPI and the render host. Its connection host is a name
only the forward proxy resolves, so a request that arrives went through the proxy;
the proxy counts each one per path. The async (aiohttp) poll path is marked
``xfail(strict)`` where it does not follow the policy yet.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import logging
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from comet_provider.exceptions import CometBadRequestError, CometConfigError, CometConnectionError, CometError
from comet_provider.hooks.comet import FEED_PATH, SUBMIT_PATH, CometHook
from comet_provider.models import RunwayStatus
from comet_provider.testing import CometEmulator

from ._proxy import AnswerServer, Certificates, ForwardProxy, TlsFront, endless_chunks, head, make_certificates
from ._support import FAST_RETRY, SECRET, closed_port, submit_and_wait_sync

#: A name no resolver knows: only the proxy maps it to the emulator.
ALIAS = "comet-emulator.proxy-only.test"
PROXY_PASSWORD = "pr0xy-PASSWORD-do-not-log"
PROXY_VARS = (
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
    "no_proxy",
)


@pytest.fixture
def no_proxy_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in PROXY_VARS:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@pytest.fixture
def proxy() -> Iterator[ForwardProxy]:
    with ForwardProxy(aliases={ALIAS: "127.0.0.1"}) as running:
        yield running


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return make_certificates(tmp_path_factory.mktemp("certs"), ["localhost", ALIAS])


@pytest.fixture
def tls(emu: CometEmulator, certs: Certificates) -> Iterator[TlsFront]:
    with TlsFront(urlsplit(emu.url).port or 80, certs.cert, certs.key) as front:
        yield front


def aliased(emu: CometEmulator, url: str, scheme: str = "http", port: int | None = None) -> str:
    """``url`` on the emulator, under the name only the proxy resolves."""
    parts = urlsplit(url)
    return parts._replace(scheme=scheme, netloc=f"{ALIAS}:{port or parts.port}").geturl()


def rendered(error: BaseException) -> str:
    """What a log line, a traceback or the UI could show of ``error`` and its causes."""
    parts = ["".join(traceback.format_exception(error)), repr(error)]
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        parts += [str(current), repr(current.args), repr(vars(current))]
        current = current.__cause__ or current.__context__
    return "\n".join(parts)


def eventually(condition: Callable[[], bool]) -> None:
    """Wait for what a server thread records after the client has its answer (not a timing check)."""
    for _ in range(500):
        if condition():
            return
        time.sleep(0.01)
    raise AssertionError("the server never recorded it")


@pytest.fixture
def captured(caplog: pytest.LogCaptureFixture) -> Callable[[], str]:
    caplog.set_level(logging.DEBUG)
    for name in ("httpx", "httpcore", "comet_provider", "airflow", "aiohttp"):
        logging.getLogger(name).setLevel(logging.DEBUG)
    return lambda: "\n".join([caplog.text, *(f"{r.getMessage()} {r.args!r}" for r in caplog.records)])


# -- every sync request through the proxy ------------------------------------------------------------


def test_environment_proxy_carries_submit_polls_download_and_head(
    emu: CometEmulator, proxy: ForwardProxy, set_connection: Callable[..., None], no_proxy_env: Any, tmp_path: Path
) -> None:
    base = aliased(emu, emu.url)
    emu.configure(public_url=base)  # render links name the alias too
    set_connection(host=base)
    no_proxy_env.setenv("HTTP_PROXY", proxy.url)
    clip = emu.media_url("clip.mp4")
    with CometHook(retry_policy=FAST_RETRY) as hook:
        identity = hook.source_identity(aliased(emu, clip))
        task = submit_and_wait_sync(hook, clip)  # the emulator fetches the source itself, directly
        assert task.status is RunwayStatus.SUCCEEDED and task.video_url is not None
        hook.check_render_link(task.video_url)
        stored = hook.download(task.video_url, tmp_path / "render.mp4")
    render_path = urlsplit(task.video_url).path
    assert identity is not None and "content-length=" in identity
    assert proxy.requests[("HEAD", "/media/clip.mp4")] == 1
    assert proxy.requests[("POST", SUBMIT_PATH)] == 1
    assert proxy.requests[("POST", FEED_PATH)] >= 2  # not visible yet, then rendering, then done
    assert proxy.requests[("GET", render_path)] == 2  # the link check, then the download
    assert proxy.bytes_out[render_path] >= stored.size_bytes > 0
    assert (tmp_path / "render.mp4").stat().st_size == stored.size_bytes
    assert emu.stats(tasks=False)["submissions"] == 1


def test_no_proxy_goes_direct(
    emu: CometEmulator, proxy: ForwardProxy, no_proxy_env: Any, clip_url: str, tmp_path: Path
) -> None:
    no_proxy_env.setenv("http_proxy", proxy.url)
    no_proxy_env.setenv("NO_PROXY", "example.test,127.0.0.1")
    with CometHook(retry_policy=FAST_RETRY) as hook:
        hook.get_task("task-unknown", submitted_at=9e12)  # within the grace period: PENDING
        hook.download(clip_url, tmp_path / "clip.mp4")
    assert not proxy.requests


@pytest.fixture
def authed_proxy() -> Iterator[ForwardProxy]:
    with ForwardProxy(aliases={ALIAS: "127.0.0.1"}, credentials=("comet", PROXY_PASSWORD)) as running:
        yield running


def test_proxy_extra_wins_over_the_environment_and_its_password_stays_secret(
    emu: CometEmulator,
    authed_proxy: ForwardProxy,
    set_connection: Callable[..., None],
    no_proxy_env: Any,
    clip_url: str,
    tmp_path: Path,
    captured: Callable[[], str],
) -> None:
    dead = f"http://127.0.0.1:{closed_port()}"
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        no_proxy_env.setenv(name, dead)
    set_connection(host=aliased(emu, emu.url), extra={"proxy": authed_proxy.url_with("comet", PROXY_PASSWORD)})
    with CometHook(retry_policy=FAST_RETRY) as hook:
        hook.get_task("task-unknown", submitted_at=9e12)
        hook.download(aliased(emu, clip_url), tmp_path / "clip.mp4")
        assert hook.source_identity(aliased(emu, clip_url)) is not None
        shown = repr(hook.get_settings()) + repr(hook) + str(hook)
    assert authed_proxy.requests[("POST", FEED_PATH)] == 1
    assert authed_proxy.requests[("GET", "/media/clip.mp4")] == 1
    assert authed_proxy.requests[("HEAD", "/media/clip.mp4")] == 1
    assert authed_proxy.refused == 0
    assert PROXY_PASSWORD not in shown and "http://***@127.0.0.1" in shown
    assert PROXY_PASSWORD not in captured()


@pytest.mark.parametrize("where", ["wrong password", "proxy down"])
def test_proxy_failures_never_show_the_password(
    emu: CometEmulator,
    authed_proxy: ForwardProxy,
    set_connection: Callable[..., None],
    no_proxy_env: Any,
    clip_url: str,
    tmp_path: Path,
    captured: Callable[[], str],
    where: str,
) -> None:
    port = authed_proxy.port if where == "wrong password" else closed_port()
    no_proxy_env.setenv("HTTP_PROXY", f"http://comet:{PROXY_PASSWORD}x@127.0.0.1:{port}")
    set_connection(host=aliased(emu, emu.url))
    errors: list[BaseException] = []
    with CometHook(retry_policy=FAST_RETRY) as hook:
        for call in (
            lambda: hook.get_task("task-1"),
            lambda: hook.submit_video2video(clip_url, "pixelated style"),
            lambda: hook.download(clip_url, tmp_path / "clip.mp4"),
        ):
            with pytest.raises(CometError) as info:
                call()
            errors.append(info.value)
        assert hook.source_identity(clip_url) is None
    if where == "wrong password":
        assert authed_proxy.refused >= 3
        assert all(isinstance(e, CometConfigError) and "HTTP 407" in str(e) for e in errors)
    else:
        assert "through the proxy http://***@127.0.0.1" in str(errors[0])
    assert emu.stats(tasks=False)["submissions"] == 0
    for error in errors:
        assert PROXY_PASSWORD not in rendered(error)
    assert PROXY_PASSWORD not in captured()


def test_async_polls_pass_the_proxy(
    emu: CometEmulator, proxy: ForwardProxy, set_connection: Callable[..., None], no_proxy_env: Any
) -> None:
    set_connection(host=aliased(emu, emu.url))
    no_proxy_env.setenv("HTTP_PROXY", proxy.url)

    async def poll() -> None:
        async with CometHook(retry_policy=FAST_RETRY) as hook:
            await hook.aget_task("task-unknown", submitted_at=9e12)

    asyncio.run(poll())
    assert proxy.requests[("POST", FEED_PATH)] == 1


# -- https: CONNECT tunnels and the CA bundle ------------------------------------------------------------


@pytest.mark.parametrize("configured", ["HTTPS_PROXY", "extra with credentials"])
def test_https_through_a_connect_tunnel_with_the_ca_bundle(
    emu: CometEmulator,
    authed_proxy: ForwardProxy,
    tls: TlsFront,
    certs: Certificates,
    set_connection: Callable[..., None],
    no_proxy_env: Any,
    tmp_path: Path,
    captured: Callable[[], str],
    configured: str,
) -> None:
    base = aliased(emu, emu.url, "https", tls.port)
    emu.configure(public_url=base)
    extra = {"ca_bundle": str(certs.ca)}
    if configured == "HTTPS_PROXY":
        authed_proxy.credentials = None
        no_proxy_env.setenv("HTTPS_PROXY", authed_proxy.url)
    else:
        extra["proxy"] = authed_proxy.url_with("comet", PROXY_PASSWORD)
    set_connection(host=base, extra=extra)
    with CometHook(retry_policy=FAST_RETRY) as hook:
        identity = hook.source_identity(f"{base}/media/clip.mp4")
        task = submit_and_wait_sync(hook, emu.media_url("clip.mp4"))
        assert task.video_url is not None and task.video_url.startswith("https://")
        stored = hook.download(task.video_url, tmp_path / "render.mp4")
    tunnels = authed_proxy.requests[("CONNECT", f"{ALIAS}:{tls.port}")]
    assert identity is not None
    assert stored.size_bytes > 0
    assert set(authed_proxy.requests) == {("CONNECT", f"{ALIAS}:{tls.port}")}
    assert tunnels >= 3  # API, HEAD, download
    assert authed_proxy.refused == 0
    assert tls.handshakes == tunnels
    assert emu.stats(tasks=False)["submissions"] == 1
    assert PROXY_PASSWORD not in captured()


@pytest.mark.parametrize("bundle", ["wrong", "none"])
def test_an_untrusted_certificate_says_which_cas_were_used(
    emu: CometEmulator,
    tls: TlsFront,
    certs: Certificates,
    set_connection: Callable[..., None],
    no_proxy_env: Any,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    bundle: str,
) -> None:
    base = f"https://localhost:{tls.port}"
    set_connection(host=base, extra={"ca_bundle": str(certs.other_ca)} if bundle == "wrong" else {})
    caplog.set_level(logging.INFO)
    with CometHook(retry_policy=FAST_RETRY) as hook:
        with pytest.raises(CometConfigError) as api:
            hook.get_task("task-1")
        with pytest.raises(CometConfigError) as download:
            hook.download(f"{base}/media/clip.mp4", tmp_path / "clip.mp4")
        assert hook.source_identity(f"{base}/media/clip.mp4") is None
    eventually(lambda: tls.refused_handshakes >= 3)
    assert tls.refused_handshakes == 3  # refused at once: no retries
    for error in (api.value, download.value):
        assert "TLS certificate of localhost could not be verified" in str(error)
        if bundle == "wrong":
            assert f"with the CA bundle {certs.other_ca}" in str(error)
        else:
            assert "this machine's trusted CAs" in str(error) and "'ca_bundle'" in str(error)
    assert "could not be verified" in caplog.text  # the HEAD says why it had no identity
    assert not (tmp_path / "clip.mp4").exists()


def test_verify_false_accepts_any_certificate(
    emu: CometEmulator, tls: TlsFront, set_connection: Callable[..., None], no_proxy_env: Any, tmp_path: Path
) -> None:
    base = f"https://localhost:{tls.port}"
    set_connection(host=base, extra={"verify": False})
    with CometHook(retry_policy=FAST_RETRY) as hook:
        hook.get_task("task-unknown", submitted_at=9e12)
        assert hook.download(f"{base}/media/clip.mp4", tmp_path / "clip.mp4").size_bytes > 0
    assert tls.refused_handshakes == 0


def test_async_polls_use_the_ca_bundle(
    emu: CometEmulator, tls: TlsFront, certs: Certificates, set_connection: Callable[..., None], no_proxy_env: Any
) -> None:
    set_connection(host=f"https://localhost:{tls.port}", extra={"ca_bundle": str(certs.ca)})

    async def poll() -> None:
        async with CometHook(retry_policy=FAST_RETRY) as hook:
            await hook.aget_task("task-unknown", submitted_at=9e12)

    asyncio.run(poll())


# -- the answer cap -------------------------------------------------------------------------------------

MIB = 1 << 20


def _json_answer(size: int) -> Iterator[bytes]:
    data = {"task_id": "task-1", "status": "QUEUED", "progress": "0%", "data": {"id": "task-1", "status": "PENDING"}}
    body = json.dumps({"code": "success", "data": {**data, "pad": "x" * (size - 160)}}).encode()
    assert len(body) <= size
    yield head("200 OK", {"Content-Type": "application/json", "Content-Length": str(len(body))}) + body


def _gzip_bomb() -> Iterator[bytes]:
    body = gzip.compress(b'{"pad": "' + b" " * (32 * MIB) + b'"}')
    yield head("200 OK", {"Content-Encoding": "gzip", "Content-Length": str(len(body))}) + body


def _declared_large() -> Iterator[bytes]:
    yield head("200 OK", {"Content-Type": "application/json", "Content-Length": str(32 * MIB)})
    yield from (b"x" * MIB for _ in range(32))


#: Each far larger than what loopback socket buffers hold (a few MiB): a client that reads it whole
#: lets the server finish; one that stops early leaves it blocked, then cut off.
ANSWERS: dict[str, Callable[[], Iterator[bytes]]] = {
    "endless chunked": lambda: endless_chunks(b"x" * 65536, 32 * MIB),
    "declared 32 MiB": _declared_large,
    "gzip bomb": _gzip_bomb,  # 32 KiB on the wire: read whole, refused while decoding
}


def _poll(mode: str, url: str) -> None:
    hook = CometHook(retry_policy=FAST_RETRY)
    if mode == "sync":
        with hook:
            hook.get_task("task-1")
        return

    async def poll() -> None:
        async with hook:
            await hook.aget_task("task-1")

    asyncio.run(poll())


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize("answer", list(ANSWERS))
def test_answers_over_the_cap_are_refused_unread(
    set_connection: Callable[..., None], no_proxy_env: Any, answer: str, mode: str
) -> None:
    with AnswerServer(ANSWERS[answer]) as server:
        set_connection(host=server.url)
        with pytest.raises(CometConnectionError) as info:
            _poll(mode, server.url)
    assert "was refused" in str(info.value) and "1 MiB cap" in str(info.value)
    assert server.requests  # it was asked, and answered
    if answer == "gzip bomb":
        assert "decompresses to more than" in str(info.value)
    else:
        assert not server.finished  # ... but never read to the end


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_an_answer_under_the_cap_is_read(set_connection: Callable[..., None], no_proxy_env: Any, mode: str) -> None:
    with AnswerServer(lambda: _json_answer(MIB - 1024)) as server:
        set_connection(host=server.url)
        _poll(mode, server.url)
        eventually(lambda: server.finished)


# -- redirects on API calls -------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_api_redirects_to_another_host_are_not_followed(
    set_connection: Callable[..., None], no_proxy_env: Any, captured: Callable[[], str], mode: str
) -> None:
    elsewhere = AnswerServer(lambda: _json_answer(200), host="127.0.0.2")
    with elsewhere:
        moved = head("302 Found", {"Location": f"{elsewhere.url}{FEED_PATH}", "Content-Length": "0"})
        with AnswerServer(lambda: iter([moved])) as api:
            set_connection(host=api.url)
            with pytest.raises(CometBadRequestError) as info:
                _poll(mode, api.url)
    assert api.requests and api.requests[0][1]["authorization"] == f"Bearer {SECRET}"
    assert elsewhere.requests == []  # the key never went there
    assert "HTTP 302" in str(info.value) and "not followed" in str(info.value)
    assert SECRET not in rendered(info.value) and SECRET not in captured()
