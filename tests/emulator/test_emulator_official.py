"""The official-format route: ``POST /runwayml/v1/video_to_video`` and ``GET /runwayml/v1/tasks/{id}``.

Answer shapes (bare task or the feed's envelope), validation naming the field, failures and
faults through the shared timeline, counting paid submissions on both routes.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from _emulator_helpers import HEADERS, SSL, Api

from comet_provider.testing import CometEmulator
from comet_provider.testing.emulator.official import OfficialInputs
from comet_provider.testing.emulator.timeline import EmulatedTask
from comet_provider.testing.render import RenderOutput

OUTPUT = RenderOutput(Path("v.mp4"), Path("p.jpg"), Path("l.jpg"))
SIGNED = "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Signature="


def _task(prompt: str = "restyle", placement: str = "output") -> EmulatedTask:
    inputs = OfficialInputs("https://bucket.example/clip.mp4?" + SIGNED + "abc", prompt, "gen4_aleph", seed=3)
    return EmulatedTask(
        "t-1",
        prompt=prompt,
        video=inputs.video_uri,
        model=inputs.model,
        options={},
        callback_url=None,
        placement=placement,
        render_mode="synthetic",
        created_mono=time.monotonic(),
        not_exist_at=1.0,
        ready_at=2.0,
        start_at=3.0,
        end_at=5.0,
        official=inputs,
    )


def _bare(task: EmulatedTask, offset: float) -> dict[str, Any]:
    answer: dict[str, Any] = json.loads(task.feed_body(task.created_mono + offset, "http://e", 0, "bare"))
    return answer


def test_bare_task_shape_at_each_state() -> None:
    task = _task()
    assert task.route == "official"
    created = task.created_iso
    assert _bare(task, 1.5) == {"id": "t-1", "status": "PENDING", "createdAt": created}
    assert _bare(task, 2.5) == {"id": "t-1", "status": "THROTTLED", "createdAt": created}
    assert _bare(task, 4.0) == {"id": "t-1", "status": "RUNNING", "createdAt": created, "progress": 0.5}
    assert _bare(task, 6.0)["status"] == "RUNNING"  # never SUCCEEDED before the render file exists
    task.finish_render(OUTPUT, None)
    done = {"id": "t-1", "status": "SUCCEEDED", "createdAt": created, "output": ["http://e/renders/t-1.mp4"]}
    assert _bare(task, 6.0) == done
    # The envelope of the same task is the feed's body, byte for byte.
    assert task.feed_body(task.created_mono + 6.0, "http://e", 0) == task.feed_body(
        task.created_mono + 6.0, "http://e", 0, "envelope"
    )
    assert json.loads(task.feed_body(task.created_mono + 6.0, "http://e", 0))["data"]["status"] == "SUCCESS"


def test_bare_task_failures_and_a_success_without_url() -> None:
    safety = _task("restyle [fail:SAFETY.INPUT.TEXT]")
    failed = _bare(safety, 5.0)
    assert failed["status"] == "FAILED" and failed["failureCode"] == "SAFETY.INPUT.TEXT"
    assert "moderation" in failed["failure"] and "output" not in failed
    cancelled = _task("restyle [cancel]")
    assert _bare(cancelled, 5.0) == {"id": "t-1", "status": "CANCELLED", "createdAt": cancelled.created_iso}
    hidden = _task(placement="none")
    hidden.finish_render(OUTPUT, None)
    assert _bare(hidden, 6.0) == {"id": "t-1", "status": "SUCCEEDED", "createdAt": hidden.created_iso}


def test_lifecycle_over_http_and_the_not_exist_window(emu: CometEmulator, api: Api) -> None:
    task_id = api.submit_official_id()
    final, seen = api.wait_task(task_id)
    assert seen[0] == "task_not_exist" or seen[0] in ("PENDING", "THROTTLED", "RUNNING")
    assert set(seen) <= {"task_not_exist", "PENDING", "THROTTLED", "RUNNING", "SUCCEEDED"}
    assert final["status"] == "SUCCEEDED" and set(final) == {"id", "status", "createdAt", "output"}
    video = httpx.get(final["output"][0], trust_env=False, verify=SSL)
    assert video.status_code == 200 and video.content[4:8] == b"ftyp"
    # A fresh id answers task_not_exist for the whole configured window, an unknown one always.
    emu.configure(not_exist_seconds=600)
    fresh = api.submit_official_id()
    for task_id in (fresh, "no-such-task"):
        response = api.task(task_id)
        assert response.status_code == 400 and response.json() == {
            "code": "task_not_exist",
            "message": "task_not_exist",
            "data": None,
        }


def test_envelope_shape_is_the_feeds_answer(emu: CometEmulator, api: Api) -> None:
    assert emu.config()["official_task_shape"] == "bare"
    task_id = api.submit_official_id()
    api.wait_task(task_id)
    assert emu.configure(official_task_shape="envelope")["official_task_shape"] == "envelope"
    envelope = api.task(task_id)
    assert envelope.status_code == 200
    assert envelope.json() == api.feed(task_id).json()
    assert envelope.json()["data"]["status"] == "SUCCESS"
    with pytest.raises(ValueError, match="official_task_shape"):
        emu.configure(official_task_shape="wrapped")
    # One task store: a gen4 task polls through the official route too.
    gen4 = api.submit_id("noir")
    final, _ = api.wait(gen4)
    assert api.task(gen4).json()["data"]["task_id"] == final["task_id"]


def _issue(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["code"] == "fail_to_fetch_task" and body["data"] is None
    runway = json.loads(body["message"])
    assert runway["error"] == "Validation of body failed"
    issue: dict[str, Any] = runway["issues"][0]
    return issue


@pytest.mark.parametrize(
    ("change", "path"),
    [
        ({"videoUri": None}, ["videoUri"]),
        ({"videoUri": "ftp://host/clip.mp4"}, ["videoUri"]),
        ({"videoUri": "https:///clip.mp4"}, ["videoUri"]),
        ({"videoUri": "data:video/mp4,notbase64"}, ["videoUri"]),
        ({"videoUri": "data:image/png;base64,AAAA"}, ["videoUri"]),
        ({"videoUri": "data:video/mp4;base64,AAA"}, ["videoUri"]),
        ({"promptText": None}, ["promptText"]),
        ({"promptText": "  "}, ["promptText"]),
        ({"promptText": "x" * 1001}, ["promptText"]),
        ({"model": 4}, ["model"]),
        ({"seed": -1}, ["seed"]),
        ({"seed": 4_294_967_296}, ["seed"]),
        ({"seed": True}, ["seed"]),
        ({"seed": 1.5}, ["seed"]),
        ({"references": "https://x/a.png"}, ["references"]),
        ({"references": [{"type": "video", "uri": "https://x/a.png"}]}, ["references", 0, "type"]),
        ({"references": [{"type": "image", "uri": "https://x/a.png"}, {"type": "image"}]}, ["references", 1, "uri"]),
        ({"references": [{"type": "image", "uri": "data:video/mp4;base64,AAAA"}]}, ["references", 0, "uri"]),
        ({"references": [{"type": "image", "uri": "https://x/a.png", "weight": 1}]}, ["references", 0]),
        ({"ratio": "16x9"}, ["ratio"]),
        ({"ratio": "0:720"}, ["ratio"]),
        ({"contentModeration": "low"}, ["contentModeration"]),
        ({"contentModeration": {"publicFigureThreshold": "high"}}, ["contentModeration", "publicFigureThreshold"]),
        ({"contentModeration": {"public_figure_threshold": "low"}}, ["contentModeration"]),
        ({"prompt_text": "snake case"}, ["prompt_text"]),
    ],
)
def test_bad_bodies_name_the_field(emu: CometEmulator, api: Api, change: dict[str, Any], path: list[Any]) -> None:
    body: dict[str, Any] = {"videoUri": emu.media_url("clip.mp4"), "promptText": "restyle", "model": "gen4_aleph"}
    body.update(change)
    body = {k: v for k, v in body.items() if v is not None}
    issue = _issue(api.client.post("/runwayml/v1/video_to_video", json=body))
    assert issue["path"] == path, issue
    stats = emu.stats(tasks=False)
    assert stats["submissions"] == 0 and stats["routes"]["official"]["submit_attempts"] == 1


def test_good_bodies_and_a_data_uri_over_the_limit(emu: CometEmulator, api: Api) -> None:
    full = {
        "seed": 4_294_967_295,
        "references": [{"type": "image", "uri": "data:image/png;base64,iVBORw0KGgo="}],
        "ratio": "1280:720",
        "contentModeration": {"publicFigureThreshold": "low"},
    }
    task_id = api.submit_official_id(seed=7.0)  # JSON's 7.0 is the integer 7
    other = api.submit_official_id("data:video/mp4;base64,AAAA", **full)
    tasks = emu.stats()["tasks"]
    assert tasks[task_id]["seed"] == 7
    assert tasks[other]["ratio"] == "1280:720" and tasks[other]["content_moderation"] == {
        "publicFigureThreshold": "low"
    }
    huge = "data:video/mp4;base64," + "A" * 16_000_000
    issue = _issue(api.submit_official(huge))
    assert issue["path"] == ["videoUri"] and "16000000" in issue["message"]


def test_gateway_checks_come_first(emu: CometEmulator) -> None:
    body = {"videoUri": emu.media_url("clip.mp4"), "promptText": "restyle", "model": "gen4_aleph"}
    with httpx.Client(base_url=emu.url, trust_env=False, verify=SSL) as client:
        bad_key = client.post(
            "/runwayml/v1/video_to_video", json=body, headers={**HEADERS, "Authorization": "Bearer x"}
        )
        assert bad_key.status_code == 401 and bad_key.json()["error"]["code"] == "invalid_api_key"
        assert client.get("/runwayml/v1/tasks/t", headers={"X-Runway-Version": "1"}).status_code == 401
        no_version = client.post("/runwayml/v1/video_to_video", json=body, headers={"Authorization": "Bearer test-key"})
        assert no_version.status_code == 400 and "X-Runway-Version" in no_version.json()["error"]["message"]
        not_json = client.post("/runwayml/v1/video_to_video", content=b"{nope", headers=HEADERS)
        assert not_json.status_code == 400 and "JSON" in not_json.json()["error"]["message"]
    stats = emu.stats(tasks=False)
    assert stats["submissions"] == 0 and stats["auth_failures"] == 2


def test_failures_and_faults_through_the_shared_timeline(emu: CometEmulator, api: Api) -> None:
    safety, _ = api.wait_task(api.submit_official_id(prompt="a public figure [fail:SAFETY.INPUT.TEXT]"))
    assert safety["status"] == "FAILED" and safety["failureCode"] == "SAFETY.INPUT.TEXT"
    cancelled, _ = api.wait_task(api.submit_official_id(prompt="restyle [cancel]"))
    assert cancelled["status"] == "CANCELLED"
    emu.configure(
        fail_next=[{"endpoint": "submit", "kind": "429", "count": 1}, {"endpoint": "feed", "kind": "500", "count": 1}]
    )
    limited = api.submit_official()
    assert limited.status_code == 429 and limited.headers["Retry-After"] == "1"
    task_id = api.submit_official_id()
    assert api.task(task_id).status_code == 500
    final, _ = api.wait_task(task_id)
    assert final["status"] == "SUCCEEDED"
    stats = emu.stats(tasks=False)
    assert stats["faults"] == {"429": 1, "500": 1}
    assert stats["routes"]["official"] == {"submissions": 3, "submit_attempts": 4}


def test_submission_counts_cover_both_routes(emu: CometEmulator, api: Api) -> None:
    clip = emu.media_url("clip.mp4")
    api.submit_id("noir", video=clip)
    # Two signatures of one object: one source, paid twice.
    api.submit_official_id(f"{clip}?{SIGNED}first", prompt="noir")
    api.submit_official_id(f"{clip}?{SIGNED}second", prompt="noir")
    data = "data:video/mp4;base64," + "QUJD" * 1000
    api.submit_official_id(data, prompt="sepia")
    counts = emu.submission_counts()
    digest = next(source for source, _ in counts if source.startswith("data:"))
    assert counts == {(clip, "noir"): 3, (digest, "sepia"): 1}
    assert emu.submission_counts(route="official") == {(clip, "noir"): 2, (digest, "sepia"): 1}
    assert emu.submission_counts(route="pro") == {(clip, "noir"): 1}
    stats = emu.stats()
    assert stats["submissions"] == 4
    assert {route: c["submissions"] for route, c in stats["routes"].items()} == {"pro": 1, "official": 3}
    assert sorted(t["route"] for t in stats["tasks"].values()) == ["official", "official", "official", "pro"]
    # Neither a signature nor a data: URI's payload shows in the stats.
    text = json.dumps(stats)
    assert "X-Amz-Signature" not in text and "QUJD" not in text
