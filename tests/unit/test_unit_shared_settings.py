"""Hooks on one event loop share the connection's settings for a while: one lookup, one copy."""

from __future__ import annotations

import json

import pytest

from comet_provider.hooks import _pool
from comet_provider.hooks.comet import CometHook

CONN = json.dumps({"conn_type": "comet", "host": "http://127.0.0.1:9", "password": "sk-shared-settings-key"})


@pytest.fixture
def lookups(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    monkeypatch.setenv("AIRFLOW_CONN_COMET_DEFAULT", CONN)
    from airflow.providers.common.compat import connection as compat

    calls: list[str] = []
    real = compat.get_async_connection

    async def counting(conn_id: str, hook: object = None) -> object:
        calls.append(conn_id)
        return await real(conn_id, hook=hook)  # type: ignore[arg-type]

    monkeypatch.setattr(compat, "get_async_connection", counting)
    return calls


async def test_hooks_on_one_loop_share_one_lookup(lookups: list[str]) -> None:
    async with CometHook() as first, CometHook() as second:
        a = await first.aget_settings()
        b = await second.aget_settings()
    assert a is b
    assert lookups == ["comet_default"]


async def test_shared_settings_expire(lookups: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_pool, "SHARED_SETTINGS_TTL", 0.0)
    async with CometHook() as first, CometHook() as second:
        await first.aget_settings()
        await second.aget_settings()
    assert lookups == ["comet_default", "comet_default"]


async def test_settings_are_not_shared_across_loops_outside_a_lease(lookups: list[str]) -> None:
    # Outside `async with` there is no shared pool entry yet, so nothing is cached for others.
    await CometHook().aget_settings()
    async with CometHook() as hook:
        await hook.aget_settings()
    assert lookups == ["comet_default", "comet_default"]
