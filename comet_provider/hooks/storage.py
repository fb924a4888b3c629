"""Where renders and their records are stored: one place that resolves destinations.

A destination is a local path, a ``file://``/``s3://``/``memory://``... URL, or an
:class:`~airflow.sdk.ObjectStoragePath`. Local ones are written as plain files;
object storage through its own filesystem's streaming writer. A destination never
holds a partial file: object stores whose uploads appear only when complete (S3's
multipart upload, GCS's resumable upload, Azure's block list) are written in place and
their upload aborted on failure; everything else goes to a temporary sibling that is
renamed into place when complete. An S3 upload left open by a try that was killed (no
``finally`` runs after SIGKILL) is aborted by the next store of the same key: S3 keeps and
bills open uploads until aborted.
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
import uuid
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from comet_provider._compat import is_local_path

if TYPE_CHECKING:
    from types import TracebackType

    from airflow.sdk import ObjectStoragePath

    #: What every function here accepts as a place to store.
    Destination = str | os.PathLike[str] | ObjectStoragePath

#: Object stores where a written object becomes visible only once its upload completes.
#: S3 has no rename (a copy and a delete, with the whole temporary object listed meanwhile),
#: so these are never written through a temporary sibling.
_ATOMIC_UPLOADS = frozenset({"s3", "s3a", "gs", "gcs", "abfs", "abfss", "az"})
#: Bytes an object-store writer buffers before it sends a part: what a store holds in memory
#: (s3fs's default is 50 MiB). 8 MiB parts: S3's 10,000-part limit is then 80 GB a render.
UPLOAD_PART_BYTES = 8 << 20
#: Object stores that keep an upload nobody completed or aborted (GCS and Azure expire theirs).
_KEPT_UPLOADS = frozenset({"s3", "s3a"})

log = logging.getLogger(__name__)

__all__ = ["AtomicFile", "read_bytes", "resolve_destination", "stat_identity", "stat_size", "write_bytes_atomic"]


def resolve_destination(destination: Destination) -> tuple[Path | ObjectStoragePath, bool]:
    """``(target, is_local)``: local paths and ``file://`` become :class:`~pathlib.Path`, other
    schemes :class:`~airflow.sdk.ObjectStoragePath`."""
    if isinstance(destination, (str, os.PathLike)) and not isinstance(destination, Path):
        text = os.fspath(destination)
        if "://" not in text:
            return Path(text).expanduser(), True
        if text.startswith("file://"):
            return Path(text[len("file://") :]), True
        from airflow.sdk import ObjectStoragePath

        destination = ObjectStoragePath(text)
    if is_local_path(destination):
        return destination, True
    protocol = getattr(destination, "protocol", None)
    if protocol in ("file", "local") or (isinstance(protocol, tuple) and "file" in protocol):
        return Path(destination.path), True
    return destination, False


class AtomicFile:
    """A temporary sibling of ``destination`` that :meth:`commit` renames into place.

    Leaving the ``with`` block without committing removes the temporary file and
    leaves the destination as it was.
    """

    def __init__(self, destination: Destination) -> None:
        self.target, _ = resolve_destination(destination)
        self._committed = False
        name = f".{self.target.name}.{uuid.uuid4().hex[:12]}.part"
        self._file: BinaryIO
        if is_local_path(self.target):
            self._tmp: Any = self.target.parent / name
            self.target.parent.mkdir(parents=True, exist_ok=True)
            # Unbuffered: big writes go straight from the caller's buffer to the kernel.
            self._file = open(self._tmp, "wb", buffering=0)  # noqa: SIM115 - closed in commit/__exit__
        else:
            protocols = self.target.fs.protocol
            protocol = protocols if isinstance(protocols, str) else protocols[0]
            self._tmp = None if protocol in _ATOMIC_UPLOADS else self.target.parent / name
            if protocol in _KEPT_UPLOADS:
                _abort_open_uploads(self.target.fs, self.target.path)
            # The filesystem's own writer (e.g. a multipart upload), not ObjectStoragePath.open's
            # wrapper, which would also record the temporary name as a lineage output.
            self._file = self.target.fs.open((self._tmp or self.target).path, "wb", block_size=UPLOAD_PART_BYTES)

    def write(self, data: bytes | memoryview) -> None:
        view = memoryview(data)
        while view:
            written = self._file.write(view)
            view = view[written:] if written is not None else view[:0]

    def commit(self) -> str:
        """Close the temporary file and rename it to the destination; returns the destination."""
        self._file.close()
        if is_local_path(self.target):
            os.replace(self._tmp, self.target)
        elif self._tmp is not None:
            self._tmp.rename(self.target)
        self._committed = True
        return str(self.target)

    def __enter__(self) -> AtomicFile:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._committed:
            return
        with contextlib.suppress(Exception):  # the error that got us here matters more
            _abandon(self._file)
        if self._tmp is None:  # an upload that was never completed: nothing to remove
            return
        try:
            if is_local_path(self._tmp):
                os.unlink(self._tmp)
            elif self._tmp.exists():
                self._tmp.unlink()
        except OSError:
            pass


def _abandon(file: Any) -> None:
    """Close ``file`` without publishing what was written: closing an object store's writer would
    complete its upload (a partial object, listed until deleted), so its upload is aborted."""
    discard = getattr(file, "discard", None)
    if callable(discard) and hasattr(file, "fs"):  # an fsspec buffered writer (s3fs aborts the upload)
        discard()
        file.closed = True  # no flush from close() or __del__ after the discard
        return
    file.close()


def _abort_open_uploads(fs: Any, path: str) -> None:
    """Abort the open multipart uploads of exactly this key: what a killed earlier store left.

    One writer per key at a time (the Airflow task that owns the render), so an upload still open
    when that task stores again belongs to a try that is gone. Best effort: a store must not fail
    because the bucket's policy does not allow listing uploads.
    """
    try:
        bucket, key, _version = fs.split_path(path)
        answer = fs.call_s3("list_multipart_uploads", Bucket=bucket, Prefix=key)
        for upload in answer.get("Uploads") or []:
            if upload.get("Key") == key:
                fs.call_s3("abort_multipart_upload", Bucket=bucket, Key=key, UploadId=upload["UploadId"])
                log.info("Aborted an unfinished upload of s3://%s/%s left by an earlier try.", bucket, key)
    except Exception as exc:  # cleanup of a dead try's leftovers: the store goes on regardless
        log.warning("Could not check s3://%s for unfinished uploads (%s); the store goes on.", path, exc)


def write_bytes_atomic(destination: Destination, data: bytes) -> str:
    """Write ``data`` to ``destination`` atomically (temporary sibling, then rename); returns where."""
    with AtomicFile(destination) as sink:
        sink.write(data)
        return sink.commit()


def read_bytes(destination: Destination, limit: int = 1 << 20) -> bytes | None:
    """At most ``limit`` bytes of ``destination``; None if it does not exist.

    Other errors (no permission, storage unreachable) are raised: "missing" must not be
    confused with "could not look".
    """
    target, _ = resolve_destination(destination)
    try:
        if is_local_path(target):
            with open(target, "rb") as local:
                return local.read(limit)
        with target.fs.open(target.path, "rb") as remote:
            data: bytes = remote.read(limit)
            return data
    except FileNotFoundError:
        return None


def stat_size(destination: Destination) -> int | None:
    """Size in bytes of ``destination``; None if it does not exist (other errors are raised)."""
    target, _ = resolve_destination(destination)
    try:
        if is_local_path(target):
            return target.stat().st_size
        return int(target.fs.size(target.path))
    except FileNotFoundError:
        return None


def stat_identity(source: Destination) -> str | None:
    """A string that changes when the file at ``source`` is replaced; None if there is no such file.

    Local files: size and modification time. Object storage: the object's ETag (or
    generation/version) with its modification time and size, as its filesystem reports them.
    """
    target, _ = resolve_destination(source)
    try:
        if is_local_path(target):
            st = target.stat()
            return f"size={st.st_size};mtime_ns={st.st_mtime_ns}" if stat.S_ISREG(st.st_mode) else None
        info = target.fs.info(target.path)
    except FileNotFoundError:
        return None
    return _info_identity(info) if info.get("type", "file") == "file" else None


def _info_identity(info: dict[str, Any]) -> str | None:
    keys = {k.lower(): v for k, v in info.items()}
    parts = []
    for label, names in (
        ("etag", ("etag",)),
        ("version", ("versionid", "generation", "version_id")),
        ("modified", ("lastmodified", "last_modified", "updated", "mtime", "created")),
        ("size", ("size",)),
    ):
        value = next((keys[n] for n in names if keys.get(n) not in (None, "")), None)
        if value is not None:
            shown = value.isoformat() if isinstance(value, datetime) else str(value)
            parts.append(f"{label}={shown}")
    return ";".join(parts) or None
