"""Helpers for the emulator tests: a plain httpx client speaking the CometAPI contract (both routes), frame maths."""

from __future__ import annotations

import base64
import ssl
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx

from comet_provider.testing import CometEmulator, EmulatorProcess
from comet_provider.testing.render import ffmpeg_exe

HEADERS = {"Authorization": "Bearer test-key", "X-Runway-Version": "2024-11-06"}
TERMINAL = {"SUCCESS", "FAILURE"}
RUNWAY_TERMINAL = {"SUCCEEDED", "FAILED", "CANCELLED"}
SSL = ssl.create_default_context()  # one for all clients: creating one per client costs ~50 ms
#: Every place the emulator can put a render's URL in a feed answer (it rotates through them).
URL_FIELDS = {
    "video_url": lambda d: d.get("video_url"),
    "result_url": lambda d: d.get("result_url"),
    "output": lambda d: (d["data"].get("output") or [None])[0],
    "inner_video_url": lambda d: d["data"].get("video_url"),
}


def all_urls(wrapper: dict[str, Any]) -> dict[str, str]:
    """The render URLs in a feed answer, by placement."""
    return {name: url for name, get in URL_FIELDS.items() if (url := get(wrapper))}


class Api:
    """Raw HTTP against the emulator, the way an API client would talk to CometAPI."""

    def __init__(self, emulator: CometEmulator | EmulatorProcess, headers: dict[str, str] | None = None) -> None:
        self.emulator = emulator
        self.client = httpx.Client(
            base_url=emulator.url, headers=headers or HEADERS, timeout=15.0, trust_env=False, verify=SSL
        )

    def close(self) -> None:
        self.client.close()

    def submit(self, prompt: str = "pixelated style", video: str | None = None, **extra: Any) -> httpx.Response:
        body: dict[str, Any] = {
            "video": video or self.emulator.media_url("clip.mp4"),
            "prompt": prompt,
            "model": "gen4",
            "options": {"structure_transformation": 0.5, "flip": False},
        }
        body.update(extra)
        return self.client.post("/runway/pro/video2video", json=body)

    def submit_id(self, prompt: str = "pixelated style", **extra: Any) -> str:
        response = self.submit(prompt, **extra)
        assert response.status_code == 200, response.text
        return str(response.json()["data"]["task_id"])

    def feed(self, task_id: str) -> httpx.Response:
        return self.client.post("/runway/feed", json={"task_id": task_id})

    def wait(self, task_id: str, timeout: float = 20.0, interval: float = 0.05) -> tuple[dict[str, Any], list[Any]]:
        """Poll until terminal; returns (final wrapper, [(wrapper status, inner status, progress)...])."""
        seen: list[Any] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            response = self.feed(task_id)
            if response.status_code == 400 and response.json().get("code") == "task_not_exist":
                seen.append(("task_not_exist", None, None))
            else:
                assert response.status_code == 200, response.text
                data = response.json()["data"]
                seen.append((data["status"], data["data"]["status"], data["progress"]))
                if data["status"] in TERMINAL:
                    return data, seen
            time.sleep(interval)
        raise AssertionError(f"task {task_id} did not finish: {seen[-5:]}")

    def submit_official(self, video: str | None = None, prompt: str = "restyle", **extra: Any) -> httpx.Response:
        body: dict[str, Any] = {
            "videoUri": video or self.emulator.media_url("clip.mp4"),
            "promptText": prompt,
            "model": "gen4_aleph",
        }
        body.update(extra)
        return self.client.post("/runwayml/v1/video_to_video", json=body)

    def submit_official_id(self, video: str | None = None, prompt: str = "restyle", **extra: Any) -> str:
        response = self.submit_official(video, prompt, **extra)
        assert response.status_code == 200, response.text
        assert list(response.json()) == ["id"]
        return str(response.json()["id"])

    def task(self, task_id: str) -> httpx.Response:
        return self.client.get(f"/runwayml/v1/tasks/{task_id}")

    def wait_task(
        self, task_id: str, timeout: float = 30.0, interval: float = 0.05
    ) -> tuple[dict[str, Any], list[Any]]:
        """Poll ``GET /runwayml/v1/tasks/{id}`` (bare shape) until terminal; returns (task, [status...])."""
        seen: list[str] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            response = self.task(task_id)
            if response.status_code == 400 and response.json().get("code") == "task_not_exist":
                seen.append("task_not_exist")
            else:
                assert response.status_code == 200, response.text
                task = response.json()
                seen.append(task["status"])
                if task["status"] in RUNWAY_TERMINAL:
                    return task, seen
            time.sleep(interval)
        raise AssertionError(f"task {task_id} did not finish: {seen[-5:]}")


def data_uri(path: Path, media_type: str) -> str:
    return f"data:{media_type};base64,{base64.b64encode(path.read_bytes()).decode()}"


def make_image(path: Path, colours: tuple[str, ...], size: int = 32) -> Path:
    """A PNG of vertical stripes, one per ffmpeg colour (e.g. ``("red", "0x2040ff")``)."""
    width = max(1, size // len(colours))
    sources = ";".join(f"color=c={c}:s={width}x{size}[c{n}]" for n, c in enumerate(colours))
    graph = sources + ";" + "".join(f"[c{n}]" for n in range(len(colours))) + f"hstack=inputs={len(colours)}"
    if len(colours) == 1:
        graph = f"color=c={colours[0]}:s={size}x{size}"
    subprocess.run(
        [
            ffmpeg_exe(),
            "-hide_banner",
            "-loglevel",
            "error",
            "-y",
            "-filter_complex",
            graph,
            "-frames:v",
            "1",
            str(path),
        ],
        check=True,
    )
    return path


def near_fraction(rgb: bytes, colours: list[tuple[int, int, int]], distance: int = 60) -> float:
    """Share of pixels within ``distance`` (per channel) of one of ``colours``."""
    pixels = len(rgb) // 3
    near = 0
    for i in range(0, len(rgb), 3):
        r, g, b = rgb[i], rgb[i + 1], rgb[i + 2]
        if any(max(abs(r - cr), abs(g - cg), abs(b - cb)) <= distance for cr, cg, cb in colours):
            near += 1
    return near / pixels


def decode_frame(video: bytes | Path, at: float = 1.0, size: str = "80x60") -> bytes:
    """One frame as raw RGB24 bytes, scaled to ``size``."""
    source = "pipe:0" if isinstance(video, bytes) else str(video)
    result = subprocess.run(
        [
            ffmpeg_exe(),
            "-hide_banner",
            "-loglevel",
            "error",
            "-ss",
            f"{at:g}",
            "-i",
            source,
            "-frames:v",
            "1",
            "-s",
            size,
            "-f",
            "rawvideo",
            "-pix_fmt",
            "rgb24",
            "pipe:1",
        ],
        input=video if isinstance(video, bytes) else None,
        capture_output=True,
        check=True,
    )
    return result.stdout


def mean_saturation(rgb: bytes) -> float:
    """Mean of (max - min) over pixels: 0 for gray images."""
    total = 0
    for i in range(0, len(rgb), 3):
        r, g, b = rgb[i], rgb[i + 1], rgb[i + 2]
        total += max(r, g, b) - min(r, g, b)
    return total / (len(rgb) // 3)


def mean_abs_diff(a: bytes, b: bytes) -> float:
    assert len(a) == len(b) and a
    return sum(abs(x - y) for x, y in zip(a, b, strict=True)) / len(a)


def distinct_colors(rgb: bytes, quant: int = 16) -> int:
    return len({(rgb[i] // quant, rgb[i + 1] // quant, rgb[i + 2] // quant) for i in range(0, len(rgb), 3)})
