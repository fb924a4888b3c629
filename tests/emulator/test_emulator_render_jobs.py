"""Render jobs: real restyled renders, copy mode, source fetch failures, success waiting for the file."""

from __future__ import annotations

import socket
from pathlib import Path

import httpx
import pytest
from _emulator_helpers import Api, decode_frame, mean_abs_diff, mean_saturation

from comet_provider.testing import CometEmulator


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
