"""Where the emulator runs: :class:`CometEmulator` (a thread of this process), :class:`EmulatorProcess`
(``python -m comet_provider.testing`` in a child process), and :func:`serve` (the child's main loop)."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

from comet_provider.testing.emulator.client import EmulatorClient
from comet_provider.testing.emulator.server import EmulatorServer
from comet_provider.testing.emulator.settings import EmulatorConfig

API_KEY_ENV = "COMET_EMULATOR_API_KEY"


def new_event_loop(kind: str = "auto") -> asyncio.AbstractEventLoop:
    """A uvloop loop when available (``kind="auto"``), else the default asyncio loop."""
    if kind in ("auto", "uvloop"):
        try:
            import uvloop
        except ImportError:
            if kind == "uvloop":
                raise
        else:
            return uvloop.new_event_loop()
    return asyncio.new_event_loop()


async def serve(
    config: EmulatorConfig,
    host: str = "127.0.0.1",
    port: int = 0,
    ready_file: str | os.PathLike[str] | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    """Run until ``stop`` is set (or SIGTERM/SIGINT when run on the main thread)."""
    import signal

    server = EmulatorServer(config)
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, stop.set)
    try:
        url = await server.start(host, port)
        if ready_file is not None:
            target = Path(ready_file)
            partial = target.with_name(target.name + ".partial")
            partial.write_text(url + "\n")
            os.replace(partial, target)
        print(f"CometAPI emulator listening on {url}", file=sys.stderr, flush=True)
        await stop.wait()
    finally:
        await server.stop()


class CometEmulator(EmulatorClient):
    """The emulator in a background thread of this process, with its own event loop.

    ``CometEmulator(**config)`` takes any :class:`EmulatorConfig` key; ``port=0``
    picks a free port. Use as a context manager, or ``start()``/``stop()``.
    """

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, loop: str = "auto", **config: Any) -> None:
        self._config = EmulatorConfig.from_kwargs(config)
        self.host = host
        self.port = port
        self.url = ""
        self.api_key = self._config.api_key
        self._initial_api_key = self.api_key
        self._loop_kind = loop
        self._server: EmulatorServer | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> CometEmulator:
        if self._thread is not None:
            return self
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = new_event_loop(self._loop_kind)
            asyncio.set_event_loop(loop)
            self._loop = loop
            try:
                self._server = EmulatorServer(copy.deepcopy(self._config))
                self.url = loop.run_until_complete(self._server.start(self.host, self.port))
            except BaseException as exc:
                failure.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            try:
                loop.run_forever()
            finally:
                loop.run_until_complete(self._server.stop())
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.close()

        self._thread = threading.Thread(target=run, name="comet-emulator", daemon=True)
        self._thread.start()
        ready.wait()
        if failure:
            self._thread.join()
            self._thread = None
            raise failure[0]
        return self

    def stop(self) -> None:
        self._close_http()
        if self._thread is None or self._loop is None:
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=30)
        self._thread = None
        self._loop = None
        self._server = None
        self.url = ""

    def __enter__(self) -> CometEmulator:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"CometEmulator(url={self.url!r})"


def _package_root() -> str:
    return str(Path(__file__).resolve().parents[3])


class EmulatorProcess(EmulatorClient):
    """The emulator in a child process (``python -m comet_provider.testing``).

    ``cpu`` (an int or a collection of ints) pins the child with ``sched_setaffinity``.
    The API key travels in the environment, not on the command line (``ps`` shows argv).
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        cpu: int | Iterable[int] | None = None,
        python: str = sys.executable,
        startup_timeout: float = 30.0,
        env: Mapping[str, str] | None = None,
        loop: str = "auto",
        **config: Any,
    ) -> None:
        self._config = EmulatorConfig.from_kwargs(config)  # validate here, not in the child
        # Validated values (paths as strings, FaultConfig as a dict) for the child's --config.
        public = self._config.to_dict()
        self._config_values = {k: public[k] for k in config if k in public}
        self.host = host
        self.port = port
        self.cpus: set[int] | None = None
        if cpu is not None:
            self.cpus = {cpu} if isinstance(cpu, int) else {int(c) for c in cpu}
        self.python = python
        self.startup_timeout = startup_timeout
        self._env = dict(env or {})
        self._loop_kind = loop
        self.url = ""
        self.api_key = self._config.api_key
        self._initial_api_key = self.api_key
        self.process: subprocess.Popen[bytes] | None = None
        self._workdir: Path | None = None
        self.log_path: Path | None = None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def command(self, ready_file: str) -> list[str]:
        cmd = [
            self.python,
            "-m",
            "comet_provider.testing",
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--ready-file",
            ready_file,
            "--loop",
            self._loop_kind,
        ]
        if self._config_values:
            cmd += ["--config", json.dumps(self._config_values)]
        if self.cpus:
            cmd += ["--cpu", ",".join(str(c) for c in sorted(self.cpus))]
        return cmd

    def start(self) -> EmulatorProcess:
        if self.process is not None:
            return self
        self._workdir = Path(tempfile.mkdtemp(prefix="comet-emulator-proc-"))
        ready_file = self._workdir / "ready"
        self.log_path = self._workdir / "emulator.log"
        env = {**os.environ, **self._env}
        env.pop(API_KEY_ENV, None)
        if self.api_key is not None:
            env[API_KEY_ENV] = self.api_key
        root = _package_root()
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
        with self.log_path.open("wb") as log_file:
            self.process = subprocess.Popen(
                self.command(str(ready_file)),
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                env=env,
            )
        if self.cpus:
            # The child pins itself too (--cpu); this covers the moments before it does.
            with contextlib.suppress(OSError):
                os.sched_setaffinity(self.process.pid, self.cpus)
        try:
            self._wait_ready(ready_file)
        except BaseException:
            self.stop()
            raise
        return self

    def _log_tail(self) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")[-4000:]

    def _wait_ready(self, ready_file: Path) -> None:
        assert self.process is not None
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            code = self.process.poll()
            if code is not None:
                raise RuntimeError(f"emulator process exited with {code}:\n{self._log_tail()}")
            if not self.url and ready_file.exists():
                self.url = ready_file.read_text().strip()
            if self.url and self.health():
                return
            time.sleep(0.02)
        raise TimeoutError(f"emulator did not answer within {self.startup_timeout}s:\n{self._log_tail()}")

    def stop(self) -> None:
        self._close_http()
        proc, self.process = self.process, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None
        self.url = ""

    def __enter__(self) -> EmulatorProcess:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"EmulatorProcess(url={self.url!r}, pid={self.pid})"
