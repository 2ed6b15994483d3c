"""The ``airflow-ion`` command imports only the subcommand it runs."""

from __future__ import annotations

import subprocess
import sys

from airflow_provider_ion.cli import SUBCOMMANDS

PROBE = (
    "import sys\n"
    "from airflow_provider_ion import cli\n"
    "try:\n"
    "    cli.main({argv!r})\n"
    "except SystemExit:\n"
    "    pass\n"
    "print(sorted(m for m in {modules!r} if m in sys.modules))\n"
)


def loaded_after(argv: list[str]) -> list[str]:
    code = PROBE.format(argv=argv, modules=sorted(module for module, _ in SUBCOMMANDS.values()))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    return eval(out.stdout.strip().splitlines()[-1])


def test_help_lists_every_subcommand_and_imports_none() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "airflow_provider_ion.cli", "--help"], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0
    assert all(name in out.stdout for name in SUBCOMMANDS)
    assert loaded_after(["--help"]) == []


def test_a_subcommand_imports_only_its_own_module() -> None:
    assert loaded_after(["inbox", "--help"]) == [SUBCOMMANDS["inbox"][0]]
