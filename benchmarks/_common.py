"""Shared helpers for the benchmark scripts in this folder (not a public module).

Every script prints a human table and, as its LAST line, one JSON object; the JSON keys are
read by checks outside the project, so they never change name.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
API_KEY = "bench-key"
RUNWAY_VERSION = "2024-11-06"

# Core layout on the 2-core machine: the client under test on one core, the API server (the
# emulator) on the other, so the server's CPU never shows up in the client's figures.
CLIENT_CORE = 0
SERVER_CORE = 1


def pin(core: int, pid: int = 0) -> None:
    """Pin ``pid`` (0: this process) to one core, when the machine has it."""
    with contextlib.suppress(AttributeError, OSError):
        if core < (os.cpu_count() or 1):
            os.sched_setaffinity(pid, {core})


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100.0 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return round(a / b, 3)


def fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def print_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    cells = [[str(h) for h in headers]] + [[fmt(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    for n, row in enumerate(cells):
        print("  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)))
        if n == 0:
            print("  ".join("-" * w for w in widths))


def emit_json(figures: dict[str, Any]) -> None:
    """Print the figures as the script's last line."""
    sys.stdout.flush()
    print(json.dumps(figures, sort_keys=False), flush=True)


def machine_info() -> dict[str, Any]:
    info: dict[str, Any] = {
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
    }
    with contextlib.suppress(OSError):
        info["loadavg_1m"] = round(os.getloadavg()[0], 2)
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as fh:
        for line in fh:
            if line.startswith("model name"):
                info["cpu_model"] = line.split(":", 1)[1].strip()
                break
    return info


def scratch_airflow_env(home: Path | None = None, extra: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for child processes: a scratch AIRFLOW_HOME, no example DAGs, quiet logs."""
    env = dict(os.environ)
    if home is None:
        home = Path(tempfile.mkdtemp(prefix="comet-bench-airflow-"))
    env["AIRFLOW_HOME"] = str(home)
    env.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
    env.setdefault("AIRFLOW__CORE__UNIT_TEST_MODE", "False")
    # COMET_BENCH_SRC: another checkout's comet_provider first (e.g. the code before a change).
    src = env.get("COMET_BENCH_SRC", "")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (src, str(REPO), env.get("PYTHONPATH", "")) if p)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    if extra:
        env.update(extra)
    return env


def comet_conn_env(url: str, api_key: str = API_KEY) -> dict[str, str]:
    """The ``AIRFLOW_CONN_*`` variables the benchmarks use.

    Airflow 3.3.2 resolves these outside a task without any patching: with no supervisor comms
    set, ``airflow.sdk.execution_time.supervisor.ensure_secrets_backend_loaded()`` returns just
    ``EnvironmentVariablesBackend``, which ``BaseHook.get_connection``/``aget_connection`` (and so
    ``get_async_connection``) consult.
    """
    return {
        "AIRFLOW_CONN_COMET_DEFAULT": json.dumps({"conn_type": "comet", "host": url, "password": api_key}),
        # How a user points HttpSensorTrigger at the same API: the host, and the Bearer header in
        # the connection's extra (HttpAsyncHook sends extra keys as headers).
        "AIRFLOW_CONN_COMET_HTTP": json.dumps(
            {
                "conn_type": "http",
                "host": url,
                "extra": {
                    "Authorization": f"Bearer {api_key}",
                    "X-Runway-Version": RUNWAY_VERSION,
                    "Content-Type": "application/json",
                },
            }
        ),
    }


def provider_available(module: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


# --------------------------------------------------------------------------------------------
# The API server: the project's emulator when it is there, else a throwaway fake
# --------------------------------------------------------------------------------------------


class Server:
    """A CometAPI server in another process, pinned to ``SERVER_CORE``.

    Uses ``comet_provider.testing.EmulatorProcess`` when it exists; otherwise
    ``benchmarks/_fake_comet.py`` (same endpoints, fewer behaviours). ``kind`` says which.
    """

    def __init__(self, render_seconds: float = 30.0, prefer_emulator: bool = True) -> None:
        self.render_seconds = render_seconds
        self.prefer_emulator = prefer_emulator
        self.kind = ""
        self.url = ""
        self._emu: Any = None
        self._proc: subprocess.Popen[str] | None = None

    def __enter__(self) -> Server:
        if self.prefer_emulator and _emulator_usable():
            from comet_provider.testing import EmulatorProcess

            # Renders are instant placeholders ("synthetic") and visible at once (no
            # task_not_exist window, no queue): a task ends exactly render_seconds after submit.
            self._emu = EmulatorProcess(
                api_key=API_KEY,
                render_seconds=self.render_seconds,
                render="synthetic",
                not_exist_seconds=0.0,
                queue_seconds=0.0,
                cpu=SERVER_CORE,
            )
            self._emu.__enter__()
            self.url = str(self._emu.url).rstrip("/")
            self.kind = "emulator"
        else:
            self._proc = subprocess.Popen(
                [
                    sys.executable,
                    str(HERE / "_fake_comet.py"),
                    "--api-key",
                    API_KEY,
                    "--render-seconds",
                    str(self.render_seconds),
                    "--cpu",
                    str(SERVER_CORE),
                ],
                stdout=subprocess.PIPE,
                text=True,
            )
            assert self._proc.stdout is not None
            line = self._proc.stdout.readline()
            if not line.startswith("http"):
                self._proc.kill()
                raise RuntimeError(f"fake server did not start: {line!r}")
            self.url = line.strip()
            self.kind = "fake"
        return self

    def __exit__(self, *exc: object) -> None:
        if self._emu is not None:
            self._emu.__exit__(None, None, None)
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()

    # The emulator's Python API when present, the fake's HTTP control endpoints otherwise.
    def stats(self) -> dict[str, Any]:
        if self._emu is not None:
            return dict(self._emu.stats())
        return _get_json(f"{self.url}/_emulator/stats")

    def feeds(self) -> int:
        if self._emu is None:
            return int(_get_json(f"{self.url}/_emulator/stats?tasks=0")["feeds"])
        return int(self._emu.stats(tasks=False)["feeds"])

    def reset(self) -> None:
        """Forget all tasks and counters (the configuration stays)."""
        if self._emu is not None:
            self._emu.reset()
        else:
            _post_json(f"{self.url}/_emulator/reset", {})

    def configure(self, **settings: Any) -> None:
        if self._emu is not None:
            self._emu.configure(**settings)
        else:
            _post_json(f"{self.url}/_emulator/configure", settings)


def _emulator_usable() -> bool:
    if os.environ.get("COMET_BENCH_FAKE_SERVER") == "1":
        return False
    try:
        from comet_provider.testing import EmulatorProcess  # noqa: F401
    except Exception:
        return False
    return True


def _get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=30) as resp:  # loopback only
        return json.loads(resp.read())


def _post_json(url: str, body: Any) -> Any:
    req = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(req, timeout=30) as resp:  # loopback only
        return json.loads(resp.read() or b"null")


@contextlib.contextmanager
def timer() -> Iterator[dict[str, float]]:
    out: dict[str, float] = {}
    t0 = time.perf_counter()
    try:
        yield out
    finally:
        out["s"] = time.perf_counter() - t0
