"""Detect the signature scheme of quarantined deliveries, and replay the ones that now verify.

The one implementation behind ``airflow-ion signature detect``, ``airflow-ion inbox replay-quarantined``
(alias ``airflow-ion signature replay-quarantined``) and the replay action of the "ION webhooks" UI page.

A quarantined delivery is one to a known receiver whose signature failed (``Inbox.quarantine``).
:func:`replay_quarantined` verifies each one again with the signature settings given (normally the ones
now in force, :func:`current_scheme`) and appends only what verifies; the inbox's ``(receiver, event_id)``
dedup holds, so an event ION's own retries already delivered is counted as a duplicate. Secrets are
never returned, logged or printed.

Example::

    from airflow_provider_ion.webhooks.inbox import Inbox
    from airflow_provider_ion.webhooks.quarantine_replay import current_scheme, receiver_secrets, replay_quarantined

    inbox = Inbox.from_url("sqlite:///ion_inbox.db")
    result = replay_quarantined(inbox, "factory", receiver_secrets("factory"), current_scheme())
    print(result.counts())  # {"appended": 3, "duplicates": 1, "still_failing": 0, "invalid": 0}
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "ReplayResult",
    "current_scheme",
    "detect_quarantined",
    "receiver_secrets",
    "replay_quarantined",
]


def receiver_secrets(receiver: str) -> tuple[str, ...]:
    """The shared secret(s) of ``receiver`` as the receiver resolves them (Airflow Variable, Connection,
    then ION's receiver record when ``[ion_webhooks] ion_conn_id`` is set); empty when none is configured."""
    from airflow_provider_ion.webhooks.app import ReceiverSettings
    from airflow_provider_ion.webhooks.secrets import SecretResolver, default_sources

    sources = default_sources(ReceiverSettings.from_airflow_config().ion_conn_id)
    found = SecretResolver(sources).resolve(receiver.strip().lower())
    return tuple(found.secrets) if found is not None else ()


def current_scheme() -> Any:
    """The signature settings now in force (``[ion_webhooks] signature_*``), as the receiver reads them."""
    from airflow_provider_ion.webhooks.app import ReceiverSettings

    return ReceiverSettings.from_airflow_config().scheme


def detect_quarantined(inbox: Any, receiver: str, secrets: Sequence[str], limit: int = 100) -> dict[str, Any]:
    """What :func:`~.signature_detect.detect` finds on each quarantined delivery of ``receiver``:
    ``{"receiver", "deliveries": n, "matched": k, "schemes": [{description, settings, scheme, deliveries}]}``,
    most common scheme first. No secret is in the result."""
    from airflow_provider_ion.webhooks.signature_detect import detect

    rows = inbox.quarantined(receiver, limit=limit)
    tally: Counter[tuple[str, str]] = Counter()
    described: dict[tuple[str, str], dict[str, Any]] = {}
    matched = 0
    for row in rows:
        matches = detect(bytes(row.body), dict(row.headers), secrets) if secrets else []
        matched += bool(matches)
        if matches:
            best = matches[0]
            key = (best.describe(), json.dumps(best.settings, sort_keys=True))
            tally[key] += 1
            described[key] = {"description": best.describe(), "settings": best.settings, "scheme": best.scheme}
    schemes = [{**described[k], "deliveries": n} for k, n in tally.most_common()]
    return {"receiver": receiver, "deliveries": len(rows), "matched": matched, "schemes": schemes}


@dataclass
class ReplayResult:
    """Quarantine ids by outcome of :func:`replay_quarantined`.

    ``appended`` and ``duplicates`` left quarantine; ``still_failing`` (signature does not verify with
    the settings given) and ``invalid`` (verifies, but the body is not a JSON object with an
    ``event_id``) stay there.

    Example: ``replay_quarantined(...).counts() == {"appended": 2, "duplicates": 0, ...}``.
    """

    appended: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    still_failing: list[str] = field(default_factory=list)
    invalid: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        return {
            "appended": len(self.appended),
            "duplicates": len(self.duplicates),
            "still_failing": len(self.still_failing),
            "invalid": len(self.invalid),
        }


def replay_quarantined(
    inbox: Any,
    receiver: str,
    secrets: Sequence[str],
    scheme: Any,
    limit: int = 100,
    ids: Collection[str] | None = None,
) -> ReplayResult:
    """Verify the quarantined deliveries of ``receiver`` (only ``ids`` when given) with ``scheme`` and
    ``secrets``; append what verifies (dedup by ``(receiver, event_id)`` holds) and remove it from
    quarantine. What does not verify stays in quarantine."""
    from airflow_provider_ion.webhooks.signature import verify

    wanted = None if ids is None else {str(i) for i in ids}
    result = ReplayResult()
    done: list[Any] = []
    for row in inbox.quarantined(receiver, limit=limit):
        key = str(row.id)
        if wanted is not None and key not in wanted:
            continue
        headers = {str(k).lower(): str(v) for k, v in dict(row.headers).items()}
        body = bytes(row.body)
        if not secrets or not verify(body, headers.get(scheme.header.lower()), list(secrets), scheme):
            result.still_failing.append(key)
            continue
        try:
            event = json.loads(body)
            event_id = event["event_id"]
        except (ValueError, KeyError, TypeError):
            result.invalid.append(key)
            continue
        appended = inbox.append(
            row.receiver,
            event_id,
            body,
            resource=event.get("resource"),
            action=event.get("action"),
            subscription_id=event.get("subscription_id"),
        )
        (result.duplicates if appended.duplicate else result.appended).append(key)
        done.append(row.id)
    if done:
        inbox.remove_quarantined(done)
    return result
