"""The writer's SQL for one dialect: SQLAlchemy Core compiled once, executed on the DBAPI connection.

Bind processors of the column types (SQLite's datetime text format, binary) are applied here, so rows are
stored exactly as through the engine. Multi-row inserts are built from a compiled one-row template per
batch size (compiling 256 rows takes ~40 ms), checked once against a real two-row compile.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa

from airflow_provider_ion.webhooks.inbox.schema import InboxTables

__all__ = ["EVENT_COLUMNS", "SEEN_COLUMNS", "MultiRowInsert", "Prepared", "WriterStatements", "dialect_insert"]

#: The columns an append writes into events, in the order of a prepared row's values.
EVENT_COLUMNS = ("receiver", "event_id", "subscription_id", "resource", "action", "received_at", "body", "headers")
#: The columns of the seen record written for each new event.
SEEN_COLUMNS = ("receiver", "event_id", "seq", "body_sha256", "seen_at")
#: Batch sizes whose insert statement text a MultiRowInsert keeps.
STATEMENT_CACHE = 64


def dialect_insert(postgres: bool) -> Any:
    """The dialect's ``insert`` (with ``on_conflict_do_nothing``/``on_conflict_do_update``)."""
    if postgres:
        from sqlalchemy.dialects.postgresql import insert as postgres_insert

        return postgres_insert
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert


class Prepared:
    """One statement compiled for a dialect; :meth:`bind` turns values into ``(sql, parameters)``.

    Example::

        st = Prepared(sa.select(t.c.seq).where(t.c.event_id == sa.bindparam("e", type_=sa.String)), dialect)
        cursor.execute(*st.bind(e="evt-1"))
    """

    def __init__(self, statement: Any, dialect: Any) -> None:
        compiled = statement.compile(dialect=dialect)
        self.sql: str = compiled.string
        self.names: list[str] | None = list(compiled.positiontup) if compiled.positional else None
        self.processors = {
            name: bind.type.dialect_impl(dialect).bind_processor(dialect) for name, bind in compiled.binds.items()
        }

    def bind(self, **values: Any) -> tuple[str, Any]:
        processed = {}
        for name, value in values.items():
            process = self.processors.get(name)
            processed[name] = value if process is None or value is None else process(value)
        if self.names is None:
            return self.sql, processed
        return self.sql, tuple(processed[name] for name in self.names)


class MultiRowInsert:
    """``INSERT ... VALUES (row), (row) ... ON CONFLICT DO NOTHING RETURNING ...`` for any batch size.

    Example::

        insert = MultiRowInsert(tables.events, EVENT_COLUMNS, ["receiver", "event_id"], returning, dialect, fn)
        cursor.execute(*insert.params(rows))
    """

    def __init__(
        self,
        table: sa.Table,
        columns: Sequence[str],
        conflict: Sequence[str],
        returning: Sequence[sa.Column[Any]],
        dialect: Any,
        insert: Any,
    ) -> None:
        self.table, self.columns, self.conflict, self.returning = table, tuple(columns), list(conflict), returning
        self.dialect, self.insert = dialect, insert
        self._processors = [table.c[name].type.dialect_impl(dialect).bind_processor(dialect) for name in columns]
        self._cache: dict[int, tuple[str, list[str] | None, list[int] | None]] = {}
        self._template: tuple[str, str, str] | tuple[()] | None = None
        self._named = False

    def params(self, rows: Sequence[Mapping[str, Any]]) -> tuple[str, Any]:
        """The statement for ``len(rows)`` rows and its parameters."""
        entry = self._cache.get(len(rows))
        if entry is None:
            if len(self._cache) >= STATEMENT_CACHE:  # bounded: a 256-row statement is ~64 KB of text
                self._cache.pop(next(iter(self._cache)))
            entry = self._cache[len(rows)] = self._for(len(rows))
        sql, names, order = entry
        flat = [
            value if process is None or value is None else process(value)
            for row in rows
            for process, value in zip(self._processors, (row[name] for name in self.columns), strict=True)
        ]
        if names is not None:  # named parameter style
            return sql, dict(zip(names, flat, strict=True))
        return sql, (flat if order is None else [flat[i] for i in order])

    def _for(self, n: int) -> tuple[str, list[str] | None, list[int] | None]:
        if self._template is None:
            one, two = self._compile(1), self._compile(2)
            template = self._split(one[0])
            # Named: the names follow the row; positional: the placeholders must be in row-major order.
            usable = bool(template) and self._join(template, 2) == two[0] and two[2] is None
            self._template = template if usable else ()
            self._named = one[1] is not None
        if not self._template:
            return self._compile(n)
        sql = self._join(self._template, n)
        if self._named:
            return sql, [f"{name}_{i}" for i in range(n) for name in self.columns], None
        return sql, None, None

    @staticmethod
    def _split(sql: str) -> tuple[str, str, str] | tuple[()]:
        head, sep, rest = sql.partition(" VALUES ")
        row, conflict, tail = rest.partition(" ON CONFLICT ")
        if not sep or not conflict:
            return ()
        return head + sep, row, conflict + tail

    def _join(self, template: tuple[str, str, str] | tuple[()], n: int) -> str:
        head, row, tail = template  # type: ignore[misc]
        # The row with its bind names' "_0" turned into a format slot, then one copy per row.
        names = "|".join(self.columns)
        slotted = re.sub(rf"\b({names})_0\b", r"\g<1>_{0}", row.replace("{", "{{").replace("}", "}}"))
        return head + ", ".join([slotted.format(i) for i in range(n)]) + tail

    def _compile(self, n: int) -> tuple[str, list[str] | None, list[int] | None]:
        expected = [f"{name}_{i}" for i in range(n) for name in self.columns]
        values = [
            {name: sa.bindparam(f"{name}_{i}", type_=self.table.c[name].type) for name in self.columns}
            for i in range(n)
        ]
        statement = (
            self.insert(self.table)
            .values(values)
            .on_conflict_do_nothing(index_elements=self.conflict)
            .returning(*self.returning)
        )
        compiled = statement.compile(dialect=self.dialect)
        if not compiled.positional:
            return compiled.string, expected, None
        index = {name: i for i, name in enumerate(expected)}
        order = [index[name] for name in compiled.positiontup]
        return compiled.string, None, (None if order == list(range(len(order))) else order)


class WriterStatements:
    """Every statement the writer runs, for one inbox and dialect.

    ``lock`` (PostgreSQL only) takes the ordering lock with its wait bounded by ``lock_timeout``.
    """

    def __init__(
        self, tables: InboxTables, dialect: Any, *, lock_key: int | None, busy_timeout: float, channel: str
    ) -> None:
        insert = dialect_insert(dialect.name == "postgresql")
        self.channel = channel
        ev, seen, conflicts = tables.events, tables.seen, tables.conflicts
        self.events = MultiRowInsert(
            ev, EVENT_COLUMNS, ["receiver", "event_id"], [ev.c.seq, ev.c.receiver, ev.c.event_id], dialect, insert
        )
        self.seen = MultiRowInsert(
            seen, SEEN_COLUMNS, ["receiver", "event_id"], [seen.c.receiver, seen.c.event_id], dialect, insert
        )

        def key(table: sa.Table) -> Any:
            c = table.c
            return sa.and_(
                c.receiver == sa.bindparam("receiver", type_=c.receiver.type),
                c.event_id == sa.bindparam("event_id", type_=c.event_id.type),
            )

        self.seen_lookup = Prepared(sa.select(seen.c.seq, seen.c.body_sha256).where(key(seen)), dialect)
        self.event_lookup = Prepared(sa.select(ev.c.seq, ev.c.body).where(key(ev)), dialect)
        self.delete_event = Prepared(sa.delete(ev).where(ev.c.seq == sa.bindparam("seq", type_=ev.c.seq.type)), dialect)
        upsert = insert(conflicts).values(
            receiver=sa.bindparam("receiver", type_=conflicts.c.receiver.type),
            hour=sa.bindparam("hour", type_=conflicts.c.hour.type),
            count=sa.bindparam("count", type_=conflicts.c.count.type),
        )
        self.count_conflicts = Prepared(
            upsert.on_conflict_do_update(
                index_elements=["receiver", "hour"], set_={"count": conflicts.c.count + upsert.excluded.count}
            ),
            dialect,
        )
        self.lock: tuple[str] | None = None
        self.notify: Prepared | None = None
        if dialect.name == "postgresql":
            # Take the ordering lock before drawing a seq (see the store's doc), in one round trip, its
            # wait bounded by lock_timeout: CASE evaluates its condition (set_config) before its result.
            timeout = sa.func.set_config("lock_timeout", f"{int(busy_timeout * 1000)}ms", True)
            lock = sa.select(sa.case((timeout.is_not(None), sa.func.pg_advisory_xact_lock(lock_key))))
            self.lock = (str(lock.compile(dialect=dialect, compile_kwargs={"literal_binds": True})),)
            self.notify = Prepared(
                sa.select(
                    sa.func.pg_notify(sa.bindparam("channel", type_=sa.Text), sa.bindparam("payload", type_=sa.Text))
                ),
                dialect,
            )
