"""A throw-away PostgreSQL cluster for the real-Airflow suite (``initdb``/``pg_ctl`` in a scratch
directory, as the ``postgres`` user when we are root)."""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import psycopg2
from waiting import ClusterError, free_port, tail


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
