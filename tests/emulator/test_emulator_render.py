"""Real renders, source fetch failures, callbacks, inboxes, blobs and the media folder."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import httpx
import pytest
from _emulator_helpers import Api, decode_frame, distinct_colors, mean_abs_diff, mean_saturation

from comet_provider.testing import CometEmulator, build_filter, make_sample_video, styles_for_prompt


@pytest.fixture
def render_api(comet_emulator: CometEmulator, staged_clip: str) -> Api:
    comet_emulator.configure(not_exist_seconds=0.1, queue_seconds=0.1, render_seconds=0.5)
    return Api(comet_emulator)


def _render(api: Api, prompt: str, **options: object) -> bytes:
    task_id = api.submit_id(prompt, options={"structure_transformation": 0.5, "flip": False, **options})
    final, _ = api.wait(task_id, timeout=60)
    assert final["status"] == "SUCCESS", final
    url = final.get("video_url") or final.get("result_url") or final["data"].get("video_url")
    url = url or final["data"]["output"][0]
    response = httpx.get(url, trust_env=False)
    assert response.status_code == 200
    assert int(response.headers["content-length"]) == len(response.content)
    return response.content


def test_real_render_restyles_the_clip(render_api: Api, sample_video: Path) -> None:
    source_bytes = sample_video.read_bytes()
    source = decode_frame(sample_video)
    pixel = _render(render_api, "pixelated style")
    gray = _render(render_api, "film noir, black and white")
    for video in (pixel, gray):
        assert video[4:8] == b"ftyp" and video != source_bytes
    pixel_frame, gray_frame = decode_frame(pixel), decode_frame(gray)
    # Grayscale: no colour left where the test pattern is saturated.
    assert mean_saturation(source) > 100 and mean_saturation(gray_frame) < 10
    # Pixelate: far from the source pixel by pixel, close to it once both are reduced to blocks.
    assert mean_abs_diff(source, pixel_frame) > 15
    coarse_src = decode_frame(sample_video, size="8x6")
    coarse_pixel = decode_frame(pixel, size="8x6")
    assert mean_abs_diff(coarse_src, coarse_pixel) < mean_abs_diff(source, pixel_frame)
    # The poster and last frame are JPEG stills of the render.
    stats = render_api.emulator.stats()
    assert stats["renders"]["done"] == 2 and stats["renders"]["failed"] == 0


def test_render_honours_flip_and_seconds(render_api: Api, sample_video: Path) -> None:
    flipped = _render(render_api, "sepia", flip=True, seconds=1)
    plain = _render(render_api, "sepia", flip=False, seconds=1)
    assert mean_abs_diff(decode_frame(flipped, at=0.5), decode_frame(plain, at=0.5)) > 10
    # Only ~1 s of the 4 s clip: decoding at 2 s yields no frame.
    assert decode_frame(plain, at=2.5) == b""


def test_missing_source_fails_with_asset_invalid(render_api: Api) -> None:
    task_id = render_api.submit_id("noir", video=render_api.emulator.media_url("missing.mp4"))
    final, _ = render_api.wait(task_id)
    assert final["status"] == "FAILURE" and final["data"]["status"] == "FAILED"
    assert final["data"]["failureCode"] == "ASSET.INVALID"
    assert "HTTP 404" in final["fail_reason"]
    assert render_api.emulator.stats()["renders"]["failed"] == 1


def test_undecodable_source_fails_with_asset_invalid(render_api: Api) -> None:
    media_dir = render_api.emulator.media_dir
    assert media_dir is not None
    (media_dir / "notes.mp4").write_text("this is not a video")
    task_id = render_api.submit_id("noir", video=render_api.emulator.media_url("notes.mp4"))
    final, _ = render_api.wait(task_id)
    assert final["data"]["failureCode"] == "ASSET.INVALID"
    assert "decode" in final["fail_reason"]


def test_unreachable_source_fails_with_asset_invalid(render_api: Api) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    task_id = render_api.submit_id("noir", video=f"http://127.0.0.1:{port}/clip.mp4?X-Signature=secret")
    final, _ = render_api.wait(task_id)
    assert final["data"]["failureCode"] == "ASSET.INVALID"
    assert "could not fetch" in final["fail_reason"] and "secret" not in final["fail_reason"]


def test_copy_mode_serves_source_bytes(render_api: Api, sample_video: Path) -> None:
    render_api.emulator.configure(render="copy")
    assert _render(render_api, "anything") == sample_video.read_bytes()


def test_success_waits_for_the_render_file(comet_emulator: CometEmulator, staged_clip: str) -> None:
    # A render slower than render_seconds: IN_PROGRESS at 99% until the file exists.
    comet_emulator.configure(not_exist_seconds=0, queue_seconds=0, render_seconds=0, render_workers=1)
    api = Api(comet_emulator)
    final, seen = api.wait(api.submit_id("neon"), timeout=60, interval=0.01)
    assert final["status"] == "SUCCESS"
    assert ("IN_PROGRESS", "RUNNING", "99%") in seen


def test_callback_delivered_to_inbox(comet_emulator: CometEmulator, api: Api) -> None:
    ok = api.submit_id("noir", callback_url=comet_emulator.inbox_url("hooks"))
    failed = api.submit_id("noir [fail:SAFETY.INPUT.TEXT]", callback_url=comet_emulator.inbox_url("hooks"))
    api.wait(ok)
    api.wait(failed)
    deadline = time.monotonic() + 5
    while len(comet_emulator.inbox("hooks")) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    entries = {entry["body"]["task_id"]: entry for entry in comet_emulator.inbox("hooks")}
    assert set(entries) == {ok, failed}
    assert entries[ok]["body"]["status"] == "SUCCESS" and entries[ok]["json"] is True
    assert entries[ok]["method"] == "POST" and entries[ok]["path"] == "/_emulator/inbox/hooks"
    assert entries[failed]["body"]["data"]["failureCode"] == "SAFETY.INPUT.TEXT"
    assert comet_emulator.stats()["callbacks"]["sent"] == 2


def test_callback_failure_is_recorded_not_raised(comet_emulator: CometEmulator, api: Api) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    api.submit_id("noir", callback_url=f"http://127.0.0.1:{port}/hook")
    api.submit_id("noir", callback_url="not-a-url")  # ignored: not http(s)
    api.submit_id("noir", callback_url=comet_emulator.url + "/no/such/route")  # 404
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        callbacks = comet_emulator.stats()["callbacks"]
        if callbacks["failed"] >= 2:
            break
        time.sleep(0.05)
    assert callbacks["failed"] == 2 and callbacks["sent"] == 0
    assert len(callbacks["errors"]) == 2


def test_inbox_stores_any_body_without_credentials(comet_emulator: CometEmulator) -> None:
    url = comet_emulator.inbox_url("notify")
    httpx.post(url, json={"a": 1}, headers={"Authorization": "Bearer hush", "X-Trace": "t1"}, trust_env=False)
    httpx.post(url + "?x=1", content=b"plain text", trust_env=False)
    entries = comet_emulator.inbox("notify")
    assert [e["body"] for e in entries] == [{"a": 1}, "plain text"]
    assert [e["json"] for e in entries] == [True, False]
    assert entries[0]["headers"]["X-Trace"] == "t1"
    assert "hush" not in str(entries) and all("authorization" not in {h.lower() for h in e["headers"]} for e in entries)
    assert entries[1]["query"] == {"x": "1"} and entries[0]["received_at"] <= entries[1]["received_at"]
    assert comet_emulator.inbox("other") == []
    comet_emulator.clear_inbox("notify")
    assert comet_emulator.inbox("notify") == []


def test_blob_sizes(comet_emulator: CometEmulator) -> None:
    with httpx.Client(trust_env=False) as client:
        for size in (0, 1, 12_345, (1 << 20) + 7):
            response = client.get(comet_emulator.blob_url(size))
            assert response.status_code == 200
            assert int(response.headers["content-length"]) == size == len(response.content)
        again = client.get(comet_emulator.blob_url(12_345)).content
        assert again == client.get(comet_emulator.blob_url((1 << 20) + 7)).content[:12_345]
        partial = client.get(comet_emulator.blob_url(12_345), headers={"Range": "bytes=100-199"})
        assert partial.status_code == 206 and partial.content == again[100:200]
        assert client.get(comet_emulator.url + "/_emulator/blob?size=-1").status_code == 400
        assert client.get(comet_emulator.url + "/_emulator/blob?size=big").status_code == 400


def _raw_get(url: str, path: str) -> tuple[bytes, bytes]:
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return head.split(b"\r\n")[0], body


def test_media_serves_files_and_rejects_traversal(comet_emulator: CometEmulator, tmp_path: Path) -> None:
    media_dir = comet_emulator.media_dir
    assert media_dir is not None
    (media_dir / "sub").mkdir()
    (media_dir / "sub" / "ok.txt").write_text("fine")
    (media_dir.parent / "secret.txt").write_text("TOP-SECRET")
    status, body = _raw_get(comet_emulator.url, "/media/sub/ok.txt")
    assert b"200" in status and body == b"fine"
    for path in (
        "/media/../secret.txt",
        "/media/%2e%2e/secret.txt",
        "/media/..%2fsecret.txt",
        "/media/sub/../../secret.txt",
        "/media/sub/%2e%2e/%2e%2e/secret.txt",
        f"/media/{media_dir.parent}/secret.txt",
        "/media/%2F" + str(media_dir.parent / "secret.txt").lstrip("/").replace("/", "%2F"),
    ):
        status, body = _raw_get(comet_emulator.url, path)
        assert b"TOP-SECRET" not in body, path
        assert b"403" in status or b"404" in status, (path, status)
    assert httpx.get(comet_emulator.media_url("nope.mp4"), trust_env=False).status_code == 404


def test_styles_and_filters() -> None:
    assert styles_for_prompt("Apply a pixel-art redraw style.") == ["pixelate"]
    assert styles_for_prompt("8-bit noir") == ["pixelate", "grayscale"]
    assert styles_for_prompt("Black and White") == ["grayscale"]
    assert styles_for_prompt("watercolour dreamscape") == ["default"]  # no whole-word match
    assert styles_for_prompt("[fail] neon") == ["neon"]
    assert "hflip" in build_filter("sepia", flip=True) and "hflip" not in build_filter("sepia")
    assert build_filter("pixel", 0.0) != build_filter("pixel", 1.0)
    for prompt in ("pixel", "noir", "sepia", "invert", "sketch", "blur", "neon", "anything"):
        assert build_filter(prompt).endswith("scale=trunc(iw/2)*2:trunc(ih/2)*2")


def test_make_sample_video(tmp_path: Path) -> None:
    path = make_sample_video(tmp_path / "clips" / "s.mp4", seconds=1, size="64x48", rate=10)
    frame_a, frame_b = decode_frame(path, at=0.0, size="64x48"), decode_frame(path, at=0.8, size="64x48")
    assert len(frame_a) == 64 * 48 * 3 and frame_a != frame_b  # it moves
    assert distinct_colors(frame_a) > 8
    mtime = path.stat().st_mtime_ns
    assert make_sample_video(path, seconds=1, size="64x48") == path and path.stat().st_mtime_ns == mtime
    assert [p.name for p in path.parent.iterdir()] == ["s.mp4"]
