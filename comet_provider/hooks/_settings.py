"""Connection settings: what a CometAPI request needs, read once from the ``comet`` connection."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx

from comet_provider import __version__
from comet_provider.exceptions import CometConfigError, CometError, CometValidationError
from comet_provider.hooks._network import NetworkPolicy
from comet_provider.utils.validation import check_http_url

if TYPE_CHECKING:
    from airflow.sdk import Connection

__all__ = [
    "DEFAULT_BASE_URL",
    "DEFAULT_RUNWAY_VERSION",
    "DEFAULT_TIMEOUT",
    "FEED_PATH",
    "OFFICIAL_SUBMIT_PATH",
    "OFFICIAL_TASK_PATH",
    "ROUTES",
    "SUBMIT_PATH",
    "USER_AGENT",
    "CometSettings",
    "check_route",
    "http_timeout",
]

DEFAULT_BASE_URL = "https://api.cometapi.com"
DEFAULT_RUNWAY_VERSION = "2024-11-06"
DEFAULT_TIMEOUT = 30.0
SUBMIT_PATH = "/runway/pro/video2video"
FEED_PATH = "/runway/feed"
#: Runway's own API format on CometAPI (model ``gen4_aleph``): submit, and poll by GET with the id appended.
OFFICIAL_SUBMIT_PATH = "/runwayml/v1/video_to_video"
OFFICIAL_TASK_PATH = "/runwayml/v1/tasks/"
#: The routes a task can be polled on: "pro" (the feed) and "official" (the task path).
ROUTES = ("pro", "official")
USER_AGENT = f"airflow-provider-comet/{__version__}"
_FIXED_PATHS = (SUBMIT_PATH, FEED_PATH, OFFICIAL_SUBMIT_PATH)


def check_route(route: object) -> str:
    """``"pro"`` or ``"official"`` (also from a :class:`str` enum member), or a CometValidationError."""
    name = getattr(route, "value", route)
    if isinstance(name, str) and name.strip().lower() in ROUTES:
        return name.strip().lower()
    raise CometValidationError("route", f"expected 'pro' or 'official', got {route!r}")


def http_timeout(seconds: float) -> httpx.Timeout:
    """``seconds`` for each read, at most 10 s to open a connection."""
    return httpx.Timeout(seconds, connect=min(seconds, 10.0))


@dataclass(frozen=True)
class CometSettings:
    """Everything a request needs, read once from the Airflow connection."""

    conn_id: str
    base_url: str
    api_key: str = field(repr=False)
    runway_version: str = DEFAULT_RUNWAY_VERSION
    timeout: float = DEFAULT_TIMEOUT
    callback_url: str | None = None
    #: Proxy, TLS trust and answer cap for every request (extras ``proxy``, ``ca_bundle``, ``verify``).
    network: NetworkPolicy = field(default_factory=NetworkPolicy)
    headers: httpx.Headers = field(init=False, repr=False, compare=False)
    timeout_extension: dict[str, Any] = field(init=False, repr=False, compare=False)
    urls: dict[str, httpx.URL] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Parsed once: URL parsing was the largest client-side cost of a poll.
        object.__setattr__(self, "urls", {path: httpx.URL(self.base_url + path) for path in _FIXED_PATHS})
        object.__setattr__(self, "timeout_extension", {"timeout": http_timeout(self.timeout).as_dict()})
        # Built once (as httpx.Headers, which requests copy cheaply): no per-poll encoding.
        object.__setattr__(
            self,
            "headers",
            httpx.Headers(
                {
                    "Authorization": f"Bearer {self.api_key}",
                    "X-Runway-Version": self.runway_version,
                    "Content-Type": "application/json",
                    "Accept": "application/json",
                    # Only codings the answer cap can decode in bounded memory (no br/zstd).
                    "Accept-Encoding": "gzip, deflate",
                    "User-Agent": USER_AGENT,
                }
            ),
        )

    @classmethod
    def from_connection(cls, conn: Connection, extra: dict[str, Any]) -> CometSettings:
        """Validate a ``comet`` connection; each problem names the field to fix."""
        conn_id = conn.conn_id
        api_key = (conn.password or "").strip()
        if not api_key:
            raise CometConfigError(
                f"Connection {conn_id!r} has no API key: put your CometAPI key in its Password field."
            )
        base_url = _base_url(conn_id, conn.host, conn.port)
        version = extra.get("runway_version") or DEFAULT_RUNWAY_VERSION
        if not isinstance(version, str):
            raise CometConfigError(f"Connection {conn_id!r}: extra 'runway_version' must be text.")
        raw_timeout = extra.get("timeout")
        try:
            timeout = float(raw_timeout) if raw_timeout not in (None, "") else DEFAULT_TIMEOUT
        except (TypeError, ValueError):
            timeout = -1.0
        if not 0 < timeout <= 600:
            raise CometConfigError(
                f"Connection {conn_id!r}: extra 'timeout' must be seconds between 0 and 600, got {raw_timeout!r}."
            )
        callback_url = extra.get("callback_url") or None
        if callback_url is not None:
            try:
                callback_url = check_http_url("callback_url", callback_url)
            except CometError as exc:
                raise CometConfigError(f"Connection {conn_id!r}: extra {exc}") from None
        network = NetworkPolicy.from_extra(conn_id, extra)
        return cls(conn_id, base_url, api_key, version.strip(), timeout, callback_url, network)


def _base_url(conn_id: str, raw_host: str | None, port: int | None) -> str:
    host = (raw_host or "").strip()
    if not host:
        return DEFAULT_BASE_URL
    if any(ch.isspace() for ch in host):
        raise CometConfigError(f"Connection {conn_id!r}: Host contains whitespace: {raw_host!r}.")
    if "://" not in host:
        host = f"https://{host}"
    parts = httpx.URL(host) if _valid_url(host) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.host:
        raise CometConfigError(
            f"Connection {conn_id!r}: Host must be a base URL such as https://api.cometapi.com "
            f"or http://127.0.0.1:8765, got {raw_host!r}."
        )
    if port and parts.port is None:
        parts = parts.copy_with(port=int(port))
    return str(parts).rstrip("/")


def _valid_url(text: str) -> bool:
    try:
        httpx.URL(text)
    except (httpx.InvalidURL, TypeError, ValueError):
        return False
    return True
