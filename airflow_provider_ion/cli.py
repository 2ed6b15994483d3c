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
    "demo-cluster": ("airflow_provider_ion.testing.cluster_demo", "the same on a distributed Airflow (Celery)"),
    "dev": ("airflow_provider_ion.testing.dev", "your DAGs on a local Airflow wired to the ION emulator, until Ctrl-C"),
    "emulator": (
        "airflow_provider_ion.testing.emulator.cli",
        "run the ION emulator; create/update/delete ION objects in a running one",
    ),
    "receiver": ("airflow_provider_ion.webhooks.receiver_cli", "serve the webhook receiver on its own"),
    "inbox": ("airflow_provider_ion.webhooks.inbox_cli", "look into the inbox: tail, stats, purge"),
    "doctor": ("airflow_provider_ion.hooks.doctor", "check a connection's ION against the published API"),
    "signature": (
        "airflow_provider_ion.webhooks.signature_cli",
        "find the signature scheme of quarantined deliveries; replay them once they verify",
    ),
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; only ``command``'s module is imported (every subcommand's when ``command`` is None).

    Every subcommand is listed in ``--help`` either way, from :data:`SUBCOMMANDS` alone.
    """
    parser = argparse.ArgumentParser(prog="airflow-ion", description="Tools of the ION provider for Airflow.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        command_parser = sub.add_parser(name, help=help_text, description=help_text)
        if command is None or command == name:
            module = importlib.import_module(module_name)
            module.add_arguments(command_parser)
            command_parser.set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # The first word that is not an option names the subcommand (the top level has only --help).
    command = next((arg for arg in argv if not arg.startswith("-")), "")
    args = build_parser(command if command in SUBCOMMANDS else "").parse_args(argv)
    return int(args._run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
