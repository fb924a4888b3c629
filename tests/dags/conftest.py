"""Fixtures for the example DAGs' tests: the media helpers and the demo runner, importable."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
DAGS_FOLDER = REPO_ROOT / "dags"
DEMO_SCRIPT = REPO_ROOT / "scripts" / "demo.py"

# The DAG files import their helpers as Airflow does: with the dags folder on sys.path.
if str(DAGS_FOLDER) not in sys.path:
    sys.path.insert(0, str(DAGS_FOLDER))


def load_demo() -> ModuleType:
    """``scripts/demo.py`` as a module: the scratch-Airflow, emulator and ``dags test`` runner."""
    name = "comet_example_demo"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, DEMO_SCRIPT)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


@pytest.fixture(scope="session")
def demo() -> ModuleType:
    return load_demo()


@pytest.fixture(scope="session")
def sample_video(tmp_path_factory: pytest.TempPathFactory, demo: ModuleType) -> Path:
    """A 10 s, 320x240, 24 fps test pattern with motion and a tone."""
    path: Path = demo.sample_video(tmp_path_factory.mktemp("media") / "sample.mp4", seconds=10.0)
    return path
