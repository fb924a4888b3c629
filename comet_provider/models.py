"""What a Runway task is, whatever shape CometAPI reported it in.

CometAPI wraps Runway in the task envelope of the gateway it is built on (QuantumNous/new-api):
a gateway status (``data.status``: QUEUED, IN_PROGRESS, SUCCESS, FAILURE, ...) around Runway's
own (``data.data.status``: PENDING, RUNNING, SUCCEEDED, FAILED, CANCELLED, ...), ``code`` as a
number or a string, progress as ``"45%"`` or a 0..1 number, and the output URL in one of several
places. The official route's ``GET /runwayml/v1/tasks/{id}`` may instead answer Runway's bare task
(``id``, ``status``, ``progress``, ``output``, ``failure``, ``failureCode`` at the top).
:meth:`RunwayTask.from_feed` folds all of that into one typed object;
:meth:`RunwayTask.raise_for_status` is the single place that decides what a finished task means.

The gateway's rules (a fixture for each in ``tests/fixtures/gateway``, named after it): a
finished task's URL may be in ``result_url``, ``video_url``, Runway's ``output``, or, for rows an
older gateway wrote, only in ``fail_reason``; a failed row echoes its failure text in
``result_url`` (so URLs are read only from tasks that did not fail, and only http(s) ones); the
gateway ends tasks itself (its 24 h timeout sweep, lost channels, upstream errors) as FAILURE with
a text and no Runway code; ``{"code": "success", "data": null}`` is no task at all.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field, fields
from typing import Any

from comet_provider.exceptions import CometMalformedResponseError, RunwayTaskFailedError, RunwayTaskNotFoundError

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

    @property
    def is_failure(self) -> bool:
        """Ended without a render: FAILED or CANCELLED."""
        return self in _FAILURE


_FAILURE = frozenset({RunwayStatus.FAILED, RunwayStatus.CANCELLED})
_TERMINAL = _FAILURE | {RunwayStatus.SUCCEEDED}

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
        # Exact spellings first: one lookup instead of strip() and upper() on every poll.
        found = _STATUS_MAP.get(value)
        return found if found is not None else _STATUS_MAP.get(value.strip().upper())
    return None


# "0%" .. "100%", the progress CometAPI reports on every poll of a render.
_PERCENTS = {f"{n}%": n / 100.0 for n in range(101)}


def _progress(value: Any) -> float | None:
    """``"45%"``, ``"0.45"``, ``0.45`` or ``45`` -> 0.45; None when absent or unreadable."""
    if value is None:
        return None
    if type(value) is float:  # Runway's own field (bool and int subclasses take the long way)
        number = value
    elif isinstance(value, str):
        known = _PERCENTS.get(value)
        if known is not None:
            return known
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
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        number = float(value)
    else:
        return None
    if number > 1.0:
        number /= 100.0
    # Comparisons rather than min(max()): the same result (NaN included), fewer calls per poll.
    if number < 0.0:
        return 0.0
    if number > 1.0:
        return 1.0
    return number


def _url(value: Any) -> str | None:
    """An http(s) URL, or None: a failed row's ``result_url`` holds the failure text instead."""
    if isinstance(value, list):
        value = value[0] if value else None
    if isinstance(value, str) and value.strip():
        url = value.strip()
        if url[:8].lower().startswith(("http://", "https://")):
            return url
    return None


def _first_url(*values: Any) -> str | None:
    """The first of ``values`` that holds a URL (most are absent on a poll: no call for those)."""
    for value in values:
        if value is not None:
            url = _url(value)
            if url is not None:
                return url
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
        return self.status in _TERMINAL  # not status.is_terminal: one property less per poll

    @property
    def is_successful(self) -> bool:
        return self.status is RunwayStatus.SUCCEEDED

    @property
    def is_failure(self) -> bool:
        """Ended FAILED or CANCELLED (see :attr:`fail_reason`, :attr:`failure_code`)."""
        return self.status.is_failure

    def raise_for_status(self) -> RunwayTask:
        """Return the task if it succeeded; raise :class:`RunwayTaskFailedError` if it failed.

        What a finished task means; :func:`comet_provider.utils.polling.outcome` turns it
        into the Airflow task's result or failure for the operator and the sensor alike.
        """
        if self.is_failure:
            raise RunwayTaskFailedError(self)
        if self.status is not RunwayStatus.SUCCEEDED:
            raise ValueError(f"Runway task {self.task_id} is still {self.status.value}")
        return self

    @classmethod
    def from_feed(cls, body: dict[str, Any], *, task_id: str | None = None) -> RunwayTask:
        """Build a task from a ``/runway/feed`` or ``/runwayml/v1/tasks/{id}`` answer (the whole JSON body).

        Also accepts the bare ``data`` object (the callback payload's shape) and Runway's bare task.

        :raises RunwayTaskNotFoundError: a success code with no task (``"data": null``).
        """
        data = body.get("data", body) if "code" in body or "message" in body else body
        if not isinstance(data, dict):
            if data is None:  # the gateway's answer to a fetch that found nothing
                raise RunwayTaskNotFoundError(
                    "CometAPI answered without a task (data: null)", error_code="task_not_exist"
                )
            raise CometMalformedResponseError(
                f"CometAPI's task answer has no 'data' object (got {type(data).__name__}); "
                "the API may have changed or a proxy answered instead."
            )
        inner = data.get("data")
        inner = inner if isinstance(inner, dict) else {}
        # data.id is the gateway's row number (an int) in an envelope, Runway's id in a bare task.
        tid = _text(data.get("task_id")) or _text(inner.get("id")) or task_id or _text(data.get("id"))
        if not tid:
            raise CometMalformedResponseError("CometAPI's task answer carries no task id.")

        status = _merge_status(_status(data.get("status")), _status(inner.get("status")))
        if status is None:
            # Numeric statuses (old callbacks) and UNKNOWN say nothing certain.
            status = _PENDING

        video_url = _first_url(
            data.get("video_url"),
            data.get("result_url"),
            inner.get("video_url"),
            inner.get("output"),
            inner.get("result_url"),
        )
        progress = _progress(data.get("progress"))
        inner_progress = _progress(inner.get("progress"))
        if progress is None or (inner_progress is not None and inner_progress > progress):
            progress = inner_progress
        if status is _SUCCEEDED:
            progress = 1.0
            if video_url is None:
                video_url = _late_url(data, inner)
            if video_url is None:
                raise CometMalformedResponseError(
                    f"Runway task {tid} is reported SUCCEEDED but no output URL was found in any "
                    "known place (data.result_url, data.video_url, data.data.video_url, data.data.output, "
                    "output, and an older gateway's data.fail_reason). Check the task in the CometAPI "
                    f"dashboard; the raw answer's keys were: data={sorted(data)}, data.data={sorted(inner)}."
                )

        failure_code = fail_reason = None
        if status in _FAILURE:
            video_url = None  # what a failed row has in result_url is its failure text, not a render
            failure_code = (
                _text(inner.get("failureCode")) or _text(data.get("failure_code")) or _text(data.get("failureCode"))
            )
            fail_reason = _text(data.get("fail_reason")) or _text(inner.get("failure")) or _text(data.get("failure"))
            if failure_code is None and fail_reason and (match := _CODE_IN_TEXT.match(fail_reason)):
                failure_code = match.group(1)
        poster = _first_url(data.get("poster"), inner.get("poster"))
        last_frame = _first_url(data.get("last_frame"), inner.get("last_frame"))
        if cls is not RunwayTask:  # a subclass may have its own __init__ or __post_init__
            return cls(tid, status, progress or 0.0, video_url, poster, last_frame, fail_reason, failure_code, body)
        return _new_task(tid, status, progress or 0.0, video_url, poster, last_frame, fail_reason, failure_code, body)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (the operator's XCom ``return_value`` and trigger events); no raw payload.

        ``runway_task_id`` is Runway's id. ``task_id`` holds the same id (not Airflow's task id):
        an alias kept for DAGs written against the first releases.
        """
        return {
            "runway_task_id": self.task_id,
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
        """Inverse of :meth:`to_dict` (``runway_task_id``, ``task_id`` or both); rejects anything else loudly."""
        try:
            ids = {value[key] for key in ("runway_task_id", "task_id") if value.get(key)}
            if len(ids) != 1:
                raise ValueError("one Runway task id expected")
            return cls(
                task_id=str(ids.pop()),
                status=RunwayStatus(value["status"]),
                progress=float(value.get("progress") or 0.0),
                video_url=value.get("video_url"),
                poster=value.get("poster"),
                last_frame=value.get("last_frame"),
                fail_reason=value.get("fail_reason"),
                failure_code=value.get("failure_code"),
            )
        except (AttributeError, KeyError, ValueError, TypeError) as exc:
            raise CometMalformedResponseError(f"Not a Runway task summary: {value!r}") from exc


def _late_url(data: dict[str, Any], inner: dict[str, Any]) -> str | None:
    """A finished task's URL outside the usual places: Runway's bare task (``output`` at the top), an older
    gateway's ``fail_reason``, or a gateway behind this one (its whole envelope in ``data.data``)."""
    url = _first_url(data.get("output"), data.get("fail_reason"))
    nested = inner.get("data")
    if url is None and isinstance(nested, dict):
        runway = nested.get("data")
        runway = runway if isinstance(runway, dict) else {}
        url = _first_url(
            nested.get("result_url"),
            nested.get("video_url"),
            runway.get("output"),
            runway.get("video_url"),
            nested.get("fail_reason"),
        )
    return url


def _merge_status(outer: RunwayStatus | None, inner: RunwayStatus | None) -> RunwayStatus | None:
    """The gateway's word wins once it is terminal, but Runway's CANCELLED is more precise than FAILURE;
    a terminal Runway status wins over a gateway that has not caught up yet."""
    # Set membership and identity, not the enum's properties: this runs on every poll.
    if outer in _TERMINAL:
        if outer is _FAILED and inner is _CANCELLED:
            return inner
        return outer
    if inner in _TERMINAL:
        return inner
    if outer is _RUNNING or inner is _RUNNING:
        return _RUNNING
    return outer or inner


# Members as module constants: looking one up on the enum class costs as much as a call.
_PENDING = RunwayStatus.PENDING
_RUNNING = RunwayStatus.RUNNING
_SUCCEEDED = RunwayStatus.SUCCEEDED
_FAILED = RunwayStatus.FAILED
_CANCELLED = RunwayStatus.CANCELLED

# RunwayTask's slot setters: a frozen dataclass's __init__ costs twice as much (an
# object.__setattr__ per field), and from_feed builds a task on every poll.
(
    _set_task_id,
    _set_status,
    _set_progress,
    _set_video_url,
    _set_poster,
    _set_last_frame,
    _set_fail_reason,
    _set_failure_code,
    _set_raw,
) = (RunwayTask.__dict__[f.name].__set__ for f in fields(RunwayTask))


def _new_task(
    task_id: str,
    status: RunwayStatus,
    progress: float,
    video_url: str | None,
    poster: str | None,
    last_frame: str | None,
    fail_reason: str | None,
    failure_code: str | None,
    raw: dict[str, Any],
) -> RunwayTask:
    """``RunwayTask(...)`` with these fields, as cheaply as a slotted class allows."""
    task: RunwayTask = object.__new__(RunwayTask)
    _set_task_id(task, task_id)
    _set_status(task, status)
    _set_progress(task, progress)
    _set_video_url(task, video_url)
    _set_poster(task, poster)
    _set_last_frame(task, last_frame)
    _set_fail_reason(task, fail_reason)
    _set_failure_code(task, failure_code)
    _set_raw(task, raw)
    return task
