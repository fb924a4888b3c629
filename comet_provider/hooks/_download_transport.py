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

import http.client
import io
import socket
import ssl
from collections.abc import Iterator

import httpx

from comet_provider.hooks._network import NetworkPolicy, ProxyRoute, UnverifiedCertificate

__all__ = ["DownloadTransport"]

_ITER_CHUNK = 64 << 10
#: A read of a body of known length wakes once this much has arrived (or the rest of the body),
#: not for every TCP segment: when the client outpaces the server, a wake-up per segment cost
#: more CPU than the copy (benchmarks/README.md, download). It also means a read times out when
#: less than this arrives within the read timeout: 128 KiB per minute is a dead transfer anyway.
_LOW_WATER = 128 << 10
_SO_RCVLOWAT = getattr(socket, "SO_RCVLOWAT", None)
#: What may sit read but unconsumed above the socket (http.client's buffered reader, one TLS
#: record): the low-water mark stays below what is still to arrive, or the last read would hang.
_HELD_ABOVE_SOCKET = io.DEFAULT_BUFFER_SIZE + (32 << 10)


class _Body(httpx.SyncByteStream):
    def __init__(self, response: http.client.HTTPResponse, conn: http.client.HTTPConnection, request: httpx.Request):
        self._response = response
        self._conn = conn
        self._request = request
        self._low_water = 1  # the kernel's default

    def __iter__(self) -> Iterator[bytes]:
        buffer = memoryview(bytearray(_ITER_CHUNK))
        while n := self.readinto(buffer):
            yield bytes(buffer[:n])

    def readinto(self, buffer: memoryview) -> int:
        """Fill ``buffer`` from the body; the number of bytes read, 0 at its end."""
        left = self._response.length  # None: chunked or until close, where the rest is unknown
        if left is not None and _SO_RCVLOWAT is not None:
            # One readinto is several socket reads; each waits for the low-water mark, so this read
            # stops while at least that much is still to come (TLS only adds bytes on the wire).
            # The last stretch of the body is read with the kernel's default.
            room = left - _LOW_WATER - _HELD_ABOVE_SOCKET
            want = _LOW_WATER if room >= _LOW_WATER else 1
            if want > 1:
                buffer = buffer[: min(len(buffer), room)]
            sock = self._conn.sock
            if want != self._low_water and sock is not None:
                try:
                    sock.setsockopt(socket.SOL_SOCKET, _SO_RCVLOWAT, want)
                    self._low_water = want
                except OSError:
                    pass  # a socket that refuses it reads as before
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


class DownloadTransport(httpx.BaseTransport):
    """One connection per request (downloads are few and large), under the connection's network policy:
    its proxy (absolute-URI requests for http, a CONNECT tunnel for https) and its TLS trust."""

    def __init__(self, policy: NetworkPolicy | None = None) -> None:
        self.policy = policy if policy is not None else NetworkPolicy()

    def _connection(
        self, url: httpx.URL, route: ProxyRoute | None, connect_timeout: float | None
    ) -> tuple[http.client.HTTPConnection, str]:
        """An unopened connection for ``url`` (through ``route``) and the request target to send on it."""
        target = url.raw_path.decode("ascii")
        if url.scheme == "https":
            conn: http.client.HTTPConnection
            context = self.policy.ssl_context()
            if route is None:
                conn = http.client.HTTPSConnection(url.host, url.port, timeout=connect_timeout, context=context)
            else:
                conn = http.client.HTTPSConnection(route.host, route.port, timeout=connect_timeout, context=context)
                host = f"[{url.host}]" if ":" in url.host else url.host
                conn.set_tunnel(host, url.port or 443, headers=route.headers)
            return conn, target
        if route is None:
            return http.client.HTTPConnection(url.host, url.port, timeout=connect_timeout), target
        # Through the proxy: the absolute URI as the target (http.client sends its Host).
        return http.client.HTTPConnection(route.host, route.port, timeout=connect_timeout), str(url)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        if url.scheme not in ("http", "https"):
            raise httpx.UnsupportedProtocol(f"unsupported scheme {url.scheme!r}", request=request)
        timeouts = request.extensions.get("timeout") or {}
        route = self.policy.route(url)
        conn, target = self._connection(url, route, timeouts.get("connect"))
        shown = self.policy.redact
        try:
            conn.connect()
        except ssl.SSLCertVerificationError as exc:
            conn.close()
            raise UnverifiedCertificate(self.policy.certificate_message(url.host, exc), request=request) from exc
        except TimeoutError as exc:
            conn.close()
            raise httpx.ConnectTimeout(shown(str(exc)) or "timed out connecting", request=request) from exc
        except OSError as exc:
            conn.close()
            raise httpx.ConnectError(shown(str(exc)), request=request) from exc
        try:
            if conn.sock is not None:
                conn.sock.settimeout(timeouts.get("read"))
            # http.client writes Host itself.
            headers = {k: v for k, v in request.headers.items() if k.lower() != "host"}
            if route is not None and url.scheme == "http":  # https: the credentials went with CONNECT
                headers.update(route.headers)
            conn.request(request.method, target, body=request.content or None, headers=headers)
            response = conn.getresponse()
        except TimeoutError as exc:
            conn.close()
            raise httpx.ReadTimeout(shown(str(exc)) or "timed out waiting for the answer", request=request) from exc
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            raise httpx.RemoteProtocolError(f"{type(exc).__name__}: {shown(str(exc))}", request=request) from exc
        body = _Body(response, conn, request)
        return httpx.Response(
            response.status,
            headers=response.getheaders(),
            stream=body,
            request=request,
            extensions={"http_version": b"HTTP/1.1", "readinto": body.readinto},
        )
