"""The download transport over real sockets: full bodies, bodies cut short, refused connections."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from comet_provider.exceptions import CometConnectionError
from comet_provider.hooks.comet import CometHook
from comet_provider.utils.retry import RetryPolicy

_FAST = RetryPolicy(max_attempts=2, initial_backoff=0.01, max_backoff=0.02)


def _serve(body: bytes, declared: int) -> Iterator[str]:
    """A one-thread HTTP/1.1 server that declares ``declared`` bytes and sends ``body``, then closes."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    stop = threading.Event()

    def loop() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            with conn:
                conn.recv(65536)
                head = f"HTTP/1.1 200 OK\r\nContent-Length: {declared}\r\nContent-Type: video/mp4\r\n\r\n"
                conn.sendall(head.encode() + body)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.getsockname()[1]}/render.mp4"
    finally:
        stop.set()
        thread.join()
        server.close()


@pytest.fixture
def whole_body() -> Iterator[str]:
    yield from _serve(b"x" * 9_000_000, 9_000_000)


@pytest.fixture
def cut_body() -> Iterator[str]:
    yield from _serve(b"x" * 1000, 5000)


def test_large_body_arrives_whole(whole_body: str, tmp_path: Path) -> None:
    result = CometHook(retry_policy=_FAST).download(whole_body, tmp_path / "out.mp4")
    assert result.size_bytes == 9_000_000
    assert (tmp_path / "out.mp4").read_bytes() == b"x" * 9_000_000


def test_body_cut_short_leaves_nothing(cut_body: str, tmp_path: Path) -> None:
    (tmp_path / "out.mp4").write_bytes(b"previous render")
    with pytest.raises(CometConnectionError):
        CometHook(retry_policy=_FAST).download(cut_body, tmp_path / "out.mp4")
    assert (tmp_path / "out.mp4").read_bytes() == b"previous render"
    assert [p.name for p in tmp_path.iterdir()] == ["out.mp4"]


def test_refused_connection_is_a_connection_error(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(CometConnectionError) as raised:
        CometHook(retry_policy=_FAST).download(f"http://127.0.0.1:{port}/x.mp4", tmp_path / "x.mp4")
    assert not raised.value.request_sent
    assert not list(tmp_path.iterdir())
