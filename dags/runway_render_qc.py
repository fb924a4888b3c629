"""
### Quality check of new Runway renders

Runs whenever `runway_media_pipeline` publishes (it is scheduled on the Asset
`comet_runway_restyled_videos`, data-aware scheduling) and checks every restyled video
of that day against its source:

| check | passes when |
|---|---|
| `exists` | the stitched video is there and not empty |
| `duration` | its length is within `duration_tolerance` (default 5 %, at least 0.5 s) of the source's |
| `restyled` | frames differ from the source's at the same instants (mean RGB difference >= `min_difference`) |
| `motion` | it is not frozen: when the source moves, the render moves too |
| `poster` | the poster frame is a PNG |

It writes `qc-report.json` and `qc-report.html` (with the contact sheets) next to the
day's `manifest.json`, then fails if any check failed, so a bad batch shows up red.

Triggered by hand (or by `airflow dags test runway_render_qc`), it checks the latest
event of the Asset, or the manifest given in the `manifest` param.
"""

from __future__ import annotations

from typing import Any

import pendulum
from airflow.sdk import Asset, Param, dag, get_current_context, task

# Same Asset as in runway_media_pipeline.py (assets are matched by name).
RESTYLED_VIDEOS = Asset(name="comet_runway_restyled_videos", group="media")


def _check(passed: bool, value: Any, limit: Any) -> dict[str, Any]:
    return {"passed": bool(passed), "value": value, "limit": limit}


_STYLE = (
    "body{font-family:sans-serif;margin:2em}td,th{padding:4px 10px;border-bottom:1px solid #ccc;text-align:left}"
    ".ok td:first-child{border-left:4px solid #2a2}.bad td:first-child{border-left:4px solid #c22}"
    "small{color:#777}img{max-width:100%}"
)


def _report_html(report: dict[str, Any], manifest: dict[str, Any]) -> str:
    """A page a person can open: one row per render and check, then the contact sheets."""
    from html import escape

    renders = report["renders"]
    failed = sum(1 for r in renders if not r["passed"])
    heads = "".join(f"<th>{escape(k)}</th>" for k in (renders[0]["checks"] if renders else {}))
    rows = []
    for r in renders:
        cells = "".join(
            f"<td>{'✔' if c['passed'] else '✘'} {escape(str(c['value']))}"
            f"<br><small>{escape(str(c['limit']))}</small></td>"
            for c in r["checks"].values()
        )
        css = "ok" if r["passed"] else "bad"
        rows.append(f"<tr class={css}><td>{escape(r['video_id'])}</td><td>{escape(r['style'])}</td>{cells}</tr>")
    sheets = "".join(
        f"<h2>{escape(v['video_id'])}</h2><img src='{escape(v['video_id'])}/contact-sheet.png' alt='contact sheet'>"
        for v in manifest["videos"]
        if v.get("contact_sheet")
    )
    verdict = "all checks passed" if not failed else f"{failed} render(s) failed"
    return (
        f"<!doctype html><meta charset=utf-8><title>Runway QC {escape(report['date'])}</title><style>{_STYLE}</style>"
        f"<h1>Runway renders of {escape(report['date'])}: {verdict}</h1>"
        f"<p>Manifest <code>{escape(report['manifest'])}</code>, checked {escape(report['checked_at'])}</p>"
        f"<table><tr><th>video</th><th>style</th>{heads}</tr>{''.join(rows)}</table>{sheets}"
    )


@dag(
    dag_id="runway_render_qc",
    schedule=[RESTYLED_VIDEOS],
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    catchup=False,
    doc_md=__doc__,
    tags=["comet", "runway", "media", "qc", "example"],
    params={
        "manifest": Param(
            None, type=["null", "string"], description="Check this manifest.json instead of the new Asset events."
        ),
        "min_difference": Param(
            8.0, type="number", minimum=0, description="Min mean RGB difference from the source (0-255)."
        ),
        "duration_tolerance": Param(0.05, type="number", minimum=0, description="Allowed relative length change."),
    },
)
def runway_render_qc() -> None:
    @task(inlets=[RESTYLED_VIDEOS])
    def find_new_renders() -> list[str]:
        """The manifests announced by the Asset events that triggered this run."""
        from airflow.providers.common.compat.sdk import AirflowSkipException  # Airflow 3.1 too

        context = get_current_context()
        if context["params"].get("manifest"):
            return [context["params"]["manifest"]]
        events = list(context["triggering_asset_events"][RESTYLED_VIDEOS])
        if not events:  # a manual run: the latest event of the Asset
            try:
                events = [context["inlet_events"][RESTYLED_VIDEOS][-1]]
            except IndexError:
                raise AirflowSkipException("the Asset has no events yet") from None
        manifests = list(dict.fromkeys(e.extra["manifest"] for e in events if e.extra.get("manifest")))
        if not manifests:
            raise AirflowSkipException("no manifest in the Asset events")
        return manifests

    @task(map_index_template="{{ qc_label }}")
    def check_renders(manifest_uri: str) -> dict[str, Any]:
        """Check one day's renders, write qc-report.json/.html beside its manifest."""
        import json

        from airflow.providers.common.compat.sdk import AirflowFailException  # Airflow 3.1 too
        from airflow.sdk import ObjectStoragePath
        from media_utils import download_from_storage, frame_difference, probe_video, sample_times, scratch_dir

        context = get_current_context()
        params = context["params"]
        manifest_path = ObjectStoragePath(manifest_uri)
        manifest = json.loads(manifest_path.read_text())
        context["qc_label"] = manifest["date"]  # type: ignore[typeddict-unknown-key]
        results: list[dict[str, Any]] = []
        with scratch_dir("runway-qc-") as tmp:
            for video in manifest["videos"]:
                source = download_from_storage(ObjectStoragePath(video["source"]), f"{tmp}/{video['video_id']}")
                src = probe_video(source)
                times = sample_times(src.duration, 3)
                src_motion = frame_difference(source, source, times[0], times[-1])
                for style, out in video["styles"].items():
                    checks: dict[str, dict[str, Any]] = {}
                    target = ObjectStoragePath(out["video"])
                    size = target.stat().st_size if target.exists() else 0
                    checks["exists"] = _check(size > 0, size, "> 0 bytes")
                    if size:
                        local = download_from_storage(target, f"{tmp}/{video['video_id']}/{style}")
                        dur = probe_video(local).duration
                        allowed = max(0.5, params["duration_tolerance"] * src.duration)
                        checks["duration"] = _check(
                            abs(dur - src.duration) <= allowed, dur, f"{src.duration} ± {allowed:.2f} s"
                        )
                        diff = min(frame_difference(source, local, t) for t in times)
                        checks["restyled"] = _check(
                            diff >= params["min_difference"], round(diff, 2), f">= {params['min_difference']}"
                        )
                        motion = frame_difference(local, local, times[0], times[-1])
                        checks["motion"] = _check(
                            src_motion < 2.0 or motion >= 0.2 * src_motion,
                            round(motion, 2),
                            f">= {0.2 * src_motion:.2f}",
                        )
                    poster = ObjectStoragePath(out["poster"])
                    head = poster.read_bytes()[:8] if poster.exists() else b""
                    checks["poster"] = _check(head == b"\x89PNG\r\n\x1a\n", poster.name, "PNG")
                    results.append(
                        {
                            "video_id": video["video_id"],
                            "style": style,
                            "video": out["video"],
                            "passed": all(c["passed"] for c in checks.values()),
                            "checks": checks,
                        }
                    )
        failed = [
            f"{r['video_id']}/{r['style']}: " + ", ".join(k for k, c in r["checks"].items() if not c["passed"])
            for r in results
            if not r["passed"]
        ]
        report = {
            "date": manifest["date"],
            "manifest": manifest_uri,
            "checked_at": pendulum.now("UTC").isoformat(),
            "passed": not failed,
            "renders": results,
        }
        folder = manifest_path.parent
        (folder / "qc-report.json").write_text(json.dumps(report, indent=2))
        (folder / "qc-report.html").write_text(_report_html(report, manifest))
        print(f"QC report: {folder / 'qc-report.html'}")
        if failed:
            raise AirflowFailException("renders failed QC: " + "; ".join(failed))
        return {"date": manifest["date"], "renders": len(results), "report": str(folder / "qc-report.json")}

    check_renders.expand(manifest_uri=find_new_renders())


runway_render_qc()
