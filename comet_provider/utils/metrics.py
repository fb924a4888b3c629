"""The provider's metrics, sent through Airflow's own ``Stats`` (StatsD, Datadog or OpenTelemetry:
whatever ``[metrics]`` configures, with Airflow's prefix, ``airflow.`` by default, in front).

Every name starts with ``comet_provider.``:

================================================  =======  =======================================================
name                                              type     what
================================================  =======  =======================================================
``comet_provider.renders.submitted``              counter  a new (paid) render was submitted
``comet_provider.renders.resumed``                counter  a try waited on the render an earlier try submitted
``comet_provider.renders.reused``                 counter  a render stored for the same inputs was reused
``comet_provider.renders.succeeded``              counter  a render ended SUCCEEDED
``comet_provider.renders.failed.safety``          counter  a render was refused by content moderation
``comet_provider.renders.failed.other``           counter  a render ended FAILED or CANCELLED otherwise
``comet_provider.renders.failed.timeout``         counter  a wait for a render ran out (``timeout``)
``comet_provider.submission.retries``             counter  a submission was retried (429, connection never opened)
``comet_provider.poll.errors``                    counter  a status poll failed and the wait went on
``comet_provider.render.duration``                timer    submission to the poll that saw the render end
``comet_provider.render.time_to_first_progress``  timer    submission to the first poll that saw progress
                                                           after one at 0% (none when the first poll already
                                                           saw progress: when it began is unknown)
``comet_provider.download.duration``              timer    one render download, retries included
``comet_provider.download.bytes``                 counter  bytes of renders stored
``comet_provider.download.throughput``            gauge    bytes per second of the last render download
================================================  =======  =======================================================

Failures carry their class in the name (plain StatsD drops tags) and as the tag
``failure_class``; all renders failed is the sum of the three. ``poll.errors`` is tagged
``error`` (the exception class), ``render.duration`` ``status``.

The calls are cheap (nothing is imported until the first one) and never raise: a
metrics backend in trouble must not fail a paid render.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

__all__ = [
    "DOWNLOAD_BYTES",
    "DOWNLOAD_DURATION",
    "DOWNLOAD_THROUGHPUT",
    "FAILURE_CLASSES",
    "POLL_ERRORS",
    "PREFIX",
    "RENDERS_FAILED",
    "RENDERS_RESUMED",
    "RENDERS_REUSED",
    "RENDERS_SUBMITTED",
    "RENDERS_SUCCEEDED",
    "RENDER_DURATION",
    "RENDER_FIRST_PROGRESS",
    "SUBMISSION_RETRIES",
    "download_stored",
    "gauge",
    "incr",
    "poll_failed",
    "render_ended",
    "render_failed",
    "render_progressed",
    "timing",
]

log = logging.getLogger(__name__)

PREFIX = "comet_provider."
RENDERS_SUBMITTED = PREFIX + "renders.submitted"
RENDERS_RESUMED = PREFIX + "renders.resumed"
RENDERS_REUSED = PREFIX + "renders.reused"
RENDERS_SUCCEEDED = PREFIX + "renders.succeeded"
#: Followed by ``.safety``, ``.other`` or ``.timeout``.
RENDERS_FAILED = PREFIX + "renders.failed"
SUBMISSION_RETRIES = PREFIX + "submission.retries"
POLL_ERRORS = PREFIX + "poll.errors"
RENDER_DURATION = PREFIX + "render.duration"
RENDER_FIRST_PROGRESS = PREFIX + "render.time_to_first_progress"
DOWNLOAD_DURATION = PREFIX + "download.duration"
DOWNLOAD_BYTES = PREFIX + "download.bytes"
DOWNLOAD_THROUGHPUT = PREFIX + "download.throughput"
FAILURE_CLASSES = frozenset({"safety", "other", "timeout"})

# Airflow 3.3+ ships Stats twice, in the Task SDK and in the core; each process initializes the
# one it uses (task runner: the SDK's; triggerer: the core's). The first initialized one is used.
_STATS_MODULES = ("airflow.sdk._shared.observability.metrics.stats", "airflow._shared.observability.metrics.stats")
_fallback: Any = None
_warned = False


def _stats() -> Any:
    global _fallback
    for name in _STATS_MODULES:
        module = sys.modules.get(name)
        if module is not None and getattr(module, "_factory", None) is not None:
            return module
    if _fallback is None:
        # Airflow 3.1: airflow.stats.Stats, configured from [metrics] on first use.
        from airflow.providers.common.compat.sdk import Stats

        _fallback = Stats
    return _fallback


def _failed(exc: Exception) -> None:
    global _warned
    if not _warned:  # once per process: a broken backend must not flood the task log either
        _warned = True
        log.warning("Could not send a metric (%s: %s); metrics may be incomplete.", type(exc).__name__, exc)


def incr(name: str, count: int = 1, *, tags: Mapping[str, Any] | None = None) -> None:
    """Add ``count`` to the counter ``name``."""
    try:
        _stats().incr(name, count, tags=dict(tags) if tags else None)
    except Exception as exc:  # never fail the caller for a metric
        _failed(exc)


def gauge(name: str, value: float, *, tags: Mapping[str, Any] | None = None) -> None:
    """Set the gauge ``name`` to ``value``."""
    try:
        _stats().gauge(name, value, tags=dict(tags) if tags else None)
    except Exception as exc:  # never fail the caller for a metric
        _failed(exc)


def timing(name: str, seconds: float, *, tags: Mapping[str, Any] | None = None) -> None:
    """Record ``seconds`` under the timer ``name`` (sent as a timedelta: each backend picks its unit)."""
    try:
        _stats().timing(name, timedelta(seconds=max(seconds, 0.0)), tags=dict(tags) if tags else None)
    except Exception as exc:  # never fail the caller for a metric
        _failed(exc)


def render_failed(failure_class: str) -> None:
    """Count a failed render: ``failure_class`` is ``safety``, ``other`` or ``timeout``."""
    cls = failure_class if failure_class in FAILURE_CLASSES else "other"
    incr(f"{RENDERS_FAILED}.{cls}", tags={"failure_class": cls})


def poll_failed(error: BaseException) -> None:
    """Count a failed status poll (the wait goes on)."""
    incr(POLL_ERRORS, tags={"error": type(error).__name__})


def render_ended(submitted_at: float | None, status: str) -> None:
    """A poll saw the render end: its duration since submission (when that is known)."""
    if submitted_at is not None:
        timing(RENDER_DURATION, time.time() - submitted_at, tags={"status": status})


def render_progressed(submitted_at: float | None) -> None:
    """The first poll that saw progress: the time to it since submission (when that is known)."""
    if submitted_at is not None:
        timing(RENDER_FIRST_PROGRESS, time.time() - submitted_at)


def download_stored(size_bytes: int, seconds: float) -> None:
    """A render download finished: its duration, bytes and throughput."""
    timing(DOWNLOAD_DURATION, seconds)
    incr(DOWNLOAD_BYTES, size_bytes)
    gauge(DOWNLOAD_THROUGHPUT, size_bytes / max(seconds, 1e-6))
