"""Where the emulator runs: EmulatorProcess (a child process) and the CLI it starts."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
from _emulator_helpers import Api

from comet_provider.testing import EmulatorProcess


def test_emulator_process_end_to_end(tmp_path: Path) -> None:
    media = tmp_path / "media"
    media.mkdir()
    cpu = min(os.sched_getaffinity(0))
    with EmulatorProcess(
        api_key="proc-secret-key",
        render="synthetic",
        not_exist_seconds=0.1,
        queue_seconds=0.1,
        render_seconds=0.3,
        media_dir=str(media),
        cpu=cpu,
        faults={"rate": 0.0, "seed": 3},
    ) as emu:
        assert emu.url.startswith("http://127.0.0.1:") and emu.health()
        assert emu.pid is not None and os.sched_getaffinity(emu.pid) == {cpu}
        # The key is passed through the environment, never on the command line.
        with open(f"/proc/{emu.pid}/cmdline", "rb") as f:
            assert b"proc-secret-key" not in f.read()
        api = Api(emu, headers={"Authorization": "Bearer proc-secret-key", "X-Runway-Version": "2024-11-06"})
        task_id = api.submit_id("noir", callback_url=emu.inbox_url("cb"))
        final, _ = api.wait(task_id)
        assert final["status"] == "SUCCESS"
        assert emu.expire_links() == 1
        assert httpx.get(final["poster"], trust_env=False).status_code == 403
        emu.configure(fail_next=[{"endpoint": "feed", "kind": "500"}])
        assert api.feed(task_id).status_code == 500
        stats = emu.stats()
        assert stats["submissions"] == 1 and stats["faults"] == {"500": 1}
        assert (stats["in_flight"], stats["peak_in_flight"]) == (0, 1)
        assert stats["tasks"][task_id]["status"] == "SUCCESS"
        deadline = time.monotonic() + 5
        while not emu.inbox("cb") and time.monotonic() < deadline:
            time.sleep(0.05)
        assert emu.inbox("cb")[0]["body"]["task_id"] == task_id
        assert emu.config()["faults"]["seed"] == 3
        emu.reset()
        assert emu.stats()["submissions"] == 0
        api.close()
        log_path = emu.log_path
        assert log_path is not None and "proc-secret-key" not in log_path.read_text()
        process = emu.process
    assert process is not None and process.poll() is not None
    assert not emu.url


def test_cli_ready_file_and_flags(tmp_path: Path) -> None:
    ready = tmp_path / "ready"
    data_dir = tmp_path / "data"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "comet_provider.testing",
            "--port",
            "0",
            "--api-key",
            "cli-key",
            "--render-seconds",
            "7",
            "--render",
            "synthetic",
            "--data-dir",
            str(data_dir),
            "--media-dir",
            str(tmp_path),
            "--no-version-header",
            "--link-ttl",
            "30",
            "--config",
            '{"url_placement": "output", "faults": {"seed": 9}}',
            "--ready-file",
            str(ready),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 20
        while not ready.exists() and time.monotonic() < deadline:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            time.sleep(0.02)
        url = ready.read_text().strip()
        config = httpx.get(url + "/_emulator/config", trust_env=False).json()
        assert config["render_seconds"] == 7 and config["render"] == "synthetic"
        assert config["url_placement"] == "output" and config["faults"]["seed"] == 9
        assert config["require_version_header"] is False and config["api_key_set"] is True
        assert config["link_ttl"] == 30
        assert config["data_dir"] == str(data_dir) and config["media_dir"] == str(tmp_path)
        assert "cli-key" not in str(config)
    finally:
        proc.terminate()
        proc.wait(timeout=15)
    assert proc.returncode == 0
    assert data_dir.is_dir()  # a given data_dir is kept
