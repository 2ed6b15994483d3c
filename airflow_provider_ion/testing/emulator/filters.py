"""ION-style list filters (``filters: {status: {neq: "DONE"}}``) applied to stored objects.

Operators follow the ``*Filter`` inputs of schema.graphql: ``eq``, ``neq``, ``in``, ``contains`` and
``gt``/``gte``/``lt``/``lte``. An operator given as null constrains nothing. IDs arrive as strings and
are stored as integers, so equality compares text. ``contains`` is case-insensitive (an assumption:
ION does not document it; a case-insensitive match is the forgiving choice for human-entered names).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from airflow_provider_ion.testing.emulator.errors import BadUserInput

Predicate = Callable[[Mapping[str, Any]], bool]


def compile_filters(filters: Mapping[str, Any] | None) -> Predicate:
    """A predicate for ``filters`` (field -> {operator: value}); validates values up front."""
    checks: list[Callable[[Mapping[str, Any]], bool]] = []
    for field, ops in (filters or {}).items():
        if ops is None:
            continue
        if not isinstance(ops, Mapping):
            raise BadUserInput(f"Filter on {field!r} must be an object of operators, got {ops!r}")
        for op, value in ops.items():
            if value is None:
                continue
            checks.append(_check(field, op, value))
    return lambda obj: all(check(obj) for check in checks)


def _check(field: str, op: str, value: Any) -> Callable[[Mapping[str, Any]], bool]:
    if op == "eq":
        return lambda obj: _equal(obj.get(field), value)
    if op == "neq":
        return lambda obj: not _equal(obj.get(field), value)
    if op == "in":
        if not isinstance(value, list | tuple | set):
            raise BadUserInput(f"Filter {field}.in must be a list")
        return lambda obj: any(_equal(obj.get(field), v) for v in value)
    if op == "contains":
        needle = str(value).casefold()
        return lambda obj: obj.get(field) is not None and needle in str(obj.get(field)).casefold()
    if op in ("gt", "gte", "lt", "lte"):
        bound = _comparable(value, f"{field}.{op}")
        compare = _COMPARATORS[op]
        return lambda obj: obj.get(field) is not None and compare(_comparable(obj.get(field), field), bound)
    raise BadUserInput(f"Unknown filter operator {op!r} on {field!r}")


_COMPARATORS: dict[str, Callable[[Any, Any], bool]] = {
    "gt": lambda a, b: a > b,
    "gte": lambda a, b: a >= b,
    "lt": lambda a, b: a < b,
    "lte": lambda a, b: a <= b,
}


def _equal(stored: Any, wanted: Any) -> bool:
    if stored is None:
        return False
    if isinstance(stored, bool) or isinstance(wanted, bool):
        return stored is wanted
    return str(stored) == str(wanted)


def _comparable(value: Any, what: str) -> Any:
    """Numbers compare as numbers; anything else must be an ISO-8601 timestamp (naive means UTC)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return value
    if isinstance(value, datetime):
        moment = value
    else:
        try:
            moment = datetime.fromisoformat(str(value))
        except ValueError:
            raise BadUserInput(f"{what}: {value!r} is not an ISO-8601 timestamp") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
