"""``airflow-ion signature detect|replay-quarantined --receiver NAME``.

``detect`` reads the receiver's quarantined deliveries (deliveries to a known receiver whose signature
failed: ``Inbox.quarantined()``), tries the candidate schemes of :mod:`.signature_detect` with the
receiver's configured secret(s) and prints the ``[ion_webhooks]`` settings that verify them.
``replay-quarantined`` verifies each quarantined delivery again with the settings now in force and
appends what verifies to the inbox (the inbox's ``(receiver, event_id)`` dedup holds), removing it
from quarantine. Secrets are never printed.

Both work on any object with the inbox's quarantine interface (``quarantined``, ``append``,
``remove_quarantined``), which is how the tests drive them.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from collections.abc import Sequence
from typing import Any

__all__ = ["add_arguments", "detect_quarantined", "replay_quarantined", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="signature_command", metavar="ACTION")
    sub.required = True
    for name, help_text in (
        ("detect", "find the signature scheme of quarantined deliveries and print the settings that verify them"),
        ("replay-quarantined", "verify quarantined deliveries again and append what now verifies"),
    ):
        command = sub.add_parser(name, help=help_text, description=help_text)
        command.add_argument("--receiver", required=True, help="receiver name (as in the receiver URL)")
        command.add_argument("--inbox-url", default=None, help="default: [ion_webhooks] inbox_url")
        command.add_argument("--limit", type=int, default=100, help="quarantined deliveries to read (default 100)")


def _secrets(receiver: str) -> tuple[str, ...]:
    from airflow_provider_ion import config
    from airflow_provider_ion.webhooks.secrets import (
        SecretResolver,
        SecretSource,
        airflow_connection_source,
        airflow_variable_source,
        ion_lookup_source,
    )

    sources: list[SecretSource] = [airflow_variable_source, airflow_connection_source]
    conn_id = config.get("ion_conn_id")
    if conn_id and conn_id.lower() not in ("none", "off", "false"):
        sources.append(ion_lookup_source(conn_id))
    found = SecretResolver(sources).resolve(receiver)
    return tuple(found.secrets) if found is not None else ()


def detect_quarantined(inbox: Any, receiver: str, secrets: Sequence[str], limit: int = 100) -> dict[str, Any]:
    """What :func:`~.signature_detect.detect` finds on each quarantined delivery of ``receiver``:
    ``{"deliveries": n, "matched": k, "schemes": [{description, settings, deliveries}]}``."""
    from airflow_provider_ion.webhooks.signature_detect import detect

    rows = inbox.quarantined(receiver, limit=limit)
    tally: Counter[tuple[str, str]] = Counter()
    described: dict[tuple[str, str], dict[str, Any]] = {}
    matched = 0
    for row in rows:
        matches = detect(bytes(row.body), dict(row.headers), secrets)
        matched += bool(matches)
        if matches:
            best = matches[0]
            key = (best.describe(), json.dumps(best.settings, sort_keys=True))
            tally[key] += 1
            described[key] = {"description": best.describe(), "settings": best.settings, "scheme": best.scheme}
    schemes = [{**described[k], "deliveries": n} for k, n in tally.most_common()]
    return {"receiver": receiver, "deliveries": len(rows), "matched": matched, "schemes": schemes}


def replay_quarantined(
    inbox: Any, receiver: str, secrets: Sequence[str], scheme: Any, limit: int = 100
) -> dict[str, int]:
    """Append the quarantined deliveries of ``receiver`` that verify with ``scheme`` now; remove them
    from quarantine. Returns counts: ``appended``, ``duplicates``, ``still_failing``, ``invalid``."""
    from airflow_provider_ion.webhooks.signature import verify

    counts = {"appended": 0, "duplicates": 0, "still_failing": 0, "invalid": 0}
    done: list[Any] = []
    for row in inbox.quarantined(receiver, limit=limit):
        headers = {str(k).lower(): str(v) for k, v in dict(row.headers).items()}
        body = bytes(row.body)
        if not verify(body, headers.get(scheme.header), list(secrets), scheme):
            counts["still_failing"] += 1
            continue
        try:
            event = json.loads(body)
            event_id = event["event_id"]
        except (ValueError, KeyError, TypeError):
            counts["invalid"] += 1
            continue
        result = inbox.append(
            receiver,
            event_id,
            body,
            resource=event.get("resource"),
            action=event.get("action"),
            subscription_id=event.get("subscription_id"),
        )
        counts["duplicates" if result.duplicate else "appended"] += 1
        done.append(row.id)
    if done:
        inbox.remove_quarantined(done)
    return counts


def run(args: argparse.Namespace) -> int:
    from airflow_provider_ion import config
    from airflow_provider_ion.webhooks.app import ReceiverSettings
    from airflow_provider_ion.webhooks.inbox import Inbox

    receiver = args.receiver.strip().lower()  # receiver names are canonical lower case
    secrets = _secrets(receiver)
    if not secrets:
        print(f"No shared secret is configured for receiver {receiver!r}; set it first.", file=sys.stderr)
        return 2
    inbox = Inbox.from_url(config.inbox_url(args.inbox_url))
    try:
        if args.signature_command == "detect":
            found = detect_quarantined(inbox, receiver, secrets, args.limit)
            print(f"{found['deliveries']} quarantined deliveries for {receiver!r}, {found['matched']} explained")
            for scheme in found["schemes"]:
                print(f"\n  {scheme['deliveries']} x {scheme['description']}")
                if scheme["settings"]:
                    print("  [ion_webhooks]")
                    for key, value in scheme["settings"].items():
                        print(f"  {key} = {value if value else 'none'}")
            if found["deliveries"] and not found["matched"]:
                print("No candidate scheme verifies them with the configured secret: check the secret first.")
            return 0 if found["matched"] or not found["deliveries"] else 1
        counts = replay_quarantined(inbox, receiver, secrets, ReceiverSettings.from_airflow_config().scheme, args.limit)
        print(", ".join(f"{k.replace('_', ' ')}: {v}" for k, v in counts.items()))
        return 0 if counts["still_failing"] == 0 else 1
    finally:
        inbox.close()
