"""Fetching from render and source hosts: one render download, one HEAD for a source's identity.

Bytes move from the socket into one reused buffer and from there to the
destination's writer (``readinto`` and a memoryview: no per-chunk copy) when the
transport offers it (``DownloadTransport``), else through ``iter_raw()``.
Requests go straight to the transport, redirects followed here: an
``httpx.Client`` would log every URL whole at INFO, signed query strings included.
The API key is sent only where the caller says the API itself serves the render (the gateway's
``/v1/videos/{id}/content`` proxy, on the connection's own host), and never after a redirect to
another origin: render URLs are usually on a CDN. Proxy and TLS trust are the connection's
network policy (:mod:`._network`), applied by the transport.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING

import httpx

from comet_provider.exceptions import CometAPIError, CometConfigError, CometConnectionError, without_query
from comet_provider.hooks._errors import _render_answer_error, _render_transport_error
from comet_provider.hooks._network import UnverifiedCertificate
from comet_provider.hooks._settings import USER_AGENT
from comet_provider.hooks.storage import AtomicFile

if TYPE_CHECKING:
    from comet_provider.hooks.storage import Destination

__all__ = ["BUFFER_SIZE", "ApiKeyFor", "fetch_render", "head_identity", "origin", "probe_render"]

log = logging.getLogger(__name__)

#: Read size of the reused buffer: large enough that per-chunk work is negligible.
BUFFER_SIZE = 1 << 20
# Stored as sent: ask for no content coding, or a CDN may gzip the file. No API key.
_HEADERS = {"Accept": "*/*", "Accept-Encoding": "identity", "User-Agent": USER_AGENT}
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_MAX_REDIRECTS = 10
_DEFAULT_PORTS = {"http": 80, "https": 443}

#: (origin, Authorization header): the one origin a request may carry the API key to.
ApiKeyFor = tuple[tuple[str, str, int | None], str]


def origin(url: str | httpx.URL) -> tuple[str, str, int | None]:
    """Scheme, host and port of ``url`` (the default port filled in)."""
    parts = httpx.URL(url)
    return parts.scheme, parts.host, parts.port or _DEFAULT_PORTS.get(parts.scheme)


@contextlib.contextmanager
def _opened(
    transport: httpx.BaseTransport,
    method: str,
    url: str,
    timeout: httpx.Timeout,
    headers: dict[str, str] = _HEADERS,
    api_key_for: ApiKeyFor | None = None,
) -> Iterator[httpx.Response]:
    """The final answer to ``method url`` (GET or HEAD), redirects followed; closed on exit.

    ``api_key_for``: the Authorization header rides only on requests to that origin."""
    target = httpx.URL(url)
    extensions = {"timeout": timeout.as_dict()}
    for _ in range(_MAX_REDIRECTS + 1):
        sent = headers
        if api_key_for is not None and origin(target) == api_key_for[0]:
            sent = {**headers, "Authorization": api_key_for[1]}
        response = transport.handle_request(httpx.Request(method, target, headers=sent, extensions=extensions))
        location = response.headers.get("Location")
        if response.status_code not in _REDIRECTS or not location:
            break
        response.close()
        target = target.join(location)
        if target.scheme not in ("http", "https"):
            raise CometAPIError(f"{without_query(url)} redirected to a {target.scheme!r} URL.")
    else:
        raise CometAPIError(f"{without_query(url)} redirected more than {_MAX_REDIRECTS} times.")
    try:
        yield response
    finally:
        response.close()


def fetch_render(
    transport: httpx.BaseTransport,
    url: str,
    destination: Destination,
    timeout: httpx.Timeout,
    api_key_for: ApiKeyFor | None = None,
) -> tuple[str, int]:
    """GET ``url`` into ``destination`` atomically; ``(where it was stored, bytes)``.

    Raises :class:`RenderUnavailableError` when the link is gone or serves a page,
    :class:`CometConnectionError` when the body was cut short or the connection failed.
    """
    try:
        with _opened(transport, "GET", url, timeout, api_key_for=api_key_for) as response:
            chunks = _chunks(response)
            first = next(chunks, b"") if response.status_code == 200 else b""
            error = _render_answer_error(response.status_code, response.headers, first, url)
            if error is not None:
                raise error
            expected = response.headers.get("Content-Length")
            size = 0
            with AtomicFile(destination) as sink:
                chunk = first
                # Each chunk may be a view of the one buffer, written before the next read; writers
                # only read it during write() (the io contract), so reusing it is safe.
                while chunk:
                    sink.write(chunk)
                    size += len(chunk)
                    chunk = next(chunks, b"")
                if expected is not None and expected.isdigit() and int(expected) != size:
                    raise CometConnectionError(
                        f"The render download was cut short: {size} of {expected} bytes arrived.",
                        request_sent=True,
                    )
                return sink.commit(), size
    except UnverifiedCertificate as exc:  # no retry fixes the trust settings
        raise CometConfigError(str(exc)) from None
    except httpx.TransportError as exc:
        raise _render_transport_error(exc) from None


def probe_render(
    transport: httpx.BaseTransport, url: str, timeout: httpx.Timeout, api_key_for: ApiKeyFor | None = None
) -> None:
    """Whether ``url`` still serves the render, from its first KiB: raises what :func:`fetch_render` would."""
    try:
        with _opened(transport, "GET", url, timeout, {**_HEADERS, "Range": "bytes=0-1023"}, api_key_for) as response:
            status = 200 if response.status_code == 206 else response.status_code
            first = next(_chunks(response), b"") if status == 200 else b""
            error = _render_answer_error(status, response.headers, first, url)
    except UnverifiedCertificate as exc:  # no retry fixes the trust settings
        raise CometConfigError(str(exc)) from None
    except httpx.TransportError as exc:
        raise _render_transport_error(exc) from None
    if error is not None:
        raise error


def _chunks(response: httpx.Response) -> Iterator[bytes | memoryview]:
    readinto = response.extensions.get("readinto")
    if readinto is None:
        yield from response.iter_raw()
        return
    buffer = memoryview(bytearray(BUFFER_SIZE))
    while n := readinto(buffer):
        yield buffer[:n]


def head_identity(transport: httpx.BaseTransport, url: str, timeout: httpx.Timeout) -> str | None:
    """ETag, Last-Modified and Content-Length of ``url`` from one HEAD; None if none or any error."""
    shown = without_query(url)
    try:
        with _opened(transport, "HEAD", url, timeout) as response:
            status, headers = response.status_code, response.headers
    except Exception as exc:  # an unknown identity is an answer, not a failure
        why = str(exc) if isinstance(exc, UnverifiedCertificate) else type(exc).__name__
        log.info("Could not read the identity of source %s (%s); using its URL.", shown, why)
        return None
    if not 200 <= status < 300:
        log.info("Source %s answered HEAD with HTTP %d; using its URL.", shown, status)
        return None
    parts = [
        f"{name.lower()}={value}"
        for name in ("ETag", "Last-Modified", "Content-Length")
        if (value := headers.get(name, "").strip())
    ]
    if not parts:
        log.info("Source %s names no ETag, Last-Modified or Content-Length; using its URL.", shown)
        return None
    return ";".join(parts)
