"""Where the receiver finds each receiver's shared secret, without anyone pasting it by hand.

Lookup order for receiver ``<name>`` (the first source that knows the receiver wins):

1. Airflow Variable ``ion_webhook_secret_<name>``: a secret, or a JSON list of secrets while one is
   rotated out. This is where the provider's operators store a secret that ION generated.
2. Airflow Connection ``ion_webhook_<name>``: its password.
3. ION itself, through :class:`~airflow_provider_ion.hooks.ion.IonHook` (connection ``ion_default`` by
   default): the receiver named ``<name>`` and its ``sharedSecret``.

Receiver names are canonical lower case (the receiver app lower-cases the URL's name before any use), so
the Variable is ``ion_webhook_secret_<lower-case name>`` and the Connection ``ion_webhook_<lower-case name>``.

Look-up budgets (so strangers cannot spend a real receiver's look-ups):

- Sources 1 and 2 are *local* (Airflow's secrets backends and metadata DB): always consulted, so a
  receiver configured there always resolves, however many made-up names arrive first.
- Source 3 is *remote* (an ION API call, marked with :func:`remote`). A name already known is looked up
  again at most once per ``refresh_interval`` (a rotation after a signature mismatch); that per-name
  budget is its own. Names not known share one global budget (``max_lookups`` per ``refresh_interval``);
  when it is spent, :class:`LookupDeferred` is raised and the receiver answers a retryable 503 with
  ``Retry-After`` instead of "unknown receiver".
- Unknown names are remembered (a negative cache) for ``refresh_interval`` in a bounded LRU
  (``max_unknown`` names), so memory stays bounded and repeats cost nothing.

Without a usable Airflow metadata database (a standalone receiver whose ``sql_alchemy_conn`` is a SQLite
file that does not exist or has no ``variable`` table), the metastore backend is skipped: no empty
``airflow.db`` is created and no traceback is logged, one line says so; environment variables and any
configured secrets backend still work.
"""

from __future__ import annotations

import json
import logging
import math
import os
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

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
    """The Airflow Variable that holds ``receiver``'s shared secret (the name is canonical lower case)."""
    return f"{VARIABLE_PREFIX}{receiver.lower()}"


def connection_id(receiver: str) -> str:
    """The Airflow Connection whose password is ``receiver``'s shared secret (lower case, like the name)."""
    return f"{CONNECTION_PREFIX}{receiver.lower()}"


def remote(source: SecretSource) -> SecretSource:
    """Mark ``source`` as remote (costly, e.g. an API call): it is rate-limited by :class:`SecretResolver`."""
    source.remote = True  # type: ignore[attr-defined]
    return source


def is_remote(source: SecretSource) -> bool:
    return bool(getattr(source, "remote", False))


class LookupDeferred(Exception):
    """A look-up of ``receiver`` was refused for lack of budget; ask again after ``retry_after`` seconds."""

    def __init__(self, receiver: str, retry_after: int) -> None:
        self.receiver, self.retry_after = receiver, retry_after
        super().__init__(f"secret look-up of receiver {receiver!r} deferred; retry after {retry_after}s")


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
    value = _from_backends("get_variable", variable_name(receiver))
    if not value:
        return None
    _mask(value)
    secrets = parse_secret_value(value)
    return ReceiverSecrets(secrets, source="variable") if secrets else None


def airflow_connection_source(receiver: str) -> ReceiverSecrets | None:
    """Connection ``ion_webhook_<receiver>``: its password is the secret."""
    conn = _from_backends("get_connection", connection_id(receiver))
    password = getattr(conn, "password", None) if conn is not None else None
    if not password:
        return None
    _mask(password)
    return ReceiverSecrets((password,), source="connection")


# Server-side look-up: the receiver runs in Airflow's API server or standalone, never in a task, so the Task
# SDK's Variable/Connection (which talk to the supervisor) do not apply. Like Airflow's own
# Variable.get_variable_from_secrets (airflow/models/variable.py) this walks ensure_secrets_loaded()
# (airflow/configuration.py: custom backend, environment variables, then the metastore), but skips the
# metastore when there is no metadata database to read, and never logs a traceback.
_metastore_checked: tuple[float, bool] | None = None
_metastore_lock = threading.Lock()
_failed_backends: set[str] = set()


def _from_backends(method: str, key: str) -> Any:
    from airflow.configuration import ensure_secrets_loaded
    from airflow.secrets.metastore import MetastoreBackend

    for backend in ensure_secrets_loaded():
        if isinstance(backend, MetastoreBackend) and not _metastore_usable():
            continue
        try:
            value = getattr(backend, method)(key)
        except Exception as error:  # one concise line per backend and error type, never the details
            tag = f"{type(backend).__name__}:{type(error).__name__}"
            if tag not in _failed_backends:
                _failed_backends.add(tag)
                log.warning(
                    "Secrets backend %s failed (%s); receiver secrets are read from the other backends",
                    type(backend).__name__,
                    type(error).__name__,
                )
            continue
        if value is not None:
            return value
    return None


def _metastore_usable(recheck_after: float = 60.0) -> bool:
    """False when Airflow's metadata DB is a SQLite file that is missing or has no ``variable`` table.

    Checked without creating the file (read-only URI); a usable database is re-checked at most once a
    minute, a missing one at every look-up (a file check), so a database migrated later is used at once.
    Other databases count as usable (their errors are caught per look-up).
    """
    global _metastore_checked
    now = time.monotonic()
    with _metastore_lock:
        if _metastore_checked is not None and _metastore_checked[1] and now - _metastore_checked[0] < recheck_after:
            return True
        usable, why = _probe_metastore()
        if not usable and (_metastore_checked is None or _metastore_checked[1]):
            log.warning("No usable Airflow metadata database (%s): receiver secrets come from environment "
                        "variables and secrets backends only", why)  # fmt: skip
        _metastore_checked = (now, usable)
        return usable


def _probe_metastore() -> tuple[bool, str]:
    import sqlite3

    from airflow.configuration import conf
    from sqlalchemy.engine import make_url

    url = conf.get("database", "sql_alchemy_conn", fallback="") or ""
    if not url.startswith("sqlite"):
        return True, ""
    path = make_url(url).database or ""
    if not path or path == ":memory:" or not os.path.exists(path):
        return False, f"SQLite file {path or ':memory:'} does not exist"
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1) as conn:
            found = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'variable'").fetchone()
    except sqlite3.Error as error:
        return False, f"SQLite file {path}: {type(error).__name__}"
    return (True, "") if found else (False, f"SQLite file {path} has no Airflow tables")


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

    return remote(lookup)


def default_sources(ion_conn_id: str | None) -> list[SecretSource]:
    """Where the receiver finds a receiver's secrets, in order: the Airflow Variable, the Airflow
    Connection, then (when ``ion_conn_id`` is set) ION's receiver record through that connection."""
    sources: list[SecretSource] = [airflow_variable_source, airflow_connection_source]
    if ion_conn_id:
        sources.append(ion_lookup_source(ion_conn_id))
    return sources


def _mask(secret: str) -> None:
    """Register ``secret`` with Airflow's log masker, where one is available."""
    try:
        from airflow.sdk.log import mask_secret
    except ImportError:  # pragma: no cover - older Task SDK layout
        return
    mask_secret(secret)


@dataclass
class _Entry:
    value: ReceiverSecrets
    fetched_at: float


@dataclass
class SecretResolver:
    """Cached, budgeted secret look-up over an ordered list of sources (see the module doc for the budgets).

    Example::

        resolver = SecretResolver([airflow_variable_source, ion_lookup_source("ion_default")])
        found = resolver.resolve("factory-events")          # cached after the first call
        found = resolver.refresh("factory-events")          # after a mismatch; at most once a minute

    ``resolve`` raises :class:`LookupDeferred` when only a remote source could still know the name and
    the global budget for unknown names is spent. Thread-safe; the receiver app calls it from worker
    threads. A source that fails (ION down, a database error) is logged without details that could hold a
    secret and skipped; a known receiver keeps its secrets when a refresh fails.
    """

    sources: Sequence[SecretSource]
    refresh_interval: float = 60.0
    #: Remote look-ups of names not known, per ``refresh_interval`` over all such names.
    max_lookups: int = 60
    #: Unknown names remembered (LRU) for ``refresh_interval``; older ones are forgotten first.
    max_unknown: int = 10_000
    clock: Callable[[], float] = time.monotonic
    _known: dict[str, _Entry] = field(default_factory=dict, init=False, repr=False)
    _unknown: OrderedDict[str, float] = field(default_factory=OrderedDict, init=False, repr=False)
    _lookups: deque[float] = field(default_factory=deque, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def resolve(self, receiver: str) -> ReceiverSecrets | None:
        """The receiver's secrets (cached), or None for a receiver no source knows."""
        with self._lock:
            entry = self._known.get(receiver)
            if entry is not None:
                return entry.value
            if self._unknown_fresh(receiver):
                return None
        return self._fetch(receiver)

    def peek(self, receiver: str) -> ReceiverSecrets | None:
        """The cached secrets of ``receiver``, without looking anything up."""
        entry = self._known.get(receiver)  # a dict read is atomic; no lock on the hot path
        return entry.value if entry is not None else None

    def refresh(self, receiver: str) -> ReceiverSecrets | None:
        """Look again (after a signature mismatch), unless this receiver was looked up recently."""
        with self._lock:
            entry = self._known.get(receiver)
            if entry is not None and self.clock() - entry.fetched_at < self.refresh_interval:
                return entry.value
            if entry is None and self._unknown_fresh(receiver):
                return None
        return self._fetch(receiver)

    def forget(self, receiver: str | None = None) -> None:
        """Drop cached secrets (one receiver, or all)."""
        with self._lock:
            if receiver is None:
                self._known.clear()
                self._unknown.clear()
            else:
                self._known.pop(receiver, None)
                self._unknown.pop(receiver, None)

    @property
    def unknown_cached(self) -> int:
        """How many unknown names are remembered now (bounded by ``max_unknown``)."""
        return len(self._unknown)

    def _unknown_fresh(self, receiver: str) -> bool:
        """Under the lock: ``receiver`` was found unknown less than ``refresh_interval`` ago."""
        fetched_at = self._unknown.get(receiver)
        if fetched_at is None:
            return False
        if self.clock() - fetched_at < self.refresh_interval:
            self._unknown.move_to_end(receiver)
            return True
        del self._unknown[receiver]
        return False

    def _take_budget(self, receiver: str) -> None:
        """Spend one global look-up for a name not known, or raise :class:`LookupDeferred`."""
        now = self.clock()
        with self._lock:
            while self._lookups and now - self._lookups[0] >= self.refresh_interval:
                self._lookups.popleft()
            if len(self._lookups) >= self.max_lookups:
                wait = self.refresh_interval - (now - self._lookups[0])
                raise LookupDeferred(receiver, max(1, math.ceil(wait)))
            self._lookups.append(now)

    def _ask(self, source: SecretSource, receiver: str) -> tuple[ReceiverSecrets | None, bool]:
        try:
            return source(receiver), False
        except Exception as error:  # one broken source must not hide the others
            log.warning(
                "Secret source %s failed for receiver %r: %s",
                getattr(source, "__name__", "source"),
                receiver,
                type(error).__name__,
            )
            return None, True

    def _fetch(self, receiver: str) -> ReceiverSecrets | None:
        with self._lock:
            previous = self._known.get(receiver)
        value: ReceiverSecrets | None = None
        failed = False
        for source in (s for s in self.sources if not is_remote(s)):
            value, error = self._ask(source, receiver)
            failed |= error
            if value is not None:
                break
        remotes = [s for s in self.sources if is_remote(s)]
        if value is None and remotes:
            if previous is None:  # a known name's refresh is limited per name, not by the global budget
                try:
                    self._take_budget(receiver)
                except LookupDeferred:
                    log.warning("Secret look-ups over budget; receiver %r must retry later", receiver)
                    raise
            for source in remotes:
                value, error = self._ask(source, receiver)
                failed |= error
                if value is not None:
                    break
        with self._lock:
            now = self.clock()
            if value is not None:
                self._known[receiver] = _Entry(value, now)
                self._unknown.pop(receiver, None)
            elif previous is not None and failed:
                # A failing source is no proof the receiver is gone: keep its secrets, retry after the interval.
                self._known[receiver] = _Entry(previous.value, now)
                value = previous.value
            else:
                self._known.pop(receiver, None)
                self._unknown[receiver] = now
                self._unknown.move_to_end(receiver)
                while len(self._unknown) > self.max_unknown:
                    self._unknown.popitem(last=False)
        return value
