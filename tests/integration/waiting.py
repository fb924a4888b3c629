"""Waiting and failing for the real-Airflow suite: one ``wait_for``, one error for "not in time"."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


class ClusterError(RuntimeError):
    """The cluster could not be started or did not reach an expected state in time."""


class ApiError(RuntimeError):
    """The REST API answered with an HTTP error (retried by ``wait_for``: it may be transient)."""


def free_port() -> int:
    """A TCP port that is free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(
    predicate: Callable[[], T | None],
    *,
    timeout: float,
    interval: float = 0.5,
    what: str = "condition",
    on_timeout: Callable[[], str] | None = None,
) -> T:
    """Call ``predicate`` until it returns something truthy; raise ``ClusterError`` after ``timeout``.

    Other exceptions from ``predicate`` count as "not yet" (a component may still be starting);
    a ``ClusterError`` from it ends the wait at once.
    """
    deadline = time.monotonic() + timeout
    last_exc: Exception | None = None
    while True:
        try:
            result = predicate()
            if result:
                return result
        except ClusterError:
            raise  # a component died or reported something no wait can fix
        except Exception as exc:  # a component still starting may refuse connections
            last_exc = exc
        if time.monotonic() >= deadline:
            detail = f" (last error: {last_exc!r})" if last_exc else ""
            extra = f"\n{on_timeout()}" if on_timeout else ""
            raise ClusterError(f"timed out after {timeout:.0f}s waiting for {what}{detail}{extra}")
        time.sleep(interval)


def tail(path: Path, lines: int = 40) -> str:
    """The last ``lines`` lines of a text file, for error messages."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return f"<{path} unreadable>"
    return f"--- {path.name} (last {lines} lines) ---\n" + "\n".join(text.splitlines()[-lines:])
