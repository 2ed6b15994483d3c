"""Fault injection: make the next N matching requests fail the ways real networks and gateways do.

Faults let tests prove client behaviour that a healthy server never exercises: retrying 429/5xx with
backoff, honouring ``Retry-After``, and above all *not* blindly repeating a create when the mutation
took effect but the answer was lost (``when="after"``: a status, a delay past the client's timeout,
or a dropped connection after the store changed).

Kinds:
- ``status``: answer with ``status`` (429 carries ``Retry-After``) instead of the real result.
- ``delay``: wait ``delay`` seconds, then send the real result.
- ``drop``: close the connection without any HTTP response (:mod:`.disconnect`).
``when`` is ``"before"`` (nothing executed) or ``"after"`` (executed, then the fault); ``delay`` also
applies to ``status`` and ``drop`` (wait, then fail). Defaults: status before; delay and drop after.
``skip`` lets that many matching requests pass untouched first (the first listing succeeds, a later
one fails).

Webhook delivery faults (duplicates, drops, reordering on the way *to* receivers) are another queue:
:mod:`.delivery_faults`.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any, Generic, Literal, TypeVar

FaultKind = Literal["status", "delay", "drop"]
FaultWhen = Literal["before", "after"]
Endpoint = Literal["graphql", "token"]

_DEFAULT_WHEN: dict[str, FaultWhen] = {"status": "before", "delay": "after", "drop": "after"}
_ids = itertools.count(1)


@dataclass
class Fault:
    """One queued fault; ``remaining`` counts down as matching requests consume it."""

    kind: FaultKind
    status: int | None = None
    when: FaultWhen = "before"
    delay: float = 0.0
    retry_after: int | None = None
    operation: str | None = None
    query_contains: str | None = None
    endpoint: Endpoint = "graphql"
    remaining: int = 1
    skip: int = 0
    id: int = 0

    def matches(self, endpoint: str, operation: str | None, query: str | None) -> bool:
        if endpoint != self.endpoint:
            return False
        if self.operation is not None and operation != self.operation:
            return False
        return self.query_contains is None or (query is not None and self.query_contains in query)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def make_fault(
    kind: FaultKind,
    *,
    status: int | None = None,
    when: FaultWhen | None = None,
    delay: float = 0.0,
    retry_after: int | None = None,
    operation: str | None = None,
    query_contains: str | None = None,
    endpoint: Endpoint = "graphql",
    times: int = 1,
    skip: int = 0,
) -> Fault:
    """Validate the arguments of one fault (shared by the Python API and ``POST /_emulator/faults``)."""
    if kind not in _DEFAULT_WHEN:
        raise ValueError(f"fault kind must be one of {sorted(_DEFAULT_WHEN)}, got {kind!r}")
    when = when or _DEFAULT_WHEN[kind]
    if when not in ("before", "after"):
        raise ValueError(f"when must be 'before' or 'after', got {when!r}")
    if endpoint not in ("graphql", "token"):
        raise ValueError(f"endpoint must be 'graphql' or 'token', got {endpoint!r}")
    if kind == "status" and (not isinstance(status, int) or not 400 <= status <= 599):
        raise ValueError(f"a status fault needs an HTTP error status (400-599), got {status!r}")
    if kind != "status" and status is not None:
        raise ValueError("status only applies to kind='status'")
    if kind == "delay" and not delay > 0:
        raise ValueError("a delay fault needs delay > 0 seconds")
    if delay < 0:
        raise ValueError("delay must not be negative")
    if not isinstance(times, int) or times < 1:
        raise ValueError(f"times must be a positive integer, got {times!r}")
    if not isinstance(skip, int) or isinstance(skip, bool) or skip < 0:
        raise ValueError(f"skip must be a non-negative integer, got {skip!r}")
    if retry_after is None and status == 429:
        retry_after = 1
    return Fault(
        kind=kind,
        status=status,
        when=when,
        delay=float(delay),
        retry_after=retry_after,
        operation=operation,
        query_contains=query_contains,
        endpoint=endpoint,
        remaining=times,
        skip=skip,
        id=next(_ids),
    )


def fault_from_json(data: Mapping[str, Any]) -> Fault:
    """A fault from the JSON body of ``POST /_emulator/faults`` (same names as :func:`make_fault`)."""
    allowed = {
        "kind",
        "status",
        "when",
        "delay",
        "retry_after",
        "operation",
        "query_contains",
        "endpoint",
        "times",
        "skip",
    }
    unknown = set(data) - allowed
    if unknown:
        raise ValueError(f"unknown fault field(s): {', '.join(sorted(unknown))}")
    if "kind" not in data:
        raise ValueError("a fault needs a kind: status, delay or drop")
    return make_fault(**dict(data))


F = TypeVar("F")


class PendingFaults(Generic[F]):
    """Faults waiting to be applied, in the order added, thread-safe. Subclasses say which one a
    request (or delivery attempt) consumes: ``take``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[F] = []

    def add(self, fault: F) -> F:
        with self._lock:
            self._faults.append(fault)
        return fault

    def clear(self) -> int:
        """Drop every pending fault; returns how many there were."""
        with self._lock:
            count = len(self._faults)
            self._faults.clear()
            return count

    def pending(self) -> list[F]:
        """Copies of the pending faults."""
        with self._lock:
            return [replace(f) for f in self._faults]  # type: ignore[type-var]

    def __len__(self) -> int:
        with self._lock:
            return len(self._faults)


class FaultQueue(PendingFaults[Fault]):
    """Pending GraphQL/token faults; the first that matches a request is consumed."""

    def take(self, endpoint: str, operation: str | None = None, query: str | None = None) -> Fault | None:
        """Consume one use of the first fault matching this request, if any (a fault still skipping
        lets the request pass it, counting one skip, and the next queued fault is considered)."""
        with self._lock:
            for fault in self._faults:
                if fault.matches(endpoint, operation, query):
                    if fault.skip > 0:
                        fault.skip -= 1
                        continue
                    fault.remaining -= 1
                    if fault.remaining == 0:
                        self._faults.remove(fault)
                    return fault
        return None
