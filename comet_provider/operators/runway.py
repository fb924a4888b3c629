"""Operator that restyles a video with Runway (CometAPI ``POST /runway/pro/video2video``)."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Sequence
from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any, ClassVar

from airflow.sdk import BaseOperator, conf

from comet_provider.exceptions import (
    CometSubmissionUncertainError,
    CometValidationError,
    RunwayTaskNotFoundError,
)
from comet_provider.links.runway import VIDEO_URL_XCOM_KEY, RunwayVideoLink
from comet_provider.models import RunwayStatus

if TYPE_CHECKING:
    from airflow.sdk import Context

    from comet_provider.hooks.comet import CometHook
    from comet_provider.models import RunwayTask

__all__ = ["RUNWAY_TASK_ID_XCOM_KEY", "RunwayVideo2VideoOperator"]

#: Pushed as soon as the render is submitted, so the id shows while the task is deferred.
RUNWAY_TASK_ID_XCOM_KEY = "runway_task_id"
#: task_state_store key holding the submitted render across tries.
_STATE_KEY = "comet_runway_task"


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

    Retries never pay twice: the Runway task id is kept in the task instance's
    ``task_state_store`` (Airflow 3.3+), so a later try waits on the same render
    (or finishes a succeeded one) instead of submitting again. Only a failed or
    cancelled render, or changed inputs, lead to a new submission.

    :param video: http(s) URL of the source video (templated).
    :param prompt: the style to apply, e.g. "pixelated style" (templated).
    :param model: Runway model (templated), ``gen4``.
    :param structure_transformation: 0..1, how far the structure may change (templated).
    :param flip: mirror the video (templated).
    :param options: more ``options`` for the API, merged with the two above (templated).
    :param callback_url: URL CometAPI POSTs the result to when done (templated).
    :param comet_conn_id: the ``comet`` connection.
    :param wait_for_completion: False to return right after submission.
    :param deferrable: wait in the triggerer (default ``[operators] default_deferrable``).
    :param poll_interval: seconds between status checks.
    :param timeout: how long one try waits for the render (seconds or timedelta);
        when it runs out the try fails with a retryable error and the next try
        resumes the same render.
    :param output_path: where to store the finished video (templated): a local path
        or any ObjectStoragePath URL (``file://``, ``s3://``, ...).
    """

    template_fields: Sequence[str] = (
        "video",
        "prompt",
        "model",
        "structure_transformation",
        "flip",
        "options",
        "callback_url",
        "output_path",
    )
    template_fields_renderers: ClassVar[dict[str, str]] = {"options": "json"}
    ui_color = "#c9b6ff"
    ui_fgcolor = "#1d1147"
    operator_extra_links = (RunwayVideoLink(),)

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
        comet_conn_id: str = "comet_default",
        wait_for_completion: bool = True,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        poll_interval: float | timedelta = 10,
        timeout: float | timedelta = timedelta(hours=1),
        output_path: Any = None,
        # A signature default (not kwargs.setdefault): .partial() reads it from here for mapped tasks.
        map_index_template: str | None = "{{ task.prompt | truncate(60) }}",
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
        self.comet_conn_id = comet_conn_id
        self.wait_for_completion = wait_for_completion
        self.deferrable = deferrable
        self.poll_interval = _seconds("poll_interval", poll_interval)
        self.timeout = _seconds("timeout", timeout)
        self.output_path = output_path

    @cached_property
    def hook(self) -> CometHook:
        from comet_provider.hooks.comet import CometHook

        return CometHook(self.comet_conn_id)

    # -- execution -------------------------------------------------------------------------------

    def execute(self, context: Context) -> dict[str, Any]:
        request = self._request()
        task, submitted_at = self._resume_or_submit(context, request)
        ti = context["ti"]
        ti.xcom_push(key=RUNWAY_TASK_ID_XCOM_KEY, value=task.task_id)
        # The UI computes the extra link at every stop, deferral included: give it a value.
        ti.xcom_push(key=VIDEO_URL_XCOM_KEY, value=task.video_url or "")
        if not self.wait_for_completion:
            return {**task.to_dict(), "submitted_at": submitted_at}
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
        )
        return self._finish(context, wait_sync(self.hook, waiter))

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> dict[str, Any]:
        """Resume after :class:`~comet_provider.triggers.runway.RunwayTaskTrigger` fired."""
        from comet_provider.triggers.runway import task_from_event

        return self._finish(context, task_from_event(event))

    def on_kill(self) -> None:
        self.log.warning(
            "Task stopped. CometAPI documents no cancel endpoint: a submitted Runway render continues "
            "remotely; its id is in this task's XCom %r and log.",
            RUNWAY_TASK_ID_XCOM_KEY,
        )

    # -- steps -------------------------------------------------------------------------------------

    def _request(self) -> dict[str, Any]:
        """The validated request, after templating and before any network call."""
        from airflow.sdk.exceptions import AirflowFailException

        from comet_provider.utils.validation import build_video2video_payload

        try:
            if self.options is not None and not isinstance(self.options, dict):
                raise CometValidationError("options", f"expected a dict, got {type(self.options).__name__}")
            options = dict(self.options or {})
            if self.structure_transformation is not None:
                options["structure_transformation"] = self.structure_transformation
            if self.flip is not None:
                options["flip"] = self.flip
            return build_video2video_payload(
                video=self.video,
                prompt=self.prompt,
                model=self.model,
                options=options,
                callback_url=self.callback_url,
            )
        except CometValidationError as exc:
            raise AirflowFailException(f"{exc} (task {self.task_id!r}; nothing was sent to CometAPI)") from exc

    def _resume_or_submit(self, context: Context, request: dict[str, Any]) -> tuple[RunwayTask, float]:
        from airflow.sdk.exceptions import AirflowFailException

        store = _ResumeStore(context, self.log)
        fingerprint = hashlib.sha256(json.dumps(request, sort_keys=True).encode()).hexdigest()[:16]
        saved = store.load()
        if saved is not None:
            if saved.get("fingerprint") != fingerprint:
                self.log.info(
                    "The inputs changed since Runway task %s was submitted; submitting a new render.",
                    saved["runway_task_id"],
                )
            else:
                resumed = self._resumable(saved)
                if resumed is not None:
                    return resumed, float(saved["submitted_at"])
        try:
            task = self.hook.submit_video2video(**request)
        except CometSubmissionUncertainError as exc:
            # Not retried by Airflow either: a retry could pay for a second render.
            raise AirflowFailException(str(exc)) from exc
        submitted_at = time.time()
        store.save({"runway_task_id": task.task_id, "submitted_at": submitted_at, "fingerprint": fingerprint})
        self.log.info("Submitted Runway task %s.", task.task_id)
        return task, submitted_at

    def _resumable(self, saved: dict[str, Any]) -> RunwayTask | None:
        task_id = str(saved["runway_task_id"])
        try:
            task = self.hook.get_task(task_id, submitted_at=float(saved["submitted_at"]))
        except RunwayTaskNotFoundError:
            self.log.warning("Runway task %s from an earlier try is unknown to CometAPI; submitting anew.", task_id)
            return None
        if task.status in (RunwayStatus.FAILED, RunwayStatus.CANCELLED):
            self.log.info(
                "Runway task %s from an earlier try ended %s (%s); submitting a new render.",
                task_id,
                task.status.value,
                task.fail_reason or "no reason given",
            )
            return None
        self.log.info(
            "Resuming Runway task %s from an earlier try (%s); not submitting again.",
            task_id,
            task.status.value,
        )
        return task

    def _finish(self, context: Context, task: RunwayTask) -> dict[str, Any]:
        """Decide the outcome of a finished task, store the render, and build the result."""
        from comet_provider.utils.polling import outcome

        result = outcome(task)
        context["ti"].xcom_push(key=VIDEO_URL_XCOM_KEY, value=task.video_url)
        if self.output_path:
            assert task.video_url is not None  # guaranteed for SUCCEEDED by RunwayTask.from_feed
            stored = self.hook.download(task.video_url, self.output_path)
            self.log.info(
                "Stored the render (%d bytes, %.1f MB/s) at %s.",
                stored.size_bytes,
                stored.size_bytes / 1e6 / max(stored.seconds, 1e-6),
                stored.destination,
            )
            result["output_path"] = stored.destination
        return result


class _ResumeStore:
    """The Runway task of this task instance, kept across tries in ``task_state_store``."""

    def __init__(self, context: Context, log: Any) -> None:
        self._log = log
        self._store = context.get("task_state_store")
        if self._store is None:
            log.warning(
                "This Airflow has no task_state_store (Airflow 3.3+): a retry of this task cannot "
                "resume its Runway render and will submit a new one."
            )

    def load(self) -> dict[str, Any] | None:
        if self._store is None:
            return None
        value = self._store.get(_STATE_KEY)
        if isinstance(value, dict) and value.get("runway_task_id") and value.get("submitted_at"):
            return value
        return None

    def save(self, value: dict[str, Any]) -> None:
        if self._store is None:
            return
        try:
            self._store.set(_STATE_KEY, value)
        except Exception as exc:  # the render is paid for: keep waiting on it rather than fail
            self._log.error(
                "Could not record Runway task %s for resumption (%s): if this try fails, a retry will "
                "submit a new render.",
                value["runway_task_id"],
                exc,
            )
