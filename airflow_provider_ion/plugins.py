"""Mounts the ION webhook receiver in Airflow's API server.

Airflow imports plugins in every component, so this module stays light: the receiver app (Starlette,
SQLAlchemy, the inbox) is built on the first request the API server routes to it, from the
``[ion_webhooks]`` section of Airflow's config. Deliveries then arrive at
``<api-server>/ion-webhooks/v1/receivers/<name>``.

Plugin apps get no Airflow authentication: the webhook route is guarded by the signature, and the
stats route asks Airflow's auth manager itself (``airflow_auth_guard``: the caller's token, then the
``PLUGINS`` view permission; 401 without a valid token, 403 without the permission).

The plugin also serves the "ION webhooks" page (:mod:`airflow_provider_ion.ui`, at ``/ion-ui``, behind
Airflow's own authentication) and shows it in Airflow's UI through ``external_views``.
"""

from __future__ import annotations

import threading
from typing import Any

from airflow.plugins_manager import AirflowPlugin

from airflow_provider_ion.ui.app import MOUNT_PATH as UI_MOUNT_PATH
from airflow_provider_ion.ui.app import LazyUiApp, UiState, create_ui_app
from airflow_provider_ion.ui.app import external_views as ui_external_views

MOUNT_PATH = "/ion-webhooks"


class LazyReceiverApp:
    """An ASGI app that builds the real receiver app on its first call."""

    def __init__(self) -> None:
        self._app: Any = None
        self._lock = threading.Lock()

    @property
    def app(self) -> Any:
        if self._app is None:
            with self._lock:
                if self._app is None:
                    from airflow_provider_ion.webhooks.app import ReceiverApp, ReceiverSettings, airflow_auth_guard

                    self._app = ReceiverApp(
                        ReceiverSettings.from_airflow_config(),
                        authorize_admin=airflow_auth_guard,
                        mount_path="",
                    )
        return self._app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        await self.app.asgi(scope, receive, send)


receiver_app = LazyReceiverApp()


def _receiver_counters() -> dict[str, Any] | None:
    """This process's receiver counters for the UI page (None until the receiver served a request)."""
    built = receiver_app._app
    return None if built is None else built.stats.to_dict()


# The "ION webhooks" page (airflow_provider_ion.ui): built on its first request, like the receiver.
ui_app = LazyUiApp(lambda: create_ui_app(UiState.from_airflow_config(receiver_stats=_receiver_counters)))


class IonPlugin(AirflowPlugin):
    """Serves the ION webhook receiver from Airflow's API server (see the module docstring)."""

    name = "ion"
    fastapi_apps = [
        {"app": receiver_app, "url_prefix": MOUNT_PATH, "name": "ION webhook receiver"},
        {"app": ui_app, "url_prefix": UI_MOUNT_PATH, "name": "ION webhooks UI"},
    ]
    external_views = ui_external_views()
