"""Schema versions and the upgrade runner: an inbox upgrades itself on first use, keeping its data.

The version lives in ``<prefix>_schema`` (one row). An inbox without that table but with an events table
was written by 0.1.0: version 1. :func:`upgrade` runs the missing steps in order, in ONE transaction that
first takes a lock every other upgrader of this inbox also takes (SQLite: ``BEGIN IMMEDIATE``, the
database's write lock; PostgreSQL: a transaction advisory lock keyed on the schema-qualified prefix), then
reads the version again: of two processes starting at once, one upgrades and the other finds the work
done. DDL is transactional on both backends, so a failed upgrade leaves the previous version intact.

Steps only ever add (tables, columns, indexes): code of the previous release keeps working against an
upgraded inbox during a rolling upgrade (it does not write the ``seen`` record; the writer falls back to
the events table for such rows). An inbox whose version is newer than this code's is used as it is.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from airflow_provider_ion.webhooks.inbox.schema import InboxTables

__all__ = ["CURRENT_VERSION", "read_version", "upgrade"]

log = logging.getLogger(__name__)

#: The schema version this code writes.
CURRENT_VERSION = 3
_BACKFILL_BATCH = 1000


def _step_1(conn: Connection, tables: InboxTables) -> None:
    """0.1.0: events, cursors, rejection counters."""
    tables.metadata.create_all(conn, tables=tables.v1, checkfirst=True)


def _step_2(conn: Connection, tables: InboxTables) -> None:
    """0.2.0: the seen-ids record (backfilled from the stored events), conflict counters, quarantine."""
    tables.metadata.create_all(conn, tables=tables.v2, checkfirst=True)
    e, seen = tables.events.c, tables.seen
    last = 0
    while True:
        rows = conn.execute(
            sa.select(e.seq, e.receiver, e.event_id, e.body, e.received_at)
            .where(e.seq > last)
            .order_by(e.seq)
            .limit(_BACKFILL_BATCH)
        ).all()
        if not rows:
            break
        known = {
            (r.receiver, r.event_id)
            for r in conn.execute(
                sa.select(seen.c.receiver, seen.c.event_id).where(
                    seen.c.seq.between(rows[0].seq, rows[-1].seq)  # a retried partial upgrade
                )
            )
        }
        fresh = [
            {
                "receiver": r.receiver,
                "event_id": r.event_id,
                "seq": int(r.seq),
                "body_sha256": hashlib.sha256(bytes(r.body)).hexdigest(),
                "seen_at": r.received_at,
            }
            for r in rows
            if (r.receiver, r.event_id) not in known
        ]
        if fresh:
            conn.execute(sa.insert(seen), fresh)
        last = int(rows[-1].seq)


def _step_3(conn: Connection, tables: InboxTables) -> None:
    """0.3.0: the consumers record (what each trigger or sensor consumes; starts empty)."""
    tables.metadata.create_all(conn, tables=tables.v3, checkfirst=True)


STEPS: dict[int, Callable[[Connection, InboxTables], None]] = {1: _step_1, 2: _step_2, 3: _step_3}


def read_version(conn: Connection, tables: InboxTables) -> int:
    """The stored schema version: 0 for no inbox, 1 for a 0.1.0 inbox (no version table)."""
    inspector = sa.inspect(conn)
    schema = tables.metadata.schema
    if inspector.has_table(tables.version.name, schema=schema):
        value = conn.execute(sa.select(tables.version.c.version).where(tables.version.c.id == 1)).scalar()
        if value is not None:
            return int(value)
    return 1 if inspector.has_table(tables.events.name, schema=schema) else 0


def _run_steps(conn: Connection, tables: InboxTables) -> tuple[int, int]:
    found = read_version(conn, tables)  # again, under the lock: another process may have upgraded
    if found >= CURRENT_VERSION:
        return found, found
    for version in range(found + 1, CURRENT_VERSION + 1):
        STEPS[version](conn, tables)
    table = tables.version
    now = datetime.now(UTC)
    if conn.execute(sa.select(table.c.id).where(table.c.id == 1)).first() is None:
        conn.execute(sa.insert(table).values(id=1, version=CURRENT_VERSION, updated_at=now))
    else:
        conn.execute(sa.update(table).where(table.c.id == 1).values(version=CURRENT_VERSION, updated_at=now))
    return found, CURRENT_VERSION


def _lock_key(conn: Connection, tables: InboxTables) -> int:
    schema = tables.metadata.schema or conn.execute(sa.select(sa.func.current_schema())).scalar()
    name = f"{schema}.{tables.events.name}:schema"
    return int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "big", signed=True)


def upgrade(engine: Engine, tables: InboxTables) -> tuple[int, int]:
    """Bring the inbox to :data:`CURRENT_VERSION`; ``(version found, version now)``.

    Cheap when nothing is to do (one look at the version table, no lock). Raises SQLAlchemy errors (the
    caller turns them into ``InboxUnavailable``).
    """
    with engine.connect() as conn:
        found = read_version(conn, tables)
        conn.rollback()
    if found >= CURRENT_VERSION:
        return found, found
    if engine.dialect.name == "sqlite":
        with engine.connect() as raw:
            conn = raw.execution_options(isolation_level="AUTOCOMMIT")  # we issue BEGIN/COMMIT ourselves
            conn.exec_driver_sql("BEGIN IMMEDIATE")  # the write lock: other upgraders (and writers) wait
            try:
                result = _run_steps(conn, tables)
                conn.exec_driver_sql("COMMIT")
            except BaseException:
                try:
                    conn.exec_driver_sql("ROLLBACK")
                except Exception:  # the transaction is gone already (e.g. the file vanished)
                    log.debug("rollback after a failed inbox upgrade failed", exc_info=True)
                raise
    else:
        with engine.begin() as conn:
            conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_lock_key(conn, tables))))
            result = _run_steps(conn, tables)
    if result[0] != result[1]:
        log.info("inbox %s upgraded from schema version %d to %d", tables.events.name, *result)
    return result
