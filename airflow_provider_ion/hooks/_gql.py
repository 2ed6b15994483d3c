"""The gql side of the hook: parsed-document cache, gql clients wired to our httpx stack, and the
translation of whatever fails into :mod:`airflow_provider_ion.exceptions`.

Imports gql, graphql-core and httpx at top level; the hook imports this module lazily.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import httpx
from gql import Client
from gql.transport.exceptions import (
    TransportConnectionFailed,
    TransportProtocolError,
    TransportQueryError,
    TransportServerError,
)
from gql.transport.httpx import HTTPXTransport
from graphql import DocumentNode, OperationDefinitionNode, parse

from airflow_provider_ion import __version__
from airflow_provider_ion import graphql as documents
from airflow_provider_ion.exceptions import (
    IonAuthError,
    IonConcurrencyError,
    IonError,
    IonGraphQLError,
    IonNotFoundError,
    IonRetryExhausted,
    IonTransportError,
    redact,
)
from airflow_provider_ion.hooks._auth import IonAuth, sync_transport
from airflow_provider_ion.hooks._retry import (
    ATTEMPTS_EXT,
    MUTATION_EXT,
    OPERATION_EXT,
    RETRYABLE_STATUSES,
    RetryPolicy,
    never_sent,
)
from airflow_provider_ion.hooks.environments import IonConnectionSettings

try:  # gql >= 4
    from gql import GraphQLRequest
except ImportError:  # pragma: no cover - gql 3.5
    GraphQLRequest = None  # type: ignore[assignment,misc]

_NAME = re.compile(r"^[_A-Za-z][_0-9A-Za-z]*$")
_SECRET_KEYS = {"sharedsecret", "shared_secret", "secret", "client_secret", "password", "token"}
CONCURRENCY_CODES = {"CONCURRENCY_CONFLICT", "STALE_ETAG", "ETAG_MISMATCH"}
# ION's error-code page lists "409: The _etag mismatch" but also says GraphQL operations answer HTTP 200
# even when they fail; the code/message of a stale etag inside a 200's errors[] is not published. So a
# message that talks about the etag being stale/mismatched/changed counts as a conflict too.
_STALE_ETAG = re.compile(r"etag", re.IGNORECASE)
_STALE_WORDS = re.compile(r"mismatch|stale|outdated|changed|conflict|does not match|doesn't match|precondition", re.I)
NOT_FOUND_CODES = {"NOT_FOUND"}
AUTH_CODES = {"UNAUTHENTICATED", "FORBIDDEN"}


# --- documents -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Operation:
    """A parsed document and the operation of it to run."""

    document: DocumentNode
    name: str | None
    is_mutation: bool

    @property
    def label(self) -> str:
        return self.name or "anonymous operation"


@lru_cache(maxsize=512)
def _parse(text: str) -> DocumentNode:
    return parse(text)


@lru_cache(maxsize=512)
def operation(document: str, operation_name: str | None = None) -> Operation:
    """Resolve ``document`` (a name from ``graphql/`` or GraphQL text) and parse it, once.

    :raises KeyError: a bare name that is not a document in ``graphql/``.
    :raises ValueError: the document has several operations and ``operation_name`` picks none.
    """
    text = documents.document(document) if _NAME.match(document.strip()) else document
    node = _parse(text)
    ops = [d for d in node.definitions if isinstance(d, OperationDefinitionNode)]
    if operation_name is not None:
        chosen = [d for d in ops if d.name and d.name.value == operation_name]
        if not chosen:
            raise ValueError(f"Document has no operation named {operation_name!r}")
    elif len(ops) != 1:
        names = [d.name.value if d.name else "<anonymous>" for d in ops]
        raise ValueError(f"Document has {len(ops)} operations ({', '.join(names)}); pass operation_name")
    else:
        chosen = ops
    op = chosen[0]
    return Operation(node, op.name.value if op.name else None, op.operation.value == "mutation")


# --- gql clients -----------------------------------------------------------------------------------


class _PayloadLogFilter(logging.Filter):
    """gql logs whole request/response bodies at DEBUG; those carry sharedSecret values."""

    def filter(self, record: logging.LogRecord) -> bool:
        msg = str(record.msg)
        return not msg.startswith((">>>", "<<<", "operations", "file_map"))


_gql_logger = logging.getLogger("gql.transport.httpx")
if not any(isinstance(f, _PayloadLogFilter) for f in _gql_logger.filters):
    _gql_logger.addFilter(_PayloadLogFilter())


class HTTPStatusFailure(Exception):
    """A final HTTP status >= 400 (after retries and the 401 refresh), for the hook to translate."""

    def __init__(self, status_code: int, body: Any, attempts: int) -> None:
        super().__init__(f"HTTP {status_code}")
        self.status_code = status_code
        self.body = body
        self.attempts = attempts


class IonHTTPXTransport(HTTPXTransport):
    """gql would read a JSON error body on a 4xx/5xx as a GraphQL result and lose the status."""

    def _prepare_result(self, response: httpx.Response):  # type: ignore[no-untyped-def]
        if response.status_code >= 400:
            try:
                body = response.json()
            except ValueError:
                body = None
            raise HTTPStatusFailure(response.status_code, body, int(response.extensions.get(ATTEMPTS_EXT, 1)))
        return super()._prepare_result(response)


def _client_kwargs(settings: IonConnectionSettings, auth: IonAuth) -> dict[str, Any]:
    return {
        "auth": auth,
        "timeout": settings.timeout,
        "trust_env": False,
        "headers": {"User-Agent": f"airflow-provider-ion/{__version__}"},
        "limits": httpx.Limits(max_connections=100, max_keepalive_connections=20),
    }


def sync_client(settings: IonConnectionSettings, policy: RetryPolicy, logger: Any) -> Client:
    """A gql Client over one pooled httpx.Client: auth above, retries below."""
    auth = IonAuth(settings, policy, logger=logger)
    transport = IonHTTPXTransport(
        settings.graphql_url,
        transport=sync_transport(settings, policy, settings.graphql_url, logger),
        **_client_kwargs(settings, auth),
    )
    return Client(transport=transport, fetch_schema_from_transport=False)


def call_args(op: Operation, variables: Mapping[str, Any] | None) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """(args, kwargs) for ``session.execute`` telling the transport the operation and its kind."""
    extra = {"extensions": {MUTATION_EXT: op.is_mutation, OPERATION_EXT: op.label}}
    values = dict(variables) if variables else None
    if GraphQLRequest is not None:
        request = GraphQLRequest(op.document, variable_values=values, operation_name=op.name)
        return (request,), {"extra_args": extra}
    return (op.document,), {  # pragma: no cover - gql 3.5
        "variable_values": values,
        "operation_name": op.name,
        "extra_args": extra,
    }


# --- errors ----------------------------------------------------------------------------------------


def secrets_in(value: Any) -> list[str]:
    """String values under secret-looking keys anywhere in ``value`` (variables), for redaction."""
    found: list[str] = []
    if isinstance(value, Mapping):
        for key, item in value.items():
            if str(key).lower() in _SECRET_KEYS and isinstance(item, str):
                found.append(item)
            else:
                found.extend(secrets_in(item))
    elif isinstance(value, Sequence) and not isinstance(value, str | bytes):
        for item in value:
            found.extend(secrets_in(item))
    return found


def _object_id(errors: Sequence[Mapping[str, Any]], variables: Mapping[str, Any] | None) -> str | None:
    for err in errors:
        ext = err.get("extensions") or {}
        for key in ("id", "objectId", "object_id"):
            if ext.get(key) is not None:
                return str(ext[key])
    variables = variables or {}
    candidate = (variables.get("input") or {}).get("id") if isinstance(variables.get("input"), Mapping) else None
    candidate = candidate or variables.get("id")
    return str(candidate) if candidate is not None else None


def _scrub_errors(errors: Any, secrets: list[str]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for err in errors or []:
        if isinstance(err, Mapping):
            err = dict(err)
            if isinstance(err.get("message"), str):
                err["message"] = redact(err["message"], secrets)
            out.append(err)
        else:
            out.append({"message": redact(str(err), secrets)})
    return out


def _stale_etag(error: Mapping[str, Any]) -> bool:
    message = str(error.get("message") or "")
    return bool(_STALE_ETAG.search(message) and _STALE_WORDS.search(message))


def graphql_error(
    errors: Any,
    *,
    op: Operation,
    variables: Mapping[str, Any] | None,
    secrets: list[str],
    conn_id: str,
    status_code: int | None = None,
    data: Any = None,
) -> IonError:
    """The most precise IonError for ION's ``errors`` list."""
    errs = _scrub_errors(errors, secrets)
    codes = {str((e.get("extensions") or {}).get("code") or "").upper() for e in errs}
    message = IonGraphQLError.describe(errs, op.label)
    common = {"operation_name": op.name, "status_code": status_code, "data": data}
    if status_code == 409 or codes & CONCURRENCY_CODES or any(_stale_etag(e) for e in errs):
        object_id = _object_id(errs, variables)
        if not errs:
            message = f"{op.label} failed: concurrency conflict (HTTP 409)"
        message += (
            f"; object {object_id}" if object_id else ""
        ) + ": it changed since it was read; re-read it for the current _etag and retry"
        return IonConcurrencyError(message, errs, object_id=object_id, **common)
    if codes & NOT_FOUND_CODES:
        return IonNotFoundError(message, errs, **common)
    if codes & AUTH_CODES:
        return IonAuthError(
            f"Connection '{conn_id}': {message}; check the API key's permissions in ION",
            conn_id=conn_id,
            status_code=status_code,
        )
    return IonGraphQLError(message, errs, **common)


def translate(
    exc: BaseException,
    *,
    op: Operation,
    variables: Mapping[str, Any] | None,
    settings: IonConnectionSettings,
) -> BaseException:
    """Map a failure from gql/httpx (possibly wrapped by gql) onto our exception classes."""
    secrets = [settings.client_secret, *secrets_in(variables)]
    cause: BaseException = exc
    # gql wraps anything raised by httpx.post (our auth flow, our transport) in TransportConnectionFailed.
    if isinstance(exc, TransportConnectionFailed) and exc.__cause__ is not None:
        cause = exc.__cause__
    if isinstance(cause, IonError):
        return cause
    conn = settings.conn_id
    if isinstance(cause, TransportQueryError):
        return graphql_error(cause.errors, op=op, variables=variables, secrets=secrets, conn_id=conn, data=cause.data)
    if isinstance(cause, HTTPStatusFailure):
        return _status_error(cause, op=op, variables=variables, secrets=secrets, settings=settings)
    if isinstance(cause, httpx.HTTPError):
        attempts = int(getattr(cause, "ion_attempts", 1))
        sent = not never_sent(cause)
        may_have_executed = op.is_mutation and sent
        text = (
            f"{op.label} to {settings.graphql_url} failed: {type(cause).__name__}: "
            f"{redact(str(cause), secrets) or 'no detail'}"
        )
        if attempts > 1:
            text += f" (after {attempts} attempts)"
        if may_have_executed:
            text += (
                "; not retried because ION may have executed this mutation: re-read ION's state "
                "and reconcile before trying again"
            )
        cls = IonRetryExhausted if attempts > 1 else IonTransportError
        return cls(
            text, operation_name=op.name, attempts=attempts, may_have_executed=may_have_executed,
            url=settings.graphql_url,
        )  # fmt: skip
    if isinstance(cause, TransportServerError):
        return IonTransportError(
            f"{op.label} failed: {redact(str(cause), secrets)}",
            status_code=cause.code,
            operation_name=op.name,
            url=settings.graphql_url,
        )
    if isinstance(cause, TransportProtocolError):
        return IonTransportError(
            f"{op.label}: {settings.graphql_url} did not answer with GraphQL ({redact(str(cause), secrets)[:300]})",
            operation_name=op.name,
            url=settings.graphql_url,
        )
    return exc


def _status_error(
    failure: HTTPStatusFailure,
    *,
    op: Operation,
    variables: Mapping[str, Any] | None,
    secrets: list[str],
    settings: IonConnectionSettings,
) -> IonError:
    status = failure.status_code
    body = failure.body if isinstance(failure.body, Mapping) else {}
    errors = body.get("errors") if isinstance(body.get("errors"), list) else None
    conn = settings.conn_id
    if status in (401, 403):
        if status == 401:
            what = "rejected the access token even after one refresh"
            check = (
                f"check that the API key (client id '{settings.client_id}') is still valid and belongs "
                f"to the environment at {settings.api_url}"
            )
        else:
            what = "refused access (HTTP 403)"
            check = f"check that the API key (client id '{settings.client_id}') has the permissions {op.label} needs"
        return IonAuthError(
            f"Connection '{conn}': ION {what} for {op.label} at {settings.graphql_url}; {check}.",
            conn_id=conn,
            status_code=status,
            url=settings.graphql_url,
        )
    # 429 and 5xx are about the exchange, whatever JSON body they carry; other 4xx with errors[] are
    # ION's GraphQL answer (e.g. 400 for a document that fails validation).
    if status == 409 or (errors and status != 429 and status < 500):
        return graphql_error(
            errors or [], op=op, variables=variables, secrets=secrets, conn_id=conn, status_code=status
        )
    attempts = failure.attempts
    may_have_executed = op.is_mutation and status != 429 and status >= 500
    text = f"{op.label} to {settings.graphql_url} failed with HTTP {status}"
    if attempts > 1:
        text += f" after {attempts} attempts"
    if may_have_executed:
        text += (
            "; not retried because ION may have executed this mutation: re-read ION's state and "
            "reconcile before trying again"
        )
    cls = IonRetryExhausted if attempts > 1 and status in RETRYABLE_STATUSES else IonTransportError
    return cls(
        text,
        status_code=status,
        operation_name=op.name,
        attempts=attempts,
        may_have_executed=may_have_executed,
        url=settings.graphql_url,
    )
