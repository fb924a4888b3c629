"""Everything the integration scenarios run against: emulators, a sample clip, the Airflow cluster.

Each scenario gets its own CometAPI emulator (its own counters and timings) and a connection
``comet_<scenario>`` pointing at it; ``comet_default`` points at the first one. All emulators
share one API key, so the secret scan has one string to look for.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import subprocess
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cluster import REPO_ROOT, AirflowCluster
from postgres import find_pg_bindir

BUILD_DIR = REPO_ROOT / "build"
LOGS_DIR = BUILD_DIR / "integration-logs"
DAGS_DIR = Path(__file__).resolve().parent / "dags"
INSTALL_SCRIPT = REPO_ROOT / "scripts" / "install-system-deps.sh"
CLIP = "clip.mp4"

# Per scenario: the emulator's settings. Render times are short but longer than the worker's
# part of a task, so the deferral is what the figures show. Every render also ends 10+ s after
# its task deferred: Airflow 3.3.2's scheduler fails a resumed task when the trigger fires
# before it has processed the LocalExecutor's event for the deferring run (seen here under load).
EMULATORS: dict[str, dict[str, Any]] = {
    "s1": {"render_seconds": 20.0},
    "s2": {"render_seconds": 45.0},
    "s3": {"render_seconds": 25.0},
    "s4": {"render_seconds": 45.0},
    "s5": {
        "render_seconds": 15.0,
        # On the feed: every kind of trouble, at random. On submit only 429 (safe to retry:
        # the request was refused before anything started), from the one-shot queue below.
        "faults": {
            "rate": 0.35,
            "kinds": ["429", "500", "502_html", "drop", "task_not_exist"],
            "endpoints": ["feed"],
            "retry_after": 1,
            "seed": 7,
        },
        "fail_next": [{"endpoint": "submit", "kind": "429", "count": 6}],
    },
    "s8": {"render_seconds": 3.0},
}


def ensure_system_deps() -> None:
    """PostgreSQL and Chromium from Debian, installed by the project's script when missing."""
    need = False
    try:
        find_pg_bindir()
    except Exception:
        need = True
    if not (shutil.which("chromium") and shutil.which("chromedriver")):
        need = True
    if need:
        subprocess.run(["bash", str(INSTALL_SCRIPT)], check=True, timeout=900)


class Stack:
    """Emulators + sample clip + AirflowCluster; ``start()`` once per session, ``close()`` at the end."""

    def __init__(self, *, parallelism: int = 8) -> None:
        from comet_provider.testing import EmulatorProcess

        self.api_key = f"sk-comet-it-{secrets.token_hex(16)}"
        self.media_dir = Path(tempfile.mkdtemp(prefix="comet-it-media-"))
        self.emulators: dict[str, Any] = {}
        self._emulator_cls = EmulatorProcess
        self.parallelism = parallelism
        self.cluster: AirflowCluster | None = None
        self.timings: dict[str, float] = {}

    def video_url(self, scenario: str) -> str:
        return str(self.emulators[scenario].media_url(CLIP))

    def start(self) -> Stack:
        t0 = time.monotonic()
        try:
            from comet_provider.testing.render import make_sample_video

            make_sample_video(self.media_dir / CLIP, seconds=2, size="160x120", rate=10)
            env: dict[str, str] = {}
            for name, config in EMULATORS.items():
                emu = self._emulator_cls(
                    api_key=self.api_key,
                    render="copy",
                    media_dir=str(self.media_dir),
                    not_exist_seconds=1.0,
                    queue_seconds=0.5,
                    **config,
                )
                emu.start()
                self.emulators[name] = emu
                env[f"AIRFLOW_CONN_COMET_{name.upper()}"] = emu.connection_json()
            env["AIRFLOW_CONN_COMET_DEFAULT"] = self.emulators["s1"].connection_json()
            self.timings["emulators"] = time.monotonic() - t0
            self.cluster = AirflowCluster(
                dags_folder=DAGS_DIR, logs_dir=LOGS_DIR, extra_env=env, parallelism=self.parallelism
            )
            self.cluster.start()
            self.timings.update({f"cluster_{k}": v for k, v in self.cluster.timings.items()})
        except BaseException:
            self.close()
            raise
        self.timings["total"] = time.monotonic() - t0
        return self

    def reset_emulators(self, configs: Mapping[str, Mapping[str, Any]] | None = None) -> None:
        for name, emu in self.emulators.items():
            emu.reset(config=True)
            if configs and name in configs:
                emu.configure(**configs[name])

    def leftovers(self) -> list[str]:
        """Processes or ports of this stack still alive after ``close()``."""
        found = self.cluster.leftovers() if self.cluster is not None else []
        for name, emu in self.emulators.items():
            proc = getattr(emu, "process", None)
            if proc is not None and proc.poll() is None:
                found.append(f"emulator {name} pid {proc.pid}")
        return found

    def close(self) -> None:
        if self.cluster is not None:
            with contextlib.suppress(Exception):
                self.cluster.close()
        for name, emu in self.emulators.items():
            log_path = getattr(emu, "log_path", None)
            if log_path is not None and Path(log_path).exists():
                with contextlib.suppress(OSError):
                    LOGS_DIR.mkdir(parents=True, exist_ok=True)
                    shutil.copy(log_path, LOGS_DIR / f"emulator-{name}.log")
            with contextlib.suppress(Exception):
                emu.stop()
        shutil.rmtree(self.media_dir, ignore_errors=True)


def reset_logs_dir() -> None:
    """Fresh build/integration-logs for this session (the previous one's logs are replaced)."""
    if LOGS_DIR.exists():
        shutil.rmtree(LOGS_DIR, ignore_errors=True)
    LOGS_DIR.mkdir(parents=True, exist_ok=True)
    os.chmod(LOGS_DIR, 0o755)
