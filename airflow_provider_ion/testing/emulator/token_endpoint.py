"""Keycloak-style OAuth2 client-credentials token endpoint (realm ``api-keys``), as ION's auth server.

Answers like Keycloak: form-encoded request, client credentials in the form or in HTTP Basic auth,
``audience`` accepted and ignored, errors as ``{"error", "error_description"}`` with 400 for a bad or
missing ``grant_type`` and 401 ``invalid_client`` for wrong credentials.
"""

from __future__ import annotations

import base64
import binascii
from urllib.parse import parse_qs, unquote

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from airflow_provider_ion.testing.emulator.core import Emulator
from airflow_provider_ion.testing.emulator.fault_responses import apply_fault

# Older Keycloak (and older ION docs) put ``/auth`` before ``/realms`` (the legacy-token-path profile).
from airflow_provider_ion.testing.emulator.profiles import LEGACY_TOKEN_PATH, TOKEN_PATH

__all__ = ["LEGACY_TOKEN_PATH", "TOKEN_PATH", "token_endpoint"]

_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


async def token_endpoint(request: Request) -> Response:
    emulator: Emulator = request.app.state.emulator
    emulator.stats.count("token_requests")
    fault = emulator.faults.take("token")
    if fault is not None and fault.when == "before" and (faulted := await apply_fault(fault, emulator.stats)):
        return faulted
    response = _answer(emulator, await request.body(), request.headers.get("authorization"))
    if fault is not None and fault.when == "after" and (faulted := await apply_fault(fault, emulator.stats)):
        return faulted
    return response


def _answer(emulator: Emulator, body: bytes, authorization: str | None) -> Response:
    form = {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True).items()}
    grant_type = form.get("grant_type")
    if not grant_type:
        return _error(400, "invalid_request", "Missing form parameter: grant_type")
    if grant_type != "client_credentials":
        return _error(400, "unsupported_grant_type", "Unsupported grant_type")
    client_id, client_secret = form.get("client_id"), form.get("client_secret")
    basic = _basic_credentials(authorization)
    if basic is not None:
        client_id, client_secret = basic
    if not emulator.tokens.credentials_ok(client_id, client_secret):
        return _error(401, "invalid_client", "Invalid client or Invalid client credentials")
    token, lifetime = emulator.tokens.issue()
    emulator.stats.count("tokens_issued")
    return JSONResponse(
        {
            "access_token": token,
            "expires_in": lifetime,
            "refresh_expires_in": 0,
            "token_type": "Bearer",
            "not-before-policy": 0,
            "scope": "profile email",
        },
        headers=_NO_STORE,
    )


def _basic_credentials(authorization: str | None) -> tuple[str, str] | None:
    scheme, _, value = (authorization or "").partition(" ")
    if scheme.lower() != "basic" or not value:
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    client_id, sep, client_secret = decoded.partition(":")
    return (unquote(client_id), unquote(client_secret)) if sep else None


def _error(status: int, error: str, description: str) -> JSONResponse:
    return JSONResponse({"error": error, "error_description": description}, status, headers=_NO_STORE)
