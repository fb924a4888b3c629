"""The official-format route through CometHook, against a scripted CometAPI (httpx.MockTransport).

``POST /runwayml/v1/video_to_video`` (paid: the same retry rules as gen4) and
``GET /runwayml/v1/tasks/{id}`` in both answer shapes; every behaviour through both twins.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import httpx
import pytest

from comet_provider.exceptions import (
    CometBadRequestError,
    CometConnectionError,
    CometMalformedResponseError,
    CometSubmissionUncertainError,
    CometValidationError,
    RunwayTaskNotFoundError,
)
from comet_provider.hooks.comet import DEFAULT_RUNWAY_VERSION, CometHook
from comet_provider.models import RunwayStatus, RunwayTask
from comet_provider.utils import metrics
from comet_provider.utils.retry import RetryPolicy

from ._fakes import BASE_URL, FAST_RETRY, SECRET, FakeApi, error_envelope, feed_answer, make_hook

SUBMIT_URL = f"{BASE_URL}/runwayml/v1/video_to_video"
SIGNATURE = "X-Amz-Signature=0f1e2d3c4b5a69788796a5b4c3d2e1f0"
SIGNED = f"https://bucket.s3.test/clips/in.mp4?X-Amz-Algorithm=AWS4-HMAC-SHA256&{SIGNATURE}"
STYLE = "https://media.test/style.png?token=style-secret-token"
DATA_URI = "data:video/mp4;base64," + "QUJD" * 64
OUT = "https://cdn.test/out.mp4"
NO_RETRY = RetryPolicy(max_attempts=1)


class Official:
    """The official route's sync or async twin of a hook."""

    def __init__(self, mode: str, hook: CometHook) -> None:
        self.mode = mode
        self.hook = hook

    async def submit(self, video_uri: str = SIGNED, prompt_text: str = "in the style of the picture", **kw: Any) -> Any:
        if self.mode == "sync":
            return self.hook.submit_video_to_video(video_uri, prompt_text, **kw)
        return await self.hook.asubmit_video_to_video(video_uri, prompt_text, **kw)

    async def get_task(self, task_id: str = "task-1", **kw: Any) -> RunwayTask:
        kw.setdefault("route", "official")
        if self.mode == "sync":
            return self.hook.get_task(task_id, **kw)
        return await self.hook.aget_task(task_id, **kw)


@pytest.fixture(params=["sync", "async"])
def official(request: pytest.FixtureRequest, fake_api: FakeApi) -> Official:
    return Official(request.param, make_hook(fake_api, retry_policy=FAST_RETRY))


def bare(status: str, **fields: Any) -> httpx.Response:
    return httpx.Response(200, json={"id": "task-1", "status": status, "createdAt": "2026-03-13T01:52:46Z", **fields})


def leaks(text: str) -> list[str]:
    return [s for s in (SIGNATURE, "style-secret-token", "QUJDQUJD", SECRET) if s in text]


# -- submit ----------------------------------------------------------------------------------------


async def test_submit_sends_runways_own_body(official: Official, fake_api: FakeApi) -> None:
    fake_api.script(httpx.Response(200, json={"id": "new-task"}))
    task = await official.submit(
        prompt_text="  match the picture ",
        seed=4_294_967_295,
        references=[STYLE],
        ratio="1280:720",
        content_moderation={"public_figure_threshold": "low"},
    )
    assert (task.task_id, task.status) == ("new-task", RunwayStatus.PENDING)
    (request,) = fake_api.requests
    assert (request.method, str(request.url)) == ("POST", SUBMIT_URL)
    assert json.loads(request.content) == {
        "videoUri": SIGNED,
        "promptText": "match the picture",
        "model": "gen4_aleph",
        "seed": 4_294_967_295,
        "references": [{"type": "image", "uri": STYLE}],
        "ratio": "1280:720",
        "contentModeration": {"publicFigureThreshold": "low"},
    }
    assert request.headers["Authorization"] == f"Bearer {SECRET}"
    assert request.headers["X-Runway-Version"] == DEFAULT_RUNWAY_VERSION


async def test_submit_sends_only_what_was_given(official: Official, fake_api: FakeApi) -> None:
    fake_api.script(httpx.Response(200, json={"id": "new-task"}))
    await official.submit(DATA_URI, "pixel art", references=[{"type": "image", "uri": DATA_URI}])
    assert fake_api.bodies() == [
        {
            "videoUri": DATA_URI,
            "promptText": "pixel art",
            "model": "gen4_aleph",
            "references": [{"type": "image", "uri": DATA_URI}],
        }
    ]


async def test_submit_reads_the_envelope_answer_too(official: Official, fake_api: FakeApi) -> None:
    fake_api.script(httpx.Response(200, json={"code": 200, "msg": "成功", "data": {"task_id": "enveloped"}}))
    assert (await official.submit()).task_id == "enveloped"


async def test_submit_answer_without_an_id_is_malformed(official: Official, fake_api: FakeApi) -> None:
    fake_api.script(httpx.Response(200, json={"status": "PENDING"}))
    with pytest.raises(CometMalformedResponseError, match="no task id"):
        await official.submit()
    assert len(fake_api.requests) == 1


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"video_uri": "s3://bucket/in.mp4"}, "video_uri"),
        ({"video_uri": "/tmp/in.mp4"}, "video_uri"),
        ({"video_uri": "https:///no-host.mp4"}, "video_uri"),
        ({"video_uri": "data:video/mp4,notbase64"}, "video_uri"),
        ({"prompt_text": "x" * 1001}, "prompt_text"),
        ({"prompt_text": "   "}, "prompt_text"),
        ({"model": ""}, "model"),
        ({"seed": -1}, "seed"),
        ({"seed": 4_294_967_296}, "seed"),
        ({"seed": True}, "seed"),
        ({"seed": "7"}, "seed"),
        ({"ratio": "16:9:1"}, "ratio"),
        ({"ratio": "0:720"}, "ratio"),
        ({"references": STYLE}, "references"),
        ({"references": [STYLE, "ftp://x/y.png"]}, "references[1]"),
        ({"references": [{"type": "video", "uri": STYLE}]}, "references[0]"),
        ({"content_moderation": {"publicFigureThreshold": "high"}}, "content_moderation"),
        ({"content_moderation": "auto"}, "content_moderation"),
    ],
)
async def test_bad_input_names_the_field_and_sends_nothing(
    official: Official, fake_api: FakeApi, kwargs: dict[str, Any], field: str
) -> None:
    fake_api.script(httpx.Response(200, json={"id": "never"}))
    with pytest.raises(CometValidationError) as info:
        await official.submit(**kwargs)
    assert info.value.field == field
    assert fake_api.requests == []


async def test_a_1000_character_prompt_is_accepted(official: Official, fake_api: FakeApi) -> None:
    fake_api.script(httpx.Response(200, json={"id": "t"}))
    await official.submit(prompt_text="x" * 1000)
    assert len(fake_api.bodies()[0]["promptText"]) == 1000


async def test_bad_source_errors_show_no_query_or_data(official: Official, fake_api: FakeApi) -> None:
    with pytest.raises(CometValidationError) as info:
        await official.submit(SIGNED.replace("in.mp4", "in .mp4"))
    assert "in .mp4" in str(info.value) and leaks(str(info.value)) == []
    with pytest.raises(CometValidationError) as info:
        await official.submit(DATA_URI.replace(";base64", ""))
    assert "data:video/mp4" in str(info.value) and leaks(str(info.value)) == []


async def test_server_text_echoing_the_sources_is_scrubbed(official: Official, fake_api: FakeApi) -> None:
    echo = f"could not fetch videoUri {SIGNED} nor {DATA_URI}; references[0] {STYLE} (signature {SIGNATURE})"
    fake_api.script(error_envelope(400, echo, param="videoUri"))
    with pytest.raises(CometBadRequestError) as info:
        await official.submit(references=[STYLE])
    message = str(info.value)
    assert "https://bucket.s3.test/clips/in.mp4" in message and "videoUri" in message
    assert leaks(message) == []


async def test_runways_own_error_shape_names_the_fields(official: Official, fake_api: FakeApi) -> None:
    body = {"error": "Validation of body failed", "issues": [{"path": ["promptText"], "message": "Too long"}]}
    fake_api.script(httpx.Response(400, json=body))
    with pytest.raises(CometBadRequestError, match=r"Validation of body failed \(promptText: Too long\)"):
        await official.submit()


async def test_runways_refusal_relayed_by_the_gateway_names_the_fields(official: Official, fake_api: FakeApi) -> None:
    runway = {"error": "Validation of body failed", "issues": [{"path": ["references", 0, "uri"], "message": "Bad"}]}
    relayed = {"code": "fail_to_fetch_task", "message": json.dumps(runway), "data": None}
    fake_api.script(httpx.Response(400, json=relayed))
    with pytest.raises(CometBadRequestError) as info:
        await official.submit()
    assert "Validation of body failed (references.0.uri: Bad)" in str(info.value)
    assert info.value.error_code == "fail_to_fetch_task"


async def test_paid_submission_is_not_retried_once_it_may_have_arrived(
    official: Official, fake_api: FakeApi, caplog: pytest.LogCaptureFixture
) -> None:
    fake_api.script(httpx.ReadTimeout(f"timed out sending {SIGNED}"))
    with caplog.at_level(logging.DEBUG), pytest.raises(CometSubmissionUncertainError) as info:
        await official.submit(references=[STYLE])
    assert len(fake_api.requests) == 1
    assert "dashboard" in str(info.value)
    assert leaks(str(info.value)) == [] and leaks(caplog.text) == []


async def test_submission_that_never_left_is_retried(
    official: Official, fake_api: FakeApi, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    counted: list[str] = []
    monkeypatch.setattr(metrics, "incr", lambda name, *a, **k: counted.append(name))
    fake_api.script(
        httpx.ConnectError("connection refused"),
        error_envelope(429, f"busy, try {SIGNED} later"),
        httpx.Response(200, json={"id": "t-2"}),
    )
    with caplog.at_level(logging.DEBUG):
        assert (await official.submit(references=[STYLE])).task_id == "t-2"
    assert len(fake_api.requests) == 3
    assert counted.count(metrics.SUBMISSION_RETRIES) == 2
    assert leaks(caplog.text) == []


# -- poll ------------------------------------------------------------------------------------------


async def test_poll_is_a_get_of_the_quoted_id(official: Official, fake_api: FakeApi) -> None:
    fake_api.script(bare("RUNNING", progress=0.25))
    task = await official.get_task("  a/b c?d ")
    assert (task.task_id, task.status, task.progress) == ("a/b c?d", RunwayStatus.RUNNING, 0.25)
    (request,) = fake_api.requests
    assert request.method == "GET"
    assert request.url.raw_path == b"/runwayml/v1/tasks/a%2Fb%20c%3Fd"
    assert request.content == b""
    assert request.headers["Authorization"] == f"Bearer {SECRET}"
    assert request.headers["X-Runway-Version"] == DEFAULT_RUNWAY_VERSION


@pytest.mark.parametrize(
    ("answer", "status", "video_url", "failure_code"),
    [
        (bare("PENDING"), RunwayStatus.PENDING, None, None),
        (bare("THROTTLED"), RunwayStatus.PENDING, None, None),
        (bare("SUCCEEDED", progress=1, output=[OUT]), RunwayStatus.SUCCEEDED, OUT, None),
        (
            bare("FAILED", failure="Flagged by moderation", failureCode="SAFETY.INPUT.IMAGE"),
            RunwayStatus.FAILED,
            None,
            "SAFETY.INPUT.IMAGE",
        ),
        (bare("CANCELLED"), RunwayStatus.CANCELLED, None, None),
        (feed_answer("SUCCESS", "SUCCEEDED", result_url=OUT), RunwayStatus.SUCCEEDED, OUT, None),
        (feed_answer("IN_PROGRESS", "RUNNING", progress="40%"), RunwayStatus.RUNNING, None, None),
    ],
    ids=["pending", "throttled", "succeeded", "failed", "cancelled", "envelope-success", "envelope-running"],
)
async def test_poll_reads_both_answer_shapes(
    official: Official,
    fake_api: FakeApi,
    answer: httpx.Response,
    status: RunwayStatus,
    video_url: str | None,
    failure_code: str | None,
) -> None:
    fake_api.script(answer)
    task = await official.get_task()
    assert (task.task_id, task.status, task.video_url, task.failure_code) == ("task-1", status, video_url, failure_code)


async def test_bare_failure_carries_runways_reason(official: Official, fake_api: FakeApi) -> None:
    fake_api.script(bare("FAILED", failure="Flagged by moderation", failureCode="SAFETY.INPUT.IMAGE"))
    task = await official.get_task()
    assert task.fail_reason == "Flagged by moderation"
    assert task.is_failure


@pytest.mark.parametrize(
    "answer",
    [
        httpx.Response(404, json={"error": "Task not found"}),
        httpx.Response(400, json={"code": "task_not_exist", "message": "task_not_exist", "data": None}),
    ],
    ids=["404", "task_not_exist"],
)
async def test_unknown_id_is_pending_within_the_grace_period(
    official: Official, fake_api: FakeApi, answer: httpx.Response
) -> None:
    fake_api.script(answer)
    task = await official.get_task(submitted_at=time.time())
    assert task.status is RunwayStatus.PENDING
    assert task.raw == {"code": "task_not_exist"}  # the waiter's "not visible yet" stand-in
    with pytest.raises(RunwayTaskNotFoundError, match="no Runway task 'task-1'"):
        await official.get_task(submitted_at=time.time() - 3600)
    assert len(fake_api.requests) == 2  # never retried


async def test_a_404_elsewhere_is_not_a_missing_task(official: Official, fake_api: FakeApi) -> None:
    fake_api.script(httpx.Response(404, json={"error": "no route"}))
    with pytest.raises(CometBadRequestError) as info:
        await official.submit()
    assert type(info.value) is CometBadRequestError


async def test_poll_failures_are_retried(official: Official, fake_api: FakeApi) -> None:
    fake_api.script(httpx.ReadTimeout("slow"), httpx.Response(503, text="busy"), bare("RUNNING", progress=0.5))
    assert (await official.get_task()).progress == 0.5
    assert [r.method for r in fake_api.requests] == ["GET", "GET", "GET"]


async def test_poll_gives_up_with_a_connection_error(fake_api: FakeApi) -> None:
    fake_api.script(httpx.ConnectError("refused"))
    official = Official("async", make_hook(fake_api, retry_policy=NO_RETRY))
    with pytest.raises(CometConnectionError, match="/runwayml/v1/tasks/task-1"):
        await official.get_task()


@pytest.mark.parametrize("route", ["turbo", "", None, 3])
async def test_unknown_route_is_refused_before_any_request(official: Official, fake_api: FakeApi, route: Any) -> None:
    with pytest.raises(CometValidationError) as info:
        await official.get_task(route=route)
    assert info.value.field == "route"
    assert fake_api.requests == []


async def test_route_is_read_case_insensitively(official: Official, fake_api: FakeApi) -> None:
    fake_api.script(bare("RUNNING"), feed_answer("IN_PROGRESS", "RUNNING"))
    await official.get_task(route=" Official ")
    await official.get_task(route="PRO")
    assert [r.method for r in fake_api.requests] == ["GET", "POST"]
