"""Submit or reuse: the one decision that may pay for a Runway render.

Every path of :class:`~comet_provider.operators.runway.RunwayVideo2VideoOperator`
(deferrable, sync, submit-only; first try, retry, rerun, clear, backfill) and the
example pipeline's spend plan ask :func:`decide`. The table it implements is in
``docs/pay-once.md``; the rows below are in the same order, first match wins.

===  ==========================================================  =============
row  facts                                                       decision
===  ==========================================================  =============
1    not forced; a render is stored at ``output_path`` for the    REUSE_STORED
     same inputs (its sidecar fingerprint matches, file present)
2    a record from an earlier try of this task instance, same     SUBMIT
     inputs, whose succeeded render's link no longer served it
3    that record's task is PENDING/RUNNING, or SUCCEEDED           RESUME
4    that record's task FAILED/CANCELLED or is unknown             SUBMIT
5    the record is for other inputs                                SUBMIT
6    no record                                                     SUBMIT
===  ==========================================================  =============

With ``force_render`` rows 1 and 3 apply only to the forced take itself: a
retry resumes a forced render that was not stored yet, and once it is stored
the next try is another take.
"""

from __future__ import annotations

import enum
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from comet_provider.models import RunwayTask
    from comet_provider.utils.stored_render import StoredRender

__all__ = ["Decision", "Fingerprint", "RenderDecision", "RenderRecord", "decide", "preview_render"]


class Decision(str, enum.Enum):
    """What a try does about paying for its render (the result dict's ``decision``)."""

    REUSE_STORED = "reuse_stored"  # the stored render is the answer: no submission, no download
    RESUME = "resume"  # wait on (or finish) the Runway task an earlier try submitted
    SUBMIT = "submit"  # pay for a new render


@dataclass(frozen=True)
class Fingerprint:
    """The inputs of one render: the request as sent, and the source video's identity if known.

    ``source`` is the source's ETag / Last-Modified / size where they could be read
    cheaply, else None (the URL in the request then stands for the source).
    """

    request: str
    source: str | None = None

    @classmethod
    def of(cls, request: dict[str, Any], source: str | None = None) -> Fingerprint:
        digest = hashlib.sha256(json.dumps(request, sort_keys=True, separators=(",", ":")).encode())
        return cls(digest.hexdigest()[:32], source)

    @classmethod
    def for_request(cls, request: dict[str, Any], identity: Callable[[str], str | None]) -> Fingerprint:
        """The fingerprint of a validated request (``video2video_request``), ``identity`` read for its
        source video and each reference image. With no references the source part is the video's
        identity alone, as fingerprints stored before references existed."""
        video = identity(request["video"])
        references = [identity(location) for location in request.get("references") or ()]
        if not references:
            return cls.of(request, video)
        parts = [video, *references]
        # One unreadable part proves no change for that part only: it stays visible as "?".
        source = None if all(p is None for p in parts) else "|".join(p or "?" for p in parts)
        return cls.of(request, source)

    def matches(self, other: Fingerprint) -> bool:
        # A source identity that could not be read now (or then) proves no change: the URL decides.
        if self.request != other.request:
            return False
        return self.source is None or other.source is None or self.source == other.source

    def to_dict(self) -> dict[str, Any]:
        return {"request": self.request, "source": self.source}

    @classmethod
    def from_dict(cls, value: Any) -> Fingerprint | None:
        if isinstance(value, dict) and isinstance(value.get("request"), str):
            source = value.get("source")
            return cls(value["request"], source if isinstance(source, str) else None)
        return None


@dataclass(frozen=True)
class RenderRecord:
    """A Runway task this task instance submitted, kept in ``task_state_store`` across tries and clears."""

    runway_task_id: str
    submitted_at: float
    fingerprint: Fingerprint
    try_number: int | None = None
    forced: bool = False
    link_gone: bool = False
    #: The API route the task lives on (``comet_provider.utils.routes.Route``): where to poll it.
    route: str = "pro"

    def to_dict(self) -> dict[str, Any]:
        return {
            "runway_task_id": self.runway_task_id,
            "submitted_at": self.submitted_at,
            "fingerprint": self.fingerprint.to_dict(),
            "try_number": self.try_number,
            "forced": self.forced,
            "link_gone": self.link_gone,
            "route": self.route,
        }

    @classmethod
    def from_dict(cls, value: Any) -> RenderRecord | None:
        """The record, or None for anything else (an older provider's record reads as "other inputs")."""
        if not isinstance(value, dict) or not value.get("runway_task_id") or not value.get("submitted_at"):
            return None
        fingerprint = Fingerprint.from_dict(value.get("fingerprint")) or Fingerprint("")
        try_number = value.get("try_number")
        return cls(
            runway_task_id=str(value["runway_task_id"]),
            submitted_at=float(value["submitted_at"]),
            fingerprint=fingerprint,
            try_number=try_number if isinstance(try_number, int) else None,
            forced=bool(value.get("forced")),
            link_gone=bool(value.get("link_gone")),
            route=str(value.get("route") or "pro"),  # records written before the official route
        )


@dataclass(frozen=True)
class RenderDecision:
    """A :class:`Decision`, why (for the task log), and the task it concerns."""

    decision: Decision
    reason: str
    runway_task_id: str | None = None
    #: For RESUME: the task as CometAPI reports it now.
    task: RunwayTask | None = None


def decide(
    *,
    fingerprint: Fingerprint,
    force_render: bool = False,
    stored: StoredRender | None = None,
    record: RenderRecord | None = None,
    lookup: Callable[[RenderRecord], RunwayTask | None] | None = None,
) -> RenderDecision:
    """Apply the table above. ``lookup`` asks CometAPI for a record's task (None: unknown there);
    it is called only when the table needs it, so a reused render costs no API call."""
    same_inputs = record is not None and fingerprint.matches(record.fingerprint)
    if force_render:
        # Only the forced take itself may be resumed: one not stored yet (a retry after a crash).
        forced_take_pending = (
            record is not None
            and record.forced
            and same_inputs
            and (stored is None or stored.runway_task_id != record.runway_task_id)
        )
        if not forced_take_pending:
            return RenderDecision(Decision.SUBMIT, "force_render is set: submitting a new take")
    elif stored is not None and fingerprint.matches(stored.fingerprint):
        return RenderDecision(
            Decision.REUSE_STORED,
            f"the render stored at {stored.location} has the same inputs (Runway task {stored.runway_task_id})",
            stored.runway_task_id,
        )
    if record is None:
        return RenderDecision(Decision.SUBMIT, "no earlier render for these inputs")
    earlier = record.runway_task_id
    if not same_inputs:
        return RenderDecision(Decision.SUBMIT, f"the inputs changed since Runway task {earlier} was submitted")
    if record.link_gone:
        return RenderDecision(
            Decision.SUBMIT, f"Runway task {earlier} succeeded but its output link no longer serves the render"
        )
    task = lookup(record) if lookup is not None else None
    if task is None:
        return RenderDecision(Decision.SUBMIT, f"Runway task {earlier} from an earlier try is unknown to CometAPI")
    if task.is_failure:
        why = task.fail_reason or "no reason given"
        return RenderDecision(
            Decision.SUBMIT, f"Runway task {earlier} from an earlier try ended {task.status.value} ({why})"
        )
    return RenderDecision(Decision.RESUME, f"Runway task {earlier} is {task.status.value}", earlier, task)


def preview_render(
    *,
    video: Any,
    prompt: Any,
    model: Any = "gen4",
    structure_transformation: Any = None,
    flip: Any = None,
    options: Any = None,
    callback_url: Any = None,
    seed: Any = None,
    references: Any = None,
    ratio: Any = None,
    content_moderation: Any = None,
    route: Any = None,
    output_path: Any = None,
    force_render: Any = False,
    comet_conn_id: str = "comet_default",
) -> RenderDecision:
    """What the operator given these arguments would decide before any try: reuse or submit.

    The arguments are the operator's own. For spend plans: it reads the stored render's
    sidecar and the source's identity (one HEAD), never CometAPI. Raises
    :class:`~comet_provider.exceptions.CometValidationError` for bad input.
    """
    from comet_provider.hooks.comet import CometHook
    from comet_provider.utils.stored_render import read_stored_render
    from comet_provider.utils.validation import check_flag, video2video_request

    request = video2video_request(
        video=video,
        prompt=prompt,
        model=model,
        structure_transformation=structure_transformation,
        flip=flip,
        options=options,
        callback_url=callback_url,
        seed=seed,
        references=references,
        ratio=ratio,
        content_moderation=content_moderation,
        route=route,
    )
    fingerprint = Fingerprint.for_request(request, CometHook(comet_conn_id).source_identity)
    stored = read_stored_render(output_path) if output_path else None
    return decide(fingerprint=fingerprint, force_render=check_flag("force_render", force_render), stored=stored)
