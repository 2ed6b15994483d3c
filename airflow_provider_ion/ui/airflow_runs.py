"""Which DAG runs an ION delivery started: read from Airflow's metadata DB inside the API server.

An event trigger hands each delivery to Airflow as a TriggerEvent; Airflow stores it as an asset event
whose ``extra`` is ``{"from_trigger": True, "payload": <the event>}`` (``models/trigger.py``
``submit_event`` -> ``AssetManager.register_asset_change``), and the scheduler links every asset event a
run consumed through the ``dagrun_asset_event`` table (``models/asset.py`` ``association_table``,
``AssetEvent.created_dagruns``). The payload carries the delivery's ``receiver`` and ``event_id``, so a
delivery maps to its asset events and from them to its runs. Deferred sensors hand the event to their
task instead (no asset event): those are not traced here.

This module runs only inside Airflow's API server (it uses Airflow's ORM session); it is imported by the
UI app on first request, never at DAG-parse time.

Example::

    traces = traces_since(datetime.now(UTC) - timedelta(hours=1))
    traces[("factory", "42")].runs      # [RunRef(dag_id="ion_on_run", run_id="asset_triggered__...")]
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

#: Asset events are written after the delivery was received; look back this much further than the
#: oldest delivery shown, for clock differences between the receiver and the triggerer host.
CLOCK_SLACK = timedelta(minutes=5)
#: Most asset events read for one page.
MAX_ASSET_EVENTS = 5000


@dataclass(frozen=True, slots=True)
class RunRef:
    """A DAG run (``dag_id``, ``run_id``) and its state."""

    dag_id: str
    run_id: str
    state: str | None


@dataclass
class Trace:
    """What Airflow made of one delivery: its asset events and the runs that consumed them."""

    asset_events: list[int] = field(default_factory=list)
    runs: list[RunRef] = field(default_factory=list)


def _delivery_key(extra: Any) -> tuple[str | None, str] | None:
    payload = extra.get("payload") if isinstance(extra, dict) else None
    if not isinstance(payload, dict) or payload.get("event_id") is None:
        return None
    receiver = payload.get("receiver")
    return (None if receiver is None else str(receiver), str(payload["event_id"]))


def _rows(since: datetime | None, dag_id: str | None, run_id: str | None) -> list[Any]:
    import sqlalchemy as sa
    from airflow.models.asset import AssetEvent, association_table
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session

    query = (
        sa.select(AssetEvent.id, AssetEvent.extra, DagRun.dag_id, DagRun.run_id, DagRun.state)
        .select_from(AssetEvent)
        .outerjoin(association_table, association_table.c.event_id == AssetEvent.id)
        .outerjoin(DagRun, DagRun.id == association_table.c.dag_run_id)
    )
    if since is not None:
        query = query.where(AssetEvent.timestamp >= since - CLOCK_SLACK)
    if dag_id is not None:
        query = query.where(DagRun.dag_id == dag_id)
    if run_id is not None:
        query = query.where(DagRun.run_id == run_id)
    query = query.order_by(AssetEvent.id.desc()).limit(MAX_ASSET_EVENTS)
    with create_session() as session:
        return list(session.execute(query))


def _collect(rows: Iterable[Any]) -> dict[tuple[str | None, str], Trace]:
    out: dict[tuple[str | None, str], Trace] = {}
    for row in rows:
        key = _delivery_key(row.extra)
        if key is None:
            continue
        trace = out.setdefault(key, Trace())
        if row.id not in trace.asset_events:
            trace.asset_events.append(row.id)
        if row.run_id is not None:
            ref = RunRef(row.dag_id, row.run_id, None if row.state is None else str(row.state))
            if ref not in trace.runs:
                trace.runs.append(ref)
    return out


def traces_since(since: datetime) -> dict[tuple[str | None, str], Trace]:
    """``{(receiver, event_id): Trace}`` of the asset events written since ``since`` (minus clock slack)."""
    return _collect(_rows(since, None, None))


def traces_for_run(dag_id: str, run_id: str | None = None) -> dict[tuple[str | None, str], Trace]:
    """The deliveries consumed by the runs of ``dag_id`` (one run when ``run_id`` is given), newest first."""
    return _collect(_rows(None, dag_id, run_id))


def trace_of(traces: dict[tuple[str | None, str], Trace], receiver: str, event_id: str) -> Trace | None:
    """The trace of ``(receiver, event_id)``; a payload without a receiver matches by event id alone."""
    return traces.get((receiver, event_id)) or traces.get((None, event_id))


def readable_dag_ids(user: Any) -> set[str] | None:
    """The DAG ids ``user`` may read (auth manager's ``get_authorized_dag_ids``); None when it cannot tell."""
    from airflow.api_fastapi.app import get_auth_manager

    try:
        return set(get_auth_manager().get_authorized_dag_ids(user=user, method="GET"))
    except NotImplementedError:
        return None
