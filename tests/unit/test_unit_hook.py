"""CometHook against a scripted CometAPI (httpx.MockTransport): error mapping, retries, headers.

Every behaviour is checked through both twins (``sync`` and ``async``).
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import time
from typing import Any

import httpx
import pytest

from comet_provider.exceptions import (
    CometAPIError,
    CometAuthError,
    CometBadRequestError,
    CometConnectionError,
    CometError,
    CometMalformedResponseError,
    CometRateLimitError,
    CometServerError,
    CometSubmissionUncertainError,
    CometValidationError,
    RunwayTaskNotFoundError,
)
from comet_provider.hooks.comet import DEFAULT_RUNWAY_VERSION
from comet_provider.models import RunwayStatus
from comet_provider.utils.retry import RetryPolicy

from ._fakes import (
    BASE_URL,
    FAST_RETRY,
    FEED_URL,
    MODES,
    SECRET,
    SUBMIT_URL,
    FakeApi,
    Twin,
    error_envelope,
    feed_answer,
    html_page,
    make_hook,
    submit_answer,
)

NO_RETRY = RetryPolicy(max_attempts=1)
TASK_NOT_EXIST = httpx.Response(400, json={"code": "task_not_exist", "message": "task_not_exist", "data": None})
CN_SATURATED = "上游负载已饱和，请稍后再试"


def twin_with(mode: str, api: FakeApi, **hook_kwargs: Any) -> Twin:
    return Twin(mode, make_hook(api, **hook_kwargs))


async def call(twin: Twin, endpoint: str) -> Any:
    if endpoint == "submit":
        return await twin.submit()
    return await twin.get_task("task-1", submitted_at=None)


# -- happy paths and what goes on the wire ---------------------------------------------------------


async def test_submit_sends_the_documented_request(twin: Twin, fake_api: FakeApi) -> None:
    fake_api.script(submit_answer("new-task"))
    task = await twin.submit(
        video="https://media.test/in.mp4",
        prompt=" pixelated style ",
        options={"structure_transformation": 0.4, "flip": False},
        callback_url="https://hooks.test/cb",
    )
    assert task.task_id == "new-task"
    assert task.status is RunwayStatus.PENDING
    (request,) = fake_api.requests
    assert request.method == "POST"
    assert str(request.url) == SUBMIT_URL
    assert json.loads(request.content) == {
        "video": "https://media.test/in.mp4",
        "prompt": "pixelated style",
        "model": "gen4",
        "options": {"structure_transformation": 0.4, "flip": False},
        "callback_url": "https://hooks.test/cb",
    }
    assert request.headers["Authorization"] == f"Bearer {SECRET}"
    assert request.headers["X-Runway-Version"] == DEFAULT_RUNWAY_VERSION
    assert request.headers["Content-Type"] == "application/json"


async def test_feed_sends_the_task_id(twin: Twin, fake_api: FakeApi) -> None:
    fake_api.script(feed_answer("IN_PROGRESS", "RUNNING", progress="40%"))
    task = await twin.get_task("  task-1 ")
    assert task.status is RunwayStatus.RUNNING
    assert task.progress == pytest.approx(0.4)
    (request,) = fake_api.requests
    assert str(request.url) == FEED_URL
    assert json.loads(request.content) == {"task_id": "task-1"}
    assert request.headers["Authorization"] == f"Bearer {SECRET}"
    assert request.headers["X-Runway-Version"] == DEFAULT_RUNWAY_VERSION


@pytest.mark.parametrize("mode", MODES)
async def test_runway_version_and_callback_from_connection_extra(mode: str, fake_api: FakeApi, comet_conn: Any) -> None:
    comet_conn(extra=json.dumps({"runway_version": "2025-01-01", "callback_url": "https://hooks.test/default"}))
    twin = twin_with(mode, fake_api, retry_policy=FAST_RETRY)
    fake_api.script(submit_answer(), feed_answer())
    await twin.submit()
    await twin.get_task("task-1")
    assert [r.headers["X-Runway-Version"] for r in fake_api.requests] == ["2025-01-01", "2025-01-01"]
    assert fake_api.bodies()[0]["callback_url"] == "https://hooks.test/default"


async def test_explicit_callback_wins_over_the_connection_default(fake_api: FakeApi, comet_conn: Any) -> None:
    comet_conn(extra=json.dumps({"callback_url": "https://hooks.test/default"}))
    fake_api.script(submit_answer())
    await twin_with("async", fake_api, retry_policy=FAST_RETRY).submit(callback_url="https://hooks.test/mine")
    assert fake_api.bodies()[0]["callback_url"] == "https://hooks.test/mine"


async def test_submit_answer_without_task_id_is_malformed(twin: Twin, fake_api: FakeApi) -> None:
    fake_api.script(httpx.Response(200, json={"code": 200, "msg": "成功", "data": {"task_id": ""}}))
    with pytest.raises(CometMalformedResponseError, match="task_id"):
        await twin.submit()
    assert len(fake_api.requests) == 1


async def test_validation_errors_send_nothing(twin: Twin, fake_api: FakeApi) -> None:
    fake_api.script(submit_answer())
    with pytest.raises(CometValidationError) as info:
        await twin.submit(video="s3://bucket/a.mp4")
    assert info.value.field == "video"
    with pytest.raises(CometValidationError) as info:
        await twin.get_task("  ")
    assert info.value.field == "runway_task_id"
    assert fake_api.requests == []


# -- error mapping -----------------------------------------------------------------------------------


@pytest.mark.parametrize("endpoint", ["submit", "feed"])
async def test_400_error_envelope_names_the_param(twin: Twin, fake_api: FakeApi, endpoint: str) -> None:
    fake_api.script(
        error_envelope(
            400,
            "options.structure_transformation must be a number between 0 and 1 (request id: 20260101abc)",
            param="options.structure_transformation",
        )
    )
    with pytest.raises(CometBadRequestError) as info:
        await call(twin, endpoint)
    error = info.value
    assert type(error) is CometBadRequestError
    assert error.status_code == 400
    assert error.error_code == "invalid_request"
    assert error.request_id == "20260101abc"
    assert "options.structure_transformation" in str(error)
    assert "400" in str(error)
    assert len(fake_api.requests) == 1  # never retried


@pytest.mark.parametrize("status", [401, 403])
@pytest.mark.parametrize("endpoint", ["submit", "feed"])
async def test_auth_errors(twin: Twin, fake_api: FakeApi, status: int, endpoint: str) -> None:
    fake_api.script(error_envelope(status, "Invalid token (request id: r1)", code="invalid_api_key"))
    with pytest.raises(CometAuthError) as info:
        await call(twin, endpoint)
    assert info.value.status_code == status
    assert "Password" in str(info.value)
    assert "comet_default" in str(info.value)
    assert not info.value.retryable
    assert len(fake_api.requests) == 1


@pytest.mark.parametrize("endpoint", ["submit", "feed"])
async def test_429_retry_after_seconds(fake_api: FakeApi, endpoint: str, mode: str) -> None:
    fake_api.script(error_envelope(429, CN_SATURATED, code="rate_limit_exceeded", **{"Retry-After": "7"}))
    with pytest.raises(CometRateLimitError) as info:
        await call(twin_with(mode, fake_api, retry_policy=NO_RETRY), endpoint)
    error = info.value
    assert error.retry_after == 7.0
    assert error.status_code == 429
    assert CN_SATURATED in str(error)
    assert error.retryable


@pytest.fixture(params=MODES)
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def test_429_retry_after_http_date(fake_api: FakeApi, mode: str) -> None:
    when = email.utils.formatdate(time.time() + 120, usegmt=True)
    fake_api.script(error_envelope(429, "Rate limit reached", **{"Retry-After": when}))
    with pytest.raises(CometRateLimitError) as info:
        await call(twin_with(mode, fake_api, retry_policy=NO_RETRY), "feed")
    assert info.value.retry_after is not None
    assert 60 < info.value.retry_after <= 121


async def test_429_retry_after_date_in_the_past_is_zero(fake_api: FakeApi, mode: str) -> None:
    fake_api.script(error_envelope(429, "Rate limit reached", **{"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}))
    with pytest.raises(CometRateLimitError) as info:
        await call(twin_with(mode, fake_api, retry_policy=NO_RETRY), "feed")
    assert info.value.retry_after == 0.0


@pytest.mark.parametrize("header", ["soon", "", "Friday-ish"])
async def test_429_unreadable_retry_after_is_ignored(fake_api: FakeApi, mode: str, header: str) -> None:
    fake_api.script(error_envelope(429, "Rate limit reached", **{"Retry-After": header}))
    with pytest.raises(CometRateLimitError) as info:
        await call(twin_with(mode, fake_api, retry_policy=NO_RETRY), "feed")
    assert info.value.retry_after is None


async def test_500_json(twin: Twin, fake_api: FakeApi) -> None:
    fake_api.script(error_envelope(500, "internal server error (request id: r5)", code="internal_error"))
    twin.hook.retry_policy = NO_RETRY
    with pytest.raises(CometServerError) as info:
        await twin.get_task("task-1")
    assert info.value.status_code == 500
    assert "internal server error" in str(info.value)
    assert info.value.request_id == "r5"


@pytest.mark.parametrize(
    ("status", "title"),
    [(502, "502 Bad Gateway"), (503, "503 Service Temporarily Unavailable"), (504, "504 Gateway Time-out")],
)
async def test_html_error_pages(twin: Twin, fake_api: FakeApi, status: int, title: str) -> None:
    fake_api.script(html_page(status, title))
    twin.hook.retry_policy = NO_RETRY
    with pytest.raises(CometServerError) as info:
        await twin.get_task("task-1")
    message = str(info.value)
    assert info.value.status_code == status
    assert str(status) in message
    assert "HTML" in message
    assert "<html>" not in message


@pytest.mark.parametrize(
    "response",
    [
        httpx.Response(200, content=b"not json at all", headers={"Content-Type": "text/plain"}),
        httpx.Response(200, content=b"<html><body>login</body></html>", headers={"Content-Type": "text/html"}),
        httpx.Response(200, content=b""),
        httpx.Response(200, json=["a", "list"]),
        httpx.Response(200, content=b'{"code": "success", "data": '),
    ],
    ids=["text", "html", "empty", "list", "truncated-json"],
)
async def test_200_without_a_json_object_is_malformed(twin: Twin, fake_api: FakeApi, response: httpx.Response) -> None:
    fake_api.script(response)
    with pytest.raises(CometMalformedResponseError) as info:
        await twin.get_task("task-1")
    assert info.value.status_code == 200
    assert len(fake_api.requests) == 1


@pytest.mark.parametrize(
    "body",
    [
        {"code": 500, "msg": "失败: 余额不足", "data": None},
        {"code": "fail", "message": "insufficient quota", "data": None},
        {"code": "error", "msg": "model gen4 unavailable"},
    ],
)
@pytest.mark.parametrize("endpoint", ["submit", "feed"])
async def test_200_with_a_failure_code_is_an_error(
    twin: Twin, fake_api: FakeApi, body: dict[str, Any], endpoint: str
) -> None:
    fake_api.script(httpx.Response(200, json=body))
    with pytest.raises(CometAPIError) as info:
        await call(twin, endpoint)
    error = info.value
    assert not isinstance(error, CometSubmissionUncertainError)
    assert error.error_code == str(body["code"])
    assert str(body.get("msg") or body.get("message")) in str(error)
    assert len(fake_api.requests) == 1


async def test_task_not_exist_within_grace_is_pending(twin: Twin, fake_api: FakeApi) -> None:
    fake_api.script(TASK_NOT_EXIST)
    task = await twin.get_task("task-1", submitted_at=time.time() - 1)
    assert task.status is RunwayStatus.PENDING
    assert task.task_id == "task-1"
    assert not task.is_terminal
    assert len(fake_api.requests) == 1


@pytest.mark.parametrize("submitted_ago", [None, 10_000.0])
async def test_task_not_exist_after_grace_is_not_found(
    twin: Twin, fake_api: FakeApi, submitted_ago: float | None
) -> None:
    fake_api.script(TASK_NOT_EXIST)
    submitted_at = None if submitted_ago is None else time.time() - submitted_ago
    with pytest.raises(RunwayTaskNotFoundError) as info:
        await twin.get_task("task-1", submitted_at=submitted_at)
    message = str(info.value)
    assert "task-1" in message
    assert "comet_default" in message
    assert info.value.error_code == "task_not_exist"
    assert info.value.status_code == 400
    assert len(fake_api.requests) == 1


async def test_not_found_grace_is_configurable(fake_api: FakeApi, mode: str) -> None:
    fake_api.script(TASK_NOT_EXIST)
    twin = twin_with(mode, fake_api, retry_policy=FAST_RETRY, not_found_grace=5.0)
    assert (await twin.get_task("task-1", submitted_at=time.time() - 2)).status is RunwayStatus.PENDING
    with pytest.raises(RunwayTaskNotFoundError):
        await twin.get_task("task-1", submitted_at=time.time() - 6)


@pytest.mark.parametrize(
    "response",
    [
        error_envelope(400, "callback_url is required", code="callback_url_empty", param="callback_url"),
        httpx.Response(400, json={"code": "callback_url_empty", "message": "callback_url_empty", "data": None}),
    ],
    ids=["envelope", "flat"],
)
async def test_callback_url_empty_gives_advice(twin: Twin, fake_api: FakeApi, response: httpx.Response) -> None:
    fake_api.script(response)
    with pytest.raises(CometBadRequestError) as info:
        await twin.submit()
    message = str(info.value)
    assert info.value.error_code == "callback_url_empty"
    assert "callback_url=" in message
    assert "'callback_url' extra" in message


# -- retries: submission -------------------------------------------------------------------------------


async def test_submission_retried_after_429(twin: Twin, fake_api: FakeApi) -> None:
    limited = error_envelope(429, CN_SATURATED, code="rate_limit_exceeded", **{"Retry-After": "0"})
    fake_api.script(limited, limited, submit_answer("after-429"))
    task = await twin.submit()
    assert task.task_id == "after-429"
    assert fake_api.paths() == ["/runway/pro/video2video"] * 3
    # The same body each time.
    assert len({r.content for r in fake_api.requests}) == 1


@pytest.mark.parametrize(
    "error", [httpx.ConnectError("connection refused"), httpx.ConnectTimeout("timed out connecting")]
)
async def test_submission_retried_when_no_connection_was_opened(
    twin: Twin, fake_api: FakeApi, error: httpx.TransportError
) -> None:
    fake_api.script(error, submit_answer("after-connect"))
    task = await twin.submit()
    assert task.task_id == "after-connect"
    assert len(fake_api.requests) == 2


async def test_submission_gives_up_on_persistent_429(twin: Twin, fake_api: FakeApi) -> None:
    fake_api.script(error_envelope(429, CN_SATURATED, **{"Retry-After": "0"}))
    with pytest.raises(CometRateLimitError):
        await twin.submit()
    assert len(fake_api.requests) == FAST_RETRY.max_attempts


UNCERTAIN = [
    ("ReadTimeout", lambda: httpx.ReadTimeout("timed out")),
    ("WriteTimeout", lambda: httpx.WriteTimeout("timed out")),
    ("RemoteProtocolError", lambda: httpx.RemoteProtocolError("Server disconnected without sending a response.")),
    ("ReadError", lambda: httpx.ReadError("connection reset by peer")),
    ("500", lambda: error_envelope(500, "internal server error")),
    ("502_html", lambda: html_page(502, "502 Bad Gateway")),
    ("503_html", lambda: html_page(503, "503 Service Temporarily Unavailable")),
    ("504_html", lambda: html_page(504, "504 Gateway Time-out")),
]


@pytest.mark.parametrize(("name", "make"), UNCERTAIN, ids=[row[0] for row in UNCERTAIN])
async def test_submission_not_retried_when_a_render_may_have_started(
    twin: Twin, fake_api: FakeApi, name: str, make: Any
) -> None:
    fake_api.script(make(), submit_answer("must-not-be-reached"))
    with pytest.raises(CometSubmissionUncertainError) as info:
        await twin.submit()
    assert len(fake_api.requests) == 1
    error = info.value
    assert isinstance(error.cause, (CometConnectionError, CometServerError))
    assert error.__cause__ is error.cause
    assert not error.retryable
    message = str(error)
    assert "dashboard" in message
    assert "not resubmitted" in message


async def test_submission_auth_and_bad_request_are_not_uncertain(twin: Twin, fake_api: FakeApi) -> None:
    fake_api.script(error_envelope(401, "Invalid token"))
    with pytest.raises(CometAuthError):
        await twin.submit()
    fake_api.script(error_envelope(400, "video is required", param="video"))
    with pytest.raises(CometBadRequestError):
        await twin.submit()
    assert len(fake_api.requests) == 2


# -- retries: feed -------------------------------------------------------------------------------------

TRANSIENT_FEED = [
    ("500", lambda: error_envelope(500, "internal server error")),
    ("502_html", lambda: html_page(502, "502 Bad Gateway")),
    ("503_html", lambda: html_page(503, "503 Service Temporarily Unavailable")),
    ("504_html", lambda: html_page(504, "504 Gateway Time-out")),
    ("408", lambda: httpx.Response(408, content=b"")),
    ("429", lambda: error_envelope(429, CN_SATURATED, **{"Retry-After": "0"})),
    ("ReadTimeout", lambda: httpx.ReadTimeout("timed out")),
    ("ConnectTimeout", lambda: httpx.ConnectTimeout("timed out")),
    ("ConnectError", lambda: httpx.ConnectError("refused")),
    ("RemoteProtocolError", lambda: httpx.RemoteProtocolError("Server disconnected")),
]


@pytest.mark.parametrize(("name", "make"), TRANSIENT_FEED, ids=[row[0] for row in TRANSIENT_FEED])
async def test_feed_retried_on_transient_errors(twin: Twin, fake_api: FakeApi, name: str, make: Any) -> None:
    fake_api.script(make(), make(), feed_answer("SUCCESS", "SUCCEEDED", video_url="https://cdn.test/out.mp4"))
    task = await twin.get_task("task-1")
    assert task.status is RunwayStatus.SUCCEEDED
    assert task.video_url == "https://cdn.test/out.mp4"
    assert fake_api.paths() == ["/runway/feed"] * 3


async def test_feed_gives_up_after_max_attempts(twin: Twin, fake_api: FakeApi) -> None:
    fake_api.script(html_page(503, "503 Service Temporarily Unavailable"))
    with pytest.raises(CometServerError) as info:
        await twin.get_task("task-1")
    assert info.value.status_code == 503
    assert len(fake_api.requests) == FAST_RETRY.max_attempts


async def test_feed_timeout_maps_to_connection_error(twin: Twin, fake_api: FakeApi) -> None:
    twin.hook.retry_policy = NO_RETRY
    fake_api.script(httpx.ReadTimeout("timed out"))
    with pytest.raises(CometConnectionError) as info:
        await twin.get_task("task-1")
    assert info.value.request_sent is True
    assert "timed out" in str(info.value)
    assert BASE_URL in str(info.value)
    fake_api.script(httpx.ConnectError("refused"))
    with pytest.raises(CometConnectionError) as info:
        await twin.get_task("task-1")
    assert info.value.request_sent is False


# -- the twins agree ---------------------------------------------------------------------------------

SCENARIOS = [
    error_envelope(400, "bad video (request id: r9)", param="video"),
    error_envelope(401, "Invalid token"),
    error_envelope(429, CN_SATURATED, **{"Retry-After": "3"}),
    html_page(502, "502 Bad Gateway"),
    httpx.Response(200, content=b"garbage"),
    TASK_NOT_EXIST,
]


@pytest.mark.parametrize("response", SCENARIOS)
@pytest.mark.parametrize("endpoint", ["submit", "feed"])
async def test_sync_and_async_raise_the_same_error(fake_api: FakeApi, response: httpx.Response, endpoint: str) -> None:
    outcomes = []
    for mode in MODES:
        fake_api.script(response)
        twin = twin_with(mode, fake_api, retry_policy=NO_RETRY)
        with pytest.raises(CometError) as info:
            await call(twin, endpoint)
        error = info.value
        outcomes.append(
            (type(error), str(error), getattr(error, "status_code", None), getattr(error, "retry_after", None))
        )
    assert outcomes[0] == outcomes[1]


@pytest.mark.parametrize(("header", "expected"), [("7", 7.0), ("0.25", 0.25), ("600", 30.0)])
async def test_the_hook_waits_what_retry_after_says(
    fake_api: FakeApi, monkeypatch: pytest.MonkeyPatch, mode: str, header: str, expected: float
) -> None:
    waits: list[float] = []

    async def fake_async_sleep(delay: float) -> None:
        waits.append(delay)

    monkeypatch.setattr(time, "sleep", waits.append)
    monkeypatch.setattr(asyncio, "sleep", fake_async_sleep)
    policy = RetryPolicy(max_attempts=3, max_elapsed=1000.0, max_retry_after=30.0)
    fake_api.script(error_envelope(429, CN_SATURATED, **{"Retry-After": header}), feed_answer())
    await call(twin_with(mode, fake_api, retry_policy=policy), "feed")
    assert waits == [expected]
    assert len(fake_api.requests) == 2
