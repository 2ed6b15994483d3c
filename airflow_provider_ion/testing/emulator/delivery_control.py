"""``/_emulator/fire`` and ``/_emulator/deliveries/*``: drive webhook delivery from outside the process.

For tests and benchmarks that run the emulator as ``airflow-ion emulator`` (a subprocess): fire an
arbitrary event, change delivery settings, queue delivery faults, wait until the queue drains. Same
loopback-only rule as the other control routes.

| route | body / answer |
|---|---|
| ``POST /_emulator/fire`` | ``{"resource", "action", "data"?}`` -> 202 ``{"events": [{id, ...}]}`` |
| ``GET /_emulator/deliveries`` | ``{"settings", "stats", "faults"}`` |
| ``POST /_emulator/deliveries/settings`` | changes (``retry_schedule``, ``max_attempts``, ...) -> ``{"settings"}`` |
| ``GET/POST/DELETE /_emulator/deliveries/faults`` | list / add one (``delivery_faults`` names) / clear |
| ``POST /_emulator/deliveries/wait`` | ``{"timeout": 30}`` -> ``{"idle": bool, "pending": int}`` |
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from airflow_provider_ion.testing.emulator.control import guarded
from airflow_provider_ion.testing.emulator.delivery import Deliveries
from airflow_provider_ion.testing.emulator.delivery_faults import delivery_fault_from_json


async def _json_object(request: Request) -> dict[str, Any] | None:
    try:
        body = await request.json()
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def _with_deliveries(request: Request, action: Callable[[Deliveries], Response]) -> Response:
    return guarded(request, lambda _em: action(request.app.state.deliveries))


async def fire(request: Request) -> Response:
    body = await _json_object(request)

    def run(deliveries: Deliveries) -> Response:
        if body is None or not isinstance(body.get("resource"), str) or not isinstance(body.get("action"), str):
            return JSONResponse({"error": 'body must be {"resource": str, "action": str, "data": {...}}'}, 400)
        data = body.get("data")
        if data is not None and not isinstance(data, dict):
            return JSONResponse({"error": "data must be a JSON object"}, 400)
        events = deliveries.fire(body["resource"], body["action"], data)
        keys = ("id", "subscriptionId", "receiverId")
        return JSONResponse({"events": [{k: e[k] for k in keys} for e in events]}, 202)

    return _with_deliveries(request, run)


async def overview(request: Request) -> Response:
    return _with_deliveries(
        request,
        lambda d: JSONResponse(
            {"settings": d.settings.to_dict(), "stats": d.stats(), "faults": [f.to_dict() for f in d.faults.pending()]}
        ),
    )


async def settings(request: Request) -> Response:
    body = await _json_object(request)

    def run(deliveries: Deliveries) -> Response:
        if body is None:
            return JSONResponse({"error": "body must be a JSON object of setting changes"}, 400)
        try:
            changed = deliveries.configure(**body)
        except (TypeError, ValueError) as exc:
            return JSONResponse({"error": str(exc)}, 400)
        return JSONResponse({"settings": changed.to_dict()})

    return _with_deliveries(request, run)


async def faults(request: Request) -> Response:
    body = await _json_object(request) if request.method == "POST" else None

    def run(deliveries: Deliveries) -> Response:
        if request.method == "DELETE":
            return JSONResponse({"cleared": deliveries.faults.clear()})
        if request.method == "POST":
            if body is None:
                return JSONResponse({"error": "body must be a JSON object describing one delivery fault"}, 400)
            try:
                fault = deliveries.faults.add(delivery_fault_from_json(body))
            except (TypeError, ValueError) as exc:
                return JSONResponse({"error": str(exc)}, 400)
            return JSONResponse({"fault": fault.to_dict()}, 201)
        return JSONResponse({"faults": [f.to_dict() for f in deliveries.faults.pending()]})

    return _with_deliveries(request, run)


async def wait(request: Request) -> Response:
    body = await _json_object(request) or {}
    timeout = body.get("timeout", 30)
    if not isinstance(timeout, int | float) or not 0 <= timeout <= 600:
        return JSONResponse({"error": "timeout must be 0-600 seconds"}, 400)
    allowed = guarded(request, lambda _em: None)  # None: allowed
    if allowed is not None:
        return allowed
    deliveries: Deliveries = request.app.state.deliveries
    idle = await run_in_threadpool(deliveries.wait_for_deliveries, float(timeout))
    return JSONResponse({"idle": idle, "pending": deliveries.pending})


ROUTES = [
    Route("/_emulator/fire", fire, methods=["POST"]),
    Route("/_emulator/deliveries", overview, methods=["GET"]),
    Route("/_emulator/deliveries/settings", settings, methods=["POST"]),
    Route("/_emulator/deliveries/faults", faults, methods=["GET", "POST", "DELETE"]),
    Route("/_emulator/deliveries/wait", wait, methods=["POST"]),
]
