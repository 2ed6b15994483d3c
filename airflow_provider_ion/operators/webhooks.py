"""Operators that manage ION webhook receivers and subscriptions.

Every operator here is safe to retry: it applies desired state through
:mod:`airflow_provider_ion.webhook_state`, which reads ION's state first and changes only what differs
(see there for the rules, including the shared-secret rule).

A receiver's shared secret never reaches XCom, logs or rendered fields: it is registered with
Airflow's secret masker the moment it is read, removed from every returned object, and stored in the
Airflow Variable ``ion_webhook_secret_<receiver name>``, where the receiver app looks for it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

from airflow_provider_ion.exceptions import IonWebhookStateError
from airflow_provider_ion.masking import mask, mask_in
from airflow_provider_ion.operators.base import IonBaseOperator
from airflow_provider_ion.webhook_state import (
    IfExists,
    SubscriptionSpec,
    ensure_receiver,
    ensure_subscription,
    ensure_webhooks,
    find_receiver,
    find_subscriptions,
    parse_subscriptions,
    set_receiver_active,
    set_subscription_active,
    store_receiver_secret,
    without_secret,
)

if TYPE_CHECKING:
    from airflow.sdk import Context

__all__ = [
    "IonCreateWebhookReceiverOperator",
    "IonCreateWebhookSubscriptionOperator",
    "IonDisableWebhookReceiverOperator",
    "IonDisableWebhookSubscriptionOperator",
    "IonEnableWebhookReceiverOperator",
    "IonEnableWebhookSubscriptionOperator",
    "IonEnsureWebhooksOperator",
    "IonGraphQLOperator",
]


# --------------------------------------------------------------------------------------------------
# Operators
# --------------------------------------------------------------------------------------------------
class IonCreateWebhookReceiverOperator(IonBaseOperator):
    """Create an ION webhook receiver, or reuse/update the one that already has this name.

    Safe to retry: the receiver is looked up by name before it is created, so a retried task creates
    no twin. The returned receiver (XCom) has no ``sharedSecret``; the secret (yours, or the one ION
    generated) is stored in the Airflow Variable ``ion_webhook_secret_<name>`` for the receiver app.

    Example::

        IonCreateWebhookReceiverOperator(
            task_id="create_receiver",
            name="airflow-factory-events",
            webhook_uri="https://airflow.example.com/ion-webhooks/v1/receivers/airflow-factory-events",
            if_exists="update",
        )

    :param if_exists: ``reuse`` (default; re-enables it if disabled, keeps ION's secret), ``update`` (also
        align URI, description, content type, expected code and, when given, the secret) or ``fail``.
    :param shared_secret: your secret (template it from a Variable); ION generates one when omitted.
        With ``reuse`` and an existing receiver it must equal ION's secret, else the task fails
        (rotate with ``if_exists="update"``, or drop it to keep and store ION's).
    :param store_secret: store the secret in the Airflow Variable (default True).
    """

    template_fields: Sequence[str] = ("name", "webhook_uri", "description", "headers", "shared_secret")
    ui_color = "#d6eaf8"

    def __init__(
        self,
        *,
        name: str,
        webhook_uri: str,
        description: str | None = None,
        content_type: str | None = "application/json",
        expected_response_code: int | None = 200,
        headers: Mapping[str, str] | Sequence[Mapping[str, str]] | None = None,
        shared_secret: str | None = None,
        if_exists: IfExists = "reuse",
        store_secret: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if if_exists not in ("reuse", "update", "fail"):
            raise ValueError(f"if_exists must be 'reuse', 'update' or 'fail', got {if_exists!r}")
        self.name = name
        self.webhook_uri = webhook_uri
        self.description = description
        self.content_type = content_type
        self.expected_response_code = expected_response_code
        self.headers = headers
        self.shared_secret = shared_secret
        self.if_exists = if_exists
        self.store_secret = store_secret

    def render_template_fields(self, context: Context, jinja_env: Any = None) -> None:
        super().render_template_fields(context, jinja_env)
        # Rendered fields are stored after rendering: mask the secret before that happens.
        mask(self.shared_secret)

    def execute(self, context: Context) -> dict[str, Any]:
        outcome = ensure_receiver(
            self.hook, name=self.name, webhook_uri=self.webhook_uri, description=self.description,
            content_type=self.content_type, expected_response_code=self.expected_response_code,
            headers=self.headers, shared_secret=self.shared_secret, if_exists=self.if_exists,
        )  # fmt: skip
        receiver = outcome.obj
        self.log.info("ION receiver %r (id %s): %s", receiver.get("name"), receiver.get("id"), outcome.change)
        if self.store_secret:
            key = store_receiver_secret(self.hook, receiver, outcome.secret)
            if key:
                self.log.info("The receiver's shared secret is in Airflow Variable %r", key)
        return receiver


class IonCreateWebhookSubscriptionOperator(IonBaseOperator):
    """Subscribe an ION receiver to a (resource, action); reuse (and re-enable) an identical one.

    ``resource`` and ``action`` are checked against ION's schema enums by introspection when the
    server allows it (an unknown value fails listing the valid ones), never against a frozen list.

    Example::

        IonCreateWebhookSubscriptionOperator(
            task_id="subscribe_runs_created",
            receiver="airflow-factory-events",     # a name, an id, or the receiver dict from XCom
            resource="RUNS",
            action="CREATE",
        )
    """

    template_fields: Sequence[str] = ("receiver", "resource", "action")
    ui_color = "#d6eaf8"

    def __init__(
        self,
        *,
        receiver: str | int | Mapping[str, Any],
        resource: str,
        action: str,
        if_exists: Literal["reuse", "fail"] = "reuse",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.receiver = receiver
        self.resource = resource
        self.action = action
        self.if_exists = if_exists

    def execute(self, context: Context) -> dict[str, Any]:
        found = find_receiver(self.hook, self.receiver)
        if found is None:
            raise IonWebhookStateError(f"ION receiver {self.receiver!r} does not exist; create it first")
        outcome = ensure_subscription(self.hook, found["id"], self.resource, self.action, if_exists=self.if_exists)
        self.log.info(
            "ION subscription %s/%s on receiver %r (id %s): %s",
            self.resource, self.action, found["name"], outcome.obj.get("id"), outcome.change,
        )  # fmt: skip
        return outcome.obj


class _SetReceiverActiveOperator(IonBaseOperator):
    active: bool
    template_fields: Sequence[str] = ("receiver",)
    ui_color = "#fdebd0"

    def __init__(
        self,
        *,
        receiver: str | int | Mapping[str, Any],
        max_conflict_retries: int = 3,
        missing_ok: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.receiver = receiver
        self.max_conflict_retries = max_conflict_retries
        self.missing_ok = missing_ok

    def execute(self, context: Context) -> dict[str, Any] | None:
        if self.missing_ok and find_receiver(self.hook, self.receiver) is None:
            self.log.info("ION receiver %r does not exist; nothing to change (missing_ok)", self.receiver)
            return None
        outcome = set_receiver_active(self.hook, self.receiver, self.active, attempts=self.max_conflict_retries)
        self.log.info("ION receiver %r (id %s): %s", outcome.obj.get("name"), outcome.obj.get("id"), outcome.change)
        return {**outcome.obj, "change": outcome.change}


class IonDisableWebhookReceiverOperator(_SetReceiverActiveOperator):
    """Disable an ION receiver (by name, id, or the dict from XCom); a no-op when already disabled.

    Example::

        IonDisableWebhookReceiverOperator(task_id="pause_receiver", receiver="airflow-factory-events")
    """

    active = False


class IonEnableWebhookReceiverOperator(_SetReceiverActiveOperator):
    """Re-enable an ION receiver; a no-op when already active.

    Example::

        IonEnableWebhookReceiverOperator(task_id="resume_receiver", receiver="airflow-factory-events")
    """

    active = True


class _SetSubscriptionActiveOperator(IonBaseOperator):
    active: bool
    template_fields: Sequence[str] = ("subscription_id", "receiver", "resource", "action")
    ui_color = "#fdebd0"

    def __init__(
        self,
        *,
        subscription_id: str | int | None = None,
        receiver: str | int | Mapping[str, Any] | None = None,
        resource: str | None = None,
        action: str | None = None,
        max_conflict_retries: int = 3,
        missing_ok: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if subscription_id is None and not (receiver and resource and action):
            raise ValueError("give subscription_id, or receiver + resource + action")
        self.subscription_id = subscription_id
        self.receiver = receiver
        self.resource = resource
        self.action = action
        self.max_conflict_retries = max_conflict_retries
        self.missing_ok = missing_ok

    def execute(self, context: Context) -> list[dict[str, Any]]:
        if self.subscription_id not in (None, ""):
            ids = [self.subscription_id]
        else:
            # __init__ made sure receiver, resource and action are all given on this path.
            found = find_receiver(self.hook, self.receiver or "")
            resource, action = str(self.resource), str(self.action)
            ids = [s["id"] for s in find_subscriptions(self.hook, found["id"], resource, action)] if found else []
            if not ids:
                what = (
                    f"ION receiver {found['name']!r} has no {self.resource}/{self.action} subscription"
                    if found
                    else f"ION receiver {self.receiver!r} does not exist"
                )
                if not self.missing_ok:
                    raise IonWebhookStateError(what + " (missing_ok=True makes this a no-op)")
                self.log.info("%s; nothing to change (missing_ok)", what)
                return []
        results = []
        for sid in ids:
            outcome = set_subscription_active(self.hook, sid, self.active, attempts=self.max_conflict_retries)
            self.log.info("ION subscription %s: %s", sid, outcome.change)
            results.append({**outcome.obj, "change": outcome.change})
        return results


class IonDisableWebhookSubscriptionOperator(_SetSubscriptionActiveOperator):
    """Disable ION subscriptions: one by id, or every (receiver, resource, action) match.

    Example::

        IonDisableWebhookSubscriptionOperator(
            task_id="stop_runs_created", receiver="airflow-factory-events", resource="RUNS", action="CREATE"
        )
    """

    active = False


class IonEnableWebhookSubscriptionOperator(_SetSubscriptionActiveOperator):
    """Re-enable ION subscriptions: one by id, or every (receiver, resource, action) match.

    Example::

        IonEnableWebhookSubscriptionOperator(task_id="resume_subscription", subscription_id=42)
    """

    active = True


class IonEnsureWebhooksOperator(IonBaseOperator):
    """Declare the webhooks a pipeline depends on; create what is missing, re-enable what is disabled.

    With ``prune=True`` it also disables the receiver's active subscriptions that are not listed.
    Returns (XCom) a summary: ``created``, ``enabled``, ``disabled``, ``unchanged`` and the receiver.

    Example::

        IonEnsureWebhooksOperator(
            task_id="ensure_webhooks",
            receiver={"name": "airflow-factory-events", "webhook_uri": "https://airflow.example.com/..."},
            subscriptions=[("RUNS", "CREATE"), ("ISSUES", "CREATE"), "PURCHASE_ORDERS/CREATE"],
            prune=True,
        )
    """

    template_fields: Sequence[str] = ("receiver", "subscriptions")
    ui_color = "#d6eaf8"

    def __init__(
        self,
        *,
        receiver: str | int | Mapping[str, Any],
        subscriptions: Sequence[SubscriptionSpec],
        prune: bool = False,
        store_secret: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.receiver = receiver
        self.subscriptions = subscriptions
        self.prune = prune
        self.store_secret = store_secret
        if not isinstance(subscriptions, str):
            parse_subscriptions(subscriptions)  # a malformed list fails when the DAG is parsed, not when it runs

    def execute(self, context: Context) -> dict[str, Any]:
        if isinstance(self.receiver, Mapping) and self.receiver.get("shared_secret"):
            mask(self.receiver["shared_secret"])
        summary = ensure_webhooks(self.hook, self.receiver, self.subscriptions, prune=self.prune)
        secret = summary.pop("_secret", None)
        name = summary["receiver"]["name"]
        if self.store_secret:
            store_receiver_secret(self.hook, summary["receiver"], secret)
        self.log.info(
            "ION webhooks for receiver %r: %d created, %d updated, %d enabled, %d disabled, %d unchanged",
            name, len(summary["created"]), len(summary["updated"]), len(summary["enabled"]),
            len(summary["disabled"]), len(summary["unchanged"]),
        )  # fmt: skip
        return summary


class IonGraphQLOperator(IonBaseOperator):
    """Run any GraphQL query or mutation against ION; the result goes to XCom.

    For what the dedicated operators do not cover. ``document`` is GraphQL text or the name of a
    document shipped in ``airflow_provider_ion/graphql``. Any ``sharedSecret`` in the result is removed
    (and masked) before it reaches XCom. Mutations are not retried on ambiguous failures (see IonHook).

    Example::

        IonGraphQLOperator(
            task_id="failed_events",
            document="ListWebhookEvents",
            variables={"first": 50, "filters": {"status": {"eq": "FAILED"}}},
        )
    """

    template_fields: Sequence[str] = ("document", "variables")
    template_fields_renderers = {"document": "graphql", "variables": "json"}
    template_ext: Sequence[str] = (".graphql", ".gql")

    def __init__(
        self,
        *,
        document: str,
        variables: Mapping[str, Any] | None = None,
        operation_name: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.document = document
        self.variables = variables
        self.operation_name = operation_name

    def execute(self, context: Context) -> Any:
        result = self.hook.execute(self.document, dict(self.variables or {}), operation_name=self.operation_name)
        mask_in(result)
        return without_secret(result)
