"""Opts this repository's tests in to the emulator's pytest fixtures (the plugin is never loaded uninvited)."""

from __future__ import annotations

import pytest

pytest_plugins = ["comet_provider.testing.pytest_plugin"]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """``@pytest.mark.airflow_version(">=3.3", reason=...)``: skip where the installed Airflow is outside it.

    For features a lower supported Airflow does not have (``make test-lowest`` runs on 3.1).
    """
    marked = [(item, mark) for item in items for mark in item.iter_markers("airflow_version")]
    if not marked:
        return
    from packaging.specifiers import SpecifierSet

    from comet_provider._compat import AIRFLOW_VERSION

    for item, mark in marked:
        if AIRFLOW_VERSION not in SpecifierSet(mark.args[0]):
            reason = f"needs Airflow {mark.args[0]}, this is {AIRFLOW_VERSION}: {mark.kwargs['reason']}"
            item.add_marker(pytest.mark.skip(reason=reason))
