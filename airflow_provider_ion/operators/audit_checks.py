"""The audit's checks: pure functions from a snapshot of ION's webhook state to findings.

No I/O here: :class:`~airflow_provider_ion.operators.audit.IonWebhookAuditOperator` reads ION (and the
inbox) into an :class:`AuditSnapshot`, :func:`audit_findings` turns it into :class:`Finding` objects,
each with a severity, a stable ``code`` (:data:`FINDING_CODES`: alert on it), the object and a fix.
Being pure, the checks are cheap to test and to reuse (a report from a saved snapshot, another tool).

Why one module of ~600 lines: the checks are one pass over one snapshot, and most lines are the
findings' own words (message, object, suggested fix for each of the :data:`FINDING_CODES`); splitting
them by topic would scatter the code list from the code that emits it.

Example::

    from airflow_provider_ion.operators.audit_checks import AuditSnapshot, audit_findings, normalize_expected

    snapshot = AuditSnapshot(receivers=[...], subscriptions=[...], failing_events=[...])
    expected = normalize_expected({"receiver": "factory", "subscriptions": ["RUNS/CREATE"]})
    for finding in audit_findings(snapshot, expected):
        print(finding.severity, finding.code, finding.message)
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

from airflow_provider_ion.resources import canonical_resource
from airflow_provider_ion.triggers.matching import name_key
from airflow_provider_ion.webhook_state import is_loopback, parse_subscriptions, without_secret

__all__ = [
    "FAILING_STATUSES",
    "FINDING_CODES",
    "FIXABLE_CODES",
    "SEVERITIES",
    "AuditSnapshot",
    "ExpectedWebhooks",
    "FailOn",
    "Finding",
    "Severity",
    "applies_to",
    "audit_findings",
    "consumer_findings",
    "format_findings_table",
    "is_resolved_by",
    "normalize_expected",
    "summarize",
]

Severity = Literal["error", "warning", "info"]
FailOn = Literal["error", "warning", "never"]
SEVERITIES: tuple[Severity, ...] = ("error", "warning", "info")
FAILING_STATUSES = ("FAILED", "RETRYING")

#: Every finding code, its usual severity, and what it means. Codes are stable: alert on them.
FINDING_CODES: dict[str, tuple[str, str]] = {
    "receiver_missing": ("error", "an expected receiver does not exist in ION"),
    "receiver_disabled": ("error", "an expected receiver exists but is disabled"),
    "duplicate_receiver_name": ("error", "several receivers share an expected receiver's name (ambiguous)"),
    "receiver_uri_mismatch": ("warning", "an expected receiver points at another URI than the spec"),
    "subscription_missing": ("error", "an expected (resource, action) subscription does not exist"),
    "subscription_disabled": ("error", "an expected subscription exists but none of its copies is active"),
    "subscription_unexpected": ("warning", "an active subscription not in a spec with prune=True"),
    "active_subscription_on_disabled_receiver": ("warning", "active subscriptions on a disabled receiver"),
    "duplicate_subscription": ("warning", "several active subscriptions for one (receiver, resource, action)"),
    "subscription_without_receiver": ("warning", "a subscription whose receiver does not exist"),
    "receiver_without_subscriptions": ("info", "an active receiver with no active subscription"),
    "receiver_uri_not_https": ("error", "plain HTTP to a public host (info when the host is loopback)"),
    "delivery_failures": ("error", "FAILED events in the window (warning when only RETRYING)"),
    "signature_rejections": ("warning", "deliveries the receiver refused for a bad signature"),
    "consumer_lagging": ("warning", "an inbox consumer's cursor is more than max_consumer_lag events behind"),
    "inbox_unavailable": ("warning", "the configured inbox could not be read"),
    "consumer_without_subscription": (
        "warning",
        "a trigger or sensor seen recently waits for a (resource, action) no active subscription delivers",
    ),
    "subscription_without_consumer": (
        "info",
        "an active subscription to a receiver this inbox serves that no trigger or sensor seen recently consumes",
    ),
    "fix_failed": ("error", "fix=True could not apply a change"),
}

#: Codes that ``fix=True`` resolves (when the spec allows it; see the operator's docstring).
FIXABLE_CODES = frozenset(
    {
        "receiver_missing",
        "receiver_disabled",
        "receiver_uri_mismatch",
        "subscription_missing",
        "subscription_disabled",
        "subscription_unexpected",
        "duplicate_subscription",
    }
)


# --------------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------------
@dataclass
class Finding:
    """One problem: ``severity``, stable ``code``, the ``object`` it is about and a suggested ``fix``."""

    severity: Severity
    code: str
    message: str
    object: dict[str, Any]
    fix: str
    fixable: bool = False
    fixed: bool = False
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        if not data["details"]:
            data.pop("details")
        return data


@dataclass(frozen=True)
class ExpectedWebhooks:
    """One desired state: a receiver (spec dict with ``webhook_uri``, or a name/id) and its subscriptions."""

    receiver: str | int | dict[str, Any]
    subscriptions: tuple[tuple[str, str], ...]
    prune: bool = False

    @property
    def ref(self) -> str | int:
        """The name (or id) the receiver is looked up by."""
        if isinstance(self.receiver, Mapping):
            return self.receiver.get("id") or self.receiver.get("name") or ""
        return self.receiver

    @property
    def spec(self) -> dict[str, Any] | None:
        """The full receiver spec (can create it), or None when only a name/id was given."""
        if isinstance(self.receiver, Mapping) and "webhook_uri" in self.receiver:
            return dict(self.receiver)
        return None

    def to_dict(self) -> dict[str, Any]:
        receiver = without_secret(self.receiver)
        if isinstance(receiver, dict):
            receiver.pop("shared_secret", None)
        return {
            "receiver": receiver,
            "subscriptions": [f"{r}/{a}" for r, a in self.subscriptions],
            "prune": self.prune,
        }


@dataclass
class AuditSnapshot:
    """What the audit read from ION (and the inbox): the input of :func:`audit_findings`."""

    receivers: list[dict[str, Any]]
    subscriptions: list[dict[str, Any]]
    failing_events: list[dict[str, Any]]
    events_in_window: int | None = None
    inbox: dict[str, Any] | None = None
    rejections: dict[str, dict[str, int]] | None = None
    #: The inbox's consumers seen in the consumer window (``ConsumerRecord`` fields as a dict: ``consumer``,
    #: ``kind``, ``receiver``, ``resources``, ``actions``, ``last_seen``); None when not read.
    consumers: list[dict[str, Any]] | None = None


def normalize_expected(expected: Any) -> list[ExpectedWebhooks]:
    """``None``, one ``{"receiver", "subscriptions", "prune"}`` dict, a list of them, or their JSON text.

    :raises ValueError: a malformed spec (so a DAG with a bad spec fails at parse time).
    """
    if expected is None or expected == "" or expected == []:
        return []
    if isinstance(expected, str):
        try:
            expected = json.loads(expected)
        except ValueError:
            raise ValueError("expected must be a dict, a list of dicts, or their JSON text") from None
    items = [expected] if isinstance(expected, Mapping) else list(expected)
    result = []
    for item in items:
        if not isinstance(item, Mapping) or "receiver" not in item:
            raise ValueError(f"each expected entry needs a 'receiver' (and 'subscriptions'); got {item!r}")
        receiver = item["receiver"]
        if isinstance(receiver, Mapping):
            if not (receiver.get("name") or receiver.get("id")):
                raise ValueError("an expected receiver spec needs a 'name' (or an 'id')")
            receiver = dict(receiver)
        elif not isinstance(receiver, (str, int)) or receiver == "":
            raise ValueError(f"expected receiver must be a spec dict, a name or an id; got {receiver!r}")
        pairs = parse_subscriptions(item.get("subscriptions") or [])
        result.append(ExpectedWebhooks(receiver, tuple(pairs), bool(item.get("prune", False))))
    return result


# --------------------------------------------------------------------------------------------------
# The checks (pure: no I/O, easy to test and to reuse)
# --------------------------------------------------------------------------------------------------
def _rid(value: Any) -> str:
    return str(value)


def _sort_id(obj: Mapping[str, Any]) -> tuple[int, str]:
    text = str(obj.get("id"))
    return (int(text), "") if text.isdigit() else (0, text)


def _receiver_obj(receiver: Mapping[str, Any]) -> dict[str, Any]:
    return {"type": "receiver", "id": _rid(receiver["id"]), "name": receiver.get("name")}


def _uri_problem(uri: str | None) -> Severity | None:
    parts = urlsplit(uri or "")
    if parts.scheme == "https" and parts.hostname:
        return None
    if parts.scheme == "http" and parts.hostname and is_loopback(parts.hostname):
        return "info"
    return "error"


def audit_findings(
    snapshot: AuditSnapshot,
    expected: Sequence[ExpectedWebhooks] = (),
    *,
    window_hours: float = 24,
    max_consumer_lag: int = 1000,
    min_failures: int = 1,
) -> list[Finding]:
    """Every finding in ``snapshot`` (against ``expected``), most severe first."""
    findings: list[Finding] = []
    receivers = {_rid(r["id"]): r for r in snapshot.receivers}
    subs_by_receiver: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for sub in sorted(snapshot.subscriptions, key=_sort_id):
        subs_by_receiver[_rid(sub.get("receiverId"))].append(sub)
    add = findings.append

    # -- receivers -------------------------------------------------------------------------------
    for rid, receiver in receivers.items():
        obj = _receiver_obj(receiver)
        uri = receiver.get("webhookUri")
        severity = _uri_problem(uri)
        if severity is not None:
            where = "a loopback host (tests only)" if severity == "info" else "a non-HTTPS URL"
            add(
                Finding(
                    severity,
                    "receiver_uri_not_https",
                    f"Receiver {obj['name']!r} delivers to {where}: {uri}",
                    {**obj, "webhookUri": uri},
                    "Serve the receiver over HTTPS and update webhookUri (ION delivers over HTTPS only)",
                )
            )
        active_subs = [s for s in subs_by_receiver.get(rid, []) if s.get("active")]
        if not receiver.get("active") and active_subs:
            add(
                Finding(
                    "warning",
                    "active_subscription_on_disabled_receiver",
                    f"Receiver {obj['name']!r} is disabled but has {len(active_subs)} active subscription(s); "
                    "those events are not delivered",
                    {**obj, "subscriptions": [_sub_label(s) for s in active_subs[:50]]},
                    "Re-enable the receiver (IonEnableWebhookReceiverOperator) or disable its subscriptions",
                    details={"active_subscriptions": len(active_subs)},
                )
            )
        if receiver.get("active") and not active_subs:
            add(
                Finding(
                    "info",
                    "receiver_without_subscriptions",
                    f"Receiver {obj['name']!r} is active but has no active subscription",
                    obj,
                    "Subscribe it (IonEnsureWebhooksOperator) or disable it if it is retired",
                )
            )

    # -- subscriptions ---------------------------------------------------------------------------
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = defaultdict(list)
    for rid, subs in subs_by_receiver.items():
        if rid not in receivers:
            for sub in subs:
                add(
                    Finding(
                        "warning",
                        "subscription_without_receiver",
                        f"Subscription {sub['id']} ({sub['resource']}/{sub['action']}) names receiver {rid}, "
                        "which does not exist",
                        _sub_obj(sub, None),
                        "Disable the subscription (IonDisableWebhookSubscriptionOperator)",
                    )
                )
        for sub in subs:
            if sub.get("active"):
                groups[(rid, sub["resource"], sub["action"])].append(sub)
    for (rid, resource, action), subs in groups.items():
        if len(subs) > 1:
            keep, extra = subs[0], subs[1:]
            name = (receivers.get(rid) or {}).get("name")
            add(
                Finding(
                    "warning",
                    "duplicate_subscription",
                    f"Receiver {name!r} has {len(subs)} active {resource}/{action} subscriptions; each event "
                    "is delivered that many times",
                    {
                        "type": "subscription",
                        "receiver_id": rid,
                        "receiver_name": name,
                        "resource": resource,
                        "action": action,
                        "ids": [_rid(s["id"]) for s in subs],
                    },
                    f"Keep the oldest ({keep['id']}) and disable {', '.join(_rid(s['id']) for s in extra)} "
                    "(fix=True does this)",
                    fixable=True,
                    details={"keep": _rid(keep["id"]), "disable": [_rid(s["id"]) for s in extra]},
                )
            )

    # -- desired state ---------------------------------------------------------------------------
    for entry in expected:
        findings.extend(_expected_findings(entry, snapshot.receivers, subs_by_receiver))

    # -- audit trail -----------------------------------------------------------------------------
    findings.extend(_failure_findings(snapshot.failing_events, receivers, window_hours, min_failures))

    # -- local inbox -----------------------------------------------------------------------------
    inbox = snapshot.inbox or {}
    if inbox.get("error"):
        add(
            Finding(
                "warning",
                "inbox_unavailable",
                f"The inbox could not be read: {inbox['error']}",
                {"type": "inbox", "url": inbox.get("url")},
                "Check inbox_url / [ion_webhooks] inbox_url and that the database is reachable",
            )
        )
    for consumer, state in sorted((inbox.get("consumers") or {}).items()):
        lag = int(state.get("lag") or 0)
        if lag > max_consumer_lag:
            add(
                Finding(
                    "warning",
                    "consumer_lagging",
                    f"Inbox consumer {consumer!r} is {lag} events behind (threshold {max_consumer_lag})",
                    {"type": "consumer", "name": consumer, "url": inbox.get("url")},
                    "Check that the triggerer runs and the waiting DAGs are unpaused; a consumer that is gone "
                    "for good can be removed (airflow-ion inbox ...)",
                    details={"lag": lag, "cursor": state.get("cursor"), "updated_at": state.get("updated_at")},
                )
            )
    for receiver_name, reasons in sorted((snapshot.rejections or {}).items()):
        count = sum(n for reason, n in reasons.items() if "signature" in reason)
        if count:
            add(
                Finding(
                    "warning",
                    "signature_rejections",
                    f"The receiver refused {count} delivery(ies) for {receiver_name!r} over a bad signature",
                    {"type": "receiver", "name": receiver_name},
                    "The secret in Airflow differs from ION's: re-run IonEnsureWebhooksOperator (stores the "
                    "secret) or rotate the receiver's secret",
                    details={"reasons": dict(reasons)},
                )
            )

    if snapshot.consumers is not None:
        inbox_receivers = set((inbox.get("by_receiver") or {}).keys())
        findings.extend(
            consumer_findings(snapshot.consumers, snapshot.receivers, snapshot.subscriptions, inbox_receivers)
        )

    order = {s: i for i, s in enumerate(SEVERITIES)}
    findings.sort(key=lambda f: (order[f.severity], f.code))
    return findings


def _delivers(sub: Mapping[str, Any], receiver: str | None, resource: str | None, action: str | None) -> bool:
    """Whether live subscription ``sub`` (with ``receiver_name`` added) delivers what the pattern names.

    ``None`` in the pattern means any; resources and actions compare by :func:`canonical_resource` (RUN and
    RUNS are one), receivers case-insensitively (the receiver stores lower-case names).
    """
    if receiver is not None and str(sub.get("receiver_name") or "").lower() != receiver.lower():
        return False
    if resource is not None and name_key(sub.get("resource")) != name_key(resource):
        return False
    return action is None or name_key(sub.get("action")) == name_key(action)


def consumer_findings(
    consumers: Sequence[Mapping[str, Any]],
    receivers: Sequence[Mapping[str, Any]],
    subscriptions: Sequence[Mapping[str, Any]],
    inbox_receivers: Iterable[str] = (),
) -> list[Finding]:
    """Consumers (triggers, sensors) against ION's active subscriptions, both ways.

    - ``consumer_without_subscription`` (warning): a consumer's (resource, action) pair that no active
      subscription on an active receiver delivers (to its receiver, when it names one): it never fires.
    - ``subscription_without_consumer`` (info): an active subscription, on an active receiver this inbox
      serves (one in ``inbox_receivers``, the receivers with events in the inbox, or named by a consumer),
      that no consumer's filter takes: ION delivers events nothing in Airflow waits for.

    ``consumers`` are the ones seen recently (the caller picks the window); resources/actions ``None`` mean any.
    """
    findings: list[Finding] = []
    names = {_rid(r["id"]): r for r in receivers}
    live = []
    for sub in sorted(subscriptions, key=_sort_id):
        receiver = names.get(_rid(sub.get("receiverId")))
        if sub.get("active") and receiver is not None and receiver.get("active"):
            live.append({**sub, "receiver_name": receiver.get("name")})
    patterns: list[tuple[str | None, str | None, str | None]] = []
    for consumer in sorted(consumers, key=lambda c: str(c.get("consumer"))):
        receiver = consumer.get("receiver") or None
        pairs = [
            (resource, action)
            for resource in (consumer.get("resources") or [None])
            for action in (consumer.get("actions") or [None])
        ]
        patterns.extend((receiver, resource, action) for resource, action in pairs)
        missing = [(r, a) for r, a in pairs if not any(_delivers(sub, receiver, r, a) for sub in live)]
        if not missing:
            continue
        labels = [f"{r or '*'}/{a or '*'}" for r, a in missing]
        where = f"receiver {receiver!r}" if receiver else "any receiver"
        add_to = f"receiver {receiver!r}" if receiver else "the receiver that feeds this inbox"
        findings.append(
            Finding(
                "warning",
                "consumer_without_subscription",
                f"{consumer.get('kind', 'consumer').capitalize()} {consumer.get('consumer')!r} waits for "
                f"{', '.join(labels)} on {where}, which no active subscription delivers: it never fires",
                {
                    "type": "consumer",
                    "name": consumer.get("consumer"),
                    "kind": consumer.get("kind"),
                    "receiver": receiver,
                    "missing": labels,
                },
                f"Subscribe {add_to} to {', '.join(labels)} (IonEnsureWebhooksOperator, or the audit's expected= "
                "with fix=True), or correct the trigger's/sensor's resource and action (RUN and RUNS compare equal)",
                details={"last_seen": consumer.get("last_seen")},
            )
        )
    served = {str(name).lower() for name in inbox_receivers}
    served |= {str(c["receiver"]).lower() for c in consumers if c.get("receiver")}
    for sub in live:
        if str(sub["receiver_name"] or "").lower() not in served:
            continue  # a receiver of another system: not this inbox's business
        if any(_delivers(sub, receiver, r, a) for receiver, r, a in patterns):
            continue
        findings.append(
            Finding(
                "info",
                "subscription_without_consumer",
                f"Subscription {sub['id']} ({sub['resource']}/{sub['action']}) to receiver "
                f"{sub['receiver_name']!r} feeds no trigger or sensor seen recently",
                _sub_obj(sub, names.get(_rid(sub.get("receiverId")))),
                "Disable it (IonDisableWebhookSubscriptionOperator) if nothing needs these events, or add an "
                "IonWebhookTrigger / IonWebhookSensor for them (a sensor counts only in the windows it ran in)",
            )
        )
    return findings


def _sub_label(sub: Mapping[str, Any]) -> str:
    return f"{sub['id']}:{sub['resource']}/{sub['action']}"


def _sub_obj(sub: Mapping[str, Any], receiver: Mapping[str, Any] | None) -> dict[str, Any]:
    return {
        "type": "subscription",
        "id": _rid(sub["id"]),
        "receiver_id": _rid(sub.get("receiverId")),
        "receiver_name": (receiver or {}).get("name"),
        "resource": sub["resource"],
        "action": sub["action"],
    }


def _match_receivers(entry: ExpectedWebhooks, receivers: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The receivers ``entry`` names: by id (int, digits or a dict with ``id``) first, else by name."""
    ref = entry.ref
    if isinstance(ref, int) or (isinstance(ref, str) and ref.strip().isdigit()):
        by_id = [r for r in receivers if _rid(r["id"]) == str(ref).strip()]
        if by_id or isinstance(ref, int):
            return by_id
    return [r for r in receivers if r.get("name") == ref]


def _expected_findings(
    entry: ExpectedWebhooks,
    receivers: Sequence[Mapping[str, Any]],
    subs_by_receiver: Mapping[str, list[dict[str, Any]]],
) -> list[Finding]:
    found: list[Finding] = []
    spec = entry.spec
    label = entry.ref
    wanted = ", ".join(f"{r}/{a}" for r, a in entry.subscriptions) or "no subscriptions"
    matches = _match_receivers(entry, receivers)
    if not matches:
        obj: dict[str, Any] = {
            "type": "receiver",
            "name": label,
            "subscriptions": [f"{r}/{a}" for r, a in entry.subscriptions],
        }
        fix = (
            "fix=True creates it with its subscriptions (IonEnsureWebhooksOperator)"
            if spec
            else "Give the expected receiver a spec with webhook_uri so it can be created, or create it"
        )
        found.append(
            Finding(
                "error",
                "receiver_missing",
                f"Expected receiver {label!r} does not exist ({wanted})",
                obj,
                fix,
                fixable=spec is not None,
            )
        )
        return found
    if len(matches) > 1:
        ids = [_rid(r["id"]) for r in matches]
        found.append(
            Finding(
                "error",
                "duplicate_receiver_name",
                f"{len(matches)} receivers are named {label!r} (ids {', '.join(ids)}); the spec is "
                "ambiguous and cannot be checked or fixed",
                {"type": "receiver", "name": label, "ids": ids},
                "Disable or rename the extra receivers, or name the receiver by id in the spec",
            )
        )
        return found
    receiver = matches[0]
    obj = _receiver_obj(receiver)
    if not receiver.get("active"):
        found.append(
            Finding(
                "error",
                "receiver_disabled",
                f"Expected receiver {obj['name']!r} is disabled",
                obj,
                "Re-enable it (fix=True, or IonEnableWebhookReceiverOperator)",
                fixable=True,
            )
        )
    if spec and spec.get("webhook_uri") and spec["webhook_uri"] != receiver.get("webhookUri"):
        updating = spec.get("if_exists") == "update"
        found.append(
            Finding(
                "warning",
                "receiver_uri_mismatch",
                f"Receiver {obj['name']!r} delivers to {receiver.get('webhookUri')}, the spec says "
                f"{spec['webhook_uri']}",
                {**obj, "webhookUri": receiver.get("webhookUri"), "expected": spec["webhook_uri"]},
                "fix=True updates it"
                if updating
                else "Add if_exists='update' to the receiver spec so fix=True aligns it, or update the spec",
                fixable=updating,
            )
        )
    subs = subs_by_receiver.get(obj["id"], [])
    for resource, action in entry.subscriptions:
        same = [s for s in subs if _same_resource(s["resource"], resource) and s["action"] == action]
        target = {
            "type": "subscription",
            "receiver_id": obj["id"],
            "receiver_name": obj["name"],
            "resource": resource,
            "action": action,
        }
        if not same:
            found.append(
                Finding(
                    "error",
                    "subscription_missing",
                    f"Receiver {obj['name']!r} has no {resource}/{action} subscription",
                    target,
                    "Create it (fix=True, or IonEnsureWebhooksOperator)",
                    fixable=True,
                )
            )
        elif not any(s.get("active") for s in same):
            found.append(
                Finding(
                    "error",
                    "subscription_disabled",
                    f"The {resource}/{action} subscription of receiver {obj['name']!r} is disabled",
                    {**target, "ids": [_rid(s["id"]) for s in same]},
                    "Re-enable it (fix=True, or IonEnableWebhookSubscriptionOperator)",
                    fixable=True,
                )
            )
    if entry.prune:
        for sub in subs:
            if sub.get("active") and not any(
                _same_resource(sub["resource"], r) and sub["action"] == a for r, a in entry.subscriptions
            ):
                found.append(
                    Finding(
                        "warning",
                        "subscription_unexpected",
                        f"Receiver {obj['name']!r} has an active {sub['resource']}/{sub['action']} "
                        "subscription that its spec (prune=True) does not list",
                        _sub_obj(sub, receiver),
                        "fix=True disables it; or add it to the spec",
                        fixable=True,
                    )
                )
    return found


def _failure_findings(
    events: Iterable[Mapping[str, Any]],
    receivers: Mapping[str, Mapping[str, Any]],
    window_hours: float,
    min_failures: int,
) -> list[Finding]:
    by_receiver: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for event in events:
        by_receiver[_rid(event.get("receiverId"))].append(event)
    found = []
    for rid, items in sorted(by_receiver.items(), key=lambda kv: -len(kv[1])):
        if len(items) < min_failures:
            continue
        statuses = Counter(e.get("status") for e in items)
        kinds = Counter(f"{e.get('resource')}/{e.get('action')}" for e in items)
        codes = Counter(str(e.get("lastResponseCode")) for e in items)
        latest = max(items, key=lambda e: str(e.get("createdAt") or ""))
        name = (receivers.get(rid) or {}).get("name")
        severity: Severity = "error" if statuses.get("FAILED") else "warning"
        counts = ", ".join(f"{n} {s}" for s, n in sorted(statuses.items()))
        found.append(
            Finding(
                severity,
                "delivery_failures",
                f"Receiver {name!r}: {counts} event(s) in the last {window_hours:g} h",
                {"type": "receiver", "id": rid, "name": name},
                "Check the receiver is reachable and answers expectedResponseCode (see last_error); "
                "a secret mismatch shows as 401",
                details={
                    "total": len(items),
                    "by_status": dict(statuses),
                    "by_resource_action": dict(kinds.most_common(20)),
                    "by_response_code": dict(codes.most_common(10)),
                    "subscriptions": sorted({_rid(e.get("subscriptionId")) for e in items})[:50],
                    "first_at": min(str(e.get("createdAt") or "") for e in items),
                    "last_at": str(latest.get("createdAt") or ""),
                    "last_error": (latest.get("lastError") or "")[:200] or None,
                },
            )
        )
    return found


def summarize(findings: Iterable[Finding]) -> dict[str, int]:
    """Counts of the findings still open (not fixed), by severity."""
    counts = Counter(f.severity for f in findings if not f.fixed)
    return {s: counts.get(s, 0) for s in SEVERITIES}


def format_findings_table(findings: Sequence[Mapping[str, Any]], *, width: int = 100) -> str:
    """A plain-text table of report findings (severity, code, object, message) for task logs."""
    if not findings:
        return "No findings: ION's webhooks look healthy."
    rows = [("SEVERITY", "CODE", "OBJECT", "MESSAGE")]
    for f in findings:
        obj = f.get("object") or {}
        ident = obj.get("name") or obj.get("receiver_name") or obj.get("id") or ""
        if obj.get("resource"):
            ident = f"{ident} {obj['resource']}/{obj['action']}"
        state = " [fixed]" if f.get("fixed") else ""
        rows.append((f["severity"] + state, f["code"], str(ident)[:40], f["message"][:width]))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    return "\n".join(f"{r[0]:<{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]:<{widths[2]}}  {r[3]}" for r in rows)


def _names(finding: Finding, entry: ExpectedWebhooks) -> bool:
    obj = finding.object
    ref = str(entry.ref)
    return ref in (str(obj.get("name")), str(obj.get("id")), str(obj.get("receiver_name")), str(obj.get("receiver_id")))


def applies_to(finding: Finding, entry: ExpectedWebhooks) -> bool:
    """Whether ``finding`` is a fixable one that applying ``entry`` (``ensure_webhooks``) resolves."""
    if finding.code not in FIXABLE_CODES or finding.code == "duplicate_subscription":
        return False
    return _names(finding, entry)


def is_resolved_by(finding: Finding, entry: ExpectedWebhooks) -> bool:
    """Findings that applying ``entry`` resolves as a side effect (it re-enables and subscribes the receiver)."""
    if finding.code == "active_subscription_on_disabled_receiver":
        return _names(finding, entry)
    if finding.code == "receiver_without_subscriptions":
        return bool(entry.subscriptions) and _names(finding, entry)
    return False


def _same_resource(live: str, expected: str) -> bool:
    """RUN and RUNS name one resource (ION's docs spell it both ways)."""
    return live == expected or canonical_resource(live) == canonical_resource(expected)
