"""Where Runway fetches a source from: a URL as given, a signed object-storage URL, or a ``data:`` URI.

:func:`check_source` classifies and checks a user's value before any request (it reads no
storage and no network); :func:`resolve_source` turns it into the URI Runway is sent, right
before the submission. A signed URL is a credential: its query string is registered with
Airflow's secrets masker, and only :attr:`ResolvedSource.shown` (no query) is meant for logs,
errors and XCom.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

from comet_provider._compat import is_object_storage_path
from comet_provider.exceptions import CometValidationError, without_query
from comet_provider.utils.routes import Route
from comet_provider.utils.validation import check_http_url

__all__ = [
    "IMAGE_DATA_URI_LIMIT",
    "MAX_SIGNED_URL_SECONDS",
    "MEDIA_TYPES",
    "RUNWAY_FETCH_SECONDS",
    "VIDEO_DATA_URI_LIMIT",
    "ResolvedSource",
    "Source",
    "check_source",
    "data_uri_length",
    "resolve_source",
    "shown_uri",
    "signed_url_lifetime",
]

SourceKind = Literal["url", "storage", "local"]
Media = Literal["video", "image"]

#: Runway's limits on a whole ``data:`` URI, in characters.
VIDEO_DATA_URI_LIMIT = 16_000_000
IMAGE_DATA_URI_LIMIT = 5_000_000
_DATA_URI_LIMITS: dict[str, int] = {"video": VIDEO_DATA_URI_LIMIT, "image": IMAGE_DATA_URI_LIMIT}
#: The content types Runway accepts, by file extension.
MEDIA_TYPES: dict[str, dict[str, str]] = {
    "video": {".mp4": "video/mp4", ".mov": "video/quicktime", ".webm": "video/webm"},
    "image": {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".webp": "image/webp"},
}
#: SigV4's maximum lifetime of a presigned URL.
MAX_SIGNED_URL_SECONDS = 7 * 24 * 3600
#: How long after the try's timeout Runway may still fetch a source (its queue can hold a task).
RUNWAY_FETCH_SECONDS = 3600

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*)://")
_LOCAL_PROTOCOLS = frozenset({"", "file", "local"})
# Query parameters that carry a signature or a credential (S3, GCS, Azure SAS, OSS, ...).
_SECRET_PARAM = re.compile(r"(?i)signature|credential|token|^sig$|accessid|accesskey")
_SIGNING_LOGGERS = ("botocore.auth",)
_URL_QUERY = re.compile(r"(?i)(\b[a-z][a-z0-9+.\-]*://[^\s?#\"']*)\?[^\s\"']*")

_STAGE_HINT = (
    "stage it on object storage that signs URLs (an s3:// or gs:// location, or an ObjectStoragePath), "
    "or serve it over http(s), e.g. through the pipeline's public_url_template"
)


@dataclasses.dataclass(frozen=True)
class Source:
    """A checked source: ``field`` names it in errors (``"video"``, ``"references[0]"``)."""

    field: str
    #: An http(s) URL, a storage location (``s3://conn_id@bucket/key``) or an absolute local path.
    location: str
    kind: SourceKind
    media: Media


@dataclasses.dataclass(frozen=True)
class ResolvedSource:
    """The URI Runway is sent (never logged: it may be signed or megabytes long) and how to show it."""

    uri: str = dataclasses.field(repr=False)
    shown: str

    def __str__(self) -> str:
        return self.shown


def check_source(field: str, value: Any, *, media: Media, route: Route | str) -> Source:
    """Classify and check a source; a :class:`CometValidationError` naming ``field`` if it cannot be used.

    An http(s) URL is ``url``; ``s3://``, ``gs://``, any other ``<scheme>://`` or an
    ``ObjectStoragePath`` is ``storage`` (a ``conn_id@`` userinfo is kept); a path or ``file://``
    is ``local``: accepted on the official route only, as a file of a known media type whose
    ``data:`` URI is within Runway's limit. A storage scheme must have an Airflow filesystem
    (a provider's); whether it can sign is known only when :func:`resolve_source` asks it.
    """
    route = Route(route)
    if is_object_storage_path(value):
        protocol = str(getattr(value, "protocol", "") or "")
        if protocol in _LOCAL_PROTOCOLS:
            return _check_local(field, Path(str(value.path)), media=media, route=route)
        return Source(field, _storage_location(value), "storage", media)
    if isinstance(value, os.PathLike):
        return _check_local(field, Path(os.fspath(value)), media=media, route=route)
    if not isinstance(value, str):
        raise CometValidationError(
            field, f"expected a URL, a storage location or a file path, got {type(value).__name__}"
        )
    text = value.strip()
    if not text:
        raise CometValidationError(field, "must not be empty")
    if text[:5].lower() == "data:":
        raise CometValidationError(
            field, "pass the file's path, not a data: URI; the official route builds the data: URI from it"
        )
    match = _SCHEME.match(text)
    if match is None:
        return _check_local(field, Path(text), media=media, route=route)
    scheme = match.group(1).lower()
    if scheme in ("http", "https"):
        return Source(field, check_http_url(field, text), "url", media)
    if scheme == "file":
        return _check_local(field, _file_url_path(field, text), media=media, route=route)
    netloc, _, key = text[match.end() :].partition("/")
    bucket = netloc.rpartition("@")[2]  # after the conn id's userinfo
    if not bucket or any(ch.isspace() for ch in bucket):
        raise CometValidationError(field, f"{without_query(text)!r} names no bucket or container")
    if not key.strip("/"):
        raise CometValidationError(field, f"{without_query(text)!r} names no object, only a bucket")
    from airflow.sdk.io import has_fs  # loads the providers' filesystems once per process

    if not has_fs(scheme):
        raise CometValidationError(
            field,
            f"no Airflow filesystem handles {scheme}:// here: install the provider for that storage "
            f"(e.g. apache-airflow-providers-amazon[s3fs] for s3://), or {_STAGE_HINT}",
        )
    return Source(field, text, "storage", media)


def _storage_location(path: Any) -> str:
    # ``str()`` drops the conn id on Airflow 3.1; put it back as userinfo, as ObjectStoragePath parses it.
    conn_id = getattr(path, "conn_id", None) or (getattr(path, "storage_options", None) or {}).get("conn_id")
    userinfo = f"{conn_id}@" if conn_id else ""
    return f"{path.protocol}://{userinfo}{str(path.path).lstrip('/')}"


def _file_url_path(field: str, url: str) -> Path:
    parts = urlsplit(url)
    if parts.netloc not in ("", "localhost"):
        raise CometValidationError(field, f"{without_query(url)!r} is a file:// URL on another host")
    return Path(unquote(parts.path))


def _check_local(field: str, path: Path, *, media: Media, route: Route) -> Source:
    path = Path(os.path.abspath(path.expanduser()))
    limit = _DATA_URI_LIMITS[media]
    if route is not Route.OFFICIAL:
        raise CometValidationError(
            field,
            f"{str(path)!r} is a local file, and the gen4 route only fetches http(s) URLs: {_STAGE_HINT}; "
            f"or use the official route (model 'gen4_aleph'), which takes local files whose data: URI is "
            f"at most {_mb(limit)}",
        )
    media_type = _media_type(field, path, media)
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise CometValidationError(field, f"cannot read {str(path)!r} ({exc.strerror or type(exc).__name__})") from None
    if not path.is_file():
        raise CometValidationError(field, f"{str(path)!r} is not a file")
    length = data_uri_length(size, media_type)
    if length > limit:
        raise CometValidationError(
            field,
            f"{str(path)!r} ({_mb(size)}) would be a {_mb(length)} data: URI, over Runway's {_mb(limit)} "
            f"limit for {media}: {_STAGE_HINT}",
        )
    return Source(field, str(path), "local", media)


def _media_type(field: str, path: Path, media: Media) -> str:
    types = MEDIA_TYPES[media]
    media_type = types.get(path.suffix.lower())
    if media_type is None:
        raise CometValidationError(
            field, f"{str(path)!r}: a {media} must be one of {', '.join(sorted(types))}, by its file extension"
        )
    return media_type


def data_uri_length(size: int, media_type: str) -> int:
    """Characters of the base64 ``data:`` URI of ``size`` bytes (computed, not encoded)."""
    return len(f"data:{media_type};base64,") + 4 * math.ceil(size / 3)


def _mb(count: int) -> str:
    return f"{count / 1_000_000:.1f} MB"


def signed_url_lifetime(timeout: float | None) -> int:
    """Seconds a signed source must stay valid: the try's ``timeout`` plus Runway's fetch, SigV4-capped."""
    base = RUNWAY_FETCH_SECONDS if timeout is None else max(0.0, float(timeout)) + RUNWAY_FETCH_SECONDS
    return int(min(math.ceil(base), MAX_SIGNED_URL_SECONDS))


def resolve_source(source: Source, *, expires_in: float) -> ResolvedSource:
    """The URI to send for ``source``: the URL as is, a signed URL valid ``expires_in`` seconds, or a data: URI.

    Signing uses the storage's own filesystem and connection (``ObjectStoragePath``); a
    filesystem that cannot sign raises :class:`CometValidationError` naming the field.
    """
    if source.kind == "url":
        uri = source.location
    elif source.kind == "storage":
        uri = _sign(source, expires_in)
    elif source.kind == "local":
        return _data_uri(source)
    else:
        raise ValueError(f"unknown source kind {source.kind!r}")
    _mask_query(uri)
    return ResolvedSource(uri=uri, shown=shown_uri(uri))


def _sign(source: Source, expires_in: float) -> str:
    from airflow.sdk import ObjectStoragePath

    seconds = max(1, min(int(expires_in), MAX_SIGNED_URL_SECONDS))
    shown = without_query(source.location)
    try:
        path = ObjectStoragePath(source.location)
        with _signature_logs_dropped():
            signed = path.fs.sign(path.path, expiration=seconds)
    except NotImplementedError:
        raise CometValidationError(
            source.field, f"{shown!r}: its filesystem cannot sign URLs, so Runway cannot fetch it; {_STAGE_HINT}"
        ) from None
    except Exception as exc:
        raise CometValidationError(source.field, f"could not sign {shown!r}: {_scrub(exc)}") from None
    if not isinstance(signed, str) or urlsplit(signed).scheme.lower() not in ("http", "https"):
        raise CometValidationError(
            source.field, f"{shown!r}: its filesystem signs no http(s) URL, so Runway cannot fetch it; {_STAGE_HINT}"
        )
    query = urlsplit(signed).query
    if "AWSAccessKeyId=" in query and "X-Amz-Signature=" not in query:
        # botocore presigns S3 with SigV2 unless told otherwise; AWS regions opened since 2014 and
        # buckets created since 2020 refuse it, so Runway's fetch would fail later, far from here.
        logging.getLogger(__name__).warning(
            "%s was signed with AWS SigV2, which many regions and newer buckets refuse: add "
            '{"config_kwargs": {"signature_version": "s3v4"}} to the extra of its aws connection.',
            shown,
        )
    return signed


@contextlib.contextmanager
def _signature_logs_dropped() -> Iterator[None]:
    # botocore logs each signature at DEBUG before it is known, so before it could be masked.
    loggers = [logging.getLogger(name) for name in _SIGNING_LOGGERS]
    for logger in loggers:
        logger.addFilter(_drop)
    try:
        yield
    finally:
        for logger in loggers:
            logger.removeFilter(_drop)


def _drop(record: logging.LogRecord) -> bool:
    return False


def _scrub(exc: BaseException) -> str:
    """An exception as error text, with any URL's query (a signature) cut off."""
    text = _URL_QUERY.sub(r"\1?…", str(exc))[:300]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _mask_query(uri: str) -> None:
    """Register a signed URL's query, and each signature or credential in it, with the secrets masker."""
    query = urlsplit(uri).query
    if not query:
        return
    from airflow.providers.common.compat.sdk import mask_secret

    secrets = {query}
    for raw in query.split("&"):
        name, _, value = raw.partition("=")
        if _SECRET_PARAM.search(unquote(name)):
            secrets.update((value, unquote(value.replace("+", " "))))  # as sent, and as decoded
    for secret in secrets:
        if len(secret) >= 8:  # the masker skips (and warns about) short values
            mask_secret(secret)


def _data_uri(source: Source) -> ResolvedSource:
    import base64

    path = Path(source.location)
    media_type = _media_type(source.field, path, source.media)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CometValidationError(
            source.field, f"cannot read {source.location!r} ({exc.strerror or type(exc).__name__})"
        ) from None
    limit = _DATA_URI_LIMITS[source.media]
    if data_uri_length(len(data), media_type) > limit:  # it grew since check_source
        raise CometValidationError(
            source.field, f"{source.location!r} is now over Runway's {_mb(limit)} data: URI limit: {_STAGE_HINT}"
        )
    uri = f"data:{media_type};base64,{base64.b64encode(data).decode('ascii')}"
    return ResolvedSource(uri=uri, shown=shown_uri(uri))


def shown_uri(uri: str) -> str:
    """``uri`` as logs and errors may show it: a URL without its query, a data: URI as its type and size."""
    if uri[:5].lower() == "data:":
        header, _, payload = uri.partition(",")
        if header.endswith(";base64"):
            size = len(payload) * 3 // 4 - payload[-2:].count("=")
        else:
            size = len(unquote(payload).encode())
        return f"{header},… ({size} bytes)"
    return without_query(uri)
