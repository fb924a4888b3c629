"""Fault injection: every kind, one-shot queues, seeded randomness, submit faults."""

from __future__ import annotations

import contextlib
import time

import httpx
import pytest
from _emulator_helpers import Api

from comet_provider.testing import CometEmulator

HTML_FAULTS = {"502_html": 502, "503_html": 503, "504_html": 504}


def _status(response: httpx.Response) -> int:
    return response.status_code


@pytest.fixture
def task_id(emu: CometEmulator, api: Api) -> str:
    emu.configure(not_exist_seconds=0, queue_seconds=0, render_seconds=30)
    return api.submit_id()


def test_429_with_retry_after(emu: CometEmulator, api: Api, task_id: str) -> None:
    emu.configure(faults={"retry_after": 3}, fail_next=[{"endpoint": "feed", "kind": "429", "count": 2}])
    messages = []
    for _ in range(2):
        response = api.feed(task_id)
        assert response.status_code == 429
        assert response.headers["Retry-After"] == "3"
        assert response.headers["content-type"].startswith("application/json")
        error = response.json()["error"]
        assert error["code"] == "rate_limit_exceeded" and "(request id: " in error["message"]
        messages.append(error["message"])
    assert any("上游负载已饱和" in m for m in messages)
    assert any("上游负载已饱和" not in m for m in messages)
    assert api.feed(task_id).status_code == 200
    assert emu.stats()["faults"] == {"429": 2}


def test_500_json_envelope(emu: CometEmulator, api: Api, task_id: str) -> None:
    emu.configure(fail_next=[{"endpoint": "feed", "kind": "500"}])
    response = api.feed(task_id)
    assert response.status_code == 500
    assert response.json()["error"]["type"] == "comet_api_error"
    assert api.feed(task_id).status_code == 200


@pytest.mark.parametrize("kind", sorted(HTML_FAULTS))
def test_html_gateway_pages(emu: CometEmulator, api: Api, task_id: str, kind: str) -> None:
    emu.configure(fail_next=[{"endpoint": "feed", "kind": kind}])
    response = api.feed(task_id)
    assert response.status_code == HTML_FAULTS[kind]
    assert response.headers["content-type"].startswith("text/html")
    assert response.text.lstrip().startswith("<html>") and "nginx" in response.text
    assert api.feed(task_id).status_code == 200
    assert emu.stats()["faults"] == {kind: 1}


def test_drop_closes_connection(emu: CometEmulator, api: Api, task_id: str) -> None:
    emu.configure(fail_next=[{"endpoint": "feed", "kind": "drop"}])
    with pytest.raises(httpx.RemoteProtocolError):
        api.feed(task_id)
    assert api.feed(task_id).status_code == 200
    assert emu.stats()["faults"] == {"drop": 1}


def test_slow_answers_normally_after_delay(emu: CometEmulator, api: Api, task_id: str) -> None:
    emu.configure(faults={"slow_seconds": 0.4}, fail_next=[{"endpoint": "feed", "kind": "slow"}])
    started = time.monotonic()
    response = api.feed(task_id)
    assert time.monotonic() - started >= 0.38
    assert response.status_code == 200 and response.json()["data"]["task_id"] == task_id


def test_task_not_exist_for_existing_task(emu: CometEmulator, api: Api, task_id: str) -> None:
    emu.configure(fail_next=[{"endpoint": "feed", "kind": "task_not_exist", "count": 2}])
    for _ in range(2):
        response = api.feed(task_id)
        assert response.status_code == 400 and response.json()["code"] == "task_not_exist"
    assert api.feed(task_id).status_code == 200
    assert emu.stats()["faults"] == {"task_not_exist": 2}


def test_fail_next_is_an_exact_queue(emu: CometEmulator, api: Api, task_id: str) -> None:
    emu.configure(
        fail_next=[
            {"endpoint": "feed", "kind": "500", "count": 2},
            {"endpoint": "submit", "kind": "429"},
            {"endpoint": "feed", "kind": "503_html"},
        ]
    )
    assert emu.config()["fail_next"][0] == {"endpoint": "feed", "kind": "500", "count": 2}
    assert [_status(api.feed(task_id)) for _ in range(4)] == [500, 500, 503, 200]
    assert emu.config()["fail_next"] == [{"endpoint": "submit", "kind": "429", "count": 1}]
    assert _status(api.submit()) == 429
    assert _status(api.submit()) == 200
    assert emu.config()["fail_next"] == []


def test_random_faults_are_seeded(emu: CometEmulator, api: Api, task_id: str) -> None:
    faults = {"rate": 0.5, "kinds": ["429", "500", "502_html", "task_not_exist"], "seed": 42}

    def run() -> list[int]:
        emu.configure(faults=faults)  # re-seeds
        return [_status(api.feed(task_id)) for _ in range(30)]

    first, second = run(), run()
    assert first == second
    assert 200 in first and len(set(first)) >= 4
    emu.configure(faults={**faults, "seed": 43})
    assert [_status(api.feed(task_id)) for _ in range(30)] != first
    emu.configure(faults={"rate": 0})
    assert all(_status(api.feed(task_id)) == 200 for _ in range(10))


def test_random_faults_only_on_listed_endpoints(emu: CometEmulator, api: Api) -> None:
    emu.configure(faults={"rate": 1.0, "kinds": ["500"], "endpoints": ["feed"]})
    task_id = api.submit_id()
    assert _status(api.feed(task_id)) == 500


@pytest.mark.parametrize("kind", ["429", "500", "502_html", "503_html", "504_html", "drop", "slow"])
def test_submit_faults_create_no_task(emu: CometEmulator, api: Api, kind: str) -> None:
    emu.configure(faults={"slow_seconds": 0.1}, fail_next=[{"endpoint": "submit", "kind": kind}])
    if kind == "drop":
        with pytest.raises(httpx.RemoteProtocolError):
            api.submit()
    else:
        response = api.submit()
        if kind == "slow":
            assert response.status_code == 200  # delayed, then created normally
        else:
            assert response.status_code >= 429
    stats = emu.stats()
    assert stats["submit_attempts"] == 1
    assert stats["submissions"] == (1 if kind == "slow" else 0)
    assert stats["faults"] == {kind: 1}


def test_random_submit_faults_start_no_render(emu: CometEmulator, api: Api) -> None:
    emu.configure(faults={"rate": 1.0, "kinds": ["429", "500", "drop"], "endpoints": ["submit"]})
    for _ in range(6):
        with contextlib.suppress(httpx.RemoteProtocolError):
            assert api.submit().status_code in (429, 500)
    time.sleep(0.2)
    stats = emu.stats()
    assert stats["submit_attempts"] == 6 and stats["submissions"] == 0 and stats["tasks"] == {}
    assert stats["renders"] == {"done": 0, "failed": 0, "active": 0}
    assert sum(stats["faults"].values()) == 6


def test_download_faults(emu: CometEmulator, api: Api) -> None:
    emu.configure(fail_next=[{"endpoint": "download", "kind": "503_html"}])
    blob = emu.blob_url(10)
    assert httpx.get(blob, trust_env=False).status_code == 503
    assert httpx.get(blob, trust_env=False).status_code == 200


def test_reset_clears_one_shot_faults(emu: CometEmulator, api: Api, task_id: str) -> None:
    emu.configure(fail_next=[{"endpoint": "feed", "kind": "500", "count": 5}])
    emu.reset()
    assert emu.config()["fail_next"] == []
    assert emu.stats()["faults"] == {}
