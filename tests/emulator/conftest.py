"""Fixtures for the emulator tests (the emulator fixtures themselves come from the plugin)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from _emulator_helpers import Api

from comet_provider.testing import CometEmulator


@pytest.fixture
def emu(comet_emulator: CometEmulator) -> CometEmulator:
    """The plugin's emulator with test-speed timings and cheap placeholder renders."""
    comet_emulator.configure(not_exist_seconds=0.1, queue_seconds=0.1, render_seconds=0.3, render="synthetic")
    return comet_emulator


@pytest.fixture
def api(emu: CometEmulator) -> Iterator[Api]:
    client = Api(emu)
    yield client
    client.close()


@pytest.fixture
def staged_clip(comet_emulator: CometEmulator, sample_video: Path) -> str:
    """The sample clip staged in the emulator's media_dir; returns its URL."""
    media_dir = comet_emulator.media_dir
    assert media_dir is not None
    (media_dir / "clip.mp4").write_bytes(sample_video.read_bytes())
    return comet_emulator.media_url("clip.mp4")
