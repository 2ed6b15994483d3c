"""The emulator's ASGI app: the routes an ION client talks to, plus the ``/_emulator`` control routes.

| route | what |
|---|---|
| ``POST /realms/api-keys/protocol/openid-connect/token`` (also under ``/auth``) | OAuth2 client credentials |
| ``POST /graphql`` | ION's GraphQL API (webhook models + domain objects) |
| ``/_emulator/...`` | health, stats, reset, faults, change log, token expiry (loopback only) |
| ``/_emulator/fire``, ``/_emulator/deliveries/...`` | webhook deliveries: fire, settings, faults, wait |
| ``GET /_emulator/`` | the index of every control route |
| ``/_emulator/objects/...``, ``/_emulator/events`` | create/update/delete ION objects by hand; recent webhooks |

Webhook deliveries go out from a :class:`~airflow_provider_ion.testing.emulator.delivery.Deliveries` worker
attached to the emulator's store (``app.state.deliveries``).

Run it with :class:`airflow_provider_ion.testing.emulator.server.EmulatorServer`, ``airflow-ion emulator``, or
``uvicorn --factory airflow_provider_ion.testing.emulator.app:create_app`` (defaults, in memory).
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.routing import Route

from airflow_provider_ion.testing.emulator.control import ROUTES as CONTROL_ROUTES
from airflow_provider_ion.testing.emulator.core import Emulator
from airflow_provider_ion.testing.emulator.delivery import Deliveries
from airflow_provider_ion.testing.emulator.delivery_control import ROUTES as DELIVERY_ROUTES
from airflow_provider_ion.testing.emulator.graphql_endpoint import graphql_endpoint
from airflow_provider_ion.testing.emulator.objects_control import ROUTES as OBJECT_ROUTES
from airflow_provider_ion.testing.emulator.token_endpoint import LEGACY_TOKEN_PATH, TOKEN_PATH, token_endpoint


def create_app(emulator: Emulator | None = None, deliveries: Deliveries | None = None) -> Starlette:
    """An ASGI app serving ``emulator`` (a fresh in-memory one by default) at ``app.state.emulator``,
    delivering webhooks with ``deliveries`` (a new worker on the emulator's store by default; pass one
    to choose its settings, and create one per store only, or every change is delivered twice)."""
    emulator = emulator if emulator is not None else Emulator()
    # The default profile serves both token paths (clients configured either way work); the
    # legacy-token-path profile serves only the old one, as an old Keycloak does.
    token_paths = (
        [emulator.profile.token_path] if emulator.profile.token_path != TOKEN_PATH else [TOKEN_PATH, LEGACY_TOKEN_PATH]
    )
    app = Starlette(
        routes=[
            *(Route(path, token_endpoint, methods=["POST"]) for path in token_paths),
            Route("/graphql", graphql_endpoint, methods=["POST"]),
            *CONTROL_ROUTES,
            *DELIVERY_ROUTES,
            *OBJECT_ROUTES,
        ]
    )
    app.state.emulator = emulator
    app.state.deliveries = deliveries if deliveries is not None else Deliveries(app.state.emulator.store)
    return app
