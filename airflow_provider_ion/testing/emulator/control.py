"""``/_emulator/*``: health, counters, reset, fault injection, the change log, token expiry.

Webhook delivery has its own control routes (fire, settings, faults, wait): :mod:`.delivery_control`.

These routes take no token (tests and the demo drive them directly) and therefore answer only
loopback clients unless the emulator was started with ``allow_remote_control``; health is open to
all, for container health checks.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from airflow_provider_ion.testing.emulator.core import Emulator
from airflow_provider_ion.testing.emulator.faults import fault_from_json


async def health(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def stats(request: Request) -> Response:
    def run(em: Emulator) -> Response:
        deliveries = getattr(request.app.state, "deliveries", None)
        extra = {"deliveries": deliveries.stats()} if deliveries is not None else {}
        return JSONResponse({**em.stats.snapshot(), **extra})

    return guarded(request, run)


async def reset(request: Request) -> Response:
    def run(em: Emulator) -> Response:
        deliveries = getattr(request.app.state, "deliveries", None)
        if deliveries is not None:
            deliveries.reset()
        em.reset()
        return JSONResponse({"reset": True})

    return guarded(request, run)


async def faults(request: Request) -> Response:
    body: Any = None
    if request.method == "POST":
        try:
            body = await request.json()
        except ValueError:
            return JSONResponse({"error": "body must be a JSON object describing one fault"}, 400)

    def run(em: Emulator) -> Response:
        if request.method == "DELETE":
            return JSONResponse({"cleared": em.faults.clear()})
        if request.method == "POST":
            if not isinstance(body, dict):
                return JSONResponse({"error": "body must be a JSON object describing one fault"}, 400)
            try:
                fault = em.faults.add(fault_from_json(body))
            except (TypeError, ValueError) as exc:
                return JSONResponse({"error": str(exc)}, 400)
            return JSONResponse({"fault": fault.to_dict()}, 201)
        return JSONResponse({"faults": [f.to_dict() for f in em.faults.pending()]})

    return guarded(request, run)


async def changes(request: Request) -> Response:
    return guarded(request, lambda em: JSONResponse({"changes": em.store.changes}))


async def expire_tokens(request: Request) -> Response:
    def run(em: Emulator) -> Response:
        em.tokens.expire_all()
        return JSONResponse({"expired": True})

    return guarded(request, run)


def guarded(request: Request, action: Any) -> Any:
    """``action(emulator)`` for loopback clients (or anyone with ``allow_remote_control``), else 403."""
    emulator: Emulator = request.app.state.emulator
    if not emulator.allow_remote_control and not _is_loopback(request):
        return JSONResponse({"error": "emulator control routes answer loopback clients only"}, 403)
    return action(emulator)


def _is_loopback(request: Request) -> bool:
    host = request.client.host if request.client else None
    if host == "testclient":  # Starlette's in-process TestClient
        return True
    try:
        address = ipaddress.ip_address(host or "")
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


ROUTES = [
    Route("/_emulator/health", health, methods=["GET"]),
    Route("/_emulator/stats", stats, methods=["GET"]),
    Route("/_emulator/reset", reset, methods=["POST"]),
    Route("/_emulator/faults", faults, methods=["GET", "POST", "DELETE"]),
    Route("/_emulator/changes", changes, methods=["GET"]),
    Route("/_emulator/tokens/expire", expire_tokens, methods=["POST"]),
]
