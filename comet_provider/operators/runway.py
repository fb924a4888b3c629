"""Operator that restyles a video with Runway through CometAPI, on either of its routes.

``gen4`` goes to ``POST /runway/pro/video2video``, ``gen4_aleph`` to Runway's own format
(``POST /runwayml/v1/video_to_video``); :mod:`comet_provider.utils.routes` decides.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any, ClassVar

from airflow.sdk import BaseOperator

from comet_provider._compat import AirflowFailException, conf
from comet_provider.exceptions import (
    CometSubmissionUncertainError,
    CometValidationError,
    RunwayTaskNotFoundError,
)
from comet_provider.links.runway import VIDEO_URL_XCOM_KEY, RunwayVideoLink
from comet_provider.operators._records import RecordStore, try_number
from comet_provider.operators._submission import route_of, submit
from comet_provider.utils import metrics

if TYPE_CHECKING:
    from airflow.sdk import Context
    from airflow.sdk.definitions.mappedoperator import OperatorPartial

    from comet_provider.hooks.comet import CometHook
    from comet_provider.models import RunwayTask
    from comet_provider.utils.pay_once import Fingerprint, RenderDecision, RenderRecord

__all__ = ["RUNWAY_TASK_ID_XCOM_KEY", "RunwayVideo2VideoOperator"]

#: Pushed as soon as the render is submitted, so the id shows while the task is deferred.
RUNWAY_TASK_ID_XCOM_KEY = "runway_task_id"
#: Mapped instances are named by their prompt unless the DAG sets its own map_index_template.
_PROMPT_LABEL = "{{ task.prompt | truncate(60) }}"


def _seconds(field: str, value: float | timedelta) -> float:
    seconds = value.total_seconds() if isinstance(value, timedelta) else value
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not seconds > 0:
        raise CometValidationError(field, f"expected a positive number of seconds or a timedelta, got {value!r}")
    return float(seconds)


class RunwayVideo2VideoOperator(BaseOperator):
    """Restyle ``video`` in the style of ``prompt`` with Runway, and optionally store the render.

    By default the task defers while Runway renders (no worker slot held); with
    ``deferrable=False`` it polls on the worker; with ``wait_for_completion=False``
    it returns right after submission. Returns (XCom ``return_value``) a dict with
    ``task_id`` (Runway's), ``status``, ``video_url``, ``poster``, ``last_frame``
    and, when stored, ``output_path``.

    A render is paid for once over its whole life (``docs/pay-once.md`` has the
    table): a render already stored at ``output_path`` for the same inputs is
    reused without submitting or downloading (reruns, clears, backfills); a later
    try of this task instance waits on the render an earlier try submitted (kept
    in ``task_state_store``, Airflow 3.3+); a succeeded render whose link expired
    is submitted afresh once. Only changed inputs (the request, or the source
    video's ETag / Last-Modified / size), a failed render, or ``force_render``
    pay for a new one. The result's ``decision`` says which happened.

    :param video: the source video (templated): an http(s) URL; an object-storage location
        (``s3://[conn_id@]bucket/key``, ``gs://...``, an ObjectStoragePath) that Runway gets as a
        time-limited signed URL; or, on the official route, a local path / ``file://`` sent as a
        ``data:`` URI (16 MB at most encoded).
    :param prompt: the style to apply, e.g. "pixelated style" (templated).
    :param model: Runway model (templated): ``gen4`` (default) or ``gen4_aleph``.
    :param route: ``"pro"`` or ``"official"`` to override the route the model implies (templated),
        for models CometAPI adds later.
    :param structure_transformation: 0..1, how far the structure may change (gen4 route; templated).
    :param flip: mirror the video (gen4 route; templated).
    :param options: more ``options`` for the API, merged with the two above (gen4 route; templated).
    :param callback_url: URL CometAPI POSTs the result to when done (gen4 route; templated).
    :param seed: 0..4294967295, the same seed and inputs give the same take (official route; templated).
    :param references: style images to match (official route; templated): each an http(s) URL, an
        object-storage location or a local path (5 MB at most as a ``data:`` URI).
    :param ratio: output ``"W:H"``, e.g. ``"1280:720"`` (official route; templated).
    :param content_moderation: ``{"publicFigureThreshold": "auto" | "low"}`` (official route; templated).
    :param comet_conn_id: the ``comet`` connection.
    :param wait_for_completion: False to return right after submission.
    :param deferrable: wait in the triggerer (default ``[operators] default_deferrable``).
    :param poll_interval: seconds between status checks.
    :param timeout: how long one try waits for the render (seconds or timedelta);
        when it runs out the try fails with a retryable error and the next try
        resumes the same render.
    :param output_path: where to store the finished video (templated): a local path
        or any ObjectStoragePath URL (``file://``, ``s3://``, ...). A sidecar
        ``<output_path>.comet.json`` records what it was made from.
    :param force_render: submit a new render even if one is stored for the same
        inputs (templated: a DAG param or run conf can drive it).
    """

    template_fields: Sequence[str] = (
        "video",
        "prompt",
        "model",
        "structure_transformation",
        "flip",
        "options",
        "callback_url",
        "seed",
        "references",
        "ratio",
        "content_moderation",
        "route",
        "output_path",
        "force_render",
    )
    template_fields_renderers: ClassVar[dict[str, str]] = {"options": "json", "content_moderation": "json"}
    ui_color = "#c9b6ff"
    ui_fgcolor = "#1d1147"
    operator_extra_links = (RunwayVideoLink(),)

    @classmethod
    def partial(cls, **kwargs: Any) -> OperatorPartial:
        # Airflow 3.1's .partial() ignores __init__'s own map_index_template default (3.3 reads it).
        kwargs.setdefault("map_index_template", _PROMPT_LABEL)
        return super().partial(**kwargs)

    def __init__(
        self,
        *,
        video: str,
        prompt: str,
        model: str = "gen4",
        structure_transformation: float | None = None,
        flip: bool | None = None,
        options: dict[str, Any] | None = None,
        callback_url: str | None = None,
        seed: int | str | None = None,
        references: Sequence[Any] | str | None = None,
        ratio: str | None = None,
        content_moderation: dict[str, Any] | None = None,
        route: str | None = None,
        comet_conn_id: str = "comet_default",
        wait_for_completion: bool = True,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        poll_interval: float | timedelta = 10,
        timeout: float | timedelta = timedelta(hours=1),
        output_path: Any = None,
        force_render: bool | str = False,
        map_index_template: str | None = _PROMPT_LABEL,
        **kwargs: Any,
    ) -> None:
        super().__init__(map_index_template=map_index_template, **kwargs)
        self.video = video
        self.prompt = prompt
        self.model = model
        self.structure_transformation = structure_transformation
        self.flip = flip
        self.options = options
        self.callback_url = callback_url
        self.seed = seed
        self.references = references
        self.ratio = ratio
        self.content_moderation = content_moderation
        self.route = route
        self.comet_conn_id = comet_conn_id
        self.wait_for_completion = wait_for_completion
        self.deferrable = deferrable
        self.poll_interval = _seconds("poll_interval", poll_interval)
        self.timeout = _seconds("timeout", timeout)
        self.output_path = output_path
        self.force_render = force_render
        self._record_store: RecordStore | None = None

    @cached_property
    def hook(self) -> CometHook:
        from comet_provider.hooks.comet import CometHook

        return CometHook(self.comet_conn_id)

    def _records(self, context: Context) -> RecordStore:
        if self._record_store is None:
            self._record_store = RecordStore(context, self.log)
        return self._record_store

    # -- execution -------------------------------------------------------------------------------

    def execute(self, context: Context) -> dict[str, Any]:
        request = self._request()
        fingerprint = self._fingerprint(request)
        return self._act(context, request, fingerprint, self._decide(context, fingerprint))

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> dict[str, Any]:
        """Resume after :class:`~comet_provider.triggers.runway.RunwayTaskTrigger` fired."""
        from comet_provider.utils.polling import task_from_event

        self._record_store = RecordStore(context, self.log, quiet=True)  # execute already warned this try
        return self._finish(context, task_from_event(event))

    def on_kill(self) -> None:
        self.log.warning(
            "Task stopped. CometAPI documents no cancel endpoint: a submitted Runway render continues "
            "remotely; its id is in this task's XCom %r and log.",
            RUNWAY_TASK_ID_XCOM_KEY,
        )

    # -- submit or reuse (the table is comet_provider.utils.pay_once) -------------------------------

    def _request(self) -> dict[str, Any]:
        """The validated request, after templating and before any network call."""
        from comet_provider.utils.validation import check_flag, video2video_request

        try:
            self.force_render = check_flag("force_render", self.force_render)
            return video2video_request(
                video=self.video,
                prompt=self.prompt,
                model=self.model,
                structure_transformation=self.structure_transformation,
                flip=self.flip,
                options=self.options,
                callback_url=self.callback_url,
                seed=self.seed,
                references=self.references,
                ratio=self.ratio,
                content_moderation=self.content_moderation,
                route=self.route,
            )
        except CometValidationError as exc:
            raise AirflowFailException(f"{exc} (task {self.task_id!r}; nothing was sent to CometAPI)") from exc

    def _fingerprint(self, request: dict[str, Any]) -> Fingerprint:
        from comet_provider.utils.pay_once import Fingerprint

        return Fingerprint.for_request(request, self.hook.source_identity)

    def _decide(self, context: Context, fingerprint: Fingerprint) -> RenderDecision:
        from comet_provider.utils.pay_once import decide
        from comet_provider.utils.stored_render import read_stored_render

        return decide(
            fingerprint=fingerprint,
            force_render=bool(self.force_render),
            stored=read_stored_render(self.output_path) if self.output_path else None,
            record=self._records(context).load(),
            lookup=self._lookup,
        )

    def _lookup(self, record: RenderRecord) -> RunwayTask | None:
        try:
            return self.hook.get_task(record.runway_task_id, submitted_at=record.submitted_at, route=record.route)
        except RunwayTaskNotFoundError:
            return None

    def _act(
        self, context: Context, request: dict[str, Any], fingerprint: Fingerprint, decision: RenderDecision
    ) -> dict[str, Any]:
        from comet_provider.utils.pay_once import Decision, RenderRecord

        if decision.decision is Decision.REUSE_STORED:
            return self._reuse(context, decision)
        if decision.decision is Decision.RESUME:
            assert decision.task is not None
            self.log.info(
                "Resuming Runway task %s from an earlier try (%s); not submitting again.",
                decision.task.task_id,
                decision.task.status.value,
            )
            metrics.incr(metrics.RENDERS_RESUMED)
            return self._wait(context, decision.task)
        self.log.info("%s; submitting a new render.", decision.reason[:1].upper() + decision.reason[1:])
        try:
            task = submit(self.hook, request, timeout=self.timeout)
        except CometValidationError as exc:  # a source that cannot be signed or read: no retry fixes it
            raise AirflowFailException(f"{exc} (task {self.task_id!r}; nothing was sent to CometAPI)") from exc
        except CometSubmissionUncertainError as exc:
            # Not retried by Airflow either: a retry could pay for a second render.
            raise AirflowFailException(str(exc)) from exc
        metrics.incr(metrics.RENDERS_SUBMITTED)
        # Recorded before anything else can fail, so a lost worker leaves a retry that resumes.
        record = RenderRecord(
            runway_task_id=task.task_id,
            submitted_at=time.time(),
            fingerprint=fingerprint,
            try_number=try_number(context),
            forced=bool(self.force_render),
            route=route_of(request),
        )
        self._records(context).save(record)
        self.log.info("Submitted Runway task %s.", task.task_id)
        return self._wait(context, task, record.submitted_at)

    def _route_now(self, context: Context, task: RunwayTask) -> str:
        """The route ``task`` lives on: its submission's record, else the arguments now."""
        record = self._records(context).load()
        if record is not None and record.runway_task_id == task.task_id:
            return record.route
        return route_of(self._request())

    def _reuse(self, context: Context, decision: RenderDecision) -> dict[str, Any]:
        from comet_provider.models import RunwayStatus, RunwayTask
        from comet_provider.utils.pay_once import Decision

        assert decision.runway_task_id is not None
        self.log.info("Reusing the stored render, not submitting or downloading: %s.", decision.reason)
        metrics.incr(metrics.RENDERS_REUSED)
        ti = context["ti"]
        ti.xcom_push(key=RUNWAY_TASK_ID_XCOM_KEY, value=decision.runway_task_id)
        ti.xcom_push(key=VIDEO_URL_XCOM_KEY, value="")
        task = RunwayTask(task_id=decision.runway_task_id, status=RunwayStatus.SUCCEEDED, progress=1.0)
        return {**task.to_dict(), "output_path": str(self.output_path), "decision": Decision.REUSE_STORED.value}

    def _wait(self, context: Context, task: RunwayTask, submitted_at: float | None = None) -> dict[str, Any]:
        """Wait for ``task`` as this operator is configured to, then finish it."""
        ti = context["ti"]
        ti.xcom_push(key=RUNWAY_TASK_ID_XCOM_KEY, value=task.task_id)
        # The UI computes the extra link at every stop, deferral included: give it a value.
        ti.xcom_push(key=VIDEO_URL_XCOM_KEY, value=task.video_url or "")
        record = self._records(context).load()
        if submitted_at is None and record is not None and record.runway_task_id == task.task_id:
            submitted_at = record.submitted_at
        route = self._route_now(context, task)
        if not self.wait_for_completion:
            decision = self._decision_of(context, task)
            return {**task.to_dict(), "submitted_at": submitted_at, "decision": decision, "route": route}
        if task.is_terminal:
            return self._finish(context, task)
        deadline = time.time() + self.timeout
        if self.deferrable:
            from comet_provider.triggers.runway import RunwayTaskTrigger

            self.log.info(
                "Deferring while Runway renders task %s (polling every %gs, giving up at %s).",
                task.task_id,
                self.poll_interval,
                time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(deadline)),
            )
            self.defer(
                trigger=RunwayTaskTrigger(
                    runway_task_id=task.task_id,
                    comet_conn_id=self.comet_conn_id,
                    poll_interval=self.poll_interval,
                    deadline=deadline,
                    submitted_at=submitted_at,
                    route=route,
                ),
                method_name="execute_complete",
                # The trigger enforces `timeout` itself, so execute_complete always runs.
                timeout=None,
            )
        from comet_provider.utils.polling import RunwayWaiter, wait_sync

        waiter = RunwayWaiter(
            task.task_id,
            poll_interval=self.poll_interval,
            deadline=deadline,
            submitted_at=submitted_at,
            log=self.log,
            route=route,
        )
        return self._finish(context, wait_sync(self.hook, waiter))

    def _finish(self, context: Context, task: RunwayTask) -> dict[str, Any]:
        """Decide the outcome of a finished task, store the render, and build the result."""
        from comet_provider.exceptions import RenderUnavailableError
        from comet_provider.utils.polling import outcome

        result = outcome(task)
        result["decision"] = self._decision_of(context, task)
        result["route"] = self._route_now(context, task)
        context["ti"].xcom_push(key=VIDEO_URL_XCOM_KEY, value=task.video_url)
        if not self.output_path:
            if result["decision"] == "resume":  # a link from an earlier try or run may have expired
                assert task.video_url is not None
                try:
                    self.hook.check_render_link(task.video_url)
                except RenderUnavailableError as exc:
                    return self._after_link_gone(context, task, exc)
            return result
        from comet_provider.utils.stored_render import forget_stored_render, write_stored_render

        assert task.video_url is not None  # guaranteed for SUCCEEDED by RunwayTask.from_feed
        forget_stored_render(self.output_path)  # its sidecar must never describe the bytes replacing it
        try:
            stored = self.hook.download(task.video_url, self.output_path)
        except RenderUnavailableError as exc:
            return self._after_link_gone(context, task, exc)
        request = self._request()
        # What the render was made from: the record of its submission, else the inputs now.
        record = self._records(context).load()
        made_from = record.fingerprint if record and record.runway_task_id == task.task_id else None
        write_stored_render(
            self.output_path,
            runway_task_id=task.task_id,
            fingerprint=made_from or self._fingerprint(request),
            size_bytes=stored.size_bytes,
            video=request["video"],
        )
        self.log.info(
            "Stored the render (%d bytes, %.1f MB/s) at %s.",
            stored.size_bytes,
            stored.size_bytes / 1e6 / max(stored.seconds, 1e-6),
            stored.destination,
        )
        result["output_path"] = stored.destination
        return result

    def _after_link_gone(self, context: Context, task: RunwayTask, error: Exception) -> dict[str, Any]:
        """A succeeded render whose link no longer serves it: submit afresh once, never in a loop."""
        from dataclasses import replace

        store = self._records(context)
        record = store.load()
        if record is None or record.runway_task_id != task.task_id or record.try_number == try_number(context):
            raise AirflowFailException(
                f"Runway task {task.task_id} was rendered in this try but its output cannot be fetched "
                f"({error}). Not submitting again automatically: check the render host and storage."
            ) from error
        self.log.warning("%s Submitting a new render once.", error)
        store.save(replace(record, link_gone=True))
        request = self._request()
        fingerprint = self._fingerprint(request)
        return self._act(context, request, fingerprint, self._decide(context, fingerprint))

    def _decision_of(self, context: Context, task: RunwayTask) -> str:
        """``submit`` when this try paid for ``task``, else ``resume``: derived, not stored."""
        from comet_provider.utils.pay_once import Decision

        record = self._records(context).load()
        fresh = record is None or (record.runway_task_id == task.task_id and record.try_number == try_number(context))
        return (Decision.SUBMIT if fresh else Decision.RESUME).value
