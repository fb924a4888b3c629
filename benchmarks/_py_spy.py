"""py-spy over a benchmark client's window, summarized as CPU shares by package and by marker."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any


def start_py_spy(folder: str, pid: int, name: str, window: float) -> tuple[subprocess.Popen[bytes], Path] | None:
    """Sample the client process (CPU only, no idle frames) over the window with py-spy."""

    exe = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(exe).exists():
        print("  (py-spy not found: pip install py-spy)")
        return None
    out = Path(folder) / f"{name}.collapsed.txt"
    out.parent.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(
        [
            exe,
            "record",
            "--pid",
            str(pid),
            "--duration",
            str(max(1, int(window))),
            "--rate",
            "200",
            "--nonblocking",
            "--format",
            "raw",
            "--output",
            str(out),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return proc, out


def finish_py_spy(spy: tuple[subprocess.Popen[bytes], Path]) -> dict[str, Any] | None:
    """Share of CPU samples per package (inclusive: the sample's stack touches it) and per leaf."""
    proc, out = spy
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()
    if not out.exists():
        return None
    return summarize_collapsed(out)


PACKAGES = (
    "comet_provider",
    "httpx_aiohttp",
    "httpx",
    "httpcore",
    "anyio",
    "aiohttp",
    "yarl",
    "multidict",
    "greenback",
    "greenlet",
    "structlog",
    "opentelemetry",
    "airflow",
    "tenacity",
    "requests",
    "json",
    "logging",
    "asyncio",
    "ssl",
    "selectors",
    "gc",
)


def _pkg(frame: str) -> str:
    path = frame.rsplit("(", 1)[-1].replace("\\", "/")
    for name in PACKAGES:
        if f"/{name}/" in path or path.startswith(f"{name}/") or f"/{name}.py" in path:
            return name
    return "other"


IDLE_LEAVES = ("select (selectors.py", "_worker (concurrent/futures/thread.py", "wait (threading.py")
MARKERS = {
    "structlog (log calls)": "structlog/",
    "stdlib logging": "/logging/__init__.py",
    "httpx models": "httpx/_models.py",
    "httpx client": "httpx/_client.py",
    "CometHook._arequest": "_arequest (",
    "hook _answer": "_answer (",
    "RunwayTask.from_feed": "from_feed (",
    "RunwayWaiter": "utils/polling.py",
    "aiohttp request": "_request (aiohttp/client.py",
    "HttpAsyncHook": "providers/http/hooks/http.py",
    "tenacity": "tenacity/",
    "aiohttp ClientSession()": "__init__ (aiohttp/client.py",
    "greenback": "greenback/",
    "json": "/json/",
}


def summarize_collapsed(path: Path, top: int = 12) -> dict[str, Any]:
    """py-spy raw (collapsed) stacks -> CPU shares: idle excluded, by leaf package and by marker."""
    self_pkg: dict[str, int] = {}
    leaves: dict[str, int] = {}
    marked: dict[str, int] = {}
    total = idle = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        leaf = frames[-1]
        if any(m in leaf for m in IDLE_LEAVES):
            idle += count
            continue
        total += count
        self_pkg[_pkg(leaf)] = self_pkg.get(_pkg(leaf), 0) + count
        leaves[leaf] = leaves.get(leaf, 0) + count
        for name, needle in MARKERS.items():
            if any(needle in f for f in frames):
                marked[name] = marked.get(name, 0) + count
    if not total:
        return {"samples": 0, "idle_samples": idle}

    def pct(d: dict[str, int], n: int | None = None) -> dict[str, float]:
        items = sorted(d.items(), key=lambda kv: -kv[1])[:n]
        return {k: round(100 * v / total, 1) for k, v in items}

    return {
        "samples": total,
        "idle_samples": idle,
        "file": str(path),
        "self_by_package_pct": pct(self_pkg),
        "inclusive_pct": pct(marked),
        "top_leaves_pct": pct(leaves, top),
    }
