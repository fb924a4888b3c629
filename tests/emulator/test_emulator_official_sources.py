"""Fetching sources as Runway would: presigned S3 URLs from a real S3-compatible server on loopback
(moto's ThreadedMotoServer), signed query strings kept byte for byte, Runway's types and limits."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
from _emulator_helpers import SSL, Api, decode_frame, make_image, near_fraction
from botocore.config import Config
from moto.server import ThreadedMotoServer

from comet_provider.testing import CometEmulator
from comet_provider.testing.emulator import sources
from comet_provider.testing.render import make_sample_video

RED_BLUE = [(255, 0, 0), (32, 64, 255)]
# What boto3 puts in a presigned URL: percent-encoded slashes, a signature; order matters to SigV4.
SIGNED_QUERY = (
    "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAEXAMPLE%2F20250101%2Fus-east-1%2Fs3%2Faws4_request"
    "&X-Amz-Date=20250101T000000Z&X-Amz-Expires=3600&X-Amz-SignedHeaders=host"
    "&X-Amz-Signature=0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
)


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("official-sources")
    return {
        "clip": make_sample_video(folder / "clip.mp4", seconds=1, size="96x64", rate=10),
        "red_blue": make_image(folder / "red_blue.png", ("red", "0x2040ff")),
    }


@pytest.fixture
def api(comet_emulator: CometEmulator) -> Iterator[Api]:
    comet_emulator.configure(not_exist_seconds=0.05, queue_seconds=0.05, render_seconds=0.1)
    client = Api(comet_emulator)
    yield client
    client.close()


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A bucket on a real S3-compatible HTTP server on 127.0.0.1, and a boto3 client for it."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    client = boto3.client(
        "s3",
        endpoint_url=f"http://{host}:{port}",
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(signature_version="s3v4"),
    )
    client.create_bucket(Bucket="studio")
    try:
        yield client
    finally:
        server.stop()


class Recorder:
    """A file server that records each request's raw target and answers ``(status, content type)``."""

    def __init__(self, body: bytes) -> None:
        self.targets: list[str] = []
        self.answers: dict[str, tuple[int, str]] = {}
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                recorder.targets.append(self.path)
                status, content_type = recorder.answers.get(self.path.split("?", 1)[0], (200, "video/mp4"))
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def recorder(media: dict[str, Path]) -> Iterator[Recorder]:
    server = Recorder(media["clip"].read_bytes())
    yield server
    server.close()


def _download(url: str) -> bytes:
    response = httpx.get(url, trust_env=False, verify=SSL)
    assert response.status_code == 200
    return response.content


def test_presigned_s3_sources_over_real_http(api: Api, s3: Any, media: dict[str, Path]) -> None:
    s3.upload_file(str(media["clip"]), "studio", "clips/day 1/a.mp4", ExtraArgs={"ContentType": "video/mp4"})
    s3.upload_file(str(media["red_blue"]), "studio", "styles/red_blue.png", ExtraArgs={"ContentType": "image/png"})
    video_url = s3.generate_presigned_url(
        "get_object", Params={"Bucket": "studio", "Key": "clips/day 1/a.mp4"}, ExpiresIn=600
    )
    style_url = s3.generate_presigned_url(
        "get_object", Params={"Bucket": "studio", "Key": "styles/red_blue.png"}, ExpiresIn=600
    )
    assert "X-Amz-Signature=" in video_url and "%20" in video_url
    task_id = api.submit_official_id(video_url, references=[{"type": "image", "uri": style_url}], seed=5)
    final, _ = api.wait_task(task_id, timeout=60)
    assert final["status"] == "SUCCEEDED", final
    frame = decode_frame(_download(final["output"][0]), at=0.5)
    assert near_fraction(frame, RED_BLUE) > 0.7  # the reference was fetched and used
    # gen4 fetches the same signed URL.
    gen4, _ = api.wait(api.submit_id("noir", video=video_url), timeout=60)
    assert gen4["status"] == "SUCCESS", gen4
    stats = api.emulator.stats()
    task = stats["tasks"][task_id]
    assert task["source"] == video_url.split("?", 1)[0] and task["references"] == [style_url.split("?", 1)[0]]
    assert api.emulator.submission_counts() == {(task["source"], "restyle"): 1, (task["source"], "noir"): 1}
    assert "X-Amz-Signature" not in json.dumps({k: v for k, v in task.items()})


def test_signed_query_reaches_the_server_byte_for_byte(
    comet_emulator: CometEmulator, api: Api, recorder: Recorder
) -> None:
    comet_emulator.configure(render="copy")  # fetches the source, no ffmpeg
    target = f"/studio/clips/a.mp4?{SIGNED_QUERY}"
    final, _ = api.wait_task(api.submit_official_id(recorder.url + target), timeout=30)
    assert final["status"] == "SUCCEEDED", final
    gen4, _ = api.wait(api.submit_id("noir", video=recorder.url + target), timeout=30)
    assert gen4["status"] == "SUCCESS", gen4
    assert recorder.targets == [target, target]


def test_bad_sources_fail_the_task_without_their_signature(
    comet_emulator: CometEmulator, api: Api, recorder: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    comet_emulator.configure(render="copy")
    recorder.answers["/denied.mp4"] = (403, "application/xml")
    recorder.answers["/page.mp4"] = (200, "text/html")
    recorder.answers["/style.png"] = (200, "image/png")
    cases = {
        "/denied.mp4": ([], "HTTP 403"),
        "/page.mp4": ([], "Content-Type 'text/html'"),
        # An mp4 given as the style image.
        "/clip.mp4": ([f"{recorder.url}/clip.mp4?{SIGNED_QUERY}"], "not one of Runway's image types"),
    }
    for path, (references, expected) in cases.items():
        refs = [{"type": "image", "uri": uri} for uri in references]
        final, _ = api.wait_task(api.submit_official_id(f"{recorder.url}{path}?{SIGNED_QUERY}", references=refs))
        assert final["status"] == "FAILED" and final["failureCode"] == "ASSET.INVALID", final
        assert expected in final["failure"] and "X-Amz-Signature" not in final["failure"], final
    # Runway's size limit for a fetched image (16 MB), made small here.
    monkeypatch.setitem(sources.URL_SIZE_LIMITS, "image", 1000)
    refs = [{"type": "image", "uri": f"{recorder.url}/style.png?{SIGNED_QUERY}"}]
    final, _ = api.wait_task(api.submit_official_id(f"{recorder.url}/clip.mp4", references=refs))
    assert final["status"] == "FAILED" and "larger than 1000 bytes" in final["failure"], final
    # gen4 keeps fetching without Runway's checks: the same HTML page is just a bad clip there.
    gen4, _ = api.wait(api.submit_id("noir", video=f"{recorder.url}/page.mp4"), timeout=30)
    assert gen4["status"] == "SUCCESS"
