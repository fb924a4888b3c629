"""One-command demo of the example DAGs: ``make demo`` (or ``python scripts/demo.py``).

On a machine with nothing but this repo installed (``pip install -e .[dev]``), it:

1. sets up a scratch Airflow in ``.demo/airflow`` (SQLite, ``airflow db migrate``);
2. generates a sample source video (an ffmpeg test pattern with motion and a tone, 10 s,
   so it is split into several clips) in ``.demo/storage/incoming/<day>/``;
3. starts the local CometAPI emulator (it renders real restyles with ffmpeg, and serves the
   staged clips at ``/media/...``), creates the ``runway`` pool and the connections;
4. runs ``runway_media_pipeline`` with ``airflow dags test``, then ``runway_render_qc``;
5. prints where the stitched videos, posters, contact sheet and QC report are, and the wall time.

No network beyond loopback, no API key. The functions here are also what the end-to-end
test (``tests/dags/test_pipeline_e2e.py``) uses, so the demo and the test cannot drift.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

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


@dataclass
class Sandbox:
    """A scratch Airflow plus the emulator and storage the example DAGs use."""

    root: Path
    home: Path
    storage: Path
    media_dir: Path
    logs: Path
    env: dict[str, str]
    emulator: EmulatorProcess | None = None
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def storage_uri(self) -> str:
        return "file://" + str(self.storage)

    def incoming(self, day: str = DEMO_DAY) -> Path:
        return self.storage / "incoming" / day

    def published(self, day: str = DEMO_DAY) -> Path:
        return self.storage / "published" / day


@dataclass(frozen=True)
class DagsTestResult:
    dag_id: str
    returncode: int
    seconds: float
    log_path: Path

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


# ---------------------------------------------------------------------------------------- Airflow


def airflow_env(home: Path, dags_folder: Path = DAGS_FOLDER, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment minus any Airflow settings, plus a scratch Airflow's."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AIRFLOW__", "AIRFLOW_CONN_", "AIRFLOW_VAR_")) and k != "AIRFLOW_HOME"
    }
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags_folder),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
            "AIRFLOW__CORE__ALLOWED_DESERIALIZATION_CLASSES": "airflow.* comet_provider.*",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
            "PYTHONPATH": os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p),
            "COMET_RUNWAY_POOL": POOL,
            "NO_PROXY": "127.0.0.1,localhost",
            "no_proxy": "127.0.0.1,localhost",
        }
    )
    env.update(extra or {})
    return env


def airflow_cli(
    env: Mapping[str, str], *args: str, timeout: float = 300, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run ``airflow <args>`` (the venv's) with ``env``; raise with its output when it fails."""
    airflow = Path(sys.executable).with_name("airflow")
    cmd = [str(airflow) if airflow.exists() else "airflow", *args]
    proc = subprocess.run(
        cmd, env=dict(env), capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL, check=False
    )
    if check and proc.returncode != 0:
        raise RuntimeError(
            f"`airflow {' '.join(args)}` failed ({proc.returncode}):\n{(proc.stdout + proc.stderr)[-3000:]}"
        )
    return proc


def prepare_airflow_home(home: Path, env: Mapping[str, str]) -> None:
    """Create a fresh metadata database (SQLite) in ``home``."""
    home.mkdir(parents=True, exist_ok=True)
    airflow_cli(env, "db", "migrate", timeout=600)


def run_dags_test(
    env: Mapping[str, str],
    dag_id: str,
    logical_date: str | None = None,
    *,
    conf: Mapping[str, Any] | None = None,
    log_dir: Path,
    log_name: str | None = None,
    timeout: float = 900,
) -> DagsTestResult:
    """``airflow dags test`` one DAG run (deferred triggers run inline); output goes to
    ``log_dir/<log_name or dag_id>.log``."""
    args = ["dags", "test", dag_id]
    if logical_date:
        args.append(logical_date)
    if conf:
        args += ["--conf", json.dumps(conf)]
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{log_name or dag_id}.log"
    airflow = Path(sys.executable).with_name("airflow")
    started = time.monotonic()
    with log_path.open("w") as log:
        proc = subprocess.run(
            [str(airflow) if airflow.exists() else "airflow", *args],
            env=dict(env),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            timeout=timeout,
            check=False,
        )
    return DagsTestResult(dag_id, proc.returncode, time.monotonic() - started, log_path)


def asset_events(home: Path, asset_name: str = ASSET_NAME) -> list[dict[str, Any]]:
    """Events of an Asset in the sandbox's SQLite metadata DB, oldest first."""
    with sqlite3.connect(home / "airflow.db") as db:
        rows = db.execute(
            "SELECT e.id, e.extra, e.source_dag_id, e.source_task_id, e.source_run_id, e.timestamp "
            "FROM asset_event e JOIN asset a ON a.id = e.asset_id WHERE a.name = ? ORDER BY e.id",
            (asset_name,),
        ).fetchall()
    keys = ("id", "extra", "source_dag_id", "source_task_id", "source_run_id", "timestamp")
    events = [dict(zip(keys, row, strict=True)) for row in rows]
    for event in events:
        event["extra"] = json.loads(event["extra"] or "{}")
    return events


def task_states(home: Path, dag_id: str) -> dict[str, list[str]]:
    """``task_id -> [state of each map index]`` for the DAG's latest run."""
    with sqlite3.connect(home / "airflow.db") as db:
        run = db.execute("SELECT run_id FROM dag_run WHERE dag_id = ? ORDER BY id DESC LIMIT 1", (dag_id,)).fetchone()
        if run is None:
            return {}
        rows = db.execute(
            "SELECT task_id, state FROM task_instance WHERE dag_id = ? AND run_id = ? ORDER BY task_id, map_index",
            (dag_id, run[0]),
        ).fetchall()
    states: dict[str, list[str]] = {}
    for task_id, state in rows:
        states.setdefault(task_id, []).append(state)
    return states


# ------------------------------------------------------------------------------------------ media


def make_sample_video(path: Path, seconds: float = 10.0, size: str = "320x240", fps: int = 24) -> Path:
    """A test pattern with motion and a 440 Hz tone (``testsrc2`` + ``sine``), H.264/AAC MP4."""
    sys.path.insert(0, str(DAGS_FOLDER))
    from media_utils import ffmpeg_exe

    path.parent.mkdir(parents=True, exist_ok=True)
    video = ["-f", "lavfi", "-i", f"testsrc2=size={size}:rate={fps}:duration={seconds:g}"]
    tone = ["-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=44100:duration={seconds:g}"]
    encode = ["-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest"]
    subprocess.run(
        [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-nostdin", "-y", *video, *tone, *encode, str(path)],
        check=True,
        capture_output=True,
    )
    return path


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
    """Fresh scratch Airflow under ``root`` (wiped first), the emulator running, pool and connections made.

    ``sandbox.env`` is the environment for ``airflow`` commands: the emulator as
    ``comet_default``, its inbox as ``runway_notify``, the pipeline Variable.
    """
    from comet_provider.testing import EmulatorProcess

    if root.exists():
        shutil.rmtree(root)
    home, storage, media_dir, logs = root / "airflow", root / "storage", root / "emulator-media", root / "logs"
    for d in (home, storage, media_dir, logs):
        d.mkdir(parents=True)
    sandbox = Sandbox(root=root, home=home, storage=storage, media_dir=media_dir, logs=logs, env=airflow_env(home))
    prepare_airflow_home(home, sandbox.env)
    # --include-deferred: a deferred render keeps its slot, so the pool bounds renders in flight
    airflow_cli(sandbox.env, "pools", "set", POOL, str(pool_slots), "Runway renders", "--include-deferred")
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
        source = make_sample_video(sandbox.incoming() / "city-walk.mp4", seconds=args.seconds)
        say(f"Sample video {source} ({args.seconds:g} s); emulator at {sandbox.emulator.url}")
        say(f"airflow dags test {PIPELINE_DAG} {DEMO_LOGICAL_DATE}  (processes incoming/{DEMO_DAY}/) ...")
        run = run_dags_test(sandbox.env, PIPELINE_DAG, DEMO_LOGICAL_DATE, log_dir=sandbox.logs)
        if not run.ok:
            print(run.log_tail(), file=sys.stderr)
            say(f"{PIPELINE_DAG} FAILED after {run.seconds:.0f} s; full log: {run.log_path}")
            return 1
        say(f"{PIPELINE_DAG} succeeded in {run.seconds:.0f} s (log: {run.log_path})")
        say(f"airflow dags test {QC_DAG}  (reads the Asset event just emitted) ...")
        qc = run_dags_test(sandbox.env, QC_DAG, log_dir=sandbox.logs)
        if not qc.ok:
            print(qc.log_tail(), file=sys.stderr)
            say(f"{QC_DAG} FAILED after {qc.seconds:.0f} s; full log: {qc.log_path}")
            return 1
        say(f"{QC_DAG} succeeded in {qc.seconds:.0f} s")
        stats = sandbox.emulator.stats(tasks=False)
        notifications = sandbox.emulator.inbox(NOTIFY_INBOX)

    manifest = json.loads((sandbox.published() / "manifest.json").read_text())
    events = asset_events(sandbox.home)
    print()
    print(f"Published for {manifest['date']} ({sandbox.published()}):")
    for video in manifest["videos"]:
        print(f"  {video['video_id']}: {video['source_info']['duration']:g} s, {video['clips']} clips per style")
        for style, out in video["styles"].items():
            print(f"    {style:<14} {local_path(out['video'])}  ({out['duration']:g} s)")
        print(f"    {'contact sheet':<14} {local_path(video['contact_sheet'])}")
    print(f"  QC report      {sandbox.published() / 'qc-report.html'}")
    print(f"  Asset events   {len(events)} x {ASSET_NAME} (extra: {events[-1]['extra'] if events else None})")
    print(f"  Notification   {len(notifications)} POST(s) received by the emulator's inbox")
    print(f"  Emulator       {json.dumps({k: v for k, v in stats.items() if not isinstance(v, (dict, list))})}")
    print(f"\nDone in {time.monotonic() - started:.0f} s wall time.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
