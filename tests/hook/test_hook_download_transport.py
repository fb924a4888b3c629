"""The download transport over real sockets: full bodies, bodies cut short, gone links, HEADs, refusals."""

from __future__ import annotations

import socket
import threading
from pathlib import Path

import pytest

from comet_provider.exceptions import CometConnectionError, RenderUnavailableError
from comet_provider.hooks.comet import CometHook
from comet_provider.utils.retry import RetryPolicy

_FAST = RetryPolicy(max_attempts=2, initial_backoff=0.01, max_backoff=0.02)


class Server:
    """A one-thread HTTP/1.1 server answering every request with ``status``, ``headers`` and ``body``,
    then closing; it counts requests and keeps the last one's head."""

    def __init__(
        self,
        body: bytes = b"",
        *,
        status: str = "200 OK",
        headers: dict[str, str | None] | None = None,
        keep_open: bool = False,
    ):
        self.body = body
        self.keep_open = keep_open  # like a keep-alive server: no EOF after the body
        self.status = status
        given = {"Content-Length": str(len(body)), "Content-Type": "video/mp4", **(headers or {})}
        self.headers = {k: v for k, v in given.items() if v is not None}  # None: header left out
        self.requests: list[bytes] = []
        self._socket = socket.socket()
        self._socket.bind(("127.0.0.1", 0))
        self._socket.listen()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._socket.getsockname()[1]}/render.mp4"

    def _loop(self) -> None:
        self._socket.settimeout(0.2)
        while not self._stop.is_set():
            try:
                conn, _ = self._socket.accept()
            except TimeoutError:
                continue
            with conn:
                request = conn.recv(65536)
                self.requests.append(request)
                head = f"HTTP/1.1 {self.status}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in self.headers.items())
                body = b"" if request.startswith(b"HEAD ") else self.body
                conn.sendall(head.encode() + b"\r\n" + body)
                if self.keep_open:
                    conn.settimeout(30)
                    while conn.recv(65536):  # until the client hangs up
                        pass

    def __enter__(self) -> Server:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._socket.close()


@pytest.fixture
def refused_url() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/x.mp4"


# -- downloads ------------------------------------------------------------------------------------------


def test_large_body_arrives_whole(tmp_path: Path) -> None:
    data = bytes(range(256)) * 35_157  # ~9 MB that is not all one byte: a reused buffer must not smear it
    with Server(data) as server:
        result = CometHook(retry_policy=_FAST).download(server.url, tmp_path / "out.mp4")
        assert b"accept-encoding: identity" in server.requests[0].lower()
        assert b"authorization" not in server.requests[0].lower()
    assert result.size_bytes == len(data)
    assert (tmp_path / "out.mp4").read_bytes() == data


def test_body_cut_short_leaves_nothing(tmp_path: Path) -> None:
    (tmp_path / "out.mp4").write_bytes(b"previous render")
    with Server(b"x" * 1000, headers={"Content-Length": "5000"}) as server, pytest.raises(CometConnectionError):
        CometHook(retry_policy=_FAST).download(server.url, tmp_path / "out.mp4")
    assert (tmp_path / "out.mp4").read_bytes() == b"previous render"
    assert [p.name for p in tmp_path.iterdir()] == ["out.mp4"]


def test_refused_connection_is_a_connection_error(tmp_path: Path, refused_url: str) -> None:
    with pytest.raises(CometConnectionError) as raised:
        CometHook(retry_policy=_FAST).download(refused_url, tmp_path / "x.mp4")
    assert not raised.value.request_sent
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("status", ["403 Forbidden", "404 Not Found", "410 Gone"])
def test_gone_links_are_unavailable_and_asked_once(tmp_path: Path, status: str) -> None:
    with Server(
        b"<Error><Code>AccessDenied</Code></Error>", status=status, headers={"Content-Type": "application/xml"}
    ) as server:
        with pytest.raises(RenderUnavailableError) as raised:
            CometHook(retry_policy=_FAST).download(server.url + "?Signature=s3cr3t", tmp_path / "out.mp4")
        assert len(server.requests) == 1
        assert raised.value.url == server.url
    assert raised.value.status_code == int(status[:3])
    assert "s3cr3t" not in str(raised.value)
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("content_type", ["text/html; charset=utf-8", "video/mp4"])
def test_an_html_page_with_200_is_unavailable(tmp_path: Path, content_type: str) -> None:
    page = b"<!DOCTYPE html><html><body>This link has expired</body></html>"
    with Server(page, headers={"Content-Type": content_type}) as server:
        with pytest.raises(RenderUnavailableError) as raised:
            CometHook(retry_policy=_FAST).download(server.url, tmp_path / "out.mp4")
        assert len(server.requests) == 1
    assert raised.value.status_code == 200
    assert not list(tmp_path.iterdir())


# -- source identity ----------------------------------------------------------------------------------------


def test_source_identity_from_a_real_head() -> None:
    headers = {"ETag": '"abc"', "Last-Modified": "Wed, 21 Oct 2026 07:28:00 GMT"}
    with Server(b"v" * 321, headers=headers) as server:
        identity = CometHook().source_identity(server.url)
        assert server.requests[0].startswith(b"HEAD /render.mp4 ")
        assert b"authorization" not in server.requests[0].lower()
    assert identity == 'etag="abc";last-modified=Wed, 21 Oct 2026 07:28:00 GMT;content-length=321'


def test_source_identity_without_headers_is_none() -> None:
    with Server(headers={"Content-Length": None, "Content-Type": None}) as server:
        assert CometHook().source_identity(server.url) is None


def test_source_identity_of_a_refused_source_is_none(refused_url: str) -> None:
    assert CometHook().source_identity(refused_url) is None


@pytest.mark.parametrize("size", [1, 9_000, 300_000, (1 << 20) + 7, (5 << 20) + 12_345])
def test_body_of_known_length_ends_without_waiting_for_the_server_to_close(tmp_path: Path, size: int) -> None:
    """Reads wait for a low-water mark of bytes (fewer wake-ups): never for bytes that will not come.
    A keep-alive server sends no EOF, so a wait past the body would end only at the read timeout."""
    import time

    import httpx

    from comet_provider.hooks._download import fetch_render
    from comet_provider.hooks._download_transport import DownloadTransport

    body = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
    with Server(body, keep_open=True) as server:
        started = time.monotonic()
        stored, count = fetch_render(DownloadTransport(), server.url, tmp_path / "r.mp4", httpx.Timeout(5.0))
        assert time.monotonic() - started < 5.0
    assert count == size
    assert Path(stored).read_bytes() == body
