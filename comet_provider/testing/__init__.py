"""Offline testing tools: a local CometAPI (Runway) emulator and sample-video helpers.

```python
from comet_provider.testing import CometEmulator, EmulatorProcess

with CometEmulator(api_key="test-key", render_seconds=2.0, media_dir="media") as emu:
    emu.url, emu.stats(), emu.configure(faults={"rate": 0.2}), emu.inbox("callbacks")
```

Exports are imported lazily so that ``import comet_provider.testing`` stays cheap.
CLI: ``python -m comet_provider.testing --help``. pytest fixtures: ``comet_emulator``,
``comet_emulator_session``, ``comet_emulator_factory``, ``sample_video``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from comet_provider.testing.emulator import (
        FAULT_ENDPOINTS,
        FAULT_KINDS,
        RENDER_MODES,
        URL_PLACEMENTS,
        CometEmulator,
        EmulatorConfig,
        EmulatorProcess,
        EmulatorServer,
        FaultConfig,
    )
    from comet_provider.testing.render import build_filter, make_sample_video, styles_for_prompt

_EXPORTS = {
    "CometEmulator": "emulator",
    "EmulatorProcess": "emulator",
    "EmulatorConfig": "emulator",
    "EmulatorServer": "emulator",
    "FaultConfig": "emulator",
    "FAULT_ENDPOINTS": "emulator",
    "FAULT_KINDS": "emulator",
    "RENDER_MODES": "emulator",
    "URL_PLACEMENTS": "emulator",
    "build_filter": "render",
    "make_sample_video": "render",
    "styles_for_prompt": "render",
}

__all__ = [
    "FAULT_ENDPOINTS",
    "FAULT_KINDS",
    "RENDER_MODES",
    "URL_PLACEMENTS",
    "CometEmulator",
    "EmulatorConfig",
    "EmulatorProcess",
    "EmulatorServer",
    "FaultConfig",
    "build_filter",
    "make_sample_video",
    "styles_for_prompt",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
