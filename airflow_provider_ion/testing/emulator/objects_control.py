"""``/_emulator/`` (the index), ``/_emulator/objects/...`` and ``/_emulator/events``: make ION changes by hand.

What ``airflow-ion emulator create|update|delete|list`` and scripts use: plain JSON, no token, no etag (an
update or delete applies to the object as it is now). Every change goes through the store like a GraphQL
mutation, so it fires the same webhooks. Same loopback-only rule as the other control routes.

| route | body / answer |
|---|---|
| ``GET /_emulator/`` | every ``/_emulator`` route with its methods and one line on what it does |
| ``GET /_emulator/objects`` | the kinds: name, resource (subscriptions name it), writable fields |
| ``GET /_emulator/objects/{kind}`` | ``{"objects": [...]}`` (oldest first) |
| ``POST /_emulator/objects/{kind}`` | the fields -> 201 the object (fires ``<RESOURCE>/CREATE``) |
| ``GET /_emulator/objects/{kind}/{id}`` | the object |
| ``PATCH /_emulator/objects/{kind}/{id}`` | the changed fields -> the object (fires ``UPDATE``) |
| ``DELETE /_emulator/objects/{kind}/{id}`` | the object as it was (fires ``DELETE``) |
| ``GET /_emulator/events?limit=20`` | ``{"events": [...]}``: the newest webhook events, each with the body sent |

``{kind}`` is a table name (``purchaseOrders``), its GraphQL type (``PurchaseOrder``) or the command-line
name (``purchase-order``).
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from airflow_provider_ion.testing.emulator.client_cli import cli_name, find_kind
from airflow_provider_ion.testing.emulator.control import guarded
from airflow_provider_ion.testing.emulator.domain import DOMAIN_KINDS, DomainKind
from airflow_provider_ion.testing.emulator.errors import BadUserInput, ConcurrencyConflict, EmulatorError, NotFound

#: What the routes without a docstring do (routes defined in control.py and delivery_control.py).
DESCRIPTIONS = {
    "/_emulator/health": "200 while the emulator serves (open to any client)",
    "/_emulator/stats": "request and delivery counters",
    "/_emulator/reset": "forget every object, receiver, subscription, event, fault and token",
    "/_emulator/faults": "GraphQL/token faults: list (GET), queue one (POST), clear (DELETE)",
    "/_emulator/changes": "the change log of ION objects ({seq, resource, action, object, at})",
    "/_emulator/tokens/expire": "invalidate every access token issued so far",
    "/_emulator/fire": 'fire a webhook without an object: {"resource", "action", "data"}',
    "/_emulator/deliveries": "delivery settings, counters and pending delivery faults",
    "/_emulator/deliveries/settings": "change delivery settings (retry_schedule, max_attempts, ...)",
    "/_emulator/deliveries/faults": "delivery faults: list (GET), queue one (POST), clear (DELETE)",
    "/_emulator/deliveries/wait": 'wait until no delivery is pending: {"timeout": 30}',
}


def _kind_or_404(request: Request) -> DomainKind | Response:
    kind = find_kind(request.path_params["kind"])
    if kind is None:
        names = ", ".join(cli_name(k) for k in DOMAIN_KINDS.values())
        return JSONResponse({"error": f"unknown kind {request.path_params['kind']!r}; one of: {names}"}, 404)
    return kind


def _error(exc: EmulatorError) -> Response:
    status = 404 if isinstance(exc, NotFound) else 409 if isinstance(exc, ConcurrencyConflict) else 400
    return JSONResponse({"error": str(exc), "code": exc.code}, status)


async def _body(request: Request) -> dict[str, Any] | Response:
    try:
        body = await request.json()
    except ValueError:
        return JSONResponse({"error": "body must be a JSON object of fields"}, 400)
    if not isinstance(body, dict):
        return JSONResponse({"error": "body must be a JSON object of fields"}, 400)
    return body


async def index(request: Request) -> Response:
    """This list."""

    def run(_em: Any) -> Response:
        routes = []
        for route in request.app.routes:
            path = getattr(route, "path", "")
            if not path.startswith("/_emulator") or path == "/_emulator":
                continue
            doc = (route.endpoint.__doc__ or "").strip().splitlines()
            methods = sorted(m for m in (route.methods or ()) if m != "HEAD")
            what = doc[0] if doc else DESCRIPTIONS.get(path, "")
            routes.append({"path": path, "methods": methods, "what": what})
        kinds = [_describe(k) for k in DOMAIN_KINDS.values()]
        return JSONResponse({"routes": routes, "kinds": kinds, "cli": "airflow-ion emulator --help"})

    return guarded(request, run)


def _describe(kind: DomainKind) -> dict[str, Any]:
    return {
        "kind": cli_name(kind),
        "type": kind.type_name,
        "resource": kind.resource,
        "fields": list(kind.writable),
        "required": list(kind.required),
    }


async def kinds(request: Request) -> Response:
    """The kinds of ION objects, with the resource their webhooks carry and their writable fields."""
    return guarded(request, lambda _em: JSONResponse({"kinds": [_describe(k) for k in DOMAIN_KINDS.values()]}))


async def collection(request: Request) -> Response:
    """List (GET) or create (POST, fires CREATE) objects of one kind."""
    kind = _kind_or_404(request)
    if isinstance(kind, Response):
        return kind
    body = await _body(request) if request.method == "POST" else {}
    if isinstance(body, Response):
        return body

    def run(em: Any) -> Response:
        if request.method == "GET":
            return JSONResponse({"objects": em.store.list(kind.table)})
        try:
            return JSONResponse(em.store.create_object(kind.table, body), 201)
        except EmulatorError as exc:
            return _error(exc)

    return guarded(request, run)


async def member(request: Request) -> Response:
    """Read (GET), change (PATCH, fires UPDATE) or delete (DELETE, fires DELETE) one object; no etag needed."""
    kind = _kind_or_404(request)
    if isinstance(kind, Response):
        return kind
    body = await _body(request) if request.method == "PATCH" else {}
    if isinstance(body, Response):
        return body
    object_id = request.path_params["id"]

    def run(em: Any) -> Response:
        store = em.store
        try:
            current = store.get(kind.table, object_id)
            if current is None:
                raise NotFound(kind.type_name, object_id)
            if request.method == "GET":
                return JSONResponse(current)
            if request.method == "PATCH":
                if not body:
                    raise BadUserInput(f"nothing to change; give some of: {', '.join(kind.writable)}")
                values = {**body, "id": current["id"], "etag": current["_etag"]}
                return JSONResponse(store.update_object(kind.table, values))
            return JSONResponse(store.delete_object(kind.table, {"id": current["id"], "etag": current["_etag"]}))
        except EmulatorError as exc:
            return _error(exc)

    return guarded(request, run)


async def events(request: Request) -> Response:
    """The newest webhook events (``?limit=20``), each with the delivery body as sent (``payload``)."""
    try:
        limit = int(request.query_params.get("limit", "20"))
    except ValueError:
        return JSONResponse({"error": "limit must be a whole number"}, 400)
    if not 1 <= limit <= 1000:
        return JSONResponse({"error": "limit must be 1-1000"}, 400)
    return guarded(request, lambda em: JSONResponse({"events": em.store.list("events")[-limit:]}))


ROUTES = [
    Route("/_emulator/", index, methods=["GET"]),
    Route("/_emulator", index, methods=["GET"]),
    Route("/_emulator/objects", kinds, methods=["GET"]),
    Route("/_emulator/objects/{kind}", collection, methods=["GET", "POST"]),
    Route("/_emulator/objects/{kind}/{id}", member, methods=["GET", "PATCH", "DELETE"]),
    Route("/_emulator/events", events, methods=["GET"]),
]
