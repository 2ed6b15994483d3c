"""``POST /graphql``: count, maybe fault, authenticate, execute, maybe fault again.

The order is deliberate: every request is counted (so tests can assert exact numbers), "before"
faults fire ahead of auth and execution (a gateway in front of ION fails before ION sees anything),
"after" faults fire once the store has changed (the client cannot tell whether its mutation happened).

Auth accepts ``Authorization: Bearer <token>`` and the raw ``Authorization: <token>`` that ION's manual
sends. A missing, unknown or expired token is HTTP 401 with an ION-style ``errors[]`` body.
"""

from __future__ import annotations

import json
import re
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from airflow_provider_ion.testing.emulator.core import Emulator
from airflow_provider_ion.testing.emulator.executor import execute_request
from airflow_provider_ion.testing.emulator.fault_responses import apply_fault
from airflow_provider_ion.testing.emulator.schema import RequestContext

# "query Name(" / "mutation Name {" / "... Name @dir": a keyword, a name, then what may follow an
# operation name. A field called "query" cannot match: a field name is never followed by another name.
_OPERATION = re.compile(r"\b(?:query|mutation|subscription)\s+([_A-Za-z][_0-9A-Za-z]*)\s*[({@]")


async def graphql_endpoint(request: Request) -> Response:
    emulator: Emulator = request.app.state.emulator
    raw = await request.body()
    try:
        body = json.loads(raw)
    except ValueError:
        body = None
    query = body.get("query") if isinstance(body, dict) else None
    operation = _operation_name(body, query)
    emulator.stats.count_graphql(operation)

    fault = emulator.faults.take("graphql", operation, query if isinstance(query, str) else None)
    if fault is not None and fault.when == "before" and (faulted := await apply_fault(fault, emulator.stats)):
        return faulted

    client_id = emulator.tokens.client_of(_token(request.headers.get("authorization")) or "")
    if client_id is None:
        emulator.stats.count("unauthorized")
        response: Response = _errors(401, "Unauthorized", "UNAUTHENTICATED", {"WWW-Authenticate": "Bearer"})
    elif (problem := _bad_request(body)) is not None:
        response = _errors(400, problem, "BAD_REQUEST")
    else:
        assert isinstance(body, dict)
        status, result = await run_in_threadpool(
            execute_request,
            emulator.schema,
            body["query"],
            body.get("variables"),
            body.get("operationName"),
            RequestContext(store=emulator.store, client_id=client_id),
            emulator.profile,
        )
        response = JSONResponse(result, status)

    if fault is not None and fault.when == "after" and (faulted := await apply_fault(fault, emulator.stats)):
        return faulted
    return response


def _token(authorization: str | None) -> str | None:
    """The token from ``Bearer <token>`` or from a raw ``<token>`` header."""
    value = (authorization or "").strip()
    scheme, _, rest = value.partition(" ")
    if not rest:
        return value or None
    return rest.strip() if scheme.lower() == "bearer" else None


def _operation_name(body: Any, query: Any) -> str | None:
    """``operationName`` if given, else the name of the first operation in the document (for stats)."""
    if isinstance(body, dict) and isinstance(body.get("operationName"), str):
        return body["operationName"]
    match = _OPERATION.search(query) if isinstance(query, str) else None
    return match.group(1) if match else None


def _bad_request(body: Any) -> str | None:
    """Why the HTTP request is not a GraphQL request at all (HTTP 400), or None."""
    if not isinstance(body, dict):
        return "Request body must be a JSON object: {query, variables, operationName}"
    if not isinstance(body.get("query"), str) or not body["query"].strip():
        return "Request body needs a non-empty 'query' string"
    if body.get("variables") is not None and not isinstance(body["variables"], dict):
        return "'variables' must be a JSON object"
    if body.get("operationName") is not None and not isinstance(body["operationName"], str):
        return "'operationName' must be a string"
    return None


def _errors(status: int, message: str, code: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"errors": [{"message": message, "extensions": {"code": code}}]}, status, headers)
