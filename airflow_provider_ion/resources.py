"""ION resource names either way: ``RUN`` or ``RUNS``, any case.

ION's manual writes plural resource names (``RUNS``, ``ISSUES``); its newer pages write singular ones
(``RUN``, ``PURCHASE_ORDER``, ``PART_INVENTORY``). Which one a tenant's ``ResourceEnum`` (and so its
delivery bodies) uses is not published. :func:`canonical_resource` maps both spellings onto one key,
so code can compare a user's spelling with the live one without a list frozen in our code.

Pure and cheap to import (no Airflow, no gql): triggers, sensors and operators may all call it.

Example::

    >>> canonical_resource("runs") == canonical_resource("RUN")
    True
    >>> canonical_resource("Part Inventories")
    'PART_INVENTORY'
"""

from __future__ import annotations

import re
from collections.abc import Iterable

__all__ = ["canonical_resource", "resolve_resource"]

_SEPARATORS = re.compile(r"[\s\-.]+")


def _singular(word: str) -> str:
    if word.endswith("IES") and len(word) > 4:
        return word[:-3] + "Y"
    if word.endswith(("SSES", "XES", "CHES", "SHES")) and len(word) > 4:
        return word[:-2]
    if word.endswith("S") and not word.endswith(("SS", "US", "IS")) and len(word) > 1:
        return word[:-1]
    return word


def canonical_resource(name: str) -> str:
    """One key for every spelling of a resource: upper case, ``_`` between words, last word singular.

    ``"RUNS"``, ``"run"`` and ``"Run"`` give ``"RUN"``; ``"PART_INVENTORIES"`` and ``"part-inventory"``
    give ``"PART_INVENTORY"``. Compare keys, never show them: show the live enum's own value.

    :raises ValueError: ``name`` is empty or not a string.
    """
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"An ION resource name must be a non-empty string, got {name!r}")
    words = [w for w in _SEPARATORS.sub("_", name.strip().upper()).split("_") if w]
    words[-1] = _singular(words[-1])
    return "_".join(words)


def resolve_resource(name: str, live_values: Iterable[str]) -> str | None:
    """The value of ``live_values`` (a live enum) that spells ``name``, or None if none does.

    An exact match wins; otherwise the first value with the same :func:`canonical_resource` key.
    """
    values = list(live_values)
    if name in values:
        return name
    key = canonical_resource(name)
    for value in values:
        if canonical_resource(value) == key:
            return value
    return None
