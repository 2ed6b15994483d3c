"""What a faulted request gets back: a gateway-style error, a rate limit, or a dropped connection."""

from __future__ import annotations

import asyncio
from http import HTTPStatus

from starlette.responses import HTMLResponse, JSONResponse, Response

from airflow_provider_ion.testing.emulator.disconnect import DropConnection
from airflow_provider_ion.testing.emulator.faults import Fault
from airflow_provider_ion.testing.emulator.stats import Stats

_GATEWAY_STATUSES = {502, 503, 504}


async def apply_fault(fault: Fault, stats: Stats) -> Response | None:
    """Wait the fault's delay, then the response that replaces the real one (None: send the real one)."""
    stats.count("faults_applied")
    if fault.delay:
        await asyncio.sleep(fault.delay)
    if fault.kind == "drop":
        return DropConnection()
    if fault.kind == "status":
        assert fault.status is not None
        return error_response(fault.status, fault.retry_after)
    return None


def error_response(status: int, retry_after: int | None = None) -> Response:
    """5xx from a gateway look like a load balancer's HTML page (clients must not expect JSON there);
    other statuses (429, ...) come as ION-style JSON ``errors[]``."""
    phrase = HTTPStatus(status).phrase
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
    if status in _GATEWAY_STATUSES:
        html = f"<html><head><title>{status} {phrase}</title></head><body><h1>{status} {phrase}</h1></body></html>"
        return HTMLResponse(html, status_code=status, headers=headers)
    code = "RATE_LIMITED" if status == 429 else phrase.upper().replace(" ", "_")
    return JSONResponse({"errors": [{"message": phrase, "extensions": {"code": code}}]}, status, headers)
