"""The paid call itself: a validated request's sources resolved, sent on its route."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from comet_provider.hooks.comet import CometHook
    from comet_provider.models import RunwayTask

__all__ = ["route_of", "submit"]


def route_of(request: dict[str, Any]) -> str:
    """``"official"`` or ``"pro"``: a validated request names its route only when it is not the gen4 one."""
    return str(request.get("route") or "pro")


def submit(hook: CometHook, request: dict[str, Any], *, timeout: float) -> RunwayTask:
    """Pay for the render ``request`` (``video2video_request``) describes.

    Its sources are resolved only now, signed URLs valid for the try's ``timeout`` plus Runway's
    fetch: signed URLs and ``data:`` URIs go to CometAPI and nowhere else (not the record, XCom
    or the log).
    """
    from comet_provider.utils.sources import check_source, resolve_source, signed_url_lifetime

    source_lifetime = signed_url_lifetime(timeout)
    route = route_of(request)
    named: list[tuple[str, Any, Literal["video", "image"]]] = [("video", request["video"], "video")]
    named += [(f"references[{i}]", ref, "image") for i, ref in enumerate(request.get("references") or ())]
    uris = {
        name: resolve_source(check_source(name, location, media=media, route=route), expires_in=source_lifetime).uri
        for name, location, media in named
    }
    if route == "official":
        return hook.submit_video_to_video(
            video_uri=uris["video"],
            prompt_text=request["prompt"],
            model=request["model"],
            seed=request.get("seed"),
            references=[uris[name] for name, _, _ in named[1:]] or None,
            ratio=request.get("ratio"),
            content_moderation=request.get("content_moderation"),
        )
    return hook.submit_video2video(
        video=uris["video"],
        prompt=request["prompt"],
        model=request["model"],
        options=request.get("options"),
        callback_url=request.get("callback_url"),
    )
