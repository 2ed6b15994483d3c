"""README's settings table is ``config.OPTIONS``: generated from it, so the two cannot drift.

The table sits between the ``settings`` markers in README.md. The test fails when it differs from what
:func:`render` makes of ``OPTIONS``; run it with ``UPDATE_README=1`` to rewrite that section.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from airflow_provider_ion.config import OPTIONS, SECTION

README = Path(__file__).resolve().parents[1] / "README.md"
START, END = "<!-- settings:start -->", "<!-- settings:end -->"


def _default(option: dict[str, Any]) -> str:
    value = option.get("default")
    if value is None:
        return "unset"
    if value == "":
        return "empty"
    return f"`{value}`"


def render(options: dict[str, dict[str, Any]]) -> str:
    lines = [f"| `[{SECTION}]` key | type | default | meaning |", "|---|---|---|---|"]
    for key, option in options.items():
        meaning = " ".join(option["description"].split()).replace("|", "\\|")
        lines.append(f"| `{key}` | {option['type']} | {_default(option)} | {meaning} |")
    return "\n".join(lines)


def test_readme_settings_table_lists_every_option() -> None:
    text = README.read_text(encoding="utf-8")
    assert START in text and END in text, f"README.md lacks the {START} ... {END} markers"
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    expected = f"{head}{START}\n{render(OPTIONS)}\n{END}{tail}"
    if os.environ.get("UPDATE_README") == "1":
        README.write_text(expected, encoding="utf-8")
    assert text == expected, "README's settings table differs from config.OPTIONS; rerun with UPDATE_README=1"


def test_render_names_every_option_once() -> None:
    table = render(OPTIONS)
    for key in OPTIONS:
        assert table.count(f"| `{key}` |") == 1, key
