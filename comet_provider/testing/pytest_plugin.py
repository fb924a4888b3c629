"""pytest fixtures for the CometAPI emulator: ``comet_emulator``, ``comet_emulator_session``,
``comet_emulator_factory`` and ``sample_video``.

Opt-in: installing the provider loads nothing into your pytest runs. To use the
fixtures, name the plugin in the ``conftest.py`` at your rootdir (pytest only
accepts ``pytest_plugins`` there)::

    pytest_plugins = ["comet_provider.testing.pytest_plugin"]

or pass ``-p comet_provider.testing.pytest_plugin`` (e.g. in ``addopts``).
Heavy imports happen inside the fixtures, so loading the plugin stays cheap.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from comet_provider.testing.emulator import CometEmulator

# Short timings so a whole task lifecycle takes ~1.5 s.
FAST_TIMINGS: dict[str, Any] = {
    "api_key": "test-key",
    "not_exist_seconds": 0.3,
    "queue_seconds": 0.2,
    "render_seconds": 1.0,
}


def _start(**config: Any) -> CometEmulator:
    from comet_provider.testing.emulator import CometEmulator

    return CometEmulator(**{**FAST_TIMINGS, **config}).start()


@pytest.fixture
def comet_emulator(tmp_path: Path) -> Iterator[CometEmulator]:
    """A fresh in-process emulator per test (key ``test-key``, ``media_dir`` under tmp_path)."""
    media = tmp_path / "comet-media"
    media.mkdir()
    emulator = _start(media_dir=str(media))
    try:
        yield emulator
    finally:
        emulator.stop()


@pytest.fixture(scope="session")
def comet_emulator_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CometEmulator]:
    """One emulator for the whole session; call ``.reset(config=True)`` for a clean slate."""
    media = tmp_path_factory.mktemp("comet-media")
    emulator = _start(media_dir=str(media))
    try:
        yield emulator
    finally:
        emulator.stop()


@pytest.fixture
def comet_emulator_factory(tmp_path: Path) -> Iterator[Callable[..., CometEmulator]]:
    """``factory(**config)`` starts an emulator (fast timings unless overridden), stopped at teardown."""
    started: list[CometEmulator] = []

    def factory(**config: Any) -> CometEmulator:
        if "media_dir" not in config:
            media = tmp_path / f"comet-media-{len(started)}"
            media.mkdir()
            config["media_dir"] = str(media)
        emulator = _start(**config)
        started.append(emulator)
        return emulator

    try:
        yield factory
    finally:
        for emulator in started:
            emulator.stop()


@pytest.fixture(scope="session")
def sample_video(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 4 s 320x240 H.264 clip with motion (ffmpeg testsrc2), cached across runs."""
    from comet_provider.testing.render import make_sample_video

    cache = getattr(request.config, "cache", None)
    folder = Path(cache.mkdir("comet_emulator")) if cache is not None else tmp_path_factory.mktemp("video")
    return make_sample_video(folder / "sample-320x240-4s.mp4", seconds=4, size="320x240")
