"""The data behind the "ION webhooks" page: one dict per view, rendered by the app's templates.

Reads go through the inbox's public API (``stats``, ``rejection_counts``, ``get``, ``list_cursors``,
``quarantined``) and :mod:`.queries` for the reads it does not offer; what Airflow made of a delivery
comes from :mod:`.airflow_runs`. A part that fails (the inbox down, ION unreachable, Airflow's DB busy)
is reported on the page and the other parts still render.

Example::

    context = build_page(state, user, form={}, since=None, until=None, errors=[], can_edit=False)
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from airflow_provider_ion.ui import queries
from airflow_provider_ion.webhooks.inbox import InboxUnavailable

log = logging.getLogger(__name__)

#: Most quarantined deliveries listed.
QUARANTINE_LIMIT = 100
#: Deliveries checked for "in no DAG run", and most of them listed.
UNCONSUMED_CHECKED = 200
UNCONSUMED_SHOWN = 25


@dataclass
class ReceiverView:
    """One row of the Receivers table."""

    name: str
    accepted_hour: int = 0
    accepted_day: int = 0
    rejected_hour: dict[str, int] = field(default_factory=dict)
    rejected_day: dict[str, int] = field(default_factory=dict)
    quarantined: int = 0
    last: queries.DeliveryRow | None = None
    ion: list[Any] = field(default_factory=list)

    @property
    def rejected_hour_total(self) -> int:
        return sum(self.rejected_hour.values())

    @property
    def rejected_day_total(self) -> int:
        return sum(self.rejected_day.values())


def _runs_for(traces: dict, row: queries.DeliveryRow, dag_ids: set[str] | None) -> dict[str, Any]:
    from airflow_provider_ion.ui.airflow_runs import trace_of

    trace = trace_of(traces, row.receiver, row.event_id)
    if trace is None:
        return {"asset_events": 0, "runs": []}
    runs = [r for r in trace.runs if dag_ids is None or r.dag_id in dag_ids]
    return {"asset_events": len(trace.asset_events), "runs": runs}


def _traces(rows: Iterable[queries.DeliveryRow], errors: list[str]) -> dict:
    rows = list(rows)
    if not rows:
        return {}
    from airflow_provider_ion.ui.airflow_runs import traces_since

    try:
        return traces_since(min(r.received_at for r in rows))
    except Exception as error:  # Airflow's DB busy or unreachable: the inbox part still renders
        log.warning("ION UI: could not read asset events: %s", error)
        errors.append(f"Could not read DAG runs from Airflow's database: {type(error).__name__}")
        return {}


def _headers_names(headers: Any) -> list[str]:
    # Only the names: values may be credentials (ION receivers' custom headers) or signatures.
    return sorted(str(k) for k in headers) if isinstance(headers, dict) else []


def _event_id_of(body: bytes) -> str | None:
    try:
        parsed = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    value = parsed.get("event_id") if isinstance(parsed, dict) else None
    return None if value is None else str(value)


def build_page(
    state: Any,
    user: Any,
    form: dict[str, Any],
    since: datetime | None,
    until: datetime | None,
    errors: list[str],
    *,
    can_edit: bool,
) -> dict[str, Any]:
    """The context of ``page.html``."""
    from airflow_provider_ion.ui.airflow_runs import readable_dag_ids

    now = datetime.now(UTC)
    inbox = state.inbox
    ion = state.ion.snapshot()
    receivers: dict[str, ReceiverView] = {}
    deliveries: list[dict[str, Any]] = []
    consumers: list[queries.ConsumerLag] = []
    unconsumed: list[dict[str, Any]] = []
    quarantine: list[dict[str, Any]] = []
    detected: dict[str, dict[str, Any]] = {}
    stats: dict[str, Any] = {"url": inbox.safe_url, "total": 0, "latest_seq": 0}
    inbox_error = None
    try:
        dag_ids = readable_dag_ids(user)
    except Exception as error:  # cannot tell which DAGs the user may read: show no runs rather than all
        log.warning("ION UI: could not read the user's DAG permissions: %s", error)
        errors.append(f"Could not read your DAG permissions from Airflow: {type(error).__name__}; runs not shown")
        dag_ids = set()
    try:
        stats["total"], stats["latest_seq"] = queries.totals(inbox)
        for name, activity in queries.receiver_activity(inbox, now=now).items():
            receivers[name] = ReceiverView(name, activity.accepted_hour, activity.accepted_day, last=activity.last)
        for window, attr in ((queries.HOUR, "rejected_hour"), (queries.DAY, "rejected_day")):
            for name, reasons in inbox.rejection_counts(since=now - window).items():
                setattr(receivers.setdefault(name, ReceiverView(name)), attr, dict(sorted(reasons.items())))
        for item in inbox.quarantined(limit=QUARANTINE_LIMIT):
            receivers.setdefault(item.receiver, ReceiverView(item.receiver)).quarantined += 1
            quarantine.append(
                {
                    "id": str(item.id),
                    "receiver": item.receiver,
                    "received_at": queries.as_utc(item.received_at),
                    "reason": item.reason,
                    "size": len(item.body),
                    "event_id": _event_id_of(bytes(item.body)),
                    "header_names": _headers_names(item.headers),
                }
            )
        detected = detected_settings(state, sorted({q["receiver"] for q in quarantine}))
        filters = queries.DeliveryFilter(
            receiver=form.get("receiver") or None,
            resource=form.get("resource") or None,
            action=form.get("action") or None,
            event_id=form.get("event_id") or None,
            since=since,
            until=until,
        )
        rows = queries.deliveries(inbox, filters, limit=int(form.get("limit") or 50))
        consumers = queries.consumer_lag(inbox, now=now)
        settled = queries.settled_deliveries(
            inbox, now=now, older_than=timedelta(seconds=state.unconsumed_after), limit=UNCONSUMED_CHECKED
        )
        traces = _traces([*rows, *settled], errors)
        deliveries = [{"row": r, **_runs_for(traces, r, dag_ids)} for r in rows]
        for r in settled:
            found = _runs_for(traces, r, dag_ids)
            if not found["runs"]:
                unconsumed.append({"row": r, **found})
    except InboxUnavailable as error:
        inbox_error = str(error)
    for name, items in ion.receivers.items():
        receivers.setdefault(name, ReceiverView(name)).ion = items
    for name, view in receivers.items():
        if not view.ion:
            view.ion = ion.receivers.get(name.lower(), [])
    receiver_stats = None
    if state.receiver_stats is not None:
        try:
            receiver_stats = state.receiver_stats()
        except Exception as error:  # diagnostics only
            log.warning("ION UI: receiver counters unavailable: %s", error)
    return {
        "now": now,
        "form": form,
        "errors": errors,
        "inbox_error": inbox_error,
        "stats": stats,
        "receivers": [receivers[k] for k in sorted(receivers)],
        "deliveries": deliveries,
        "consumers": consumers,
        "unconsumed": unconsumed[:UNCONSUMED_SHOWN],
        "unconsumed_total": len(unconsumed),
        "unconsumed_checked": UNCONSUMED_CHECKED,
        "unconsumed_after": state.unconsumed_after,
        "quarantine": quarantine,
        "quarantine_limit": QUARANTINE_LIMIT,
        "detected": detected,
        "ion": ion,
        "ion_age": None if ion.fetched_at is None else max(0, int(now.timestamp() - ion.fetched_at)),
        "receiver_stats": receiver_stats,
        "signature_scheme": state.signature_scheme,
        "can_edit": can_edit,
        "user_name": getattr(user, "get_name", lambda: "")(),
    }


def build_run_view(state: Any, dag_id: str, run_id: str | None) -> dict[str, Any]:
    """The context of ``runs.html``: the deliveries the runs of ``dag_id`` (or one run) consumed."""
    from airflow_provider_ion.ui.airflow_runs import traces_for_run

    items: list[dict[str, Any]] = []
    error = None
    try:
        traces = traces_for_run(dag_id, run_id)
    except Exception as exc:
        log.warning("ION UI: could not read asset events of %s: %s", dag_id, exc)
        traces, error = {}, f"Could not read DAG runs from Airflow's database: {type(exc).__name__}"
    for (receiver, event_id), trace in traces.items():
        stored = None
        if receiver is not None:
            try:
                stored = state.inbox.get(receiver, event_id)
            except InboxUnavailable as exc:
                error = str(exc)
        items.append({"receiver": receiver, "event_id": event_id, "runs": trace.runs, "stored": stored})
    return {"dag_id": dag_id, "run_id": run_id, "items": items, "error": error, "now": datetime.now(UTC)}


def replay_quarantined(state: Any, ids: list[str]) -> dict[str, Any]:
    """Verify the quarantined deliveries ``ids`` again with the signature settings now in force and
    append only what verifies (:func:`airflow_provider_ion.webhooks.quarantine_replay.replay_quarantined`,
    the same function as ``airflow-ion inbox replay-quarantined``). What still fails stays in quarantine
    and is reported under ``refused``; a delivery already in the inbox counts as a duplicate."""
    from airflow_provider_ion.webhooks.quarantine_replay import replay_quarantined as replay

    wanted = {str(i) for i in ids}
    by_receiver: dict[str, set[str]] = {}
    for item in state.inbox.quarantined(limit=1000):
        if str(item.id) in wanted:
            by_receiver.setdefault(item.receiver, set()).add(str(item.id))
    found = set().union(*by_receiver.values()) if by_receiver else set()
    result: dict[str, Any] = {"replayed": [], "duplicates": [], "refused": {}, "missing": sorted(wanted - found)}
    scheme = state.current_scheme()
    for receiver, keys in sorted(by_receiver.items()):
        secrets = state.secrets_for(receiver)
        done = replay(state.inbox, receiver, secrets, scheme, limit=1000, ids=keys)
        result["replayed"] += done.appended
        result["duplicates"] += done.duplicates
        for key in done.still_failing:
            result["refused"][key] = (
                "signature still fails with the current settings"
                if secrets
                else f"no shared secret is configured for receiver {receiver!r}"
            )
        for key in done.invalid:
            result["refused"][key] = "body is not a JSON object with an event_id"
    return result


def detected_settings(state: Any, receivers: list[str]) -> dict[str, dict[str, Any]]:
    """Per receiver with quarantined deliveries: what :mod:`~airflow_provider_ion.webhooks.signature_detect`
    finds (``detect_quarantined``): scheme descriptions and ``[ion_webhooks]`` settings, never a secret."""
    from airflow_provider_ion.webhooks.quarantine_replay import detect_quarantined

    found: dict[str, dict[str, Any]] = {}
    for receiver in receivers:
        try:
            secrets = state.secrets_for(receiver)
        except Exception as error:  # diagnostics only: the page still renders
            log.warning("ION UI: could not resolve the secret of receiver %r: %s", receiver, type(error).__name__)
            secrets = ()
        detected = detect_quarantined(state.inbox, receiver, secrets, limit=QUARANTINE_LIMIT)
        detected["has_secret"] = bool(secrets)
        found[receiver] = detected
    return found
