"""``airflow-ion emulator create|update|delete|get|list|events``: make ION changes in a running emulator.

Each change fires the webhooks ION would fire (``<RESOURCE>/CREATE``, ``UPDATE``, ``DELETE``) to every
subscribed receiver. The emulator is found at ``--url``, else ``$ION_EMULATOR_URL`` (``airflow-ion dev``
prints it), else ``http://127.0.0.1:8765`` (``airflow-ion emulator``'s default port). Prints the object as
JSON; exit status 1 with the emulator's error when it refuses (an unknown run id, say).

Examples::

    airflow-ion emulator create issue --title "Torque out of spec" --run-id 1
    airflow-ion emulator update run 1 --status IN_PROGRESS --workcenter WC-2
    airflow-ion emulator delete purchase-order 3
    airflow-ion emulator events --limit 5        # the newest webhooks, with the bodies sent

The flags of each kind come from the emulator's domain model (``--run-id`` is ``runId``); the same
operations are plain HTTP on ``/_emulator/objects/...`` (see ``GET /_emulator/``).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from typing import Any

from airflow_provider_ion.testing.emulator.domain import DOMAIN_KINDS, DomainKind

URL_ENV = "ION_EMULATOR_URL"
DEFAULT_URL = "http://127.0.0.1:8765"
COMMANDS = ("create", "update", "delete", "get", "list", "events")


def cli_name(kind: DomainKind) -> str:
    """``PurchaseOrder`` -> ``purchase-order``: the kind's name on the command line and in URLs."""
    return re.sub(r"(?<!^)(?=[A-Z])", "-", kind.type_name).lower()


def find_kind(name: str) -> DomainKind | None:
    """The kind called ``name``: its table (``purchaseOrders``), type (``PurchaseOrder``) or CLI name."""
    wanted = name.strip().lower().replace("_", "-")
    for table, kind in DOMAIN_KINDS.items():
        if wanted in (table.lower(), kind.type_name.lower(), cli_name(kind), cli_name(kind) + "s"):
            return kind
    return None


def _flag(field: str) -> str:
    return "--" + re.sub(r"(?<!^)(?=[A-Z])", "-", field).lower()


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None


def _field_type(kind: DomainKind, field: str) -> Any:
    if field in kind.id_fields:
        return int
    if field in kind.non_negative:
        return _number
    return str


def add_subcommands(parser: argparse.ArgumentParser) -> None:
    """Add the client commands under ``airflow-ion emulator`` (which serves when given none)."""
    sub = parser.add_subparsers(dest="emulator_command", metavar="COMMAND")
    helps = {
        "create": "create an ION object (fires <RESOURCE>/CREATE)",
        "update": "change an ION object (fires <RESOURCE>/UPDATE)",
        "delete": "delete an ION object (fires <RESOURCE>/DELETE)",
        "get": "show one ION object",
        "list": "list the ION objects of a kind",
    }
    for command, help_text in helps.items():
        cmd = sub.add_parser(command, help=help_text, description=help_text)
        kinds = cmd.add_subparsers(dest="kind", metavar="KIND")
        kinds.required = True
        for kind in DOMAIN_KINDS.values():
            k = kinds.add_parser(cli_name(kind), help=f"{kind.type_name} (webhook resource {kind.resource})")
            _add_url(k)
            if command != "create" and command != "list":
                k.add_argument("id", type=int, help=f"the {kind.type_name}'s id")
            if command in ("create", "update"):
                for field in kind.writable:
                    required = command == "create" and field in kind.required
                    what = f"{kind.type_name}.{field}" + (" (required)" if required else "")
                    k.add_argument(
                        _flag(field), dest=f"field_{field}", metavar=field.upper(), type=_field_type(kind, field),
                        required=required, help=what,
                    )  # fmt: skip
    events = sub.add_parser("events", help="the newest webhook events with the bodies the emulator sent")
    _add_url(events)
    events.add_argument("--limit", type=int, default=10, help="how many (default 10)")


def _add_url(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--url",
        default=None,
        help=f"the emulator (default ${URL_ENV}, else {DEFAULT_URL}; `airflow-ion dev` prints it)",
    )


def emulator_url(args: argparse.Namespace) -> str:
    return (getattr(args, "url", None) or os.environ.get(URL_ENV) or DEFAULT_URL).rstrip("/")


def run(args: argparse.Namespace) -> int:
    import httpx

    base = emulator_url(args)
    command = args.emulator_command
    if command == "events":
        method, path, body = "GET", f"/_emulator/events?limit={args.limit}", None
    else:
        kind = cli_name(next(k for k in DOMAIN_KINDS.values() if cli_name(k) == args.kind))
        fields = {
            name[6:]: value for name, value in vars(args).items() if name.startswith("field_") and value is not None
        }
        path = f"/_emulator/objects/{kind}"
        if command in ("create", "list"):
            method, body = {"create": ("POST", fields), "list": ("GET", None)}[command]
        else:
            path += f"/{args.id}"
            method, body = {"update": ("PATCH", fields), "delete": ("DELETE", None), "get": ("GET", None)}[command]
        if command == "update" and not fields:
            print("airflow-ion emulator update: give at least one field to change (see --help)", file=sys.stderr)
            return 2
    try:
        response = httpx.request(method, base + path, json=body, timeout=30, trust_env=False)
    except httpx.HTTPError as exc:
        print(
            f"airflow-ion emulator: no emulator at {base} ({exc}); start `airflow-ion dev` or give --url",
            file=sys.stderr,
        )
        return 1
    try:
        answer = response.json()
    except ValueError:
        answer = {"error": response.text[:500]}
    if response.status_code >= 400:
        print(f"airflow-ion emulator {command}: {answer.get('error', answer)}", file=sys.stderr)
        return 1
    print(json.dumps(answer, indent=2))
    return 0
