"""``IonHook``: ION's GraphQL API for Airflow tasks.

One hook gives DAG code authenticated, retried, paginated GraphQL plus thin typed calls for ION's
webhook objects (receivers, subscriptions, events).

The hook is synchronous only. Every production caller is synchronous: the operators, the audit and
the receiver's secret look-up (which runs in a worker thread beside Airflow's synchronous Variable and
Connection look-ups); the triggers read the local inbox, never ION. An async twin of every call was
removed in 0.2.0 rather than kept untested by real use; async code can call the hook through
``asyncio.to_thread``.

Why one module of ~600 lines: it is one class, ``IonHook``, and nearly all of it is public API (the
GraphQL core, pagination, and one thin typed call per ION webhook operation, each a few lines over
``execute``/``paginate``). The machinery is already elsewhere: tokens in ``_auth``, retries in
``_retry``, gql clients and error translation in ``_gql``, connection parsing in ``environments``.
Splitting the typed calls into a mixin would spread one small API over two files without separating
any concern.

Importing this module is cheap on purpose (DAG files import our operators at parse time): gql,
graphql-core and our own httpx plumbing are imported inside methods. Note that ``import airflow``
itself already loads httpx on Airflow 3.3; this module adds neither httpx nor gql nor graphql.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseHook

from airflow_provider_ion.exceptions import (
    IonConfigError,
    IonError,
    IonGraphQLError,
    IonNotFoundError,
    IonPaginationError,
    redact,
)
from airflow_provider_ion.graphql import total_count
from airflow_provider_ion.hooks.environments import IonConnectionSettings, settings_from_connection
from airflow_provider_ion.masking import mask

if TYPE_CHECKING:
    from gql import Client

    from airflow_provider_ion.hooks._gql import Operation
    from airflow_provider_ion.hooks._retry import RetryPolicy

__all__ = ["IonHook", "clear_token_cache"]

# snake_case argument -> ION's input field, for update_receiver(**changes)
_RECEIVER_FIELDS = {
    "name": "name",
    "description": "description",
    "webhook_uri": "webhookUri",
    "shared_secret": "sharedSecret",
    "content_type": "contentType",
    "expected_response_code": "expectedResponseCode",
    "active": "active",
    "headers": "headers",
}


def clear_token_cache() -> None:
    """Forget every cached ION access token in this process (tests, credential rotation)."""
    from airflow_provider_ion.hooks._auth import TOKENS

    TOKENS.clear()


def _headers(headers: Mapping[str, str] | Sequence[Mapping[str, str]] | None) -> list[dict[str, str]] | None:
    """ION's ``[{key, value}]`` from a dict or an already-shaped list."""
    if headers is None:
        return None
    if isinstance(headers, Mapping):
        return [{"key": str(k), "value": str(v)} for k, v in headers.items()]
    return [{"key": str(h["key"]), "value": str(h["value"])} for h in headers]


def _drop_none(values: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


def _eq_filters(**fields: Any) -> dict[str, Any] | None:
    filters = {k: {"eq": v} for k, v in fields.items() if v is not None}
    return filters or None


def _since(value: datetime | str | None) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.isoformat()


def _dig(data: Mapping[str, Any], path: str | None) -> Mapping[str, Any]:
    """The Relay connection at ``path`` (dotted) in ``data``; default: the single top-level field."""
    if path is None:
        if len(data) != 1:
            raise ValueError(f"Result has {len(data)} top-level fields ({', '.join(data)}); pass connection_path")
        path = next(iter(data))
    node: Any = data
    for part in path.split("."):
        if not isinstance(node, Mapping) or part not in node:
            raise ValueError(f"No connection at {path!r} in the result")
        node = node[part]
    if not isinstance(node, Mapping) or "edges" not in node:
        raise ValueError(f"{path!r} is not a Relay connection (no edges)")
    return node


class _Pager:
    """Cursor bookkeeping of :meth:`IonHook.paginate`: the same cursor twice is an error."""

    def __init__(self, label: str, variables: Mapping[str, Any] | None, page_size: int) -> None:
        if page_size < 1:
            raise ValueError("page_size must be >= 1")
        self.label = label
        self.variables = dict(variables or {})
        self.variables["first"] = page_size
        self.cursor: str | None = self.variables.pop("after", None)
        self.seen: set[str] = set()

    def page_variables(self) -> dict[str, Any]:
        return {**self.variables, "after": self.cursor}

    @staticmethod
    def page(data: Mapping[str, Any], path: str | None) -> tuple[list[dict[str, Any]], Mapping[str, Any]]:
        """The nodes of one page and its pageInfo."""
        connection = _dig(data, path)
        nodes = [e["node"] for e in connection.get("edges") or [] if e and e.get("node") is not None]
        return nodes, connection.get("pageInfo") or {}

    def advance(self, info: Mapping[str, Any]) -> bool:
        """Move to the next page; False at the end. Called after the page's nodes were yielded."""
        if not info.get("hasNextPage"):
            return False
        cursor = info.get("endCursor")
        if not cursor:
            raise IonPaginationError(f"{self.label}: hasNextPage is true but endCursor is empty")
        if cursor in self.seen or cursor == self.cursor:
            raise IonPaginationError(
                f"{self.label}: the server returned cursor {cursor!r} twice; stopping instead of looping"
            )
        self.seen.add(cursor)
        self.cursor = cursor
        return True


class IonHook(BaseHook):
    """Talk to ION's GraphQL API with an ``ion`` connection (OAuth2 client credentials).

    The connection: login = API key client id, password = client secret, host = API URL (optional),
    extras ``environment`` (production, staging/sandbox, gov-staging, gov/gov-production,
    aus-staging, aus/aus-production), ``auth_url`` (token endpoint; older key: ``token_url``),
    ``audience``, ``auth_scheme`` ("Bearer" or
    "raw"), ``timeout``, ``verify``, ``max_retries``, ``proxy``.

    What the hook guarantees:

    * one token per API key per process (shared cache, refreshed before expiry, one fetch for any
      number of concurrent callers); a 401 drops the token, refreshes and resends once;
    * one pooled HTTP client per hook; close it with :meth:`close` or use the hook as a context
      manager;
    * retries with exponential backoff and full jitter on 429, 502/503/504, connect errors and
      timeouts, except that **a mutation is retried only when it provably never reached ION**
      (connect error, connect/pool timeout) **or ION refused it (429)**. After a 5xx, a read
      timeout or a dropped connection ION may have executed it, so the hook raises
      ``IonTransportError(may_have_executed=True)`` and the caller re-reads and reconciles rather
      than creating a twin receiver;
    * errors as :mod:`airflow_provider_ion.exceptions`, never carrying a secret.

    Usage::

        with IonHook("ion_default") as hook:
            receiver = hook.create_receiver("qa", "https://airflow.example.com/ion/webhooks/qa")
            hook.create_subscription(receiver["id"], "RUNS", "UPDATE")
            for node in hook.paginate("ListWebhookEvents", {"filters": None}):
                ...

    :param ion_conn_id: the Airflow connection id.
    :param timeout: seconds per HTTP request; overrides the connection's extra ``timeout`` (30).
    :param max_retries: retries after the first attempt; overrides extra ``max_retries`` (5).
    :param backoff_base: first backoff ceiling in seconds (0.5); doubles per retry.
    :param backoff_cap: largest backoff and largest honoured ``Retry-After`` in seconds (30).
    """

    conn_name_attr = "ion_conn_id"
    default_conn_name = "ion_default"
    conn_type = "ion"
    hook_name = "ION"

    def __init__(
        self,
        ion_conn_id: str = default_conn_name,
        *,
        timeout: float | None = None,
        max_retries: int | None = None,
        backoff_base: float = 0.5,
        backoff_cap: float = 30.0,
        logger_name: str | None = None,
    ) -> None:
        super().__init__(logger_name=logger_name)
        self.ion_conn_id = ion_conn_id
        self._timeout = timeout
        self._max_retries = max_retries
        self._backoff_base = backoff_base
        self._backoff_cap = backoff_cap
        self._settings: IonConnectionSettings | None = None
        self._lock = threading.Lock()
        self._sync_client: Client | None = None
        self._sync_session: Any = None
        #: GraphQL operations this hook has sent (one per :meth:`execute` call, retries inside it
        #: included); e.g. the audit reports how many requests it cost.
        self.operations_sent = 0
        self._enums: dict[str, list[str] | None] = {}

    # --- connection -------------------------------------------------------------------------------

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        """Form layout for the connection UI (also declared as data in get_provider_info)."""
        return {
            "hidden_fields": ["schema", "port", "extra"],
            "relabeling": {"login": "Client ID", "password": "Client secret", "host": "API URL"},
            "placeholders": {
                "host": "blank: from the environment (e.g. https://api.buildwithion.com)",
                "login": "API key client id",
            },
        }

    def _settings_from(self, conn: Any) -> IonConnectionSettings:
        return settings_from_connection(
            self.ion_conn_id,
            login=conn.login,
            password=conn.password,
            host=conn.host,
            extra=conn.extra,
            schema=conn.schema,
            port=conn.port,
            timeout=self._timeout,
            max_retries=self._max_retries,
        )

    @property
    def settings(self) -> IonConnectionSettings:
        """The validated connection (read once per hook).

        :raises IonConfigError: a missing or invalid field, naming the connection and the field.
        """
        if self._settings is None:
            self._settings = self._settings_from(self.get_connection(self.ion_conn_id))
        return self._settings

    @property
    def api_url(self) -> str:
        return self.settings.api_url

    @property
    def graphql_url(self) -> str:
        return self.settings.graphql_url

    @property
    def token_url(self) -> str:
        return self.settings.token_url

    @cached_property
    def retry_policy(self) -> RetryPolicy:
        from airflow_provider_ion.hooks._retry import RetryPolicy

        return RetryPolicy(
            max_retries=self.settings.max_retries,
            backoff_base=self._backoff_base,
            backoff_cap=self._backoff_cap,
        )

    # --- clients ---------------------------------------------------------------------------------

    def get_conn(self) -> Any:
        """The open sync gql session (``session.execute(GraphQLRequest)``); prefer :meth:`execute`."""
        return self._session()

    def _session(self) -> Any:
        with self._lock:
            if self._sync_session is None:
                from airflow_provider_ion.hooks import _gql

                client = _gql.sync_client(self.settings, self.retry_policy, self.log)
                self._sync_session = client.connect_sync()
                self._sync_client = client
            return self._sync_session

    def close(self) -> None:
        """Close the HTTP pool (a later call opens a new one)."""
        with self._lock:
            client, self._sync_client, self._sync_session = self._sync_client, None, None
        if client is not None:
            client.close_sync()

    def __enter__(self) -> IonHook:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- GraphQL ---------------------------------------------------------------------------------

    @staticmethod
    def _operation(document: str, operation_name: str | None) -> Operation:
        from airflow_provider_ion.hooks import _gql

        return _gql.operation(document, operation_name)

    def execute(
        self,
        document: str,
        variables: Mapping[str, Any] | None = None,
        *,
        operation_name: str | None = None,
    ) -> dict[str, Any]:
        """Run one GraphQL operation and return its ``data``.

        :param document: a document name from ``airflow_provider_ion/graphql`` (``"ListWebhookReceivers"``)
            or GraphQL text. Parsed once per process.
        :param variables: the operation's variables (never logged).
        :param operation_name: which operation of a multi-operation document to run.
        :raises IonGraphQLError: ION answered with ``errors`` (subclasses: not found, concurrency).
        :raises IonAuthError: credentials refused (token endpoint, or 401 after one refresh, or 403).
        :raises IonTransportError: HTTP failure; ``IonRetryExhausted`` when retries ran out.
        """
        from airflow_provider_ion.hooks import _gql, schema

        op, variables = schema.prepare(self, document, variables, operation_name)
        session = self._session()
        args, kwargs = _gql.call_args(op, variables)
        self.operations_sent += 1
        try:
            return session.execute(*args, **kwargs)
        except Exception as exc:
            raise self._translate(exc, op, variables) from None

    def _translate(self, exc: Exception, op: Operation, variables: Mapping[str, Any] | None) -> BaseException:
        from airflow_provider_ion.hooks import _gql

        translated = _gql.translate(exc, op=op, variables=variables, settings=self.settings)
        if translated is exc:  # not ours to translate: keep it, but never with a secret in the text
            return IonError(
                redact(f"{op.label} failed: {type(exc).__name__}: {exc}",
                       [self.settings.client_secret, *_gql.secrets_in(variables)])
            )  # fmt: skip
        return translated

    # --- pagination ------------------------------------------------------------------------------

    def paginate(
        self,
        document: str,
        variables: Mapping[str, Any] | None = None,
        *,
        connection_path: str | None = None,
        page_size: int = 100,
    ) -> Iterator[dict[str, Any]]:
        """Yield every node of a Relay connection, page by page (``first``/``after``).

        :param connection_path: dotted path of the connection in ``data``; default: the only
            top-level field.
        :raises IonPaginationError: the server repeated a cursor (instead of looping forever).
        """
        pager = _Pager(self._operation(document, None).label, variables, page_size)
        while True:
            nodes, info = pager.page(self.execute(document, pager.page_variables()), connection_path)
            yield from nodes
            if not pager.advance(info):
                return

    # --- receivers -------------------------------------------------------------------------------

    def list_receivers(self, filters: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        """Every webhook receiver (optionally ION-style ``filters``, e.g. ``{"active": {"eq": True}}``)."""
        return list(self.paginate("ListWebhookReceivers", {"filters": filters}))

    def find_receivers_by_name(self, name: str) -> list[dict[str, Any]]:
        """Receivers whose name is exactly ``name`` (ION does not enforce unique names)."""
        return self.list_receivers({"name": {"eq": name}})

    @staticmethod
    def _node(data: Mapping[str, Any], field: str) -> dict[str, Any] | None:
        return data.get(field)

    def get_receiver(self, receiver_id: str | int) -> dict[str, Any] | None:
        """The receiver (without its secret), or None if it does not exist."""
        try:
            return self._node(self.execute("GetWebhookReceiver", {"id": str(receiver_id)}), "webhookReceiver")
        except IonNotFoundError:
            return None

    def get_receiver_secret(self, receiver_id: str | int) -> str | None:
        """The receiver's shared secret, registered with Airflow's secrets masker before returning.

        Don't return it from a task (XCom) or template it; pass it straight to what signs/verifies.
        """
        try:
            data = self.execute("GetWebhookReceiverSecret", {"id": str(receiver_id)})
        except IonNotFoundError:
            return None
        secret = (data.get("webhookReceiver") or {}).get("sharedSecret")
        mask(secret)
        return secret

    @staticmethod
    def _receiver_input(
        name: str,
        webhook_uri: str,
        description: str | None,
        shared_secret: str | None,
        content_type: str | None,
        expected_response_code: int | None,
        active: bool | None,
        headers: Mapping[str, str] | Sequence[Mapping[str, str]] | None,
    ) -> dict[str, Any]:
        mask(shared_secret)
        return _drop_none(
            {
                "name": name,
                "webhookUri": webhook_uri,
                "description": description,
                "sharedSecret": shared_secret,
                "contentType": content_type,
                "expectedResponseCode": expected_response_code,
                "active": active,
                "headers": _headers(headers),
            }
        )

    @staticmethod
    def _created_receiver(data: Mapping[str, Any]) -> dict[str, Any]:
        receiver = data["createWebhookReceiver"]["webhookReceiver"]
        mask(receiver.get("sharedSecret"))
        return receiver

    def create_receiver(
        self,
        name: str,
        webhook_uri: str,
        *,
        description: str | None = None,
        shared_secret: str | None = None,
        content_type: str | None = None,
        expected_response_code: int | None = None,
        active: bool | None = None,
        headers: Mapping[str, str] | Sequence[Mapping[str, str]] | None = None,
    ) -> dict[str, Any]:
        """Create a receiver; the returned dict holds ``sharedSecret`` (already masked in logs).

        Not retried after a 5xx/timeout/dropped connection (ION may have created it): on
        ``IonTransportError(may_have_executed=True)`` look it up by name before creating again.
        """
        variables = {
            "input": self._receiver_input(
                name, webhook_uri, description, shared_secret, content_type, expected_response_code,
                active, headers,
            )
        }  # fmt: skip
        from airflow_provider_ion.hooks import schema

        # ``headers`` as the tenant's header mutations take them (None: already in the input).
        variables, separate_headers = schema.split_headers(self, "CreateWebhookReceiver", variables)
        created = self._created_receiver(self.execute("CreateWebhookReceiver", variables))
        return schema.apply_headers(self, created, separate_headers)

    @staticmethod
    def _receiver_update(receiver_id: str | int, etag: str, changes: Mapping[str, Any]) -> dict[str, Any]:
        camel = set(_RECEIVER_FIELDS.values())
        update: dict[str, Any] = {"id": str(receiver_id), "etag": etag}
        for key, value in changes.items():
            field = _RECEIVER_FIELDS.get(key) or (key if key in camel else None)
            if field is None:
                raise TypeError(f"update_receiver() got an unknown field {key!r}; known: {', '.join(_RECEIVER_FIELDS)}")
            update[field] = _headers(value) if field == "headers" else value
        mask(update.get("sharedSecret"))
        return {"input": update}

    def update_receiver(self, receiver_id: str | int, etag: str, **changes: Any) -> dict[str, Any]:
        """Change fields of a receiver read with ``_etag`` ``etag`` (snake_case or ION's names).

        :raises IonConcurrencyError: the etag is stale; re-read and re-apply.
        """
        from airflow_provider_ion.hooks import schema

        variables = self._receiver_update(receiver_id, etag, changes)
        variables, headers = schema.split_headers(self, "UpdateWebhookReceiver", variables)
        data = self.execute("UpdateWebhookReceiver", variables)
        return schema.apply_headers(self, data["updateWebhookReceiver"]["webhookReceiver"], headers)

    # --- subscriptions ---------------------------------------------------------------------------

    @staticmethod
    def _subscription_filters(
        receiver_id: str | int | None, resource: str | None, action: str | None, active: bool | None
    ) -> dict[str, Any]:
        return {
            "filters": _eq_filters(
                receiverId=str(receiver_id) if receiver_id is not None else None,
                resource=resource,
                action=action,
                active=active,
            )
        }

    def list_subscriptions(
        self,
        receiver_id: str | int | None = None,
        *,
        resource: str | None = None,
        action: str | None = None,
        active: bool | None = None,
    ) -> list[dict[str, Any]]:
        """Subscriptions, optionally of one receiver and/or one resource, action, state."""
        variables = self._subscription_filters(receiver_id, resource, action, active)
        return list(self.paginate("ListWebhookSubscriptions", variables))

    def get_subscription(self, subscription_id: str | int) -> dict[str, Any] | None:
        try:
            data = self.execute("GetWebhookSubscription", {"id": str(subscription_id)})
        except IonNotFoundError:
            return None
        return self._node(data, "webhookSubscription")

    @staticmethod
    def _subscription_input(receiver_id: str | int, resource: str, action: str, active: bool | None) -> dict[str, Any]:
        return {
            "input": _drop_none(
                {"receiverId": str(receiver_id), "resource": resource, "action": action, "active": active}
            )
        }

    def create_subscription(
        self, receiver_id: str | int, resource: str, action: str, *, active: bool | None = None
    ) -> dict[str, Any]:
        """Subscribe a receiver to ``(resource, action)``, e.g. ``("RUNS", "UPDATE")``.

        ``resource`` is a plain string validated by ION, not by us (see :meth:`enum_values`).
        Same no-blind-retry rule as :meth:`create_receiver`.
        """
        variables = self._subscription_input(receiver_id, resource, action, active)
        data = self.execute("CreateWebhookSubscription", variables)
        return data["createWebhookSubscription"]["webhookSubscription"]

    def update_subscription(self, subscription_id: str | int, etag: str, *, active: bool) -> dict[str, Any]:
        """Enable or disable a subscription read with ``_etag`` ``etag``."""
        variables = {"input": {"id": str(subscription_id), "etag": etag, "active": active}}
        return self.execute("UpdateWebhookSubscription", variables)["updateWebhookSubscription"]["webhookSubscription"]

    # --- events ----------------------------------------------------------------------------------

    @staticmethod
    def _event_filters(
        receiver_id: str | int | None,
        subscription_id: str | int | None,
        status: str | None,
        since: datetime | str | None,
    ) -> dict[str, Any]:
        filters = (
            _eq_filters(
                receiverId=str(receiver_id) if receiver_id is not None else None,
                subscriptionId=str(subscription_id) if subscription_id is not None else None,
                status=status,
            )
            or {}
        )
        if since is not None:
            filters["createdAt"] = {"gte": _since(since)}
        return {"filters": filters or None}

    def iter_events(
        self,
        *,
        receiver_id: str | int | None = None,
        subscription_id: str | int | None = None,
        status: str | None = None,
        since: datetime | str | None = None,
    ) -> Iterator[dict[str, Any]]:
        """ION's webhook audit trail, lazily page by page (it can be long)."""
        return self.paginate("ListWebhookEvents", self._event_filters(receiver_id, subscription_id, status, since))

    def list_events(
        self,
        *,
        receiver_id: str | int | None = None,
        subscription_id: str | int | None = None,
        status: str | None = None,
        since: datetime | str | None = None,
    ) -> list[dict[str, Any]]:
        """:meth:`iter_events` as a list."""
        return list(
            self.iter_events(receiver_id=receiver_id, subscription_id=subscription_id, status=status, since=since)
        )

    def get_event(self, event_id: str | int) -> dict[str, Any] | None:
        try:
            return self._node(self.execute("GetWebhookEvent", {"id": str(event_id)}), "webhookEvent")
        except IonNotFoundError:
            return None

    # --- schema ----------------------------------------------------------------------------------

    @staticmethod
    def _enum_names(data: Mapping[str, Any]) -> list[str] | None:
        type_ = data.get("__type")
        if not type_ or type_.get("enumValues") is None:
            return None
        return [v["name"] for v in type_["enumValues"]]

    def enum_values(self, type_name: str) -> list[str] | None:
        """Values of ION's enum ``type_name`` (e.g. ``"ResourceEnum"``) by introspection, cached per
        hook; None when introspection is disabled or the type is not an enum. Lets callers validate
        resource/action strings against the live server instead of a list frozen in our code."""
        if type_name not in self._enums:
            try:
                self._enums[type_name] = self._enum_names(self.execute("EnumValues", {"name": type_name}))
            except IonGraphQLError:
                self._enums[type_name] = None
        return self._enums[type_name]

    # --- UI --------------------------------------------------------------------------------------

    def test_connection(self) -> tuple[bool, str]:
        """For the UI's Test button: the fast part of ``airflow-ion doctor`` (token, introspection,
        every document against the live schema), then the Ping query. Reports the first problem;
        never shows the secret."""
        secret: str | None = None
        try:
            from airflow_provider_ion.hooks.doctor import fast_checks

            settings = self.settings
            secret = settings.client_secret
            failed = [c for c in fast_checks(self) if c.status == "fail"]
            if failed:
                first = failed[0]
                return False, redact(
                    f"{first.name}: {first.detail}" + (f" ({first.fix})" if first.fix else ""), [secret]
                )
            data = self.execute("Ping")
            count = total_count(data.get("webhookReceivers"))
            return True, (
                f"Connected to ION: token from {settings.token_url} for client '{settings.client_id}', "
                f"Ping on {settings.graphql_url} answered ({count} webhook receivers visible)."
            )
        except (IonError, IonConfigError) as exc:
            return False, redact(str(exc), [secret])
        except Exception as exc:
            return False, redact(f"{type(exc).__name__}: {exc}", [secret])
        finally:
            self.close()
