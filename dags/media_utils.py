"""Media helpers for the example Runway pipelines: probe, split, stitch, frames, storage.

Plain functions on local files, driven by an ``ffmpeg`` executable, so they can be unit-tested
without Airflow. The DAGs import this module *inside* their task functions; it stays cheap
to import anyway (standard library only at module level). The contact sheet, drawn with
Pillow, is in ``contact_sheet.py``.

ffmpeg is looked up in this order: the ``FFMPEG_BINARY`` environment variable, ``ffmpeg`` on
``PATH``, then the binary shipped in the ``imageio-ffmpeg`` wheel (installed with
``airflow-provider-comet[emulator]``). ``ffprobe`` is not needed.

The ``*_storage`` helpers move files between an ``ObjectStoragePath`` (``file://``,
``s3://``, ``gs://``... anything fsspec knows) and a local working directory, since ffmpeg
works on local files.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Collection, Sequence
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow.sdk import ObjectStoragePath

__all__ = [
    "Clip",
    "MediaError",
    "VideoInfo",
    "download_from_storage",
    "extract_frame",
    "ffmpeg_exe",
    "frame_difference",
    "frame_png",
    "plan_clips",
    "probe_video",
    "read_frame",
    "remove_storage_prefix",
    "sample_times",
    "slugify",
    "split_video",
    "stitch_videos",
    "storage_identity",
    "upload_to_storage",
]

PathLike = str | os.PathLike[str]

VIDEO_SUFFIXES = (".mp4", ".mov", ".m4v", ".webm", ".mkv")


class MediaError(RuntimeError):
    """An ffmpeg step failed; carries the command's tail of stderr."""


@dataclass(frozen=True)
class VideoInfo:
    """What ``probe_video`` learned about a file."""

    duration: float
    width: int
    height: int
    fps: float
    has_audio: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Clip:
    """One piece of a split video: local path and its place in the source."""

    index: int
    path: Path
    start: float
    duration: float

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "path": str(self.path), "start": self.start, "duration": self.duration}


# --------------------------------------------------------------------------------------------- ffmpeg


@cache
def ffmpeg_exe() -> str:
    """Path of the ffmpeg executable to use (``FFMPEG_BINARY``, ``PATH``, then imageio-ffmpeg)."""
    explicit = os.environ.get("FFMPEG_BINARY")
    if explicit:
        return explicit
    found = shutil.which("ffmpeg")
    if found:
        return found
    try:
        import imageio_ffmpeg
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise MediaError("ffmpeg not found: install it, set FFMPEG_BINARY, or `pip install imageio-ffmpeg`") from exc
    return str(imageio_ffmpeg.get_ffmpeg_exe())


def _run_ffmpeg(args: Sequence[str], *, timeout: float = 600, check: bool = True) -> subprocess.CompletedProcess[bytes]:
    cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", *args]
    proc = subprocess.run(cmd, capture_output=True, timeout=timeout, check=False)
    if check and proc.returncode != 0:
        tail = proc.stderr.decode("utf-8", "replace").strip().splitlines()[-8:]
        raise MediaError(f"ffmpeg failed ({proc.returncode}): {' '.join(cmd)}\n" + "\n".join(tail))
    return proc


def _hms_to_seconds(text: str) -> float:
    hours, minutes, seconds = text.split(":")
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds)


_DURATION_RE = re.compile(r"Duration:\s*(\d+:\d{2}:\d{2}(?:\.\d+)?)")
_VIDEO_RE = re.compile(r"Stream #\S+.*?: Video: (?P<rest>.*)")
_SIZE_RE = re.compile(r"[\s,](\d{2,5})x(\d{2,5})[\s,\[]")
_FPS_RE = re.compile(r"([\d.]+)\s*(?:fps|tbr)")
_TIME_RE = re.compile(r"time=\s*(\d+:\d{2}:\d{2}(?:\.\d+)?)")


def probe_video(path: PathLike) -> VideoInfo:
    """Duration (s), size, frame rate and audio presence of a local video file.

    Reads ffmpeg's header report; when the container has no duration (some streamed WebM),
    decodes the video once to measure it.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(path)
    report = _run_ffmpeg(["-i", str(path)], check=False).stderr.decode("utf-8", "replace")
    video_line = next((m.group("rest") for m in map(_VIDEO_RE.search, report.splitlines()) if m), None)
    if video_line is None:
        raise MediaError(f"{path} has no video stream:\n{report[-800:]}")
    size = _SIZE_RE.search(video_line + " ")
    fps = _FPS_RE.search(video_line)
    duration_match = _DURATION_RE.search(report)
    if duration_match:
        duration = _hms_to_seconds(duration_match.group(1))
    else:
        decoded = _run_ffmpeg(["-i", str(path), "-map", "0:v:0", "-f", "null", "-"]).stderr.decode("utf-8", "replace")
        times = _TIME_RE.findall(decoded)
        if not times:
            raise MediaError(f"could not measure the duration of {path}")
        duration = _hms_to_seconds(times[-1])
    return VideoInfo(
        duration=round(duration, 3),
        width=int(size.group(1)) if size else 0,
        height=int(size.group(2)) if size else 0,
        fps=float(fps.group(1)) if fps else 0.0,
        has_audio=bool(re.search(r"Stream #\S+.*?: Audio:", report)),
    )


# ------------------------------------------------------------------------------------ split / stitch


def plan_clips(duration: float, clip_seconds: float, min_clip_seconds: float = 1.0) -> list[tuple[float, float]]:
    """Cut ``[0, duration)`` into ``(start, end)`` pieces of ``clip_seconds``.

    A remainder shorter than ``min_clip_seconds`` is merged into the previous clip instead
    of becoming a sliver the API would reject (10 s in 4.5 s clips -> 4.5 + 5.5, not
    4.5 + 4.5 + 1.0 when the minimum is above 1 s).
    """
    if duration <= 0:
        raise ValueError(f"duration must be positive, got {duration}")
    if clip_seconds <= 0:
        raise ValueError(f"clip_seconds must be positive, got {clip_seconds}")
    count = max(1, math.ceil(duration / clip_seconds - 1e-6))
    if count > 1 and duration - (count - 1) * clip_seconds < min_clip_seconds:
        count -= 1
    bounds = [round(float(i * clip_seconds), 3) for i in range(count)] + [round(float(duration), 3)]
    return list(itertools.pairwise(bounds))


def _even_scale_filter(max_width: int | None) -> str:
    if max_width:
        return f"scale='min({max_width},iw)':-2,setsar=1"
    return "scale=trunc(iw/2)*2:trunc(ih/2)*2,setsar=1"


def split_video(
    source: PathLike,
    dest_dir: PathLike,
    clip_seconds: float,
    *,
    min_clip_seconds: float = 1.0,
    prefix: str = "clip",
    max_width: int | None = None,
) -> list[Clip]:
    """Split ``source`` into H.264 clips of about ``clip_seconds`` in ``dest_dir``.

    One ffmpeg pass: keyframes are forced at the cut points so every clip starts exactly
    where the plan says. Audio is dropped (video-to-video models ignore it; ``stitch_videos``
    can put the original soundtrack back). Returns the clips in order, with measured durations.
    """
    source = Path(source)
    dest = Path(dest_dir)
    dest.mkdir(parents=True, exist_ok=True)
    info = probe_video(source)
    plan = plan_clips(info.duration, clip_seconds, min_clip_seconds)
    cuts = ",".join(f"{start:.3f}" for start, _ in plan[1:])
    pattern = dest / f"{prefix}_%03d.mp4"
    for stale in dest.glob(f"{prefix}_*.mp4"):
        stale.unlink()
    args = ["-y", "-i", str(source), "-map", "0:v:0", "-an", "-vf", _even_scale_filter(max_width)]
    args += ["-c:v", "libx264", "-preset", "veryfast", "-crf", "20", "-pix_fmt", "yuv420p"]
    if cuts:
        args += ["-force_key_frames", cuts, "-f", "segment", "-segment_times", cuts]
        args += ["-reset_timestamps", "1", "-segment_format", "mp4", str(pattern)]
    else:
        args += ["-movflags", "+faststart", str(dest / f"{prefix}_000.mp4")]
    _run_ffmpeg(args)
    produced = sorted(dest.glob(f"{prefix}_*.mp4"))
    if len(produced) != len(plan):
        raise MediaError(f"expected {len(plan)} clips from {source}, ffmpeg wrote {len(produced)}")
    return [
        Clip(index=i, path=p, start=start, duration=probe_video(p).duration)
        for i, (p, (start, _end)) in enumerate(zip(produced, plan, strict=True))
    ]


def stitch_videos(
    clips: Sequence[PathLike],
    dest: PathLike,
    *,
    audio_from: PathLike | None = None,
    size: tuple[int, int] | None = None,
    fps: float | None = None,
) -> Path:
    """Concatenate ``clips`` into one H.264 MP4 at ``dest``.

    Renders may come back at another size or frame rate than the source: every clip is
    scaled (letterboxed) to ``size`` and resampled to ``fps``, both defaulting to the first
    clip's. ``audio_from`` (e.g. the source video) puts that file's first audio track under
    the result, cut to the video's length; a file without audio is fine.
    """
    if not clips:
        raise ValueError("no clips to stitch")
    first = probe_video(clips[0])
    width, height = size or (first.width, first.height)
    rate = fps or first.fps or 24.0
    width, height = width - width % 2, height - height % 2
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    inputs: list[str] = []
    for clip in clips:
        inputs += ["-i", str(clip)]
    chains = [
        f"[{i}:v:0]scale={width}:{height}:force_original_aspect_ratio=decrease,"
        f"pad={width}:{height}:(ow-iw)/2:(oh-ih)/2,setsar=1,fps={rate:g},format=yuv420p[v{i}]"
        for i in range(len(clips))
    ]
    joined = "".join(f"[v{i}]" for i in range(len(clips)))
    graph = ";".join([*chains, f"{joined}concat=n={len(clips)}:v=1:a=0[outv]"])
    maps = ["-map", "[outv]"]
    if audio_from is not None and probe_video(audio_from).has_audio:
        # the audio input goes last so the clips keep input indexes 0..n-1
        inputs += ["-i", str(audio_from)]
        maps += ["-map", f"{len(clips)}:a:0", "-c:a", "aac", "-b:a", "128k", "-shortest"]
    args = ["-y", *inputs, "-filter_complex", graph, *maps]
    args += ["-c:v", "libx264", "-preset", "veryfast", "-crf", "20", "-movflags", "+faststart", str(dest)]
    _run_ffmpeg(args)
    return dest


# ------------------------------------------------------------------------------------------- frames


def sample_times(duration: float, count: int) -> list[float]:
    """``count`` instants spread over a clip, each at the middle of its slice of ``duration``."""
    if count < 1:
        raise ValueError("count must be at least 1")
    return [round((i + 0.5) * duration / count, 3) for i in range(count)]


def _clamp_time(at: float, duration: float) -> float:
    # the last frame starts about one frame before the end: stay clear of it
    return max(0.0, min(at, duration - 0.1))


def extract_frame(video: PathLike, dest: PathLike, at: float | None = None) -> Path:
    """Write the frame at ``at`` seconds (default: the middle) of ``video`` as an image (PNG/JPEG by suffix)."""
    duration = probe_video(video).duration
    at = duration / 2 if at is None else _clamp_time(at, duration)
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    _run_ffmpeg(["-y", "-ss", f"{at:.3f}", "-i", str(video), "-frames:v", "1", "-update", "1", str(dest)])
    if not dest.is_file() or dest.stat().st_size == 0:
        raise MediaError(f"no frame at {at:.3f}s in {video}")
    return dest


def read_frame(video: PathLike, at: float, size: tuple[int, int] = (160, 120), pix_fmt: str = "rgb24") -> bytes:
    """The frame at ``at`` seconds, scaled to ``size``, as raw pixels (``rgb24``: 3 bytes a pixel, ``gray``: 1)."""
    width, height = size
    per_pixel = {"rgb24": 3, "gray": 1}[pix_fmt]
    seek = ["-ss", f"{max(at, 0.0):.3f}", "-i", str(video), "-frames:v", "1"]
    proc = _run_ffmpeg([*seek, "-vf", f"scale={width}:{height}", "-pix_fmt", pix_fmt, "-f", "rawvideo", "-"])
    if len(proc.stdout) != width * height * per_pixel:
        raise MediaError(f"no frame at {at:.3f}s in {video} (got {len(proc.stdout)} bytes)")
    return proc.stdout


def frame_difference(video_a: PathLike, video_b: PathLike, at: float, at_b: float | None = None) -> float:
    """Mean absolute difference (0-255) between two frames, compared as 160x120 RGB.

    Same video at two instants measures motion; two videos at one instant measure how much a
    render changed its source (a re-encode of the same video scores about 1; a restyle, tens).
    """
    a = read_frame(video_a, at)
    b = read_frame(video_b, at if at_b is None else at_b)
    return sum(abs(x - y) for x, y in zip(a, b, strict=True)) / len(a)


def frame_png(video: PathLike, at: float, width: int, duration: float | None = None) -> bytes:
    """The frame at ``at`` seconds as PNG bytes, ``width`` wide (kept clear of the end of ``duration``)."""
    at = at if duration is None else _clamp_time(at, duration)
    seek = ["-ss", f"{max(at, 0.0):.3f}", "-i", str(video), "-frames:v", "1"]
    proc = _run_ffmpeg([*seek, "-vf", f"scale={width}:-2", "-f", "image2pipe", "-c:v", "png", "-"])
    if not proc.stdout:
        raise MediaError(f"no frame at {at:.3f}s in {video}")
    return proc.stdout


# ----------------------------------------------------------------------------------------- storage


def slugify(text: str, fallback: str = "video") -> str:
    """A name safe in paths, URLs and task labels: ``"My Clip (1).MOV"`` -> ``"my-clip-1-mov"``."""
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return slug[:60] or fallback


def download_from_storage(src: ObjectStoragePath, dest_dir: PathLike) -> Path:
    """Copy one object to a local file in ``dest_dir`` (same base name) and return its path."""
    local = Path(dest_dir) / src.name
    local.parent.mkdir(parents=True, exist_ok=True)
    with src.open("rb") as fin, open(local, "wb") as fout:
        shutil.copyfileobj(fin, fout, 1024 * 1024)
    return local


def upload_to_storage(local: PathLike, dest: ObjectStoragePath) -> ObjectStoragePath:
    """Copy a local file to ``dest`` (overwriting), creating parent "folders" where that means something."""
    with contextlib.suppress(NotImplementedError, OSError):  # object stores have no folders
        dest.parent.mkdir(parents=True, exist_ok=True)
    with open(local, "rb") as fin, dest.open("wb") as fout:
        shutil.copyfileobj(fin, fout, 1024 * 1024)
    return dest


def remove_storage_prefix(prefix: ObjectStoragePath, keep: Collection[str] = ()) -> int:
    """Delete everything under ``prefix`` (a rerun's leftovers); returns how many files went.

    Files at the locations in ``keep``, and files named after them plus a suffix (a render's
    ``.comet.json`` sidecar), stay.
    """
    if not prefix.exists():
        return 0
    kept = {type(prefix)(location).path for location in keep}
    files = [p for p in prefix.rglob("*") if p.is_file()]
    files = [p for p in files if not any(p.path == k or p.path.startswith(k + ".") for k in kept)]
    for path in files:
        path.unlink()
    if not kept:
        with contextlib.suppress(NotImplementedError, OSError):  # object stores: nothing left to remove
            prefix.rmdir(recursive=True)
    return len(files)


def storage_identity(path: ObjectStoragePath) -> str:
    """What changes when another file is put at ``path``: its ETag on object stores, its size and times locally."""
    try:
        return str(path.fs.ukey(path.path))
    except (NotImplementedError, AttributeError):
        info = path.stat()
        return f"{info.get('size')}:{info.get('mtime') or info.get('LastModified') or info.get('ETag')}"


def scratch_dir(prefix: str = "runway-media-") -> tempfile.TemporaryDirectory[str]:
    """A local working directory for one task, removed when the ``with`` block ends."""
    return tempfile.TemporaryDirectory(prefix=prefix)
