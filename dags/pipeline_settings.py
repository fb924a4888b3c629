"""The media pipeline's settings: defaults, the Variable, the run's params, and their checks.

Plain functions, unit-tested without a DAG run. Each style is checked with the provider's
own request checks (imported inside), and a reference image in storage is looked up (one
HEAD), so a bad style fails before anything is staged or paid for. The DAG's ``settings``
task calls :func:`resolve_settings` and turns a :class:`SettingsError` into a failed run
whose message names the setting; ``plan_renders`` calls :func:`render_kwargs` per clip and style.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

__all__ = [
    "DEFAULT_SETTINGS",
    "DEFAULT_STYLES",
    "RUN_OVERRIDES",
    "SETTINGS_VARIABLE",
    "STYLE_KEYS",
    "SettingsError",
    "as_uri",
    "render_kwargs",
    "resolve_settings",
    "style_route",
]

SETTINGS_VARIABLE = "comet_runway_pipeline"

DEFAULT_STYLES: dict[str, str] = {
    "pixel-art": "pixelated 8-bit video game style, chunky pixels",
    "pencil-sketch": "hand-drawn pencil sketch, crisp edges on paper",
    "neon": "neon cyberpunk glow, saturated night colors",
}
DEFAULT_SETTINGS: dict[str, Any] = {
    "storage_root": None,
    "staging_root": None,
    "public_url_template": None,
    "styles": DEFAULT_STYLES,
    "clip_seconds": 5.0,
    "min_clip_seconds": 1.0,
    "max_width": 1280,
    "model": "gen4",
    "structure_transformation": 0.5,
    "comet_conn_id": "comet_default",
    "poll_interval": 10,
    "render_timeout_seconds": 1800,
    "notify_conn_id": "runway_notify",
    "notify_endpoint": "",
    "keep_audio": True,
    # Spend limits, on the renders a run will submit (reused ones cost nothing); null = no limit.
    "max_renders_per_run": 100,
    "approval_over_renders": 50,
    "force_render": False,
}
# Settings a run's params (trigger form / run conf) may override; None there = keep the configured one.
RUN_OVERRIDES = ("styles", "clip_seconds", "max_renders_per_run", "approval_over_renders", "force_render")
# What a style given as an object may hold: the operator's arguments of that name.
STYLE_KEYS = (
    "prompt",
    "model",
    "route",
    "references",
    "seed",
    "ratio",
    "content_moderation",
    "structure_transformation",
)
_LOCAL_SCHEMES = ("file", "local")
# Stands in for the clips while a style is checked: they are cut later, by split_into_clips.
_CHECK_VIDEO = "https://example.com/clip.mp4"


class SettingsError(ValueError):
    """A setting has an unusable value; the message names it."""


def as_uri(location: str) -> str:
    """A storage location as a URI: bare paths become absolute ``file://`` URIs."""
    location = location.strip()
    if "://" not in location:
        location = "file://" + os.path.abspath(os.path.expanduser(location))
    return location.rstrip("/")


def _scheme(location: str) -> str:
    return location.partition("://")[0].lower()


def _limit(cfg: Mapping[str, Any], key: str) -> int | None:
    value = cfg[key]
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0 or value != int(value):
        raise SettingsError(f"{key} must be a whole number of renders >= 0 or null (no limit), got {value!r}")
    return int(value)


def style_route(style: Mapping[str, Any]) -> str:
    """``"pro"`` (gen4) or ``"official"`` (gen4_aleph...): the CometAPI route a resolved style renders on."""
    from comet_provider.utils.routes import route_for

    return route_for(style["model"], style.get("route")).value


def _style(name: str, value: Any, cfg: Mapping[str, Any]) -> dict[str, Any]:
    """One style as the restyle arguments it sets, checked by the provider's own request checks."""
    from comet_provider.exceptions import CometValidationError
    from comet_provider.utils.validation import video2video_request

    field = f"styles.{name}"
    if isinstance(value, str):
        value = {"prompt": value}
    if not isinstance(value, Mapping):
        raise SettingsError(f'{field} must be a prompt or an object such as {{"prompt": "..."}}, got {value!r}')
    unknown = sorted(str(key) for key in value if key not in STYLE_KEYS)
    if unknown:
        raise SettingsError(f"{field}: unknown keys {unknown}; a style takes {', '.join(STYLE_KEYS)}")
    style = {key: value[key] for key in STYLE_KEYS if value.get(key) is not None}
    style.setdefault("model", cfg["model"])
    if isinstance(style.get("references"), str):
        style["references"] = [style["references"]]
    try:
        # the Variable's structure_transformation is a gen4 option: official-route styles go without it
        if style_route(style) == "pro" and cfg["structure_transformation"] is not None:
            style.setdefault("structure_transformation", cfg["structure_transformation"])
        video2video_request(video=_CHECK_VIDEO, **{"prompt": None, **style})
    except CometValidationError as exc:
        raise SettingsError(f"{field}.{exc.field}: {exc}") from None
    for i, reference in enumerate(style.get("references", ())):
        _check_reference_exists(f"{field}.references[{i}]", reference)
    return style


def _check_reference_exists(field: str, reference: Any) -> None:
    """A reference image in storage or on disk must be there before anything is paid for."""
    from airflow.sdk import ObjectStoragePath

    location = os.fspath(reference) if isinstance(reference, os.PathLike) else str(reference)
    if _scheme(location) in ("http", "https"):
        return  # Runway fetches it; a HEAD here would prove little about what it will get
    if not ObjectStoragePath(as_uri(location)).is_file():
        raise SettingsError(f"{field}: no reference image at {location!r}")


def _signs_urls(scheme: str) -> bool | None:
    """Whether the filesystem of ``scheme`` can sign URLs (None: it cannot be told here)."""
    try:
        import fsspec

        return fsspec.get_filesystem_class(scheme).sign is not fsspec.AbstractFileSystem.sign
    except (ImportError, ValueError):
        return None


def _check_staging(cfg: Mapping[str, Any]) -> None:
    """Clips must reach Runway: through public_url_template, a signed URL, or (official route) a data: URI."""
    template = cfg["public_url_template"]
    if template:
        if not isinstance(template, str) or "{key}" not in template:
            raise SettingsError(
                "public_url_template must be a URL with {key} for a clip's path under staging_root "
                f"(e.g. https://cdn.example.com/runway-staging/{{key}}), got {template!r}"
            )
        return
    scheme = _scheme(cfg["staging_root"])
    if scheme in _LOCAL_SCHEMES:
        gen4 = [name for name, style in cfg["styles"].items() if style_route(style) == "pro"]
        if gen4:
            raise SettingsError(
                f"Set 'public_url_template' in the Variable {SETTINGS_VARIABLE!r}, or put staging_root on "
                f"object storage that signs URLs (e.g. s3://aws_default@bucket/runway-staging): staging_root "
                f"{cfg['staging_root']!r} is local, and the gen4 route of styles {gen4} fetches clips over "
                "http(s) only. public_url_template is the public URL of a file staged under staging_root, "
                "with {key} for its path there (e.g. https://cdn.example.com/runway-staging/{key})."
            )
        return  # official route only: each clip goes as a data: URI
    if _signs_urls(scheme) is False:
        raise SettingsError(
            f"staging_root {cfg['staging_root']!r}: {scheme}:// storage cannot sign URLs for Runway to fetch "
            "the clips; set public_url_template or use object storage that signs (s3://, gs://)"
        )


def resolve_settings(
    configured: Mapping[str, Any], params: Mapping[str, Any], *, airflow_home: str
) -> tuple[dict[str, Any], list[str]]:
    """Defaults < the Variable ``configured`` < the run's ``params``; returns the settings and ignored keys.

    Every style comes out as an object (``{"prompt", "model", ...}``: the restyle arguments it
    sets). ``date`` and ``run_id`` are not set here: they come from the run.
    """
    from media_utils import slugify

    cfg: dict[str, Any] = dict(DEFAULT_SETTINGS)
    unknown = sorted(set(configured) - set(DEFAULT_SETTINGS))
    cfg.update({k: v for k, v in configured.items() if k in DEFAULT_SETTINGS})
    cfg.update({k: params[k] for k in RUN_OVERRIDES if params.get(k) is not None})

    cfg["storage_root"] = as_uri(cfg["storage_root"] or os.path.join(airflow_home, "runway-media"))
    cfg["staging_root"] = as_uri(cfg["staging_root"] or cfg["storage_root"] + "/staging")
    if not cfg["styles"] or not isinstance(cfg["styles"], dict):
        raise SettingsError('styles must be a non-empty {"name": "prompt" or {"prompt": ..., ...}} object')
    # style names become folder and file names: keep them path- and URL-safe
    styles = {slugify(name, fallback="style"): value for name, value in cfg["styles"].items()}
    cfg["styles"] = {name: _style(name, value, cfg) for name, value in styles.items()}
    _check_staging(cfg)
    cfg["public_url_template"] = cfg["public_url_template"] or None
    cfg["max_renders_per_run"] = _limit(cfg, "max_renders_per_run")
    cfg["approval_over_renders"] = _limit(cfg, "approval_over_renders")
    if not isinstance(cfg["force_render"], bool):
        raise SettingsError(f"force_render must be true or false, got {cfg['force_render']!r}")
    return cfg, unknown


def render_kwargs(cfg: Mapping[str, Any], style: str, clip_location: str, output_path: str) -> dict[str, Any]:
    """The ``restyle`` task's arguments for one clip in one style (those the style does not set are left out)."""
    return {
        "video": clip_location,
        **cfg["styles"][style],
        "force_render": cfg["force_render"],
        "comet_conn_id": cfg["comet_conn_id"],
        "poll_interval": cfg["poll_interval"],
        "timeout": cfg["render_timeout_seconds"],
        "output_path": output_path,
    }
