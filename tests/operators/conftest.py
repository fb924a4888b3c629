"""Fixtures for the operator and sensor tests.

The ``dags_test`` tests run the DAGs in ``tests/operators/dags`` with ``airflow dags test``
(one :class:`AirflowSandbox` per session, migrated once) against one in-process
:class:`CometEmulator`. Each DAG runs at most once per session: :func:`optest_runs` caches
the outcome, with the emulator's statistics and render bytes captured right after the run
(the emulator is reset before each run, so those numbers belong to that run alone).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from _optest_support import DAGS_FOLDER, RENDER_SECONDS, SECRET, DagRun, OpTestEnv

from comet_provider.testing.airflow_sandbox import AirflowSandbox


@pytest.fixture(scope="session")
def optest_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OpTestEnv]:
    from comet_provider.testing import CometEmulator
    from comet_provider.testing.render import make_sample_video

    root = tmp_path_factory.mktemp("optest")
    media = root / "media"
    sample = make_sample_video(media / "clip.mp4", seconds=2)
    make_reference_image(media / "look.png")
    emulator = CometEmulator(
        api_key=SECRET,
        not_exist_seconds=0.3,
        queue_seconds=0.2,
        render_seconds=RENDER_SECONDS,
        media_dir=str(media),
        render="ffmpeg",
    ).start()
    try:
        sandbox = AirflowSandbox(root / "airflow", DAGS_FOLDER)
        sandbox.migrate()
        yield OpTestEnv(emulator, sandbox, media, sample, media / "late.mp4", root / "out")
    finally:
        emulator.stop()


@pytest.fixture(scope="session")
def optest_runs(optest_env: OpTestEnv) -> Callable[[str], DagRun]:
    """``run(dag_id)``: the session's one ``airflow dags test`` run of that DAG."""
    cache: dict[str, DagRun] = {}

    def run(dag_id: str) -> DagRun:
        if dag_id in cache:
            return cache[dag_id]
        env = optest_env
        env.emulator.reset()
        env.late_video.unlink(missing_ok=True)
        shutil.rmtree(env.out_dir, ignore_errors=True)
        result = env.sandbox.dags_test(dag_id, env=env.dag_env(), timeout=600)
        # Kept for debugging: pytest keeps the last few basetemp folders.
        (env.sandbox.home / f"dags-test-{dag_id}.log").write_text(result.output)
        stats = env.emulator.stats()
        renders: dict[str, bytes] = {}
        with httpx.Client(base_url=env.emulator.url, timeout=30, trust_env=False) as client:
            for task_id, task in stats["tasks"].items():
                if task["render"] == "done":
                    response = client.get(f"/renders/{task_id}.mp4")
                    response.raise_for_status()
                    renders[task_id] = response.content
        run_ids = env.sandbox.query("select run_id from dag_run where dag_id = ? order by id desc limit 1", dag_id)
        assert run_ids, f"`airflow dags test {dag_id}` created no run:\n{result.output[-6000:]}"
        cache[dag_id] = DagRun(dag_id, result, env.sandbox, run_ids[0][0], stats, renders)
        return cache[dag_id]

    return run


@pytest.fixture(scope="session")
def main_run(optest_runs: Callable[[str], DagRun]) -> DagRun:
    return optest_runs("optest_main")


def make_reference_image(path: Path) -> Path:
    """A small orange PNG (the official route's style reference), drawn by the emulator's ffmpeg."""
    import subprocess

    from comet_provider.testing.render import ffmpeg_exe

    color = "color=c=0xff8800:s=64x64"
    cmd = [ffmpeg_exe(), "-v", "error", "-y", "-f", "lavfi", "-i", color, "-frames:v", "1", str(path)]
    subprocess.run(cmd, check=True, capture_output=True, timeout=60)
    return path


@pytest.fixture(scope="session")
def official_run(optest_runs: Callable[[str], DagRun]) -> DagRun:
    return optest_runs("optest_official")


@pytest.fixture(scope="session")
def bad_input_run(optest_runs: Callable[[str], DagRun]) -> DagRun:
    return optest_runs("optest_bad_input")
