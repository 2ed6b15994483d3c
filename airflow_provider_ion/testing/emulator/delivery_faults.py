"""Delivery faults: the ways real webhook traffic misbehaves, on demand, so receivers prove they cope.

A healthy loopback delivery never duplicates, reorders, stalls or loses its connection; ION in
production does all four (at-least-once, no ordering guarantee). Each fault applies to the next
``times`` matching deliveries (``times=None``: every one until cleared, for benchmarks):

- ``duplicate``: send each attempt ``copies`` times at once (the same body and signature): the
  receiver must store the event once, also when the copies race each other.
- ``delay``: wait ``delay`` extra seconds before the attempt is sent.
- ``drop``: the emulator closes its own connection. ``when="before"``: mid-request, after half the
  body (the receiver never has the whole event); ``when="after"``: after the receiver answered, before
  the emulator reads the answer (the receiver stored the event, ION believes it failed and retries).
  Either way the attempt counts as failed and is retried on the schedule.
- ``reorder``: hold matching events until ``batch`` of them are collected (or ``window`` seconds
  passed), then start them in a shuffled order.

``duplicate``, ``delay`` and ``drop`` are consumed per attempt; ``reorder`` per event.
Optional filters: ``resource``, ``action``, ``receiver_id``.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any, Literal

from airflow_provider_ion.testing.emulator.faults import PendingFaults

DeliveryFaultKind = Literal["duplicate", "delay", "drop", "reorder"]
DropWhen = Literal["before", "after"]

_KINDS = ("duplicate", "delay", "drop", "reorder")
_ids = itertools.count(1)


@dataclass
class DeliveryFault:
    """One queued delivery fault; ``remaining`` counts down (None: unlimited)."""

    kind: DeliveryFaultKind
    copies: int = 2
    delay: float = 0.0
    when: DropWhen = "before"
    batch: int = 10
    window: float = 0.5
    seed: int | None = None
    resource: str | None = None
    action: str | None = None
    receiver_id: int | None = None
    remaining: int | None = 1
    id: int = 0

    def matches(self, resource: str, action: str, receiver_id: int) -> bool:
        return (
            (self.resource is None or self.resource == resource)
            and (self.action is None or self.action == action)
            and (self.receiver_id is None or self.receiver_id == receiver_id)
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def make_delivery_fault(
    kind: DeliveryFaultKind,
    *,
    times: int | None = 1,
    copies: int = 2,
    delay: float = 0.0,
    when: DropWhen = "before",
    batch: int = 10,
    window: float = 0.5,
    seed: int | None = None,
    resource: str | None = None,
    action: str | None = None,
    receiver_id: int | str | None = None,
) -> DeliveryFault:
    """Validate one delivery fault (shared by the Python API and ``POST /_emulator/deliveries/faults``)."""
    if kind not in _KINDS:
        raise ValueError(f"delivery fault kind must be one of {list(_KINDS)}, got {kind!r}")
    if times is not None and (not isinstance(times, int) or isinstance(times, bool) or times < 1):
        raise ValueError(f"times must be a positive integer or None (unlimited), got {times!r}")
    if kind == "duplicate" and (not isinstance(copies, int) or copies < 2):
        raise ValueError(f"a duplicate fault sends copies >= 2 requests per attempt, got {copies!r}")
    if kind == "delay" and not delay > 0:
        raise ValueError("a delay fault needs delay > 0 seconds")
    if delay < 0:
        raise ValueError("delay must not be negative")
    if when not in ("before", "after"):
        raise ValueError(f"when must be 'before' or 'after', got {when!r}")
    if kind == "reorder" and (not isinstance(batch, int) or batch < 2 or not window > 0):
        raise ValueError("a reorder fault needs batch >= 2 and window > 0 seconds")
    return DeliveryFault(
        kind=kind,
        copies=copies,
        delay=float(delay),
        when=when,
        batch=batch,
        window=float(window),
        seed=seed,
        resource=resource,
        action=action,
        receiver_id=int(receiver_id) if receiver_id is not None else None,
        remaining=times,
        id=next(_ids),
    )


def delivery_fault_from_json(data: Mapping[str, Any]) -> DeliveryFault:
    """A delivery fault from a JSON object with the names of :func:`make_delivery_fault`."""
    allowed = {
        "kind",
        "times",
        "copies",
        "delay",
        "when",
        "batch",
        "window",
        "seed",
        "resource",
        "action",
        "receiver_id",
    }
    unknown = set(data) - allowed
    if unknown:
        raise ValueError(f"unknown delivery fault field(s): {', '.join(sorted(unknown))}")
    if "kind" not in data:
        raise ValueError(f"a delivery fault needs a kind: {', '.join(_KINDS)}")
    return make_delivery_fault(**dict(data))


class DeliveryFaultQueue(PendingFaults[DeliveryFault]):
    """Pending delivery faults; the first match of the asked kinds is consumed."""

    def take(self, kinds: tuple[str, ...], resource: str, action: str, receiver_id: int) -> DeliveryFault | None:
        """Consume one use of the first fault of one of ``kinds`` that matches; a copy of it, or None."""
        with self._lock:
            for fault in self._faults:
                if fault.kind in kinds and fault.matches(resource, action, receiver_id):
                    if fault.remaining is not None:
                        fault.remaining -= 1
                        if fault.remaining == 0:
                            self._faults.remove(fault)
                    return replace(fault)
        return None
