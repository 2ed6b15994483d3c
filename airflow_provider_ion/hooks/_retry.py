"""Retries for ION requests, below gql, as httpx transports sharing one pure policy.

Why below gql: gql sees one request and one answer, and cannot tell a refused request from one
that ION may have executed. At the transport we know exactly what happened on the wire.

THE MUTATION RULE. A mutation is retried only when the request provably never reached ION or ION
refused it without processing:

* connect error / connect timeout / pool timeout: the request was never sent;
* HTTP 429: ION refused it (rate limit) before executing it.

It is never retried on 5xx, read timeouts or a connection dropped after sending, because ION may
have executed it: repeating ``createWebhookReceiver`` would make a twin receiver. Those failures
surface as :class:`~airflow_provider_ion.exceptions.IonTransportError` with
``may_have_executed=True``; the caller (the operators) re-reads ION and reconciles. Queries are
read-only, so they are retried on every transient failure.

This module imports httpx at top level; the hook imports it lazily.
"""

from __future__ import annotations

import email.utils
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

__all__ = [
    "ATTEMPTS_EXT",
    "MUTATION_EXT",
    "OPERATION_EXT",
    "RetryPolicy",
    "RetryTransport",
    "never_sent",
    "parse_retry_after",
]

# Request extensions the hook sets (httpx passes them through untouched) and the response
# extension the transport sets for error messages.
MUTATION_EXT = "ion_mutation"
OPERATION_EXT = "ion_operation"
ATTEMPTS_EXT = "ion_attempts"

RETRYABLE_STATUSES = frozenset({429, 502, 503, 504})
# Failures before a single byte of the request left this process.
_NEVER_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
# Failures after (part of) the request may have reached ION: safe to repeat for queries only.
_MAYBE_SENT = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)

_log = logging.getLogger(__name__)


def _sync_sleep(seconds: float) -> None:
    time.sleep(seconds)


def never_sent(exc: BaseException) -> bool:
    """True when ``exc`` proves the request never reached the server."""
    return isinstance(exc, _NEVER_SENT)


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP-date), or None.

    A date in the past means "now" (0). Garbage means None, so the caller falls back to backoff.
    """
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if seconds == seconds else None  # NaN -> None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    if when.tzinfo is None:  # RFC 7231 dates are GMT
        from datetime import UTC

        when = when.replace(tzinfo=UTC)
    current = time.time() if now is None else now
    return max(0.0, when.timestamp() - current)


@dataclass(frozen=True)
class RetryPolicy:
    """When to retry and how long to wait; pure, so it is tested apart from the transport.

    Exponential backoff with full jitter: ``uniform(0, min(cap, base * 2 ** (attempt - 1)))``.
    ``Retry-After`` on a retryable answer is honoured instead of backoff, capped at
    ``retry_after_cap`` (default: ``backoff_cap``) so a hostile or confused server cannot park a task.

    >>> policy = RetryPolicy(max_retries=3, backoff_base=0.1)
    >>> policy.decide(1, httpx.ConnectError("refused"), is_mutation=True) is not None
    True
    """

    max_retries: int = 5
    backoff_base: float = 0.5
    backoff_cap: float = 30.0
    retry_after_cap: float | None = None  # None: the same cap as backoff
    rng: Callable[[], float] = field(default=random.random, compare=False, repr=False)
    clock: Callable[[], float] = field(default=time.time, compare=False, repr=False)

    def backoff(self, attempt: int) -> float:
        """The full-jitter delay before retry number ``attempt`` (1-based)."""
        ceiling = min(self.backoff_cap, self.backoff_base * (2 ** max(0, attempt - 1)))
        return self.rng() * ceiling

    def retryable(self, outcome: httpx.Response | BaseException, is_mutation: bool) -> bool:
        """Whether ``outcome`` may be retried at all, regardless of the attempt count."""
        if isinstance(outcome, BaseException):
            if isinstance(outcome, _NEVER_SENT):
                return True
            return not is_mutation and isinstance(outcome, _MAYBE_SENT)
        status = outcome.status_code
        if status == 429:
            return True
        return not is_mutation and status in RETRYABLE_STATUSES

    def decide(self, attempt: int, outcome: httpx.Response | BaseException, is_mutation: bool) -> float | None:
        """Seconds to wait before retrying after attempt number ``attempt`` (1-based) ended in
        ``outcome``, or None to stop: not retryable, or ``max_retries`` retries already made."""
        if attempt > self.max_retries or not self.retryable(outcome, is_mutation):
            return None
        if not isinstance(outcome, BaseException):
            retry_after = parse_retry_after(outcome.headers.get("retry-after"), now=self.clock())
            if retry_after is not None:
                cap = self.backoff_cap if self.retry_after_cap is None else self.retry_after_cap
                return min(retry_after, cap)
        return self.backoff(attempt)


def _describe(outcome: httpx.Response | BaseException) -> str:
    if isinstance(outcome, BaseException):
        return type(outcome).__name__
    return f"HTTP {outcome.status_code}"


class _RetryLoop:
    """The transport's policy, logging and attempt bookkeeping."""

    def __init__(self, policy: RetryPolicy, logger: logging.Logger | Any | None) -> None:
        self.policy = policy
        self.log = logger if logger is not None else _log

    def _meta(self, request: httpx.Request) -> tuple[bool, str]:
        return bool(request.extensions.get(MUTATION_EXT)), str(request.extensions.get(OPERATION_EXT) or "")

    def _next(self, request: httpx.Request, attempt: int, outcome: httpx.Response | BaseException) -> float | None:
        is_mutation, operation = self._meta(request)
        label = operation or request.url.path
        self.log.debug("ION %s attempt %d: %s", label, attempt, _describe(outcome))
        delay = self.policy.decide(attempt, outcome, is_mutation)
        if delay is None:
            if isinstance(outcome, BaseException):
                # Carried to the hook's error message ("after N attempts").
                outcome.ion_attempts = attempt  # type: ignore[attr-defined]
            else:
                outcome.extensions[ATTEMPTS_EXT] = attempt
            return None
        self.log.info(
            "ION %s attempt %d got %s; retrying in %.2f s (%d of %d retries)",
            label, attempt, _describe(outcome), delay, attempt, self.policy.max_retries,
        )  # fmt: skip
        return delay


class RetryTransport(_RetryLoop, httpx.BaseTransport):
    """Sync httpx transport that retries per :class:`RetryPolicy`, wrapping ``httpx.HTTPTransport``.

    >>> transport = RetryTransport(httpx.HTTPTransport(), RetryPolicy(max_retries=2))
    >>> client = httpx.Client(transport=transport)
    """

    def __init__(
        self,
        inner: httpx.BaseTransport,
        policy: RetryPolicy,
        *,
        logger: logging.Logger | Any | None = None,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        super().__init__(policy, logger)
        self._inner = inner
        self._sleep = sleep

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        attempt = 0
        while True:
            attempt += 1
            try:
                response = self._inner.handle_request(request)
            except httpx.TransportError as exc:
                delay = self._next(request, attempt, exc)
                if delay is None:
                    raise
            else:
                delay = self._next(request, attempt, response)
                if delay is None:
                    return response
                response.close()
            (self._sleep or _sync_sleep)(delay)

    def close(self) -> None:
        self._inner.close()
