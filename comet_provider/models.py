"""What a Runway task is, whatever shape CometAPI reported it in.

CometAPI wraps Runway: a gateway status (``data.status``: QUEUED, IN_PROGRESS,
SUCCESS, FAILURE, ...) around Runway's own (``data.data.status``: PENDING,
RUNNING, SUCCEEDED, FAILED, CANCELLED, ...), ``code`` as a number or a string,
progress as ``"45%"`` or a 0..1 number, and the output URL in one of several
undocumented places. :meth:`RunwayTask.from_feed` folds all of that into one
typed object; :meth:`RunwayTask.raise_for_status` is the single place that
decides what a finished task means.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field
from typing import Any

from comet_provider.exceptions import CometMalformedResponseError, RunwayTaskFailedError

__all__ = ["RunwayStatus", "RunwayTask"]


class RunwayStatus(str, enum.Enum):
    """Normalized task status."""

    PENDING = "PENDING"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    @property
    def is_terminal(self) -> bool:
        return self in _TERMINAL


_TERMINAL = frozenset({RunwayStatus.SUCCEEDED, RunwayStatus.FAILED, RunwayStatus.CANCELLED})

# Both vocabularies, upper-cased. UNKNOWN and anything unlisted map to None:
# they carry no information, so the other level (or PENDING) decides.
_STATUS_MAP: dict[str, RunwayStatus] = {
    # gateway (new-api) statuses
    "NOT_START": RunwayStatus.PENDING,
    "SUBMITTED": RunwayStatus.PENDING,
    "QUEUED": RunwayStatus.PENDING,
    "IN_PROGRESS": RunwayStatus.RUNNING,
    "SUCCESS": RunwayStatus.SUCCEEDED,
    "FAILURE": RunwayStatus.FAILED,
    # Runway's own
    "PENDING": RunwayStatus.PENDING,
    "THROTTLED": RunwayStatus.PENDING,
    "RUNNING": RunwayStatus.RUNNING,
    "SUCCEEDED": RunwayStatus.SUCCEEDED,
    "FAILED": RunwayStatus.FAILED,
    "CANCELLED": RunwayStatus.CANCELLED,
    "CANCELED": RunwayStatus.CANCELLED,
}


# "SAFETY.INPUT.TEXT: ..." style codes at the start of a failure text.
_CODE_IN_TEXT = re.compile(r"([A-Z][A-Z_]*(?:\.[A-Z0-9_]+)+)\b")


def _status(value: Any) -> RunwayStatus | None:
    if isinstance(value, str):
        return _STATUS_MAP.get(value.strip().upper())
    return None


def _progress(value: Any) -> float | None:
    """``"45%"``, ``"0.45"``, ``0.45`` or ``45`` -> 0.45; None when absent or unreadable."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return None
        percent = text.endswith("%")
        try:
            number = float(text.rstrip("%").strip())
        except ValueError:
            return None
        if percent:
            number /= 100.0
    elif isinstance(value, (int, float)):
        number = float(value)
    else:
        return None
    if number > 1.0:
        number /= 100.0
    return min(max(number, 0.0), 1.0)


def _url(value: Any) -> str | None:
    if isinstance(value, list):
        value = value[0] if value else None
    if isinstance(value, str) and value.strip():
        return value.strip()
    return None


def _text(value: Any) -> str | None:
    if isinstance(value, str) and value.strip():
        return value.strip()
    return None


@dataclass(frozen=True, slots=True)
class RunwayTask:
    """One Runway task as CometAPI last reported it."""

    task_id: str
    status: RunwayStatus
    progress: float = 0.0
    video_url: str | None = None
    poster: str | None = None
    last_frame: str | None = None
    fail_reason: str | None = None
    failure_code: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def is_terminal(self) -> bool:
        return self.status.is_terminal

    @property
    def is_successful(self) -> bool:
        return self.status is RunwayStatus.SUCCEEDED

    def raise_for_status(self) -> RunwayTask:
        """Return the task if it succeeded; raise :class:`RunwayTaskFailedError` if it failed.

        The one place that decides what a finished task means: the sync wait,
        the sensor, and the operator resuming from its trigger all call it.
        """
        if self.status in (RunwayStatus.FAILED, RunwayStatus.CANCELLED):
            raise RunwayTaskFailedError(self)
        if self.status is not RunwayStatus.SUCCEEDED:
            raise ValueError(f"Runway task {self.task_id} is still {self.status.value}")
        return self

    @classmethod
    def from_feed(cls, body: dict[str, Any], *, task_id: str | None = None) -> RunwayTask:
        """Build a task from a ``/runway/feed`` answer (the whole JSON body).

        Also accepts the bare ``data`` object (the callback payload's shape).
        """
        data = body.get("data", body) if "code" in body or "message" in body else body
        if not isinstance(data, dict):
            raise CometMalformedResponseError(
                f"CometAPI's task answer has no 'data' object (got {type(data).__name__}); "
                "the API may have changed or a proxy answered instead."
            )
        inner = data.get("data")
        inner = inner if isinstance(inner, dict) else {}
        tid = _text(data.get("task_id")) or _text(inner.get("id")) or task_id
        if not tid:
            raise CometMalformedResponseError("CometAPI's task answer carries no task id.")

        outer_status = _status(data.get("status"))
        inner_status = _status(inner.get("status"))
        status = _merge_status(outer_status, inner_status)
        if status is None:
            # Numeric statuses (old callbacks) and UNKNOWN say nothing certain.
            status = RunwayStatus.PENDING

        video_url = (
            _url(data.get("video_url"))
            or _url(data.get("result_url"))
            or _url(inner.get("video_url"))
            or _url(inner.get("output"))
            or _url(inner.get("result_url"))
        )
        progress = _progress(data.get("progress"))
        inner_progress = _progress(inner.get("progress"))
        if progress is None or (inner_progress is not None and inner_progress > progress):
            progress = inner_progress
        if status is RunwayStatus.SUCCEEDED:
            progress = 1.0
            if video_url is None:
                raise CometMalformedResponseError(
                    f"Runway task {tid} is reported SUCCEEDED but no output URL was found in any "
                    "documented place (data.video_url, data.result_url, data.data.video_url, "
                    "data.data.output). Check the task in the CometAPI dashboard; the raw answer's "
                    f"keys were: data={sorted(data)}, data.data={sorted(inner)}."
                )

        failure_code = _text(inner.get("failureCode")) or _text(data.get("failure_code"))
        fail_reason = _text(data.get("fail_reason")) or _text(inner.get("failure"))
        if failure_code is None and fail_reason and (match := _CODE_IN_TEXT.match(fail_reason)):
            failure_code = match.group(1)
        return cls(
            task_id=tid,
            status=status,
            progress=progress or 0.0,
            video_url=video_url,
            poster=_url(data.get("poster")) or _url(inner.get("poster")),
            last_frame=_url(data.get("last_frame")) or _url(inner.get("last_frame")),
            fail_reason=fail_reason if status in (RunwayStatus.FAILED, RunwayStatus.CANCELLED) else None,
            failure_code=failure_code if status in (RunwayStatus.FAILED, RunwayStatus.CANCELLED) else None,
            raw=body,
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (the operator's XCom ``return_value`` and trigger events); no raw payload."""
        return {
            "task_id": self.task_id,
            "status": self.status.value,
            "progress": self.progress,
            "video_url": self.video_url,
            "poster": self.poster,
            "last_frame": self.last_frame,
            "fail_reason": self.fail_reason,
            "failure_code": self.failure_code,
        }

    @classmethod
    def from_dict(cls, value: dict[str, Any]) -> RunwayTask:
        """Inverse of :meth:`to_dict`; rejects anything else loudly."""
        try:
            return cls(
                task_id=str(value["task_id"]),
                status=RunwayStatus(value["status"]),
                progress=float(value.get("progress") or 0.0),
                video_url=value.get("video_url"),
                poster=value.get("poster"),
                last_frame=value.get("last_frame"),
                fail_reason=value.get("fail_reason"),
                failure_code=value.get("failure_code"),
            )
        except (KeyError, ValueError, TypeError) as exc:
            raise CometMalformedResponseError(f"Not a Runway task summary: {value!r}") from exc


def _merge_status(outer: RunwayStatus | None, inner: RunwayStatus | None) -> RunwayStatus | None:
    """The gateway's word wins once it is terminal, but Runway's CANCELLED is more precise than FAILURE;
    a terminal Runway status wins over a gateway that has not caught up yet."""
    if outer is not None and outer.is_terminal:
        if outer is RunwayStatus.FAILED and inner is RunwayStatus.CANCELLED:
            return inner
        return outer
    if inner is not None and inner.is_terminal:
        return inner
    if RunwayStatus.RUNNING in (outer, inner):
        return RunwayStatus.RUNNING
    return outer or inner
