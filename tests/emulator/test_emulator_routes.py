"""CometAPI's routes: auth, headers, submit, feed lifecycle, URL placements, failures, throttling."""

from __future__ import annotations

import json
import time
import uuid

import httpx
import pytest
from _emulator_helpers import HEADERS, Api, all_urls

from comet_provider.testing import CometEmulator


def test_auth_rejected_without_leaking_the_key(emu: CometEmulator) -> None:
    wrong = "sk-wrong-secret-123"
    client = httpx.Client(base_url=emu.url, trust_env=False)
    for headers in (
        {"X-Runway-Version": "2024-11-06"},
        {"Authorization": f"Bearer {wrong}", "X-Runway-Version": "2024-11-06"},
        {"Authorization": "Basic dGVzdC1rZXk=", "X-Runway-Version": "2024-11-06"},
        {"Authorization": "Bearer", "X-Runway-Version": "2024-11-06"},
    ):
        for path, body in (("/runway/pro/video2video", {}), ("/runway/feed", {"task_id": "x"})):
            response = client.post(path, json=body, headers=headers)
            assert response.status_code == 401
            error = response.json()["error"]
            assert error["code"] == "invalid_api_key"
            assert error["type"] == "comet_api_error"
            assert error["param"] == ""
            assert error["message"].startswith("Invalid token (request id: ")
            everything = response.text + json.dumps(dict(response.headers))
            assert "test-key" not in everything and wrong not in everything
    client.close()
    stats = emu.stats()
    assert stats["auth_failures"] == 8
    assert stats["submissions"] == 0
    dumped = json.dumps(stats) + json.dumps(emu.config())
    assert "test-key" not in dumped and wrong not in dumped
    assert emu.config()["api_key_set"] is True


def test_any_token_accepted_without_configured_key() -> None:
    with CometEmulator(render="synthetic") as emu:
        assert emu.api_key is None
        client = httpx.Client(base_url=emu.url, trust_env=False)
        ok = client.post(
            "/runway/feed", json={"task_id": "nope"}, headers={**HEADERS, "Authorization": "Bearer anything"}
        )
        assert ok.status_code == 400 and ok.json()["code"] == "task_not_exist"
        missing = client.post("/runway/feed", json={"task_id": "nope"}, headers={"X-Runway-Version": "1"})
        assert missing.status_code == 401
        assert json.loads(emu.connection_json())["password"]
        client.close()


def test_key_can_change_at_runtime(emu: CometEmulator, api: Api) -> None:
    emu.configure(api_key="rotated")
    assert emu.api_key == "rotated"
    assert api.feed("x").status_code == 401
    rotated = {"Authorization": "Bearer rotated"}
    assert api.client.post("/runway/feed", json={"task_id": "x"}, headers=rotated).status_code == 400
    emu.reset(config=True)
    assert emu.api_key == "test-key"
    assert api.feed("x").status_code == 400


def test_version_header_required(emu: CometEmulator) -> None:
    client = httpx.Client(base_url=emu.url, headers={"Authorization": "Bearer test-key"}, trust_env=False)
    response = client.post("/runway/pro/video2video", json={})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid_request" and "X-Runway-Version" in error["message"]
    assert emu.stats()["submissions"] == 0
    emu.configure(require_version_header=False)
    response = client.post("/runway/pro/video2video", json={})
    client.close()
    assert response.status_code == 400 and response.json()["error"]["param"] == "video"


@pytest.mark.parametrize(
    ("change", "param"),
    [
        ({"video": None}, "video"),
        ({"video": ""}, "video"),
        ({"video": "ftp://example.com/a.mp4"}, "video"),
        ({"video": "/local/file.mp4"}, "video"),
        ({"prompt": ""}, "prompt"),
        ({"prompt": None}, "prompt"),
        ({"model": "  "}, "model"),
        ({"options": "fast"}, "options"),
        ({"options": {"structure_transformation": 1.5}}, "options.structure_transformation"),
        ({"options": {"flip": "yes"}}, "options.flip"),
        ({"options": {"seconds": -1}}, "options.seconds"),
    ],
)
def test_submit_validation(emu: CometEmulator, api: Api, change: dict, param: str) -> None:
    body = {"video": emu.media_url("clip.mp4"), "prompt": "p", "model": "gen4", "options": {}}
    body.update(change)
    body = {k: v for k, v in body.items() if v is not None}
    response = api.client.post("/runway/pro/video2video", json=body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] == param
    assert error["type"] == "comet_api_error" and "(request id: " in error["message"]
    assert emu.stats()["submissions"] == 0


def test_submit_not_json(api: Api) -> None:
    response = api.client.post(
        "/runway/pro/video2video", content=b"{nope", headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400 and "JSON" in response.json()["error"]["message"]


def test_submit_shape(emu: CometEmulator, api: Api) -> None:
    emu.configure(not_exist_seconds=30)
    response = api.submit("Apply a pixel-art redraw style.", callback_url="https://example.com/webhook")
    assert response.status_code == 200
    body = response.json()
    assert body["code"] == 200 and isinstance(body["code"], int)
    assert body["msg"] == "成功"
    assert isinstance(body["exec_time"], float)
    data = body["data"]
    uuid.UUID(data["task_id"])
    assert data["prompt"] == "Apply a pixel-art redraw style."
    for key in ("state", "status", "prompt_en", "video_url", "last_frame", "msg", "poster"):
        assert data[key] == ""
    assert data["create_time"] and data["update_time"]
    task = emu.stats()["tasks"][data["task_id"]]
    assert task["prompt"] == data["prompt"] and task["video"].endswith("/media/clip.mp4")
    assert task["options"] == {"structure_transformation": 0.5, "flip": False}
    assert task["status"] == "NOT_START" and task["feeds"] == 0


def test_feed_lifecycle(emu: CometEmulator, api: Api) -> None:
    emu.configure(not_exist_seconds=0.3, queue_seconds=0.3, render_seconds=1.0, url_placement="output")
    submitted = time.time()
    task_id = api.submit_id()
    final, seen = api.wait(task_id, interval=0.03)
    statuses = [s[0] for s in seen]
    assert statuses[0] == "task_not_exist"
    assert statuses.index("task_not_exist") < statuses.index("QUEUED") < statuses.index("IN_PROGRESS")
    assert statuses[-1] == "SUCCESS"
    # Phases never go backwards.
    order = ["task_not_exist", "QUEUED", "IN_PROGRESS", "SUCCESS"]
    assert [order.index(s) for s in statuses] == sorted(order.index(s) for s in statuses)
    assert {inner for status, inner, _ in seen if status == "QUEUED"} == {"PENDING"}
    running = [int(p.rstrip("%")) for status, inner, p in seen if status == "IN_PROGRESS"]
    assert len(running) >= 5 and running == sorted(running) and running[-1] > running[0]
    assert all(0 <= p < 100 for p in running)
    assert final["progress"] == "100%" and final["data"]["status"] == "SUCCEEDED"
    assert final["action"] == "VIDEO_TO_VIDEO" and final["fail_reason"] == ""
    assert final["data"]["id"] == task_id and final["data"]["createdAt"]
    assert int(submitted) <= final["submit_time"] <= final["start_time"] <= final["finish_time"]
    assert emu.stats()["tasks"][task_id]["feeds"] == len(seen)


def test_running_has_numeric_inner_progress(emu: CometEmulator, api: Api) -> None:
    emu.configure(not_exist_seconds=0, queue_seconds=0, render_seconds=5)
    task_id = api.submit_id()
    time.sleep(0.6)
    data = api.feed(task_id).json()["data"]
    assert data["status"] == "IN_PROGRESS" and data["data"]["status"] == "RUNNING"
    assert 0 < data["data"]["progress"] < 1
    assert data["progress"] == f"{round(data['data']['progress'] * 100)}%"
    assert data["start_time"] > 0 and data["finish_time"] == 0


@pytest.mark.parametrize("placement", ["video_url", "result_url", "output", "inner_video_url"])
def test_url_placement(emu: CometEmulator, api: Api, placement: str) -> None:
    emu.configure(url_placement=placement)
    task_id = api.submit_id()
    final, _ = api.wait(task_id)
    urls = all_urls(final)
    assert list(urls) == [placement]
    url = urls[placement]
    assert url == f"{emu.url}/renders/{task_id}.mp4"
    download = httpx.get(url, trust_env=False)
    assert download.status_code == 200 and download.headers["content-type"] == "video/mp4"
    assert int(download.headers["content-length"]) == len(download.content) > 1000
    assert download.content[4:8] == b"ftyp"
    for key, suffix in (("poster", "poster.jpg"), ("last_frame", "last_frame.jpg")):
        assert final[key] == f"{emu.url}/renders/{task_id}.{suffix}"
        image = httpx.get(final[key], trust_env=False)
        assert image.status_code == 200 and image.content[:2] == b"\xff\xd8"


def test_url_placement_none_is_success_without_url(emu: CometEmulator, api: Api) -> None:
    emu.configure(url_placement="none")
    final, _ = api.wait(api.submit_id())
    assert final["status"] == "SUCCESS" and all_urls(final) == {}


def test_url_placement_rotates(emu: CometEmulator, api: Api) -> None:
    ids = [api.submit_id() for _ in range(5)]
    placements = [list(all_urls(api.wait(task_id)[0])) for task_id in ids]
    assert placements == [["video_url"], ["result_url"], ["output"], ["inner_video_url"], ["video_url"]]
    assert [emu.stats()["tasks"][t]["url_placement"] for t in ids][:4] == [p[0] for p in placements[:4]]


@pytest.mark.parametrize(
    ("prompt", "inner_status", "code"),
    [
        ("pixelated [fail]", "FAILED", "INTERNAL.BAD_OUTPUT.CODE01"),
        ("noir [fail:SAFETY.INPUT.TEXT]", "FAILED", "SAFETY.INPUT.TEXT"),
        ("[fail:THIRD_PARTY.UNAVAILABLE] anything", "FAILED", "THIRD_PARTY.UNAVAILABLE"),
        ("sepia [cancel]", "CANCELLED", None),
    ],
)
def test_failures(emu: CometEmulator, api: Api, prompt: str, inner_status: str, code: str | None) -> None:
    task_id = api.submit_id(prompt)
    final, seen = api.wait(task_id)
    assert "IN_PROGRESS" in [s[0] for s in seen]
    assert final["status"] == "FAILURE"
    assert final["data"]["status"] == inner_status
    assert final["fail_reason"]
    assert final["data"].get("failureCode") == code
    if code:
        assert final["data"]["failure"] == final["fail_reason"]
    assert all_urls(final) == {} and "poster" not in final
    assert emu.stats()["tasks"][task_id]["render"] == "skipped"


def test_unknown_task_and_bad_feed_body(api: Api) -> None:
    response = api.feed(str(uuid.uuid4()))
    assert response.status_code == 400
    assert response.json() == {"code": "task_not_exist", "message": "task_not_exist", "data": None}
    response = api.client.post("/runway/feed", json={})
    assert response.status_code == 400 and response.json()["error"]["param"] == "task_id"


def test_throttled_over_concurrency(emu: CometEmulator, api: Api) -> None:
    emu.configure(concurrency=1, not_exist_seconds=0, queue_seconds=0, render_seconds=0.8)
    first, second = api.submit_id(), api.submit_id()
    time.sleep(0.2)
    one, two = api.feed(first).json()["data"], api.feed(second).json()["data"]
    assert (one["status"], one["data"]["status"]) == ("IN_PROGRESS", "RUNNING")
    assert (two["status"], two["data"]["status"]) == ("QUEUED", "THROTTLED")
    final, seen = api.wait(second)
    assert final["status"] == "SUCCESS" and "IN_PROGRESS" in [s[0] for s in seen]
    assert final["start_time"] >= one["submit_time"]
