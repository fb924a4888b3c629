"""The media pipeline's settings: defaults, the Variable, the run's params, and their checks.

Plain functions (no Airflow import), so they are unit-tested without a DAG run. The
DAG's ``settings`` task calls :func:`resolve_settings` and turns a :class:`SettingsError`
into a failed run whose message names the setting.
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
    "SettingsError",
    "as_uri",
    "resolve_settings",
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


class SettingsError(ValueError):
    """A setting has an unusable value; the message names it."""


def as_uri(location: str) -> str:
    """A storage location as a URI: bare paths become absolute ``file://`` URIs."""
    location = location.strip()
    if "://" not in location:
        location = "file://" + os.path.abspath(os.path.expanduser(location))
    return location.rstrip("/")


def _limit(cfg: Mapping[str, Any], key: str) -> int | None:
    value = cfg[key]
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0 or value != int(value):
        raise SettingsError(f"{key} must be a whole number of renders >= 0 or null (no limit), got {value!r}")
    return int(value)


def resolve_settings(
    configured: Mapping[str, Any], params: Mapping[str, Any], *, airflow_home: str
) -> tuple[dict[str, Any], list[str]]:
    """Defaults < the Variable ``configured`` < the run's ``params``; returns the settings and ignored keys.

    ``date`` and ``run_id`` are not set here: they come from the run.
    """
    from media_utils import slugify

    cfg: dict[str, Any] = dict(DEFAULT_SETTINGS)
    unknown = sorted(set(configured) - set(DEFAULT_SETTINGS))
    cfg.update({k: v for k, v in configured.items() if k in DEFAULT_SETTINGS})
    cfg.update({k: params[k] for k in RUN_OVERRIDES if params.get(k) is not None})

    cfg["storage_root"] = as_uri(cfg["storage_root"] or os.path.join(airflow_home, "runway-media"))
    cfg["staging_root"] = as_uri(cfg["staging_root"] or cfg["storage_root"] + "/staging")
    if not cfg["public_url_template"] or "{key}" not in cfg["public_url_template"]:
        raise SettingsError(
            f"Set 'public_url_template' in the Variable {SETTINGS_VARIABLE!r}: the public URL of a file "
            "staged under staging_root, with {key} for its path there "
            "(e.g. https://cdn.example.com/runway-staging/{key})."
        )
    if not cfg["styles"] or not isinstance(cfg["styles"], dict):
        raise SettingsError('styles must be a non-empty {"name": "prompt"} object')
    # style names become folder and file names: keep them path- and URL-safe
    cfg["styles"] = {slugify(name, fallback="style"): prompt for name, prompt in cfg["styles"].items()}
    cfg["max_renders_per_run"] = _limit(cfg, "max_renders_per_run")
    cfg["approval_over_renders"] = _limit(cfg, "approval_over_renders")
    if not isinstance(cfg["force_render"], bool):
        raise SettingsError(f"force_render must be true or false, got {cfg['force_render']!r}")
    return cfg, unknown
