"""The control API: stats, reset, config, health, link expiry requests, in-flight and submission counts."""

from __future__ import annotations

import json

import httpx
import pytest
from _emulator_helpers import Api

from comet_provider.testing import CometEmulator


def test_stats_reset_and_config(emu: CometEmulator, api: Api) -> None:
    task_id = api.submit_id()
    api.feed(task_id)
    stats = emu.stats()
    assert stats["submissions"] == 1 and stats["submit_attempts"] == 1 and stats["feeds"] == 1
    assert set(stats) >= {"faults", "callbacks", "tasks", "auth_failures", "renders", "links", "in_flight"}
    assert "tasks" not in emu.stats(tasks=False)
    with pytest.raises(ValueError, match="unknown config key"):
        emu.configure(no_such_key=1)
    with pytest.raises(ValueError, match="url_placement"):
        emu.configure(url_placement="somewhere", render_seconds=9)
    assert emu.config()["render_seconds"] == 0.3  # rejected updates change nothing
    with pytest.raises(ValueError, match="data_dir"):
        emu.configure(data_dir="/elsewhere")
    emu.reset()
    stats = emu.stats()
    assert stats["submissions"] == 0 and stats["tasks"] == {} and stats["feeds"] == 0
    assert api.feed(task_id).status_code == 400
    assert emu.config()["render"] == "synthetic"
    emu.reset(config=True)
    assert emu.config()["render"] == "ffmpeg"


def test_health_and_connection_json(emu: CometEmulator) -> None:
    assert emu.health()
    assert json.loads(emu.connection_json()) == {"conn_type": "comet", "host": emu.url, "password": "test-key"}
    assert json.loads(emu.connection_json(conn_type="http"))["conn_type"] == "http"


def test_in_flight_and_its_peak_since_reset(emu: CometEmulator, api: Api) -> None:
    emu.configure(render_seconds=30)
    for prompt in ("noir", "sepia", "noir [fail]"):
        api.submit_id(prompt)
    stats = emu.stats(tasks=False)
    assert (stats["in_flight"], stats["peak_in_flight"]) == (3, 3)
    emu.reset()
    stats = emu.stats(tasks=False)
    assert (stats["in_flight"], stats["peak_in_flight"]) == (0, 0)


def test_peak_in_flight_proves_a_pool_of_two(emu: CometEmulator, api: Api) -> None:
    # A client that submits the next render only once it has seen one finish: never 3 at once.
    emu.configure(not_exist_seconds=0, queue_seconds=0, render_seconds=0.2)
    running = [api.submit_id("noir"), api.submit_id("noir [fail]")]
    for prompt in ("sepia", "neon", "invert [cancel]"):
        api.wait(running.pop(0))
        running.append(api.submit_id(prompt))
    for task_id in running:
        api.wait(task_id)
    stats = emu.stats(tasks=False)
    assert stats["submissions"] == 5
    assert (stats["in_flight"], stats["peak_in_flight"]) == (0, 2)


def test_submission_counts_per_input(emu: CometEmulator, api: Api) -> None:
    emu.configure(not_exist_seconds=30)
    day_one, day_two = emu.media_url("2025-06-01/a.mp4"), emu.media_url("2025-06-02/a.mp4")
    for prompt, video in (("noir", day_one), ("noir", day_one), ("sepia", day_one), ("noir", day_two)):
        api.submit_id(prompt, video=video)
    assert emu.submission_counts() == {(day_one, "noir"): 2, (day_one, "sepia"): 1, (day_two, "noir"): 1}
    tasks = emu.stats()["tasks"].values()
    assert sorted((t["video"], t["prompt"]) for t in tasks)[0] == (day_one, "noir")


def test_expire_request_validation(emu: CometEmulator, api: Api) -> None:
    control = httpx.Client(base_url=emu.url, trust_env=False)
    assert control.post("/_emulator/expire").json() == {"status": "ok", "expired": 0}
    response = control.post("/_emulator/expire", json={"task_id": 5})
    assert response.status_code == 400 and response.json()["error"]["param"] == "task_id"
    response = control.post("/_emulator/expire", content=b"{nope")
    assert response.status_code == 400 and "JSON" in response.json()["error"]["message"]
    response = control.post("/_emulator/expire", json={"task_id": "nope"})
    assert response.status_code == 404 and response.json()["error"]["code"] == "task_not_found"
    control.close()
