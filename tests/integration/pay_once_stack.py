"""What the pay-once scenarios (test_pay_once.py) run against, on the session's Airflow cluster.

The example pipeline (``dags/runway_media_pipeline.py``, loaded through
``dags/it_media_pipeline.py``) with local storage: every day's folder
``incoming/<day>/`` holds one 4 s video, cut into 2 clips of 2 s, restyled in 2 styles
(4 renders a day). Clips are staged in the folder an emulator serves at ``/media/``,
so a submission's video URL names its day and clip and its prompt names its style:
the emulator's task list says how often each (day, clip, style) was paid for.

Two emulators of its own: ``comet_pay`` for the pipeline (its ``peak_in_flight`` is
the pool's proof) and ``comet_pay_kill`` for the worker-kill DAG, so that scenario
can overlap the backfill without touching the pipeline's counters.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import shutil
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from cluster import AirflowCluster
from stack import LOGS_DIR, Stack

DAG_ID = "runway_media_pipeline"
KILL_DAG_ID = "it_pay_once_worker_kill"
POOL = "runway"
POOL_SLOTS = 3  # fewer than the 16 backfilled renders: the pool, not the DAG, bounds them
VIDEO_ID = "walk"
CLIPS = ("clip_000", "clip_001")
STYLES = {
    "pixel-art": "pixelated 8-bit video game style",
    "neon": "neon cyberpunk glow",
}
BACKFILL_DAYS = ("2025-06-01", "2025-06-02", "2025-06-03", "2025-06-04")
CLEARED_DAYS = ("2025-06-03", "2025-06-04")
EXPIRED_DAY = "2025-06-01"
FORCED_DAY = "2025-06-02"
APPROVED_DAY = "2025-06-05"
REJECTED_DAY = "2025-06-06"
OVER_CAP_DAY = "2025-06-07"
ALL_DAYS = (*BACKFILL_DAYS, APPROVED_DAY, REJECTED_DAY, OVER_CAP_DAY)
RENDERS_PER_DAY = len(CLIPS) * len(STYLES)
# Manual runs (their conf): the spend plan's gates, and another take of a backfilled day.
MANUAL_RUNS: dict[str, dict[str, Any]] = {
    "over_cap": {"date": OVER_CAP_DAY, "max_renders_per_run": RENDERS_PER_DAY - 1},
    "rejected": {"date": REJECTED_DAY, "approval_over_renders": RENDERS_PER_DAY - 2},
    "approved": {"date": APPROVED_DAY, "approval_over_renders": RENDERS_PER_DAY - 2},
    "forced": {"date": FORCED_DAY, "force_render": True},
}
# Limits in the Variable: a day's 4 renders need no approval; the gate runs lower them per run.
MAX_RENDERS_PER_RUN = 6
APPROVAL_OVER_RENDERS = RENDERS_PER_DAY
# Renders end 10+ s after their task deferred (see the scheduler race in README.md).
RENDER_SECONDS = 12.0
# The worker-kill render outlasts the kill and the retry's start.
KILL_RENDER_SECONDS = 20.0

Key = tuple[str, str, str]  # (day, clip, style)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class PayOnceStack:
    """Emulators, storage, connections, pool and Variable for the pay-once scenarios."""

    def __init__(self, stack: Stack) -> None:
        assert stack.cluster is not None
        self.stack = stack
        self.cluster: AirflowCluster = stack.cluster
        self.root = Path(tempfile.mkdtemp(prefix="comet-it-pay-once-"))
        self.storage = self.root / "storage"
        self.staging = self.root / "staging"
        self.emulator: Any = None
        self.kill_emulator: Any = None
        self.runs: dict[str, str] = {}  # launched manual runs: name -> run id
        self.marks: dict[str, float] = {}  # monotonic times of milestones, for durations
        self.backfill_output = ""

    # -- setup ------------------------------------------------------------------------------

    def start(self) -> PayOnceStack:
        from comet_provider.testing import EmulatorProcess
        from comet_provider.testing.render import make_sample_video

        self.marks["start"] = time.monotonic()
        for folder in (self.storage, self.staging):
            folder.mkdir(parents=True)
        source = make_sample_video(self.root / "walk.mp4", seconds=4, size="160x120", rate=10, tone=True)
        for day in ALL_DAYS:
            incoming = self.storage / "incoming" / day
            incoming.mkdir(parents=True)
            shutil.copy(source, incoming / f"{VIDEO_ID}.mp4")
        common = {
            "api_key": self.stack.api_key,
            "render": "copy",
            "media_dir": str(self.staging),
            "not_exist_seconds": 1.0,
            "queue_seconds": 0.5,
        }
        self.emulator = EmulatorProcess(render_seconds=RENDER_SECONDS, **common).start()
        self.kill_emulator = EmulatorProcess(render_seconds=KILL_RENDER_SECONDS, **common).start()
        for conn_id, emu in (("comet_pay", self.emulator), ("comet_pay_kill", self.kill_emulator)):
            self.cluster.set_connection(conn_id, **json.loads(emu.connection_json()))
        self.cluster.set_connection("runway_notify", conn_type="http", host=self.emulator.url)
        # As the pipeline's docs say: a deferred render keeps its slot.
        self.cluster.cli("pools", "set", POOL, str(POOL_SLOTS), "Runway renders", "--include-deferred")
        self.cluster.set_variable("comet_runway_pipeline", json.dumps(self.settings()))
        for dag_id in (DAG_ID, KILL_DAG_ID):
            self.cluster.wait_dag(dag_id)
        self.marks["ready"] = time.monotonic()
        return self

    def settings(self) -> dict[str, Any]:
        """The pipeline's Variable ``comet_runway_pipeline``."""
        return {
            "storage_root": f"file://{self.storage}",
            "staging_root": f"file://{self.staging}",
            "public_url_template": f"{self.emulator.url}/media/{{key}}",
            "styles": STYLES,
            "clip_seconds": 2,
            "min_clip_seconds": 1,
            "comet_conn_id": "comet_pay",
            "poll_interval": 1,
            "render_timeout_seconds": 300,
            "notify_endpoint": "/_emulator/inbox/notify",
            "max_renders_per_run": MAX_RENDERS_PER_RUN,
            "approval_over_renders": APPROVAL_OVER_RENDERS,
        }

    def close(self) -> None:
        for name, emu in (("pay", self.emulator), ("pay-kill", self.kill_emulator)):
            if emu is None:
                continue
            log_path = getattr(emu, "log_path", None)
            if log_path is not None and Path(log_path).exists():
                with contextlib.suppress(OSError):
                    shutil.copy(log_path, LOGS_DIR / f"emulator-{name}.log")
            with contextlib.suppress(Exception):
                emu.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    # -- launching --------------------------------------------------------------------------

    def start_backfill(self) -> None:
        """``airflow backfill create`` over the backfill days, once."""
        if "backfill" in self.marks:
            return
        self.marks["backfill"] = time.monotonic()
        self.backfill_output = self.cluster.cli(
            "backfill",
            "create",
            "--dag-id",
            DAG_ID,
            "--from-date",
            BACKFILL_DAYS[0],
            "--to-date",
            BACKFILL_DAYS[-1],
            "--max-active-runs",
            str(len(BACKFILL_DAYS)),
        )

    def launch(self, name: str) -> str:
        """The manual run ``name`` of :data:`MANUAL_RUNS` (triggered once); returns its run id."""
        if name not in self.runs:
            now = dt.datetime.now(dt.timezone.utc)
            run_id = f"it_pay_{name}_{int(now.timestamp() * 1000)}"
            # With a logical date, as the UI's trigger form sends (the `date` param picks the day).
            self.runs[name] = self.cluster.trigger(
                DAG_ID, MANUAL_RUNS[name], run_id=run_id, logical_date=now.isoformat()
            )
            self.marks[f"launch_{name}"] = time.monotonic()
        return self.runs[name]

    def launch_gate_runs(self) -> None:
        """The runs the spend plan must stop. They hold no pool slot while they wait for a
        person, so they start during the backfill."""
        for name in ("over_cap", "rejected", "approved"):
            self.launch(name)

    def stop_runs(self) -> None:
        """Leave nothing of these scenarios running for the next test module (after a failure)."""
        for dag_id in (DAG_ID, KILL_DAG_ID):
            with contextlib.suppress(Exception):
                self.cluster.api("PATCH", f"/dags/{dag_id}", json={"is_paused": True})
            rows = self.cluster.sql(
                "SELECT run_id FROM dag_run WHERE dag_id = %s AND state IN ('queued', 'running')", (dag_id,)
            )
            for (run_id,) in rows:
                with contextlib.suppress(Exception):
                    self.cluster.api("PATCH", f"/dags/{dag_id}/dagRuns/{run_id}", json={"state": "failed"})

    # -- observing --------------------------------------------------------------------------

    def backfill_runs(self) -> dict[str, str]:
        """day -> run id of the backfill's runs."""
        rows = self.cluster.sql(
            "SELECT run_id, logical_date FROM dag_run WHERE dag_id = %s AND run_type = 'backfill' ORDER BY 2",
            (DAG_ID,),
        )
        return {logical.strftime("%Y-%m-%d"): str(run_id) for run_id, logical in rows}

    def submissions(self) -> Counter[Key]:
        """Renders the pipeline's emulator was asked for, per (day, clip, style)."""
        by_prompt = {prompt: style for style, prompt in STYLES.items()}
        counts: Counter[Key] = Counter()
        for (video, prompt), n in self.emulator.submission_counts().items():
            day, _video_id, clip = urlsplit(video).path.split("/media/", 1)[1].split("/")
            counts[(day, clip.rsplit(".", 1)[0], by_prompt.get(prompt, prompt))] += n
        return counts

    def submitted_on(self, day: str) -> int:
        return sum(n for (d, _, _), n in self.submissions().items() if d == day)

    def render_path(self, day: str, clip: str, style: str) -> Path:
        return self.storage / "renders" / day / VIDEO_ID / style / f"{clip}.mp4"

    def stored(self, days: tuple[str, ...]) -> dict[str, tuple[str, int]]:
        """Every render (and sidecar) of ``days``: relative path -> (sha256, mtime_ns)."""
        found = {}
        for day in days:
            folder = self.storage / "renders" / day
            for path in sorted(p for p in folder.rglob("*") if p.is_file()):
                found[str(path.relative_to(self.storage))] = (sha256(path), path.stat().st_mtime_ns)
        return found

    def restyles(self, run_id: str) -> list[dict[str, Any]]:
        """The run's restyle task instances, by map index."""
        tis = self.cluster.task_instances(DAG_ID, run_id, task_id="restyle")
        return sorted(tis, key=lambda t: t["map_index"])

    def results(self, run_id: str) -> dict[int, dict[str, Any]]:
        """map index -> the restyle's result (its ``decision``, ``task_id``, ``output_path``)."""
        return {
            t["map_index"]: self.cluster.xcom(DAG_ID, run_id, "restyle", map_index=t["map_index"])
            for t in self.restyles(run_id)
        }

    def map_index_of(self, run_id: str, clip: str, style: str) -> int:
        for index, result in self.results(run_id).items():
            if str(result.get("output_path", "")).endswith(f"/{VIDEO_ID}/{style}/{clip}.mp4"):
                return index
        raise AssertionError(f"no restyle of {clip} in {style} in {run_id}")

    def pending_approval(self, run_id: str) -> dict[str, Any] | None:
        """The run's unanswered approval request, once its task is waiting for it."""
        for detail in self.cluster.hitl_details(DAG_ID, run_id):
            if not detail["response_received"] and detail["task_instance"]["state"] in ("awaiting_input", "deferred"):
                return detail
        return None

    def seconds_since(self, mark: str) -> float:
        return round(time.monotonic() - self.marks[mark], 2)
