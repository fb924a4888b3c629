"""A task's life: the status it shows at each moment and where its link sits (either route's answer).

Each task is a timeline fixed at submission (offsets from its creation):
``task_not_exist`` until ``not_exist_at``, QUEUED until ``start_at`` (THROTTLED
from ``ready_at`` when waiting for a concurrency slot), IN_PROGRESS until
``end_at``, then its outcome. SUCCESS also waits for the render file: a task
never claims success before its video can be downloaded.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from typing import Any

from comet_provider.testing.emulator.official import OfficialInputs, bare_task
from comet_provider.testing.emulator.wire import dumps
from comet_provider.testing.render import RenderError, RenderOutput

TERMINAL = frozenset({"SUCCESS", "FAILURE"})

_FAILURE_TEXT = {
    "SAFETY": "The request was rejected by content moderation.",
    "INTERNAL": "An unexpected error occurred while generating the video.",
    "THIRD_PARTY": "An upstream provider is unavailable.",
    "INPUT_PREPROCESSING": "The input could not be processed.",
    "ASSET": "The input asset is invalid.",
}


def failure_text(code: str) -> str:
    return _FAILURE_TEXT.get(code.split(".", 1)[0], f"The task failed ({code}).")


def outcome_for_prompt(prompt: str) -> tuple[str, str]:
    """("success"|"fail"|"cancel", failure code) from the prompt's test tags."""
    lowered = prompt.lower()
    if "[cancel]" in lowered:
        return "cancel", ""
    if "[fail]" in lowered:
        return "fail", "INTERNAL.BAD_OUTPUT.CODE01"
    start = lowered.find("[fail:")
    if start >= 0:
        end = prompt.find("]", start)
        code = prompt[start + 6 : end].strip() if end > start else ""
        return "fail", code or "INTERNAL.BAD_OUTPUT.CODE01"
    return "success", ""


class EmulatedTask:
    """One submitted render and its timeline (all ``*_at`` offsets are seconds from creation)."""

    __slots__ = (
        "_cache_body",
        "_cache_key",
        "callback_url",
        "created_iso",
        "created_mono",
        "created_wall",
        "done",
        "downloads",
        "end_at",
        "fail_code",
        "feeds",
        "id",
        "link_expired_mono",
        "model",
        "not_exist_at",
        "official",
        "options",
        "outcome",
        "placement",
        "prompt",
        "ready_at",
        "render",
        "render_error",
        "render_finished_mono",
        "render_finished_wall",
        "render_mode",
        "route",
        "start_at",
        "video",
    )

    def __init__(
        self,
        task_id: str,
        *,
        prompt: str,
        video: str,
        model: str,
        options: dict[str, Any],
        callback_url: str | None,
        placement: str,
        render_mode: str,
        created_mono: float,
        not_exist_at: float,
        ready_at: float,
        start_at: float,
        end_at: float,
        official: OfficialInputs | None = None,
    ) -> None:
        self.id = task_id
        #: "pro" (``/runway/pro/video2video``) or "official" (``/runwayml/v1/video_to_video``, with ``official``).
        self.route = "pro" if official is None else "official"
        self.official = official
        self.prompt = prompt
        self.video = video
        self.model = model
        self.options = options
        self.callback_url = callback_url
        self.placement = placement
        self.render_mode = render_mode
        self.created_mono = created_mono
        self.created_wall = time.time()
        self.created_iso = dt.datetime.fromtimestamp(self.created_wall).astimezone().isoformat(timespec="seconds")
        self.not_exist_at = not_exist_at
        self.ready_at = ready_at
        self.start_at = start_at
        self.end_at = end_at
        self.outcome, self.fail_code = outcome_for_prompt(prompt)
        self.render: RenderOutput | None = None
        self.render_error: RenderError | None = None
        self.render_finished_mono = 0.0
        self.render_finished_wall = 0.0
        self.link_expired_mono: float | None = None
        self.done = asyncio.Event()
        if self.outcome != "success":
            self.done.set()  # nothing to render
        self.feeds = 0
        self.downloads = 0
        self._cache_key: tuple[Any, ...] = ()
        self._cache_body = b""

    def finish_render(self, output: RenderOutput | None, error: RenderError | None) -> None:
        self.render, self.render_error = output, error
        self.render_finished_mono = time.monotonic()
        self.render_finished_wall = time.time()
        self.done.set()

    def visible(self, now: float) -> bool:
        return now - self.created_mono >= self.not_exist_at

    def state(self, now: float) -> tuple[str, str, int]:
        """(wrapper status, inner Runway status, percent) at monotonic time ``now``."""
        t = now - self.created_mono
        if t < self.not_exist_at:
            return "NOT_START", "PENDING", 0
        if self.render_error is not None and t >= self.start_at:
            return "FAILURE", "FAILED", 100
        if t < self.ready_at:
            return "QUEUED", "PENDING", 0
        if t < self.start_at:
            return "QUEUED", "THROTTLED", 0
        if t < self.end_at:
            span = self.end_at - self.start_at
            return "IN_PROGRESS", "RUNNING", min(99, int(100 * (t - self.start_at) / span))
        if self.outcome == "fail":
            return "FAILURE", "FAILED", 100
        if self.outcome == "cancel":
            return "FAILURE", "CANCELLED", 100
        if self.render is None:
            # The render file is not there yet: never claim success before it is.
            return "IN_PROGRESS", "RUNNING", 99
        return "SUCCESS", "SUCCEEDED", 100

    def terminal_at(self) -> float | None:
        """Monotonic time from which :meth:`state` is terminal; None while a render is still running."""
        if self.outcome != "success":
            return self.created_mono + self.end_at
        if self.render_error is not None:
            return max(self.created_mono + self.start_at, self.render_finished_mono)
        if self.render is not None:
            return max(self.created_mono + self.end_at, self.render_finished_mono)
        return None

    def link_expiry(self, ttl: float | None) -> float | None:
        """Monotonic time the render's links stop working: on request, or ``ttl`` seconds after success."""
        moments = [] if self.link_expired_mono is None else [self.link_expired_mono]
        succeeded = self.terminal_at() if self.render is not None else None
        if ttl is not None and succeeded is not None:
            moments.append(succeeded + ttl)
        return min(moments, default=None)

    def wall_time(self, mono: float) -> float:
        return self.created_wall + (mono - self.created_mono)

    def link_expired(self, now: float, ttl: float | None) -> bool:
        expiry = self.link_expiry(ttl)
        return expiry is not None and now >= expiry

    def wrapper(self, now: float, base_url: str) -> dict[str, Any]:
        status, inner_status, pct = self.state(now)
        inner: dict[str, Any] = {"id": self.id, "status": inner_status, "createdAt": self.created_iso}
        wrapper: dict[str, Any] = {
            "task_id": self.id,
            "action": "VIDEO_TO_VIDEO",
            "status": status,
            "fail_reason": "",
            "submit_time": int(self.created_wall),
            "start_time": 0,
            "finish_time": 0,
            "progress": f"{pct}%",
            "data": inner,
        }
        t = now - self.created_mono
        if t >= self.start_at or status in TERMINAL:
            wrapper["start_time"] = int(self.created_wall + self.start_at)
        if inner_status == "RUNNING":
            inner["progress"] = round(pct / 100, 2)
        if status == "FAILURE":
            if self.render_error is not None:
                reason, code = self.render_error.reason, self.render_error.code
                finish = max(self.start_at, self.render_finished_wall - self.created_wall)
            elif inner_status == "CANCELLED":
                reason, code, finish = "The task was cancelled.", "", self.end_at
            else:
                reason, code, finish = failure_text(self.fail_code), self.fail_code, self.end_at
            wrapper["fail_reason"] = reason
            wrapper["finish_time"] = int(self.created_wall + finish)
            inner["failure"] = reason
            if code:
                inner["failureCode"] = code
        elif status == "SUCCESS":
            finish = max(self.end_at, self.render_finished_wall - self.created_wall)
            wrapper["finish_time"] = int(self.created_wall + finish)
            url = f"{base_url}/renders/{self.id}.mp4"
            if self.placement == "video_url":
                wrapper["video_url"] = url
            elif self.placement == "result_url":
                wrapper["result_url"] = url
            elif self.placement == "output":
                inner["output"] = [url]
            elif self.placement == "inner_video_url":
                inner["video_url"] = url
            wrapper["poster"] = f"{base_url}/renders/{self.id}.poster.jpg"
            wrapper["last_frame"] = f"{base_url}/renders/{self.id}.last_frame.jpg"
        return wrapper

    def render_url(self, base_url: str) -> str | None:
        """Where a bare task's output points (None with url placement "none": a success without a URL)."""
        return None if self.placement == "none" else f"{base_url}/renders/{self.id}.mp4"

    def feed_body(self, now: float, base_url: str, generation: int, shape: str = "envelope") -> bytes:
        """The poll answer: ``/runway/feed``'s envelope, or (``shape="bare"``) Runway's task object."""
        # Most polls repeat the previous answer: reuse its encoded bytes.
        status, inner_status, pct = self.state(now)
        key = (generation, shape, status, inner_status, pct, self.render is not None)
        if key != self._cache_key:
            wrapper = self.wrapper(now, base_url)
            if shape == "bare":
                payload: dict[str, Any] = bare_task(wrapper, self.render_url(base_url))
            else:
                payload = {"code": "success", "message": "", "data": wrapper}
            self._cache_body = dumps(payload)
            self._cache_key = key
        return self._cache_body

    def render_state(self) -> str:
        if self.render is not None:
            return "done"
        if self.render_error is not None:
            return "failed"
        if self.outcome != "success":
            return "skipped"
        return "pending"
