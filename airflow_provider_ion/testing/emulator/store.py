"""The emulator's state: webhook receivers, subscriptions, events and a few ION domain objects.

Objects are plain dicts keyed by their GraphQL field names, so the GraphQL layer serves them as they
are and tests can seed and assert on them directly. Every read returns a copy; every write holds one
lock, so the store is safe to use from the server's worker threads and from a test's thread at once.

Ids are integers that only grow (per table, like database sequences); ``_etag`` is replaced on every
update and writes must present the current one, the way ION detects lost updates.

Every create/update/delete of a domain object ends in :meth:`Store.on_change`, called after the change
is committed (and persisted, with a state file). That single hook point is where ION fires webhooks:
it appends to an in-memory change log and calls the listeners (:meth:`Store.add_listener`), which is
how :class:`~airflow_provider_ion.testing.emulator.delivery.Deliveries` turns changes into deliveries.
"""

from __future__ import annotations

import builtins
import logging
import os
import secrets
import threading
import time
import uuid
from collections.abc import Callable, Collection, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from airflow_provider_ion.testing.emulator.domain import DOMAIN_KINDS, DomainKind
from airflow_provider_ion.testing.emulator.errors import BadUserInput, ConcurrencyConflict, NotFound
from airflow_provider_ion.testing.emulator.filters import compile_filters
from airflow_provider_ion.testing.emulator.persistence import SnapshotFile

log = logging.getLogger(__name__)

#: Called as ``listener(resource, action, obj)`` after each committed domain change, store lock held.
ChangeListener = Callable[[str, str, dict[str, Any]], None]

TYPE_NAMES: dict[str, str] = {
    "receivers": "WebhookReceiver",
    "subscriptions": "WebhookSubscription",
    "events": "WebhookEvent",
    **{table: kind.type_name for table, kind in DOMAIN_KINDS.items()},
}
"Store table -> GraphQL type name (used in error messages)."

_SEQUENCES = (*TYPE_NAMES, "headers")
_RECEIVER_FIELDS = (
    "name",
    "description",
    "webhookUri",
    "sharedSecret",
    "contentType",
    "expectedResponseCode",
    "active",
    "headers",
)
_NULLABLE = {"description"}
_EVENT_FIELDS = ("status", "attempts", "lastResponseCode", "lastError", "payload", "deliveredAt")


_EPOCH_2025 = 1735689600


def clock_event_id(*, int_ids: bool = False) -> int:
    """A first event id that a restarted emulator has not used before, as a real ION's never repeat.

    From the clock: microseconds since 1970 (fits JSON's 2**53), or with ``Int`` ids (GraphQL's Int is
    32-bit) tenths of a second since 2025, good until 2031; a restart less than a tenth of a second
    per event fired before it could then meet an old id (an accepted limit of the ``int-ids`` profile).
    """
    if int_ids:
        return int((time.time() - _EPOCH_2025) * 10)
    return time.time_ns() // 1000


def now_iso() -> str:
    """The current time as ION-style ISO-8601 with time zone."""
    return datetime.now(UTC).isoformat(timespec="microseconds")


def parse_id(value: object, type_name: str = "object") -> int:
    """An ION id (GraphQL ``ID``: text or integer) as the integer the store keys on."""
    if isinstance(value, bool):
        raise BadUserInput(f"Invalid {type_name} id {value!r}")
    try:
        return int(str(value).strip())
    except ValueError:
        raise BadUserInput(f"Invalid {type_name} id {value!r}") from None


class Store:
    """Thread-safe in-memory state, optionally snapshotted to a SQLite ``state_file`` on each mutation."""

    def __init__(self, state_file: str | os.PathLike[str] | None = None, *, int_ids: bool = False) -> None:
        self._int_ids = int_ids
        self._lock = threading.RLock()
        self._tables: dict[str, dict[int, dict[str, Any]]] = {t: {} for t in TYPE_NAMES}
        self._next_id: dict[str, int] = dict.fromkeys(_SEQUENCES, 1)
        self._changes: list[dict[str, Any]] = []
        self._listeners: list[ChangeListener] = []
        self._bulk_depth = 0
        self._file = SnapshotFile(state_file) if state_file is not None else None
        if self._file is not None and (snapshot := self._file.load()) is not None:
            self._restore(snapshot)
        self._seed_event_ids()

    @property
    def state_file(self) -> str | None:
        return self._file.path if self._file is not None else None

    # ---- reads -------------------------------------------------------------------------------------

    def get(self, table: str, object_id: object) -> dict[str, Any] | None:
        """A copy of one object, or None when the id names nothing."""
        key = parse_id(object_id, TYPE_NAMES[table])
        with self._lock:
            obj = self._tables[table].get(key)
            return _clone(obj) if obj is not None else None

    def list(self, table: str, filters: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        """Copies of the objects matching ``filters`` (ION filter inputs), oldest (lowest id) first."""
        matches = compile_filters(filters)
        with self._lock:
            return [_clone(o) for o in self._tables[table].values() if matches(o)]

    def count(self, table: str) -> int:
        with self._lock:
            return len(self._tables[table])

    # ---- webhook receivers and subscriptions ------------------------------------------------------

    def create_receiver(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """Create a receiver from ``CreateWebhookReceiverInput`` fields; generates the shared secret if absent.

        Names need not be unique: ION is not known to enforce it, so the provider must be idempotent itself.
        """
        _reject_unknown(values, _RECEIVER_FIELDS, "WebhookReceiver")
        fields: dict[str, Any] = {
            "description": None,
            "sharedSecret": None,
            "contentType": "application/json",
            "expectedResponseCode": 200,
            "active": True,
            "headers": [],
        }
        fields.update({k: v for k, v in values.items() if v is not None or k in _NULLABLE})
        for required in ("name", "webhookUri"):
            if required not in fields:
                raise BadUserInput(f"WebhookReceiver.{required} is required")
        if fields["sharedSecret"] is None:
            fields["sharedSecret"] = secrets.token_urlsafe(32)
        with self._lock:
            fields = self._check_receiver(fields)
            obj = self._insert("receivers", fields)
            self._commit()
            return _clone(obj)

    def update_receiver(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """Apply ``UpdateWebhookReceiverInput`` (``id``, ``etag`` and the fields to change)."""
        object_id, etag, changes = _split_update(values, _RECEIVER_FIELDS, "WebhookReceiver")
        with self._lock:
            current = self._require("receivers", object_id)
            self._check_etag("receivers", current, etag)
            merged = self._check_receiver({**current, **changes})
            obj = self._update("receivers", current, {k: merged[k] for k in changes})
            self._commit()
            return _clone(obj)

    def create_subscription(self, values: Mapping[str, Any], *, created_by: str | None = None) -> dict[str, Any]:
        """Create a subscription from ``CreateWebhookSubscriptionInput``; the receiver must exist.

        Duplicate (receiver, resource, action) pairs are allowed, as nothing says ION forbids them.
        """
        _reject_unknown(values, ("receiverId", "resource", "action", "active"), "WebhookSubscription")
        for required in ("receiverId", "resource", "action"):
            if values.get(required) is None:
                raise BadUserInput(f"WebhookSubscription.{required} is required")
        fields = {
            "receiverId": parse_id(values["receiverId"], "WebhookReceiver"),
            "resource": str(values["resource"]),
            "action": str(values["action"]),
            "active": _boolean(values.get("active", True), "WebhookSubscription.active", default=True),
            "createdBy": created_by,
        }
        with self._lock:
            self._require("receivers", fields["receiverId"])
            obj = self._insert("subscriptions", fields)
            self._commit()
            return _clone(obj)

    def update_subscription(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """Apply ``UpdateWebhookSubscriptionInput`` (only ``active`` can change)."""
        object_id, etag, changes = _split_update(values, ("active",), "WebhookSubscription")
        if "active" in changes:
            changes["active"] = _boolean(changes["active"], "WebhookSubscription.active")
        with self._lock:
            current = self._require("subscriptions", object_id)
            self._check_etag("subscriptions", current, etag)
            obj = self._update("subscriptions", current, changes)
            self._commit()
            return _clone(obj)

    def add_header(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """``addHeaderToWebhookReceiver`` (header-mutations profile): ``receiverId``, ``key``, ``value``."""
        _reject_unknown(values, ("receiverId", "key", "value"), "AddHeaderToWebhookReceiverInput")
        with self._lock:
            current = self._require("receivers", values.get("receiverId"))
            headers = [*current.get("headers", []), self._header(values)]
            obj = self._update("receivers", current, {"headers": headers})
            self._commit()
            return _clone(obj)

    def remove_header(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """``removeHeaderFromWebhookReceiver`` (header-mutations profile): ``receiverId``, ``headerId``."""
        _reject_unknown(values, ("receiverId", "headerId"), "RemoveHeaderFromWebhookReceiverInput")
        header_id = parse_id(values.get("headerId"), "WebhookHeader")
        with self._lock:
            current = self._require("receivers", values.get("receiverId"))
            headers = [h for h in current.get("headers", []) if h["id"] != header_id]
            if len(headers) == len(current.get("headers", [])):
                raise NotFound("WebhookHeader", header_id)
            obj = self._update("receivers", current, {"headers": headers})
            self._commit()
            return _clone(obj)

    def delete_webhook(self, table: str, values: Mapping[str, Any]) -> dict[str, Any]:
        """Delete a receiver (and its subscriptions) or a subscription by ``{id, etag}``; ``{"id": id}``."""
        object_id, etag, _ = _split_update(values, (), TYPE_NAMES[table])
        with self._lock:
            current = self._require(table, object_id)
            self._check_etag(table, current, etag)
            self._tables[table].pop(current["id"])
            if table == "receivers":
                for sub_id in [s["id"] for s in self._tables["subscriptions"].values() if s["receiverId"] == object_id]:
                    self._tables["subscriptions"].pop(sub_id)
            self._commit()
            return {"id": current["id"]}

    def add_event(
        self,
        subscription_id: object,
        *,
        status: str = "PENDING",
        payload: Any = None,
        attempts: int = 0,
        last_response_code: int | None = None,
        last_error: str | None = None,
        delivered_at: str | None = None,
    ) -> dict[str, Any]:
        """Record a webhook event for a subscription (receiver, resource and action come from it).

        Tests use it to seed the audit trail; the delivery worker records each delivery with it.
        """
        with self._lock:
            subscription = self._require("subscriptions", parse_id(subscription_id, "WebhookSubscription"))
            obj = self._insert(
                "events",
                {
                    "status": status,
                    "subscriptionId": subscription["id"],
                    "receiverId": subscription["receiverId"],
                    "resource": subscription["resource"],
                    "action": subscription["action"],
                    "attempts": attempts,
                    "lastResponseCode": last_response_code,
                    "lastError": last_error,
                    "payload": _clone(payload),
                    "deliveredAt": delivered_at,
                },
            )
            self._commit()
            return _clone(obj)

    def update_event(self, event_id: object, **fields: Any) -> dict[str, Any]:
        """Record a delivery attempt on an event: any of ``status``, ``attempts``, ``lastResponseCode``,
        ``lastError``, ``payload``, ``deliveredAt`` (the delivery worker's write; no etag, ION's own)."""
        _reject_unknown(fields, _EVENT_FIELDS, "WebhookEvent")
        with self._lock:
            current = self._require("events", event_id)
            obj = self._update("events", current, _clone(fields))
            self._commit()
            return _clone(obj)

    # ---- domain objects -------------------------------------------------------------------------

    def create_object(self, table: str, values: Mapping[str, Any]) -> dict[str, Any]:
        """Create a domain object (run, issue, ...) and report it to :meth:`on_change` as ``CREATE``."""
        kind = DOMAIN_KINDS[table]
        _reject_unknown(values, kind.writable, kind.type_name)
        fields = {**kind.defaults, **{k: v for k, v in values.items() if v is not None}}
        with self._lock:
            fields = self._check_domain(kind, fields, fields)
            obj = _clone(self._insert(table, fields))
            self._commit()
            self.on_change(kind.resource, "CREATE", obj)
            return obj

    def update_object(self, table: str, values: Mapping[str, Any]) -> dict[str, Any]:
        """Apply an ``Update<Type>Input`` (``id``, ``etag``, changes) and report ``UPDATE``."""
        kind = DOMAIN_KINDS[table]
        nullable = {name for name, default in kind.defaults.items() if default is None}
        object_id, etag, changes = _split_update(values, kind.writable, kind.type_name, nullable=nullable)
        with self._lock:
            current = self._require(table, object_id)
            self._check_etag(table, current, etag)
            changes = self._check_domain(kind, changes, {**current, **changes})
            obj = _clone(self._update(table, current, changes))
            self._commit()
            self.on_change(kind.resource, "UPDATE", obj)
            return obj

    def delete_object(self, table: str, values: Mapping[str, Any]) -> dict[str, Any]:
        """Delete by ``{id, etag}``; returns the object as it was and reports ``DELETE``."""
        kind = DOMAIN_KINDS[table]
        object_id, etag, _ = _split_update(values, (), kind.type_name)
        with self._lock:
            current = self._require(table, object_id)
            self._check_etag(table, current, etag)
            obj = self._tables[table].pop(current["id"])
            self._commit()
            self.on_change(kind.resource, "DELETE", obj)
            return obj

    def on_change(self, resource: str, action: str, obj: dict[str, Any]) -> None:
        """The one hook point for committed domain changes (``resource`` is a ResourceEnum value).

        Records the change, then calls each listener (the delivery worker fires signed deliveries to
        every active matching subscription and records their WebhookEvent rows). A failing listener
        is logged, never raised: the change is committed and the caller's mutation succeeded.
        """
        with self._lock:
            self._changes.append(
                {
                    "seq": len(self._changes) + 1,
                    "resource": resource,
                    "action": action,
                    "object": _clone(obj),
                    "at": now_iso(),
                }
            )
            for listener in list(self._listeners):
                try:
                    listener(resource, action, _clone(obj))
                except Exception:
                    log.exception("Change listener failed for %s %s", resource, action)

    def add_listener(self, listener: ChangeListener) -> None:
        """Call ``listener(resource, action, obj)`` after every committed domain change."""
        with self._lock:
            self._listeners.append(listener)

    def remove_listener(self, listener: ChangeListener) -> None:
        with self._lock:
            if listener in self._listeners:
                self._listeners.remove(listener)

    @property
    def changes(self) -> builtins.list[dict[str, Any]]:  # `list` here is Store.list
        """The change log (oldest first): ``{seq, resource, action, object, at}`` per committed change."""
        with self._lock:
            return _clone(self._changes)

    # ---- lifecycle ------------------------------------------------------------------------------

    def reset(self) -> None:
        """Forget everything (ids start again at 1); with a state file, the empty state is saved."""
        with self._lock:
            for rows in self._tables.values():
                rows.clear()
            self._next_id = dict.fromkeys(_SEQUENCES, 1)
            self._seed_event_ids()
            self._changes.clear()
            self._commit()

    @contextmanager
    def bulk(self) -> Iterator[Store]:
        """Hold the lock and write the state file once at the end (seeding thousands of objects)."""
        with self._lock:
            self._bulk_depth += 1
            try:
                yield self
            finally:
                self._bulk_depth -= 1
                self._commit()

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None

    # ---- internals ------------------------------------------------------------------------------

    def _seed_event_ids(self) -> None:
        self._next_id["events"] = max(self._next_id["events"], clock_event_id(int_ids=self._int_ids))

    def _require(self, table: str, object_id: object) -> dict[str, Any]:
        key = parse_id(object_id, TYPE_NAMES[table])
        obj = self._tables[table].get(key)
        if obj is None:
            raise NotFound(TYPE_NAMES[table], key)
        return obj

    def _check_etag(self, table: str, current: Mapping[str, Any], etag: object) -> None:
        if etag != current["_etag"]:
            raise ConcurrencyConflict(TYPE_NAMES[table], current["id"])

    def _insert(self, table: str, fields: Mapping[str, Any]) -> dict[str, Any]:
        object_id = self._next_id[table]
        self._next_id[table] += 1
        stamp = now_iso()
        obj = {"id": object_id, "_etag": uuid.uuid4().hex, **fields, "createdAt": stamp, "updatedAt": stamp}
        self._tables[table][object_id] = obj
        return obj

    def _update(self, table: str, current: dict[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
        current.update(changes)
        current["_etag"] = uuid.uuid4().hex
        current["updatedAt"] = now_iso()
        return current

    def _check_receiver(self, fields: dict[str, Any]) -> dict[str, Any]:
        name = fields.get("name")
        if not isinstance(name, str) or not name.strip():
            raise BadUserInput("WebhookReceiver.name must not be empty")
        uri = fields.get("webhookUri")
        parts = urlsplit(uri) if isinstance(uri, str) else None
        if parts is None or parts.scheme not in ("http", "https") or not parts.netloc:
            raise BadUserInput(f"WebhookReceiver.webhookUri must be an absolute http(s) URL, got {uri!r}")
        code = fields.get("expectedResponseCode")
        if not isinstance(code, int) or isinstance(code, bool) or not 100 <= code <= 599:
            raise BadUserInput(f"WebhookReceiver.expectedResponseCode must be an HTTP status, got {code!r}")
        for text in ("sharedSecret", "contentType"):
            if not isinstance(fields.get(text), str) or not fields[text]:
                raise BadUserInput(f"WebhookReceiver.{text} must not be empty")
        fields["active"] = _boolean(fields.get("active"), "WebhookReceiver.active")
        headers = fields.get("headers") or []
        if any(isinstance(h, Mapping) and "id" not in h for h in headers):
            fields["headers"] = [self._header(h) for h in headers]
        return fields

    def _header(self, header: Mapping[str, Any]) -> dict[str, Any]:
        key, value = header.get("key"), header.get("value")
        if not isinstance(key, str) or not key.strip() or not isinstance(value, str):
            raise BadUserInput(f"WebhookHeader needs a non-empty key and a value, got {dict(header)!r}")
        header_id = self._next_id["headers"]
        self._next_id["headers"] += 1
        return {"id": header_id, "key": key, "value": value}

    def _check_domain(self, kind: DomainKind, changes: dict[str, Any], merged: Mapping[str, Any]) -> dict[str, Any]:
        """Validate ``changes`` against the object as it would be after them (``merged``)."""
        for name in kind.required:
            value = merged.get(name)
            if value is None or (isinstance(value, str) and not value.strip()):
                raise BadUserInput(f"{kind.type_name}.{name} is required")
        for name in kind.id_fields:
            if changes.get(name) is not None:
                changes[name] = parse_id(changes[name], name)
        for name, table in kind.references.items():
            if changes.get(name) is not None:
                self._require(table, changes[name])
        for name in kind.non_negative:
            value = changes.get(name)
            if value is not None and value < 0:
                raise BadUserInput(f"{kind.type_name}.{name} must not be negative, got {value}")
        return changes

    def _commit(self) -> None:
        if self._file is not None and self._bulk_depth == 0:
            self._file.save(
                {"tables": {t: list(rows.values()) for t, rows in self._tables.items()}, "next_id": self._next_id}
            )

    def _restore(self, snapshot: Mapping[str, Any]) -> None:
        for table, rows in snapshot.get("tables", {}).items():
            if table in self._tables:
                self._tables[table] = {row["id"]: row for row in sorted(rows, key=lambda r: r["id"])}
        self._next_id.update(snapshot.get("next_id", {}))


def _clone(value: Any) -> Any:
    """A deep copy of JSON-like data (dicts, lists, scalars): several times faster than copy.deepcopy."""
    if isinstance(value, dict):
        return {k: _clone(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clone(v) for v in value]
    return value


def _reject_unknown(values: Mapping[str, Any], allowed: tuple[str, ...], type_name: str) -> None:
    unknown = sorted(set(values) - set(allowed))
    if unknown:
        raise BadUserInput(f"Unknown {type_name} field(s): {', '.join(unknown)}")


def _split_update(
    values: Mapping[str, Any],
    writable: tuple[str, ...],
    type_name: str,
    *,
    nullable: Collection[str] = _NULLABLE,
) -> tuple[int, Any, dict[str, Any]]:
    """``(id, etag, changes)`` of an update input; null for a non-nullable field is rejected."""
    _reject_unknown(values, ("id", "etag", *writable), type_name)
    if values.get("id") is None or values.get("etag") is None:
        raise BadUserInput(f"Updating a {type_name} needs its id and the etag last read")
    changes = {k: v for k, v in values.items() if k not in ("id", "etag")}
    for key, value in changes.items():
        if value is None and key not in nullable:
            raise BadUserInput(f"{type_name}.{key} cannot be null")
    return parse_id(values["id"], type_name), values["etag"], changes


def _boolean(value: Any, what: str, *, default: bool | None = None) -> bool:
    if value is None and default is not None:
        return default
    if not isinstance(value, bool):
        raise BadUserInput(f"{what} must be true or false, got {value!r}")
    return value
