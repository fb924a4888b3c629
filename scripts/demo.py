"""One-command demo of the example DAGs: ``make demo`` (or ``python scripts/demo.py``).

On a machine with nothing but this repo installed (``pip install -e .[dev]``), it:

1. sets up a scratch Airflow in ``.demo/airflow`` (SQLite, ``airflow db migrate``);
2. generates a sample source video (an ffmpeg test pattern with motion and a tone, 10 s,
   so it is split into several clips) in ``.demo/storage/incoming/<day>/``;
3. starts the local CometAPI emulator (it renders real restyles with ffmpeg, and serves the
   staged clips at ``/media/...``), creates the ``runway`` pool and the connections;
4. draws a reference style image into ``.demo/storage/references/`` and runs
   ``runway_media_pipeline`` with ``airflow dags test`` in the 3 gen4 styles plus one that
   matches that image through ``gen4_aleph`` (:func:`reference_style`; its spend plan: 12
   renders to submit, under the approval threshold), then ``runway_render_qc``;
5. prints where the stitched videos, posters, contact sheet and QC report are, and the wall time.

No network beyond loopback, no API key. The functions here are also what the end-to-end
test (``tests/dags/test_dags_pipeline_e2e.py``) uses, so the demo and the test cannot drift.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from comet_provider.testing.airflow_sandbox import AirflowSandbox, DagTestResult
from comet_provider.testing.render import make_sample_video

if TYPE_CHECKING:
    from comet_provider.testing import EmulatorProcess

REPO_ROOT = Path(__file__).resolve().parents[1]
DAGS_FOLDER = REPO_ROOT / "dags"
DEMO_ROOT = REPO_ROOT / ".demo"

PIPELINE_DAG = "runway_media_pipeline"
QC_DAG = "runway_render_qc"
MINIMAL_DAG = "runway_restyle_minimal"
ASSET_NAME = "comet_runway_restyled_videos"
POOL = "runway"
NOTIFY_INBOX = "notifications"
# Emulator timings: each render takes about 2 s, with the API's quirks (a fresh task id is
# unknown for a moment, then queued) still there.
EMULATOR_TIMINGS: dict[str, Any] = {"not_exist_seconds": 0.3, "queue_seconds": 0.2, "render_seconds": 1.0}
# The pipeline processes the data interval before its logical date: a run at 2025-06-02
# (daily intervals) handles the videos that arrived on 2025-06-01.
DEMO_DAY = "2025-06-01"
DEMO_LOGICAL_DATE = "2025-06-02"
DEMO_STYLES = {
    "pixel-art": "pixelated 8-bit video game style, chunky pixels",
    "pencil-sketch": "hand-drawn pencil sketch, crisp edges on paper",
    "neon": "neon cyberpunk glow, saturated night colors",
}

# The example of a style matched to a reference image (official route): see reference_style().
REFERENCE_STYLE = "sunset-match"


@dataclass
class Sandbox:
    """A scratch Airflow plus the emulator and storage the example DAGs use.

    ``env`` is added to the environment of every ``airflow`` command: the emulator as
    ``comet_default``, its inbox as ``runway_notify``, the pipeline Variable.
    """

    root: Path
    airflow: AirflowSandbox
    storage: Path
    media_dir: Path
    logs: Path
    env: dict[str, str] = field(default_factory=dict)
    emulator: EmulatorProcess | None = None
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def storage_uri(self) -> str:
        return "file://" + str(self.storage)

    def incoming(self, day: str = DEMO_DAY) -> Path:
        return self.storage / "incoming" / day

    def published(self, day: str = DEMO_DAY) -> Path:
        return self.storage / "published" / day

    def dags_test(
        self,
        dag_id: str,
        logical_date: str | None = None,
        *,
        conf: Mapping[str, Any] | None = None,
        log_name: str | None = None,
    ) -> DagTestResult:
        """``airflow dags test`` one DAG run; its output goes to ``logs/<log_name or dag_id>.log``."""
        log_path = self.logs / f"{log_name or dag_id}.log"
        return self.airflow.dags_test(dag_id, logical_date, conf=conf, env=self.env, log_path=log_path)

    def asset_events(self, asset_name: str = ASSET_NAME) -> list[dict[str, Any]]:
        return self.airflow.asset_events(asset_name)


# ---------------------------------------------------------------------------------------- sandbox


def pipeline_settings(sandbox: Sandbox, emulator_url: str, **overrides: Any) -> dict[str, Any]:
    """The ``comet_runway_pipeline`` Variable for the demo: local storage, clips staged on the emulator."""
    return {
        "storage_root": sandbox.storage_uri,
        "staging_root": "file://" + str(sandbox.media_dir),
        "public_url_template": emulator_url + "/media/{key}",
        "styles": DEMO_STYLES,
        "clip_seconds": 4,
        "poll_interval": 1,
        "render_timeout_seconds": 300,
        "notify_endpoint": f"/_emulator/inbox/{NOTIFY_INBOX}",
        **overrides,
    }


@contextmanager
def demo_sandbox(
    root: Path,
    *,
    pool_slots: int = 3,
    settings: Mapping[str, Any] | None = None,
    emulator_config: Mapping[str, Any] | None = None,
) -> Iterator[Sandbox]:
    """Fresh scratch Airflow under ``root`` (wiped first), the emulator running, pool and connections made."""
    from comet_provider.testing import EmulatorProcess

    if root.exists():
        shutil.rmtree(root)
    storage, media_dir, logs = root / "storage", root / "emulator-media", root / "logs"
    for d in (storage, media_dir, logs):
        d.mkdir(parents=True)
    airflow = AirflowSandbox(
        root / "airflow", DAGS_FOLDER, pythonpath=[REPO_ROOT], extra_env={"COMET_RUNWAY_POOL": POOL}
    )
    sandbox = Sandbox(root=root, airflow=airflow, storage=storage, media_dir=media_dir, logs=logs)
    airflow.migrate()
    # --include-deferred: a deferred render keeps its slot, so the pool bounds renders in flight
    airflow.airflow("pools", "set", POOL, str(pool_slots), "Runway renders", "--include-deferred", check=True)
    config = {**EMULATOR_TIMINGS, **(emulator_config or {})}
    with EmulatorProcess(media_dir=str(media_dir), port=0, **config) as emulator:
        sandbox.emulator = emulator
        sandbox.settings = pipeline_settings(sandbox, emulator.url, **(settings or {}))
        sandbox.env.update(
            {
                "AIRFLOW_CONN_COMET_DEFAULT": emulator.connection_json(),
                "AIRFLOW_CONN_RUNWAY_NOTIFY": json.dumps({"conn_type": "http", "host": emulator.url}),
                "AIRFLOW_VAR_COMET_RUNWAY_PIPELINE": json.dumps(sandbox.settings),
                "AIRFLOW_VAR_COMET_RUNWAY_OUTPUT_ROOT": "file://" + str(storage / "minimal"),
            }
        )
        yield sandbox


def sample_video(path: Path, seconds: float = 10.0) -> Path:
    """The demo's source video: a 320x240, 24 fps test pattern with motion and a 440 Hz tone."""
    return make_sample_video(path, seconds=seconds, size="320x240", rate=24, tone=True)


def reference_style(sandbox: Sandbox) -> dict[str, Any]:
    """The example reference style: a sunset-coloured style image drawn into storage, and a
    ``gen4_aleph`` style entry restyling to match it (the file reaches Runway as a ``data:`` URI)."""
    from PIL import Image, ImageDraw

    image = sandbox.storage / "references" / "sunset.png"
    image.parent.mkdir(parents=True, exist_ok=True)
    picture = Image.new("RGB", (320, 240))
    draw = ImageDraw.Draw(picture)
    for y in range(240):  # deep orange at the top to magenta at the bottom, a yellow sun
        t = y / 239
        draw.line([(0, y), (319, y)], fill=(round(250 - 90 * t), round(120 - 90 * t), round(40 + 100 * t)))
    draw.ellipse((120, 60, 200, 140), fill=(255, 210, 80))
    picture.save(image)
    entry = {
        "prompt": "repaint the scene in the colours and mood of the reference picture",
        "model": "gen4_aleph",
        "references": ["file://" + str(image)],
        "seed": 42,
        "ratio": "1104:832",  # Runway's output ratio nearest the sample's 4:3
    }
    return {REFERENCE_STYLE: entry}


def local_path(uri: str) -> Path:
    return Path(uri.removeprefix("file://"))


# -------------------------------------------------------------------------------------------- main


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--root", type=Path, default=DEMO_ROOT, help="scratch folder (wiped), default .demo/")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of the sample video")
    parser.add_argument("--render-seconds", type=float, default=1.0, help="emulated render time per clip")
    args = parser.parse_args(argv)

    started = time.monotonic()

    def say(message: str) -> None:
        print(f"[{time.monotonic() - started:6.1f}s] {message}", flush=True)

    say(f"Scratch Airflow in {args.root / 'airflow'} (SQLite), emulator on loopback")
    with demo_sandbox(args.root, emulator_config={"render_seconds": args.render_seconds}) as sandbox:
        assert sandbox.emulator is not None
        source = sample_video(sandbox.incoming() / "city-walk.mp4", seconds=args.seconds)
        say(f"Sample video {source} ({args.seconds:g} s); emulator at {sandbox.emulator.url}")
        styles = {**DEMO_STYLES, **reference_style(sandbox)}
        say(f"airflow dags test {PIPELINE_DAG} {DEMO_LOGICAL_DATE}  (processes incoming/{DEMO_DAY}/) ...")
        run = sandbox.dags_test(PIPELINE_DAG, DEMO_LOGICAL_DATE, conf={"styles": styles})
        if not run.ok:
            print(run.tail(), file=sys.stderr)
            say(f"{PIPELINE_DAG} FAILED after {run.seconds:.0f} s; full log: {run.log_path}")
            return 1
        say(f"{PIPELINE_DAG} succeeded in {run.seconds:.0f} s (log: {run.log_path})")
        say(f"airflow dags test {QC_DAG}  (reads the Asset event just emitted) ...")
        qc = sandbox.dags_test(QC_DAG)
        if not qc.ok:
            print(qc.tail(), file=sys.stderr)
            say(f"{QC_DAG} FAILED after {qc.seconds:.0f} s; full log: {qc.log_path}")
            return 1
        say(f"{QC_DAG} succeeded in {qc.seconds:.0f} s")
        stats = sandbox.emulator.stats(tasks=False)
        notifications = sandbox.emulator.inbox(NOTIFY_INBOX)

    manifest = json.loads((sandbox.published() / "manifest.json").read_text())
    events = sandbox.asset_events()
    print()
    print(f"Published for {manifest['date']} ({sandbox.published()}):")
    for video in manifest["videos"]:
        print(f"  {video['video_id']}: {video['source_info']['duration']:g} s, {video['clips']} clips per style")
        for style, out in video["styles"].items():
            print(f"    {style:<14} {local_path(out['video'])}  ({out['duration']:g} s)")
        print(f"    {'contact sheet':<14} {local_path(video['contact_sheet'])}")
    print(f"  QC report      {sandbox.published() / 'qc-report.html'}")
    plan, done = manifest["spend_plan"]["totals"], manifest["renders"]
    print(
        f"  Spend plan     {plan['submit']} to submit ({plan['seconds_to_submit']:g} s of video), "
        f"{plan['reuse_stored']} reused from storage; done: {done['submit']} submitted, "
        f"{done['resume']} resumed, {done['reuse_stored']} reused"
    )
    print(f"  Asset events   {len(events)} x {ASSET_NAME} (extra: {events[-1]['extra'] if events else None})")
    print(f"  Notification   {len(notifications)} POST(s) received by the emulator's inbox")
    print(f"  Emulator       {json.dumps({k: v for k, v in stats.items() if not isinstance(v, (dict, list))})}")
    print(f"\nDone in {time.monotonic() - started:.0f} s wall time.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
