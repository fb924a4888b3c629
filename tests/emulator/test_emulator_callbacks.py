"""Callbacks to the task's callback_url, and the inboxes that receive them."""

from __future__ import annotations

import socket
import time

import httpx
from _emulator_helpers import Api

from comet_provider.testing import CometEmulator


def test_callback_delivered_to_inbox(comet_emulator: CometEmulator, api: Api) -> None:
    ok = api.submit_id("noir", callback_url=comet_emulator.inbox_url("hooks"))
    failed = api.submit_id("noir [fail:SAFETY.INPUT.TEXT]", callback_url=comet_emulator.inbox_url("hooks"))
    api.wait(ok)
    api.wait(failed)
    deadline = time.monotonic() + 5
    while len(comet_emulator.inbox("hooks")) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    entries = {entry["body"]["task_id"]: entry for entry in comet_emulator.inbox("hooks")}
    assert set(entries) == {ok, failed}
    assert entries[ok]["body"]["status"] == "SUCCESS" and entries[ok]["json"] is True
    assert entries[ok]["method"] == "POST" and entries[ok]["path"] == "/_emulator/inbox/hooks"
    assert entries[failed]["body"]["data"]["failureCode"] == "SAFETY.INPUT.TEXT"
    assert comet_emulator.stats()["callbacks"]["sent"] == 2


def test_callback_failure_is_recorded_not_raised(comet_emulator: CometEmulator, api: Api) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    api.submit_id("noir", callback_url=f"http://127.0.0.1:{port}/hook")
    api.submit_id("noir", callback_url="not-a-url")  # ignored: not http(s)
    api.submit_id("noir", callback_url=comet_emulator.url + "/no/such/route")  # 404
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        callbacks = comet_emulator.stats()["callbacks"]
        if callbacks["failed"] >= 2:
            break
        time.sleep(0.05)
    assert callbacks["failed"] == 2 and callbacks["sent"] == 0
    assert len(callbacks["errors"]) == 2


def test_inbox_stores_any_body_without_credentials(comet_emulator: CometEmulator) -> None:
    url = comet_emulator.inbox_url("notify")
    httpx.post(url, json={"a": 1}, headers={"Authorization": "Bearer hush", "X-Trace": "t1"}, trust_env=False)
    httpx.post(url + "?x=1", content=b"plain text", trust_env=False)
    entries = comet_emulator.inbox("notify")
    assert [e["body"] for e in entries] == [{"a": 1}, "plain text"]
    assert [e["json"] for e in entries] == [True, False]
    assert entries[0]["headers"]["X-Trace"] == "t1"
    assert "hush" not in str(entries) and all("authorization" not in {h.lower() for h in e["headers"]} for e in entries)
    assert entries[1]["query"] == {"x": "1"} and entries[0]["received_at"] <= entries[1]["received_at"]
    assert comet_emulator.inbox("other") == []
    comet_emulator.clear_inbox("notify")
    assert comet_emulator.inbox("notify") == []
