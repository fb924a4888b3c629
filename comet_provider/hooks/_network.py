"""The one network policy every request of the provider follows: proxy, TLS trust, answer size.

Submissions (httpx), polls in the triggerer (aiohttp), render downloads and source
HEADs (http.client) each ask the same :class:`NetworkPolicy`, built from the
``comet`` connection's extras:

- ``proxy``: an ``http://[user:password@]host:port`` proxy for every request; it
  replaces the environment's proxies (``NO_PROXY`` included), like httpx's ``proxy=``.
- otherwise ``HTTPS_PROXY`` / ``HTTP_PROXY`` / ``ALL_PROXY`` / ``NO_PROXY`` (either case,
  lower case winning), read and matched exactly as httpx does (its own parser is used);
- ``ca_bundle``: a PEM file of the CAs to trust instead of the system's;
- ``verify``: false turns certificate checks off (``ca_bundle`` is then ignored).

Proxy credentials are secrets like the API key: :meth:`NetworkPolicy.redact` removes
them and the policy's ``repr`` shows ``***`` in their place. API answers are capped
at :data:`MAX_ANSWER_BYTES`, compressed or decoded, and refused without being read
whole (:func:`read_answer`, :func:`aread_answer`).
"""

from __future__ import annotations

import base64
import functools
import os
import ssl
import zlib
from collections.abc import AsyncIterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

import httpx

from comet_provider.exceptions import CometConfigError, redact

__all__ = [
    "MAX_ANSWER_BYTES",
    "AnswerTooLarge",
    "NetworkPolicy",
    "ProxyRoute",
    "UnverifiedCertificate",
    "aread_answer",
    "certificate_failure",
    "decode_answer",
    "read_answer",
]

#: The most an API answer may be, compressed or decoded: feed and submit answers are a few KiB.
MAX_ANSWER_BYTES = 1 << 20
_TRUE = frozenset({"true", "1", "yes", "on"})
_FALSE = frozenset({"false", "0", "no", "off"})
# What an answer is decoded from; Accept-Encoding asks for no others.
_ZLIB_WBITS = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}


@dataclass(frozen=True)
class ProxyRoute:
    """How to reach one URL through a proxy; the credentials stay out of its ``repr``."""

    #: The proxy's URL without its credentials.
    url: str
    host: str
    port: int
    #: ``(user, password)``, decoded, when the proxy URL carries them.
    auth: tuple[str, str] | None = field(default=None, repr=False)
    #: ``Proxy-Authorization`` for those credentials, else empty.
    headers: dict[str, str] = field(default_factory=dict, repr=False)


class AnswerTooLarge(httpx.TransportError):
    """An API answer over the size cap, refused before it was read whole."""


class UnverifiedCertificate(httpx.ConnectError):
    """A server's TLS certificate failed verification; the message says against which CAs."""


@dataclass(frozen=True)
class NetworkPolicy:
    """Proxy, TLS trust and answer cap of one connection (or of the environment alone)."""

    conn_id: str | None = None
    #: The connection's ``proxy`` extra (with its credentials); None: the environment's.
    proxy: str | None = None
    ca_bundle: str | None = None
    verify: bool = True
    max_answer_bytes: int = MAX_ANSWER_BYTES
    #: ``(httpx mount pattern, proxy or None for NO_PROXY)`` read from the environment.
    env_proxies: tuple[tuple[str, str | None], ...] = field(default_factory=lambda: _environment_proxies())
    _patterns: list[tuple[Any, str | None]] = field(init=False, repr=False, compare=False)
    _routes: dict[tuple[str, str, int | None], ProxyRoute | None] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        from httpx._utils import URLPattern  # httpx's own NO_PROXY matching

        patterns = [] if self.proxy else [(URLPattern(key), value) for key, value in self.env_proxies]
        # Most specific first, as httpx orders its mounts: the first match decides.
        object.__setattr__(self, "_patterns", sorted(patterns, key=lambda item: item[0]))
        object.__setattr__(self, "_routes", {})

    @classmethod
    def from_extra(cls, conn_id: str, extra: Mapping[str, Any]) -> NetworkPolicy:
        """The policy of a ``comet`` connection's extras; each problem names the extra to fix."""
        proxy = extra.get("proxy") or None
        if proxy is not None:
            if not isinstance(proxy, str):
                raise CometConfigError(f"Connection {conn_id!r}: extra 'proxy' must be text (a URL).")
            proxy = _checked_proxy(proxy.strip(), f"Connection {conn_id!r}: extra 'proxy'")
        ca_bundle = extra.get("ca_bundle") or None
        if ca_bundle is not None:
            if not isinstance(ca_bundle, str):
                raise CometConfigError(f"Connection {conn_id!r}: extra 'ca_bundle' must be text (a file path).")
            ca_bundle = os.path.expanduser(ca_bundle.strip())
            if not os.path.isfile(ca_bundle):
                raise CometConfigError(
                    f"Connection {conn_id!r}: extra 'ca_bundle' names no file on this machine: {ca_bundle!r} "
                    "(workers and triggerers each need it)."
                )
        verify = _flag(extra.get("verify"), f"Connection {conn_id!r}: extra 'verify'")
        policy = cls(conn_id, proxy, ca_bundle, verify)
        policy._mask_credentials()
        return policy

    def __repr__(self) -> str:
        shown = self.redact(self.proxy) if self.proxy else None
        return (
            f"NetworkPolicy(conn_id={self.conn_id!r}, proxy={shown!r}, ca_bundle={self.ca_bundle!r}, "
            f"verify={self.verify})"
        )

    # -- proxies ----------------------------------------------------------------------------------

    def proxy_for(self, url: str | httpx.URL) -> str | None:
        """The proxy URL (credentials included) to reach ``url`` through, or None to go direct."""
        if self.proxy:
            return self.proxy
        target = url if isinstance(url, httpx.URL) else httpx.URL(url)
        for pattern, proxy in self._patterns:
            if pattern.matches(target):
                if proxy is None:
                    return None  # NO_PROXY
                return _checked_proxy(proxy, f"The environment's {pattern.pattern.split(':', 1)[0].upper()}_PROXY")
        return None

    def route(self, url: str | httpx.URL) -> ProxyRoute | None:
        """The proxy to reach ``url`` through, split for clients that take credentials apart; None: direct."""
        target = url if isinstance(url, httpx.URL) else httpx.URL(url)
        key = (target.scheme, target.host, target.port)
        if key in self._routes:
            return self._routes[key]
        proxy = self.proxy_for(target)
        route = None
        if proxy is not None:
            parts = httpx.URL(proxy)
            auth, headers = None, {}
            if parts.userinfo:
                user, password = parts.username, parts.password  # percent-decoded
                auth = (user, password)
                token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
                headers["Proxy-Authorization"] = f"Basic {token}"
            shown = str(parts.copy_with(username=None, password=None))
            route = ProxyRoute(shown, parts.host, parts.port or 80, auth, headers)
        if len(self._routes) < 256:
            self._routes[key] = route
        return route

    def secrets(self) -> tuple[str, ...]:
        """Every form in which a proxy credential could show up, longest first."""
        return _credentials(self.proxy, *(value for _, value in self.env_proxies))

    def redact(self, text: str) -> str:
        """``text`` without any proxy credential."""
        secrets = self.secrets()
        return redact(text, *secrets) if secrets else text

    @property
    def custom_trust(self) -> bool:
        """Whether TLS trust differs from the system default (a ``ca_bundle``, or ``verify`` off): clients
        whose own default context is the system's need :meth:`ssl_context` only then."""
        return bool(self.ca_bundle) or not self.verify

    def shown_proxy(self, url: str | httpx.URL) -> str | None:
        """The proxy for ``url`` as logs and errors may show it (credentials as ``***``)."""
        proxy = self.proxy_for(url)
        return None if proxy is None else self.redact(proxy)

    def _mask_credentials(self) -> None:
        # Airflow masks secrets only under sensitive names; "proxy" is not one.
        secrets = self.secrets()
        if secrets:
            from airflow.providers.common.compat.sdk import mask_secret

            for secret in secrets:
                mask_secret(secret)

    # -- TLS --------------------------------------------------------------------------------------

    def ssl_context(self) -> ssl.SSLContext:
        """The TLS context for every https request (built once per process per bundle)."""
        try:
            return _ssl_context(self.ca_bundle, self.verify)
        except (OSError, ssl.SSLError) as exc:
            raise CometConfigError(
                f"Connection {self.conn_id!r}: extra 'ca_bundle' {self.ca_bundle!r} could not be loaded as a "
                f"PEM file of CA certificates ({type(exc).__name__}: {exc})."
            ) from None

    def certificate_message(self, host: str, failure: ssl.SSLCertVerificationError | None) -> str:
        """Why ``host``'s certificate was refused, and which setting to change."""
        # getattr: aiohttp's certificate error also passes for ssl.CertificateError, without its fields.
        reason = getattr(failure, "verify_message", None) or "verification failed"
        if self.ca_bundle:
            return (
                f"The TLS certificate of {host} could not be verified with the CA bundle {self.ca_bundle} "
                f"(extra 'ca_bundle' of connection {self.conn_id!r}): {reason}. Put the CA that signs it "
                "(for a TLS-inspecting proxy, the proxy's CA) in that PEM file."
            )
        where = f"connection {self.conn_id!r}" if self.conn_id else "the comet connection"
        return (
            f"The TLS certificate of {host} could not be verified with this machine's trusted CAs: {reason}. "
            f"If a private CA or a TLS-inspecting proxy signs it, set the extra 'ca_bundle' of {where} "
            "to a PEM file of that CA."
        )


def certificate_failure(exc: BaseException) -> ssl.SSLCertVerificationError | None:
    """The certificate verification failure behind ``exc`` (through its causes), if that is what it was."""
    seen: set[int] = set()
    found: ssl.SSLCertVerificationError | None = None
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, ssl.SSLCertVerificationError):
            if hasattr(current, "verify_message"):  # ssl's own, not a wrapper that subclasses it
                return current
            found = found or current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return found


# -- answers ----------------------------------------------------------------------------------------


def check_declared_length(headers: Mapping[str, str], limit: int) -> None:
    """Refuse an answer whose Content-Length already says it is over ``limit``."""
    declared = headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > limit:
        raise AnswerTooLarge(f"the answer declares {int(declared)} bytes, over the {_mib(limit)} cap for API answers")


def read_answer(response: httpx.Response, limit: int = MAX_ANSWER_BYTES) -> bytes:
    """The decoded body of a streamed API answer; :class:`AnswerTooLarge` past ``limit``, unread beyond it."""
    check_declared_length(response.headers, limit)
    try:
        content = response.content  # already in memory (a caller's transport): nothing to stream
    except httpx.ResponseNotRead:
        pass
    else:
        if len(content) > limit:
            raise AnswerTooLarge(f"the answer is {len(content)} bytes, over the {_mib(limit)} cap for API answers")
        return content
    raw = bytearray()
    for chunk in response.iter_raw():
        raw += chunk
        if len(raw) > limit:
            raise AnswerTooLarge(f"more than the {_mib(limit)} cap for API answers arrived; the rest was not read")
    return decode_answer(bytes(raw), response.headers.get("Content-Encoding"), limit)


async def aread_answer(
    chunks: AsyncIterable[bytes], headers: Mapping[str, str], limit: int = MAX_ANSWER_BYTES
) -> bytes:
    """Async twin of :func:`read_answer` over raw body chunks (e.g. aiohttp's ``content.iter_any()``)."""
    check_declared_length(headers, limit)
    raw = bytearray()
    async for chunk in chunks:
        raw += chunk
        if len(raw) > limit:
            raise AnswerTooLarge(f"more than the {_mib(limit)} cap for API answers arrived; the rest was not read")
    return decode_answer(bytes(raw), headers.get("Content-Encoding"), limit)


def decode_answer(raw: bytes, content_encoding: str | None, limit: int = MAX_ANSWER_BYTES) -> bytes:
    """``raw`` decoded (gzip, deflate), never past ``limit`` bytes; unknown codings are left as they are."""
    codings = [c.strip().lower() for c in (content_encoding or "").split(",") if c.strip()]
    data = raw
    for coding in reversed(codings):
        wbits = _ZLIB_WBITS.get(coding)
        if wbits is None:
            continue  # identity, or a coding never asked for: parsing it will fail clearly
        try:
            data = _inflate(data, wbits, limit)
        except zlib.error:
            if coding != "deflate":
                raise httpx.RemoteProtocolError(f"the answer is not valid {coding}") from None
            try:
                data = _inflate(data, -zlib.MAX_WBITS, limit)  # raw deflate, as some servers send
            except zlib.error:
                raise httpx.RemoteProtocolError("the answer is not valid deflate") from None
    return data


def _inflate(data: bytes, wbits: int, limit: int) -> bytes:
    decoder = zlib.decompressobj(wbits)
    out = decoder.decompress(data, limit + 1)
    if len(out) <= limit and not decoder.unconsumed_tail:
        out += decoder.flush()
    if len(out) > limit or decoder.unconsumed_tail:
        raise AnswerTooLarge(f"the answer decompresses to more than the {_mib(limit)} cap for API answers")
    return out


def _mib(limit: int) -> str:
    return f"{limit / (1 << 20):g} MiB" if limit >= 1 << 20 else f"{limit} bytes"


# -- parsing ----------------------------------------------------------------------------------------


def _environment_proxies() -> tuple[tuple[str, str | None], ...]:
    from httpx._utils import get_environment_proxies  # urllib's getproxies(), as httpx reads it

    return tuple(sorted(get_environment_proxies().items(), key=lambda item: item[0]))


def _checked_proxy(proxy: str, what: str) -> str:
    """``proxy`` as an http:// URL (a bare ``host:port`` gets the scheme); raises naming ``what``."""
    text = proxy if "://" in proxy else f"http://{proxy}"
    try:
        parts = httpx.URL(text)
    except (httpx.InvalidURL, TypeError, ValueError):
        parts = None
    if parts is None or parts.scheme != "http" or not parts.host:
        shown = redact(text, *_credentials(text))
        raise CometConfigError(
            f"{what} must be an http:// proxy URL such as http://proxy.example:3128, got {shown!r} "
            "(https traffic is tunnelled through it with CONNECT)."
        )
    return text


def _credentials(*proxies: str | None) -> tuple[str, ...]:
    found: set[str] = set()
    for proxy in proxies:
        if not proxy or "@" not in proxy:
            continue
        userinfo = proxy.split("://", 1)[-1].rsplit("@", 1)[0]
        decoded = unquote(userinfo)
        found.update({userinfo, decoded, base64.b64encode(decoded.encode()).decode("ascii")})
        if ":" in userinfo:
            found.update({userinfo.split(":", 1)[1], decoded.split(":", 1)[1]})
    return tuple(sorted((s for s in found if len(s) >= 4), key=len, reverse=True))


def _flag(value: Any, what: str) -> bool:
    if value is None or value == "":
        return True
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise CometConfigError(f"{what} must be true or false, got {value!r}.")


@functools.lru_cache(maxsize=16)
def _ssl_context(ca_bundle: str | None, verify: bool) -> ssl.SSLContext:
    # Loading a CA store takes ~20 ms: once per process per bundle.
    if not verify:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    # No bundle: the system's CAs (and SSL_CERT_FILE / SSL_CERT_DIR, which OpenSSL reads).
    return ssl.create_default_context(cafile=ca_bundle)
