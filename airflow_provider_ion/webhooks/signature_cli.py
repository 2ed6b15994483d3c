"""``airflow-ion signature detect|replay-quarantined --receiver NAME``.

``detect`` reads the receiver's quarantined deliveries (deliveries to a known receiver whose signature
failed: ``Inbox.quarantined()``), tries the candidate schemes of :mod:`.signature_detect` with the
receiver's configured secret(s) and prints the ``[ion_webhooks]`` settings that verify them.
``replay-quarantined`` verifies each quarantined delivery again with the settings now in force and
appends what verifies to the inbox (the inbox's ``(receiver, event_id)`` dedup holds), removing it
from quarantine. Secrets are never printed.

``replay-quarantined`` here is an alias of ``airflow-ion inbox replay-quarantined``; both (and the UI's
replay action) run :func:`~.quarantine_replay.replay_quarantined`, the one implementation.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

__all__ = ["add_arguments", "replay_command", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="signature_command", metavar="ACTION")
    sub.required = True
    for name, help_text in (
        ("detect", "find the signature scheme of quarantined deliveries and print the settings that verify them"),
        ("replay-quarantined", "alias of `airflow-ion inbox replay-quarantined`"),
    ):
        command = sub.add_parser(name, help=help_text, description=help_text)
        command.add_argument("--receiver", required=True, help="receiver name (as in the receiver URL)")
        command.add_argument("--inbox-url", default=None, help="default: [ion_webhooks] inbox_url")
        command.add_argument("--limit", type=int, default=100, help="quarantined deliveries to read (default 100)")


def replay_command(inbox: Any, receiver: str, limit: int = 100) -> int:
    """Replay ``receiver``'s quarantined deliveries with the settings now in force and print the counts;
    the body of ``airflow-ion inbox replay-quarantined`` (and its alias ``signature replay-quarantined``).
    Returns 0 when nothing is left failing, 1 otherwise, 2 when no secret is configured."""
    from airflow_provider_ion.webhooks.quarantine_replay import current_scheme, receiver_secrets, replay_quarantined

    receiver = receiver.strip().lower()  # receiver names are canonical lower case
    secrets = receiver_secrets(receiver)
    if not secrets:
        print(f"No shared secret is configured for receiver {receiver!r}; set it first.", file=sys.stderr)
        return 2
    counts = replay_quarantined(inbox, receiver, secrets, current_scheme(), limit).counts()
    print(", ".join(f"{k.replace('_', ' ')}: {v}" for k, v in counts.items()))
    return 0 if counts["still_failing"] == 0 and counts["invalid"] == 0 else 1


def run(args: argparse.Namespace) -> int:
    from airflow_provider_ion import config
    from airflow_provider_ion.webhooks.inbox import Inbox
    from airflow_provider_ion.webhooks.quarantine_replay import detect_quarantined, receiver_secrets

    receiver = args.receiver.strip().lower()  # receiver names are canonical lower case
    inbox = Inbox.from_url(config.inbox_url(args.inbox_url))
    try:
        if args.signature_command == "detect":
            secrets = receiver_secrets(receiver)
            if not secrets:
                print(f"No shared secret is configured for receiver {receiver!r}; set it first.", file=sys.stderr)
                return 2
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
        return replay_command(inbox, receiver, args.limit)
    finally:
        inbox.close()
