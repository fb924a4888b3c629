"""Unit tests of dags/media_utils.py and dags/contact_sheet.py on real videos made with ffmpeg."""

from __future__ import annotations

import itertools
import json
import struct
from pathlib import Path

import contact_sheet as cs
import media_utils as mu
import pytest


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def _restyle(src: Path, dest: Path, vf: str, size: str | None = None) -> Path:
    """A stand-in for a render: the clip through an ffmpeg filter (optionally another size)."""
    graph = vf + (f",scale={size}" if size else "")
    mu._run_ffmpeg(["-y", "-i", str(src), "-vf", graph, "-c:v", "libx264", "-preset", "ultrafast", str(dest)])
    return dest


# ------------------------------------------------------------------------------------------- probe


def test_probe_video_reads_duration_size_rate_and_audio(sample_video: Path) -> None:
    info = mu.probe_video(sample_video)
    assert info.duration == pytest.approx(10.0, abs=0.1)
    assert (info.width, info.height) == (320, 240)
    assert info.fps == pytest.approx(24.0)
    assert info.has_audio
    assert json.loads(json.dumps(info.to_dict()))["width"] == 320


def test_probe_video_rejects_missing_and_non_video_files(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        mu.probe_video(tmp_path / "nope.mp4")
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"not a video at all")
    with pytest.raises(mu.MediaError):
        mu.probe_video(junk)


# -------------------------------------------------------------------------------------- plan_clips


@pytest.mark.parametrize(
    ("duration", "clip", "minimum", "expected"),
    [
        (10.0, 4.0, 1.0, [(0.0, 4.0), (4.0, 8.0), (8.0, 10.0)]),
        (8.0, 4.0, 1.0, [(0.0, 4.0), (4.0, 8.0)]),  # exact multiple: no empty tail
        (8.5, 4.0, 1.0, [(0.0, 4.0), (4.0, 8.5)]),  # 0.5 s tail merged into the last clip
        (3.0, 5.0, 1.0, [(0.0, 3.0)]),  # shorter than one clip
        (0.4, 5.0, 1.0, [(0.0, 0.4)]),  # even when shorter than the minimum
        (10.0, 4.5, 1.5, [(0.0, 4.5), (4.5, 10.0)]),
    ],
)
def test_plan_clips(duration: float, clip: float, minimum: float, expected: list[tuple[float, float]]) -> None:
    assert mu.plan_clips(duration, clip, minimum) == expected


def test_plan_clips_covers_the_whole_video_without_gaps() -> None:
    for duration in (1.0, 4.99, 5.0, 5.01, 61.3, 3600.0):
        plan = mu.plan_clips(duration, 5.0)
        assert plan[0][0] == 0.0 and plan[-1][1] == pytest.approx(duration)
        assert all(a[1] == b[0] for a, b in itertools.pairwise(plan))
        assert all(end - start >= min(1.0, duration) for start, end in plan)


@pytest.mark.parametrize(("duration", "clip"), [(0, 5), (-1, 5), (10, 0)])
def test_plan_clips_rejects_nonsense(duration: float, clip: float) -> None:
    with pytest.raises(ValueError):
        mu.plan_clips(duration, clip)


# ---------------------------------------------------------------------------------- split / stitch


def test_split_video_cuts_exact_clips(sample_video: Path, tmp_path: Path) -> None:
    clips = mu.split_video(sample_video, tmp_path / "clips", 4.0)
    assert [c.index for c in clips] == [0, 1, 2]
    assert [c.start for c in clips] == [0.0, 4.0, 8.0]
    assert [c.duration for c in clips] == pytest.approx([4.0, 4.0, 2.0], abs=0.1)
    assert [c.path.name for c in clips] == ["clip_000.mp4", "clip_001.mp4", "clip_002.mp4"]
    for clip in clips:
        info = mu.probe_video(clip.path)
        assert (info.width, info.height) == (320, 240)
        assert not info.has_audio  # the API ignores audio; stitch_videos puts the source's back
    # clip 1 starts where the source is at 4 s
    assert mu.frame_difference(clips[1].path, sample_video, 0.5, 4.5) < 3.0


def test_split_video_rerun_replaces_old_clips_and_scales_down(sample_video: Path, tmp_path: Path) -> None:
    dest = tmp_path / "clips"
    assert len(mu.split_video(sample_video, dest, 2.0)) == 5
    clips = mu.split_video(sample_video, dest, 6.0, max_width=160)
    assert len(clips) == 2 and sorted(p.name for p in dest.iterdir()) == ["clip_000.mp4", "clip_001.mp4"]
    info = mu.probe_video(clips[0].path)
    assert (info.width, info.height) == (160, 120)


def test_split_video_short_source_gives_one_clip(sample_video: Path, tmp_path: Path) -> None:
    clips = mu.split_video(sample_video, tmp_path / "clips", 30.0)
    assert len(clips) == 1 and clips[0].duration == pytest.approx(10.0, abs=0.1)


def test_stitch_videos_joins_normalises_and_keeps_source_audio(sample_video: Path, tmp_path: Path) -> None:
    clips = mu.split_video(sample_video, tmp_path / "clips", 4.0)
    # renders may come back at another size: the middle one is 640x360
    styled = [
        _restyle(clips[0].path, tmp_path / "r0.mp4", "negate"),
        _restyle(clips[1].path, tmp_path / "r1.mp4", "negate", size="640:360"),
        _restyle(clips[2].path, tmp_path / "r2.mp4", "negate"),
    ]
    out = mu.stitch_videos(styled, tmp_path / "out" / "styled.mp4", audio_from=sample_video, size=(320, 240), fps=24)
    info = mu.probe_video(out)
    assert info.duration == pytest.approx(10.0, abs=0.15)
    assert (info.width, info.height, info.fps) == (320, 240, 24.0)
    assert info.has_audio
    assert mu.frame_difference(out, sample_video, 5.0) > 50  # negated
    silent = mu.stitch_videos([c.path for c in clips], tmp_path / "plain.mp4")
    assert not mu.probe_video(silent).has_audio
    assert mu.frame_difference(silent, sample_video, 5.0) < 3.0  # same pictures, re-encoded


def test_stitch_videos_needs_clips(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        mu.stitch_videos([], tmp_path / "x.mp4")


# ------------------------------------------------------------------------------------------ frames


def test_sample_times() -> None:
    assert mu.sample_times(10.0, 4) == [1.25, 3.75, 6.25, 8.75]
    assert mu.sample_times(3.0, 1) == [1.5]
    with pytest.raises(ValueError):
        mu.sample_times(3.0, 0)


def test_extract_frame_writes_a_png(sample_video: Path, tmp_path: Path) -> None:
    png = mu.extract_frame(sample_video, tmp_path / "poster.png")
    assert _png_size(png) == (320, 240)
    # past the end is clamped to the last frame rather than failing
    assert _png_size(mu.extract_frame(sample_video, tmp_path / "end.png", at=99.0)) == (320, 240)


def test_frame_difference_measures_change_and_motion(sample_video: Path, tmp_path: Path) -> None:
    assert mu.frame_difference(sample_video, sample_video, 2.0) == 0.0
    assert mu.frame_difference(sample_video, sample_video, 1.0, 6.0) > 2.0  # the pattern moves
    gray = _restyle(sample_video, tmp_path / "gray.mp4", "hue=s=0")
    assert mu.frame_difference(sample_video, gray, 2.0) > 8.0
    with pytest.raises(mu.MediaError):
        mu.read_frame(sample_video, 2.0, pix_fmt="gray", size=(0, 0))


def test_build_contact_sheet(sample_video: Path, tmp_path: Path) -> None:
    negative = _restyle(sample_video, tmp_path / "neg.mp4", "negate")
    small = _restyle(sample_video, tmp_path / "small.mp4", "edgedetect", size="160:120")
    sheet = cs.build_contact_sheet(
        [("original", sample_video), ("negative", negative), ("edges", small)],
        tmp_path / "sheets" / "sheet.png",
        columns=3,
        thumb_width=200,
        title="test",
    )
    width, height = _png_size(sheet)
    assert width == 150 + 3 * (200 + 8) + 8
    assert height == 36 + 28 + 3 * (150 + 8) + 8
    from PIL import Image

    with Image.open(sheet) as img:
        img.verify()
    with pytest.raises(ValueError):
        cs.build_contact_sheet([], tmp_path / "empty.png")


def test_a_reference_style_row_shows_its_reference_image(sample_video: Path, tmp_path: Path) -> None:
    from PIL import Image

    reference = tmp_path / "look.png"
    Image.new("RGB", (300, 200), (250, 40, 200)).save(reference)
    tinted = _restyle(sample_video, tmp_path / "tinted.mp4", "colorchannelmixer=rr=1:gg=0.3:bb=0.8")
    rows = [cs.SheetRow("original", sample_video), cs.SheetRow("look", tinted, reference)]
    sheet = cs.build_contact_sheet(rows, tmp_path / "sheet.png", columns=2, thumb_width=200)
    with Image.open(sheet) as img:
        assert img.size == (150 + 2 * (200 + 8) + 8, 28 + 2 * (150 + 8) + 8)
        rgb = img.convert("RGB")
        # under the label of row 2: the reference thumbnail (134 wide, scaled to keep its shape)
        row_y = 28 + 150 + 8
        assert rgb.getpixel((8 + 60, row_y + 36 + 40)) == (250, 40, 200)
        # row 1 (no reference) has only its label there
        assert rgb.getpixel((8 + 60, 28 + 36 + 40)) != (250, 40, 200)


# ----------------------------------------------------------------------------------------- storage


@pytest.mark.parametrize(
    ("text", "slug"),
    [("My Clip (1).MOV", "my-clip-1-mov"), ("city_walk", "city-walk"), ("***", "video"), ("Été 2025", "t-2025")],
)
def test_slugify(text: str, slug: str) -> None:
    assert mu.slugify(text) == slug


def test_storage_round_trip_and_prefix_removal(sample_video: Path, tmp_path: Path) -> None:
    from airflow.sdk import ObjectStoragePath

    root = ObjectStoragePath(f"file://{tmp_path / 'store'}")
    target = root / "a" / "b" / "video.mp4"
    mu.upload_to_storage(sample_video, target)
    mu.upload_to_storage(sample_video, root / "a" / "c.mp4")
    assert target.exists() and target.stat().st_size == sample_video.stat().st_size
    local = mu.download_from_storage(target, tmp_path / "local")
    assert local == tmp_path / "local" / "video.mp4" and local.read_bytes() == sample_video.read_bytes()
    assert mu.remove_storage_prefix(root / "a") == 2
    assert not (root / "a").exists()
    assert mu.remove_storage_prefix(root / "missing") == 0


def test_ffmpeg_exe_honours_env(monkeypatch: pytest.MonkeyPatch) -> None:
    mu.ffmpeg_exe.cache_clear()
    monkeypatch.setenv("FFMPEG_BINARY", "/opt/custom/ffmpeg")
    try:
        assert mu.ffmpeg_exe() == "/opt/custom/ffmpeg"
    finally:
        mu.ffmpeg_exe.cache_clear()
        monkeypatch.delenv("FFMPEG_BINARY")
    assert Path(mu.ffmpeg_exe()).name.startswith("ffmpeg")


def test_importing_the_helpers_is_cheap() -> None:
    """DAG files import media_utils inside tasks, but even importing it loads nothing heavy."""
    import subprocess
    import sys

    code = "import sys, media_utils; print(sorted(m for m in ('PIL', 'imageio_ffmpeg', 'airflow') if m in sys.modules))"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=Path(mu.__file__).parent, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"
