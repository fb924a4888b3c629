"""An httpx transport for large downloads: http.client reading into a reusable buffer.

httpx's default transport parses bodies through h11 in 64 KiB pieces; for a
render of hundreds of MB that costs more CPU than moving the bytes, and was
measured at about a third of ``curl``'s throughput (benchmarks/README.md).
``http.client``'s ``readinto`` fills a 4 MiB buffer straight from the socket and
matches ``curl``. The hook still speaks httpx (``client.stream(...)``,
``iter_raw()``, redirects, httpx exceptions); only the bytes travel differently.
"""

from __future__ import annotations

import http.client
import ssl
from collections.abc import Iterator

import httpx

__all__ = ["DownloadTransport"]

_CHUNK = 4 << 20


class _Body(httpx.SyncByteStream):
    def __init__(self, response: http.client.HTTPResponse, conn: http.client.HTTPConnection, request: httpx.Request):
        self._response = response
        self._conn = conn
        self._request = request

    def __iter__(self) -> Iterator[bytes]:
        buffer = memoryview(bytearray(_CHUNK))
        try:
            while n := self._response.readinto(buffer):
                yield bytes(buffer[:n])
        except TimeoutError as exc:
            raise httpx.ReadTimeout(str(exc) or "timed out reading the body", request=self._request) from exc
        except http.client.IncompleteRead as exc:
            raise httpx.RemoteProtocolError(f"body cut short: {exc}", request=self._request) from exc
        except (OSError, http.client.HTTPException) as exc:
            raise httpx.ReadError(f"{type(exc).__name__}: {exc}", request=self._request) from exc

    def close(self) -> None:
        self._response.close()
        self._conn.close()


class DownloadTransport(httpx.BaseTransport):
    """One connection per request (downloads are few and large); TLS always verified."""

    def __init__(self) -> None:
        self._ssl = ssl.create_default_context()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        timeouts = request.extensions.get("timeout") or {}
        conn: http.client.HTTPConnection
        if url.scheme == "https":
            conn = http.client.HTTPSConnection(url.host, url.port, timeout=timeouts.get("connect"), context=self._ssl)
        elif url.scheme == "http":
            conn = http.client.HTTPConnection(url.host, url.port, timeout=timeouts.get("connect"))
        else:
            raise httpx.UnsupportedProtocol(f"unsupported scheme {url.scheme!r}", request=request)
        try:
            conn.connect()
        except TimeoutError as exc:
            conn.close()
            raise httpx.ConnectTimeout(str(exc) or "timed out connecting", request=request) from exc
        except OSError as exc:
            conn.close()
            raise httpx.ConnectError(str(exc), request=request) from exc
        try:
            if conn.sock is not None:
                conn.sock.settimeout(timeouts.get("read"))
            # http.client writes Host itself.
            headers = {k: v for k, v in request.headers.items() if k.lower() != "host"}
            conn.request(request.method, url.raw_path.decode("ascii"), body=request.content or None, headers=headers)
            response = conn.getresponse()
        except TimeoutError as exc:
            conn.close()
            raise httpx.ReadTimeout(str(exc) or "timed out waiting for the answer", request=request) from exc
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            raise httpx.RemoteProtocolError(f"{type(exc).__name__}: {exc}", request=request) from exc
        return httpx.Response(
            response.status,
            headers=response.getheaders(),
            stream=_Body(response, conn, request),
            request=request,
            extensions={"http_version": b"HTTP/1.1"},
        )
