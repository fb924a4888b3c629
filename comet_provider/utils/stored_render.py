"""What a stored render was made from: a small JSON sidecar beside it (``<output_path>.comet.json``).

A sidecar works the same on local disks and object storage, and outlives
``task_state_store`` retention. It is written after the render is in place and
removed before a new render replaces it, so a sidecar never describes other
bytes than the ones beside it; a render without one is simply not reused.
"""

from __future__ import annotations

import contextlib
import json
import time
from dataclasses import dataclass
from typing import Any

from comet_provider.exceptions import without_query
from comet_provider.utils.pay_once import Fingerprint

__all__ = ["SIDECAR_SUFFIX", "StoredRender", "forget_stored_render", "read_stored_render", "write_stored_render"]

SIDECAR_SUFFIX = ".comet.json"
_FORMAT = 1


@dataclass(frozen=True)
class StoredRender:
    """A render already in storage, and the request it answers."""

    location: str
    runway_task_id: str
    fingerprint: Fingerprint
    size_bytes: int
    stored_at: float


def _sidecar(output_path: Any) -> Any:
    """The sidecar's location on the render's own filesystem (a Path or an ObjectStoragePath)."""
    from comet_provider.hooks.storage import resolve_destination

    target, _ = resolve_destination(output_path)
    return target.parent / (target.name + SIDECAR_SUFFIX)


def read_stored_render(output_path: Any) -> StoredRender | None:
    """The render stored at ``output_path`` with its sidecar, or None if either is missing or they disagree."""
    from comet_provider.hooks.storage import read_bytes, stat_size

    raw = read_bytes(_sidecar(output_path), limit=64 * 1024)
    if raw is None:
        return None
    try:
        value = json.loads(raw)
        fingerprint = Fingerprint.from_dict(value["fingerprint"])
        size = int(value["size_bytes"])
        runway_task_id = str(value["runway_task_id"])
        stored_at = float(value.get("stored_at") or 0.0)
    except (ValueError, KeyError, TypeError):
        return None
    if fingerprint is None or stat_size(output_path) != size:
        return None  # the render was removed or replaced by something else
    return StoredRender(str(output_path), runway_task_id, fingerprint, size, stored_at)


def write_stored_render(
    output_path: Any, *, runway_task_id: str, fingerprint: Fingerprint, size_bytes: int, video: str
) -> None:
    """Record what the render just stored at ``output_path`` was made from (atomically)."""
    from comet_provider.hooks.storage import write_bytes_atomic

    body = {
        "format": _FORMAT,
        "runway_task_id": runway_task_id,
        "fingerprint": fingerprint.to_dict(),
        "size_bytes": size_bytes,
        "stored_at": time.time(),
        # Without the query string: a signed source URL's signature is a credential.
        "video": without_query(video),
    }
    write_bytes_atomic(_sidecar(output_path), json.dumps(body, indent=1).encode())


def forget_stored_render(output_path: Any) -> None:
    """Remove the sidecar before a new render replaces the file (missing is fine)."""
    sidecar = _sidecar(output_path)
    with contextlib.suppress(FileNotFoundError):
        sidecar.unlink()
