"""Which CometAPI route serves a Runway model: the gen4 "pro" route or Runway's official format.

The two routes take different bodies and answer on different polling paths; everything else
(the trigger, the waiter, the stored render) is shared and only carries the route's name.
"""

from __future__ import annotations

import enum
from typing import Any

from comet_provider.exceptions import CometValidationError

__all__ = ["MODEL_ROUTES", "Route", "route_for"]


class Route(str, enum.Enum):
    """A CometAPI route for Runway video-to-video."""

    #: ``POST /runway/pro/video2video``, polled with ``POST /runway/feed``.
    PRO = "pro"
    #: Runway's own format: ``POST /runwayml/v1/video_to_video``, polled with ``GET /runwayml/v1/tasks/{id}``.
    OFFICIAL = "official"

    def __str__(self) -> str:
        return self.value


#: The route each known model is served on; ``route=`` overrides it (for models CometAPI adds later).
MODEL_ROUTES: dict[str, Route] = {"gen4": Route.PRO, "gen4_aleph": Route.OFFICIAL}


def route_for(model: str, route: str | Route | None = None) -> Route:
    """The route for ``model``: an explicit ``route`` wins, else :data:`MODEL_ROUTES`.

    Raises :class:`~comet_provider.exceptions.CometValidationError` (field ``route``) for an
    unknown route name, or an unknown model given without a route.
    """
    if route is not None and route != "":
        return _parse_route(route)
    name = model.strip() if isinstance(model, str) else model
    known = MODEL_ROUTES.get(name) if isinstance(name, str) else None
    if known is None:
        raise CometValidationError("route", f"model {name!r} has no known route: pass route='official' or route='pro'")
    return known


def _parse_route(value: Any) -> Route:
    if isinstance(value, Route):
        return value
    if isinstance(value, str):
        try:
            return Route(value.strip().lower())
        except ValueError:
            pass
    choices = ", ".join(repr(r.value) for r in Route)
    raise CometValidationError("route", f"expected one of {choices}, got {value!r}")
