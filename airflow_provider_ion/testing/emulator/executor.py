"""Run one GraphQL request against the emulator's schema and shape the answer the way ION does.

HTTP status choice: GraphQL errors (parse, validation, not found, bad input) come back as HTTP 200 with
``errors[]``, like ION. The one exception is a stale etag: ION's docs list concurrency conflicts as 409,
so when any error has ``extensions.code == "CONCURRENCY_CONFLICT"`` the same ION-style body is sent with
HTTP 409. A client therefore sees the conflict whether it looks at the status or at ``errors[]``.

Every error carries ``extensions.code``: the store's codes (``NOT_FOUND``, ``BAD_USER_INPUT``,
``CONCURRENCY_CONFLICT``), ``GRAPHQL_PARSE_FAILED`` / ``GRAPHQL_VALIDATION_FAILED`` for bad documents,
``BAD_USER_INPUT`` for variables that do not fit their types, ``INTERNAL_SERVER_ERROR`` for a bug.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from graphql import (
    GraphQLError,
    GraphQLSchema,
    NoSchemaIntrospectionCustomRule,
    execute_sync,
    parse,
    specified_rules,
    validate,
)

from airflow_provider_ion.testing.emulator.errors import ConcurrencyConflict, EmulatorError
from airflow_provider_ion.testing.emulator.profiles import Profile, get_profile
from airflow_provider_ion.testing.emulator.schema import RequestContext

log = logging.getLogger(__name__)


def execute_request(
    schema: GraphQLSchema,
    query: str,
    variables: Mapping[str, Any] | None,
    operation_name: str | None,
    context: RequestContext,
    profile: Profile | None = None,
) -> tuple[int, dict[str, Any]]:
    """``(http_status, body)`` for one request (synchronous: resolvers only touch the in-memory store).

    ``profile``: ``no-introspection`` refuses ``__schema``/``__type`` (a validation error, as servers
    that disable introspection answer); ``etag-in-200`` answers a stale etag with HTTP 200 and an
    error whose code is not one a client could know (``CONFLICT``), only its message says "etag"."""
    profile = get_profile(profile)
    try:
        document = parse(query)
    except GraphQLError as error:
        return 200, {"errors": [_format(error, "GRAPHQL_PARSE_FAILED")]}
    rules = None if profile.introspection else [*specified_rules, NoSchemaIntrospectionCustomRule]
    problems = validate(schema, document, rules)
    if problems:
        return 200, {"errors": [_format(e, "GRAPHQL_VALIDATION_FAILED") for e in problems]}
    result = execute_sync(  # the resolvers are synchronous
        schema,
        document,
        context_value=context,
        variable_values=dict(variables or {}),
        operation_name=operation_name,
    )
    body: dict[str, Any] = {"data": result.data}
    if result.errors:
        body["errors"] = [_format(e, "BAD_USER_INPUT") for e in result.errors]
    conflicts = [e for e in body.get("errors", []) if e.get("extensions", {}).get("code") == ConcurrencyConflict.code]
    if conflicts and profile.stale_etag == "200":
        for conflict in conflicts:
            conflict["extensions"]["code"] = "CONFLICT"
        return 200, body
    return (409 if conflicts else 200), body


def _format(error: GraphQLError, default_code: str) -> dict[str, Any]:
    formatted: dict[str, Any] = dict(error.formatted)
    original = error.original_error
    if isinstance(original, EmulatorError):
        code = original.code
    elif original is not None and not isinstance(original, GraphQLError):
        log.error("Resolver failed: %s", original, exc_info=original)
        code = "INTERNAL_SERVER_ERROR"
    else:
        code = default_code
    formatted["extensions"] = {**(error.extensions or {}), "code": code}
    return formatted
