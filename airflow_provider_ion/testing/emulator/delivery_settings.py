"""How the emulator delivers webhooks: retry schedule, timeout, concurrency, signature scheme, rules.

ION publishes none of these numbers (README, "Assumptions about ION"), so every one is a setting. The defaults
follow the practice of the big senders (Stripe, Svix: retries spread over about three days) so that a
long-running emulator behaves like ION could; tests and benchmarks shrink the schedule to fractions
of a second with :meth:`Deliveries.configure` or ``--retry-schedule``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

from airflow_provider_ion.webhooks.signature import DEFAULT_SCHEME, SignatureScheme

#: Seconds to wait after failed attempt 1, 2, ... (the last value repeats): about 2.9 days in all.
DEFAULT_RETRY_SCHEDULE: tuple[float, ...] = (10, 60, 300, 1800, 3600, 10800, 21600, 43200, 86400, 86400)


@dataclass(frozen=True)
class DeliverySettings:
    """Delivery behaviour of one emulator. Invalid values raise ``ValueError`` at configuration time.

    - ``retry_schedule``: wait (seconds) after failed attempt *n* before attempt *n + 1*; when there
      are more attempts than entries, the last entry repeats (exponential backoff is just a schedule).
    - ``max_attempts``: attempts per event before it is ``FAILED`` (default: one more than the schedule).
    - ``timeout``: seconds one attempt may take (connect + send + answer) before it counts as failed.
    - ``concurrency``: attempts in flight at once, over all receivers.
    - ``scheme``: how bodies are signed (header, algorithm, encoding, prefix).
    - ``signature_style``: ``"ion"`` (one header per :attr:`scheme`) or ``"standard-webhooks"``
      (``webhook-id``, ``webhook-timestamp``, ``webhook-signature: v1,<base64 HMAC-SHA256 of
      id.timestamp.body>``; the emulator keys it with the sharedSecret's bytes).
    - ``accept_any_2xx``: success is the receiver's ``expectedResponseCode``, which is what ION's docs
      describe; with this set, any 2xx counts too. Off by default: the stricter sender is the better
      test of a receiver (one that passes here passes a lenient ION as well).
    - ``allow_http_loopback``: ION requires HTTPS; plain ``http`` is allowed only to loopback addresses
      (tests, the demo), and not at all when this is off.
    - ``verify_tls``: check the receiver's certificate (turn off for self-signed test certificates).
    - ``loopback_only``: refuse every receiver that is not on a loopback address, before any DNS
      lookup or connection (a safety net for test suites whose receivers use example URLs).
    """

    retry_schedule: tuple[float, ...] = DEFAULT_RETRY_SCHEDULE
    max_attempts: int | None = None
    timeout: float = 10.0
    concurrency: int = 16
    scheme: SignatureScheme = DEFAULT_SCHEME
    signature_style: str = "ion"
    accept_any_2xx: bool = False
    allow_http_loopback: bool = True
    verify_tls: bool = True
    loopback_only: bool = False

    def __post_init__(self) -> None:
        schedule = tuple(float(s) for s in self.retry_schedule)
        if not schedule or any(not math.isfinite(s) or s < 0 for s in schedule):
            raise ValueError(f"retry_schedule must be a non-empty list of seconds >= 0, got {self.retry_schedule!r}")
        object.__setattr__(self, "retry_schedule", schedule)
        if self.max_attempts is None:
            object.__setattr__(self, "max_attempts", len(schedule) + 1)
        if not isinstance(self.max_attempts, int) or isinstance(self.max_attempts, bool) or self.max_attempts < 1:
            raise ValueError(f"max_attempts must be a positive integer, got {self.max_attempts!r}")
        if not self.timeout > 0:
            raise ValueError(f"timeout must be > 0 seconds, got {self.timeout!r}")
        if not isinstance(self.concurrency, int) or self.concurrency < 1:
            raise ValueError(f"concurrency must be a positive integer, got {self.concurrency!r}")
        if not isinstance(self.scheme, SignatureScheme):
            raise ValueError("scheme must be a SignatureScheme")
        if self.signature_style not in ("ion", "standard-webhooks"):
            raise ValueError(f"signature_style must be 'ion' or 'standard-webhooks', got {self.signature_style!r}")

    @property
    def attempts(self) -> int:
        """``max_attempts`` as an int (never None after construction)."""
        assert self.max_attempts is not None
        return self.max_attempts

    def delay_after(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        return self.retry_schedule[min(attempt, len(self.retry_schedule)) - 1]

    def with_changes(self, **changes: Any) -> DeliverySettings:
        """A copy with ``changes``; a new schedule without ``max_attempts`` gets the schedule's default."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        if "retry_schedule" in changes and "max_attempts" not in changes:
            values["max_attempts"] = None
        unknown = set(changes) - set(values)
        if unknown:
            raise ValueError(f"unknown delivery setting(s): {', '.join(sorted(unknown))}")
        values.update(changes)
        if isinstance(values["scheme"], Mapping):
            values["scheme"] = SignatureScheme(**values["scheme"])
        return DeliverySettings(**values)

    def to_dict(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data["retry_schedule"] = list(self.retry_schedule)
        data["scheme"] = asdict(self.scheme)
        return data


def parse_schedule(text: str | Sequence[float]) -> tuple[float, ...]:
    """``"0.05,0.1,0.2"`` (the CLI's form) or a list of numbers, as a schedule tuple."""
    if isinstance(text, str):
        try:
            return tuple(float(part) for part in text.split(",") if part.strip())
        except ValueError:
            raise ValueError(f"retry schedule must be comma-separated seconds, got {text!r}") from None
    return tuple(float(s) for s in text)
