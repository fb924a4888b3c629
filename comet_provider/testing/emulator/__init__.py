"""A local emulator of CometAPI's Runway endpoints (aiohttp.web on loopback).

It plays the API, both routes (CometAPI's ``POST /runway/pro/video2video`` + ``POST /runway/feed``,
and Runway's format ``POST /runwayml/v1/video_to_video`` + ``GET /runwayml/v1/tasks/{id}``, with
submit, poll, auth, faults, callbacks) and the "public storage"
around it: source clips staged in ``media_dir`` are served at ``/media/...`` and
finished renders at ``/renders/<task_id>.mp4`` (links that can expire, like signed
CDN URLs). ``/_emulator/...`` is an unauthenticated control API (stats, config,
reset, link expiry, inboxes, blobs).

Two ways to run it, with the same client-side methods (plain HTTP calls to the
control API): :class:`CometEmulator` (a thread of this process) and
:class:`EmulatorProcess` (``python -m comet_provider.testing`` in a child process).

Modules, one concern each: ``settings`` (config and its validation), ``timeline``
(a task's states over time), ``capacity`` (slots, in-flight count), ``faults``, ``routes``
(submit and poll, both routes), ``official`` (the official body and bare task), ``sources``
(fetching ``data:`` URIs and signed URLs), ``render_jobs``, ``official_render``, ``callbacks``
(and inboxes), ``files`` (renders, media, blobs), ``control`` (the control API and stats),
``server`` (state and lifecycle), ``client`` and ``runners`` (thread, child process, ``serve``),
``wire`` (shared JSON and error envelopes).
"""

from __future__ import annotations

from comet_provider.testing.emulator.client import EmulatorClient
from comet_provider.testing.emulator.runners import API_KEY_ENV, CometEmulator, EmulatorProcess, new_event_loop, serve
from comet_provider.testing.emulator.server import EmulatorServer
from comet_provider.testing.emulator.settings import (
    FAULT_ENDPOINTS,
    FAULT_KINDS,
    OFFICIAL_TASK_SHAPES,
    PLACEMENTS,
    RENDER_MODES,
    URL_PLACEMENTS,
    EmulatorConfig,
    FaultConfig,
)

__all__ = [
    "API_KEY_ENV",
    "FAULT_ENDPOINTS",
    "FAULT_KINDS",
    "OFFICIAL_TASK_SHAPES",
    "PLACEMENTS",
    "RENDER_MODES",
    "URL_PLACEMENTS",
    "CometEmulator",
    "EmulatorClient",
    "EmulatorConfig",
    "EmulatorProcess",
    "EmulatorServer",
    "FaultConfig",
    "new_event_loop",
    "serve",
]
