"""The ffmpeg side (comet_provider.testing.render): style keywords, filters, sample clips."""

from __future__ import annotations

from pathlib import Path

from _emulator_helpers import decode_frame, distinct_colors

from comet_provider.testing import build_filter, make_sample_video, styles_for_prompt


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
