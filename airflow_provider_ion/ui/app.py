"""The "ION webhooks" page: a FastAPI app mounted in Airflow's API server by our plugin.

Routes (relative to :data:`MOUNT_PATH`, ``/ion-ui``):

- ``GET /``: the page (receivers, deliveries with filters, rejections and quarantine, consumers).
- ``GET /body?receiver=&event_id=``: one stored delivery's body (JSON), fetched on demand by the page.
- ``GET /quarantine/{id}/body``: one quarantined delivery's body.
- ``POST /quarantine/replay``: verify quarantined deliveries again with the signature settings now in force;
  append what verifies and drop it from quarantine (same function as ``airflow-ion inbox replay-quarantined``).
- ``GET /dag/{dag_id}`` and ``GET /dag/{dag_id}/run/{run_id}``: the deliveries a DAG's runs consumed
  (shown inside Airflow's DAG and DAG-run views through ``external_views``).

Authentication and permissions are Airflow's own: plugin apps get none by themselves, so every route
declares the documented dependencies of ``airflow.api_fastapi.core_api.security`` (the same ones
Airflow's public API uses). Reading needs ``requires_access_view(AccessView.PLUGINS)``; the DAG views
also need read access to that DAG (``requires_access_dag("GET", DagAccessEntity.RUN)``); replaying
needs ``requires_access_asset("POST")``, the permission of Airflow's own "create asset event" endpoint
(``POST /api/v2/assets/events``, ``api_fastapi/core_api/routes/public/assets.py``), because a replayed
delivery becomes asset events and DAG runs. No credential: 401 (a browser asking for HTML is sent to
the login page instead); a credential without the permission: 403. The session cookie ``_token`` is
what ``get_user`` reads when there is no ``Authorization`` header (``core_api/security.py``).

What is never rendered: receiver secrets, request headers' values (ION receivers can carry custom
headers, which may be credentials), the inbox URL's password.

Example::

    app = create_ui_app()   # what the plugin mounts at /ion-ui
"""

# No ``from __future__ import annotations``: FastAPI reads the route functions' annotations, and these
# functions are defined inside create_ui_app (their names are local imports, not module globals).
import secrets
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

MOUNT_PATH = "/ion-ui"
#: Deliveries older than this and in no DAG run are listed under Consumers (seconds).
DEFAULT_UNCONSUMED_AFTER = 300.0
_TEMPLATES = Path(__file__).with_name("templates")
_REPLAY_HEADER = "x-ion-ui"


def _parse_time(value: str | None, name: str) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{name}: {value!r} is not a date and time (use 2026-01-31T14:05, UTC)") from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def _ago(now: datetime, then: datetime | None) -> str:
    if then is None:
        return ""
    seconds = max(0, int((now - then).total_seconds()))
    if seconds < 90:
        return f"{seconds}s ago"
    if seconds < 90 * 60:
        return f"{seconds // 60}m ago"
    if seconds < 36 * 3600:
        return f"{seconds // 3600}h ago"
    return f"{seconds // 86400}d ago"


def _fmt(value: datetime | None) -> str:
    return "" if value is None else value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m {seconds % 60}s"
    return f"{seconds // 3600}h {(seconds % 3600) // 60}m"


class UiState:
    """What the page shares across requests: the inbox, the ION cache, settings."""

    def __init__(
        self,
        *,
        inbox: Any = None,
        inbox_url: str | None = None,
        ion_conn_id: str | None = None,
        unconsumed_after: float = DEFAULT_UNCONSUMED_AFTER,
        receiver_stats: Callable[[], dict[str, Any] | None] | None = None,
        signature_scheme: dict[str, str] | None = None,
        secrets_for: Callable[[str], Sequence[str]] | None = None,
        current_scheme: Callable[[], Any] | None = None,
    ) -> None:
        from airflow_provider_ion.ui.ion_status import IonSubscriptions

        self._inbox = inbox
        self._inbox_url = inbox_url
        self._lock = threading.Lock()
        self.ion = IonSubscriptions(ion_conn_id)
        self.unconsumed_after = float(unconsumed_after)
        self.receiver_stats = receiver_stats
        #: The configured signature settings (header, algorithm, encoding, prefix; no secret), shown next
        #: to the quarantine so a mismatch can be compared with what ION sends.
        self.signature_scheme = signature_scheme or {}
        self._secrets_for = secrets_for
        self._current_scheme = current_scheme

    def secrets_for(self, receiver: str) -> Sequence[str]:
        """The receiver's shared secret(s), resolved like the receiver does (never shown)."""
        if self._secrets_for is not None:
            return self._secrets_for(receiver)
        from airflow_provider_ion.webhooks.quarantine_replay import receiver_secrets

        return receiver_secrets(receiver)

    def current_scheme(self) -> Any:
        """The signature settings now in force; replay verifies with these."""
        if self._current_scheme is not None:
            return self._current_scheme()
        from airflow_provider_ion.webhooks.quarantine_replay import current_scheme

        return current_scheme()

    @property
    def inbox(self) -> Any:
        if self._inbox is None:
            with self._lock:
                if self._inbox is None:
                    from airflow_provider_ion.webhooks.inbox import Inbox

                    self._inbox = Inbox.from_url(self._inbox_url)
        return self._inbox

    @classmethod
    def from_airflow_config(cls, **overrides: Any) -> "UiState":
        """Settings from ``[ion_webhooks]`` (:mod:`airflow_provider_ion.config`)."""
        from airflow_provider_ion import config

        conn_id = config.get("ion_conn_id")
        values: dict[str, Any] = {
            "inbox_url": config.inbox_url(),
            "ion_conn_id": conn_id if conn_id and conn_id.lower() not in ("none", "off", "false") else None,
            "unconsumed_after": config.get_float("ui_unconsumed_after"),
            "signature_scheme": {
                key: config.get(f"signature_{key}") or "" for key in ("header", "algorithm", "encoding", "prefix")
            },
        }
        values.update(overrides)
        return cls(**values)


def create_ui_app(state: UiState | None = None) -> Any:
    """The FastAPI app of the page (see the module doc); settings from Airflow's config unless given."""
    import jinja2
    from airflow.api_fastapi.auth.managers.models.resource_details import AccessView, DagAccessEntity
    from airflow.api_fastapi.core_api.security import (
        get_user,
        requires_access_asset,
        requires_access_dag,
        requires_access_view,
    )
    from fastapi import Depends, FastAPI, HTTPException, Query, Request
    from fastapi.exception_handlers import http_exception_handler
    from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

    from airflow_provider_ion.webhooks.inbox import InboxUnavailable

    state = state or UiState.from_airflow_config()
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(_TEMPLATES)),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters["fmt"] = _fmt
    env.filters["duration"] = _duration
    app = FastAPI(title="ION webhooks", docs_url=None, redoc_url=None, openapi_url=None)
    can_read = [Depends(requires_access_view(AccessView.PLUGINS))]

    @app.exception_handler(HTTPException)
    async def _to_login(request: Request, exc: HTTPException) -> Response:
        # A person opening the page without a session goes to Airflow's login page and comes back.
        if exc.status_code == 401 and request.method == "GET" and "text/html" in request.headers.get("accept", ""):
            from airflow.api_fastapi.app import get_auth_manager

            return RedirectResponse(get_auth_manager().get_url_login(next_url=str(request.url)), 303)
        return await http_exception_handler(request, exc)

    def _html(template: str, **context: Any) -> HTMLResponse:
        nonce = secrets.token_urlsafe(16)
        body = env.get_template(template).render(nonce=nonce, mount=MOUNT_PATH, **context)
        return HTMLResponse(
            body,
            headers={
                # No CDN, nothing from elsewhere: the page's one script carries this nonce.
                "content-security-policy": f"default-src 'self'; script-src 'nonce-{nonce}'; "
                "style-src 'self' 'unsafe-inline'; img-src 'self' data:; frame-ancestors 'self'",
                "cache-control": "no-store",
                "x-content-type-options": "nosniff",
            },
        )

    def _can_edit(user: Any) -> bool:
        from airflow.api_fastapi.app import get_auth_manager

        return bool(get_auth_manager().is_authorized_asset(method="POST", user=user))

    @app.get("/", dependencies=can_read, response_class=HTMLResponse)
    def page(
        user: Annotated[Any, Depends(get_user)],
        receiver: str | None = None,
        resource: str | None = None,
        action: str | None = None,
        event_id: str | None = None,
        since: str | None = None,
        until: str | None = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    ) -> HTMLResponse:
        from airflow_provider_ion.ui.page import build_page

        started = time.perf_counter()
        errors: list[str] = []
        try:
            since_at, until_at = _parse_time(since, "since"), _parse_time(until, "until")
        except ValueError as error:
            errors.append(str(error))
            since_at = until_at = None
        form = {
            "receiver": receiver or "",
            "resource": resource or "",
            "action": action or "",
            "event_id": event_id or "",
            "since": since or "",
            "until": until or "",
            "limit": limit,
        }
        context = build_page(state, user, form, since_at, until_at, errors, can_edit=_can_edit(user))
        context["render_ms"] = round((time.perf_counter() - started) * 1000, 1)
        return _html("page.html", **context)

    @app.get("/body", dependencies=can_read)
    def body(receiver: str, event_id: str) -> JSONResponse:
        try:
            event = state.inbox.get(receiver, event_id)
        except InboxUnavailable as error:
            raise HTTPException(503, f"the inbox is unavailable: {error}") from None
        if event is None:
            raise HTTPException(404, f"no delivery {event_id!r} for receiver {receiver!r} in the inbox")
        return JSONResponse(event.payload, headers={"cache-control": "no-store", "x-content-type-options": "nosniff"})

    @app.get("/quarantine/{item_id}/body", dependencies=can_read)
    def quarantined_body(item_id: str) -> Response:
        found = _find_quarantined(state, item_id)
        if found is None:
            raise HTTPException(404, f"no quarantined delivery {item_id!r}")
        return Response(
            bytes(found.body), media_type="text/plain; charset=utf-8", headers={"cache-control": "no-store"}
        )

    # With SimpleAuthManager, asset POST needs role op or admin (is_authorized_asset: allow_role=OP,
    # api_fastapi/auth/managers/simple/simple_auth_manager.py); viewers and users are refused (403).
    @app.post("/quarantine/replay", dependencies=[Depends(requires_access_asset(method="POST"))])
    async def replay(request: Request) -> JSONResponse:
        # Cookie-authenticated and state-changing: accept only what a same-origin script can send (a
        # custom header forces a CORS preflight, which this app never answers), never a plain form post.
        if request.headers.get(_REPLAY_HEADER) != "1":
            raise HTTPException(400, f"replay must be sent by the page (missing {_REPLAY_HEADER} header)")
        try:
            data = await request.json()
            ids = [str(i) for i in data["ids"]]
        except (ValueError, KeyError, TypeError):
            raise HTTPException(400, 'body must be JSON {"ids": [<quarantine id>, ...]}') from None
        from starlette.concurrency import run_in_threadpool

        from airflow_provider_ion.ui.page import replay_quarantined

        return JSONResponse(await run_in_threadpool(replay_quarantined, state, ids))

    @app.get(
        "/dag/{dag_id}",
        dependencies=[*can_read, Depends(requires_access_dag("GET", DagAccessEntity.RUN))],
        response_class=HTMLResponse,
    )
    def dag_view(dag_id: str) -> HTMLResponse:
        from airflow_provider_ion.ui.page import build_run_view

        return _html("runs.html", **build_run_view(state, dag_id, None))

    @app.get(
        "/dag/{dag_id}/run/{run_id}",
        dependencies=[*can_read, Depends(requires_access_dag("GET", DagAccessEntity.RUN))],
        response_class=HTMLResponse,
    )
    def run_view(dag_id: str, run_id: str) -> HTMLResponse:
        from airflow_provider_ion.ui.page import build_run_view

        return _html("runs.html", **build_run_view(state, dag_id, run_id))

    return app


def _find_quarantined(state: UiState, item_id: str) -> Any:
    for item in state.inbox.quarantined(limit=1000):
        if str(item.id) == item_id:
            return item
    return None


class LazyUiApp:
    """An ASGI app that builds the page's FastAPI app on its first request (plugins load everywhere)."""

    def __init__(self, factory: Callable[[], Any] | None = None) -> None:
        self._factory = factory or create_ui_app
        self._app: Any = None
        self._lock = threading.Lock()

    @property
    def app(self) -> Any:
        if self._app is None:
            with self._lock:
                if self._app is None:
                    self._app = self._factory()
        return self._app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        await self.app(scope, receive, send)


def external_views() -> list[dict[str, Any]]:
    """The plugin's ``external_views``: the page in the navigation, and per-DAG and per-run views.

    Airflow's UI shows an external view in an iframe and, for destinations other than ``nav``,
    replaces ``{DAG_ID}`` and ``{RUN_ID}`` in ``href`` (``ui/dist`` bundle, ``ExternalView``;
    destinations are ``nav|dag|dag_run|task|task_instance|base``,
    ``api_fastapi/core_api/datamodels/plugins.py``). ``category: "browse"`` puts the page in the
    Browse menu (the bundle groups nav views by category into admin/browse/docs/user menus).
    """
    return [
        {"name": "ION webhooks", "href": f"{MOUNT_PATH}/", "url_route": "ion-webhooks", "destination": "nav",
         "category": "browse"},
        {"name": "ION events", "href": f"{MOUNT_PATH}/dag/{{DAG_ID}}", "url_route": "ion-events-dag",
         "destination": "dag"},
        {"name": "ION events", "href": f"{MOUNT_PATH}/dag/{{DAG_ID}}/run/{{RUN_ID}}", "url_route": "ion-events-run",
         "destination": "dag_run"},
    ]  # fmt: skip


__all__ = ["MOUNT_PATH", "LazyUiApp", "UiState", "create_ui_app", "external_views"]
