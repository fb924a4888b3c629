"""Settings the operator-test DAGs read from the environment (set by tests/operators/conftest.py).

Defaults keep the files importable anywhere (e.g. by a DagBag check); the tests always set them.
"""

from __future__ import annotations

import os
from datetime import datetime, timezone

START = datetime(2025, 1, 1, tzinfo=timezone.utc)
#: The source clip, served by the emulator from its media_dir.
VIDEO_URL = os.environ.get("OPTEST_VIDEO_URL", "http://127.0.0.1:9/media/clip.mp4")
#: A clip that is missing until the first try of `retry_after_failure` fails.
LATE_VIDEO_URL = os.environ.get("OPTEST_LATE_VIDEO_URL", "http://127.0.0.1:9/media/late.mp4")
LATE_VIDEO_PATH = os.environ.get("OPTEST_LATE_VIDEO_PATH", "/nonexistent/late.mp4")
SAMPLE_PATH = os.environ.get("OPTEST_SAMPLE_PATH", "/nonexistent/clip.mp4")
OUT_DIR = os.environ.get("OPTEST_OUT_DIR", "/tmp/optest-out")
#: A style image for the official route's `references`, as a local file and served by the emulator.
REFERENCE_PATH = os.environ.get("OPTEST_REFERENCE_PATH", "/nonexistent/look.png")
REFERENCE_URL = os.environ.get("OPTEST_REFERENCE_URL", "http://127.0.0.1:9/media/look.png")
