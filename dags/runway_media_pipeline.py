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
   `clip_seconds` with ffmpeg, staged under `<staging_root>/YYYY-MM-DD/<video>/` (kept as
   they are when the same source was already staged with the same settings).
4. `plan_renders`, `spend_plan` - one render per clip and style; before anything is
   submitted, the spend plan counts the renders to submit (and their seconds of video) and
   those reused from storage. Over `max_renders_per_run` the run fails here; over
   `approval_over_renders`, `approval_needed` lets `approve_spend` ask a person to approve
   it in the UI (Required Actions) with the plan in its body; rejected, nothing is submitted.
5. `restyle` (mapped clips x styles) - one deferrable `RunwayVideo2VideoOperator` per clip
   and style, in the Airflow pool `runway` so a backfill cannot flood the API; each render
   is copied to `<storage_root>/renders/YYYY-MM-DD/<video>/<style>/clip_NNN.mp4`, and a
   render already stored there for the same inputs is reused, not paid for again.
6. `stitch_style` (mapped per video and style) - join the clips back into
   `<storage_root>/published/YYYY-MM-DD/<video>/<style>.mp4` (with the original
   soundtrack) and a poster frame `<style>.png`.
7. `contact_sheets` - a PNG grid per video, original vs each style, at the same instants
   (a style matched to a reference image shows that image beside its row's label).
8. `publish` - write `published/YYYY-MM-DD/manifest.json` (with the spend plan and, per
   render, whether it was submitted, resumed or reused) and emit the Asset
   `comet_runway_restyled_videos` (the QC DAG `runway_render_qc` is scheduled on it).
9. `notify` - POST the manifest summary to the HTTP connection `runway_notify`.

**Backfills and reruns.** Everything is keyed by the data interval's day, never by wall
time: `airflow backfill create --dag-id runway_media_pipeline --from-date 2025-06-01
--to-date 2025-06-07` processes each past day's folder; rerunning a day reuses the renders
already stored for the same inputs and replaces the rest instead of adding copies. A run
triggered by hand processes the day before its logical date (the last complete interval),
or the `date` param when given.

**Configuration** - an Airflow Variable `comet_runway_pipeline` holding JSON (e.g.
`AIRFLOW_VAR_COMET_RUNWAY_PIPELINE='{"storage_root": "s3://aws_default@studio/runway", ...}'`),
the keys below, overridable per run through the params `styles`, `clip_seconds`,
`max_renders_per_run`, `approval_over_renders`, `force_render` and `date`:

- `storage_root` (default `file://$AIRFLOW_HOME/runway-media`): any `ObjectStoragePath`
  URI; `s3://aws_default@bucket/prefix` picks the connection.
- `staging_root` (default `<storage_root>/staging`): where clips are staged for the API.
  On object storage (`s3://...`) the provider hands Runway signed URLs of them; local
  clips reach the official route (`gen4_aleph`) as `data:` URIs, the gen4 route not at all.
- `public_url_template` (optional): a public URL to hand the API instead, with `{key}` for
  a clip's path under `staging_root`, e.g. `https://cdn.example.com/staging/{key}`.
- `styles` (pixel art, pencil sketch, neon): `{"name": "prompt", ...}`; a style may also be
  `{"prompt", "model", "references", "seed", "ratio", ...}` (the operator's arguments), e.g.
  `{"model": "gen4_aleph", "references": ["s3://.../look.png"]}` to match a reference image.
- `clip_seconds` (`5`), `min_clip_seconds` (`1`), `max_width` (`1280`): the clips sent to
  the API (a tail shorter than the minimum joins the last clip; wider sources are scaled down).
- `model` (`gen4`), `structure_transformation` (`0.5`, gen4 route only), `comet_conn_id`,
  `poll_interval` (`10`), `render_timeout_seconds` (`1800`): passed to each render.
- `notify_conn_id` (`runway_notify`), `notify_endpoint` (`""`): where `notify` POSTs;
  `keep_audio` (`true`): put the source's soundtrack under the stitched videos.
- `max_renders_per_run` (`100`), `approval_over_renders` (`50`): limits on the renders a run
  will submit (reused ones do not count); `null` = no limit. `force_render` (`false`):
  submit every render again, even one stored for the same inputs.

The pool name comes from the environment variable `COMET_RUNWAY_POOL` (default `runway`):
create it once with `airflow pools set runway 4 "Runway renders" --include-deferred` (so a
render waiting in the triggerer keeps its slot). The helper modules next to this file are
imported inside the tasks, so parsing this file stays cheap. Details: `docs/examples.md`.
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

import pendulum
from airflow.providers.http.operators.http import HttpOperator
from airflow.providers.standard.operators.hitl import ApprovalOperator
from airflow.sdk import (
    Asset,
    CronDataIntervalTimetable,
    Param,
    TriggerRule,
    dag,
    get_current_context,
    task,
)

from comet_provider.operators.runway import RunwayVideo2VideoOperator

# Also declared, identically, by runway_render_qc.py (assets are matched by name).
RESTYLED_VIDEOS = Asset(name="comet_runway_restyled_videos", group="media")
# Pools are a scheduling setting, needed when the file is parsed: environment, not a Variable.
RUNWAY_POOL = os.environ.get("COMET_RUNWAY_POOL", "runway")
SETTINGS_XCOM = "ti.xcom_pull(task_ids='settings')"
APPROVAL_XCOM = "ti.xcom_pull(task_ids='spend_plan', key='approval')"
# Mapped `restyle` tasks show as "<video> · <style> · clip_NNN" in the UI.
RESTYLE_LABEL = (
    "{% set p = (task.output_path | string).rstrip('/').split('/') %}{{ p[-3] }} · {{ p[-2] }} · "
    "{{ p[-1].rsplit('.', 1)[0] }}"
)


# What the manifest tells about each style: its prompt, model and (when it has them) reference images.
STYLE_INFO = ("prompt", "model", "references")


def _style_info(kwargs: dict[str, Any]) -> dict[str, Any]:
    return {k: kwargs[k] for k in STYLE_INFO if k in kwargs}


def _limit_param(description: str) -> Param:
    return Param(None, type=["null", "integer"], minimum=0, description=description)


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
            description='Styles for this run, {"name": "prompt" or {"prompt", "model", "references", ...}}; '
            "empty = the configured ones.",
        ),
        "clip_seconds": Param(None, type=["null", "number"], minimum=1, description="Clip length for this run."),
        "max_renders_per_run": _limit_param("Fail the run before submitting if it would submit more renders."),
        "approval_over_renders": _limit_param("Ask a person to approve the run if it would submit more renders."),
        "force_render": Param(
            None,
            type=["null", "boolean"],
            description="Submit every render again, even those already stored for the same inputs.",
        ),
    },
)
def runway_media_pipeline() -> None:
    @task
    def settings() -> dict[str, Any]:
        """Merge defaults, the ``comet_runway_pipeline`` Variable and the run's params."""
        from airflow.providers.common.compat.sdk import AirflowFailException  # Airflow 3.1 too
        from airflow.sdk import Variable
        from pipeline_settings import SETTINGS_VARIABLE, SettingsError, resolve_settings

        context = get_current_context()
        configured = Variable.get(SETTINGS_VARIABLE, default={}, deserialize_json=True) or {}
        home = os.environ.get("AIRFLOW_HOME", "~/airflow")
        try:
            cfg, unknown = resolve_settings(configured, context["params"], airflow_home=home)
        except SettingsError as exc:
            raise AirflowFailException(str(exc)) from None
        if unknown:
            print(f"WARNING: ignoring unknown keys in the Variable {SETTINGS_VARIABLE!r}: {unknown}")
        # A run triggered without a logical date (allowed by the REST API) has only run_after.
        when = context.get("data_interval_start") or context.get("logical_date") or context["dag_run"].run_after
        cfg["date"] = context["params"].get("date") or when.strftime("%Y-%m-%d")
        cfg["run_id"] = context["run_id"]
        print(f"Processing videos of {cfg['date']} from {cfg['storage_root']} in styles {list(cfg['styles'])}")
        return cfg

    @task
    def find_source_videos(cfg: dict[str, Any]) -> list[dict[str, Any]]:
        """The day's folder ``incoming/YYYY-MM-DD``; skips the run when it is empty."""
        from airflow.providers.common.compat.sdk import AirflowSkipException  # Airflow 3.1 too
        from airflow.sdk import ObjectStoragePath
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
        """Probe one video, cut it into clips and stage them where the API can fetch them.

        Clips staged earlier from the same source file with the same settings are kept as they
        are, so the renders stored for them can be reused (see ``clip_staging.py``).
        """
        from clip_staging import stage_video

        get_current_context()["video_label"] = video["video_id"]  # type: ignore[typeddict-unknown-key]
        return stage_video(cfg, video)

    @task
    def plan_renders(cfg: dict[str, Any], videos: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """One RunwayVideo2VideoOperator call per clip and style (its keyword arguments)."""
        from pipeline_settings import render_kwargs

        renders = cfg["storage_root"] + "/renders/" + cfg["date"]
        return [
            render_kwargs(cfg, style, clip["location"], f"{renders}/{video['video_id']}/{style}/{clip['name']}.mp4")
            for video in videos
            for style in cfg["styles"]
            for clip in video["clips"]
        ]

    @task(show_return_value_in_logs=False)  # the plan is logged as a table instead
    def spend_plan(cfg: dict[str, Any], videos: list[dict[str, Any]], renders: list[dict[str, Any]]) -> dict[str, Any]:
        """What the run will pay for, before anything is submitted; fails over ``max_renders_per_run``."""
        from airflow.providers.common.compat.sdk import AirflowFailException  # Airflow 3.1 too
        from pipeline_settings import SETTINGS_VARIABLE
        from spend_plan import approval_request, build_plan, cap_exceeded_message, plan_table, preview

        plan = build_plan(
            renders,
            preview(renders),
            {(v["video_id"], c["name"]): c["duration"] for v in videos for c in v["clips"]},
            date=cfg["date"],
            max_renders_per_run=cfg["max_renders_per_run"],
            approval_over_renders=cfg["approval_over_renders"],
            force_render=cfg["force_render"],
        )
        print(plan_table(plan))
        if plan["over_cap"]:
            raise AirflowFailException(cap_exceeded_message(plan, SETTINGS_VARIABLE))
        if plan["approval_required"]:
            get_current_context()["ti"].xcom_push(key="approval", value=approval_request(plan))
        return plan

    # False skips approve_spend only: restyle's trigger rule then lets it run without approval.
    @task.short_circuit(ignore_downstream_trigger_rules=False)
    def approval_needed(plan: dict[str, Any]) -> bool:
        """Whether the plan submits more renders than ``approval_over_renders``."""
        return bool(plan["approval_required"])

    @task
    def group_renders(
        cfg: dict[str, Any], plan: list[dict[str, Any]], results: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        """Gather the finished clips of each (video, style), in clip order; drop the day's other renders."""
        from airflow.sdk import ObjectStoragePath
        from media_utils import remove_storage_prefix
        from spend_plan import render_labels

        groups: dict[tuple[str, str], dict[str, Any]] = {}
        for kwargs, result in zip(plan, results, strict=True):
            video_id, style, clip = render_labels(kwargs["output_path"])
            group = groups.setdefault(
                (video_id, style),
                {"video_id": video_id, "style": style, **_style_info(kwargs), "clips": [], "renders": []},
            )
            group["clips"].append(result.get("output_path") or kwargs["output_path"])
            runway_id = result.get("runway_task_id") or result.get("task_id")
            group["renders"].append({"clip": clip, "decision": result.get("decision"), "runway_task_id": runway_id})
        # a rerun with fewer clips or styles: only this run's renders (and their sidecars) stay
        day = ObjectStoragePath(cfg["storage_root"]) / "renders" / cfg["date"]
        removed = remove_storage_prefix(day, keep=[kwargs["output_path"] for kwargs in plan])
        if removed:
            print(f"removed {removed} file(s) of earlier runs from {day}")
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
            **{k: group[k] for k in ("video_id", "style", *STYLE_INFO) if k in group},
            "video": str(video_uri),
            "poster": str(poster_uri),
            "duration": info.duration,
            "runway_ids": [r["runway_task_id"] for r in group["renders"]],
            "renders": group["renders"],
        }

    @task
    def contact_sheets(
        cfg: dict[str, Any], videos: list[dict[str, Any]], stitched: list[dict[str, Any]]
    ) -> dict[str, str]:
        """A PNG per video: the original, then each style (with its reference image), at the same instants."""
        from contact_sheet import publish_contact_sheet

        return {
            v["video_id"]: publish_contact_sheet(cfg, v, [s for s in stitched if s["video_id"] == v["video_id"]])
            for v in videos
        }

    @task(outlets=[RESTYLED_VIDEOS])
    def publish(
        cfg: dict[str, Any],
        videos: list[dict[str, Any]],
        stitched: list[dict[str, Any]],
        sheets: dict[str, str],
        plan: dict[str, Any],
    ) -> dict[str, Any]:
        """Write the day's manifest.json and emit the Asset event the QC DAG waits for."""
        import json

        from airflow.sdk import ObjectStoragePath
        from spend_plan import outcome_totals

        outputs = ("video", "poster", "duration", *STYLE_INFO, "runway_ids", "renders")
        renders = outcome_totals(r["decision"] for s in stitched for r in s["renders"])
        manifest = {
            "date": cfg["date"],
            "run_id": cfg["run_id"],
            "published_at": pendulum.now("UTC").isoformat(),
            # what the restyle tasks did: counts per decision (submit / resume / reuse_stored)
            "renders": renders,
            "spend_plan": plan,
            "videos": [
                {
                    "video_id": v["video_id"],
                    "source": v["source"],
                    "source_info": v["info"],
                    "clips": len(v["clips"]),
                    "contact_sheet": sheets.get(v["video_id"]),
                    "styles": {
                        s["style"]: {k: s[k] for k in outputs if k in s}
                        for s in stitched
                        if s["video_id"] == v["video_id"]
                    },
                }
                for v in videos
            ],
        }
        path = ObjectStoragePath(cfg["storage_root"]) / "published" / cfg["date"] / "manifest.json"
        path.write_text(json.dumps(manifest, indent=2))
        print(f"published {path}; renders: {renders}")
        summary = {
            "event": "comet.runway.restyled",
            "date": cfg["date"],
            "run_id": cfg["run_id"],
            "manifest": str(path),
            "renders": renders,
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
    renders = plan_renders(cfg, videos)
    plan = spend_plan(cfg, videos, renders)
    approve = ApprovalOperator(
        task_id="approve_spend",
        subject="{{ " + APPROVAL_XCOM + "['subject'] }}",
        body="{{ " + APPROVAL_XCOM + "['body'] }}",
        retries=0,
    )
    approval_needed(plan) >> approve
    restyled = RunwayVideo2VideoOperator.partial(
        task_id="restyle",
        deferrable=True,
        pool=RUNWAY_POOL,
        retries=2,
        retry_delay=timedelta(minutes=1),
        retry_exponential_backoff=True,
        map_index_template=RESTYLE_LABEL,
        # runs when approve_spend approved it or was skipped (no approval needed); a rejection
        # skips restyle itself, and a failed spend_plan leaves it upstream_failed
        trigger_rule=TriggerRule.NONE_FAILED_MIN_ONE_SUCCESS,
    ).expand_kwargs(renders)
    approve >> restyled
    stitched = stitch_style.partial(cfg=cfg, videos=videos).expand(group=group_renders(cfg, renders, restyled.output))
    summary = publish(cfg, videos, stitched, contact_sheets(cfg, videos, stitched), plan)
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
