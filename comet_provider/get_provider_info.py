"""Provider metadata read by Airflow's ProvidersManager (entry point ``apache_airflow_provider``)."""

from __future__ import annotations

from typing import Any

from comet_provider import __version__

_INTEGRATION = "CometAPI Runway"


def get_provider_info() -> dict[str, Any]:
    return {
        "package-name": "airflow-provider-comet",
        "name": "CometAPI (Runway)",
        "description": "Restyle videos with Runway video-to-video through `CometAPI <https://www.cometapi.com/>`__.",
        "versions": [__version__],
        "integrations": [
            {
                "integration-name": _INTEGRATION,
                "external-doc-url": "https://apidoc.cometapi.com/",
                "tags": ["service"],
            }
        ],
        "hooks": [{"integration-name": _INTEGRATION, "python-modules": ["comet_provider.hooks.comet"]}],
        "operators": [{"integration-name": _INTEGRATION, "python-modules": ["comet_provider.operators.runway"]}],
        "sensors": [{"integration-name": _INTEGRATION, "python-modules": ["comet_provider.sensors.runway"]}],
        "triggers": [{"integration-name": _INTEGRATION, "python-modules": ["comet_provider.triggers.runway"]}],
        "extra-links": ["comet_provider.links.runway.RunwayVideoLink"],
        "connection-types": [
            {
                "hook-class-name": "comet_provider.hooks.comet.CometHook",
                "hook-name": "CometAPI (Runway)",
                "connection-type": "comet",
                "conn-fields": {
                    "runway_version": {
                        "label": "Runway version",
                        "description": "Sent as the X-Runway-Version header.",
                        "schema": {"type": ["string", "null"], "default": "2024-11-06"},
                    },
                    "timeout": {
                        "label": "Request timeout (seconds)",
                        "schema": {"type": ["number", "null"], "default": 30},
                    },
                    "callback_url": {
                        "label": "Default callback URL",
                        "description": "Used when a task sets no callback_url; CometAPI POSTs results there.",
                        "schema": {"type": ["string", "null"]},
                    },
                    "proxy": {
                        "label": "Proxy URL",
                        "description": "http://[user:password@]host:port for every request (API, polls, "
                        "downloads); replaces HTTPS_PROXY / HTTP_PROXY / NO_PROXY. Empty: those variables.",
                        # A password field: proxy credentials are secrets like the API key.
                        "schema": {"type": ["string", "null"], "format": "password"},
                    },
                    "ca_bundle": {
                        "label": "CA bundle (PEM path)",
                        "description": "CA certificates to trust instead of the system's, e.g. a "
                        "TLS-inspecting proxy's; the file must exist on every worker and triggerer.",
                        "schema": {"type": ["string", "null"]},
                    },
                    "verify": {
                        "label": "Verify TLS certificates",
                        "description": "Turn off only for testing: certificates are then not checked at all.",
                        "schema": {"type": ["boolean", "null"], "default": True},
                    },
                },
                "ui-field-behaviour": {
                    "hidden-fields": ["schema", "login", "port", "extra"],
                    "relabeling": {"host": "Base URL", "password": "API key"},
                    "placeholders": {
                        "host": "https://api.cometapi.com (empty = default; http://127.0.0.1:8765 for the emulator)",
                        "password": "sk-...",
                    },
                },
            }
        ],
    }
