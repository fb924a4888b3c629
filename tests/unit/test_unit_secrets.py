"""The API key never shows up in errors, logs, task summaries or trigger payloads.

The fake server is hostile: it echoes the key back in every place it can
(error messages, params, HTML pages, transport error texts), as a misbehaving
proxy or gateway might.
"""

from __future__ import annotations

import json
import logging
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from comet_provider.exceptions import CometError
from comet_provider.models import RunwayTask
from comet_provider.triggers.runway import RunwayTaskTrigger

from ._fakes import FAST_RETRY as FAST
from ._fakes import SECRET, FakeApi, Twin, error_envelope, feed_answer, make_hook

ECHO = f"Invalid token Bearer {SECRET} (request id: r-{SECRET})"
RAW_ECHO = f"the key {SECRET} is not allowed"


def html_with_key(status: int) -> httpx.Response:
    page = f"<html><body><h1>{status}</h1><!-- Authorization: Bearer {SECRET} --></body></html>"
    return httpx.Response(status, content=page.encode(), headers={"Content-Type": "text/html"})


# (name, endpoint, scripted answers)
ERROR_PATHS: list[tuple[str, str, list[Any]]] = [
    ("401 bearer echo", "feed", [error_envelope(401, ECHO, code="invalid_api_key")]),
    ("401 raw echo", "submit", [error_envelope(401, RAW_ECHO, code="invalid_api_key")]),
    ("403 echo", "feed", [error_envelope(403, RAW_ECHO)]),
    ("400 param echo", "submit", [error_envelope(400, RAW_ECHO, param=SECRET)]),
    ("429 echo", "feed", [error_envelope(429, ECHO, **{"Retry-After": "0"})]),
    ("500 echo", "feed", [error_envelope(500, RAW_ECHO)]),
    ("500 on submit", "submit", [error_envelope(500, RAW_ECHO)]),
    ("502 html", "feed", [html_with_key(502)]),
    ("503 html on submit", "submit", [html_with_key(503)]),
    ("200 not json", "feed", [httpx.Response(200, content=f"oops {SECRET}".encode())]),
    ("200 failure code", "submit", [httpx.Response(200, json={"code": 500, "msg": RAW_ECHO})]),
    ("flat error", "feed", [httpx.Response(400, json={"code": "bad", "message": RAW_ECHO})]),
    ("task_not_exist", "feed", [httpx.Response(400, json={"code": "task_not_exist", "message": RAW_ECHO})]),
    ("connect error", "feed", [httpx.ConnectError(f"refused; Authorization: Bearer {SECRET}")]),
    ("connect error on submit", "submit", [httpx.ConnectError(f"refused {SECRET}")]),
    ("read timeout on submit", "submit", [httpx.ReadTimeout(f"timed out Bearer {SECRET}")]),
    ("dropped on submit", "submit", [httpx.RemoteProtocolError(f"disconnected {SECRET}")]),
    ("read timeout", "feed", [httpx.ReadTimeout(f"timed out {SECRET}")]),
    ("success without url", "feed", [feed_answer("SUCCESS", "SUCCEEDED", task_id="task-1")]),
]


def rendered(error: BaseException) -> str:
    """Everything a log line, a traceback or the Airflow UI could show about ``error``."""
    parts = ["".join(traceback.format_exception(error)), repr(error), repr(error.args)]
    seen: set[int] = set()

    def walk(value: Any, depth: int = 0) -> None:
        if depth > 4 or id(value) in seen:
            return
        seen.add(id(value))
        if isinstance(value, BaseException):
            parts.extend([str(value), repr(value), repr(value.args)])
            for attr in vars(value).values():
                walk(attr, depth + 1)
            walk(value.__cause__, depth + 1)
            if not value.__suppress_context__:
                walk(value.__context__, depth + 1)
        elif isinstance(value, RunwayTask):
            parts.append(repr(value))
            parts.append(json.dumps(value.to_dict()))
        elif value is not None:
            parts.append(repr(value))

    walk(error)
    return "\n".join(parts)


@pytest.fixture
def captured(caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]) -> Callable[[], str]:
    caplog.set_level(logging.DEBUG)
    for name in ("httpx", "httpcore", "comet_provider", "airflow", "asyncio", "aiohttp"):
        logging.getLogger(name).setLevel(logging.DEBUG)

    def text() -> str:
        out = capsys.readouterr()
        records = "\n".join(f"{r.name} {r.getMessage()} {r.args!r} {r.exc_text or ''}" for r in caplog.records)
        return "\n".join([records, caplog.text, out.out, out.err])

    return text


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize(("name", "endpoint", "answers"), ERROR_PATHS, ids=[row[0] for row in ERROR_PATHS])
async def test_no_error_path_shows_the_key(
    fake_api: FakeApi, captured: Callable[[], str], mode: str, name: str, endpoint: str, answers: list[Any]
) -> None:
    fake_api.script(*answers)
    twin = Twin(mode, make_hook(fake_api, retry_policy=FAST))
    with pytest.raises(CometError) as info:
        if endpoint == "submit":
            await twin.submit()
        else:
            await twin.get_task("task-1", submitted_at=time.time() - 10_000)
    assert fake_api.requests, "the scenario must reach the fake server"
    assert SECRET not in rendered(info.value)
    logs = captured()
    assert SECRET not in logs


def test_log_capture_sees_the_hook_and_httpx(fake_api: FakeApi, captured: Callable[[], str]) -> None:
    """Positive control: the capture used above does see retry warnings and httpx's own log lines."""
    fake_api.script(error_envelope(500, "internal"), feed_answer())
    make_hook(fake_api, retry_policy=FAST).get_task("task-1")
    logs = captured()
    assert "Retrying in" in logs
    assert "HTTP Request" in logs


def test_test_connection_reason_has_no_key(fake_api: FakeApi) -> None:
    fake_api.script(error_envelope(401, ECHO))
    ok, reason = make_hook(fake_api, retry_policy=FAST).test_connection()
    assert ok is False
    assert SECRET not in reason
    assert "401" in reason


def test_download_errors_have_no_key(tmp_path: Path, fake_api: FakeApi, captured: Callable[[], str]) -> None:
    fake_api.script(httpx.Response(404, content=SECRET.encode()))
    with pytest.raises(CometError) as info:
        make_hook(fake_api, retry_policy=FAST).download("https://cdn.test/r.mp4", tmp_path / "r.mp4")
    assert SECRET not in rendered(info.value)
    assert SECRET not in captured()
    assert "authorization" not in fake_api.requests[0].headers


SIGNATURE = "sig-0123456789abcdef-SIGNED"
SIGNED_RENDER = f"https://cdn.test/r.mp4?Expires=1700000000&Signature={SIGNATURE}"


REDIRECT = httpx.Response(302, headers={"Location": f"https://cdn2.test/r.mp4?Signature={SIGNATURE}"})


@pytest.mark.parametrize(
    ("answers", "fails"),
    [
        ([httpx.Response(200, headers={"Content-Type": "video/mp4"}, stream=httpx.ByteStream(b"video"))], False),
        ([httpx.Response(403, content=b"<Error>AccessDenied</Error>")], True),
        ([httpx.Response(200, headers={"Content-Type": "text/html"}, stream=httpx.ByteStream(b"<html/>"))], True),
        ([httpx.ReadError("connection reset")], True),
        ([REDIRECT, httpx.Response(500)], True),
    ],
    ids=["stored", "expired", "page", "dropped", "redirected"],
)
def test_signed_render_urls_stay_out_of_logs_and_errors(
    tmp_path: Path, fake_api: FakeApi, captured: Callable[[], str], answers: list[Any], fails: bool
) -> None:
    fake_api.script(*answers)
    hook = make_hook(fake_api, retry_policy=FAST)
    if fails:
        with pytest.raises(CometError) as info:
            hook.download(SIGNED_RENDER, tmp_path / "r.mp4")
        assert SIGNATURE not in rendered(info.value)
    else:
        hook.download(SIGNED_RENDER, tmp_path / "r.mp4")
    assert fake_api.requests  # the signed URL really was requested
    assert SIGNATURE in str(fake_api.requests[0].url)
    assert SIGNATURE not in captured()


def test_signed_source_urls_stay_out_of_logs(fake_api: FakeApi, captured: Callable[[], str]) -> None:
    fake_api.script(httpx.Response(403))
    assert make_hook(fake_api).source_identity(f"https://media.test/in.mp4?Signature={SIGNATURE}") is None
    logs = captured()
    assert "media.test/in.mp4" in logs  # the line is there, only without its signature
    assert SIGNATURE not in logs


def test_task_summaries_have_no_key(fake_api: FakeApi) -> None:
    fake_api.script(feed_answer("SUCCESS", "SUCCEEDED", task_id="task-1", video_url="https://cdn.test/o.mp4"))
    hook = make_hook(fake_api, retry_policy=FAST)
    task = hook.get_task("task-1")
    assert SECRET not in json.dumps(task.to_dict())
    assert SECRET not in repr(task)
    assert SECRET not in repr(hook.get_settings())


def test_hook_repr_has_no_key(fake_api: FakeApi) -> None:
    hook = make_hook(fake_api)
    hook.get_settings()
    assert SECRET not in repr(hook)
    assert SECRET not in str(hook)


def test_trigger_serialization_and_repr_have_no_key(fake_api: FakeApi) -> None:
    make_hook(fake_api).get_settings()  # the connection really holds the key
    trigger = RunwayTaskTrigger("task-1", poll_interval=3, deadline=time.time() + 60, submitted_at=time.time())
    _, kwargs = trigger.serialize()
    assert SECRET not in json.dumps(kwargs)
    assert SECRET not in repr(trigger)
