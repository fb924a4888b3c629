"""The media pipeline's contact sheet: the original and each style of a video, frame by frame.

A PNG grid, one row per version, every row sampled at the same instants, so each style
lines up with the original above it. A row restyled to match a reference image shows that
image under its label. Drawn with Pillow (imported when drawing), frames read with ffmpeg
through ``media_utils``; called by the pipeline's ``contact_sheets`` task.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from media_utils import PathLike
    from PIL import Image

__all__ = ["SheetRow", "build_contact_sheet", "publish_contact_sheet"]

GAP, LABEL_WIDTH, HEADER_HEIGHT, TITLE_HEIGHT = 8, 150, 28, 36


@dataclass(frozen=True)
class SheetRow:
    """One row: its ``label`` (the style's name), its ``video``, and the ``reference`` image it was matched to."""

    label: str
    video: PathLike
    reference: PathLike | None = None


def _as_row(row: SheetRow | tuple[str, PathLike]) -> SheetRow:
    return row if isinstance(row, SheetRow) else SheetRow(*row)


def build_contact_sheet(
    rows: Sequence[SheetRow | tuple[str, PathLike]],
    dest: PathLike,
    *,
    columns: int = 4,
    thumb_width: int = 240,
    title: str | None = None,
) -> Path:
    """Draw a PNG grid: one row per :class:`SheetRow` (or ``(label, video)``), ``columns`` frames each.

    Every row is sampled at the same instants (spread over the first video), so the first
    row (typically the original) lines up with each restyled version below it. A row with a
    ``reference`` shows "reference:" and a thumbnail of that image under its label.
    """
    from media_utils import frame_png, probe_video, sample_times
    from PIL import Image, ImageDraw, ImageFont

    sheet_rows = [_as_row(row) for row in rows]
    if not sheet_rows:
        raise ValueError("no rows for the contact sheet")
    times = sample_times(probe_video(sheet_rows[0].video).duration, columns)
    font = ImageFont.load_default(size=16)
    small = ImageFont.load_default(size=12)
    thumbs: list[list[Image.Image]] = []
    for row in sheet_rows:
        duration = probe_video(row.video).duration
        frames = []
        for at in times:
            with Image.open(io.BytesIO(frame_png(row.video, at, thumb_width, duration))) as img:
                frames.append(img.convert("RGB"))
        thumbs.append(frames)
    thumb_h = max(img.height for frames in thumbs for img in frames)
    title_h = TITLE_HEIGHT if title else 0
    width = LABEL_WIDTH + columns * (thumb_width + GAP) + GAP
    height = title_h + HEADER_HEIGHT + len(sheet_rows) * (thumb_h + GAP) + GAP
    sheet = Image.new("RGB", (width, height), (24, 24, 28))
    draw = ImageDraw.Draw(sheet)
    if title:
        draw.text((GAP, 8), title, fill=(240, 240, 240), font=font)
    for c, at in enumerate(times):
        x = LABEL_WIDTH + GAP + c * (thumb_width + GAP)
        draw.text((x, title_h + 6), f"t = {at:.1f} s", fill=(170, 170, 180), font=small)
    for r, (row, frames) in enumerate(zip(sheet_rows, thumbs, strict=True)):
        y = title_h + HEADER_HEIGHT + r * (thumb_h + GAP)
        if row.reference is None:
            draw.text((GAP, y + thumb_h // 2 - 8), row.label[:18], fill=(240, 240, 240), font=font)
        else:
            draw.text((GAP, y), row.label[:18], fill=(240, 240, 240), font=font)
            draw.text((GAP, y + 20), "reference:", fill=(170, 170, 180), font=small)
            _paste_reference(sheet, row.reference, (GAP, y + 36), (LABEL_WIDTH - 2 * GAP, thumb_h - 36))
        for c, img in enumerate(frames):
            sheet.paste(img, (LABEL_WIDTH + GAP + c * (thumb_width + GAP), y))
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(dest, format="PNG")
    return dest


def _paste_reference(sheet: Image.Image, image: PathLike, at: tuple[int, int], box: tuple[int, int]) -> None:
    """The reference image, scaled to fit ``box``, at ``at``."""
    from PIL import Image

    if box[0] < 8 or box[1] < 8:  # thumbnails too small to show it under the label
        return
    with Image.open(image) as img:
        thumb = img.convert("RGB")
    thumb.thumbnail(box)
    sheet.paste(thumb, at)


def publish_contact_sheet(cfg: dict[str, Any], video: dict[str, Any], outputs: Sequence[dict[str, Any]]) -> str:
    """Draw ``video``'s sheet (the original, then each stitched style) into ``published/YYYY-MM-DD/<video>/``."""
    import os

    from airflow.sdk import ObjectStoragePath
    from media_utils import download_from_storage, scratch_dir, upload_to_storage

    with scratch_dir() as tmp:
        rows = [SheetRow("original", download_from_storage(ObjectStoragePath(video["source"]), tmp + "/src"))]
        for i, out in enumerate(outputs):
            styled = download_from_storage(ObjectStoragePath(out["video"]), f"{tmp}/styled{i}")
            rows.append(SheetRow(out["style"], styled, _reference_copy(out.get("references"), f"{tmp}/ref{i}")))
        sheet = build_contact_sheet(
            rows,
            os.path.join(tmp, "contact-sheet.png"),
            title=f"{video['video_id']} - {cfg['date']} - Runway restyles",
        )
        dest = ObjectStoragePath(cfg["storage_root"]) / "published" / cfg["date"] / video["video_id"]
        return str(upload_to_storage(sheet, dest / sheet.name))


def _reference_copy(references: Sequence[str] | None, dest_dir: str) -> Path | None:
    """A local copy of a style's first reference image (URL, storage location or path), None if it has none."""
    if not references:
        return None
    from airflow.sdk import ObjectStoragePath
    from media_utils import download_from_storage
    from pipeline_settings import as_uri

    try:
        return download_from_storage(ObjectStoragePath(as_uri(references[0])), dest_dir)
    except Exception as exc:  # the sheet is for people: a missing thumbnail is no reason to fail the run
        print(f"WARNING: could not fetch the reference image {references[0].split('?')[0]!r} ({type(exc).__name__})")
        return None
