"""The media pipeline's spend plan, settings and clip staging, without a DAG run.

The plan's decisions come from the provider (``preview_render``); here they are given, so
the counting, the limits and what a person reads are checked on their own. The runs
against the emulator are in test_dags_pipeline_e2e.py.
"""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path
from typing import Any

import clip_staging
import media_utils as mu
import pipeline_settings as ps
import pytest
import spend_plan as sp

ROOT = "file:///srv/media/renders/2025-06-01"
SECONDS = {("city-walk", "clip_000"): 4.0, ("city-walk", "clip_001"): 4.0, ("city-walk", "clip_002"): 2.0}


def _renders(styles: tuple[str, ...] = ("neon", "pixel-art")) -> list[dict[str, Any]]:
    return [
        {
            "video": f"https://cdn.example.com/2025-06-01/city-walk/{clip}.mp4",
            "prompt": f"{style} look",
            "model": "gen4",
            "force_render": False,
            "comet_conn_id": "comet_default",
            "poll_interval": 10,
            "timeout": 1800,
            "output_path": f"{ROOT}/city-walk/{style}/{clip}.mp4",
        }
        for style in styles
        for clip in ("clip_000", "clip_001", "clip_002")
    ]


def _decided(*decisions: str) -> list[dict[str, Any]]:
    return [{"decision": d, "reason": f"because {d}", "runway_task_id": None} for d in decisions]


def _plan(decisions: list[dict[str, Any]], cap: int | None = 100, approval: int | None = 50) -> dict[str, Any]:
    return sp.build_plan(
        _renders(),
        decisions,
        SECONDS,
        date="2025-06-01",
        max_renders_per_run=cap,
        approval_over_renders=approval,
    )


# ------------------------------------------------------------------------------------------ counts


def test_an_all_new_day_submits_every_render_and_counts_its_seconds() -> None:
    plan = _plan(_decided(*["submit"] * 6))
    assert plan["totals"] == {
        "renders": 6,
        "submit": 6,
        "resume": 0,
        "reuse_stored": 0,
        "seconds": 20.0,
        "seconds_to_submit": 20.0,
    }
    assert not plan["over_cap"] and not plan["approval_required"]
    first = plan["renders"][0]
    assert (first["video_id"], first["style"], first["clip"], first["seconds"]) == (
        "city-walk",
        "neon",
        "clip_000",
        4.0,
    )
    assert json.loads(json.dumps(plan)) == plan  # XCom and the manifest take it as it is


def test_reused_and_resumed_renders_are_not_counted_as_submitted() -> None:
    plan = _plan(_decided("reuse_stored", "reuse_stored", "submit", "resume", "reuse_stored", "submit"))
    totals = plan["totals"]
    assert (totals["submit"], totals["resume"], totals["reuse_stored"]) == (2, 1, 3)
    # clip_002 of neon (2 s) and clip_002 of pixel-art (2 s)
    assert totals["seconds_to_submit"] == 4.0 and totals["seconds"] == 20.0


@pytest.mark.parametrize(
    ("submits", "cap", "approval", "over_cap", "approval_required"),
    [
        (6, 6, 5, False, True),  # at the cap is allowed; over the approval threshold asks
        (6, 5, 2, True, False),  # over the cap fails: no approval is asked for a run that cannot go
        (5, 6, 5, False, False),  # at the threshold: no approval
        (6, None, None, False, False),  # null: no limit
        (0, 0, 0, False, False),  # everything reused passes even a zero limit
    ],
)
def test_limits_apply_to_renders_to_submit(
    submits: int, cap: int | None, approval: int | None, over_cap: bool, approval_required: bool
) -> None:
    plan = _plan(_decided(*["submit"] * submits, *["reuse_stored"] * (6 - submits)), cap, approval)
    assert (plan["over_cap"], plan["approval_required"]) == (over_cap, approval_required)
    assert plan["limits"] == {"max_renders_per_run": cap, "approval_over_renders": approval}


def test_plan_and_decisions_must_line_up() -> None:
    with pytest.raises(ValueError):
        _plan(_decided("submit"))


# ------------------------------------------------------------------------------------ what is read


def test_the_log_table_lists_every_render_and_the_verdict() -> None:
    table = sp.plan_table(_plan(_decided("reuse_stored", *["submit"] * 5), approval=4)).splitlines()
    assert table[0] == (
        "Spend plan: 6 render(s) for 2025-06-01: 5 to submit (16.0 s of video), 0 to resume, 1 reused from storage"
    )
    assert table[1].split() == ["video", "style", "clip", "seconds", "decision", "why"]
    assert table[2].split()[:5] == ["city-walk", "neon", "clip_000", "4.00", "reuse_stored"]
    assert len(table) == 2 + 6 + 1
    assert table[-1] == "Limits: over approval_over_renders = 4: the run waits for approval"


def test_the_approval_shows_the_plan_per_video_and_style() -> None:
    request = sp.approval_request(_plan(_decided("reuse_stored", *["submit"] * 5), approval=4))
    assert request["subject"] == "Submit 5 Runway render(s) (16 s of video) for 2025-06-01?"
    body = request["body"]
    assert body.startswith("**5 Runway render(s) to submit for 2025-06-01**, 16.0 s of video; 1 reused")
    assert "`approval_over_renders` = 4" in body and "`max_renders_per_run`, is 100" in body
    assert "| city-walk | neon | 3 | 2 | 6.0 |" in body
    assert "| city-walk | pixel-art | 3 | 3 | 10.0 |" in body
    assert "**Reject** and nothing is submitted" in body


def test_the_cap_message_says_how_many_and_names_the_setting() -> None:
    message = sp.cap_exceeded_message(_plan(_decided(*["submit"] * 6), cap=5), "comet_runway_pipeline")
    assert "would submit 6 render(s) (20.0 s of video) for 2025-06-01" in message
    assert "max_renders_per_run = 5" in message and "'comet_runway_pipeline'" in message
    assert "Nothing was submitted" in message


def test_outcome_totals_count_what_the_restyle_tasks_did() -> None:
    assert sp.outcome_totals(["submit", "reuse_stored", "reuse_stored", "resume", None]) == {
        "renders": 5,
        "submit": 1,
        "resume": 1,
        "reuse_stored": 2,
        "unknown": 1,
    }


def test_preview_asks_the_provider_with_the_restyle_arguments_only(monkeypatch: pytest.MonkeyPatch) -> None:
    from comet_provider.utils import pay_once

    seen: list[dict[str, Any]] = []

    # keeps the provider's signature (inspect follows __wrapped__), which decides what is passed
    @functools.wraps(pay_once.preview_render)
    def fake_preview(**kwargs: Any) -> pay_once.RenderDecision:
        seen.append(kwargs)
        return pay_once.RenderDecision(pay_once.Decision.REUSE_STORED, "stored", "rw-1")

    monkeypatch.setattr(pay_once, "preview_render", fake_preview)
    decisions = sp.preview(_renders(("neon",)))
    assert decisions[0] == {"decision": "reuse_stored", "reason": "stored", "runway_task_id": "rw-1"}
    # polling and the timeout do not change what is paid for
    assert set(seen[0]) == {"video", "prompt", "model", "force_render", "comet_conn_id", "output_path"}


# ----------------------------------------------------------------------------------------- settings


def _resolve(configured: dict[str, Any] | None = None, **params: Any) -> dict[str, Any]:
    base = {"public_url_template": "https://cdn.example.com/{key}"}
    cfg, _ = ps.resolve_settings({**base, **(configured or {})}, params, airflow_home="/opt/airflow")
    return cfg


def test_settings_defaults_variable_then_params() -> None:
    cfg = _resolve()
    assert (cfg["max_renders_per_run"], cfg["approval_over_renders"], cfg["force_render"]) == (100, 50, False)
    cfg = _resolve({"max_renders_per_run": 20, "approval_over_renders": None, "force_render": True})
    assert (cfg["max_renders_per_run"], cfg["approval_over_renders"], cfg["force_render"]) == (20, None, True)
    cfg = _resolve({"max_renders_per_run": 20}, max_renders_per_run=0, approval_over_renders=3, force_render=False)
    assert (cfg["max_renders_per_run"], cfg["approval_over_renders"], cfg["force_render"]) == (0, 3, False)
    # a param left empty (None) keeps the configured value
    assert _resolve({"max_renders_per_run": 20}, max_renders_per_run=None)["max_renders_per_run"] == 20
    assert _resolve()["storage_root"] == "file:///opt/airflow/runway-media"


@pytest.mark.parametrize(
    ("configured", "field"),
    [
        ({"max_renders_per_run": -1}, "max_renders_per_run"),
        ({"max_renders_per_run": 2.5}, "max_renders_per_run"),
        ({"approval_over_renders": "ten"}, "approval_over_renders"),
        ({"approval_over_renders": True}, "approval_over_renders"),
        ({"force_render": "yes"}, "force_render"),
        ({"public_url_template": "https://cdn.example.com/no-key"}, "public_url_template"),
        ({"styles": {}}, "styles"),
    ],
)
def test_bad_settings_name_the_field(configured: dict[str, Any], field: str) -> None:
    with pytest.raises(ps.SettingsError, match=field):
        _resolve(configured)


def test_unknown_variable_keys_are_reported() -> None:
    _, unknown = ps.resolve_settings(
        {"public_url_template": "https://x/{key}", "max_render": 3}, {}, airflow_home="/opt/airflow"
    )
    assert unknown == ["max_render"]


# ------------------------------------------------------------------------------------- clip staging


def test_clips_of_an_unchanged_source_are_kept_a_new_source_restaged(sample_video: Path, tmp_path: Path) -> None:
    incoming = tmp_path / "storage" / "incoming" / "2025-06-01"
    incoming.mkdir(parents=True)
    source = incoming / "city-walk.mp4"
    source.write_bytes(sample_video.read_bytes())
    cfg = {
        "date": "2025-06-01",
        "storage_root": f"file://{tmp_path}/storage",
        "staging_root": f"file://{tmp_path}/staging",
        "public_url_template": "https://cdn.example.com/{key}",
        "clip_seconds": 4,
        "min_clip_seconds": 1,
        "max_width": 1280,
    }
    video = {"video_id": "city-walk", "source": f"file://{source}"}
    staged_dir = tmp_path / "staging" / "2025-06-01" / "city-walk"

    first = clip_staging.stage_video(cfg, video)
    assert [c["name"] for c in first["clips"]] == ["clip_000", "clip_001", "clip_002"]
    assert first["clips"][1]["location"] == "https://cdn.example.com/2025-06-01/city-walk/clip_001.mp4"
    stamps = {p.name: p.stat().st_mtime_ns for p in staged_dir.iterdir()}

    assert clip_staging.stage_video(cfg, video) == first  # same source, same settings
    assert {p.name: p.stat().st_mtime_ns for p in staged_dir.iterdir()} == stamps
    assert not any((tmp_path / "staging").rglob("*.json")), "the staging record must not be public"

    # a video re-delivered behind the same path is a new input: staged again
    os.utime(source, ns=(source.stat().st_atime_ns, source.stat().st_mtime_ns + 10**9))
    clip_staging.stage_video(cfg, video)
    assert all(p.stat().st_mtime_ns != stamps[p.name] for p in staged_dir.iterdir())

    # other clip settings replace the clips
    longer = clip_staging.stage_video({**cfg, "clip_seconds": 6}, video)
    assert [c["name"] for c in longer["clips"]] == ["clip_000", "clip_001"]
    assert sorted(p.name for p in staged_dir.iterdir()) == ["clip_000.mp4", "clip_001.mp4"]


def test_pruning_renders_keeps_planned_ones_and_their_sidecars(tmp_path: Path) -> None:
    from airflow.sdk import ObjectStoragePath

    day = tmp_path / "renders"
    for name in ("neon/clip_000.mp4", "neon/clip_000.mp4.comet.json", "neon/clip_001.mp4", "old/clip_000.mp4"):
        (day / name).parent.mkdir(parents=True, exist_ok=True)
        (day / name).write_bytes(b"x")
    removed = mu.remove_storage_prefix(ObjectStoragePath(f"file://{day}"), keep=[f"file://{day}/neon/clip_000.mp4"])
    assert removed == 2
    assert sorted(str(p.relative_to(day)) for p in day.rglob("*") if p.is_file()) == [
        "neon/clip_000.mp4",
        "neon/clip_000.mp4.comet.json",
    ]
