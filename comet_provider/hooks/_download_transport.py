"""An httpx transport for large downloads: http.client reading straight into the caller's buffer.

httpx's default transport parses bodies through h11 in 64 KiB pieces; for a
render of hundreds of MB that costs more CPU than moving the bytes, and was
measured at about a third of ``curl``'s throughput (benchmarks/README.md).
``http.client``'s ``readinto`` fills a buffer straight from the socket. Responses
carry that as the ``"readinto"`` extension, so the download can fill one reused
buffer and write it out without a copy; iterating the body (redirects, error
pages) still yields ``bytes`` as httpx expects.
"""

from __future__ import annotations

import functools
import http.client
import ssl
from collections.abc import Iterator

import httpx

__all__ = ["DownloadTransport"]

_ITER_CHUNK = 64 << 10


class _Body(httpx.SyncByteStream):
    def __init__(self, response: http.client.HTTPResponse, conn: http.client.HTTPConnection, request: httpx.Request):
        self._response = response
        self._conn = conn
        self._request = request

    def __iter__(self) -> Iterator[bytes]:
        buffer = memoryview(bytearray(_ITER_CHUNK))
        while n := self.readinto(buffer):
            yield bytes(buffer[:n])

    def readinto(self, buffer: memoryview) -> int:
        """Fill ``buffer`` from the body; the number of bytes read, 0 at its end."""
        try:
            return self._response.readinto(buffer)
        except TimeoutError as exc:
            raise httpx.ReadTimeout(str(exc) or "timed out reading the body", request=self._request) from exc
        except http.client.IncompleteRead as exc:
            raise httpx.RemoteProtocolError(f"body cut short: {exc}", request=self._request) from exc
        except (OSError, http.client.HTTPException) as exc:
            raise httpx.ReadError(f"{type(exc).__name__}: {exc}", request=self._request) from exc

    def close(self) -> None:
        self._response.close()
        self._conn.close()


@functools.cache
def _tls_context() -> ssl.SSLContext:
    # Loading the CA store takes ~20 ms: once per process, and only for https.
    return ssl.create_default_context()


class DownloadTransport(httpx.BaseTransport):
    """One connection per request (downloads are few and large); TLS always verified."""

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        timeouts = request.extensions.get("timeout") or {}
        conn: http.client.HTTPConnection
        if url.scheme == "https":
            conn = http.client.HTTPSConnection(
                url.host, url.port, timeout=timeouts.get("connect"), context=_tls_context()
            )
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
        body = _Body(response, conn, request)
        return httpx.Response(
            response.status,
            headers=response.getheaders(),
            stream=body,
            request=request,
            extensions={"http_version": b"HTTP/1.1", "readinto": body.readinto},
        )
