"""RunwayTask.from_feed over every payload shape the reference documents (and its rough edges)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from comet_provider.exceptions import CometMalformedResponseError, RunwayTaskFailedError, RunwayTaskNotFoundError
from comet_provider.models import RunwayStatus, RunwayTask

URL = "https://cdn.test/renders/abc.mp4"

# The "Feed Get Task" example from comet-runway-api.md, verbatim.
DOCUMENTED_FEED_EXAMPLE = """
{"code": "success", "message": "",
 "data": {"task_id": "3d95...", "action": "IMAGE_TO_VIDEO", "status": "QUEUED",
          "fail_reason": "", "submit_time": 1773366766, "start_time": 0,
          "finish_time": 0, "progress": "0%",
          "data": {"id": "3d95...", "status": "PENDING", "createdAt": "2026-03-13T09:52:46+08:00"}}}
"""


def feed(
    status: Any = None,
    inner_status: Any = None,
    *,
    code: Any = "success",
    task_id: str = "t-1",
    progress: Any = "",
    inner: dict[str, Any] | None = None,
    **data: Any,
) -> dict[str, Any]:
    inner_obj: dict[str, Any] = {"id": task_id}
    if inner_status is not None:
        inner_obj["status"] = inner_status
    inner_obj.update(inner or {})
    wrapper: dict[str, Any] = {"task_id": task_id, "progress": progress, "fail_reason": "", "data": inner_obj}
    if status is not None:
        wrapper["status"] = status
    wrapper.update(data)
    return {"code": code, "message": "", "data": wrapper}


# -- statuses ------------------------------------------------------------------------------------

WRAPPER_STATUSES = [
    ("NOT_START", RunwayStatus.PENDING),
    ("SUBMITTED", RunwayStatus.PENDING),
    ("QUEUED", RunwayStatus.PENDING),
    ("IN_PROGRESS", RunwayStatus.RUNNING),
    ("SUCCESS", RunwayStatus.SUCCEEDED),
    ("FAILURE", RunwayStatus.FAILED),
    ("UNKNOWN", RunwayStatus.PENDING),
]


@pytest.mark.parametrize(("wrapper_status", "expected"), WRAPPER_STATUSES)
def test_wrapper_status_alone(wrapper_status: str, expected: RunwayStatus) -> None:
    body = feed(wrapper_status, video_url=URL if expected is RunwayStatus.SUCCEEDED else None)
    task = RunwayTask.from_feed(body)
    assert task.status is expected
    assert task.is_terminal is (expected in (RunwayStatus.SUCCEEDED, RunwayStatus.FAILED))
    assert task.task_id == "t-1"


RUNWAY_STATUSES = [
    ("PENDING", RunwayStatus.PENDING),
    ("THROTTLED", RunwayStatus.PENDING),
    ("RUNNING", RunwayStatus.RUNNING),
    ("SUCCEEDED", RunwayStatus.SUCCEEDED),
    ("FAILED", RunwayStatus.FAILED),
    ("CANCELLED", RunwayStatus.CANCELLED),
    ("CANCELED", RunwayStatus.CANCELLED),
]


@pytest.mark.parametrize(("runway_status", "expected"), RUNWAY_STATUSES)
def test_runway_status_alone(runway_status: str, expected: RunwayStatus) -> None:
    inner = {"output": [URL]} if expected is RunwayStatus.SUCCEEDED else {}
    task = RunwayTask.from_feed(feed(None, runway_status, inner=inner))
    assert task.status is expected


@pytest.mark.parametrize(("runway_status", "expected"), RUNWAY_STATUSES)
def test_runway_status_under_a_non_committal_wrapper(runway_status: str, expected: RunwayStatus) -> None:
    # The gateway says QUEUED/UNKNOWN while Runway already knows more.
    inner = {"output": [URL]} if expected is RunwayStatus.SUCCEEDED else {}
    for wrapper in ("UNKNOWN", "SUBMITTED"):
        task = RunwayTask.from_feed(feed(wrapper, runway_status, inner=inner))
        assert task.status is expected, wrapper


@pytest.mark.parametrize("spelling", ["success", "Success", " success "])
def test_status_matching_ignores_case_and_spaces(spelling: str) -> None:
    assert RunwayTask.from_feed(feed(spelling, video_url=URL)).status is RunwayStatus.SUCCEEDED


def test_wrapper_failure_with_runway_cancelled_is_cancelled() -> None:
    task = RunwayTask.from_feed(feed("FAILURE", "CANCELLED", fail_reason="The task was cancelled."))
    assert task.status is RunwayStatus.CANCELLED
    assert task.is_terminal and not task.is_successful


def test_wrapper_failure_with_runway_canceled_spelling_is_cancelled() -> None:
    assert RunwayTask.from_feed(feed("FAILURE", "CANCELED")).status is RunwayStatus.CANCELLED


def test_wrapper_in_progress_with_runway_succeeded_and_output_is_succeeded() -> None:
    task = RunwayTask.from_feed(feed("IN_PROGRESS", "SUCCEEDED", progress="97%", inner={"output": [URL]}))
    assert task.status is RunwayStatus.SUCCEEDED
    assert task.video_url == URL
    assert task.progress == 1.0


def test_wrapper_in_progress_with_runway_running_is_running() -> None:
    task = RunwayTask.from_feed(feed("IN_PROGRESS", "RUNNING", progress="45%", inner={"progress": 0.45}))
    assert task.status is RunwayStatus.RUNNING
    assert task.progress == pytest.approx(0.45)


def test_queued_wrapper_with_running_runway_is_running() -> None:
    assert RunwayTask.from_feed(feed("QUEUED", "RUNNING")).status is RunwayStatus.RUNNING


def test_terminal_wrapper_wins_over_a_lagging_runway_status() -> None:
    assert RunwayTask.from_feed(feed("SUCCESS", "RUNNING", video_url=URL)).status is RunwayStatus.SUCCEEDED
    assert RunwayTask.from_feed(feed("FAILURE", "RUNNING")).status is RunwayStatus.FAILED


def test_unknown_everywhere_is_pending_not_terminal() -> None:
    task = RunwayTask.from_feed(feed("UNKNOWN", "SOMETHING_NEW"))
    assert task.status is RunwayStatus.PENDING
    assert not task.is_terminal


# -- code numeric vs string --------------------------------------------------------------------------


@pytest.mark.parametrize("code", [200, "success", 0, "200"])
def test_code_numeric_or_text(code: Any) -> None:
    task = RunwayTask.from_feed(feed("IN_PROGRESS", "RUNNING", code=code, progress="10%"))
    assert task.status is RunwayStatus.RUNNING
    assert task.progress == pytest.approx(0.10)


def test_bare_data_object_is_accepted() -> None:
    # The callback payload is the "data" object on its own.
    body = feed("SUCCESS", "SUCCEEDED", video_url=URL)["data"]
    task = RunwayTask.from_feed(body)
    assert task.status is RunwayStatus.SUCCEEDED and task.video_url == URL


# -- progress ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("progress", "expected"),
    [
        ("45%", 0.45),
        ("0.45", 0.45),
        (0.45, 0.45),
        (45, 0.45),
        ("45", 0.45),
        (" 7 % ", 0.07),
        ("100%", 1.0),
        ("0%", 0.0),
        ("", 0.0),
        (None, 0.0),
        ("n/a", 0.0),
        (True, 0.0),
        (150, 1.0),
        (-5, 0.0),
    ],
)
def test_progress_forms(progress: Any, expected: float) -> None:
    task = RunwayTask.from_feed(feed("IN_PROGRESS", "RUNNING", progress=progress))
    assert task.progress == pytest.approx(expected)
    assert 0.0 <= task.progress <= 1.0


def test_inner_numeric_progress_used_when_wrapper_has_none() -> None:
    task = RunwayTask.from_feed(feed("IN_PROGRESS", "RUNNING", progress="", inner={"progress": 0.6}))
    assert task.progress == pytest.approx(0.6)


def test_the_further_of_the_two_progress_values_wins() -> None:
    task = RunwayTask.from_feed(feed("IN_PROGRESS", "RUNNING", progress="20%", inner={"progress": 0.35}))
    assert task.progress == pytest.approx(0.35)
    task = RunwayTask.from_feed(feed("IN_PROGRESS", "RUNNING", progress="50%", inner={"progress": 0.35}))
    assert task.progress == pytest.approx(0.50)


# -- output URL -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("where", "body"),
    [
        ("data.video_url", feed("SUCCESS", "SUCCEEDED", video_url=URL)),
        ("data.result_url", feed("SUCCESS", "SUCCEEDED", result_url=URL)),
        ("data.data.video_url", feed("SUCCESS", "SUCCEEDED", inner={"video_url": URL})),
        ("data.data.output", feed("SUCCESS", "SUCCEEDED", inner={"output": [URL, "https://cdn.test/other.mp4"]})),
        ("data.data.output (string)", feed("SUCCESS", "SUCCEEDED", inner={"output": URL})),
        ("padded", feed("SUCCESS", "SUCCEEDED", video_url=f"  {URL}\n")),
    ],
)
def test_output_url_found_in_each_place(where: str, body: dict[str, Any]) -> None:
    task = RunwayTask.from_feed(body)
    assert task.status is RunwayStatus.SUCCEEDED, where
    assert task.video_url == URL, where
    assert task.raise_for_status() is task


def test_empty_url_fields_are_skipped_for_a_later_place() -> None:
    body = feed("SUCCESS", "SUCCEEDED", video_url="", result_url="   ", inner={"video_url": None, "output": [URL]})
    assert RunwayTask.from_feed(body).video_url == URL


def test_poster_and_last_frame_are_read() -> None:
    body = feed("SUCCESS", video_url=URL, poster="https://cdn.test/p.jpg", last_frame="https://cdn.test/l.jpg")
    task = RunwayTask.from_feed(body)
    assert task.poster == "https://cdn.test/p.jpg"
    assert task.last_frame == "https://cdn.test/l.jpg"


@pytest.mark.parametrize(
    "body",
    [
        feed("SUCCESS", "SUCCEEDED"),
        feed("SUCCESS", None, video_url="", result_url=None, inner={"output": []}),
        feed("IN_PROGRESS", "SUCCEEDED", inner={"output": [""]}),
    ],
)
def test_success_without_any_url_is_a_clear_error(body: dict[str, Any]) -> None:
    with pytest.raises(CometMalformedResponseError) as info:
        RunwayTask.from_feed(body)
    message = str(info.value)
    for place in ("data.video_url", "data.result_url", "data.data.video_url", "data.data.output"):
        assert place in message
    assert "t-1" in message


def test_running_task_without_url_is_fine() -> None:
    task = RunwayTask.from_feed(feed("IN_PROGRESS", "RUNNING"))
    assert task.video_url is None


# -- failures ----------------------------------------------------------------------------------------


def test_failure_code_from_runway_failure_code_field() -> None:
    body = feed(
        "FAILURE", "FAILED", fail_reason="moderated", inner={"failure": "moderated", "failureCode": "SAFETY.INPUT.TEXT"}
    )
    task = RunwayTask.from_feed(body)
    assert task.status is RunwayStatus.FAILED
    assert task.failure_code == "SAFETY.INPUT.TEXT"
    assert task.fail_reason == "moderated"


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("SAFETY.INPUT.TEXT: The prompt was flagged.", "SAFETY.INPUT.TEXT"),
        ("SAFETY.OUTPUT.VIDEO: flagged output", "SAFETY.OUTPUT.VIDEO"),
        ("INTERNAL.BAD_OUTPUT.CODE01: unexpected", "INTERNAL.BAD_OUTPUT.CODE01"),
        ("ASSET.INVALID - could not read the video", "ASSET.INVALID"),
        ("THIRD_PARTY.UNAVAILABLE", "THIRD_PARTY.UNAVAILABLE"),
        ("Something went wrong.", None),
        ("The request was rejected.", None),
    ],
)
def test_failure_code_parsed_from_fail_reason_text(text: str, code: str | None) -> None:
    task = RunwayTask.from_feed(feed("FAILURE", None, fail_reason=text))
    assert task.status is RunwayStatus.FAILED
    assert task.failure_code == code
    assert task.fail_reason == text


def test_inner_failure_text_used_when_wrapper_has_none() -> None:
    task = RunwayTask.from_feed(feed("FAILURE", "FAILED", inner={"failure": "ASSET.INVALID: bad codec"}))
    assert task.fail_reason == "ASSET.INVALID: bad codec"
    assert task.failure_code == "ASSET.INVALID"


def test_failure_fields_are_not_reported_for_unfinished_tasks() -> None:
    task = RunwayTask.from_feed(feed("IN_PROGRESS", "RUNNING", fail_reason="SAFETY.INPUT.TEXT: stale"))
    assert task.fail_reason is None
    assert task.failure_code is None


# -- verbatim documented example and the old callback --------------------------------------------


def test_documented_feed_example_verbatim() -> None:
    body = json.loads(DOCUMENTED_FEED_EXAMPLE)
    task = RunwayTask.from_feed(body)
    assert task.task_id == "3d95..."
    assert task.status is RunwayStatus.PENDING
    assert task.progress == 0.0
    assert task.video_url is None
    assert not task.is_terminal
    assert task.raw == body


@pytest.mark.parametrize("numeric", ["3", 3, "1", 4])
def test_old_callback_payload_with_numeric_status(numeric: Any) -> None:
    # Meanings of numeric statuses are unconfirmed: never read one as an outcome.
    payload = {
        "task_id": "cb-1",
        "status": numeric,
        "video_url": URL,
        "poster": "https://cdn.test/p.jpg",
        "last_frame": "https://cdn.test/l.jpg",
    }
    task = RunwayTask.from_feed(payload)
    assert task.task_id == "cb-1"
    assert task.status is RunwayStatus.PENDING
    assert not task.is_terminal
    assert task.video_url == URL
    assert task.poster == "https://cdn.test/p.jpg"


def test_task_id_falls_back_to_inner_id_then_argument() -> None:
    body = {"code": "success", "data": {"status": "QUEUED", "data": {"id": "inner-id"}}}
    assert RunwayTask.from_feed(body).task_id == "inner-id"
    body = {"code": "success", "data": {"status": "QUEUED"}}
    assert RunwayTask.from_feed(body, task_id="given").task_id == "given"


def test_success_code_without_a_task_reads_as_not_found() -> None:
    # The gateway's fetch that found nothing (rule success_code_with_null_data): not a malformed answer.
    with pytest.raises(RunwayTaskNotFoundError) as info:
        RunwayTask.from_feed({"code": "success", "data": None})
    assert info.value.error_code == "task_not_exist"


@pytest.mark.parametrize(
    "body",
    [
        {"code": "success", "data": "oops"},
        {"code": "success", "data": []},
        {"code": "success", "data": {"status": "QUEUED"}},
    ],
)
def test_malformed_feed_bodies(body: dict[str, Any]) -> None:
    with pytest.raises(CometMalformedResponseError):
        RunwayTask.from_feed(body)


# -- to_dict / from_dict / raise_for_status ------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        feed("SUCCESS", "SUCCEEDED", video_url=URL, poster="https://cdn.test/p.jpg"),
        feed("FAILURE", "FAILED", fail_reason="SAFETY.INPUT.TEXT: no"),
        feed("FAILURE", "CANCELLED"),
        feed("IN_PROGRESS", "RUNNING", progress="33%"),
        json.loads(DOCUMENTED_FEED_EXAMPLE),
    ],
)
def test_to_dict_from_dict_round_trip(body: dict[str, Any]) -> None:
    task = RunwayTask.from_feed(body)
    summary = task.to_dict()
    assert json.loads(json.dumps(summary)) == summary
    assert "raw" not in summary
    again = RunwayTask.from_dict(summary)
    assert again == task
    assert again.to_dict() == summary


def test_to_dict_names_runways_id_with_task_id_as_its_alias() -> None:
    summary = RunwayTask("rw-7", RunwayStatus.RUNNING, 0.5).to_dict()
    assert summary["runway_task_id"] == summary["task_id"] == "rw-7"


@pytest.mark.parametrize("key", ["runway_task_id", "task_id"])
def test_from_dict_accepts_either_id_key(key: str) -> None:
    task = RunwayTask.from_dict({key: "rw-7", "status": "RUNNING", "progress": 0.5})
    assert task == RunwayTask("rw-7", RunwayStatus.RUNNING, 0.5)


@pytest.mark.parametrize(
    "summary",
    [
        {},
        {"task_id": "x"},
        {"task_id": "x", "status": "DONE"},
        {"task_id": "x", "status": "SUCCEEDED", "progress": "lots"},
        {"status": "SUCCEEDED"},
        {"runway_task_id": "x", "task_id": "y", "status": "SUCCEEDED"},
        "x",
        None,
    ],
)
def test_from_dict_rejects_what_to_dict_never_makes(summary: dict[str, Any]) -> None:
    with pytest.raises(CometMalformedResponseError):
        RunwayTask.from_dict(summary)


@pytest.mark.parametrize(
    ("status", "terminal", "failure"),
    [
        (RunwayStatus.PENDING, False, False),
        (RunwayStatus.RUNNING, False, False),
        (RunwayStatus.SUCCEEDED, True, False),
        (RunwayStatus.FAILED, True, True),
        (RunwayStatus.CANCELLED, True, True),
    ],
)
def test_is_terminal_and_is_failure(status: RunwayStatus, terminal: bool, failure: bool) -> None:
    task = RunwayTask("t", status)
    assert (task.is_terminal, task.is_failure) == (status.is_terminal, status.is_failure) == (terminal, failure)


def test_raise_for_status_success_returns_task() -> None:
    task = RunwayTask("t", RunwayStatus.SUCCEEDED, 1.0, video_url=URL)
    assert task.raise_for_status() is task


@pytest.mark.parametrize(
    ("status", "code", "safety"),
    [
        (RunwayStatus.FAILED, "SAFETY.INPUT.TEXT", True),
        (RunwayStatus.FAILED, "safety.output.video", True),
        (RunwayStatus.FAILED, "INTERNAL.BAD_OUTPUT.CODE01", False),
        (RunwayStatus.FAILED, None, False),
        (RunwayStatus.CANCELLED, None, False),
    ],
)
def test_raise_for_status_failures(status: RunwayStatus, code: str | None, safety: bool) -> None:
    task = RunwayTask("t-9", status, fail_reason="why", failure_code=code)
    with pytest.raises(RunwayTaskFailedError) as info:
        task.raise_for_status()
    error = info.value
    assert error.task is task
    assert error.failure_code == code
    assert error.is_safety is safety
    assert error.retryable is (not safety)
    message = str(error)
    assert "t-9" in message and status.value in message and "why" in message
    if code:
        assert code in message
    if safety:
        assert "safety" in message.lower()


@pytest.mark.parametrize("status", [RunwayStatus.PENDING, RunwayStatus.RUNNING])
def test_raise_for_status_unfinished_is_not_a_success(status: RunwayStatus) -> None:
    with pytest.raises(ValueError, match=status.value):
        RunwayTask("t", status).raise_for_status()
