"""The ``airflow-ion`` command.

Each subcommand lives with the code it drives and is imported only when it runs, so ``airflow-ion
--help`` stays fast and one broken optional part cannot break the others.

Subcommand modules expose ``add_arguments(parser)`` and ``run(args) -> int``.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# subcommand -> (module, one-line help)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("airflow_provider_ion.testing.demo", "the whole path: emulator + Airflow + example DAGs, with a summary"),
    "emulator": ("airflow_provider_ion.testing.emulator.cli", "run the ION emulator (GraphQL API, OAuth, webhooks)"),
    "receiver": ("airflow_provider_ion.webhooks.receiver_cli", "serve the webhook receiver on its own"),
    "inbox": ("airflow_provider_ion.webhooks.inbox_cli", "look into the inbox: tail, stats, purge"),
    "doctor": ("airflow_provider_ion.hooks.doctor", "check a connection's ION against the published API"),
    "signature": (
        "airflow_provider_ion.webhooks.signature_cli",
        "find the signature scheme of quarantined deliveries; replay them once they verify",
    ),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="airflow-ion", description="Tools of the ION provider for Airflow.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        module = importlib.import_module(module_name)
        command = sub.add_parser(name, help=help_text, description=help_text)
        module.add_arguments(command)
        command.set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args._run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
