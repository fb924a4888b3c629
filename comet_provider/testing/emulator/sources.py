"""Fetching a task's inputs as Runway would: ``data:`` URIs and http(s) URLs, signed ones included.

A signed URL (S3/GCS presigned GET) must reach its server byte for byte: its signature covers
the query string, so the URL is sent as given (never re-quoted) whenever it is already encoded.
Limits and media types follow Runway's documented input rules.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import os
import re
from pathlib import Path

from aiohttp import ClientError, ClientSession, ClientTimeout
from yarl import URL

from comet_provider.testing.emulator.wire import safe_url
from comet_provider.testing.render import RenderError

#: Runway's limits: a ``data:`` URI's whole length, and the size of a file fetched from a URL.
DATA_URI_LIMITS = {"video": 16_000_000, "image": 5_000_000}
URL_SIZE_LIMITS = {"video": 32_000_000, "image": 16_000_000}
MEDIA_TYPES = {
    "video": frozenset({"video/mp4", "video/quicktime", "video/webm"}),
    "image": frozenset({"image/png", "image/jpeg", "image/jpg", "image/webp"}),
}
# Untyped uploads (boto3 without ContentType, plain file servers) say nothing about the media.
_GENERIC_TYPES = frozenset({"", "application/octet-stream", "binary/octet-stream"})
_BASE64 = re.compile(r"[A-Za-z0-9+/]*={0,2}")
# Characters that may appear as-is in an already-encoded URL (RFC 3986 plus "%").
_URL_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~:/?#[]@!$&'()*+,;=%")


def source_identity(uri: str) -> str:
    """What a source is, whatever its signature: a URL without query/userinfo, a ``data:`` URI by digest.

    Two presigned URLs of one object have the same identity; so do two equal ``data:`` URIs."""
    if uri[:5].lower() == "data:":
        head, _, payload = uri.partition(",")
        digest = hashlib.sha256(payload.encode()).hexdigest()[:16]
        return f"{head.split(';', 1)[0]};sha256={digest}"
    return safe_url(uri)


def data_uri_parts(uri: str) -> tuple[str, str]:
    """(media type, base64 payload) of a ``data:`` URI; ValueError when it is not a base64 one."""
    head, sep, payload = uri.partition(",")
    params = head[5:].split(";")
    if not sep or "base64" not in (p.strip().lower() for p in params[1:]):
        raise ValueError("must be a base64 data: URI (data:<type>;base64,...)")
    return params[0].strip().lower(), payload


def check_data_uri(uri: str, media: str) -> None:
    """ValueError saying what is wrong with a ``data:`` URI for ``media`` (type, size, encoding)."""
    media_type, payload = data_uri_parts(uri)
    if media_type not in MEDIA_TYPES[media]:
        allowed = ", ".join(sorted(MEDIA_TYPES[media]))
        raise ValueError(f"has media type {media_type or 'none'!r}; {media} data: URIs must be one of {allowed}")
    limit = DATA_URI_LIMITS[media]
    if len(uri) > limit:
        raise ValueError(f"is {len(uri)} characters long; {media} data: URIs may be at most {limit}")
    if not payload or len(payload) % 4 or _BASE64.fullmatch(payload) is None:
        raise ValueError("is not valid base64")


def request_url(url: str) -> URL | str:
    """The URL to request: as given when already encoded (keeps a signature valid), else quoted."""
    if url.isascii() and all(c in _URL_CHARS for c in url):
        return URL(url, encoded=True)
    return url


def _decode_to(payload: str, dest: Path) -> None:
    data = base64.b64decode(payload, validate=True)
    dest.write_bytes(data)


async def fetch_source(
    session: ClientSession,
    uri: str,
    dest: Path,
    *,
    media: str = "video",
    timeout: float = 60.0,
    checked: bool = False,
    what: str = "source video",
) -> None:
    """Write the input at ``uri`` to ``dest`` (atomically); RenderError ``ASSET.INVALID`` on any failure.

    ``checked`` applies Runway's size limit and media types (the official route); the gen4
    route fetches anything, as before. Messages show URLs without their query string."""
    partial = dest.with_name(dest.name + ".partial")
    try:
        if uri[:5].lower() == "data:":
            try:
                if checked:
                    check_data_uri(uri, media)
                _media_type, payload = data_uri_parts(uri)
                await asyncio.to_thread(_decode_to, payload, partial)
            except (ValueError, binascii.Error) as exc:
                raise RenderError("ASSET.INVALID", f"could not read {what} ({source_identity(uri)}): {exc}") from None
        else:
            await _download(session, uri, partial, media=media, timeout=timeout, checked=checked, what=what)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    os.replace(partial, dest)


async def _download(
    session: ClientSession, url: str, partial: Path, *, media: str, timeout: float, checked: bool, what: str
) -> None:
    shown = safe_url(url)
    limit = URL_SIZE_LIMITS[media] if checked else None
    try:
        async with session.get(request_url(url), timeout=ClientTimeout(total=timeout)) as resp:
            if resp.status != 200:
                raise RenderError("ASSET.INVALID", f"could not fetch {what}: HTTP {resp.status} from {shown}")
            if checked:
                media_type = resp.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()
                if media_type not in _GENERIC_TYPES and media_type not in MEDIA_TYPES[media]:
                    raise RenderError(
                        "ASSET.INVALID",
                        f"{what} at {shown} has Content-Type {media_type!r}, not one of Runway's {media} types",
                    )
            size = 0
            with partial.open("wb") as out:
                async for chunk in resp.content.iter_chunked(1 << 20):
                    size += len(chunk)
                    if limit is not None and size > limit:
                        raise RenderError("ASSET.INVALID", f"{what} at {shown} is larger than {limit} bytes")
                    out.write(chunk)
    except (ClientError, asyncio.TimeoutError, OSError) as exc:
        # Some errors quote the URL: never its signature.
        detail = (str(exc) or type(exc).__name__).replace(url, shown)
        raise RenderError("ASSET.INVALID", f"could not fetch {what} from {shown}: {detail}") from None
