"""The official route's render (``gen4_aleph``): the look of the first reference image, and ``seed``.

With a reference image the clip is redrawn in that image's palette (its dominant colours,
no dithering: a posterized "restyle to match this picture"); prompt style keywords still
apply first. ``seed`` drives a grain pattern, so the same inputs and seed give the same bytes
and another seed another render. ``ratio`` sets the output's aspect (at the source's height).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from comet_provider.testing.render import RenderOutput, build_filter, encode_render, ffmpeg_exe

#: Colours kept from the reference image.
PALETTE_COLOURS = 8
_RATIO = re.compile(r"([1-9][0-9]*):([1-9][0-9]*)")
# ffmpeg's noise seed is a 31-bit int: the 32nd bit of Runway's seed moves the grain strength.
_SEED_BITS = 31


def seed_filter(seed: int) -> str:
    """Temporal grain fixed by ``seed`` (0..4294967295); distinct seeds give distinct grain."""
    strength = 12 + (seed >> _SEED_BITS)
    return f"noise=alls={strength}:allf=t+u:all_seed={seed & ((1 << _SEED_BITS) - 1)}"


def ratio_filter(ratio: str | None) -> str:
    """Scale to ``W:H``'s aspect at the current height (square pixels); "" without a ratio."""
    match = _RATIO.fullmatch(ratio or "")
    if match is None:
        return ""
    width, height = int(match.group(1)), int(match.group(2))
    return f",scale='max(2,trunc(ih*{width}/{height}/2)*2)':ih,setsar=1"


def official_graph(prompt: str, *, seed: int, ratio: str | None, reference: bool) -> str:
    """The ``-filter_complex`` graph: input 0 the clip, input 1 (``reference``) the style image; out ``[out]``."""
    styled = build_filter(prompt, default_style=not reference)
    head = f"[0:v]{styled},{seed_filter(seed)}"
    if not reference:
        return f"{head}{ratio_filter(ratio)}[out]"
    palette = f"[1:v]scale=64:64:flags=neighbor,palettegen=max_colors={PALETTE_COLOURS}:reserve_transparent=0[pal]"
    return f"{head}[v];{palette};[v][pal]paletteuse=dither=none{ratio_filter(ratio)}[out]"


async def render_official(
    source: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    name: str,
    prompt: str,
    *,
    seed: int,
    reference: Path | None = None,
    ratio: str | None = None,
    timeout: float = 300.0,
) -> RenderOutput:
    """Render ``source`` into ``out_dir/<name>.mp4`` (+ stills) in the reference's palette with ``seed``'s grain."""
    args = [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-nostdin", "-y", "-i", str(source)]
    if reference is not None:
        args += ["-i", str(reference)]
    graph = official_graph(prompt, seed=seed, ratio=ratio, reference=reference is not None)
    args += ["-filter_complex", graph, "-map", "[out]"]
    # One encoder thread: x264's output depends on its thread count, and the same seed must give the same bytes.
    return await encode_render(args, out_dir, name, timeout=timeout, encode=["-threads", "1"])
