"""Shared pieces of the operator tests: the session's DAG runs and how to read them.

Imported by ``conftest.py`` and the test modules (a uniquely named module, so that it never
collides with another test folder's helpers).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from comet_provider.testing.airflow_sandbox import AirflowSandbox, DagTestResult

#: The emulator's API key: distinctive enough that finding it anywhere is a leak.
SECRET = "sk-optest-SECRET-5a1f0c9e7d3b"
DAGS_FOLDER = Path(__file__).parent / "dags"
#: Seconds each render takes in the emulator (longer than `retry_resume`'s timeout of 2 s).
RENDER_SECONDS = 3.0


@dataclass
class DagRun:
    """One ``airflow dags test`` run and what it left behind."""

    dag_id: str
    result: DagTestResult = field(repr=False)
    sandbox: AirflowSandbox = field(repr=False)
    run_id: str
    #: ``CometEmulator.stats()`` right after the run.
    stats: dict[str, Any] = field(repr=False)
    #: Runway task id -> the bytes of the emulator's render of it.
    renders: dict[str, bytes] = field(default_factory=dict, repr=False)

    @property
    def output(self) -> str:
        return self.result.output

    def query(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        return self.sandbox.query(sql, *params)

    def ti(self, task_id: str, map_index: int = -1) -> dict[str, Any]:
        """The task instance row (state, try_number, trigger_id, rendered_map_index, ...)."""
        rows = self.query(
            "select state, try_number, trigger_id, rendered_map_index from task_instance "
            "where dag_id = ? and run_id = ? and task_id = ? and map_index = ?",
            self.dag_id,
            self.run_id,
            task_id,
            map_index,
        )
        assert len(rows) == 1, f"no task instance {task_id}[{map_index}] in run {self.run_id}"
        state, try_number, trigger_id, rendered_map_index = rows[0]
        return {
            "state": state,
            "try_number": try_number,
            "trigger_id": trigger_id,
            "rendered_map_index": rendered_map_index,
        }

    def xcom(self, task_id: str, key: str = "return_value", map_index: int = -1) -> Any:
        rows = self.query(
            "select value from xcom where dag_id = ? and run_id = ? and task_id = ? and key = ? and map_index = ?",
            self.dag_id,
            self.run_id,
            task_id,
            key,
            map_index,
        )
        assert len(rows) == 1, f"no XCom {key!r} from {task_id}[{map_index}]; the run's output:\n{self.tail()}"
        value = rows[0][0]
        return json.loads(value) if isinstance(value, (str, bytes)) else value

    def tries(self, task_id: str, map_index: int = -1) -> list[str]:
        """The log of each ``_run_task`` of this task, in order (one per try; a deferral stays in its try)."""
        start = f"[DAG TEST] starting task_id={task_id} map_index={map_index}"
        end = f"[DAG TEST] end task task_id={task_id} map_index={map_index}"
        sections: list[str] = []
        current: list[str] | None = None
        for line in self.output.splitlines():
            if current is None:
                if start in line:
                    current = [line]
            else:
                current.append(line)
                if end in line:
                    sections.append("\n".join(current))
                    current = None
        if current is not None:
            sections.append("\n".join(current))
        return sections

    def log(self, task_id: str, map_index: int = -1) -> str:
        """Everything this task logged, all tries together."""
        sections = self.tries(task_id, map_index)
        assert sections, f"{task_id}[{map_index}] never ran; the run's output:\n{self.tail()}"
        return "\n".join(sections)

    def emulator_tasks(self, prompt: str) -> list[dict[str, Any]]:
        """The emulator's tasks submitted with ``prompt``, oldest first, each with its ``id``."""
        tasks = [{"id": tid, **task} for tid, task in self.stats["tasks"].items() if task["prompt"] == prompt]
        return sorted(tasks, key=lambda task: task["submitted_at"])

    def tail(self, chars: int = 6000) -> str:
        return self.output[-chars:]


@dataclass
class OpTestEnv:
    emulator: Any
    sandbox: AirflowSandbox
    media_dir: Path
    sample: Path
    late_video: Path
    out_dir: Path

    def dag_env(self) -> dict[str, str]:
        return {
            "AIRFLOW_CONN_COMET_DEFAULT": self.emulator.connection_json(),
            "OPTEST_VIDEO_URL": self.emulator.media_url(self.sample.name),
            "OPTEST_LATE_VIDEO_URL": self.emulator.media_url(self.late_video.name),
            "OPTEST_LATE_VIDEO_PATH": str(self.late_video),
            "OPTEST_SAMPLE_PATH": str(self.sample),
            "OPTEST_OUT_DIR": str(self.out_dir),
            "OPTEST_REFERENCE_PATH": str(self.media_dir / "look.png"),
            "OPTEST_REFERENCE_URL": self.emulator.media_url("look.png"),
        }
