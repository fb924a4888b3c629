"""The opt-in pytest plugin and its fixtures."""

from __future__ import annotations

from collections.abc import Callable

from comet_provider.testing import CometEmulator


def test_plugin_fixtures(
    comet_emulator_factory: Callable[..., CometEmulator], comet_emulator_session: CometEmulator
) -> None:
    custom = comet_emulator_factory(api_key=None, url_placement="none", render_seconds=9)
    config = custom.config()
    assert config["api_key_set"] is False and config["url_placement"] == "none"
    assert config["render_seconds"] == 9 and config["not_exist_seconds"] == 0.3
    assert custom.media_dir is not None and custom.media_dir.is_dir()
    assert comet_emulator_session.health() and comet_emulator_session.api_key == "test-key"
    assert comet_emulator_session.url != custom.url


def test_plugin_is_opt_in() -> None:
    # Installing the provider must not load anything into other projects' pytest runs.
    from importlib.metadata import entry_points

    assert [ep.value for ep in entry_points(group="pytest11") if ep.value.startswith("comet_provider")] == []
