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
``<logs_dir>/task-logs``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
import psutil
import psycopg2

REPO_ROOT = Path(__file__).resolve().parents[2]
# The venv's own entry point, next to the interpreter running the tests.
_VENV_AIRFLOW = Path(sys.executable).parent / "airflow"
AIRFLOW_BIN = str(_VENV_AIRFLOW) if _VENV_AIRFLOW.exists() else (shutil.which("airflow") or "airflow")
MARKER_ENV = "COMET_IT_CLUSTER"
TERMINAL_RUN_STATES = frozenset({"success", "failed"})
TERMINAL_TI_STATES = frozenset({"success", "failed", "skipped", "upstream_failed", "removed"})

T = TypeVar("T")


class ClusterError(RuntimeError):
    """The cluster could not be started or did not reach an expected state in time."""


class ApiError(RuntimeError):
    """The REST API answered with an HTTP error (retried by ``wait_for``: it may be transient)."""


def free_port() -> int:
    """A TCP port that is free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(
    predicate: Callable[[], T | None],
    *,
    timeout: float,
    interval: float = 0.5,
    what: str = "condition",
    on_timeout: Callable[[], str] | None = None,
) -> T:
    """Call ``predicate`` until it returns something truthy; raise ``ClusterError`` after ``timeout``.

    Other exceptions from ``predicate`` count as "not yet" (a component may still be starting);
    a ``ClusterError`` from it ends the wait at once.
    """
    deadline = time.monotonic() + timeout
    last_exc: Exception | None = None
    while True:
        try:
            result = predicate()
            if result:
                return result
        except ClusterError:
            raise  # a component died or reported something no wait can fix
        except Exception as exc:  # a component still starting may refuse connections
            last_exc = exc
        if time.monotonic() >= deadline:
            detail = f" (last error: {last_exc!r})" if last_exc else ""
            extra = f"\n{on_timeout()}" if on_timeout else ""
            raise ClusterError(f"timed out after {timeout:.0f}s waiting for {what}{detail}{extra}")
        time.sleep(interval)


def find_pg_bindir() -> Path:
    """The directory holding ``initdb``/``pg_ctl`` (Debian keeps them off PATH)."""
    candidates: list[Path] = []
    pg_config = shutil.which("pg_config")
    if pg_config:
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, timeout=10)
            candidates.append(Path(out.stdout.strip()))
    versions = sorted(
        Path("/usr/lib/postgresql").glob("*/bin"),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
        reverse=True,
    )
    candidates.extend(versions)
    initdb = shutil.which("initdb")
    if initdb:
        candidates.append(Path(initdb).resolve().parent)
    for cand in candidates:
        if (cand / "initdb").exists() and (cand / "pg_ctl").exists():
            return cand
    raise ClusterError("PostgreSQL server binaries not found: run scripts/install-system-deps.sh")


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


def tail(path: Path, lines: int = 40) -> str:
    """The last ``lines`` lines of a text file, for error messages."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return f"<{path} unreadable>"
    return f"--- {path.name} (last {lines} lines) ---\n" + "\n".join(text.splitlines()[-lines:])


# ---------------------------------------------------------------------------------------------
# PostgreSQL
# ---------------------------------------------------------------------------------------------


class PostgresCluster:
    """A throw-away PostgreSQL cluster on a free loopback port, trust auth, tuned for speed."""

    def __init__(self, base_dir: Path, log_path: Path, *, port: int | None = None) -> None:
        self.bindir = find_pg_bindir()
        self.base_dir = base_dir
        self.data_dir = base_dir / "data"
        self.socket_dir = base_dir / "sock"
        self.log_path = log_path
        self.port = port or free_port()
        self.superuser = "postgres"
        self.database = "airflow"
        self._run_as: str | None = None
        if os.geteuid() == 0:
            self._run_as = "postgres"  # initdb refuses to run as root

    @property
    def dsn(self) -> str:
        return f"host=127.0.0.1 port={self.port} user={self.superuser} dbname={self.database}"

    @property
    def sqlalchemy_url(self) -> str:
        return f"postgresql+psycopg2://{self.superuser}@127.0.0.1:{self.port}/{self.database}"

    def _cmd(self, args: Sequence[str]) -> list[str]:
        if self._run_as:
            return ["runuser", "-u", self._run_as, "--", *args]
        return list(args)

    def _chown(self, path: Path) -> None:
        if self._run_as:
            pw = pwd.getpwnam(self._run_as)
            os.chown(path, pw.pw_uid, pw.pw_gid)

    def start(self, env: Mapping[str, str]) -> None:
        self.base_dir.mkdir(parents=True, exist_ok=True)
        self.socket_dir.mkdir(exist_ok=True)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.log_path.touch()
        for path in (self.base_dir, self.socket_dir, self.log_path):
            self._chown(path)
        # The postgres user must be able to reach its directories.
        for parent in self.base_dir.parents:
            if str(parent) in ("/", "/tmp"):
                break
            with contextlib.suppress(OSError):
                os.chmod(parent, os.stat(parent).st_mode | 0o011)
        subprocess.run(
            self._cmd(
                [
                    str(self.bindir / "initdb"),
                    "-D",
                    str(self.data_dir),
                    "-U",
                    self.superuser,
                    "-A",
                    "trust",
                    "-E",
                    "UTF8",
                    "--locale=C",
                    "--no-sync",
                ]
            ),
            check=True,
            capture_output=True,
            timeout=120,
            env=dict(env),
        )
        options = " ".join(
            [
                f"-p {self.port}",
                "-c listen_addresses=127.0.0.1",
                f"-c unix_socket_directories={self.socket_dir}",
                "-c max_connections=300",
                "-c fsync=off",
                "-c synchronous_commit=off",
                "-c full_page_writes=off",
                "-c shared_buffers=128MB",
            ]
        )
        proc = subprocess.run(
            self._cmd(
                [
                    str(self.bindir / "pg_ctl"),
                    "-D",
                    str(self.data_dir),
                    "-l",
                    str(self.log_path),
                    "-o",
                    options,
                    "-w",
                    "-t",
                    "60",
                    "start",
                ]
            ),
            capture_output=True,
            text=True,
            timeout=90,
            env=dict(env),
            # pg_ctl's postmaster must not die with our terminal's process group.
            start_new_session=True,
        )
        if proc.returncode != 0:
            raise ClusterError(f"pg_ctl start failed: {proc.stdout}{proc.stderr}\n{tail(self.log_path)}")
        with contextlib.closing(
            psycopg2.connect(host="127.0.0.1", port=self.port, user=self.superuser, dbname="postgres")
        ) as conn:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute(f'CREATE DATABASE "{self.database}"')

    def stop(self) -> None:
        if not (self.data_dir / "postmaster.pid").exists():
            return
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            subprocess.run(
                self._cmd([str(self.bindir / "pg_ctl"), "-D", str(self.data_dir), "-m", "immediate", "-w", "stop"]),
                capture_output=True,
                timeout=60,
            )

    def connect(self) -> Any:
        conn = psycopg2.connect(self.dsn, connect_timeout=10)
        conn.autocommit = True
        return conn


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


class AirflowCluster:
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

    # -- SQL ---------------------------------------------------------------------------------

    def sql(self, query: str, params: Sequence[Any] | Mapping[str, Any] | None = None) -> list[tuple[Any, ...]]:
        """Run one statement on the metadata DB; returns the rows (empty for statements without)."""
        for attempt in range(2):
            if self._pg_conn is None or self._pg_conn.closed:
                self._pg_conn = self.postgres.connect()
            try:
                with self._pg_conn.cursor() as cur:
                    cur.execute(query, params)
                    return list(cur.fetchall()) if cur.description else []
            except psycopg2.OperationalError:
                with contextlib.suppress(Exception):
                    self._pg_conn.close()
                self._pg_conn = None
                if attempt:
                    raise
        raise AssertionError("unreachable")

    # -- REST API ----------------------------------------------------------------------------

    def token(self) -> str:
        """A JWT from the API server (simple auth manager, all users admins)."""
        if self._token is None:
            resp = httpx.get(f"{self.base_url}/auth/token", timeout=10)
            resp.raise_for_status()
            self._token = str(resp.json()["access_token"])
        return self._token

    @property
    def client(self) -> httpx.Client:
        if self._client is None:
            self._client = httpx.Client(
                base_url=f"{self.base_url}/api/v2",
                headers={"Authorization": f"Bearer {self.token()}"},
                timeout=30,
                trust_env=False,
            )
        return self._client

    def api(self, method: str, path: str, **kwargs: Any) -> Any:
        """Call the REST API (``path`` below /api/v2); raise on HTTP errors; return the JSON body."""
        resp = self.client.request(method, path, **kwargs)
        if resp.status_code >= 400:
            raise ApiError(f"{method} {path} -> {resp.status_code}: {resp.text[:2000]}")
        if not resp.content:
            return None
        if "json" in resp.headers.get("content-type", ""):
            return resp.json()
        return resp.text

    def wait_dag(self, dag_id: str, *, timeout: float = 120) -> dict[str, Any]:
        """Wait until the DAG processor has serialized ``dag_id``; unpause it; return its details."""

        def parsed() -> dict[str, Any] | None:
            resp = self.client.get(f"/dags/{dag_id}")
            if resp.status_code == 404:
                # The DAG folder is the suite's own: any import error in it is fatal.
                errors = self.import_errors()
                if errors:
                    detail = "\n".join(f"{e.get('filename')}: {e.get('stack_trace')}" for e in errors)
                    raise ClusterError(f"DAG {dag_id} not parsed; import errors:\n{detail}")
                return None
            resp.raise_for_status()
            return dict(resp.json())

        dag = wait_for(parsed, timeout=timeout, what=f"DAG {dag_id} to be parsed", on_timeout=self.describe)
        if dag.get("is_paused"):
            self.api("PATCH", f"/dags/{dag_id}", json={"is_paused": False})
        return dag

    def import_errors(self) -> list[dict[str, Any]]:
        return list(self.api("GET", "/importErrors")["import_errors"])

    def trigger(
        self,
        dag_id: str,
        conf: Mapping[str, Any] | None = None,
        *,
        run_id: str | None = None,
        logical_date: str | None = None,
    ) -> str:
        """Trigger a DAG run (by default without a logical date); returns its run id."""
        body: dict[str, Any] = {"logical_date": logical_date, "conf": dict(conf or {})}
        if run_id:
            body["dag_run_id"] = run_id
        run = self.api("POST", f"/dags/{dag_id}/dagRuns", json=body)
        return str(run["dag_run_id"])

    def dag_run(self, dag_id: str, run_id: str) -> dict[str, Any]:
        return dict(self.api("GET", f"/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}"))

    def wait_run(
        self,
        dag_id: str,
        run_id: str,
        *,
        timeout: float = 180,
        states: Iterable[str] = TERMINAL_RUN_STATES,
    ) -> dict[str, Any]:
        wanted = set(states)

        def done() -> dict[str, Any] | None:
            self._check_alive(n for n in self.components if n in {"api-server", "scheduler"})
            run = self.dag_run(dag_id, run_id)
            return run if run["state"] in wanted else None

        def why() -> str:
            tis = self.task_instances(dag_id, run_id)
            states_seen = sorted({(t["task_id"], t["map_index"], t["state"]) for t in tis})
            return f"task instances: {states_seen}\n{self.describe()}"

        return wait_for(done, timeout=timeout, interval=1, what=f"{dag_id}/{run_id} in {wanted}", on_timeout=why)

    def task_instances(self, dag_id: str, run_id: str, task_id: str | None = None) -> list[dict[str, Any]]:
        """All task instances of a run (mapped ones each separately), optionally of one task."""
        out: list[dict[str, Any]] = []
        offset = 0
        params: dict[str, Any] = {"limit": 100}
        if task_id:
            params["task_id"] = task_id
        for _ in range(100):
            page = self.api(
                "GET",
                f"/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}/taskInstances",
                params={**params, "offset": offset},
            )
            items = page["task_instances"]
            out.extend(items)
            offset += len(items)
            if not items or offset >= page["total_entries"]:
                break
        return out

    def wait_task_states(
        self,
        dag_id: str,
        run_id: str,
        task_id: str,
        predicate: Callable[[list[str | None]], bool],
        *,
        timeout: float = 120,
        what: str = "task states",
    ) -> list[dict[str, Any]]:
        """Wait until ``predicate`` holds for the states of all instances of ``task_id``."""

        def check() -> list[dict[str, Any]] | None:
            tis = [t for t in self.task_instances(dag_id, run_id) if t["task_id"] == task_id]
            return tis if tis and predicate([t["state"] for t in tis]) else None

        return wait_for(check, timeout=timeout, interval=0.5, what=f"{dag_id}.{task_id}: {what}")

    def ti_counts(self, dag_id: str | None = None) -> dict[str, int]:
        """Task-instance counts by state, straight from the metadata DB."""
        if dag_id:
            rows = self.sql(
                "SELECT coalesce(state, 'none'), count(*) FROM task_instance WHERE dag_id = %s GROUP BY 1",
                (dag_id,),
            )
        else:
            rows = self.sql("SELECT coalesce(state, 'none'), count(*) FROM task_instance GROUP BY 1")
        return {str(state): int(n) for state, n in rows}

    def xcom(self, dag_id: str, run_id: str, task_id: str, key: str = "return_value", map_index: int = -1) -> Any:
        entry = self.api(
            "GET",
            f"/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}/taskInstances/{task_id}/xcomEntries/{key}",
            params={"map_index": map_index, "deserialize": True, "stringify": False},
        )
        return entry["value"]

    def xcom_entries(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        page = self.api(
            "GET",
            f"/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}/taskInstances/~/xcomEntries",
            params={"limit": 1000},
        )
        return list(page["xcom_entries"])

    def task_log(self, dag_id: str, run_id: str, task_id: str, try_number: int = 1, map_index: int = -1) -> str:
        """A task try's log as text (worker and triggerer parts) through the REST API."""
        resp = self.client.get(
            f"/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}/taskInstances/{task_id}/logs/{try_number}",
            params={"map_index": map_index, "full_content": True},
            headers={"Accept": "application/json"},
        )
        resp.raise_for_status()
        body = resp.json()
        content = body.get("content")
        if isinstance(content, list):
            lines = []
            for item in content:
                if isinstance(item, dict):
                    lines.append(json.dumps(item, default=str))
                else:
                    lines.append(str(item))
            return "\n".join(lines)
        return str(content)

    def extra_links(self, dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> dict[str, Any]:
        body = self.api(
            "GET",
            f"/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}/taskInstances/{task_id}/links",
            params={"map_index": map_index},
        )
        return dict(body.get("extra_links", body))

    def set_variable(self, key: str, value: str) -> None:
        resp = self.client.patch(f"/variables/{key}", json={"key": key, "value": value})
        if resp.status_code == 404:
            self.api("POST", "/variables", json={"key": key, "value": value})
        elif resp.status_code >= 400:
            raise ApiError(f"PATCH variable {key}: {resp.status_code} {resp.text}")

    def pool(self, name: str = "default_pool") -> dict[str, Any]:
        return dict(self.api("GET", f"/pools/{name}"))

    def set_connection(self, conn_id: str, **fields: Any) -> None:
        """Create or replace a connection in the metadata DB (``conn_type``, ``host``, ``password``, ...)."""
        self.client.delete(f"/connections/{conn_id}")
        self.api("POST", "/connections", json={"connection_id": conn_id, **fields})

    def clear_tasks(self, dag_id: str, run_id: str, task_ids: Sequence[str | tuple[str, int]]) -> list[dict[str, Any]]:
        """Clear task instances of one run (a task id: all its map indices), as the UI's "Clear" does."""
        body = {
            "dry_run": False,
            "dag_run_id": run_id,
            "task_ids": [list(t) if isinstance(t, tuple) else t for t in task_ids],
            "only_failed": False,
            "reset_dag_runs": True,
            "include_downstream": False,
        }
        return list(self.api("POST", f"/dags/{dag_id}/clearTaskInstances", json=body)["task_instances"])

    def hitl_details(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        """The run's human-in-the-loop requests (approvals), answered or not."""
        return list(self.api("GET", f"/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}/hitlDetails")["hitl_details"])

    def respond_hitl(self, dag_id: str, run_id: str, task_id: str, options: Sequence[str], map_index: int = -1) -> Any:
        """Answer a human-in-the-loop request as a person in the UI would (e.g. ``["Approve"]``)."""
        return self.api(
            "PATCH",
            f"/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}/taskInstances/{task_id}/{map_index}/hitlDetails",
            json={"chosen_options": list(options)},
        )


@contextlib.contextmanager
def running_cluster(**kwargs: Any) -> Iterator[AirflowCluster]:
    cluster = AirflowCluster(**kwargs)
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.close()


class SlotSampler:
    """Samples executor-slot use and task-instance states in a background thread.

    Every ``interval`` seconds it records which LocalExecutor workers are busy (their titles
    name the task instance id they run) and the state of every task instance of the watched
    DAG runs. ``slot_seconds[ti_id]`` integrates busy workers over time; ``state_seconds[ti_id]``
    the time spent in each state.
    """

    def __init__(self, cluster: AirflowCluster, *, interval: float = 0.25) -> None:
        import threading

        self.cluster = cluster
        self.interval = interval
        self.samples: list[dict[str, Any]] = []
        self.slot_seconds: dict[str, float] = {}
        self.state_seconds: dict[str, dict[str, float]] = {}
        self.watch: list[tuple[str, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="slot-sampler", daemon=True)
        self._conn: Any = None

    def __enter__(self) -> SlotSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()

    def _states(self) -> dict[str, tuple[str, str]]:
        """ti id -> (task_id, state) for the watched runs."""
        watch = list(self.watch)
        if not watch:
            return {}
        if self._conn is None or self._conn.closed:
            self._conn = self.cluster.postgres.connect()
        clauses = " OR ".join(["(dag_id = %s AND run_id = %s)"] * len(watch))
        params = [x for pair in watch for x in pair]
        with self._conn.cursor() as cur:
            cur.execute(
                f"SELECT id::text, task_id, coalesce(state, 'none') FROM task_instance WHERE {clauses}",
                params,
            )
            return {str(i): (str(t), str(s)) for i, t, s in cur.fetchall()}

    def _run(self) -> None:
        last = time.monotonic()
        while not self._stop.is_set():
            now = time.monotonic()
            step = now - last
            last = now
            try:
                busy = self.cluster.busy_workers()
                states = self._states()
            except Exception:  # a component being killed on purpose; keep sampling
                busy, states = [], {}
            for title in busy:
                self.slot_seconds[title] = self.slot_seconds.get(title, 0.0) + step
            for ti_id, (_, state) in states.items():
                per = self.state_seconds.setdefault(ti_id, {})
                per[state] = per.get(state, 0.0) + step
            self.samples.append({"t": now, "busy": busy, "states": states})
            self._stop.wait(self.interval)

    def slot_seconds_of(self, ti_id: str) -> float:
        """Busy-worker seconds of the workloads that ran task instance ``ti_id``."""
        return sum(v for k, v in self.slot_seconds.items() if ti_id in k)
