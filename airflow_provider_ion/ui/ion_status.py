"""ION's view of our receivers (their subscriptions), fetched through the ION connection and cached.

The page must work when ION is unreachable: a fetch has a short timeout and no retries, runs off the
request path (a background thread), and a failure keeps the last good answer and reports the error
(its type and a short message; never a credential: the hook's errors do not carry them).

Only what is safe to show is kept: receiver id, name, active flag, the webhook URI without its query
string, and each subscription's id, resource, action and active flag. Never the shared secret (the
documents used do not select it) nor the receiver's custom headers (they may be credentials).

Example::

    cache = IonSubscriptions("ion_default", max_age=60)
    snapshot = cache.snapshot()         # never blocks; starts a refresh when stale
    snapshot.receivers.get("factory")   # IonReceiver(..., subscriptions=[...]) or None
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit


@dataclass(frozen=True, slots=True)
class IonSubscription:
    """One ION webhook subscription (resource/action) of a receiver."""

    id: str
    resource: str
    action: str
    active: bool


@dataclass(frozen=True)
class IonReceiver:
    """A receiver as ION has it, with its subscriptions (no secret, no headers)."""

    id: str
    name: str
    active: bool
    webhook_uri: str
    subscriptions: list[IonSubscription] = field(default_factory=list)


@dataclass(frozen=True)
class IonSnapshot:
    """The cached answer: receivers by lower-case name, when it was fetched, the last error if any."""

    receivers: dict[str, list[IonReceiver]]
    fetched_at: float | None
    error: str | None
    refreshing: bool


def _strip_query(uri: str) -> str:
    try:
        parts = urlsplit(uri)
    except ValueError:
        return ""
    return urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2], parts.path, "", ""))


class IonSubscriptions:
    """A per-process cache of ION's receivers and subscriptions (see the module doc)."""

    def __init__(self, conn_id: str | None, *, max_age: float = 60.0, timeout: float = 5.0) -> None:
        self.conn_id = conn_id
        self.max_age = max_age
        self.timeout = timeout
        self._lock = threading.Lock()
        self._receivers: dict[str, list[IonReceiver]] = {}
        self._fetched_at: float | None = None
        self._error: str | None = None
        self._thread: threading.Thread | None = None
        self._attempted_at: float | None = None

    def snapshot(self) -> IonSnapshot:
        """The cached state; starts a background refresh when it is older than ``max_age``."""
        with self._lock:
            stale = self._attempted_at is None or time.monotonic() - self._attempted_at > self.max_age
            if self.conn_id and stale and (self._thread is None or not self._thread.is_alive()):
                self._attempted_at = time.monotonic()
                self._thread = threading.Thread(target=self._refresh, name="ion-ui-subscriptions", daemon=True)
                self._thread.start()
            refreshing = self._thread is not None and self._thread.is_alive()
            error = self._error if self.conn_id else "no ION connection configured ([ion_webhooks] ion_conn_id)"
            return IonSnapshot(dict(self._receivers), self._fetched_at, error, refreshing)

    def wait(self, timeout: float) -> None:
        """Wait up to ``timeout`` s for a refresh in progress (lets a request show fresh data if quick)."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout)

    def _refresh(self) -> None:
        try:
            receivers = self._fetch()
        except Exception as error:  # reported on the page; the last good answer stays
            text = " ".join(str(error).split())[:200]
            with self._lock:
                self._error = f"ION unreachable or refused: {type(error).__name__}: {text}"
            return
        with self._lock:
            self._receivers, self._fetched_at, self._error = receivers, time.time(), None

    def _fetch(self) -> dict[str, list[IonReceiver]]:
        from airflow_provider_ion.hooks.ion import IonHook

        hook = IonHook(self.conn_id or IonHook.default_conn_name, timeout=self.timeout, max_retries=0)
        try:
            subscriptions: dict[str, list[IonSubscription]] = {}
            for node in hook.list_subscriptions():
                subscriptions.setdefault(str(node.get("receiverId")), []).append(
                    IonSubscription(
                        id=str(node.get("id")),
                        resource=str(node.get("resource") or ""),
                        action=str(node.get("action") or ""),
                        active=bool(node.get("active")),
                    )
                )
            out: dict[str, list[IonReceiver]] = {}
            for node in hook.list_receivers():
                rid = str(node.get("id"))
                receiver = IonReceiver(
                    id=rid,
                    name=str(node.get("name") or ""),
                    active=bool(node.get("active")),
                    webhook_uri=_strip_query(str(node.get("webhookUri") or "")),
                    subscriptions=sorted(subscriptions.get(rid, []), key=lambda s: (s.resource, s.action)),
                )
                out.setdefault(receiver.name.lower(), []).append(receiver)
            return out
        finally:
            hook.close()
