"""Where the receiver finds each receiver's shared secret, without anyone pasting it by hand.

Lookup order for receiver ``<name>`` (the first source that knows the receiver wins):

1. Airflow Variable ``ion_webhook_secret_<name>``: a secret, or a JSON list of secrets while one is
   rotated out. This is where the provider's operators store a secret that ION generated.
2. Airflow Connection ``ion_webhook_<name>``: its password.
3. ION itself, through :class:`~airflow_provider_ion.hooks.ion.IonHook` (connection ``ion_default`` by
   default): the receiver named ``<name>`` and its ``sharedSecret``.

Results are cached. A signature mismatch may be a rotated secret, so the receiver app asks for a
refresh; a refresh happens at most once per ``refresh_interval`` per receiver name (default 60 s), and
unknown names are cached too, so forged requests cannot turn into a stream of ION API calls.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

VARIABLE_PREFIX = "ion_webhook_secret_"
CONNECTION_PREFIX = "ion_webhook_"


@dataclass(frozen=True)
class ReceiverSecrets:
    """The secrets valid for one receiver, and the success code ION expects from it."""

    secrets: tuple[str, ...]
    expected_response_code: int | None = None
    source: str = ""

    def __repr__(self) -> str:  # never show the secrets themselves
        return f"ReceiverSecrets(<{len(self.secrets)} secret(s)>, source={self.source!r})"


#: A source maps a receiver name to its secrets, or None when it does not know the receiver.
SecretSource = Callable[[str], ReceiverSecrets | None]


def variable_name(receiver: str) -> str:
    """The Airflow Variable that holds ``receiver``'s shared secret."""
    return f"{VARIABLE_PREFIX}{receiver}"


def parse_secret_value(value: str) -> tuple[str, ...]:
    """A Variable value: one secret, or a JSON list of secrets (rotation)."""
    text = value.strip()
    if text.startswith("["):
        try:
            items = json.loads(text)
        except ValueError:
            items = None
        if isinstance(items, list):
            return tuple(str(s) for s in items if isinstance(s, str) and s)
    return (text,) if text else ()


def airflow_variable_source(receiver: str) -> ReceiverSecrets | None:
    """Variable ``ion_webhook_secret_<receiver>`` from Airflow's secrets backends or metadata DB."""
    from airflow.models.variable import Variable

    value = Variable.get(variable_name(receiver), default_var=None)
    if not value:
        return None
    _mask(value)
    secrets = parse_secret_value(value)
    return ReceiverSecrets(secrets, source="variable") if secrets else None


def airflow_connection_source(receiver: str) -> ReceiverSecrets | None:
    """Connection ``ion_webhook_<receiver>``: its password is the secret."""
    from airflow.exceptions import AirflowNotFoundException
    from airflow.models.connection import Connection

    try:
        conn = Connection.get_connection_from_secrets(f"{CONNECTION_PREFIX}{receiver}")
    except AirflowNotFoundException:
        return None
    if not conn.password:
        return None
    _mask(conn.password)
    return ReceiverSecrets((conn.password,), source="connection")


def ion_lookup_source(ion_conn_id: str) -> SecretSource:
    """A source that asks ION (through IonHook) for the receiver named ``receiver``."""

    def lookup(receiver: str) -> ReceiverSecrets | None:
        from airflow_provider_ion.hooks.ion import IonHook

        hook = IonHook(ion_conn_id)
        try:
            found = hook.find_receivers_by_name(receiver)
            secrets: list[str] = []
            expected: int | None = None
            for item in found:
                secret = hook.get_receiver_secret(item["id"])
                if secret:
                    secrets.append(secret)
                    expected = expected or item.get("expectedResponseCode")
        finally:
            hook.close()
        return ReceiverSecrets(tuple(secrets), expected, source="ion") if secrets else None

    return lookup


def _mask(secret: str) -> None:
    """Register ``secret`` with Airflow's log masker, where one is available."""
    try:
        from airflow.sdk.log import mask_secret
    except ImportError:  # pragma: no cover - older Task SDK layout
        return
    mask_secret(secret)


@dataclass
class _Entry:
    value: ReceiverSecrets | None
    fetched_at: float


@dataclass
class SecretResolver:
    """Cached, rate-limited secret lookup over an ordered list of sources.

    Example::

        resolver = SecretResolver([airflow_variable_source, ion_lookup_source("ion_default")])
        found = resolver.resolve("factory-events")          # cached after the first call
        found = resolver.refresh("factory-events")          # after a mismatch; at most once a minute

    Thread-safe; the receiver app calls it from worker threads. A source that fails (ION down, a
    database error) is logged without details that could hold a secret and skipped.
    """

    sources: Sequence[SecretSource]
    refresh_interval: float = 60.0
    #: Lookups allowed per ``refresh_interval`` over all names, so requests for made-up receiver
    #: names cannot each cost a lookup either.
    max_lookups: int = 60
    clock: Callable[[], float] = time.monotonic
    _cache: dict[str, _Entry] = field(default_factory=dict, init=False, repr=False)
    _lookups: list[float] = field(default_factory=list, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def resolve(self, receiver: str) -> ReceiverSecrets | None:
        """The receiver's secrets (cached), or None for a receiver no source knows."""
        with self._lock:
            entry = self._cache.get(receiver)
        if entry is not None and (entry.value is not None or not self._stale(entry)):
            return entry.value
        return self._fetch(receiver)

    def peek(self, receiver: str) -> ReceiverSecrets | None:
        """The cached secrets of ``receiver``, without looking anything up."""
        with self._lock:
            entry = self._cache.get(receiver)
        return entry.value if entry is not None else None

    def refresh(self, receiver: str) -> ReceiverSecrets | None:
        """Look again (after a signature mismatch), unless this receiver was looked up recently."""
        with self._lock:
            entry = self._cache.get(receiver)
        if entry is not None and not self._stale(entry):
            return entry.value
        return self._fetch(receiver)

    def forget(self, receiver: str | None = None) -> None:
        """Drop cached secrets (one receiver, or all)."""
        with self._lock:
            if receiver is None:
                self._cache.clear()
            else:
                self._cache.pop(receiver, None)

    def _stale(self, entry: _Entry) -> bool:
        return self.clock() - entry.fetched_at >= self.refresh_interval

    def _within_budget(self) -> bool:
        now = self.clock()
        with self._lock:
            self._lookups[:] = [t for t in self._lookups if now - t < self.refresh_interval]
            if len(self._lookups) >= self.max_lookups:
                return False
            self._lookups.append(now)
            return True

    def _fetch(self, receiver: str) -> ReceiverSecrets | None:
        if not self._within_budget():
            log.warning("Secret lookups over budget; not looking up receiver %r now", receiver)
            with self._lock:
                entry = self._cache.get(receiver)
            return entry.value if entry else None
        value: ReceiverSecrets | None = None
        for source in self.sources:
            try:
                value = source(receiver)
            except Exception as error:  # one broken source must not hide the others
                log.warning(
                    "Secret source %s failed for receiver %r: %s",
                    getattr(source, "__name__", "source"),
                    receiver,
                    type(error).__name__,
                )
                continue
            if value is not None:
                break
        with self._lock:
            self._cache[receiver] = _Entry(value, self.clock())
        return value
