"""Request counters: how tests prove a client caches tokens and does not repeat calls.

Counts are exact: every request that reaches an endpoint is counted once, before auth and faults, so
``token_requests`` and ``graphql_requests`` include failed and faulted requests too.
"""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any


class Stats:
    """Thread-safe counters; :meth:`snapshot` returns a plain dict."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self._counts: Counter[str] = Counter()
            self._operations: Counter[str] = Counter()

    def count(self, name: str) -> None:
        with self._lock:
            self._counts[name] += 1

    def count_graphql(self, operation: str | None) -> None:
        with self._lock:
            self._counts["graphql_requests"] += 1
            self._operations[operation or "<anonymous>"] += 1

    def snapshot(self) -> dict[str, Any]:
        """``token_requests``, ``tokens_issued``, ``graphql_requests``, ``unauthorized``, ``faults_applied``
        and ``graphql_operations`` (operation name -> count; ``<anonymous>`` for unnamed)."""
        with self._lock:
            names = ("token_requests", "tokens_issued", "graphql_requests", "unauthorized", "faults_applied")
            return {**{n: self._counts[n] for n in names}, "graphql_operations": dict(self._operations)}
