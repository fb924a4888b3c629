"""Apache Airflow provider for Runway video-to-video restyling through CometAPI.

Import what you need from its modules (``comet_provider.operators.runway``,
``comet_provider.hooks.comet``, ...): this package itself imports nothing heavy.
"""

from __future__ import annotations

#: The one version string: pyproject.toml reads it (setuptools dynamic), as does get_provider_info.
__version__ = "0.1.0"

__all__ = ["__version__", "get_provider_info"]


def get_provider_info() -> dict[str, object]:
    from comet_provider.get_provider_info import get_provider_info as _info

    return _info()
