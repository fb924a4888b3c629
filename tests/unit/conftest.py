"""Fixtures for the unit tests: a scripted fake CometAPI behind ``httpx.MockTransport``.

No sockets are opened here: hooks get the fake through their ``transport`` /
``async_transport`` arguments; everything between that seam and the wire
(bodies, headers, retry loop, response mapping) is the provider's own code.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from ._fakes import FAST_RETRY, MODES, FakeApi, Twin, connection_json, make_hook


@pytest.fixture
def comet_conn(monkeypatch: pytest.MonkeyPatch) -> Callable[..., None]:
    """Sets ``AIRFLOW_CONN_COMET_DEFAULT`` (host ``https://comet.test``, key ``SECRET``); overrides allowed."""

    def set_conn(**overrides: Any) -> None:
        monkeypatch.setenv("AIRFLOW_CONN_COMET_DEFAULT", connection_json(**overrides))

    set_conn()
    return set_conn


@pytest.fixture
def fake_api(comet_conn: Callable[..., None]) -> FakeApi:
    """A scripted CometAPI; hooks reach it through ``make_hook`` (the hook's ``transport`` seams)."""
    return FakeApi()


@pytest.fixture(params=MODES)
def twin(request: pytest.FixtureRequest, fake_api: FakeApi) -> Twin:
    """A hook with fast retries, driven through its sync or async methods."""
    return Twin(request.param, make_hook(fake_api, retry_policy=FAST_RETRY))
