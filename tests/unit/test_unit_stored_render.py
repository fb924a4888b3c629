"""The stored render's sidecar, on a local disk and on object storage (fsspec's memory://)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from comet_provider.utils.pay_once import Fingerprint
from comet_provider.utils.stored_render import forget_stored_render, read_stored_render, write_stored_render

from ._fakes import memory_folder

FP = Fingerprint("abc", 'etag="1"')


@pytest.fixture(params=["local", "memory"])
def output_path(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "local":
        yield str(tmp_path / "day" / "clip.mp4")
        return
    with memory_folder("renders") as root:
        yield f"{root}/day/clip.mp4"


def _write_render(output_path: str, data: bytes) -> None:
    from comet_provider.hooks.storage import write_bytes_atomic

    write_bytes_atomic(output_path, data)


def test_round_trip_and_what_invalidates_it(output_path: str) -> None:
    assert read_stored_render(output_path) is None  # nothing stored
    _write_render(output_path, b"v" * 64)
    assert read_stored_render(output_path) is None  # a render without a sidecar is not reused
    signed = "https://bucket.example.com/a.mp4?X-Amz-Signature=deadbeef"
    write_stored_render(output_path, runway_task_id="rw-1", fingerprint=FP, size_bytes=64, video=signed)

    stored = read_stored_render(output_path)
    assert stored is not None
    assert (stored.runway_task_id, stored.fingerprint, stored.size_bytes) == ("rw-1", FP, 64)

    _write_render(output_path, b"other bytes")  # replaced behind the sidecar's back
    assert read_stored_render(output_path) is None
    forget_stored_render(output_path)
    forget_stored_render(output_path)  # already gone: fine
    _write_render(output_path, b"v" * 64)
    assert read_stored_render(output_path) is None


def test_the_sidecar_holds_no_signature(tmp_path: Path) -> None:
    out = tmp_path / "clip.mp4"
    out.write_bytes(b"v")
    signed = "https://bucket.example.com/a.mp4?X-Amz-Signature=deadbeef"
    write_stored_render(str(out), runway_task_id="rw-1", fingerprint=FP, size_bytes=1, video=signed)
    text = Path(f"{out}.comet.json").read_text()
    assert "deadbeef" not in text
    assert json.loads(text)["video"] == "https://bucket.example.com/a.mp4"


def test_a_corrupt_sidecar_reads_as_not_stored(tmp_path: Path) -> None:
    out = tmp_path / "clip.mp4"
    out.write_bytes(b"v")
    Path(f"{out}.comet.json").write_text("{not json")
    assert read_stored_render(str(out)) is None
