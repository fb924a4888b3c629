"""Run DAGs offline: a scratch Airflow home (SQLite) and ``airflow dags test`` in a subprocess.

Used by the demo, the provider's tests and benchmarks, and handy for testing your
own DAGs against the emulator::

    sandbox = AirflowSandbox(tmp_path / "airflow", dags_folder="dags")
    result = sandbox.dags_test("my_dag", env={"AIRFLOW_CONN_COMET_DEFAULT": emu.connection_json()})
    assert result.ok, result.tail()

The commands see this process's environment minus its Airflow settings (``AIRFLOW_HOME``,
``AIRFLOW__*``, ``AIRFLOW_CONN_*``, ``AIRFLOW_VAR_*``), plus the sandbox's own.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

__all__ = ["AirflowSandbox", "DagTestResult"]

_INHERITED_AIRFLOW = ("AIRFLOW__", "AIRFLOW_CONN_", "AIRFLOW_VAR_")
_LOOPBACK = "127.0.0.1,localhost,::1"


@dataclass(frozen=True)
class DagTestResult:
    """One ``airflow`` command: exit code, output (stdout and stderr), wall time, log file if any."""

    returncode: int
    output: str
    seconds: float
    log_path: Path | None = None

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def tail(self, lines: int = 60) -> str:
        return "\n".join(self.output.splitlines()[-lines:])


class AirflowSandbox:
    """A private ``AIRFLOW_HOME`` with a migrated SQLite metadata DB.

    ``pythonpath`` entries go in front of the inherited ``PYTHONPATH``; ``extra_env`` is
    added to every command's environment (a call's ``env`` goes on top of it).
    """

    def __init__(
        self,
        home: str | os.PathLike[str],
        dags_folder: str | os.PathLike[str],
        *,
        pythonpath: Sequence[str | os.PathLike[str]] = (),
        extra_env: Mapping[str, str] | None = None,
    ) -> None:
        self.home = Path(home).resolve()
        self.dags_folder = Path(dags_folder).resolve()
        self.pythonpath = [str(Path(p).resolve()) for p in pythonpath]
        self.extra_env = dict(extra_env or {})
        self.home.mkdir(parents=True, exist_ok=True)

    @property
    def db_path(self) -> Path:
        return self.home / "airflow.db"

    def env(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(_INHERITED_AIRFLOW) and k != "AIRFLOW_HOME"}
        pythonpath = [*self.pythonpath, env.get("PYTHONPATH", "")]
        env.update(
            {
                "AIRFLOW_HOME": str(self.home),
                "AIRFLOW__CORE__DAGS_FOLDER": str(self.dags_folder),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__CORE__ALLOWED_DESERIALIZATION_CLASSES": "airflow.* comet_provider.*",
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{self.db_path}",
                "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
                "PYTHONPATH": os.pathsep.join(p for p in pythonpath if p),
                "PYTHONUNBUFFERED": "1",
                "NO_PROXY": _LOOPBACK,
                "no_proxy": _LOOPBACK,
            }
        )
        env.update(self.extra_env)
        env.update(extra or {})
        return env

    def airflow(
        self,
        *args: str,
        env: Mapping[str, str] | None = None,
        timeout: float = 600,
        log_path: str | os.PathLike[str] | None = None,
        check: bool = False,
    ) -> DagTestResult:
        """Run one ``airflow`` CLI command in this home.

        With ``log_path`` the output is written there as it comes (and still returned);
        with ``check`` a non-zero exit raises :class:`RuntimeError` with the output's tail.
        """
        airflow = Path(sys.executable).with_name("airflow")
        command = [str(airflow) if airflow.exists() else "airflow", *args]
        log = Path(log_path) if log_path is not None else None
        started = time.monotonic()
        with contextlib.ExitStack() as stack:
            out: IO[str] | int = subprocess.PIPE
            if log is not None:
                log.parent.mkdir(parents=True, exist_ok=True)
                out = stack.enter_context(log.open("w"))
            proc = subprocess.run(
                command,
                env=self.env(env),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                text=True,
                timeout=timeout,
                check=False,
            )
        output = proc.stdout if log is None else log.read_text(errors="replace")
        result = DagTestResult(proc.returncode, output, time.monotonic() - started, log)
        if check and not result.ok:
            where = f" (log: {log})" if log else ""
            raise RuntimeError(f"`airflow {' '.join(args)}` failed ({result.returncode}){where}:\n{result.tail()}")
        return result

    def migrate(self) -> None:
        """Create the metadata DB once (a marker file skips it later)."""
        marker = self.home / ".migrated"
        if marker.exists():
            return
        self.airflow("db", "migrate", timeout=600, check=True)
        marker.touch()

    def dags_test(
        self,
        dag_id: str,
        logical_date: str | None = None,
        *,
        conf: str | Mapping[str, Any] | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float = 900,
        log_path: str | os.PathLike[str] | None = None,
        check: bool = False,
    ) -> DagTestResult:
        """``airflow dags test`` (triggers run inline, retries apply); exit 1 when a task fails.

        ``conf`` is JSON text or a mapping; ``log_path`` and ``check`` as for :meth:`airflow`.
        """
        self.migrate()
        args = ["dags", "test", dag_id]
        if logical_date:
            args.append(logical_date)
        if conf:
            args += ["--conf", conf if isinstance(conf, str) else json.dumps(conf)]
        return self.airflow(*args, env=env, timeout=timeout, log_path=log_path, check=check)

    def query(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        """Read the metadata DB (SQLite) directly."""
        with sqlite3.connect(self.db_path) as db:
            return list(db.execute(sql, params))

    def asset_events(self, asset_name: str) -> list[dict[str, Any]]:
        """Events of an Asset, oldest first (``extra`` decoded)."""
        keys = ("id", "extra", "source_dag_id", "source_task_id", "source_run_id", "timestamp")
        rows = self.query(
            f"SELECT {', '.join('e.' + k for k in keys)} FROM asset_event e JOIN asset a ON a.id = e.asset_id "
            "WHERE a.name = ? ORDER BY e.id",
            asset_name,
        )
        events = [dict(zip(keys, row, strict=True)) for row in rows]
        for event in events:
            event["extra"] = json.loads(event["extra"] or "{}")
        return events

    def task_states(self, dag_id: str) -> dict[str, list[str]]:
        """``task_id -> [state of each map index]`` for the DAG's latest run."""
        runs = self.query("SELECT run_id FROM dag_run WHERE dag_id = ? ORDER BY id DESC LIMIT 1", dag_id)
        if not runs:
            return {}
        rows = self.query(
            "SELECT task_id, state FROM task_instance WHERE dag_id = ? AND run_id = ? ORDER BY task_id, map_index",
            dag_id,
            runs[0][0],
        )
        states: dict[str, list[str]] = {}
        for task_id, state in rows:
            states.setdefault(task_id, []).append(state)
        return states
