"""The ``comet`` connection: parsing, sync and async lookup, and test_connection()."""

from __future__ import annotations

import json
import threading
from typing import Any

import httpx
import pytest
from airflow.sdk import BaseHook, Connection

from comet_provider.exceptions import CometConfigError
from comet_provider.hooks.comet import DEFAULT_BASE_URL, DEFAULT_RUNWAY_VERSION, DEFAULT_TIMEOUT, CometSettings
from comet_provider.models import RunwayStatus

from ._fakes import (
    BASE_URL,
    FAST_RETRY,
    SECRET,
    FakeApi,
    error_envelope,
    feed_answer,
    html_page,
    make_hook,
    submit_answer,
)


def conn(**kwargs: Any) -> Connection:
    values: dict[str, Any] = {"conn_type": "comet", "password": SECRET}
    values.update(kwargs)
    return Connection(conn_id="my_comet", **values)


def settings(extra: dict[str, Any] | None = None, **kwargs: Any) -> CometSettings:
    return CometSettings.from_connection(conn(**kwargs), extra or {})


# -- parsing ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("host", [None, "", "   "])
def test_empty_host_means_the_public_api(host: str | None) -> None:
    assert settings(host=host).base_url == DEFAULT_BASE_URL


@pytest.mark.parametrize(
    ("host", "port", "expected"),
    [
        ("api.cometapi.com", None, "https://api.cometapi.com"),
        ("gateway.test:8443", None, "https://gateway.test:8443"),
        ("http://127.0.0.1:8765", None, "http://127.0.0.1:8765"),
        ("http://127.0.0.1", 8765, "http://127.0.0.1:8765"),
        ("127.0.0.1", 8765, "https://127.0.0.1:8765"),
        ("http://127.0.0.1:8765", 9999, "http://127.0.0.1:8765"),  # the URL's own port wins
        ("https://api.test/", None, "https://api.test"),
        ("  https://api.test  ", None, "https://api.test"),
        ("https://gw.test/comet/", None, "https://gw.test/comet"),
    ],
)
def test_host_forms(host: str, port: int | None, expected: str) -> None:
    assert settings(host=host, port=port).base_url == expected


@pytest.mark.parametrize("host", ["ftp://api.test", "file:///tmp/x", "ws://api.test", "http://", "https://:80"])
def test_bad_host_is_named(host: str) -> None:
    with pytest.raises(CometConfigError) as info:
        settings(host=host)
    message = str(info.value)
    assert "Host" in message
    assert "my_comet" in message
    assert SECRET not in message


@pytest.mark.parametrize("password", [None, "", "   "])
def test_missing_password_is_named(password: str | None) -> None:
    with pytest.raises(CometConfigError, match="Password") as info:
        settings(host=BASE_URL, password=password)
    assert "my_comet" in str(info.value)


def test_key_is_trimmed_and_not_in_repr() -> None:
    parsed = settings(host=BASE_URL, password=f"  {SECRET}\n")
    assert parsed.api_key == SECRET
    assert parsed.headers["Authorization"] == f"Bearer {SECRET}"
    assert SECRET not in repr(parsed)
    assert SECRET not in str(parsed)


@pytest.mark.parametrize("timeout", ["abc", 0, -1, 601, "0", [5], {"s": 1}])
def test_bad_timeout_extra_is_named(timeout: Any) -> None:
    with pytest.raises(CometConfigError) as info:
        settings({"timeout": timeout}, host=BASE_URL)
    assert "'timeout'" in str(info.value)
    assert "my_comet" in str(info.value)


@pytest.mark.parametrize(
    ("timeout", "expected"), [(None, DEFAULT_TIMEOUT), ("", DEFAULT_TIMEOUT), (15, 15.0), ("2.5", 2.5), (600, 600.0)]
)
def test_timeout_extra(timeout: Any, expected: float) -> None:
    assert settings({"timeout": timeout}, host=BASE_URL).timeout == expected


def test_runway_version_extra() -> None:
    assert settings(host=BASE_URL).runway_version == DEFAULT_RUNWAY_VERSION
    assert settings({"runway_version": " 2025-01-01 "}, host=BASE_URL).runway_version == "2025-01-01"
    with pytest.raises(CometConfigError, match="runway_version"):
        settings({"runway_version": 20241106}, host=BASE_URL)


def test_callback_url_extra() -> None:
    assert settings({"callback_url": "https://hooks.test/x"}, host=BASE_URL).callback_url == "https://hooks.test/x"
    with pytest.raises(CometConfigError, match="callback_url"):
        settings({"callback_url": "ftp://hooks.test/x"}, host=BASE_URL)


# -- lookups outside a task ---------------------------------------------------------------------------


def test_sync_lookup_from_environment(comet_conn: Any) -> None:
    comet_conn(extra=json.dumps({"timeout": 12, "runway_version": "2025-02-02"}))
    got = make_hook(FakeApi()).get_settings()
    assert (got.base_url, got.api_key, got.timeout, got.runway_version) == (BASE_URL, SECRET, 12.0, "2025-02-02")


async def test_async_lookup_from_environment(comet_conn: Any) -> None:
    comet_conn(extra=json.dumps({"timeout": 12, "runway_version": "2025-02-02"}))
    got = await make_hook(FakeApi()).aget_settings()
    assert (got.base_url, got.api_key, got.timeout, got.runway_version) == (BASE_URL, SECRET, 12.0, "2025-02-02")


async def test_async_path_never_uses_blocking_connection_apis(monkeypatch: pytest.MonkeyPatch, comet_conn: Any) -> None:
    comet_conn(extra=json.dumps({"runway_version": "2025-03-03"}))
    blocked: list[str] = []
    loop_thread = threading.get_ident()

    # Below Airflow 3.3.2 common-compat runs these sync lookups in a worker thread: allowed there.
    def forbid(name: str, original: Any) -> Any:
        def fail(*args: Any, **kwargs: Any) -> Any:
            if threading.get_ident() != loop_thread:
                return original(*args, **kwargs)
            blocked.append(name)
            raise AssertionError(f"{name} must not be called on the event loop")

        return fail

    get_connection = BaseHook.get_connection.__func__  # type: ignore[attr-defined]
    get = Connection.get.__func__  # type: ignore[attr-defined]
    extra_dejson = Connection.extra_dejson.fget  # type: ignore[attr-defined]
    monkeypatch.setattr(BaseHook, "get_connection", classmethod(forbid("BaseHook.get_connection", get_connection)))
    monkeypatch.setattr(Connection, "get", classmethod(forbid("Connection.get", get)))
    monkeypatch.setattr(Connection, "extra_dejson", property(forbid("Connection.extra_dejson", extra_dejson)))

    api = FakeApi(submit_answer("t-async"), feed_answer("IN_PROGRESS", "RUNNING", task_id="t-async"))
    hook = make_hook(api, retry_policy=FAST_RETRY)
    submitted = await hook.asubmit_video2video("https://media.test/in.mp4", "noir")
    polled = await hook.aget_task(submitted.task_id)
    assert polled.status is RunwayStatus.RUNNING
    assert [r.headers["X-Runway-Version"] for r in api.requests] == ["2025-03-03"] * 2
    assert blocked == []
    # And the guard itself works: the sync path does trip it.
    with pytest.raises(AssertionError):
        make_hook(api).get_settings()
    assert blocked


async def test_async_lookup_is_cached_per_hook(monkeypatch: pytest.MonkeyPatch, comet_conn: Any) -> None:
    api = FakeApi(feed_answer())
    hook = make_hook(api)
    await hook.aget_task("task-1")
    monkeypatch.delenv("AIRFLOW_CONN_COMET_DEFAULT")
    await hook.aget_task("task-1")
    assert len(api.requests) == 2


# -- test_connection -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "response",
    [
        httpx.Response(400, json={"code": "task_not_exist", "message": "task_not_exist", "data": None}),
        feed_answer("QUEUED", "PENDING", task_id="airflow-connection-test"),
    ],
    ids=["not-exist", "found"],
)
def test_test_connection_ok(fake_api: FakeApi, response: httpx.Response) -> None:
    fake_api.script(response)
    ok, message = make_hook(fake_api, retry_policy=FAST_RETRY).test_connection()
    assert ok is True
    assert BASE_URL in message
    (request,) = fake_api.requests
    assert request.url.path == "/runway/feed"
    assert request.headers["Authorization"] == f"Bearer {SECRET}"


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        (error_envelope(401, "Invalid token", code="invalid_api_key"), "401"),
        (error_envelope(403, "Forbidden"), "403"),
        (html_page(503, "503 Service Temporarily Unavailable"), "503"),
        (httpx.ConnectError("connection refused"), "ConnectError"),
    ],
)
def test_test_connection_fails_with_a_reason(fake_api: FakeApi, response: Any, expected: str) -> None:
    fake_api.script(response)
    ok, message = make_hook(fake_api, retry_policy=FAST_RETRY).test_connection()
    assert ok is False
    assert expected in message
    assert SECRET not in message


def test_test_connection_reports_a_bad_connection(fake_api: FakeApi, comet_conn: Any) -> None:
    comet_conn(password="")
    ok, message = make_hook(fake_api).test_connection()
    assert ok is False
    assert "Password" in message
    assert fake_api.requests == []
