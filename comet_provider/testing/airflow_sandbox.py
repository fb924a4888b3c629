"""Run DAGs offline: a scratch Airflow home (SQLite) and ``airflow dags test`` in a subprocess.

Used by the demo, the provider's tests and benchmarks, and handy for testing your
own DAGs against the emulator::

    sandbox = AirflowSandbox(tmp_path / "airflow", dags_folder="dags")
    result = sandbox.dags_test("my_dag", env={"AIRFLOW_CONN_COMET_DEFAULT": emu.connection_json()})
    assert result.ok, result.output
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["AirflowSandbox", "DagTestResult"]


@dataclass(frozen=True)
class DagTestResult:
    returncode: int
    output: str
    seconds: float

    @property
    def ok(self) -> bool:
        return self.returncode == 0


class AirflowSandbox:
    """A private ``AIRFLOW_HOME`` with a migrated SQLite metadata DB."""

    def __init__(self, home: str | os.PathLike[str], dags_folder: str | os.PathLike[str]) -> None:
        self.home = Path(home).resolve()
        self.dags_folder = Path(dags_folder).resolve()
        self.home.mkdir(parents=True, exist_ok=True)

    @property
    def db_path(self) -> Path:
        return self.home / "airflow.db"

    def env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            {
                "AIRFLOW_HOME": str(self.home),
                "AIRFLOW__CORE__DAGS_FOLDER": str(self.dags_folder),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{self.db_path}",
                "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
                "PYTHONUNBUFFERED": "1",
            }
        )
        env.update(extra or {})
        return env

    def airflow(self, *args: str, env: dict[str, str] | None = None, timeout: float = 600) -> DagTestResult:
        """Run one ``airflow`` CLI command in this home."""
        started = time.monotonic()
        command = [str(Path(sys.executable).with_name("airflow")), *args]
        proc = subprocess.run(
            command,
            env=self.env(env),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=timeout,
            check=False,
        )
        return DagTestResult(proc.returncode, proc.stdout, time.monotonic() - started)

    def migrate(self) -> None:
        """Create the metadata DB once (a marker file skips it later)."""
        marker = self.home / ".migrated"
        if marker.exists():
            return
        result = self.airflow("db", "migrate", timeout=600)
        if not result.ok:
            raise RuntimeError(f"airflow db migrate failed:\n{result.output[-4000:]}")
        marker.touch()

    def dags_test(
        self,
        dag_id: str,
        *,
        logical_date: str | None = None,
        conf: str | None = None,
        env: dict[str, str] | None = None,
        timeout: float = 900,
    ) -> DagTestResult:
        """``airflow dags test`` (triggers run inline, retries apply); exit 1 when a task fails."""
        self.migrate()
        args = ["dags", "test", dag_id]
        if logical_date:
            args.append(logical_date)
        if conf:
            args += ["--conf", conf]
        return self.airflow(*args, env=env, timeout=timeout)

    def query(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        """Read the metadata DB (SQLite) directly."""
        with sqlite3.connect(self.db_path) as db:
            return list(db.execute(sql, params))
