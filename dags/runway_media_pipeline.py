"""
### Daily Runway restyle pipeline

Every day, restyle the videos that arrived for that day in each configured style, stitch
them back together, and publish them with a contact sheet for people to review.

**What one run does** (for the day of its data interval, `YYYY-MM-DD` below):

1. `settings` - resolve the configuration (run params > Variable `comet_runway_pipeline` >
   defaults) and the day being processed.
2. `find_source_videos` - list `<storage_root>/incoming/YYYY-MM-DD/*.mp4` (also `.mov`,
   `.m4v`, `.webm`, `.mkv`). No videos: the run is skipped, not failed.
3. `split_into_clips` (mapped per video) - probe it and cut it into clips of
   `clip_seconds` with ffmpeg, written under `<staging_root>/YYYY-MM-DD/<video>/` where
   the API can fetch them through `public_url_template`.
4. `restyle` (mapped clips x styles) - one deferrable `RunwayVideo2VideoOperator` per clip
   and style, in the Airflow pool `runway` so a backfill cannot flood the API; each render
   is copied to `<storage_root>/renders/YYYY-MM-DD/<video>/<style>/clip_NNN.mp4`.
5. `stitch_style` (mapped per video and style) - join the clips back into
   `<storage_root>/published/YYYY-MM-DD/<video>/<style>.mp4` (with the original
   soundtrack) and a poster frame `<style>.png`.
6. `contact_sheets` - a PNG grid per video, original vs each style, at the same instants.
7. `publish` - write `published/YYYY-MM-DD/manifest.json` and emit the Asset
   `comet_runway_restyled_videos` (the QC DAG `runway_render_qc` is scheduled on it).
8. `notify` - POST the manifest summary to the HTTP connection `runway_notify`.

**Backfills and reruns.** Everything is keyed by the data interval's day, never by wall
time: `airflow backfill create --dag-id runway_media_pipeline --from-date 2025-06-01
--to-date 2025-06-07` processes each past day's folder, and rerunning a day overwrites its
clips, renders and published files instead of adding copies. A run triggered by hand
processes the day before its logical date (the last complete interval), or the `date`
param when given.

**Configuration** - an Airflow Variable `comet_runway_pipeline` holding JSON (e.g.
`AIRFLOW_VAR_COMET_RUNWAY_PIPELINE='{"storage_root": "s3://aws_default@studio/runway", ...}'`),
any key overridable per run through the params `styles`, `clip_seconds` and `date`:

- `storage_root` (default `file://$AIRFLOW_HOME/runway-media`): any `ObjectStoragePath`
  URI; `s3://aws_default@bucket/prefix` picks the connection.
- `staging_root` (default `<storage_root>/staging`): where clips are staged for the API.
- `public_url_template` (**required**): the URL the API fetches a staged file from, with
  `{key}` for its path under `staging_root`, e.g. `https://cdn.example.com/staging/{key}`.
- `styles` (pixel art, pencil sketch, neon): `{"name": "prompt", ...}`.
- `clip_seconds` (`5`) and `min_clip_seconds` (`1`): clip length sent to the API; a tail
  shorter than the minimum is merged into the last clip.
- `max_width` (`1280`): wider sources are scaled down before upload.
- `model` (`gen4`), `structure_transformation` (`0.5`): passed to Runway.
- `comet_conn_id` (`comet_default`), `poll_interval` (`10`), `render_timeout_seconds` (`1800`).
- `notify_conn_id` (`runway_notify`), `notify_endpoint` (`""`): where `notify` POSTs.
- `keep_audio` (`true`): put the source's soundtrack under the stitched videos.

The pool name comes from the environment variable `COMET_RUNWAY_POOL` (default `runway`):
create it once with `airflow pools set runway 4 "Runway renders" --include-deferred` (so a
render waiting in the triggerer keeps its slot). Media helpers live in
`media_utils.py` next to this file and are imported inside the tasks, so parsing this file
stays cheap.
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

import pendulum
from airflow.providers.http.operators.http import HttpOperator
from airflow.sdk import (
    Asset,
    CronDataIntervalTimetable,
    Param,
    dag,
    get_current_context,
    task,
)

from comet_provider.operators.runway import RunwayVideo2VideoOperator

# Also declared, identically, by runway_render_qc.py (assets are matched by name).
RESTYLED_VIDEOS = Asset(name="comet_runway_restyled_videos", group="media")
# Pools are a scheduling setting, needed when the file is parsed: environment, not a Variable.
RUNWAY_POOL = os.environ.get("COMET_RUNWAY_POOL", "runway")
SETTINGS_VARIABLE = "comet_runway_pipeline"

DEFAULT_STYLES: dict[str, str] = {
    "pixel-art": "pixelated 8-bit video game style, chunky pixels",
    "pencil-sketch": "hand-drawn pencil sketch, crisp edges on paper",
    "neon": "neon cyberpunk glow, saturated night colors",
}
DEFAULT_SETTINGS: dict[str, Any] = {
    "storage_root": None,
    "staging_root": None,
    "public_url_template": None,
    "styles": DEFAULT_STYLES,
    "clip_seconds": 5.0,
    "min_clip_seconds": 1.0,
    "max_width": 1280,
    "model": "gen4",
    "structure_transformation": 0.5,
    "comet_conn_id": "comet_default",
    "poll_interval": 10,
    "render_timeout_seconds": 1800,
    "notify_conn_id": "runway_notify",
    "notify_endpoint": "",
    "keep_audio": True,
}
SETTINGS_XCOM = "ti.xcom_pull(task_ids='settings')"
# Mapped `restyle` tasks show as "<video> · <style> · clip_NNN" in the UI.
RESTYLE_LABEL = (
    "{% set p = (task.output_path | string).rstrip('/').split('/') %}{{ p[-3] }} · {{ p[-2] }} · "
    "{{ p[-1].rsplit('.', 1)[0] }}"
)


def _as_uri(location: str) -> str:
    """A storage location as a URI: bare paths become absolute ``file://`` URIs."""
    location = location.strip()
    if "://" not in location:
        location = "file://" + os.path.abspath(os.path.expanduser(location))
    return location.rstrip("/")


@dag(
    dag_id="runway_media_pipeline",
    schedule=CronDataIntervalTimetable("@daily", timezone="UTC"),
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=2,
    doc_md=__doc__,
    tags=["comet", "runway", "media", "example"],
    default_args={"retries": 1, "retry_delay": timedelta(seconds=30)},
    params={
        "date": Param(
            None,
            type=["null", "string"],
            format="date",
            description="Process this day's folder instead of the run's data interval (YYYY-MM-DD).",
        ),
        "styles": Param(
            None,
            type=["null", "object"],
            description='Styles for this run, {"name": "prompt"}; empty = the configured ones.',
        ),
        "clip_seconds": Param(None, type=["null", "number"], minimum=1, description="Clip length for this run."),
    },
)
def runway_media_pipeline() -> None:
    @task
    def settings() -> dict[str, Any]:
        """Merge defaults, the ``comet_runway_pipeline`` Variable and the run's params."""
        from airflow.sdk import Variable
        from airflow.sdk.exceptions import AirflowFailException
        from media_utils import slugify

        context = get_current_context()
        cfg: dict[str, Any] = dict(DEFAULT_SETTINGS)
        configured = Variable.get(SETTINGS_VARIABLE, default={}, deserialize_json=True) or {}
        unknown = sorted(set(configured) - set(DEFAULT_SETTINGS))
        if unknown:
            print(f"WARNING: ignoring unknown keys in the Variable {SETTINGS_VARIABLE!r}: {unknown}")
        cfg.update({k: v for k, v in configured.items() if k in DEFAULT_SETTINGS})
        params = context["params"]
        cfg.update({k: params[k] for k in ("styles", "clip_seconds") if params.get(k)})

        home = os.environ.get("AIRFLOW_HOME", "~/airflow")
        cfg["storage_root"] = _as_uri(cfg["storage_root"] or os.path.join(home, "runway-media"))
        cfg["staging_root"] = _as_uri(cfg["staging_root"] or cfg["storage_root"] + "/staging")
        if not cfg["public_url_template"] or "{key}" not in cfg["public_url_template"]:
            raise AirflowFailException(
                f"Set 'public_url_template' in the Variable {SETTINGS_VARIABLE!r}: the public URL of a file "
                "staged under staging_root, with {key} for its path there "
                "(e.g. https://cdn.example.com/runway-staging/{key})."
            )
        if not cfg["styles"] or not isinstance(cfg["styles"], dict):
            raise AirflowFailException('styles must be a non-empty {"name": "prompt"} object')
        # style names become folder and file names: keep them path- and URL-safe
        cfg["styles"] = {slugify(name, fallback="style"): prompt for name, prompt in cfg["styles"].items()}
        interval_start = context.get("data_interval_start") or context["logical_date"]
        cfg["date"] = params.get("date") or interval_start.strftime("%Y-%m-%d")
        cfg["run_id"] = context["run_id"]
        print(f"Processing videos of {cfg['date']} from {cfg['storage_root']} in styles {list(cfg['styles'])}")
        return cfg

    @task
    def find_source_videos(cfg: dict[str, Any]) -> list[dict[str, Any]]:
        """The day's folder ``incoming/YYYY-MM-DD``; skips the run when it is empty."""
        from airflow.sdk import ObjectStoragePath
        from airflow.sdk.exceptions import AirflowSkipException
        from media_utils import VIDEO_SUFFIXES, slugify

        folder = ObjectStoragePath(cfg["storage_root"]) / "incoming" / cfg["date"]
        listing = folder.iterdir() if folder.exists() else []
        found = sorted((p for p in listing if p.suffix.lower() in VIDEO_SUFFIXES and p.is_file()), key=lambda p: p.name)
        if not found:
            raise AirflowSkipException(f"no source videos in {folder}")
        videos, seen = [], set()
        for path in found:
            video_id = slugify(path.stem)
            while video_id in seen:
                video_id += "-x"
            seen.add(video_id)
            videos.append({"video_id": video_id, "source": str(path)})
        print(f"{len(videos)} video(s) in {folder}: {[v['video_id'] for v in videos]}")
        return videos

    @task(map_index_template="{{ video_label }}")
    def split_into_clips(cfg: dict[str, Any], video: dict[str, Any]) -> dict[str, Any]:
        """Probe one video, cut it into clips and stage them where the API can fetch them."""
        from airflow.sdk import ObjectStoragePath
        from media_utils import (
            download_from_storage,
            probe_video,
            remove_storage_prefix,
            scratch_dir,
            split_video,
            upload_to_storage,
        )

        get_current_context()["video_label"] = video["video_id"]  # type: ignore[typeddict-unknown-key]
        date, video_id = cfg["date"], video["video_id"]
        staging = ObjectStoragePath(cfg["staging_root"]) / date / video_id
        # a rerun replaces the day's clips and renders of this video, never adds to them
        remove_storage_prefix(staging)
        remove_storage_prefix(ObjectStoragePath(cfg["storage_root"]) / "renders" / date / video_id)
        with scratch_dir() as tmp:
            local = download_from_storage(ObjectStoragePath(video["source"]), tmp)
            info = probe_video(local)
            clips = split_video(
                local,
                os.path.join(tmp, "clips"),
                float(cfg["clip_seconds"]),
                min_clip_seconds=float(cfg["min_clip_seconds"]),
                max_width=cfg["max_width"],
            )
            staged = []
            for clip in clips:
                key = f"{date}/{video_id}/{clip.path.name}"
                upload_to_storage(clip.path, ObjectStoragePath(cfg["staging_root"]) / key)
                staged.append(
                    {
                        "index": clip.index,
                        "name": clip.path.stem,
                        "start": clip.start,
                        "duration": clip.duration,
                        "url": cfg["public_url_template"].format(key=key),
                    }
                )
            clip_info = probe_video(clips[0].path)
        print(f"{video_id}: {info.duration:.1f} s {info.width}x{info.height} -> {len(staged)} clip(s)")
        # renders may come back at another size: stitch_style brings them back to the clips' size
        clip_format = {"width": clip_info.width, "height": clip_info.height, "fps": info.fps}
        return {**video, "info": info.to_dict(), "clip_format": clip_format, "clips": staged}

    @task
    def plan_renders(cfg: dict[str, Any], videos: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """One RunwayVideo2VideoOperator call per clip and style (its keyword arguments)."""
        renders = cfg["storage_root"] + "/renders/" + cfg["date"]
        return [
            {
                "video": clip["url"],
                "prompt": prompt,
                "model": cfg["model"],
                "structure_transformation": cfg["structure_transformation"],
                "comet_conn_id": cfg["comet_conn_id"],
                "poll_interval": cfg["poll_interval"],
                "timeout": cfg["render_timeout_seconds"],
                "output_path": f"{renders}/{video['video_id']}/{style}/{clip['name']}.mp4",
            }
            for video in videos
            for style, prompt in cfg["styles"].items()
            for clip in video["clips"]
        ]

    @task
    def group_renders(
        cfg: dict[str, Any], plan: list[dict[str, Any]], results: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        """Gather the finished clips of each (video, style), in clip order."""
        groups: dict[tuple[str, str], dict[str, Any]] = {}
        for kwargs, result in zip(plan, results, strict=True):
            *_, video_id, style, _clip = kwargs["output_path"].split("/")
            group = groups.setdefault(
                (video_id, style),
                {"video_id": video_id, "style": style, "prompt": kwargs["prompt"], "clips": [], "runway_ids": []},
            )
            group["clips"].append(result.get("output_path") or kwargs["output_path"])
            group["runway_ids"].append(result.get("task_id"))
        return list(groups.values())

    @task(map_index_template="{{ video_label }} · {{ style_label }}")
    def stitch_style(cfg: dict[str, Any], videos: list[dict[str, Any]], group: dict[str, Any]) -> dict[str, Any]:
        """Join one style's clips of one video, keep the source's soundtrack, grab a poster frame."""
        from airflow.sdk import ObjectStoragePath
        from media_utils import (
            download_from_storage,
            extract_frame,
            probe_video,
            scratch_dir,
            stitch_videos,
            upload_to_storage,
        )

        context = get_current_context()
        context["video_label"], context["style_label"] = group["video_id"], group["style"]  # type: ignore[typeddict-unknown-key]
        video = next(v for v in videos if v["video_id"] == group["video_id"])
        out_dir = ObjectStoragePath(cfg["storage_root"]) / "published" / cfg["date"] / group["video_id"]
        with scratch_dir() as tmp:
            local_clips = [
                download_from_storage(ObjectStoragePath(uri), os.path.join(tmp, f"c{i:03d}"))
                for i, uri in enumerate(group["clips"])
            ]
            source = download_from_storage(ObjectStoragePath(video["source"]), os.path.join(tmp, "src"))
            stitched = stitch_videos(
                local_clips,
                os.path.join(tmp, f"{group['style']}.mp4"),
                audio_from=source if cfg["keep_audio"] else None,
                size=(video["clip_format"]["width"], video["clip_format"]["height"]),
                fps=video["clip_format"]["fps"] or None,
            )
            poster = extract_frame(stitched, os.path.join(tmp, f"{group['style']}.png"))
            info = probe_video(stitched)
            video_uri = upload_to_storage(stitched, out_dir / stitched.name)
            poster_uri = upload_to_storage(poster, out_dir / poster.name)
        print(
            f"{group['video_id']} / {group['style']}: {len(local_clips)} clip(s) -> {video_uri} ({info.duration:.1f} s)"
        )
        return {
            "video_id": group["video_id"],
            "style": group["style"],
            "prompt": group["prompt"],
            "video": str(video_uri),
            "poster": str(poster_uri),
            "duration": info.duration,
            "runway_ids": group["runway_ids"],
        }

    @task
    def contact_sheets(
        cfg: dict[str, Any], videos: list[dict[str, Any]], stitched: list[dict[str, Any]]
    ) -> dict[str, str]:
        """A PNG per video: the original, then each style, sampled at the same instants."""
        from airflow.sdk import ObjectStoragePath
        from media_utils import build_contact_sheet, download_from_storage, scratch_dir, upload_to_storage

        sheets: dict[str, str] = {}
        for video in videos:
            outputs = [s for s in stitched if s["video_id"] == video["video_id"]]
            with scratch_dir() as tmp:
                rows = [("original", download_from_storage(ObjectStoragePath(video["source"]), tmp + "/src"))]
                rows += [
                    (s["style"], download_from_storage(ObjectStoragePath(s["video"]), tmp + "/styled")) for s in outputs
                ]
                sheet = build_contact_sheet(
                    rows,
                    os.path.join(tmp, "contact-sheet.png"),
                    title=f"{video['video_id']} - {cfg['date']} - Runway restyles",
                )
                dest = ObjectStoragePath(cfg["storage_root"]) / "published" / cfg["date"] / video["video_id"]
                sheets[video["video_id"]] = str(upload_to_storage(sheet, dest / sheet.name))
        return sheets

    @task(outlets=[RESTYLED_VIDEOS])
    def publish(
        cfg: dict[str, Any],
        videos: list[dict[str, Any]],
        stitched: list[dict[str, Any]],
        sheets: dict[str, str],
    ) -> dict[str, Any]:
        """Write the day's manifest.json and emit the Asset event the QC DAG waits for."""
        import json

        from airflow.sdk import ObjectStoragePath

        manifest = {
            "date": cfg["date"],
            "run_id": cfg["run_id"],
            "published_at": pendulum.now("UTC").isoformat(),
            "videos": [
                {
                    "video_id": v["video_id"],
                    "source": v["source"],
                    "source_info": v["info"],
                    "clips": len(v["clips"]),
                    "contact_sheet": sheets.get(v["video_id"]),
                    "styles": {
                        s["style"]: {k: s[k] for k in ("video", "poster", "duration", "prompt", "runway_ids")}
                        for s in stitched
                        if s["video_id"] == v["video_id"]
                    },
                }
                for v in videos
            ],
        }
        path = ObjectStoragePath(cfg["storage_root"]) / "published" / cfg["date"] / "manifest.json"
        path.write_text(json.dumps(manifest, indent=2))
        print(f"published {path}")
        summary = {
            "event": "comet.runway.restyled",
            "date": cfg["date"],
            "run_id": cfg["run_id"],
            "manifest": str(path),
            "videos": [
                {
                    "video_id": v["video_id"],
                    "contact_sheet": v["contact_sheet"],
                    "outputs": {style: out["video"] for style, out in v["styles"].items()},
                }
                for v in manifest["videos"]
            ],
        }
        # the event's extra tells consumers (runway_render_qc) which day and manifest are new
        get_current_context()["outlet_events"][RESTYLED_VIDEOS].extra = {
            "date": cfg["date"],
            "manifest": str(path),
            "videos": len(videos),
            "styles": list(cfg["styles"]),
        }
        return summary

    cfg = settings()
    videos = split_into_clips.partial(cfg=cfg).expand(video=find_source_videos(cfg))
    plan = plan_renders(cfg, videos)
    restyled = RunwayVideo2VideoOperator.partial(
        task_id="restyle",
        deferrable=True,
        pool=RUNWAY_POOL,
        retries=2,
        retry_delay=timedelta(minutes=1),
        retry_exponential_backoff=True,
        map_index_template=RESTYLE_LABEL,
    ).expand_kwargs(plan)
    stitched = stitch_style.partial(cfg=cfg, videos=videos).expand(group=group_renders(cfg, plan, restyled.output))
    summary = publish(cfg, videos, stitched, contact_sheets(cfg, videos, stitched))
    HttpOperator(
        task_id="notify",
        http_conn_id="{{ " + SETTINGS_XCOM + "['notify_conn_id'] }}",
        endpoint="{{ " + SETTINGS_XCOM + "['notify_endpoint'] }}",
        method="POST",
        data="{{ ti.xcom_pull(task_ids='publish') | tojson }}",
        headers={"Content-Type": "application/json"},
        log_response=True,
        retries=3,
    ).set_upstream(summary)


runway_media_pipeline()
