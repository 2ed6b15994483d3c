"""Reconciling ION's webhook state: make receivers and subscriptions what a pipeline needs, idempotently.

Plain functions that take an :class:`~airflow_provider_ion.hooks.ion.IonHook`; the webhook operators
(:mod:`airflow_provider_ion.operators.webhooks`) and the audit's ``fix=True``
(:mod:`airflow_provider_ion.operators.audit`) both apply desired state through them, so they apply it
the same way.

Every function is safe to retry: it reads ION's state first and changes only what differs, so a task
retried after a timeout never creates a twin receiver or subscription. Updates carry the object's
``_etag``; on a concurrency conflict the function re-reads and tries again, a bounded number of times.

(~500 lines: receivers, subscriptions and the combined desired state share the etag-retry and secret
rules below; one module keeps them in one place.)

The shared secret rule: the Airflow Variable ``ion_webhook_secret_<name>`` (read by the receiver app)
must hold the secret ION signs with. A secret is only ever stored after ION holds it (created with it,
updated to it, or verified equal to ION's); reusing an existing receiver with a *different*
``shared_secret`` is refused (:class:`~airflow_provider_ion.exceptions.IonWebhookStateError`) instead
of leaving ION and Airflow with two secrets, which made every delivery fail with 401.

Example::

    from airflow_provider_ion.webhook_state import ensure_webhooks

    with IonHook("ion_default") as hook:
        summary = ensure_webhooks(
            hook,
            {"name": "factory-events", "webhook_uri": "https://airflow.example.com/ion-webhooks/v1/receivers/factory-events"},
            ["RUNS/CREATE", "ISSUES/CREATE"],
            prune=True,
        )
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, TypeVar
from urllib.parse import urlsplit

from airflow_provider_ion.exceptions import IonConcurrencyError, IonTransportError, IonWebhookStateError
from airflow_provider_ion.masking import SECRET_FIELD, mask
from airflow_provider_ion.resources import canonical_resource

if TYPE_CHECKING:
    from airflow_provider_ion.hooks.ion import IonHook

__all__ = [
    "DEFAULT_CONFLICT_RETRIES",
    "SECRET_FIELD",
    "Change",
    "IfExists",
    "Outcome",
    "SubscriptionSpec",
    "check_webhook_uri",
    "ensure_receiver",
    "ensure_subscription",
    "ensure_webhooks",
    "find_receiver",
    "find_subscriptions",
    "is_loopback",
    "parse_subscriptions",
    "receiver_label",
    "secret_variable_key",
    "set_receiver_active",
    "set_subscription_active",
    "store_receiver_secret",
    "validate_enum",
    "with_fresh_etag",
    "without_secret",
]

IfExists = Literal["reuse", "update", "fail"]
Change = Literal["created", "updated", "enabled", "disabled", "unchanged"]
#: One subscription as the operators accept it: ``("RUNS", "CREATE")``, ``{"resource", "action"}`` or ``"RUNS/CREATE"``.
SubscriptionSpec = Sequence[str] | Mapping[str, str] | str
T = TypeVar("T")

DEFAULT_CONFLICT_RETRIES = 3
_RECEIVER_FIELDS = {
    "webhook_uri": "webhookUri",
    "description": "description",
    "content_type": "contentType",
    "expected_response_code": "expectedResponseCode",
}


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


def is_loopback(host: str) -> bool:
    """Whether ``host`` is ``localhost`` or a loopback IP address."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_webhook_uri(uri: str) -> str:
    """ION requires HTTPS; plain HTTP is allowed only to a loopback host (the emulator, local tests).

    :raises ValueError: naming the URI's problem and what to do.
    """
    parts = urlsplit(uri or "")
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ValueError(f"webhook_uri {uri!r} is not an http(s) URL; give e.g. https://airflow.example.com/...")
    if parts.scheme == "http" and not is_loopback(parts.hostname):
        raise ValueError(
            f"webhook_uri {uri!r} uses plain HTTP; ION delivers webhooks over HTTPS only "
            "(plain HTTP is accepted for loopback hosts such as 127.0.0.1 or localhost, for tests)"
        )
    return uri


def secret_variable_key(receiver_name: str) -> str:
    """Where the provider stores a receiver's secret (the receiver app reads the same key)."""
    from airflow_provider_ion.webhooks.secrets import variable_name

    return variable_name(receiver_name)


def receiver_label(receiver: Mapping[str, Any]) -> str:
    """``ION receiver 'name' (id 12)``, for messages."""
    return f"ION receiver {receiver.get('name')!r} (id {receiver.get('id')})"


def parse_subscriptions(subscriptions: Iterable[SubscriptionSpec]) -> list[tuple[str, str]]:
    """``[("RUNS", "CREATE"), {"resource": ..., "action": ...}, "ISSUES/CREATE"]`` -> unique pairs, in order.

    :raises ValueError: an entry without both a resource and an action.
    """
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
# Reconciling functions
# --------------------------------------------------------------------------------------------------
@dataclass
class Outcome:
    """What a reconciling call did: the object (without its secret) and the change it made.

    ``secret`` is the receiver's shared secret as ION now holds it, when this call knows it (ION
    returned it on create, the call set it, or it was checked equal to ION's); None otherwise.
    """

    obj: dict[str, Any]
    change: Change
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


def _check_reused_secret(hook: IonHook, existing: Mapping[str, Any], shared_secret: str) -> None:
    """Under ``if_exists="reuse"``: the given secret must be the one ION holds (ION keeps its own)."""
    current = hook.get_receiver_secret(existing["id"])
    if current == shared_secret:
        return
    why = (
        "differs from the one ION holds"
        if current
        else "cannot be compared with ION's, because ION did not return the receiver's secret"
    )
    raise IonWebhookStateError(
        f"{receiver_label(existing)} already exists and the shared_secret given {why}. "
        "if_exists='reuse' keeps ION's secret, so storing yours would make every delivery fail with 401. "
        "Use if_exists='update' to rotate ION's secret to yours, or drop shared_secret to keep ION's "
        "(the provider then reads it from ION and stores it)."
    )


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

    :param if_exists: ``reuse`` keeps the existing receiver (re-enabled when disabled) and ION's secret:
        a ``shared_secret`` that differs from ION's is refused; ``update`` also aligns the fields and
        sets the secret when given; ``fail`` refuses an existing receiver.
    :raises IonWebhookStateError: ``fail`` and it exists, a differing secret under ``reuse``, or several
        receivers share the name.
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
    elif shared_secret:
        _check_reused_secret(hook, existing, shared_secret)
    if active and not existing.get("active"):
        changes["active"] = True
    if not changes:
        return Outcome(without_secret(existing), "unchanged", shared_secret)

    def write(current: Mapping[str, Any]) -> dict[str, Any]:
        return hook.update_receiver(current["id"], current["_etag"], **changes)

    updated = with_fresh_etag(lambda: hook.get_receiver(existing["id"]), write, label=receiver_label(existing))
    change: Change = "enabled" if set(changes) == {"active"} else "updated"
    return Outcome(without_secret(updated), change, shared_secret)


def set_receiver_active(
    hook: IonHook, receiver: str | int | Mapping[str, Any], active: bool, *, attempts: int = DEFAULT_CONFLICT_RETRIES
) -> Outcome:
    """Enable or disable a receiver; no write when it is already in that state."""
    found = find_receiver(hook, receiver)
    if found is None:
        raise IonWebhookStateError(f"ION receiver {receiver!r} does not exist")
    outcome = _set_active(
        lambda: hook.get_receiver(found["id"]),
        lambda current: hook.update_receiver(current["id"], current["_etag"], active=active),
        active,
        label=receiver_label(found),
        attempts=attempts,
    )
    return Outcome(without_secret(outcome.obj), outcome.change)


def _set_active(
    read: Callable[[], Mapping[str, Any] | None],
    update: Callable[[Mapping[str, Any]], dict[str, Any]],
    active: bool,
    *,
    label: str,
    attempts: int,
) -> Outcome:
    """Read the object; ``update(current)`` only when its ``active`` differs (fresh ``_etag`` on conflicts)."""
    state = {"changed": False}

    def write(current: Mapping[str, Any]) -> dict[str, Any]:
        if bool(current.get("active")) == active:
            return dict(current)
        state["changed"] = True
        return update(current)

    result = with_fresh_etag(read, write, label=label, attempts=attempts)
    change: Change = ("enabled" if active else "disabled") if state["changed"] else "unchanged"
    return Outcome(result, change)


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
    return _set_active(
        lambda: hook.get_subscription(subscription_id),
        lambda current: hook.update_subscription(current["id"], current["_etag"], active=active),
        active,
        label=label or f"ION subscription {subscription_id}",
        attempts=attempts,
    )


def ensure_webhooks(
    hook: IonHook,
    receiver: str | int | Mapping[str, Any],
    subscriptions: Iterable[SubscriptionSpec],
    *,
    prune: bool = False,
) -> dict[str, Any]:
    """Apply a desired state: the receiver and exactly these active subscriptions (``prune``).

    ``receiver`` is a spec ``{"name": ..., "webhook_uri": ..., ...}`` (the keyword arguments of
    :func:`ensure_receiver`; created when missing) or a name/id of an existing receiver. Returns a
    JSON-serialisable summary of what changed; ``summary["_secret"]`` is the receiver's secret when
    known (see :attr:`Outcome.secret`): pop it before the summary goes anywhere.
    """
    pairs = parse_subscriptions(subscriptions)
    summary: dict[str, Any] = {"created": [], "updated": [], "enabled": [], "disabled": [], "unchanged": []}
    secret: str | None = None
    if isinstance(receiver, Mapping) and "webhook_uri" in receiver:
        outcome = ensure_receiver(hook, **dict(receiver))
        found, secret = outcome.obj, outcome.secret
        if outcome.change != "unchanged":
            summary[outcome.change].append({"receiver": found["id"]})
    else:
        maybe = find_receiver(hook, receiver)
        if maybe is None:
            raise IonWebhookStateError(f"ION receiver {receiver!r} does not exist; give a spec with webhook_uri")
        found = maybe
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


def store_receiver_secret(hook: IonHook, receiver: Mapping[str, Any], known: str | None = None) -> str | None:
    """Keep the Airflow Variable the receiver app reads in step with the receiver's secret in ION.

    ``known`` is the secret ION holds when the caller knows it (:attr:`Outcome.secret`); otherwise it is
    read from ION. Never pass a secret ION was not given: the Variable must match what ION signs with.
    The Variable is written only when it differs. Returns the Variable key, or None when the secret
    could not be had (then the receiver app asks ION itself).
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
