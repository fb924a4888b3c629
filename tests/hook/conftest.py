"""Fixtures for the hook tests: the provider against a real in-process emulator over loopback.

One emulator serves the module (``emulator``); every test starts from a clean
slate (tasks, counters, one-shot faults and configuration reset), with the
``comet_default`` connection pointing at it through ``AIRFLOW_CONN_COMET_DEFAULT``.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from comet_provider.hooks.comet import CometHook
from comet_provider.testing import CometEmulator

from ._support import FAST_RETRY, SECRET

#: Fast but realistic: a fresh task is invisible (task_not_exist) for 0.15 s, queued 0.05 s, renders 0.3 s.
TIMINGS: dict[str, Any] = {"not_exist_seconds": 0.15, "queue_seconds": 0.05, "render_seconds": 0.3}


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory, sample_video: Path) -> Iterator[CometEmulator]:
    media = tmp_path_factory.mktemp("hook-media")
    shutil.copyfile(sample_video, media / "clip.mp4")
    # "copy" renders hand back the source clip: a download can be checked byte for byte.
    emu = CometEmulator(api_key=SECRET, media_dir=str(media), render="copy", **TIMINGS).start()
    try:
        yield emu
    finally:
        emu.stop()


@pytest.fixture
def emu(emulator: CometEmulator, monkeypatch: pytest.MonkeyPatch) -> CometEmulator:
    """The module's emulator, reset, with ``comet_default`` pointing at it."""
    emulator.reset(config=True)
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AIRFLOW_CONN_COMET_DEFAULT", emulator.connection_json(timeout=5))
    return emulator


@pytest.fixture
def clip_url(emu: CometEmulator) -> str:
    return emu.media_url("clip.mp4")


@pytest.fixture
def clip_bytes(emulator: CometEmulator) -> bytes:
    media_dir = emulator.media_dir
    assert media_dir is not None
    return (media_dir / "clip.mp4").read_bytes()


@pytest.fixture
def set_connection(emu: CometEmulator, monkeypatch: pytest.MonkeyPatch) -> Callable[..., None]:
    """Re-point ``comet_default``: ``set_connection(password=..., host=..., extra={...})``."""

    def set_conn(**overrides: Any) -> None:
        conn = json.loads(emu.connection_json())
        conn.update(overrides)
        monkeypatch.setenv("AIRFLOW_CONN_COMET_DEFAULT", json.dumps(conn))

    return set_conn


@pytest.fixture
def hook(emu: CometEmulator) -> Iterator[CometHook]:
    """A hook with quick retries; its sync client is closed at teardown."""
    with CometHook(retry_policy=FAST_RETRY) as comet_hook:
        yield comet_hook
