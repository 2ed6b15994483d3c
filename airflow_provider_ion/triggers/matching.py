"""Which inbox events a trigger or sensor waits for: pure functions, no I/O, nothing heavy to import.

A filter has four parts, all optional, all of which must hold:

- ``receiver``: the receiver name the delivery arrived at (receiver names are lower case; compared so).
- ``resources`` / ``actions``: ION's names (``RUNS``, ``CREATE``); compared case-insensitively and in
  either spelling (``RUN`` or ``RUNS``: :func:`name_key`), and a list means any of them.
- ``match``: ``{dotted.path: expected}`` into the delivery body, e.g. ``{"data.runId": 7}``. A path
  segment is a dict key, or a list index when the segment is all digits and the value is a list.
  An expected list means "any of these".

How values compare (templates render to strings, so a rendered ``"7"`` must find ``7``):

- numbers compare as numbers, and a string that parses as a number equals that number: ``"7" == 7 == 7.0``
  (``"7.50" == 7.5``); two strings compare as strings (``"07" != "7"``);
- booleans equal booleans, or the strings ``"true"``/``"false"`` in any case (``True != 1``);
- ``None`` matches a JSON ``null`` or a missing field (and the rendered string ``"None"``);
- anything else (strings, objects, lists) compares with ``==``.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from airflow_provider_ion.resources import canonical_resource

__all__ = ["EventFilter", "get_path", "name_key", "normalize_names", "values_equal"]

_MISSING = object()


def normalize_names(value: str | Iterable[str] | None) -> list[str] | None:
    """``"runs"`` or ``["RUNS", "issues"]`` -> sorted, upper-cased, de-duplicated list; ``None`` -> ``None``.

    Sorted so that the serialized form (which Airflow hashes for event triggers) is the same whatever
    order the DAG author wrote.
    """
    if value is None:
        return None
    items = [value] if isinstance(value, str) else list(value)
    names = sorted({str(item).strip().upper() for item in items if str(item).strip()})
    return names or None


def name_key(value: Any) -> str | None:
    """The comparison key of a resource/action name in an event or a filter: ``RUNS`` and ``RUN`` give ``RUN``.

    :func:`airflow_provider_ion.resources.canonical_resource` for a non-empty string; ``None`` for a
    missing or non-string field (it matches no named filter).
    """
    if not isinstance(value, str) or not value.strip():
        return None
    return canonical_resource(value)


def get_path(body: Any, path: str) -> Any:
    """The value at ``path`` (``"data.runId"``, ``"items.0.id"``) in ``body``, or a private sentinel."""
    current = body
    for part in path.split("."):
        if isinstance(current, Mapping):
            if part not in current:
                return _MISSING
            current = current[part]
        elif isinstance(current, list) and part.isdigit():
            index = int(part)
            if index >= len(current):
                return _MISSING
            current = current[index]
        else:
            return _MISSING
    return current


def _as_number(value: Any) -> Decimal | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        try:
            return Decimal(str(value))
        except InvalidOperation:  # nan/inf
            return None
    if isinstance(value, str):
        try:
            number = Decimal(value.strip())
        except InvalidOperation:
            return None
        return number if number.is_finite() else None
    return None


def _as_bool(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    return None


def values_equal(actual: Any, expected: Any) -> bool:
    """One actual value against one expected value, by the rules in the module doc."""
    if expected is None or expected == "None":
        if actual is _MISSING or actual is None:
            return True
        if expected is None:
            return False
    if actual is _MISSING or actual is None:
        return False
    if isinstance(actual, bool) or isinstance(expected, bool):
        a, e = _as_bool(actual), _as_bool(expected)
        return a is not None and a == e
    if isinstance(actual, str) and isinstance(expected, str):
        return actual == expected
    a_num, e_num = _as_number(actual), _as_number(expected)
    if a_num is not None and e_num is not None:
        return a_num == e_num
    return bool(actual == expected)


def _matches_value(actual: Any, expected: Any) -> bool:
    if isinstance(expected, list | tuple | set | frozenset):
        return any(values_equal(actual, option) for option in expected)
    return values_equal(actual, expected)


@dataclass(frozen=True)
class EventFilter:
    """A normalized filter; ``matches`` takes an ``InboxEvent`` or its ``to_dict()`` form.

    Example::

        f = EventFilter.build(resource="RUNS", action=["CREATE", "UPDATE"], match={"data.runId": "7"})
        f.matches({"receiver": "factory", "resource": "RUNS", "action": "CREATE",
                   "payload": {"data": {"runId": 7}}})   # True
    """

    receiver: str | None = None
    resources: tuple[str, ...] | None = None
    actions: tuple[str, ...] | None = None
    match: tuple[tuple[str, Any], ...] = ()

    @classmethod
    def build(
        cls,
        *,
        receiver: str | None = None,
        resource: str | Iterable[str] | None = None,
        action: str | Iterable[str] | None = None,
        match: Mapping[str, Any] | None = None,
    ) -> EventFilter:
        resources = normalize_names(resource)
        actions = normalize_names(action)
        items = tuple(sorted((str(k), v) for k, v in (match or {}).items()))
        for path, _ in items:
            if not path or any(not part for part in path.split(".")):
                raise ValueError(f"match path {path!r} must be dotted keys like 'data.runId'")
        return cls(
            receiver=str(receiver).strip().lower() or None if receiver else None,  # receivers are lower case
            resources=tuple(resources) if resources else None,
            actions=tuple(actions) if actions else None,
            match=items,
        )

    @functools.cached_property
    def _canonical(self) -> tuple[frozenset[str | None] | None, frozenset[str | None] | None]:
        resources = None if self.resources is None else frozenset(map(name_key, self.resources))
        actions = None if self.actions is None else frozenset(map(name_key, self.actions))
        return resources, actions

    def matches(self, event: Any) -> bool:
        get = event.get if isinstance(event, Mapping) else lambda name: getattr(event, name, None)
        if self.receiver is not None and get("receiver") != self.receiver:
            return False
        resources, actions = self._canonical
        if resources is not None and name_key(get("resource")) not in resources:
            return False
        if actions is not None and name_key(get("action")) not in actions:
            return False
        payload = get("payload")
        return all(_matches_value(get_path(payload, path), expected) for path, expected in self.match)

    def fingerprint(self) -> str:
        """A short stable hash of the filter: the default consumer name of an event trigger."""
        spec = {
            "receiver": self.receiver,
            "resources": self.resources,
            "actions": self.actions,
            "match": [[k, v] for k, v in self.match],
        }
        text = json.dumps(spec, sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]
