"""The gateway's answer shapes (QuantumNous/new-api, under CometAPI), one fixture per rule.

Each ``tests/fixtures/gateway/<rule>.json`` holds an HTTP status and answer as the gateway writes
them (its ``source`` names the file in that repository) and what a wait makes of it (``expect``):
``state`` is pending / running / succeeded / failed (the task, or an error no wait fixes) /
not_found (no such task, outside the grace period). Every answer goes through the hook's own
request path, on both routes (the official one may answer with the same envelope).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from comet_provider.exceptions import CometError, RunwayTaskNotFoundError
from comet_provider.models import RunwayStatus
from comet_provider.utils.retry import RetryPolicy

from ._fakes import SECRET, FakeApi, Twin, make_hook

FIXTURES = {
    path.stem: json.loads(path.read_text(encoding="utf-8"))
    for path in sorted((Path(__file__).parents[1] / "fixtures" / "gateway").glob("*.json"))
}
STATES = {
    RunwayStatus.PENDING: "pending",
    RunwayStatus.RUNNING: "running",
    RunwayStatus.SUCCEEDED: "succeeded",
    RunwayStatus.FAILED: "failed",
    RunwayStatus.CANCELLED: "failed",
}


def test_every_rule_has_a_fixture() -> None:
    assert len(FIXTURES) >= 28


def _answer(fixture: dict[str, Any]) -> httpx.Response:
    answer = fixture["answer"]
    content = b"" if answer is None else json.dumps(answer).encode()
    return httpx.Response(fixture["status_code"], content=content, headers={"Content-Type": "application/json"})


@pytest.mark.parametrize("route", ["pro", "official"])
@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize("rule", FIXTURES)
async def test_gateway_shape(rule: str, mode: str, route: str, fake_api: FakeApi) -> None:
    fixture = FIXTURES[rule]
    expect = fixture["expect"]
    fake_api.script(_answer(fixture))
    twin = Twin(mode, make_hook(fake_api, retry_policy=RetryPolicy(max_attempts=1)))
    try:
        # No submitted_at: outside any grace period, a missing task is reported as such.
        task = await twin.get_task("3d95c6f2-7a41-4b8e-9c0d-5e6f7a8b9c0d", route=route)
    except RunwayTaskNotFoundError:
        state, output_url, progress, failure_code = "not_found", None, None, None
    except CometError as exc:
        # What a wait does with it: transient trouble keeps waiting, anything else ends it.
        state, output_url, progress, failure_code = ("pending" if exc.retryable else "failed"), None, None, None
    else:
        state, output_url, progress, failure_code = (
            STATES[task.status],
            task.video_url,
            task.progress,
            task.failure_code,
        )
    assert {"state": state, "output_url": output_url, "progress": progress, "failure_code": failure_code} == {
        "state": expect["state"],
        "output_url": expect["output_url"],
        "progress": pytest.approx(expect["progress"]) if expect["progress"] is not None else None,
        "failure_code": expect["failure_code"],
    }
    (request,) = fake_api.requests
    assert request.method == ("POST" if route == "pro" else "GET")


# -- success_proxy_url_when_adaptor_has_none: the gateway's own render URL needs the key ------------------

PROXY_RENDER = "https://comet.test/v1/videos/task_Qm3x/content"
VIDEO = b"\x00\x00\x00\x18ftypmp42" + b"\x01" * 64


def video(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, stream=httpx.ByteStream(VIDEO), headers={"Content-Type": "video/mp4"})


def test_a_render_on_the_api_host_is_fetched_with_the_key(fake_api: FakeApi, tmp_path: Path) -> None:
    fake_api.script(video)
    hook = make_hook(fake_api, retry_policy=RetryPolicy(max_attempts=1))
    hook.download(PROXY_RENDER, tmp_path / "out.mp4")
    hook.check_render_link(PROXY_RENDER)
    assert [r.headers.get("Authorization") for r in fake_api.requests] == [f"Bearer {SECRET}"] * 2
    assert (tmp_path / "out.mp4").read_bytes() == VIDEO


def test_the_key_never_follows_a_redirect_or_goes_to_a_cdn(fake_api: FakeApi, tmp_path: Path) -> None:
    cdn = "https://cdn.test/renders/out.mp4?sig=abc"
    fake_api.script(httpx.Response(302, headers={"Location": cdn}), video)
    hook = make_hook(fake_api, retry_policy=RetryPolicy(max_attempts=1))
    hook.download(PROXY_RENDER, tmp_path / "a.mp4")
    hook.download(cdn, tmp_path / "b.mp4")
    # Same host on another port or scheme is another origin too.
    hook.download("http://comet.test/v1/videos/x/content", tmp_path / "c.mp4")
    sent = [(str(r.url), r.headers.get("Authorization")) for r in fake_api.requests]
    assert sent == [
        (PROXY_RENDER, f"Bearer {SECRET}"),
        (cdn, None),
        (cdn, None),
        ("http://comet.test/v1/videos/x/content", None),
    ]
