"""Errors the provider raises when talking to ION.

Every class subclasses :class:`IonError`, itself an ``AirflowException``, so a task fails the usual
Airflow way and callers can still catch the precise case (a stale etag, an auth problem, an outcome
that is unknown because ION may have executed a mutation).

No message carries a secret: the client secret, an access token or a receiver's ``sharedSecret``
never reaches ``str(exc)`` or ``repr(exc)``. GraphQL error messages come from ION and name fields, not
values; the hook still scrubs every message through :func:`redact` before raising.

``AirflowException`` comes from the public ``airflow.sdk.exceptions`` (present from task-sdk 1.1, i.e.
Airflow 3.1; there it re-exports ``airflow.exceptions.AirflowException``, so both are the same class).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from airflow.sdk.exceptions import AirflowException

__all__ = [
    "IonAuthError",
    "IonConcurrencyError",
    "IonConfigError",
    "IonError",
    "IonGraphQLError",
    "IonNotFoundError",
    "IonPaginationError",
    "IonRetryExhausted",
    "IonSchemaError",
    "IonTransportError",
    "IonWebhookStateError",
    "redact",
]

_REDACTED = "***"


def redact(text: str, secrets: Iterable[str | None]) -> str:
    """``text`` with every non-empty secret in ``secrets`` replaced by ``***``."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, _REDACTED)
    return text


class IonError(AirflowException):
    """Base class of every error the ION provider raises.

    Example::

        try:
            hook.execute("Ping")
        except IonError as err:
            log.error("ION is not usable: %s", err)
    """

    #: ION's HTTP status, on the errors that came from an HTTP answer (else None). It shadows
    #: ``AirflowException.status_code``, which Airflow's API server reads for its own errors only.
    status_code: int | None  # type: ignore[assignment]

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r})"


class IonConfigError(IonError):
    """The Airflow connection is missing a piece or holds a value the hook cannot use.

    The message names the connection id and the field to set.
    """


class IonAuthError(IonError):
    """ION (or its token endpoint) refused the credentials: HTTP 401/403 or an OAuth error.

    The message names the connection, the URL that refused and what to check; never the secret.
    """

    def __init__(
        self,
        message: str,
        *,
        conn_id: str | None = None,
        status_code: int | None = None,
        url: str | None = None,
    ) -> None:
        super().__init__(message)
        self.conn_id = conn_id
        self.status_code = status_code
        self.url = url


class IonGraphQLError(IonError):
    """ION answered with GraphQL ``errors`` (usually HTTP 200).

    ``errors`` keeps ION's list as sent (``message``, ``path``, ``extensions``); ``str`` shows the first
    message with its path, which is what a task log needs::

        try:
            hook.execute("GetWebhookReceiver", {"id": "12"})
        except IonGraphQLError as err:
            codes = [e.get("extensions", {}).get("code") for e in err.errors]
    """

    def __init__(
        self,
        message: str,
        errors: Sequence[Mapping[str, Any]] | None = None,
        *,
        operation_name: str | None = None,
        status_code: int | None = None,
        data: Any = None,
    ) -> None:
        self.errors: list[dict[str, Any]] = [dict(e) for e in errors or []]
        self.operation_name = operation_name
        self.status_code = status_code
        self.data = data
        super().__init__(message)

    @property
    def codes(self) -> list[str]:
        """``extensions.code`` of every error that has one."""
        return [str(c) for e in self.errors if (c := (e.get("extensions") or {}).get("code"))]

    @classmethod
    def describe(cls, errors: Sequence[Mapping[str, Any]], operation_name: str | None) -> str:
        """The one-line summary used as message: operation, first error, its path, how many more."""
        if not errors:
            return f"{operation_name or 'GraphQL operation'} failed"
        first = errors[0]
        text = f"{operation_name or 'GraphQL operation'} failed: {first.get('message', 'unknown error')}"
        if first.get("path"):
            text += f" (path: {'.'.join(str(p) for p in first['path'])})"
        code = (first.get("extensions") or {}).get("code")
        if code:
            text += f" [{code}]"
        if len(errors) > 1:
            text += f" (+{len(errors) - 1} more error{'s' if len(errors) > 2 else ''})"
        return text


class IonNotFoundError(IonGraphQLError):
    """ION said the object does not exist (``extensions.code == "NOT_FOUND"``)."""


class IonConcurrencyError(IonGraphQLError):
    """An update carried a stale ``etag``: someone changed the object since it was read.

    HTTP 409 or ``extensions.code == "CONCURRENCY_CONFLICT"``. Re-read the object (for its new
    ``_etag``), re-apply the change and try again. ``object_id`` is the id of the object when known.
    """

    def __init__(
        self,
        message: str,
        errors: Sequence[Mapping[str, Any]] | None = None,
        *,
        object_id: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(message, errors, **kwargs)
        self.object_id = object_id


class IonTransportError(IonError):
    """The HTTP exchange with ION failed: an unexpected status, a connection or timeout error.

    ``may_have_executed`` is True when a *mutation* may have reached ION before the failure (5xx,
    read timeout, dropped connection): the hook does not retry those, so the caller must re-read
    ION's state and reconcile instead of blindly repeating a create.
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        operation_name: str | None = None,
        attempts: int = 1,
        may_have_executed: bool = False,
        url: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.operation_name = operation_name
        self.attempts = attempts
        self.may_have_executed = may_have_executed
        self.url = url


class IonRetryExhausted(IonTransportError):
    """Every allowed attempt failed with a retryable outcome (429, 502/503/504, connect error, timeout)."""


class IonPaginationError(IonError):
    """A Relay connection misbehaved (same cursor twice, ``hasNextPage`` without ``endCursor``)."""


class IonWebhookStateError(IonError):
    """ION's webhook state does not allow the requested change.

    For example two receivers share a name, the object to update does not exist, or a receiver is
    reused with a ``shared_secret`` that differs from the one ION holds::

        try:
            ensure_receiver(hook, name="factory", webhook_uri=uri)
        except IonWebhookStateError as err:
            log.error("cannot apply the desired webhooks: %s", err)
    """


class IonSchemaError(IonError):
    """ION's live schema lacks something a document needs (a field, an argument, an input field).

    Raised before the document is sent, so a tenant whose schema differs fails at the first call with
    the document, the type, the missing name and the closest names the live schema has.

    Example::

        IonSchemaError("ListWebhookReceivers", "WebhookReceiver", "webhookUri", ["webhookUrl", "uri"])
    """

    def __init__(
        self,
        document: str,
        type_name: str,
        field: str,
        closest: Sequence[str] = (),
        *,
        what: str = "field",
        hint: str | None = None,
    ) -> None:
        near = f"; closest names there: {', '.join(closest)}" if closest else "; nothing similar there"
        message = f"GraphQL document {document}: ION's live schema has no {what} {type_name}.{field}{near}. " + (
            hint or "Run `airflow-ion doctor` to compare every document with this tenant's schema."
        )
        super().__init__(message)
        self.document = document
        self.type_name = type_name
        self.field = field
        self.closest = list(closest)
