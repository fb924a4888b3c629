"""EmulatorConfig and FaultConfig validation."""

from __future__ import annotations

import pytest

from comet_provider.testing import CometEmulator, EmulatorConfig


def test_config_validation_in_constructor() -> None:
    with pytest.raises(ValueError, match="render"):
        CometEmulator(render="gpu")
    with pytest.raises(ValueError, match=r"faults\.kinds"):
        EmulatorConfig.from_kwargs({"faults": {"kinds": ["418"]}})
    with pytest.raises(ValueError, match="task_not_exist"):
        EmulatorConfig.from_kwargs({"fail_next": [{"endpoint": "submit", "kind": "task_not_exist"}]})


def test_link_ttl_setting() -> None:
    assert EmulatorConfig().link_ttl is None
    config = EmulatorConfig.from_kwargs({"link_ttl": 30})
    assert config.link_ttl == 30.0 and config.to_dict()["link_ttl"] == 30.0
    config.update({"link_ttl": None})
    assert config.link_ttl is None
    for bad in (-1, "soon", True):
        with pytest.raises(ValueError, match="link_ttl"):
            EmulatorConfig.from_kwargs({"link_ttl": bad})


def test_update_is_atomic_and_startup_keys_are_fixed() -> None:
    config = EmulatorConfig.from_kwargs({"data_dir": "/tmp/x", "render_seconds": 2})
    with pytest.raises(ValueError, match="url_placement"):
        config.update({"render_seconds": 9, "url_placement": "somewhere"})
    assert config.render_seconds == 2.0
    with pytest.raises(ValueError, match="data_dir can only be set when the emulator starts"):
        config.update({"data_dir": "/elsewhere"})
    config.update({"data_dir": "/tmp/x", "api_key_set": False})  # unchanged / read-only keys pass
    assert config.data_dir == "/tmp/x" and "api_key" not in config.to_dict()
