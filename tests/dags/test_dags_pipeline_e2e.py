"""The example pipeline end to end: ``airflow dags test`` in a scratch Airflow against the emulator.

The same runner as ``make demo`` (scripts/demo.py): a 10 s source video is split into 3 clips,
restyled in 3 styles (9 renders), stitched, published and announced; then the QC DAG runs
on the Asset event, a day without videos is skipped, and a rerun of the day with other
settings replaces its files instead of adding to them.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from types import ModuleType, SimpleNamespace
from typing import Any

import media_utils as mu
import pytest

pytestmark = [pytest.mark.dags_test, pytest.mark.timeout(1800)]

STYLES = ["pixel-art", "pencil-sketch", "neon"]


@pytest.fixture(scope="module")
def e2e(demo: ModuleType, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimpleNamespace]:
    root = tmp_path_factory.mktemp("runway-e2e") / "sandbox"
    with demo.demo_sandbox(root) as sandbox:
        source = demo.sample_video(sandbox.incoming() / "city-walk.mp4", seconds=10.0)
        run = sandbox.dags_test(demo.PIPELINE_DAG, demo.DEMO_LOGICAL_DATE)
        assert run.ok, f"{demo.PIPELINE_DAG} failed:\n{run.tail()}"
        published = sandbox.published()
        first = SimpleNamespace(
            manifest=json.loads((published / "manifest.json").read_text()),
            states=sandbox.airflow.task_states(demo.PIPELINE_DAG),
            inbox=sandbox.emulator.inbox(demo.NOTIFY_INBOX),
            stats=sandbox.emulator.stats(),
            snapshot=root.parent / "first-run",
        )
        shutil.copytree(published, first.snapshot)  # later runs rewrite the day's files
        yield SimpleNamespace(demo=demo, sandbox=sandbox, source=source, run=run, first=first)


def _rendered_names(e2e: SimpleNamespace, task_id: str) -> list[str]:
    rows = e2e.sandbox.airflow.query(
        "SELECT rendered_map_index, pool FROM task_instance WHERE dag_id = ? AND task_id = ? ORDER BY map_index",
        e2e.demo.PIPELINE_DAG,
        task_id,
    )
    return [f"{name}@{pool}" for name, pool in rows]


def test_every_task_succeeded_with_readable_mapped_names(e2e: SimpleNamespace) -> None:
    states = e2e.first.states
    assert all(s == "success" for per_task in states.values() for s in per_task), states
    assert len(states["restyle"]) == 9 and len(states["stitch_style"]) == 3
    names = _rendered_names(e2e, "restyle")
    assert names == [f"city-walk · {style} · clip_00{i}@runway" for style in STYLES for i in range(3)]
    assert _rendered_names(e2e, "stitch_style") == [f"city-walk · {style}@default_pool" for style in STYLES]


def test_clips_were_staged_for_the_api_and_renders_stored(e2e: SimpleNamespace) -> None:
    staged = e2e.sandbox.media_dir / e2e.demo.DEMO_DAY / "city-walk"
    assert sorted(p.name for p in staged.iterdir()) == ["clip_000.mp4", "clip_001.mp4", "clip_002.mp4"]
    tasks = list(e2e.first.stats["tasks"].values())
    assert e2e.first.stats["submissions"] == len(tasks) == 9  # clips x styles, nothing submitted twice
    assert sorted({t["video"].rsplit("/media/", 1)[1] for t in tasks}) == [
        f"2025-06-01/city-walk/clip_00{i}.mp4" for i in range(3)
    ]
    assert sorted({t["prompt"] for t in tasks}) == sorted(e2e.demo.DEMO_STYLES.values())
    assert all(t["model"] == "gen4" and t["options"]["structure_transformation"] == 0.5 for t in tasks)
    assert all(t["render"] == "done" for t in tasks)
    renders = e2e.sandbox.storage / "renders" / e2e.demo.DEMO_DAY / "city-walk"
    assert len(list(renders.rglob("clip_*.mp4"))) == 9


def test_stitched_videos_exist_and_differ_from_the_source(e2e: SimpleNamespace) -> None:
    video = e2e.first.manifest["videos"][0]
    assert set(video["styles"]) == set(STYLES)
    for style in STYLES:
        path = e2e.first.snapshot / "city-walk" / f"{style}.mp4"
        info = mu.probe_video(path)
        assert info.duration == pytest.approx(10.0, abs=0.3), style
        assert (info.width, info.height) == (320, 240)
        assert info.has_audio, f"{style}: the source's soundtrack was not kept"
        for at in (1.0, 5.0, 9.0):  # every clip was restyled, not just some
            assert mu.frame_difference(e2e.source, path, at) > 8.0, (style, at)
        poster = e2e.first.snapshot / "city-walk" / f"{style}.png"
        assert poster.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_contact_sheet_is_a_valid_png_with_one_row_per_version(e2e: SimpleNamespace) -> None:
    from PIL import Image

    sheet = e2e.first.snapshot / "city-walk" / "contact-sheet.png"
    assert e2e.first.manifest["videos"][0]["contact_sheet"].endswith("/city-walk/contact-sheet.png")
    with Image.open(sheet) as img:
        img.verify()
    with Image.open(sheet) as img:
        assert img.format == "PNG"
        # title + header + 4 rows (original + 3 styles) of 240x180 thumbnails
        assert img.size == (150 + 4 * 248 + 8, 36 + 28 + 4 * 188 + 8)


def test_asset_event_was_emitted_with_the_manifest(e2e: SimpleNamespace) -> None:
    events = e2e.sandbox.asset_events()
    first = events[0]
    assert first["source_dag_id"] == e2e.demo.PIPELINE_DAG and first["source_task_id"] == "publish"
    assert first["extra"]["date"] == e2e.demo.DEMO_DAY
    assert first["extra"]["manifest"].endswith("/published/2025-06-01/manifest.json")
    assert first["extra"]["styles"] == STYLES


def test_notification_reached_the_receiver(e2e: SimpleNamespace) -> None:
    (entry,) = e2e.first.inbox
    assert entry["method"] == "POST" and entry["json"]
    body: dict[str, Any] = entry["body"]
    assert body["event"] == "comet.runway.restyled"
    assert body["date"] == e2e.demo.DEMO_DAY
    assert body["manifest"].endswith("/manifest.json")
    (video,) = body["videos"]
    assert set(video["outputs"]) == set(STYLES)


def test_qc_dag_runs_on_the_asset_and_passes(e2e: SimpleNamespace) -> None:
    qc = e2e.sandbox.dags_test(e2e.demo.QC_DAG)
    assert qc.ok, qc.tail()
    report = json.loads((e2e.sandbox.published() / "qc-report.json").read_text())
    assert report["passed"] and len(report["renders"]) == 3
    assert all(c["passed"] for r in report["renders"] for c in r["checks"].values())
    assert "all checks passed" in (e2e.sandbox.published() / "qc-report.html").read_text()


def test_a_day_without_videos_is_skipped(e2e: SimpleNamespace) -> None:
    demo, sandbox = e2e.demo, e2e.sandbox
    before = len(sandbox.asset_events())
    run = sandbox.dags_test(demo.PIPELINE_DAG, "2025-06-09", log_name="empty-day")
    assert run.ok, run.tail()
    states = sandbox.airflow.task_states(demo.PIPELINE_DAG)
    assert states["settings"] == ["success"] and states["find_source_videos"] == ["skipped"]
    assert states["publish"] == ["skipped"] and states["notify"] == ["skipped"]
    assert len(sandbox.asset_events()) == before
    assert not (sandbox.storage / "published" / "2025-06-08").exists()


def test_rerunning_a_day_replaces_its_files(e2e: SimpleNamespace) -> None:
    """Same day again with one style and longer clips: the day's clips, renders and manifest are replaced."""
    demo, sandbox = e2e.demo, e2e.sandbox
    conf = {"styles": {"neon": "neon cyberpunk glow"}, "clip_seconds": 6}
    run = sandbox.dags_test(demo.PIPELINE_DAG, demo.DEMO_LOGICAL_DATE, conf=conf, log_name="rerun")
    assert run.ok, run.tail()
    staged = sandbox.media_dir / demo.DEMO_DAY / "city-walk"
    assert sorted(p.name for p in staged.iterdir()) == ["clip_000.mp4", "clip_001.mp4"]
    renders = sandbox.storage / "renders" / demo.DEMO_DAY / "city-walk"
    assert sorted(str(p.relative_to(renders)) for p in renders.rglob("*.mp4")) == [
        "neon/clip_000.mp4",
        "neon/clip_001.mp4",
    ]
    manifest = json.loads((sandbox.published() / "manifest.json").read_text())
    assert list(manifest["videos"][0]["styles"]) == ["neon"] and manifest["videos"][0]["clips"] == 2
    assert len(list(sandbox.storage.glob("published/*/manifest.json"))) == 1
    assert mu.probe_video(sandbox.published() / "city-walk" / "neon.mp4").duration == pytest.approx(10.0, abs=0.3)
    events = sandbox.asset_events()
    assert [e["extra"]["date"] for e in events] == [demo.DEMO_DAY, demo.DEMO_DAY]


def test_minimal_dag_restyles_one_video(e2e: SimpleNamespace) -> None:
    demo, sandbox = e2e.demo, e2e.sandbox
    shutil.copy(e2e.source, sandbox.media_dir / "minimal-source.mp4")
    conf = {"video_url": sandbox.emulator.media_url("minimal-source.mp4"), "prompt": "black and white film noir"}
    run = sandbox.dags_test(demo.MINIMAL_DAG, conf=conf)
    assert run.ok, run.tail()
    (output,) = (sandbox.storage / "minimal" / demo.MINIMAL_DAG).rglob("*.mp4")
    assert mu.probe_video(output).duration == pytest.approx(10.0, abs=0.3)
    assert mu.frame_difference(e2e.source, output, 5.0) > 8.0


def test_the_runway_pool_counts_deferred_renders(e2e: SimpleNamespace) -> None:
    ((slots, include_deferred),) = e2e.sandbox.airflow.query(
        "SELECT slots, include_deferred FROM slot_pool WHERE pool = ?", e2e.demo.POOL
    )
    assert slots == 3 and include_deferred
