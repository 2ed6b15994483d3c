"""Operators that manage ION webhook receivers and subscriptions.

Every operator here is safe to retry: it reads ION's state first and changes only what differs, so a
task retried after a timeout never creates a twin receiver or subscription. Updates carry the
object's ``_etag``; when someone else changed the object in between (a concurrency conflict), the
operator re-reads and tries again, a bounded number of times.

A receiver's shared secret never reaches XCom, logs or rendered fields: it is registered with
Airflow's secret masker the moment it is read, removed from every returned object, and stored in the
Airflow Variable ``ion_webhook_secret_<receiver name>``, where the receiver app looks for it.

The reconciling logic lives in plain functions (:func:`ensure_receiver`, :func:`ensure_subscription`,
:func:`set_receiver_active`, ...) that take an :class:`~airflow_provider_ion.hooks.ion.IonHook`, so the
subscription audit applies the same desired state the same way.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any, Literal, TypeVar
from urllib.parse import urlsplit

from airflow.sdk import BaseOperator

from airflow_provider_ion.exceptions import IonConcurrencyError, IonError, IonTransportError
from airflow_provider_ion.resources import canonical_resource

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_provider_ion.hooks.ion import IonHook

IfExists = Literal["reuse", "update", "fail"]
T = TypeVar("T")

SECRET_FIELD = "sharedSecret"
DEFAULT_CONFLICT_RETRIES = 3
_RECEIVER_FIELDS = {
    "webhook_uri": "webhookUri",
    "description": "description",
    "content_type": "contentType",
    "expected_response_code": "expectedResponseCode",
}


class IonWebhookStateError(IonError):
    """ION's webhook state does not allow the requested change (e.g. two receivers share a name)."""


# --------------------------------------------------------------------------------------------------
# Pure helpers
# --------------------------------------------------------------------------------------------------
def without_secret(obj: Any) -> Any:
    """A copy of ``obj`` (dicts and lists, recursively) with every ``sharedSecret`` removed."""
    if isinstance(obj, Mapping):
        return {k: without_secret(v) for k, v in obj.items() if k != SECRET_FIELD}
    if isinstance(obj, list):
        return [without_secret(v) for v in obj]
    return obj


def check_webhook_uri(uri: str) -> str:
    """ION requires HTTPS; plain HTTP is allowed only to a loopback host (the emulator, local tests).

    :raises ValueError: naming the URI's problem and what to do.
    """
    parts = urlsplit(uri or "")
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ValueError(f"webhook_uri {uri!r} is not an http(s) URL; give e.g. https://airflow.example.com/...")
    if parts.scheme == "http" and not _is_loopback(parts.hostname):
        raise ValueError(
            f"webhook_uri {uri!r} uses plain HTTP; ION delivers webhooks over HTTPS only "
            "(plain HTTP is accepted for loopback hosts such as 127.0.0.1 or localhost, for tests)"
        )
    return uri


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def secret_variable_key(receiver_name: str) -> str:
    """Where the provider stores a receiver's secret (the receiver app reads the same key)."""
    from airflow_provider_ion.webhooks.secrets import variable_name

    return variable_name(receiver_name)


def mask(secret: str | None) -> None:
    """Register ``secret`` with Airflow's secret masker (task logs, rendered fields)."""
    if secret:
        from airflow.sdk.log import mask_secret

        mask_secret(secret)


def with_fresh_etag(
    read: Callable[[], Mapping[str, Any] | None],
    write: Callable[[Mapping[str, Any]], T],
    *,
    label: str,
    attempts: int = DEFAULT_CONFLICT_RETRIES,
) -> T:
    """Read the object, ``write(obj)`` with its current ``_etag``; on a conflict read again and retry.

    :raises IonWebhookStateError: the object does not exist.
    :raises IonConcurrencyError: still conflicting after ``attempts`` tries (names the object).
    """
    last: IonConcurrencyError | None = None
    for _ in range(max(1, attempts)):
        current = read()
        if current is None:
            raise IonWebhookStateError(f"{label} does not exist in ION")
        try:
            return write(current)
        except IonConcurrencyError as conflict:
            last = conflict
    raise IonConcurrencyError(
        f"{label} kept changing while it was updated ({attempts} attempts, each with a fresh _etag); "
        "something else is writing to it: retry later or find the other writer",
        last.errors if last else None,
        object_id=last.object_id if last else None,
    )


# --------------------------------------------------------------------------------------------------
# Reconciling functions (shared by the operators and the audit)
# --------------------------------------------------------------------------------------------------
@dataclass
class Outcome:
    """What a reconciling call did: the object (without its secret) and the change it made."""

    obj: dict[str, Any]
    change: Literal["created", "updated", "enabled", "disabled", "unchanged"]
    secret: str | None = field(default=None, repr=False)


def find_receiver(hook: IonHook, receiver: str | int | Mapping[str, Any]) -> dict[str, Any] | None:
    """A receiver by id (int, digit string, or a dict with ``id``) or by name; None when absent.

    A digit string is tried as an id first, then as a name (templated ids render as strings).

    :raises IonWebhookStateError: several receivers share the name.
    """
    if isinstance(receiver, Mapping):
        receiver = receiver.get("id") or receiver.get("name") or ""
    if isinstance(receiver, int) or (isinstance(receiver, str) and receiver.strip().isdigit()):
        found = hook.get_receiver(str(receiver).strip())
        if found is not None or isinstance(receiver, int):
            return found
    matches = hook.find_receivers_by_name(str(receiver))
    if len(matches) > 1:
        ids = ", ".join(str(m["id"]) for m in matches)
        raise IonWebhookStateError(
            f"{len(matches)} ION receivers are named {receiver!r} (ids {ids}); target one by id, "
            "or disable the extra ones"
        )
    return matches[0] if matches else None


def ensure_receiver(
    hook: IonHook,
    *,
    name: str,
    webhook_uri: str,
    description: str | None = None,
    content_type: str | None = None,
    expected_response_code: int | None = None,
    headers: Sequence[Mapping[str, str]] | Mapping[str, str] | None = None,
    shared_secret: str | None = None,
    if_exists: IfExists = "reuse",
    active: bool = True,
) -> Outcome:
    """Make sure a receiver named ``name`` exists; create it (once) or reuse/update/refuse the existing.

    Idempotent under retries: it looks the name up first, and when a create fails in a way that may
    have reached ION (5xx, timeout, dropped connection) it looks again before giving up, instead of
    creating a twin.
    """
    if if_exists not in ("reuse", "update", "fail"):
        raise ValueError(f"if_exists must be 'reuse', 'update' or 'fail', got {if_exists!r}")
    check_webhook_uri(webhook_uri)
    mask(shared_secret)
    existing = find_receiver(hook, name) if name else None
    if existing is None:
        try:
            created = hook.create_receiver(
                name, webhook_uri, description=description, shared_secret=shared_secret,
                content_type=content_type, expected_response_code=expected_response_code,
                active=active, headers=headers,
            )  # fmt: skip
        except IonTransportError as error:
            if not error.may_have_executed:
                raise
            hook.log.warning("Creating receiver %r may have reached ION (%s); reading it back", name, error)
            existing = find_receiver(hook, name)
            if existing is None:
                raise
        else:
            secret = created.get(SECRET_FIELD)
            mask(secret)
            return Outcome(without_secret(created), "created", secret)
    if if_exists == "fail":
        raise IonWebhookStateError(
            f"ION receiver {name!r} already exists (id {existing['id']}); use if_exists='reuse' or 'update'"
        )
    changes: dict[str, Any] = {}
    if if_exists == "update":
        wanted = {
            "webhook_uri": webhook_uri,
            "description": description,
            "content_type": content_type,
            "expected_response_code": expected_response_code,
        }
        changes = {k: v for k, v in wanted.items() if v is not None and existing.get(_RECEIVER_FIELDS[k]) != v}
        if shared_secret:
            changes["shared_secret"] = shared_secret
    if active and not existing.get("active"):
        changes["active"] = True
    if not changes:
        return Outcome(without_secret(existing), "unchanged")

    def write(current: Mapping[str, Any]) -> dict[str, Any]:
        return hook.update_receiver(current["id"], current["_etag"], **changes)

    updated = with_fresh_etag(lambda: hook.get_receiver(existing["id"]), write, label=_receiver_label(existing))
    change = "enabled" if set(changes) == {"active"} else "updated"
    return Outcome(without_secret(updated), change, shared_secret)


def set_receiver_active(
    hook: IonHook, receiver: str | int | Mapping[str, Any], active: bool, *, attempts: int = DEFAULT_CONFLICT_RETRIES
) -> Outcome:
    """Enable or disable a receiver; no write when it is already in that state."""
    found = find_receiver(hook, receiver)
    if found is None:
        raise IonWebhookStateError(f"ION receiver {receiver!r} does not exist")
    state = {"changed": False}

    def write(current: Mapping[str, Any]) -> dict[str, Any]:
        if bool(current.get("active")) == active:
            return dict(current)
        state["changed"] = True
        return hook.update_receiver(current["id"], current["_etag"], active=active)

    label = _receiver_label(found)
    result = with_fresh_etag(lambda: hook.get_receiver(found["id"]), write, label=label, attempts=attempts)
    change = ("enabled" if active else "disabled") if state["changed"] else "unchanged"
    return Outcome(without_secret(result), change)


def find_subscriptions(hook: IonHook, receiver_id: str, resource: str, action: str) -> list[dict[str, Any]]:
    """Every subscription of ``receiver_id`` on (resource, action), active ones first."""
    resource = validate_enum(hook, "ResourceEnum", resource, "resource")  # RUN or RUNS: the live spelling
    found = hook.list_subscriptions(receiver_id, resource=resource, action=action)
    return sorted(found, key=lambda s: (not s.get("active"), int(s["id"]) if str(s["id"]).isdigit() else 0))


def validate_enum(hook: IonHook, type_name: str, value: str, what: str) -> str:
    """``value`` as ION's schema enum ``type_name`` spells it (``RUN``/``RUNS``, any case), when
    introspection is available; ``value`` unchanged otherwise. Logs a respelling.

    Never against a list frozen in our code: ION's resource names differ between its own docs.
    """
    from airflow_provider_ion.hooks.schema import resolve_enum_value

    allowed = hook.enum_values(type_name)
    if allowed is None:
        return value
    resolved = resolve_enum_value(value, allowed)
    if resolved is None:
        raise ValueError(f"{what} {value!r} is not one ION knows; valid values: {', '.join(sorted(allowed))}")
    if resolved != value:
        hook.log.info("ION spells %s %r as %r here; using %r", what, value, resolved, resolved)
    return resolved


def ensure_subscription(
    hook: IonHook,
    receiver_id: str,
    resource: str,
    action: str,
    *,
    if_exists: Literal["reuse", "fail"] = "reuse",
    attempts: int = DEFAULT_CONFLICT_RETRIES,
    validate: bool = True,
) -> Outcome:
    """Make sure ``receiver_id`` has an active (resource, action) subscription; create or re-enable it."""
    if validate:
        resource = validate_enum(hook, "ResourceEnum", resource, "resource")
        action = validate_enum(hook, "WebhookSubscriptionActions", action, "action")
    label = f"ION subscription {resource}/{action} on receiver {receiver_id}"
    existing = find_subscriptions(hook, receiver_id, resource, action)
    if existing and if_exists == "fail":
        raise IonWebhookStateError(f"{label} already exists (id {existing[0]['id']}); use if_exists='reuse'")
    if not existing:
        try:
            return Outcome(hook.create_subscription(receiver_id, resource, action, active=True), "created")
        except IonTransportError as error:
            if not error.may_have_executed:
                raise
            hook.log.warning("Creating %s may have reached ION (%s); reading it back", label, error)
            existing = find_subscriptions(hook, receiver_id, resource, action)
            if not existing:
                raise
    chosen = existing[0]
    if chosen.get("active"):
        return Outcome(chosen, "unchanged")
    return set_subscription_active(hook, chosen["id"], True, attempts=attempts, label=label)


def set_subscription_active(
    hook: IonHook,
    subscription_id: str | int,
    active: bool,
    *,
    attempts: int = DEFAULT_CONFLICT_RETRIES,
    label: str | None = None,
) -> Outcome:
    """Enable or disable one subscription by id; no write when it is already in that state."""
    label = label or f"ION subscription {subscription_id}"
    state = {"changed": False}

    def write(current: Mapping[str, Any]) -> dict[str, Any]:
        if bool(current.get("active")) == active:
            return dict(current)
        state["changed"] = True
        return hook.update_subscription(current["id"], current["_etag"], active=active)

    result = with_fresh_etag(lambda: hook.get_subscription(subscription_id), write, label=label, attempts=attempts)
    return Outcome(result, ("enabled" if active else "disabled") if state["changed"] else "unchanged")


def _receiver_label(receiver: Mapping[str, Any]) -> str:
    return f"ION receiver {receiver.get('name')!r} (id {receiver.get('id')})"


def _pairs(subscriptions: Iterable[Sequence[str] | Mapping[str, str] | str]) -> list[tuple[str, str]]:
    """``[("RUNS", "CREATE"), {"resource": ..., "action": ...}, "ISSUES/CREATE"]`` -> pairs."""
    pairs: list[tuple[str, str]] = []
    for item in subscriptions:
        if isinstance(item, str):
            resource, sep, action = item.partition("/")
            if not sep:
                raise ValueError(f"subscription {item!r}: write it as 'RESOURCE/ACTION', e.g. 'RUNS/CREATE'")
        elif isinstance(item, Mapping):
            resource, action = item.get("resource", ""), item.get("action", "")
        else:
            resource, action = item
        if not resource or not action:
            raise ValueError(f"subscription {item!r} needs both a resource and an action")
        pair = (str(resource), str(action))
        if pair not in pairs:
            pairs.append(pair)
    return pairs


# --------------------------------------------------------------------------------------------------
# Operators
# --------------------------------------------------------------------------------------------------
class _IonBaseOperator(BaseOperator):
    """Shared by the ION operators: the connection id and a hook built on first use."""

    def __init__(self, *, ion_conn_id: str = "ion_default", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.ion_conn_id = ion_conn_id

    @cached_property
    def hook(self) -> IonHook:
        from airflow_provider_ion.hooks.ion import IonHook

        return IonHook(self.ion_conn_id)


def store_receiver_secret(hook: IonHook, receiver: Mapping[str, Any], known: str | None = None) -> str | None:
    """Keep the Airflow Variable the receiver app reads in step with the receiver's secret in ION.

    ``known`` is the secret when this task already has it (it chose it, or ION returned it on create);
    otherwise it is read from ION. The Variable is written only when it differs. Returns the Variable
    key, or None when the secret could not be had (then the receiver app asks ION itself).
    """
    from airflow.sdk import Variable

    secret = known or hook.get_receiver_secret(receiver["id"])
    if not secret:
        return None
    mask(secret)
    key = secret_variable_key(receiver["name"])
    if Variable.get(key, default=None) != secret:
        description = f"Shared secret of ION webhook receiver {receiver['name']!r} (written by airflow-provider-ion)"
        Variable.set(key, secret, description=description)
    return key


class IonCreateWebhookReceiverOperator(_IonBaseOperator):
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

    :param if_exists: ``reuse`` (default; re-enables it if disabled), ``update`` (also align URI,
        description, content type, expected code and, when given, the secret) or ``fail``.
    :param shared_secret: your secret (template it from a Variable); ION generates one when omitted.
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
            key = store_receiver_secret(self.hook, receiver, outcome.secret or self.shared_secret)
            if key:
                self.log.info("The receiver's shared secret is in Airflow Variable %r", key)
        return receiver


class IonCreateWebhookSubscriptionOperator(_IonBaseOperator):
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


class _IonSetReceiverActiveOperator(_IonBaseOperator):
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


class IonDisableWebhookReceiverOperator(_IonSetReceiverActiveOperator):
    """Disable an ION receiver (by name, id, or the dict from XCom); a no-op when already disabled.

    Example::

        IonDisableWebhookReceiverOperator(task_id="pause_receiver", receiver="airflow-factory-events")
    """

    active = False


class IonEnableWebhookReceiverOperator(_IonSetReceiverActiveOperator):
    """Re-enable an ION receiver; a no-op when already active.

    Example::

        IonEnableWebhookReceiverOperator(task_id="resume_receiver", receiver="airflow-factory-events")
    """

    active = True


class _IonSetSubscriptionActiveOperator(_IonBaseOperator):
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
            found = find_receiver(self.hook, self.receiver)  # type: ignore[arg-type]
            ids = (
                [s["id"] for s in find_subscriptions(self.hook, found["id"], self.resource, self.action)]
                if found
                else []
            )
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


class IonDisableWebhookSubscriptionOperator(_IonSetSubscriptionActiveOperator):
    """Disable ION subscriptions: one by id, or every (receiver, resource, action) match.

    Example::

        IonDisableWebhookSubscriptionOperator(
            task_id="stop_runs_created", receiver="airflow-factory-events", resource="RUNS", action="CREATE"
        )
    """

    active = False


class IonEnableWebhookSubscriptionOperator(_IonSetSubscriptionActiveOperator):
    """Re-enable ION subscriptions: one by id, or every (receiver, resource, action) match.

    Example::

        IonEnableWebhookSubscriptionOperator(task_id="resume_subscription", subscription_id=42)
    """

    active = True


def ensure_webhooks(
    hook: IonHook,
    receiver: str | int | Mapping[str, Any],
    subscriptions: Iterable[Sequence[str] | Mapping[str, str] | str],
    *,
    prune: bool = False,
) -> dict[str, Any]:
    """Apply a desired state: the receiver and exactly these active subscriptions (``prune``).

    ``receiver`` is a spec ``{"name": ..., "webhook_uri": ..., ...}`` (created when missing) or a
    name/id of an existing receiver. Returns a JSON-serialisable summary of what changed.
    """
    pairs = _pairs(subscriptions)
    summary: dict[str, Any] = {"created": [], "updated": [], "enabled": [], "disabled": [], "unchanged": []}
    secret: str | None = None
    if isinstance(receiver, Mapping) and "webhook_uri" in receiver:
        spec = dict(receiver)
        outcome = ensure_receiver(hook, **spec)
        found, secret = outcome.obj, outcome.secret
        if outcome.change != "unchanged":
            summary[outcome.change].append({"receiver": found["id"]})
    else:
        found = find_receiver(hook, receiver)
        if found is None:
            raise IonWebhookStateError(f"ION receiver {receiver!r} does not exist; give a spec with webhook_uri")
        if not found.get("active"):
            found = set_receiver_active(hook, found["id"], True).obj
            summary["enabled"].append({"receiver": found["id"]})
    for resource, action in pairs:
        outcome = ensure_subscription(hook, found["id"], resource, action)
        entry = {"subscription": outcome.obj["id"], "resource": resource, "action": action}
        summary[outcome.change].append(entry)
    if prune:
        for sub in hook.list_subscriptions(found["id"], active=True):
            if (canonical_resource(sub["resource"]), sub["action"]) not in {
                (canonical_resource(r), a) for r, a in pairs
            }:
                set_subscription_active(hook, sub["id"], False)
                summary["disabled"].append(
                    {"subscription": sub["id"], "resource": sub["resource"], "action": sub["action"]}
                )
    summary["receiver"] = without_secret(found)
    summary["_secret"] = secret
    return summary


class IonEnsureWebhooksOperator(_IonBaseOperator):
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
        subscriptions: Sequence[Sequence[str] | Mapping[str, str] | str],
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
            _pairs(subscriptions)  # a malformed list fails when the DAG is parsed, not when it runs

    def execute(self, context: Context) -> dict[str, Any]:
        if isinstance(self.receiver, Mapping) and self.receiver.get("shared_secret"):
            mask(self.receiver["shared_secret"])
        summary = ensure_webhooks(self.hook, self.receiver, self.subscriptions, prune=self.prune)
        secret = summary.pop("_secret", None) or (
            self.receiver.get("shared_secret") if isinstance(self.receiver, Mapping) else None
        )
        name = summary["receiver"]["name"]
        if self.store_secret:
            store_receiver_secret(self.hook, summary["receiver"], secret)
        self.log.info(
            "ION webhooks for receiver %r: %d created, %d updated, %d enabled, %d disabled, %d unchanged",
            name, len(summary["created"]), len(summary["updated"]), len(summary["enabled"]),
            len(summary["disabled"]), len(summary["unchanged"]),
        )  # fmt: skip
        return summary


class IonGraphQLOperator(_IonBaseOperator):
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
        _mask_secrets_in(result)
        return without_secret(result)


def _mask_secrets_in(obj: Any) -> None:
    if isinstance(obj, Mapping):
        for key, value in obj.items():
            if key == SECRET_FIELD and isinstance(value, str):
                mask(value)
            else:
                _mask_secrets_in(value)
    elif isinstance(obj, list):
        for value in obj:
            _mask_secrets_in(value)
