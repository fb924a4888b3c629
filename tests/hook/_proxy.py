"""Loopback network pieces for the network-policy tests: a forward proxy, a TLS front, raw answer servers, certificates.

- :class:`ForwardProxy`: an HTTP/1.1 forward proxy (absolute-URI requests and CONNECT
  tunnels) that counts what passes per ``(method, path)`` (``("CONNECT", "host:port")`` for
  tunnels), can require credentials, and resolves names only it knows (``aliases``): a
  connection host that only the proxy resolves proves a request went through it.
- :class:`TlsFront`: TLS in front of a plain server (the emulator), with a certificate from
  :func:`make_certificates`.
- :class:`AnswerServer`: answers every request with bytes from a callable; records how much
  of an endless answer it managed to send before the client hung up.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import http.client
import ipaddress
import socket
import socketserver
import ssl
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

_HOP_BY_HOP = {"connection", "keep-alive", "proxy-authorization", "proxy-connection", "transfer-encoding", "te"}


def _read_head(rfile: Any) -> tuple[str, list[tuple[str, str]]] | None:
    line = rfile.readline(65537)
    if not line.strip():
        return None
    headers = []
    while (header := rfile.readline(65537)) not in (b"\r\n", b"\n", b""):
        name, _, value = header.decode("latin-1").partition(":")
        headers.append((name.strip(), value.strip()))
    return line.decode("latin-1").strip(), headers


def _pipe(a: socket.socket, b: socket.socket) -> None:
    """Copy both ways until both ends are done."""

    def copy(src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)

    other = threading.Thread(target=copy, args=(b, a), daemon=True)
    other.start()
    copy(a, b)
    other.join()


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


class _Background:
    """A socketserver on a loopback port, served from a thread while in ``with``."""

    def __init__(self, handler: type[socketserver.BaseRequestHandler], host: str = "127.0.0.1") -> None:
        self._server = _Server((host, 0), handler)
        self._server.owner = self  # type: ignore[attr-defined]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def host(self) -> str:
        return str(self._server.server_address[0])

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def __enter__(self) -> Any:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


class _ProxyHandler(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        proxy: ForwardProxy = self.server.owner  # type: ignore[attr-defined]
        while (head := _read_head(self.rfile)) is not None:
            request_line, headers = head
            method, target, _ = request_line.split(" ", 2)
            if not proxy.authorized(dict((k.lower(), v) for k, v in headers)):
                proxy.refused += 1
                self.wfile.write(
                    b'HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm="test"\r\n'
                    b"Content-Length: 0\r\nConnection: close\r\n\r\n"
                )
                return
            if method == "CONNECT":
                self._tunnel(proxy, target)
                return
            if not self._forward(proxy, method, target, headers):
                return

    def _tunnel(self, proxy: ForwardProxy, target: str) -> None:
        host, _, port = target.rpartition(":")
        proxy.count("CONNECT", target)
        try:
            upstream = socket.create_connection((proxy.resolve(host), int(port)), timeout=10)
        except OSError:
            self.wfile.write(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
            return
        self.wfile.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        self.wfile.flush()
        with upstream:
            upstream.settimeout(None)
            _pipe(self.connection, upstream)

    def _forward(self, proxy: ForwardProxy, method: str, target: str, headers: list[tuple[str, str]]) -> bool:
        parts = urlsplit(target)
        if parts.scheme != "http" or not parts.hostname:
            self.wfile.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            return False
        path = parts.path or "/"
        proxy.count(method, path)
        length = next((int(v) for k, v in headers if k.lower() == "content-length"), 0)
        body = self.rfile.read(length) if length else None
        upstream = http.client.HTTPConnection(proxy.resolve(parts.hostname), parts.port or 80, timeout=30)
        try:
            sent = {k: v for k, v in headers if k.lower() not in _HOP_BY_HOP and k.lower() != "content-length"}
            upstream.request(method, path + (f"?{parts.query}" if parts.query else ""), body=body, headers=sent)
            answer = upstream.getresponse()
            data = answer.read()
        except OSError:
            self.wfile.write(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
            return True
        finally:
            upstream.close()
        out = [f"HTTP/1.1 {answer.status} {answer.reason}"]
        out += [f"{k}: {v}" for k, v in answer.getheaders() if k.lower() not in _HOP_BY_HOP | {"content-length"}]
        declared = answer.getheader("Content-Length") if method == "HEAD" else None
        out.append(f"Content-Length: {declared if declared is not None else len(data)}")
        proxy.count_bytes(path, len(data))  # before sending: the client may check as soon as it has them
        self.wfile.write(("\r\n".join(out) + "\r\n\r\n").encode("latin-1") + data)
        return True


class ForwardProxy(_Background):
    """A counting forward proxy on loopback (see the module docstring)."""

    def __init__(self, *, aliases: dict[str, str] | None = None, credentials: tuple[str, str] | None = None) -> None:
        self.aliases = aliases or {}
        self.credentials = credentials
        self.requests: Counter[tuple[str, str]] = Counter()
        self.bytes_out: Counter[str] = Counter()
        self.refused = 0
        self._lock = threading.Lock()
        super().__init__(_ProxyHandler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url_with(self, user: str, password: str) -> str:
        return f"http://{user}:{password}@127.0.0.1:{self.port}"

    def count(self, method: str, path: str) -> None:
        with self._lock:
            self.requests[(method, path)] += 1

    def count_bytes(self, path: str, size: int) -> None:
        with self._lock:
            self.bytes_out[path] += size

    def resolve(self, host: str) -> str:
        return self.aliases.get(host, host)

    def authorized(self, headers: dict[str, str]) -> bool:
        if self.credentials is None:
            return True
        token = base64.b64encode(":".join(self.credentials).encode()).decode()
        return headers.get("proxy-authorization") == f"Basic {token}"


class _TlsHandler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        front: TlsFront = self.server.owner  # type: ignore[attr-defined]
        try:
            tls = front.context.wrap_socket(self.request, server_side=True)
        except (OSError, ssl.SSLError):
            front.refused_handshakes += 1  # the client did not trust the certificate
            return
        front.handshakes += 1
        with tls, socket.create_connection(("127.0.0.1", front.upstream_port), timeout=10) as upstream:
            upstream.settimeout(None)
            _pipe(tls, upstream)


class TlsFront(_Background):
    """TLS (``certfile`` + ``keyfile``) in front of the plain server on ``upstream_port``."""

    def __init__(self, upstream_port: int, certfile: Path, keyfile: Path) -> None:
        self.upstream_port = upstream_port
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(certfile, keyfile)
        self.handshakes = 0
        self.refused_handshakes = 0
        super().__init__(_TlsHandler)


class _AnswerHandler(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        server: AnswerServer = self.server.owner  # type: ignore[attr-defined]
        head = _read_head(self.rfile)
        if head is None:
            return
        request_line, headers = head
        length = next((int(v) for k, v in headers if k.lower() == "content-length"), 0)
        if length:
            self.rfile.read(length)
        server.requests.append((request_line, dict((k.lower(), v) for k, v in headers)))
        try:
            for piece in server.answer():
                self.wfile.write(piece)
                server.bytes_sent += len(piece)
            server.finished = True
        except OSError:
            pass  # the client hung up: what the size cap is for


class AnswerServer(_Background):
    """Answers each request with the pieces ``answer()`` yields, then closes; counts bytes sent."""

    def __init__(self, answer: Callable[[], Iterable[bytes]], host: str = "127.0.0.1") -> None:
        self.answer = answer
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.bytes_sent = 0
        self.finished = False
        super().__init__(_AnswerHandler, host)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


def head(status: str, headers: dict[str, str]) -> bytes:
    return (f"HTTP/1.1 {status}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n").encode()


def endless_chunks(piece: bytes, limit: int) -> Iterator[bytes]:
    """A chunked body of ``piece`` repeated up to ``limit`` bytes: far more than any client should read."""
    yield head("200 OK", {"Content-Type": "application/json", "Transfer-Encoding": "chunked"})
    sent = 0
    while sent < limit:
        yield f"{len(piece):x}\r\n".encode() + piece + b"\r\n"
        sent += len(piece)
    yield b"0\r\n\r\n"


@dataclass(frozen=True)
class Certificates:
    ca: Path  # the CA that signed the server certificate (the right ca_bundle)
    other_ca: Path  # an unrelated CA (a wrong ca_bundle)
    cert: Path
    key: Path


def make_certificates(folder: Path, names: Iterable[str]) -> Certificates:
    """A CA, a server certificate it signs for ``names`` and 127.0.0.1, and an unrelated CA."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)

    def build(subject: str, key: Any, issuer: str, signer: Any, ca: bool, sans: list[Any]) -> Any:
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if ca:
            builder = builder.add_extension(
                x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True
            )
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        return builder.sign(signer, hashes.SHA256())

    def pem(cert: Any) -> bytes:
        return bytes(cert.public_bytes(serialization.Encoding.PEM))

    ca_key, other_key, server_key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
    ca = build("Comet test CA", ca_key, "Comet test CA", ca_key, True, [])
    other = build("Unrelated CA", other_key, "Unrelated CA", other_key, True, [])
    sans = [x509.DNSName(name) for name in names] + [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    server = build("comet test server", server_key, "Comet test CA", ca_key, False, sans)
    paths = Certificates(folder / "ca.pem", folder / "other-ca.pem", folder / "server.pem", folder / "server.key")
    paths.ca.write_bytes(pem(ca))
    paths.other_ca.write_bytes(pem(other))
    paths.cert.write_bytes(pem(server))
    paths.key.write_bytes(
        server_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return paths
