"""ffmpeg-based "restyling" for the CometAPI emulator, and a sample-video maker.

Only the standard library and ``imageio_ffmpeg`` (the packaged ffmpeg binary) are
used, so pipelines and demos can import :func:`make_sample_video` cheaply.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import re
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "STYLES",
    "RenderError",
    "RenderOutput",
    "build_filter",
    "encode_render",
    "ffmpeg_exe",
    "make_placeholder",
    "make_sample_video",
    "render_video",
    "styles_for_prompt",
]

# Keyword -> style. Matching is on whole words of the lower-cased prompt (phrases allowed).
_KEYWORDS: dict[str, tuple[str, ...]] = {
    "pixelate": ("pixel", "pixelated", "pixelate", "pixel art", "pixel-art", "8-bit", "8 bit", "8bit"),
    "blur": ("blur", "blurry", "blurred", "dream", "dreamy", "dreamlike"),
    "sketch": ("sketch", "edge", "edges", "pencil", "drawing"),
    "neon": ("neon", "cyberpunk"),
    "sepia": ("sepia", "vintage"),
    "grayscale": (
        "gray",
        "grey",
        "grayscale",
        "greyscale",
        "noir",
        "black and white",
        "black & white",
        "monochrome",
    ),
    "invert": ("invert", "inverted", "negative"),
}
# Order in which matched styles are chained; "default" applies when nothing matches.
STYLES: tuple[str, ...] = (*_KEYWORDS, "default")
_PATTERNS = {
    style: re.compile(r"(?<![a-z0-9])(" + "|".join(re.escape(w) for w in words) + r")(?![a-z0-9])")
    for style, words in _KEYWORDS.items()
}
_TAG = re.compile(r"\[[^\]]*\]")

# Errors from ffmpeg that mean the input itself is unusable (not our filter graph).
_INPUT_ERRORS = (
    "invalid data found when processing input",
    "moov atom not found",
    "does not contain any stream",
    "matches no streams",
    "error opening input",
    "could not find codec parameters",
    "end of file",
    "no such file or directory",
)


class RenderError(Exception):
    """A render failed. ``code`` is a Runway failure code, ``reason`` human text."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(f"{code}: {reason}")
        self.code = code
        self.reason = reason


_placeholder_bytes: tuple[bytes, bytes, bytes] | None = None


@dataclass(frozen=True)
class RenderOutput:
    video: Path
    poster: Path
    last_frame: Path


@functools.lru_cache(maxsize=1)
def ffmpeg_exe() -> str:
    """Path of the ffmpeg binary bundled with ``imageio-ffmpeg`` (or ``$IMAGEIO_FFMPEG_EXE``)."""
    import imageio_ffmpeg

    return str(imageio_ffmpeg.get_ffmpeg_exe())


def styles_for_prompt(prompt: str) -> list[str]:
    """Style names selected by keywords in ``prompt`` (``["default"]`` when none match)."""
    text = _TAG.sub(" ", prompt.lower())
    found = [style for style, pattern in _PATTERNS.items() if pattern.search(text)]
    return found or ["default"]


def _clamp(value: float, low: float, high: float) -> float:
    return max(low, min(high, value))


def _style_filter(style: str, strength: float) -> str:
    s = strength
    if style == "pixelate":
        block = round(4 + 12 * s)
        return (
            f"scale='max(2,trunc(iw/{block}))':'max(2,trunc(ih/{block}))':flags=area,"
            f"scale=iw*{block}:ih*{block}:flags=neighbor"
        )
    if style == "blur":
        radius = round(3 + 9 * s)
        return (
            f"boxblur=luma_radius='min({radius},min(w,h)/4)':luma_power=2:"
            f"chroma_radius='min({radius},min(cw,ch)/4)':chroma_power=2,"
            "eq=brightness=0.06:saturation=1.3"
        )
    if style == "sketch":
        return "edgedetect=low=0.08:high=0.3,negate"
    if style == "neon":
        hue = round(90 + 120 * s)
        return f"eq=contrast=1.4:saturation=3,hue=h={hue}:s=1.6"
    if style == "sepia":
        return "colorchannelmixer=.393:.769:.189:0:.349:.686:.168:0:.272:.534:.131"
    if style == "grayscale":
        return f"hue=s=0,eq=contrast={1 + 0.4 * s:.2f}"
    if style == "invert":
        return "negate"
    # Default: posterize (coarse colour levels) plus a hue shift.
    step = round(32 + 48 * s)
    hue = round(30 + 60 * s)
    return (
        f"lutrgb=r='trunc(val/{step})*{step}':g='trunc(val/{step})*{step}':b='trunc(val/{step})*{step}',"
        f"hue=h={hue}:s=1.5,eq=contrast=1.2"
    )


def build_filter(prompt: str, strength: float = 0.5, flip: bool = False, *, default_style: bool = True) -> str:
    """The ffmpeg ``-vf`` graph for a prompt; ``strength`` is ``structure_transformation`` (0..1).

    ``default_style=False``: a prompt without style keywords gets no style (another effect leads)."""
    s = _clamp(float(strength), 0.0, 1.0)
    styles = styles_for_prompt(prompt)
    if not default_style:
        styles = [style for style in styles if style != "default"]
    parts = [_style_filter(style, s) for style in styles]
    if flip:
        parts.append("hflip")
    # libx264 with yuv420p needs even dimensions whatever the styles did.
    parts.append("scale=trunc(iw/2)*2:trunc(ih/2)*2")
    return ",".join(parts)


def _nonempty(path: Path) -> bool:
    # A single stat: cheap enough to do on the event loop.
    try:
        return path.stat().st_size > 0
    except OSError:
        return False


def _stderr_tail(stderr: bytes, lines: int = 3) -> str:
    text = stderr.decode("utf-8", "replace").strip().splitlines()
    return " | ".join(line.strip() for line in text[-lines:]) or "no output"


async def _run(args: Sequence[str], timeout: float) -> tuple[int, bytes]:
    proc = await asyncio.create_subprocess_exec(
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        _, stderr = await asyncio.wait_for(proc.communicate(), timeout)
    except BaseException:
        # Cancelled (reset/stop) or timed out: never leave ffmpeg running.
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        with contextlib.suppress(Exception):
            await asyncio.shield(proc.wait())
        raise
    return proc.returncode or 0, stderr


def _encode_args() -> list[str]:
    return ["-an", "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p", "-movflags", "+faststart"]


async def _frames(video: Path, poster: Path, last_frame: Path, timeout: float) -> None:
    ffmpeg = ffmpeg_exe()
    base = [ffmpeg, "-hide_banner", "-loglevel", "error", "-nostdin", "-y"]
    rc, err = await _run([*base, "-i", str(video), "-frames:v", "1", "-q:v", "3", str(poster)], timeout)
    if rc != 0:
        raise RenderError("INTERNAL.BAD_OUTPUT.CODE01", f"could not extract poster: {_stderr_tail(err)}")
    # Seek near the end and keep overwriting one image: what remains is the last frame.
    rc, err = await _run(
        [*base, "-sseof", "-1", "-i", str(video), "-update", "1", "-q:v", "3", str(last_frame)], timeout
    )
    if rc != 0 or not _nonempty(last_frame):
        raise RenderError("INTERNAL.BAD_OUTPUT.CODE01", f"could not extract last frame: {_stderr_tail(err)}")


async def render_video(
    source: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    name: str,
    prompt: str,
    options: Mapping[str, Any] | None = None,
    *,
    timeout: float = 300.0,
) -> RenderOutput:
    """Restyle ``source`` into ``out_dir/<name>.mp4`` (+ ``.poster.jpg``, ``.last_frame.jpg``).

    Raises :class:`RenderError` with ``ASSET.INVALID`` when the source cannot be decoded.
    """
    opts = dict(options or {})
    strength = opts.get("structure_transformation", 0.5)
    if not isinstance(strength, (int, float)) or isinstance(strength, bool):
        strength = 0.5
    args = [
        ffmpeg_exe(),
        "-hide_banner",
        "-loglevel",
        "error",
        "-nostdin",
        "-y",
        "-i",
        str(source),
        "-map",
        "0:v:0",
        "-vf",
        build_filter(prompt, float(strength), bool(opts.get("flip", False))),
    ]
    seconds = opts.get("seconds")
    if isinstance(seconds, (int, float)) and not isinstance(seconds, bool) and seconds > 0:
        args += ["-t", f"{float(seconds):g}"]
    return await encode_render(args, out_dir, name, timeout=timeout)


async def encode_render(
    args: Sequence[str],
    out_dir: str | os.PathLike[str],
    name: str,
    *,
    timeout: float = 300.0,
    encode: Sequence[str] = (),
) -> RenderOutput:
    """Run ffmpeg ``args`` (inputs and filters) into ``out_dir/<name>.mp4``, then its poster and last frame.

    ``encode`` adds output options. Raises :class:`RenderError`: ``ASSET.INVALID`` when an input
    cannot be decoded, ``INTERNAL.BAD_OUTPUT.CODE01`` for anything else."""
    out = Path(out_dir)
    video = out / f"{name}.mp4"
    partial = out / f"{name}.partial.mp4"
    rc, err = await _run([*args, *_encode_args(), *encode, "-f", "mp4", str(partial)], timeout)
    if rc != 0:
        partial.unlink(missing_ok=True)
        tail = _stderr_tail(err)
        if any(marker in tail.lower() for marker in _INPUT_ERRORS):
            raise RenderError("ASSET.INVALID", f"could not decode source video: {tail}")
        raise RenderError("INTERNAL.BAD_OUTPUT.CODE01", f"render failed: {tail}")
    if not _nonempty(partial):
        raise RenderError("ASSET.INVALID", "could not decode source video: no video frames")
    os.replace(partial, video)
    poster, last = out / f"{name}.poster.jpg", out / f"{name}.last_frame.jpg"
    await _frames(video, poster, last, timeout)
    return RenderOutput(video, poster, last)


async def make_placeholder(out_dir: str | os.PathLike[str], *, timeout: float = 60.0) -> RenderOutput:
    """A small fixed "render" (1 s, 160x120) shared by every task in ``synthetic`` mode."""
    global _placeholder_bytes
    out = Path(out_dir)
    video = out / "placeholder.mp4"
    poster, last = out / "placeholder.poster.jpg", out / "placeholder.last_frame.jpg"
    if _placeholder_bytes is not None:
        # Identical for every emulator: reuse the first one's bytes instead of running ffmpeg again.
        for path, data in zip((video, poster, last), _placeholder_bytes, strict=True):
            path.write_bytes(data)
        return RenderOutput(video, poster, last)
    partial = out / "placeholder.partial.mp4"
    args = [
        ffmpeg_exe(),
        "-hide_banner",
        "-loglevel",
        "error",
        "-nostdin",
        "-y",
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=160x120:rate=10:duration=1",
        "-vf",
        "hue=h=120:s=2",
        *_encode_args(),
        "-f",
        "mp4",
        str(partial),
    ]
    rc, err = await _run(args, timeout)
    if rc != 0:
        raise RenderError("INTERNAL.BAD_OUTPUT.CODE01", f"placeholder failed: {_stderr_tail(err)}")
    os.replace(partial, video)
    await _frames(video, poster, last, timeout)
    _placeholder_bytes = (video.read_bytes(), poster.read_bytes(), last.read_bytes())
    return RenderOutput(video, poster, last)


def make_sample_video(
    path: str | os.PathLike[str],
    seconds: float = 4,
    size: str = "320x240",
    *,
    rate: int | None = None,
    tone: bool = False,
) -> Path:
    """Write a test clip with motion (ffmpeg ``testsrc2``) to ``path``; with ``tone``, a 440 Hz AAC soundtrack.

    ``rate`` is the frame rate (25 when ``None``). A clip this function already made at ``path``
    with the same parameters (any rate when ``rate`` is ``None``) is reused; anything else there
    is replaced. The file appears atomically, so concurrent callers never see a partial clip.
    """
    target = Path(path)
    # Stamped into the clip's metadata, so that a clip made with other parameters is never reused.
    stamp = f"comet-sample seconds={seconds:g} size={size} tone={int(tone)} rate="
    wanted = stamp if rate is None else f"{stamp}{rate};"
    with contextlib.suppress(OSError):
        if wanted.encode() in target.read_bytes():
            return target
    rate = 25 if rate is None else rate
    inputs = ["-f", "lavfi", "-i", f"testsrc2=size={size}:rate={rate}:duration={seconds:g}"]
    encode = _encode_args()
    if tone:
        inputs += ["-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=44100:duration={seconds:g}"]
        encode = [arg for arg in encode if arg != "-an"] + ["-c:a", "aac", "-shortest"]
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.stem}-", suffix=".mp4", dir=target.parent)
    os.close(fd)
    command = [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-nostdin", "-y", *inputs, *encode]
    try:
        subprocess.run(
            [*command, "-metadata", f"comment={stamp}{rate};", "-f", "mp4", tmp],
            check=True,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target
