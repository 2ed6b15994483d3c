"""Mounts the ION webhook receiver in Airflow's API server.

Airflow imports plugins in every component, so this module stays light: the receiver app (Starlette,
SQLAlchemy, the inbox) is built on the first request the API server routes to it, from the
``[ion_webhooks]`` section of Airflow's config. Deliveries then arrive at
``<api-server>/ion-webhooks/v1/receivers/<name>``.

Plugin apps get no Airflow authentication: the webhook route is guarded by the signature, and the
stats route asks Airflow's auth manager itself (``airflow_auth_guard``: the caller's token, then the
``PLUGINS`` view permission; 401 without a valid token, 403 without the permission).
"""

from __future__ import annotations

import threading
from typing import Any

from airflow.plugins_manager import AirflowPlugin

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


class IonPlugin(AirflowPlugin):
    """Serves the ION webhook receiver from Airflow's API server (see the module docstring)."""

    name = "ion"
    fastapi_apps = [{"app": receiver_app, "url_prefix": MOUNT_PATH, "name": "ION webhook receiver"}]
