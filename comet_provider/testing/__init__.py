"""Offline testing tools: a local CometAPI (Runway video2video) emulator and sample clips.

```python
from comet_provider.testing import CometEmulator, EmulatorProcess

with CometEmulator(api_key="test-key", render_seconds=2.0, media_dir="media") as emu:  # a thread
    emu.url                       # "http://127.0.0.1:PORT"; emu.media_url("clip.mp4")
    emu.connection_json()         # for AIRFLOW_CONN_COMET_DEFAULT
    emu.stats(); emu.configure(faults={"rate": 0.2}); emu.reset(); emu.inbox("callbacks")
with EmulatorProcess(api_key="k", render="synthetic", cpu=1) as emu:  # a child process, same methods
    ...
```

API (Bearer auth, ``X-Runway-Version`` required by default): ``POST /runway/pro/video2video``,
``POST /runway/feed``; Runway's format ``POST /runwayml/v1/video_to_video``, ``GET /runwayml/v1/tasks/{id}``
(sources fetched from ``data:`` URIs or http(s)/presigned URLs; the first reference image's palette
and ``seed`` shape the render). Files: ``GET /renders/<task_id>.mp4|.poster.jpg|.last_frame.jpg``
(403 with an S3-style XML body once the link has expired), ``GET /media/<path>`` (``media_dir``). Control, no auth:
``GET /_emulator/health|stats|config``, ``POST /_emulator/config|reset``, ``POST /_emulator/expire``
(body ``{"task_id": ID}`` or none for every link issued so far), ``POST|GET|DELETE /_emulator/inbox/<name>``,
``GET /_emulator/blob?size=N``.

Config keys (:class:`EmulatorConfig`): ``api_key`` (None: any token), ``require_version_header``,
``not_exist_seconds`` / ``queue_seconds`` / ``render_seconds`` (the task timeline), ``concurrency``
(THROTTLED beyond it; 0 = unlimited), ``url_placement`` (rotate, video_url, result_url, output,
inner_video_url, none), ``render`` (ffmpeg, copy, synthetic), ``official_task_shape`` (bare, envelope),
``render_workers``, ``media_dir``, ``data_dir``, ``public_url``, ``link_ttl`` (seconds render links work
after success; None = forever), ``callback_timeout``, ``fetch_timeout``, ``render_timeout``, ``log_requests``,
``faults`` (rate, kinds, endpoints, retry_after, slow_seconds, seed) and ``fail_next`` (one-shot
``{endpoint, kind, count}`` queue); the "submit" and "feed" endpoints cover both routes.

Stats (``emu.stats()``): ``submissions``, ``submit_attempts``, ``routes`` (both per route), ``feeds``,
``task_polls``, ``in_flight`` (submitted, not
terminal), ``peak_in_flight`` (most at once since the last reset), ``faults``, ``callbacks``,
``auth_failures``, ``renders``, ``links`` (``downloads``, ``expired``) and ``tasks`` (per task: ``prompt``,
``video``, ``status``, ``downloads``, ``link_expired``, ...); ``emu.submission_counts(route=None)`` counts
submissions (both routes) per ``(source, prompt)``, ``source`` being the URL without its query;
``emu.expire_links(task_id=None)`` expires links.

Prompt tags: ``[fail]``, ``[fail:CODE]``, ``[cancel]``; style keywords pick the ffmpeg filter
(:func:`styles_for_prompt`). CLI: ``python -m comet_provider.testing --help``. pytest fixtures
(``comet_emulator``, ``comet_emulator_session``, ``comet_emulator_factory``, ``sample_video``) are
opt-in: ``pytest_plugins = ["comet_provider.testing.pytest_plugin"]`` in your root ``conftest.py``.
Exports are imported lazily so that importing this package stays cheap.
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
