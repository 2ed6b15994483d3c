"""``airflow-ion inbox``: look into the webhook inbox (tail, stats, purge, replay-quarantined).

Imported by ``airflow-ion --help``, so it stays light: SQLAlchemy is imported only when a subcommand
runs. The inbox URL comes from ``--url``, else ``[ion_webhooks] inbox_url``, else the SQLite file
``$AIRFLOW_HOME/ion_inbox.db``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``inbox`` options and subcommands to ``parser``."""
    parser.add_argument(
        "--url",
        default=None,
        help="inbox URL (sqlite:///path or postgresql+psycopg://...); default: [ion_webhooks] inbox_url, "
        "else $AIRFLOW_HOME/ion_inbox.db",
    )
    parser.add_argument("--table-prefix", default="ion_inbox", help="table name prefix (default: ion_inbox)")
    sub = parser.add_subparsers(dest="inbox_command", metavar="SUBCOMMAND")
    sub.required = True

    tail = sub.add_parser("tail", help="print the newest events, one JSON object per line")
    tail.add_argument("--receiver", default=None, help="only events of this receiver")
    tail.add_argument("--limit", type=int, default=20, help="how many of the newest events (default: 20)")
    tail.add_argument("--follow", "-f", action="store_true", help="keep printing new events as they arrive")
    # For tests and scripts: stop following after this many seconds.
    tail.add_argument("--follow-seconds", type=float, default=None, help=argparse.SUPPRESS)

    sub.add_parser("stats", help="counts, time range, consumer cursors and lag (JSON)")

    purge = sub.add_parser("purge", help="delete events older than N days")
    replay = sub.add_parser(
        "replay-quarantined",
        help="verify a receiver's quarantined deliveries with the signature settings now in force; "
        "append what verifies (dedup holds)",
    )
    replay.add_argument("--receiver", required=True, help="receiver name (as in the receiver URL)")
    replay.add_argument("--limit", type=int, default=100, help="quarantined deliveries to read (default: 100)")
    purge.add_argument("--older-than-days", type=float, default=7.0, help="age in days (default: 7, the retention)")


def _print(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, sort_keys=False) + "\n")
    sys.stdout.flush()


def _tail(inbox: Any, args: argparse.Namespace) -> None:
    listener = inbox.listen() if args.follow else None  # listen before reading: no event falls between
    try:
        events = inbox.latest(args.limit, receiver=args.receiver)
        for event in events:
            _print(event.to_dict())
        if listener is None:
            return
        cursor = events[-1].seq if events else inbox.latest_seq()
        deadline = None if args.follow_seconds is None else time.monotonic() + args.follow_seconds
        while deadline is None or time.monotonic() < deadline:
            wait = 1.0 if deadline is None else max(0.0, min(1.0, deadline - time.monotonic()))
            listener.wait(wait)
            while True:
                batch = inbox.read_after(cursor, limit=500)
                for event in batch:
                    if args.receiver is None or event.receiver == args.receiver:
                        _print(event.to_dict())
                if batch:
                    cursor = batch[-1].seq
                if len(batch) < 500:
                    break
    finally:
        if listener is not None:
            listener.close()


def run(args: argparse.Namespace) -> int:
    """Run ``airflow-ion inbox <subcommand>``; 0 on success, 2 when the inbox is unavailable."""
    from datetime import timedelta

    from airflow_provider_ion.webhooks.inbox import Inbox, InboxUnavailable

    inbox = Inbox.from_url(args.url, table_prefix=args.table_prefix)
    try:
        if args.inbox_command == "tail":
            _tail(inbox, args)
        elif args.inbox_command == "stats":
            sys.stdout.write(json.dumps(inbox.stats(), indent=2) + "\n")
        elif args.inbox_command == "replay-quarantined":
            from airflow_provider_ion.webhooks.signature_cli import replay_command

            return replay_command(inbox, args.receiver, args.limit)
        elif args.inbox_command == "purge":
            deleted = inbox.purge(timedelta(days=args.older_than_days))
            _print({"deleted": deleted, "older_than_days": args.older_than_days})
        else:  # pragma: no cover - argparse rejects unknown subcommands
            return 2
    except InboxUnavailable as error:
        sys.stderr.write(f"airflow-ion inbox: {error}\n")
        return 2
    except KeyboardInterrupt:
        return 0
    finally:
        inbox.close()
    return 0
