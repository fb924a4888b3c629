"""Which route serves a model: the model picks it, an explicit ``route`` wins, unknown models must say."""

from __future__ import annotations

from typing import Any

import pytest

from comet_provider.exceptions import CometValidationError
from comet_provider.utils.routes import MODEL_ROUTES, Route, route_for


def test_known_models() -> None:
    assert MODEL_ROUTES == {"gen4": Route.PRO, "gen4_aleph": Route.OFFICIAL}
    assert route_for("gen4") is Route.PRO
    assert route_for(" gen4_aleph ") is Route.OFFICIAL


@pytest.mark.parametrize(
    ("model", "route", "expected"),
    [
        ("gen4", "official", Route.OFFICIAL),
        ("gen4_aleph", "pro", Route.PRO),
        ("gen5_future", "official", Route.OFFICIAL),  # a model CometAPI adds later
        ("gen5_future", Route.PRO, Route.PRO),
        ("gen5_future", " Official ", Route.OFFICIAL),  # as a template may render it
        ("gen4_aleph", None, Route.OFFICIAL),
        ("gen4_aleph", "", Route.OFFICIAL),  # a templated, unset route
    ],
)
def test_explicit_route_wins(model: str, route: Any, expected: Route) -> None:
    assert route_for(model, route) is expected


def test_unknown_model_without_route_says_what_to_pass() -> None:
    with pytest.raises(CometValidationError) as info:
        route_for("gen5_future")
    assert info.value.field == "route"
    assert "'gen5_future'" in str(info.value)
    assert "route='official'" in str(info.value)


@pytest.mark.parametrize("route", ["gen4", "v1", 1, True, ["pro"]])
def test_bad_route_names_the_field(route: Any) -> None:
    with pytest.raises(CometValidationError) as info:
        route_for("gen4", route)
    assert info.value.field == "route"
    assert "'official'" in str(info.value)


def test_route_is_its_name() -> None:
    assert Route("official") is Route.OFFICIAL
    assert str(Route.PRO) == "pro"
    assert f"{Route.OFFICIAL}" == "official"
    assert Route.OFFICIAL == "official"  # JSON-able as a plain string
