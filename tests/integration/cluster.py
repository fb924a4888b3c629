"""A real Airflow deployment on loopback, started from the project's own files.

``AirflowCluster`` runs a private PostgreSQL cluster (``initdb``/``pg_ctl`` in a scratch
directory, as the ``postgres`` user when we are root) and each Airflow component as its own
process (API server, scheduler with the LocalExecutor, DAG processor, one or more triggerers).
It can kill -9 / restart single components, talks to the REST API with a JWT from the API
server, and reads the metadata DB directly.

Every process it starts carries the environment marker ``COMET_IT_CLUSTER=<id>``; teardown
kills the process groups it created and then every process still carrying the marker (task
runners put themselves into their own process groups), so nothing is left behind.

Component output goes to ``<logs_dir>/<component>.log``; task and trigger logs to
``<logs_dir>/task-logs``. What the suite asks a running cluster (SQL, REST) is in
``cluster_api.py``; PostgreSQL in ``postgres.py``; ``wait_for`` in ``waiting.py``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil
from cluster_api import ClusterApi
from postgres import PostgresCluster
from waiting import ClusterError, free_port, tail, wait_for

REPO_ROOT = Path(__file__).resolve().parents[2]
# The venv's own entry point, next to the interpreter running the tests.
_VENV_AIRFLOW = Path(sys.executable).parent / "airflow"
AIRFLOW_BIN = str(_VENV_AIRFLOW) if _VENV_AIRFLOW.exists() else (shutil.which("airflow") or "airflow")
MARKER_ENV = "COMET_IT_CLUSTER"


def marked_processes(cluster_id: str) -> list[psutil.Process]:
    """Every live process (but this one) whose environment carries ``COMET_IT_CLUSTER=cluster_id``."""
    found = []
    me = os.getpid()
    for proc in psutil.process_iter(["pid"]):
        if proc.pid == me:
            continue
        try:
            if proc.environ().get(MARKER_ENV) == cluster_id:
                found.append(proc)
        except (psutil.Error, OSError):
            continue
    return found


# ---------------------------------------------------------------------------------------------
# Airflow
# ---------------------------------------------------------------------------------------------


@dataclass
class Component:
    """One running Airflow process (and the tree under it)."""

    name: str
    kind: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    started_at: float = field(default_factory=time.monotonic)
    job_id: int | None = None
    #: job ids that existed before this component started (to tell its own job row apart)
    known_jobs: set[int] = field(default_factory=set)
    #: arguments after the kind's own (e.g. a Celery worker's hostname), reused by ``restart``
    args: list[str] = field(default_factory=list)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None


COMPONENT_ARGS: dict[str, list[str]] = {
    "api-server": ["api-server"],
    "scheduler": ["scheduler", "--skip-serve-logs"],
    "dag-processor": ["dag-processor"],
    "triggerer": ["triggerer", "--skip-serve-logs"],
    # CeleryExecutor clusters only (executor and broker in ``extra_env``); no log server port each.
    "celery-worker": ["celery", "worker", "--skip-serve-logs", "--without-mingle", "--without-gossip"],
}
WORKER_TITLE = "airflow worker -- LocalExecutor:"
JOB_TYPES = {"scheduler": "SchedulerJob", "triggerer": "TriggererJob", "dag-processor": "DagProcessorJob"}


class AirflowCluster(ClusterApi):
    """PostgreSQL + API server + scheduler (LocalExecutor) + DAG processor + triggerer(s).

    ``extra_env`` is added to every component's environment (connections as
    ``AIRFLOW_CONN_*``, Airflow config overrides, variables for the DAG files).
    """

    def __init__(
        self,
        *,
        dags_folder: Path,
        logs_dir: Path,
        extra_env: Mapping[str, str] | None = None,
        parallelism: int = 8,
        triggerer_heartbeat_sec: int = 1,
        triggerer_health_check_threshold: int = 6,
        work_dir: Path | None = None,
    ) -> None:
        self.id = uuid.uuid4().hex[:12]
        self.dags_folder = dags_folder.resolve()
        self.logs_dir = logs_dir.resolve()
        self.task_logs_dir = self.logs_dir / "task-logs"
        self.parallelism = parallelism
        self.triggerer_health_check_threshold = triggerer_health_check_threshold
        self._own_work_dir = work_dir is None
        # /tmp (not the repo) so the postgres user can reach the data directory.
        self.work_dir = work_dir or Path(tempfile.mkdtemp(prefix=f"airflow-it-{self.id}-", dir="/tmp"))
        os.chmod(self.work_dir, 0o755)
        (self.work_dir / "owner.pid").write_text(str(os.getpid()))
        self.airflow_home = self.work_dir / "airflow-home"
        self.api_port = free_port()
        self.base_url = f"http://127.0.0.1:{self.api_port}"
        self.postgres = PostgresCluster(self.work_dir / "pg", self.logs_dir / "postgres.log")
        self.components: dict[str, Component] = {}
        self.timings: dict[str, float] = {}
        self._token: str | None = None
        self._client: httpx.Client | None = None
        self._pg_conn: Any = None
        self._extra_env = dict(extra_env or {})
        self.env = self._build_env(triggerer_heartbeat_sec)

    # -- environment -------------------------------------------------------------------------

    def _build_env(self, triggerer_heartbeat_sec: int) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
        bin_dir = str(Path(sys.executable).parent)
        pythonpath = [str(REPO_ROOT)]
        if env.get("PYTHONPATH"):
            pythonpath.append(env["PYTHONPATH"])
        from cryptography.fernet import Fernet

        env.update(
            {
                MARKER_ENV: self.id,
                "PATH": f"{bin_dir}:{env.get('PATH', '/usr/bin:/bin')}",
                "PYTHONPATH": ":".join(pythonpath),
                "PYTHONUNBUFFERED": "1",
                "NO_PROXY": "127.0.0.1,localhost",
                "no_proxy": "127.0.0.1,localhost",
                "AIRFLOW_HOME": str(self.airflow_home),
                "AIRFLOW__CORE__DAGS_FOLDER": str(self.dags_folder),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
                "AIRFLOW__CORE__PARALLELISM": str(self.parallelism),
                "AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG": "128",
                "AIRFLOW__CORE__MAX_ACTIVE_RUNS_PER_DAG": "32",
                "AIRFLOW__CORE__DEFAULT_POOL_TASK_SLOT_COUNT": "256",
                "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
                "AIRFLOW__CORE__FERNET_KEY": Fernet.generate_key().decode(),
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.base_url}/execution/",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
                "AIRFLOW__CORE__HOSTNAME_CALLABLE": "socket.gethostname",
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": self.postgres.sqlalchemy_url,
                "AIRFLOW__DATABASE__SQL_ALCHEMY_POOL_SIZE": "5",
                "AIRFLOW__DATABASE__SQL_ALCHEMY_MAX_OVERFLOW": "10",
                "AIRFLOW__API__HOST": "127.0.0.1",
                "AIRFLOW__API__PORT": str(self.api_port),
                "AIRFLOW__API__BASE_URL": self.base_url,
                "AIRFLOW__API__SECRET_KEY": secrets.token_hex(16),
                "AIRFLOW__API__WORKERS": "1",
                "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(32),
                "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
                "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "30",
                "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "1",
                "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "False",
                "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
                "AIRFLOW__SCHEDULER__TRIGGER_TIMEOUT_CHECK_INTERVAL": "5",
                "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": str(triggerer_heartbeat_sec),
                "AIRFLOW__TRIGGERER__TRIGGERER_HEALTH_CHECK_THRESHOLD": str(self.triggerer_health_check_threshold),
                "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(self.task_logs_dir),
                "AIRFLOW__LOGGING__DAG_PROCESSOR_CHILD_PROCESS_LOG_DIRECTORY": str(
                    self.logs_dir / "dag-processor-files"
                ),
                "AIRFLOW__METRICS__STATSD_ON": "False",
                "AIRFLOW__API__EXPOSE_CONFIG": "False",
            }
        )
        env.update(self._extra_env)
        return env

    def set_env(self, **values: str) -> None:
        """Add environment for components started from now on (restart to apply to running ones)."""
        self._extra_env.update(values)
        self.env.update(values)

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self, *, timeout: float = 240) -> None:
        """Start PostgreSQL, migrate the metadata DB, start all components, wait until healthy."""
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        self.task_logs_dir.mkdir(parents=True, exist_ok=True)
        self.airflow_home.mkdir(parents=True, exist_ok=True)
        t0 = time.monotonic()
        try:
            self.postgres.start(self.env)
            self.timings["postgres"] = time.monotonic() - t0
            t1 = time.monotonic()
            self.migrate()
            self.timings["db_migrate"] = time.monotonic() - t1
            t2 = time.monotonic()
            self.start_component("api-server")
            self.start_component("scheduler")
            self.start_component("dag-processor")
            self.start_triggerer()
            self.wait_healthy(timeout=timeout)
            self.timings["components"] = time.monotonic() - t2
            for comp in self.components.values():
                if comp.kind == "triggerer" and comp.job_id is None:
                    comp.job_id = self.wait_job(comp, set(), timeout=60)
        except BaseException:
            self.close()
            raise
        self.timings["total"] = time.monotonic() - t0

    def migrate(self) -> None:
        log_path = self.logs_dir / "db-migrate.log"
        with log_path.open("wb") as out:
            proc = subprocess.run(
                [AIRFLOW_BIN, "db", "migrate"],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=300,
                cwd=self.work_dir,
            )
        if proc.returncode != 0:
            raise ClusterError(f"airflow db migrate failed\n{tail(log_path)}")

    def cli(self, *args: str, timeout: float = 180) -> str:
        """Run ``airflow <args>`` against this cluster; returns its output (also in ``cli.log``)."""
        proc = subprocess.run(
            [AIRFLOW_BIN, *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=self.work_dir,
            stdin=subprocess.DEVNULL,
        )
        output = proc.stdout + proc.stderr
        with (self.logs_dir / "cli.log").open("a") as log:
            log.write(f"\n===== airflow {' '.join(args)} -> {proc.returncode} =====\n{output}")
        if proc.returncode != 0:
            raise ClusterError(f"airflow {' '.join(args)} failed ({proc.returncode}):\n{output[-3000:]}")
        return output

    def start_component(self, kind: str, name: str | None = None, *, args: Sequence[str] = ()) -> Component:
        """Start one component (a kind of :data:`COMPONENT_ARGS`), ``args`` appended to its command."""
        name = name or kind
        if name in self.components and self.components[name].alive():
            raise ClusterError(f"{name} is already running")
        log_path = self.logs_dir / f"{name}.log"
        with log_path.open("ab") as out:
            out.write(f"\n===== {dt.datetime.now().isoformat()} starting {name} =====\n".encode())
            out.flush()
            proc = subprocess.Popen(
                [AIRFLOW_BIN, *COMPONENT_ARGS[kind], *args],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.work_dir,
                start_new_session=True,
            )
        comp = Component(name=name, kind=kind, proc=proc, log_path=log_path, args=list(args))
        self.components[name] = comp
        return comp

    def start_triggerer(self, name: str | None = None, *, wait: bool = False, timeout: float = 90) -> Component:
        """Start a triggerer; with ``wait``, block until its job heartbeats and record its job id."""
        if name is None:
            names = ["triggerer", *(f"triggerer-{i}" for i in range(2, 100))]
            name = next(n for n in names if n not in self.components)
        before = set(self._all_job_ids("triggerer"))
        comp = self.start_component("triggerer", name)
        comp.known_jobs = before
        if wait:
            self.wait_job(comp, before, timeout=timeout)
        return comp

    def start_celery_worker(self, name: str | None = None, *, concurrency: int = 2) -> Component:
        """Start ``airflow celery worker`` with its own Celery hostname (``name``) and ``concurrency``.

        Needs ``AIRFLOW__CORE__EXECUTOR=CeleryExecutor`` and ``AIRFLOW__CELERY__BROKER_URL`` in ``extra_env``.
        """
        if name is None:
            name = next(n for n in (f"celery-worker-{i}" for i in range(1, 100)) if n not in self.components)
        return self.start_component(
            "celery-worker", name, args=["--celery-hostname", name, "--concurrency", str(concurrency)]
        )

    def _all_job_ids(self, kind: str) -> list[int]:
        return [r[0] for r in self.sql("SELECT id FROM job WHERE job_type = %s", (JOB_TYPES[kind],))]

    def wait_job(self, comp: Component, known: set[int] | None = None, *, timeout: float = 90) -> int:
        """Wait for the new, heartbeating job row of a component started after ``known`` was read."""
        if comp.job_id is not None:
            return comp.job_id
        known = comp.known_jobs if known is None else known

        def new_job() -> int | None:
            self._check_alive([comp.name])
            fresh = [j for j in self.alive_jobs(comp.kind) if j not in known]
            return fresh[-1] if fresh else None

        job_id = wait_for(new_job, timeout=timeout, what=f"{comp.name}'s job", on_timeout=self.describe)
        comp.job_id = job_id
        return job_id

    def _tree(self, comp: Component) -> list[psutil.Process]:
        try:
            root = psutil.Process(comp.pid)
            return [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def kill(self, name: str, *, sig: int = signal.SIGKILL, wait: float = 30) -> None:
        """Send ``sig`` (default SIGKILL: kill -9) to a component's whole process tree at once."""
        comp = self.components[name]
        procs = self._tree(comp)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(comp.pid, sig)
        for proc in procs:
            with contextlib.suppress(psutil.Error):
                proc.send_signal(sig)
        _, alive = psutil.wait_procs(procs, timeout=wait)
        for proc in alive:
            with contextlib.suppress(psutil.Error):
                proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            comp.proc.wait(timeout=wait)

    def stop(self, name: str, *, timeout: float = 20) -> None:
        """Stop a component gracefully (SIGTERM), then SIGKILL whatever is left after ``timeout``."""
        comp = self.components.get(name)
        if comp is None:
            return
        procs = self._tree(comp)
        if comp.alive():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(comp.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                comp.proc.wait(timeout=timeout)
        _, alive = psutil.wait_procs(procs, timeout=1)
        if alive or comp.alive():
            self.kill(name, wait=10)

    def stop_all(self, *, timeout: float = 10) -> None:
        """SIGTERM every component at once, SIGKILL what is still there after ``timeout``."""
        trees = {name: self._tree(comp) for name, comp in self.components.items()}
        for comp in self.components.values():
            if comp.alive():
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(comp.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for comp in self.components.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                comp.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        procs = [p for tree in trees.values() for p in tree]
        _, alive = psutil.wait_procs(procs, timeout=max(0.1, deadline - time.monotonic()))
        for comp in self.components.values():
            if comp.alive():
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(comp.pid, signal.SIGKILL)
        for proc in alive:
            with contextlib.suppress(psutil.Error):
                proc.kill()
        for comp in self.components.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                comp.proc.wait(timeout=10)

    def restart(self, name: str) -> Component:
        comp = self.components[name]
        self.stop(name)
        return self.start_component(comp.kind, name, args=comp.args)

    def busy_workers(self) -> list[str]:
        """Titles of LocalExecutor worker processes that are running a workload right now.

        Each worker process sets its title to ``airflow worker -- LocalExecutor: <ti>`` while it
        holds an executor slot and ``... <idle>`` otherwise.
        """
        titles: list[str] = []
        scheduler = self.components.get("scheduler")
        if scheduler is None or not scheduler.alive():
            return titles
        try:
            children = psutil.Process(scheduler.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return titles
        for proc in children:
            try:
                title = " ".join(proc.cmdline())
                ppid_title = " ".join(psutil.Process(proc.ppid()).cmdline())
            except (psutil.Error, OSError):
                continue
            # Task runners forked from a worker inherit its title: count the worker only.
            if title.startswith(WORKER_TITLE) and not ppid_title.startswith(WORKER_TITLE):
                workload = title[len(WORKER_TITLE) :].strip()
                if workload != "<idle>":
                    titles.append(workload)
        return titles

    def task_process(self, ti_id: str) -> psutil.Process | None:
        """The process running task instance ``ti_id``'s code (forked by its worker), if one is alive.

        The worker supervises the task from its own process (titled ``WORKER_TITLE <ti id>``);
        the task's code runs in a child it forks, titled ``airflow worker -- <ti id>``.
        """
        scheduler = self.components.get("scheduler")
        if scheduler is None or not scheduler.alive():
            return None
        try:
            children = psutil.Process(scheduler.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return None
        for proc in children:
            try:
                title = " ".join(proc.cmdline())
                parent_title = " ".join(psutil.Process(proc.ppid()).cmdline())
            except (psutil.Error, OSError):
                continue
            if ti_id in title and parent_title.startswith(WORKER_TITLE) and ti_id in parent_title:
                return proc
        return None

    def marked_processes(self) -> list[psutil.Process]:
        """Every live process that carries this cluster's environment marker."""
        return marked_processes(self.id)

    def leftovers(self) -> list[str]:
        """What is still running or listening after ``close()`` (should be nothing)."""
        found = [f"pid {p.pid} {' '.join(p.cmdline())[:80]}" for p in self.marked_processes() if p.is_running()]
        for port in (self.api_port, self.postgres.port):
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                sock.settimeout(1)
                if sock.connect_ex(("127.0.0.1", port)) == 0:
                    found.append(f"port {port} still accepts connections")
        return found

    @staticmethod
    def reap_stale() -> list[str]:
        """Clean up after sessions that died without teardown (their owner process is gone).

        Kills every process still carrying such a cluster's marker (PostgreSQL included) and
        removes its scratch directory. Returns the ids cleaned.
        """
        reaped = []
        for work_dir in Path("/tmp").glob("airflow-it-*"):
            owner_file = work_dir / "owner.pid"
            try:
                owner = int(owner_file.read_text().strip())
            except (OSError, ValueError):
                continue
            if psutil.pid_exists(owner):
                continue
            cluster_id = work_dir.name.split("-")[2]
            procs = marked_processes(cluster_id)
            for proc in procs:
                with contextlib.suppress(psutil.Error):
                    proc.kill()
            psutil.wait_procs(procs, timeout=10)
            shutil.rmtree(work_dir, ignore_errors=True)
            reaped.append(cluster_id)
        return reaped

    def close(self) -> None:
        """Stop everything, leave no processes behind, remove the scratch directory."""
        if self._client is not None:
            with contextlib.suppress(Exception):
                self._client.close()
            self._client = None
        if self._pg_conn is not None:
            with contextlib.suppress(Exception):
                self._pg_conn.close()
            self._pg_conn = None
        self.stop_all(timeout=5)
        stray = self.marked_processes()
        for proc in stray:
            with contextlib.suppress(psutil.Error):
                proc.kill()
        psutil.wait_procs(stray, timeout=10)
        self.postgres.stop()
        if self._own_work_dir:
            shutil.rmtree(self.work_dir, ignore_errors=True)

    def __enter__(self) -> AirflowCluster:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- health ------------------------------------------------------------------------------

    def describe(self) -> str:
        """Component states and log tails, for assertion messages."""
        parts = []
        for comp in self.components.values():
            state = "alive" if comp.alive() else f"exited {comp.proc.returncode}"
            parts.append(f"{comp.name}: pid {comp.pid} {state}")
        dead = [c for c in self.components.values() if not c.alive()]
        for comp in dead:
            parts.append(tail(comp.log_path, 30))
        return "\n".join(parts)

    def _check_alive(self, names: Iterable[str]) -> None:
        for name in names:
            comp = self.components.get(name)
            if comp is not None and not comp.alive():
                raise ClusterError(f"{name} exited with {comp.proc.returncode}\n{tail(comp.log_path)}")

    def health(self) -> dict[str, Any]:
        resp = httpx.get(f"{self.base_url}/api/v2/monitor/health", timeout=5)
        resp.raise_for_status()
        return dict(resp.json())

    def wait_healthy(self, *, timeout: float = 180) -> None:
        def ok() -> bool:
            self._check_alive(self.components)
            h = self.health()
            return all(
                (h.get(part) or {}).get("status") == "healthy"
                for part in ("metadatabase", "scheduler", "triggerer", "dag_processor")
            )

        wait_for(ok, timeout=timeout, interval=1, what="a healthy Airflow", on_timeout=self.describe)

    def alive_jobs(self, kind: str, *, threshold: float | None = None) -> list[int]:
        """Ids of jobs of ``kind`` that are running and heartbeated within ``threshold`` seconds."""
        if threshold is None:
            threshold = float(self.triggerer_health_check_threshold)
        rows = self.sql(
            "SELECT id FROM job WHERE job_type = %s AND state = 'running' AND end_date IS NULL "
            "AND latest_heartbeat > now() - make_interval(secs => %s) ORDER BY id",
            (JOB_TYPES[kind], threshold),
        )
        return [r[0] for r in rows]

    def wait_triggerers(self, count: int, *, timeout: float = 90) -> list[int]:
        def enough() -> list[int] | None:
            ids = self.alive_jobs("triggerer")
            return ids if len(ids) >= count else None

        return wait_for(
            enough,
            timeout=timeout,
            what=f"{count} live triggerer(s)",
            on_timeout=self.describe,
        )


@contextlib.contextmanager
def running_cluster(**kwargs: Any) -> Iterator[AirflowCluster]:
    cluster = AirflowCluster(**kwargs)
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.close()
