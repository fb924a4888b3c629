"""The paid call itself: a validated request's sources resolved, sent on its route."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from comet_provider.hooks.comet import CometHook
    from comet_provider.models import RunwayTask

__all__ = ["route_of", "submit"]


def route_of(request: dict[str, Any]) -> str:
    """``"official"`` or ``"pro"``: the route a validated request is for."""
    from comet_provider.utils.validation import request_route

    return request_route(request).value


def submit(hook: CometHook, request: dict[str, Any], *, timeout: float) -> RunwayTask:
    """Pay for the render ``request`` (``video2video_request``) describes.

    Its sources are resolved only now, signed URLs valid for the try's ``timeout`` plus Runway's
    fetch: signed URLs and ``data:`` URIs go to CometAPI and nowhere else (not the record, XCom
    or the log).
    """
    from comet_provider.utils.sources import resolve_source, signed_url_lifetime
    from comet_provider.utils.validation import request_sources

    lifetime = signed_url_lifetime(timeout)
    uris = [resolve_source(source, expires_in=lifetime).uri for source in request_sources(request)]
    if route_of(request) == "official":
        return hook.submit_video_to_video(
            video_uri=uris[0],
            prompt_text=request["prompt"],
            model=request["model"],
            seed=request.get("seed"),
            references=uris[1:] or None,
            ratio=request.get("ratio"),
            content_moderation=request.get("content_moderation"),
        )
    return hook.submit_video2video(
        video=uris[0],
        prompt=request["prompt"],
        model=request["model"],
        options=request.get("options"),
        callback_url=request.get("callback_url"),
    )
