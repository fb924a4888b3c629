"""A loopback S3 front that checks presigned URLs the way S3 does, in front of moto's server.

moto serves any URL that carries a ``Signature=`` parameter, valid or not, so on its own it
cannot show that a tampered or expired URL is refused. This gate recomputes each presigned
GET's signature (SigV4 query auth, and the legacy SigV2 botocore still presigns with by
default) from the secret key, checks the expiry against a clock the test sets, and answers 403
for a bad one; a good one is forwarded to moto. URLs with no signature are forwarded as they
are (moto refuses a private object to anonymous readers).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, quote, urlsplit

import httpx


def _hmac(key: bytes, text: str, digest: str = "sha256") -> bytes:
    return hmac.new(key, text.encode(), digest).digest()


def sigv4_problem(method: str, target: str, headers: dict[str, str], secret: str, now: float) -> str | None:
    """Why a SigV4 presigned request is invalid, or None if S3 would accept it."""
    split = urlsplit(target)
    pairs = parse_qsl(split.query, keep_blank_values=True)
    params = dict(pairs)
    amz_date = params["X-Amz-Date"]
    signed_at = datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=timezone.utc).timestamp()
    if now > signed_at + int(params["X-Amz-Expires"]):
        return "Request has expired"
    scope = params["X-Amz-Credential"].split("/", 1)[1]
    date, region, service, _ = scope.split("/")
    canonical_query = "&".join(
        f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}" for k, v in sorted(pairs) if k != "X-Amz-Signature"
    )
    names = params["X-Amz-SignedHeaders"].split(";")
    canonical_headers = "".join(f"{name}:{headers[name].strip()}\n" for name in names)
    canonical = "\n".join([method, split.path, canonical_query, canonical_headers, ";".join(names), "UNSIGNED-PAYLOAD"])
    to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    key = f"AWS4{secret}".encode()
    for part in (date, region, service, "aws4_request"):
        key = _hmac(key, part)
    expected = hmac.new(key, to_sign.encode(), "sha256").hexdigest()
    return None if hmac.compare_digest(expected, params["X-Amz-Signature"]) else "SignatureDoesNotMatch"


def sigv2_problem(method: str, target: str, secret: str, now: float) -> str | None:
    """Why a SigV2 presigned request is invalid, or None if S3 would accept it."""
    split = urlsplit(target)
    params = dict(parse_qsl(split.query, keep_blank_values=True))
    if now > int(params["Expires"]):
        return "Request has expired"
    to_sign = f"{method}\n\n\n{params['Expires']}\n{split.path}"
    expected = base64.b64encode(_hmac(secret.encode(), to_sign, "sha1")).decode()
    return None if hmac.compare_digest(expected, params["Signature"]) else "SignatureDoesNotMatch"


class SignedGate:
    """``endpoint`` is what the connection points at; ``clock`` is the gate's idea of now."""

    def __init__(self, upstream: str, secret: str) -> None:
        self.upstream = upstream
        self.secret = secret
        self.clock: Callable[[], float] = time.time
        self.refusals: list[str] = []
        gate = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                gate._serve(self)

            def log_message(self, format: str, *args: object) -> None:  # quiet: URLs carry signatures
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def __enter__(self) -> SignedGate:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _serve(self, handler: BaseHTTPRequestHandler) -> None:
        headers = {name.lower(): value for name, value in handler.headers.items()}
        query = urlsplit(handler.path).query
        problem = None
        if "X-Amz-Signature=" in query:
            problem = sigv4_problem("GET", handler.path, headers, self.secret, self.clock())
        elif "Signature=" in query:
            problem = sigv2_problem("GET", handler.path, self.secret, self.clock())
        if problem is not None:
            self.refusals.append(problem)
            status, body, content_type = 403, f"<Error><Code>{problem}</Code></Error>".encode(), "application/xml"
        else:
            answer = httpx.get(self.upstream + handler.path)
            status, body = answer.status_code, answer.content
            content_type = answer.headers.get("content-type", "application/octet-stream")
        handler.send_response(status)
        handler.send_header("Content-Type", content_type)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)
