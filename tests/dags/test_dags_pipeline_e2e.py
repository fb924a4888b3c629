"""The example pipeline end to end: ``airflow dags test`` in a scratch Airflow against the emulator.

The same runner as ``make demo`` (scripts/demo.py): a 10 s source video is split into 3 clips,
restyled in 3 styles (9 renders), stitched, published and announced; then the QC DAG runs
on the Asset event. The spend plan: a rerun of the day reuses every stored render (0
submissions), a run over ``max_renders_per_run`` fails before submitting, a run over
``approval_over_renders`` waits for a person (answered here through the same code as the
REST API's): rejected it submits nothing, approved with ``force_render`` it pays for every
render again. Then a day without videos is skipped, and a rerun of the day with other
settings replaces its files instead of adding to them.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
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
            renders=_digests(sandbox.storage / "renders"),
            plan=_xcom(sandbox, "spend_plan"),
        )
        shutil.copytree(published, first.snapshot)  # later runs rewrite the day's files
        yield SimpleNamespace(demo=demo, sandbox=sandbox, source=source, run=run, first=first)


def _digests(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*.mp4"))
    }


def _latest_run_id(sandbox: Any) -> str:
    ((run_id,),) = sandbox.airflow.query(
        "SELECT run_id FROM dag_run WHERE dag_id = 'runway_media_pipeline' ORDER BY id DESC LIMIT 1"
    )
    return str(run_id)


def _xcom(sandbox: Any, task_id: str, key: str = "return_value") -> Any:
    rows = sandbox.airflow.query(
        "SELECT value FROM xcom WHERE dag_id = 'runway_media_pipeline' AND run_id = ? AND task_id = ? AND key = ?",
        _latest_run_id(sandbox),
        task_id,
        key,
    )
    return json.loads(rows[0][0]) if rows else None


def _rendered_names(e2e: SimpleNamespace, task_id: str) -> list[str]:
    rows = e2e.sandbox.airflow.query(
        "SELECT rendered_map_index, pool FROM task_instance WHERE dag_id = ? AND task_id = ? ORDER BY map_index",
        e2e.demo.PIPELINE_DAG,
        task_id,
    )
    return [f"{name}@{pool}" for name, pool in rows]


def test_every_task_succeeded_with_readable_mapped_names(e2e: SimpleNamespace) -> None:
    states = dict(e2e.first.states)
    assert states.pop("approve_spend") == ["skipped"]  # under approval_over_renders: not asked
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


def test_the_spend_plan_of_a_new_day_submits_every_render_without_approval(e2e: SimpleNamespace) -> None:
    plan = e2e.first.plan
    totals = plan["totals"]
    assert (totals["renders"], totals["submit"], totals["reuse_stored"], totals["resume"]) == (9, 9, 0, 0)
    assert totals["seconds_to_submit"] == pytest.approx(3 * 10.0, abs=0.5)  # 3 styles x the 10 s video
    assert not plan["approval_required"] and not plan["over_cap"]
    assert plan["limits"] == {"max_renders_per_run": 100, "approval_over_renders": 50}
    states = e2e.first.states
    assert states["approval_needed"] == ["success"] and states["approve_spend"] == ["skipped"]
    assert "Spend plan: 9 render(s) for 2025-06-01: 9 to submit" in e2e.run.output
    # the manifest has the plan and what each restyle did
    manifest = e2e.first.manifest
    assert manifest["spend_plan"]["totals"] == totals
    assert manifest["renders"] == {"renders": 9, "submit": 9, "resume": 0, "reuse_stored": 0}
    neon = manifest["videos"][0]["styles"]["neon"]["renders"]
    assert [(r["clip"], r["decision"]) for r in neon] == [(f"clip_00{i}", "submit") for i in range(3)]
    assert len({r["runway_task_id"] for s in manifest["videos"][0]["styles"].values() for r in s["renders"]}) == 9


def test_rerunning_the_same_day_reuses_every_stored_render(e2e: SimpleNamespace) -> None:
    demo, sandbox = e2e.demo, e2e.sandbox
    run = sandbox.dags_test(demo.PIPELINE_DAG, demo.DEMO_LOGICAL_DATE, log_name="rerun-same")
    assert run.ok, run.tail()
    plan = _xcom(sandbox, "spend_plan")
    assert (plan["totals"]["submit"], plan["totals"]["reuse_stored"], plan["totals"]["seconds_to_submit"]) == (0, 9, 0)
    assert sandbox.emulator.stats(tasks=False)["submissions"] == 9  # nothing new since the first run
    manifest = json.loads((sandbox.published() / "manifest.json").read_text())
    assert manifest["renders"] == {"renders": 9, "submit": 0, "resume": 0, "reuse_stored": 9}
    first_ids = {s: v["runway_ids"] for s, v in e2e.first.manifest["videos"][0]["styles"].items()}
    assert {s: v["runway_ids"] for s, v in manifest["videos"][0]["styles"].items()} == first_ids
    assert _digests(sandbox.storage / "renders") == e2e.first.renders
    assert sandbox.airflow.task_states(demo.PIPELINE_DAG)["restyle"] == ["success"] * 9


def test_a_run_over_max_renders_per_run_fails_before_submitting(e2e: SimpleNamespace) -> None:
    demo, sandbox = e2e.demo, e2e.sandbox
    before = sandbox.emulator.stats(tasks=False)["submissions"]
    conf = {"force_render": True, "max_renders_per_run": 4}
    run = sandbox.dags_test(demo.PIPELINE_DAG, demo.DEMO_LOGICAL_DATE, conf=conf, log_name="over-cap")
    assert not run.ok
    assert "would submit 9 render(s)" in run.output and "max_renders_per_run = 4" in run.output
    states = sandbox.airflow.task_states(demo.PIPELINE_DAG)
    assert states["spend_plan"] == ["failed"]
    for task_id in ("approval_needed", "approve_spend", "restyle", "publish", "notify"):
        assert states[task_id] == ["upstream_failed"], (task_id, states)
    assert sandbox.emulator.stats(tasks=False)["submissions"] == before
    assert _digests(sandbox.storage / "renders") == e2e.first.renders


# Answers a waiting approval with the very function behind the REST API's
# PATCH .../taskInstances/approve_spend/-1/hitlDetails (no api-server under `dags test`).
_RESPOND = """
import sys
from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser
from airflow.api_fastapi.core_api.datamodels.hitl import UpdateHITLDetailPayload
from airflow.api_fastapi.core_api.routes.public.hitl import update_hitl_detail
from airflow.utils.session import create_session

dag_id, run_id, option = sys.argv[1:]
with create_session() as session:
    update_hitl_detail(
        dag_id=dag_id,
        dag_run_id=run_id,
        task_id="approve_spend",
        update_hitl_detail_payload=UpdateHITLDetailPayload(chosen_options=[option], params_input={}),
        user=SimpleAuthManagerUser(username="reviewer", role="admin"),
        session=session,
        map_index=-1,
    )
"""


def _run_answering_the_approval(e2e: SimpleNamespace, conf: dict[str, Any], option: str, log_name: str) -> Any:
    """``dags test`` with ``conf``; once approve_spend waits, answer ``option``. Returns what the approval showed."""
    demo, sandbox = e2e.demo, e2e.sandbox
    airflow = Path(sys.executable).with_name("airflow")
    env = sandbox.airflow.env(sandbox.env)
    command = [str(airflow), "dags", "test", demo.PIPELINE_DAG, demo.DEMO_LOGICAL_DATE, "--conf", json.dumps(conf)]
    # `dags test` replaces the earlier run of the same logical date (SQLite may reuse its id)
    earlier_runs = {run_id for (run_id,) in sandbox.airflow.query("SELECT run_id FROM dag_run")}
    with (sandbox.logs / f"{log_name}.log").open("w") as log:
        proc = subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        try:
            waiting: list[tuple[Any, ...]] = []
            give_up = time.monotonic() + 600  # a bound on a hang, not a measurement
            while not waiting:
                assert proc.poll() is None, (sandbox.logs / f"{log_name}.log").read_text()[-3000:]
                assert time.monotonic() < give_up, "approve_spend never waited for input"
                time.sleep(1)
                rows = sandbox.airflow.query(
                    "SELECT h.subject, h.body, ti.run_id FROM hitl_detail h JOIN task_instance ti ON ti.id = h.ti_id "
                    "WHERE ti.dag_id = ? AND ti.task_id = 'approve_spend' AND ti.state = 'awaiting_input'",
                    demo.PIPELINE_DAG,
                )
                waiting = [row for row in rows if row[2] not in earlier_runs]
            ((subject, body, run_id),) = waiting
            # the plan is decided and nothing was submitted while the run waits
            waited = SimpleNamespace(
                subject=subject, body=body, submissions=sandbox.emulator.stats(False)["submissions"]
            )
            answer = [sys.executable, "-c", _RESPOND, demo.PIPELINE_DAG, run_id, option]
            subprocess.run(answer, env=env, check=True, capture_output=True, timeout=300)
            proc.wait(timeout=900)
        finally:
            if proc.poll() is None:
                proc.kill()
    waited.returncode = proc.returncode
    waited.output = (sandbox.logs / f"{log_name}.log").read_text()
    return waited


APPROVAL_CONF = {"force_render": True, "approval_over_renders": 4}


def test_a_rejected_spend_plan_submits_nothing(e2e: SimpleNamespace) -> None:
    sandbox = e2e.sandbox
    before = sandbox.emulator.stats(tasks=False)["submissions"]
    waited = _run_answering_the_approval(e2e, APPROVAL_CONF, "Reject", "approval-rejected")
    assert waited.submissions == before
    assert waited.subject == "Submit 9 Runway render(s) (30 s of video) for 2025-06-01?"
    assert "`approval_over_renders` = 4" in waited.body and "| city-walk | neon | 3 | 3 |" in waited.body
    assert waited.returncode == 0, waited.output[-3000:]  # a "no" is an answer, not a failure
    states = sandbox.airflow.task_states(e2e.demo.PIPELINE_DAG)
    assert states["approve_spend"] == ["success"]
    for task_id in ("restyle", "group_renders", "stitch_style", "publish", "notify"):
        assert states[task_id] == ["skipped"], (task_id, states)
    assert sandbox.emulator.stats(tasks=False)["submissions"] == before
    assert _digests(sandbox.storage / "renders") == e2e.first.renders


def test_an_approved_force_render_run_pays_for_every_render_again(e2e: SimpleNamespace) -> None:
    sandbox = e2e.sandbox
    before = sandbox.emulator.stats(tasks=False)["submissions"]
    waited = _run_answering_the_approval(e2e, APPROVAL_CONF, "Approve", "approval-approved")
    assert waited.submissions == before
    assert waited.returncode == 0, waited.output[-3000:]
    assert sandbox.emulator.stats(tasks=False)["submissions"] == before + 9
    states = sandbox.airflow.task_states(e2e.demo.PIPELINE_DAG)
    assert states["approve_spend"] == ["success"] and states["restyle"] == ["success"] * 9
    manifest = json.loads((sandbox.published() / "manifest.json").read_text())
    assert manifest["renders"] == {"renders": 9, "submit": 9, "resume": 0, "reuse_stored": 0}
    assert manifest["spend_plan"]["force_render"] is True and manifest["spend_plan"]["approval_required"]
    first_ids = {i for s in e2e.first.manifest["videos"][0]["styles"].values() for i in s["runway_ids"]}
    new_ids = {i for s in manifest["videos"][0]["styles"].values() for i in s["runway_ids"]}
    assert len(new_ids) == 9 and not new_ids & first_ids


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
    before = sandbox.emulator.stats(tasks=False)["submissions"]
    events_before = len(sandbox.asset_events())
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
    assert sandbox.emulator.stats(tasks=False)["submissions"] == before + 2
    # new clips: new inputs, none reused (a try that lost its download resumes: "resume", still paid once)
    assert manifest["renders"]["reuse_stored"] == 0 and manifest["renders"]["renders"] == 2
    events = sandbox.asset_events()
    assert len(events) == events_before + 1 and events[-1]["extra"]["date"] == demo.DEMO_DAY


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


def _mean_rgb(pixels: bytes) -> tuple[float, float, float]:
    count = len(pixels) // 3
    return (sum(pixels[0::3]) / count, sum(pixels[1::3]) / count, sum(pixels[2::3]) / count)


def _distance(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    return float(sum((x - y) ** 2 for x, y in zip(a, b, strict=True)) ** 0.5)


def test_a_reference_style_restyles_through_gen4_aleph_beside_the_gen4_styles(e2e: SimpleNamespace) -> None:
    """The demo's run: the 3 gen4 styles and one matched to a reference image (official route, data: URI)."""
    import base64

    from PIL import Image

    demo, sandbox = e2e.demo, e2e.sandbox
    styles = {**demo.DEMO_STYLES, **demo.reference_style(sandbox)}
    entry, name = styles[demo.REFERENCE_STYLE], demo.REFERENCE_STYLE
    image = Path(entry["references"][0].removeprefix("file://"))
    known = set(sandbox.emulator.stats()["tasks"])
    run = sandbox.dags_test(demo.PIPELINE_DAG, demo.DEMO_LOGICAL_DATE, conf={"styles": styles}, log_name="reference")
    assert run.ok, run.tail()
    states = sandbox.airflow.task_states(demo.PIPELINE_DAG)
    assert states["restyle"] == ["success"] * 12 and states["stitch_style"] == ["success"] * 4
    plan = _xcom(sandbox, "spend_plan")
    assert plan["totals"]["renders"] == 12
    assert [r["decision"] for r in plan["renders"] if r["style"] == name] == ["submit"] * 3
    paid_once = {"submit", "resume"}  # a try that lost its download resumes the render it paid for
    # Runway got each clip's public URL, the reference as a data: URI of the image, the seed and ratio
    new = [t for task_id, t in sandbox.emulator.stats()["tasks"].items() if task_id not in known]
    official = sorted((t for t in new if t["route"] == "official"), key=lambda t: t["video"])
    payload = base64.b64encode(image.read_bytes())
    reference_id = "data:image/png;sha256=" + hashlib.sha256(payload).hexdigest()[:16]
    assert [t["video"].rsplit("/media/", 1)[1] for t in official] == [
        f"2025-06-01/city-walk/clip_00{i}.mp4" for i in range(3)
    ]
    assert all((t["model"], t["seed"], t["ratio"]) == ("gen4_aleph", 42, "1104:832") for t in official)
    assert all(t["references"] == [reference_id] and t["render"] == "done" for t in official)
    assert {t["model"] for t in new if t["route"] == "pro"} <= {"gen4"}
    # stitched, in the manifest as a reference style, beside the gen4 styles
    manifest = json.loads((sandbox.published() / "manifest.json").read_text())
    outputs = manifest["videos"][0]["styles"]
    assert list(outputs) == [*STYLES, name]
    assert {k: outputs[name][k] for k in ("prompt", "model", "references")} == {
        k: entry[k] for k in ("prompt", "model", "references")
    }
    assert outputs["neon"]["model"] == "gen4" and "references" not in outputs["neon"]
    assert {r["decision"] for r in outputs[name]["renders"]} <= paid_once and len(outputs[name]["renders"]) == 3
    stitched = sandbox.published() / "city-walk" / f"{name}.mp4"
    info = mu.probe_video(stitched)
    assert info.duration == pytest.approx(10.0, abs=0.3) and (info.width, info.height) == (320, 240)
    assert info.has_audio
    with Image.open(image) as img:
        reference_mean = _mean_rgb(img.convert("RGB").resize((160, 120)).tobytes())
    for at in (1.0, 5.0, 9.0):  # every clip in the reference's colours, unlike the source
        restyled = _mean_rgb(mu.read_frame(stitched, at))
        source = _mean_rgb(mu.read_frame(e2e.source, at))
        assert _distance(restyled, reference_mean) < 0.5 * _distance(source, reference_mean), at
    # the contact sheet: one more row, labelled by style, with the reference image under its label
    sheet = sandbox.published() / "city-walk" / "contact-sheet.png"
    with Image.open(sheet) as img:
        assert img.size == (150 + 4 * 248 + 8, 36 + 28 + 5 * 188 + 8)
        row_y = 36 + 28 + 4 * 188
        thumb = img.convert("RGB").crop((8, row_y + 36, 8 + 134, row_y + 36 + 100))
        assert _distance(_mean_rgb(thumb.resize((160, 120)).tobytes()), reference_mean) < 12
    qc = sandbox.dags_test(demo.QC_DAG, log_name="reference-qc")
    assert qc.ok, qc.tail()
