"""Provider metadata Airflow reads through the ``apache_airflow_provider`` entry point.

Airflow loads this without importing our hooks, so the connection form (``conn-fields`` and
``ui-field-behaviour``) is declared here as data, the way Airflow 3 providers do.
"""

from __future__ import annotations

from typing import Any

_NULLABLE_STRING = {"type": ["string", "null"]}

# Environment names accepted by IonHook; the hook holds the URL table (hooks/environments.py).
ENVIRONMENT_CHOICES = ["production", "staging", "gov-staging", "gov", "aus-staging", "aus"]


def get_provider_info() -> dict[str, Any]:
    from airflow_provider_ion import __version__
    from airflow_provider_ion.config import provider_config

    return {
        "package-name": "airflow-provider-ion",
        "name": "ION",
        "description": "ION (First Resonance) webhooks, GraphQL API and event-driven DAGs.",
        "versions": [__version__],
        "integrations": [
            {
                "integration-name": "ION",
                "external-doc-url": "https://docs.firstresonance.io/",
                "tags": ["software"],
            }
        ],
        "hooks": [
            {"integration-name": "ION", "python-modules": ["airflow_provider_ion.hooks.ion"]},
        ],
        "operators": [
            {
                "integration-name": "ION",
                "python-modules": ["airflow_provider_ion.operators.webhooks", "airflow_provider_ion.operators.audit"],
            }
        ],
        "sensors": [
            {"integration-name": "ION", "python-modules": ["airflow_provider_ion.sensors.webhook"]},
        ],
        "triggers": [
            {"integration-name": "ION", "python-modules": ["airflow_provider_ion.triggers.webhook"]},
        ],
        "config": provider_config(),
        "plugins": [{"name": "ion", "plugin-class": "airflow_provider_ion.plugins.IonPlugin"}],
        "connection-types": [
            {
                "connection-type": "ion",
                "hook-class-name": "airflow_provider_ion.hooks.ion.IonHook",
                "hook-name": "ION",
                "conn-fields": {
                    "environment": {
                        "label": "Environment",
                        "description": "ION environment; leave empty when API URL and token URL are set.",
                        "schema": {
                            "type": ["string", "null"],
                            "enum": [*ENVIRONMENT_CHOICES, None],
                            "default": "production",
                        },
                    },
                    "auth_url": {
                        "label": "Token URL",
                        "description": "OAuth2 token endpoint; overrides the environment's. "
                        "(Older connections may say token_url: still read.)",
                        "schema": _NULLABLE_STRING,
                    },
                    "audience": {
                        "label": "Audience",
                        "description": "Sent with the token request; defaults to the API URL.",
                        "schema": _NULLABLE_STRING,
                    },
                    "auth_scheme": {
                        "label": "Auth header scheme",
                        "description": "'Bearer' (default) or 'raw' to send the bare token.",
                        "schema": {"type": ["string", "null"], "enum": ["Bearer", "raw", None], "default": "Bearer"},
                    },
                    "timeout": {
                        "label": "Timeout (seconds)",
                        "schema": {"type": ["number", "null"], "default": 30, "minimum": 1},
                    },
                    "verify": {
                        "label": "Verify TLS certificates",
                        "schema": {"type": ["boolean", "null"], "default": True},
                    },
                },
                "ui-field-behaviour": {
                    "hidden-fields": ["schema", "port", "extra"],
                    "relabeling": {
                        "login": "Client ID",
                        "password": "Client secret",
                        "host": "API URL",
                    },
                    "placeholders": {
                        "host": "blank: from the environment (e.g. https://api.buildwithion.com)",
                        "login": "API key client id",
                    },
                },
            }
        ],
    }
