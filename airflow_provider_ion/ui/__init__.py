"""The "ION webhooks" page in Airflow's UI: receivers, deliveries, rejections and quarantine, consumers.

A FastAPI app (server-rendered HTML with one small inline script; no build step, nothing loaded from
elsewhere) that our plugin mounts in Airflow's API server at ``/ion-ui`` and shows through
``external_views``: in the navigation, and inside each DAG's and DAG run's views. Behind Airflow's own
authentication and permissions (see :mod:`airflow_provider_ion.ui.app`).

Nothing here is imported at DAG-parse time: the plugin builds the app on its first request.

Example::

    from airflow_provider_ion.ui import LazyUiApp, MOUNT_PATH, external_views

    fastapi_apps = [{"app": LazyUiApp(), "url_prefix": MOUNT_PATH, "name": "ION webhooks UI"}]
"""

from __future__ import annotations

from airflow_provider_ion.ui.app import MOUNT_PATH, LazyUiApp, UiState, create_ui_app, external_views

__all__ = ["MOUNT_PATH", "LazyUiApp", "UiState", "create_ui_app", "external_views"]
