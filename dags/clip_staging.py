"""Cut a source video into clips and stage them where the API fetches them; keep them when unchanged.

A staged clip's ``location`` is what the restyle task is handed: its public URL through
``public_url_template``, else its place under ``staging_root`` (object storage: the
provider sends Runway a signed URL; a local file, official route only: a ``data:`` URI).

Staging a clip again changes what the API's HEAD request sees (a new ETag / Last-Modified),
and the provider then counts every render stored for that clip as made from other inputs,
to be paid for again. So the clips staged earlier from the same source file, with the same
settings, are kept as they are; a new source behind the same path (a re-delivered day), or
other clip settings, replace them.

What was staged is recorded in ``<storage_root>/clips/YYYY-MM-DD/<video>.json``, not under
``staging_root``, which may be public. Called by the media pipeline's ``split_into_clips`` task.
"""

from __future__ import annotations

import contextlib
import json
import os
from typing import Any

__all__ = ["STAGING_SETTINGS", "stage_video"]

# The settings that change the staged clips or their URLs.
STAGING_SETTINGS = ("clip_seconds", "min_clip_seconds", "max_width", "public_url_template")


def stage_video(cfg: dict[str, Any], video: dict[str, Any]) -> dict[str, Any]:
    """``video`` plus its ``info``, ``clip_format`` and staged ``clips`` (name, start, duration, location)."""
    from airflow.sdk import ObjectStoragePath
    from media_utils import remove_storage_prefix, storage_identity

    date, video_id = cfg["date"], video["video_id"]
    staging = ObjectStoragePath(cfg["staging_root"]) / date / video_id
    source = ObjectStoragePath(video["source"])
    index = ObjectStoragePath(cfg["storage_root"]) / "clips" / date / f"{video_id}.json"
    made_from = {"source": video["source"], "identity": storage_identity(source)}
    made_from.update({k: cfg[k] for k in STAGING_SETTINGS})
    if not cfg["public_url_template"]:  # the clips' locations are then under staging_root itself
        made_from["staging_root"] = cfg["staging_root"]
    made_from = json.loads(json.dumps(made_from))
    earlier = json.loads(index.read_text()) if index.exists() else {}
    if earlier.get("made_from") == made_from and all(
        (staging / f"{clip['name']}.mp4").exists() for clip in earlier["video"]["clips"]
    ):
        print(f"{video_id}: its {len(earlier['video']['clips'])} clip(s) are staged already, kept as they are")
        # records written before clips could be handed over as storage locations call it "url"
        clips = [{**clip, "location": clip.get("location") or clip["url"]} for clip in earlier["video"]["clips"]]
        return {**video, **earlier["video"], "clips": clips}
    # the record goes first, so a staging cut short is never taken for a complete one
    if index.exists():
        index.unlink()
    remove_storage_prefix(staging)
    result = _split_and_upload(cfg, video, source)
    with contextlib.suppress(NotImplementedError, OSError):  # object stores have no folders
        index.parent.mkdir(parents=True, exist_ok=True)
    index.write_text(json.dumps({"made_from": made_from, "video": result}))
    return {**video, **result}


def _split_and_upload(cfg: dict[str, Any], video: dict[str, Any], source: Any) -> dict[str, Any]:
    from airflow.sdk import ObjectStoragePath
    from media_utils import download_from_storage, probe_video, scratch_dir, split_video, upload_to_storage

    date, video_id = cfg["date"], video["video_id"]
    with scratch_dir() as tmp:
        local = download_from_storage(source, tmp)
        info = probe_video(local)
        clips = split_video(
            local,
            os.path.join(tmp, "clips"),
            float(cfg["clip_seconds"]),
            min_clip_seconds=float(cfg["min_clip_seconds"]),
            max_width=cfg["max_width"],
        )
        staged = []
        template = cfg["public_url_template"]
        for clip in clips:
            key = f"{date}/{video_id}/{clip.path.name}"
            upload_to_storage(clip.path, ObjectStoragePath(cfg["staging_root"]) / key)
            staged.append(
                {
                    "index": clip.index,
                    "name": clip.path.stem,
                    "start": clip.start,
                    "duration": clip.duration,
                    "location": template.format(key=key) if template else f"{cfg['staging_root']}/{key}",
                }
            )
        clip_info = probe_video(clips[0].path)
    print(f"{video_id}: {info.duration:.1f} s {info.width}x{info.height} -> {len(staged)} clip(s)")
    # renders may come back at another size: stitch_style brings them back to the clips' size
    clip_format = {"width": clip_info.width, "height": clip_info.height, "fps": info.fps}
    return {"info": info.to_dict(), "clip_format": clip_format, "clips": staged}
