"""A filter that can never match is not silent: resource/action names checked against what ION knows.

Where the names come from, in order: ION's own enums (``ResourceEnum``, ``WebhookSubscriptionActions``) by
introspection through the connection ``[ion_webhooks] ion_conn_id`` (cached per process for an hour);
when ION cannot be reached (or the setting is ``none``), the names seen in the inbox's newest events. A name
that is not among them is logged at WARNING with the closest valid ones. Never an error: a subscription may
be created after the DAG, and ION's spelling of resources in bodies (RUN or RUNS) is not published, so the
filter compares both spellings (:func:`airflow_provider_ion.resources.canonical_resource`).

Nothing heavy at import; the hook and the inbox are imported when a check runs (in the triggerer or the task).
"""

from __future__ import annotations

import difflib
import logging
import threading
import time
from collections.abc import Iterable
from typing import Any

from airflow_provider_ion.triggers.matching import name_key

log = logging.getLogger(__name__)

ENUMS = {"resource": "ResourceEnum", "action": "WebhookSubscriptionActions"}
#: Seconds ION's enums are cached per process.
CACHE_SECONDS = 3600.0
#: Inbox events looked at when ION cannot be reached.
INBOX_SAMPLE = 1000

_cache: dict[tuple[str, str], tuple[float, list[str] | None]] = {}
_lock = threading.Lock()


def _ion_names(conn_id: str, what: str) -> list[str] | None:
    key = (conn_id, what)
    with _lock:
        hit = _cache.get(key)
        if hit is not None and time.monotonic() - hit[0] < CACHE_SECONDS:
            return hit[1]
    names: list[str] | None
    try:
        from airflow_provider_ion.hooks.ion import IonHook

        names = IonHook(conn_id).enum_values(ENUMS[what])
    except Exception as error:  # ION unreachable, no connection: fall back to the inbox
        log.debug("ION enum %s not available: %s", ENUMS[what], error)
        names = None
    with _lock:
        _cache[key] = (time.monotonic(), names)
    return names


def _inbox_names(inbox: Any, what: str) -> list[str]:
    return sorted({str(getattr(e, what)) for e in inbox.latest(INBOX_SAMPLE) if getattr(e, what, None)})


def unknown_names(
    values: Iterable[str] | None, what: str, *, inbox: Any = None, conn_id: str | None = None
) -> list[tuple[str, list[str], str]]:
    """``[(value, closest valid names, where the valid names came from)]`` for each value not known."""
    if not values:
        return []
    source = "ION"
    known = _ion_names(conn_id, what) if conn_id and conn_id.lower() != "none" else None
    if known is None:
        if inbox is None:
            return []
        known, source = _inbox_names(inbox, what), "the inbox's recent events"
        if not known:
            return []  # nothing seen yet: no basis for a warning
    canon = {name_key(k): k for k in known}
    found = []
    for value in values:
        if name_key(value) in canon:
            continue
        close = difflib.get_close_matches(str(value).upper(), [k.upper() for k in known], n=3, cutoff=0.5)
        found.append((value, close, source))
    return found


def warn_unknown(
    logger: Any, who: str, resources: Iterable[str] | None, actions: Iterable[str] | None, inbox: Any = None
) -> int:
    """Log one WARNING per resource/action that can never match; the number of warnings."""
    from airflow_provider_ion import config

    conn_id = config.get("ion_conn_id")
    count = 0
    for what, values in (("resource", resources), ("action", actions)):
        for value, close, source in unknown_names(values, what, inbox=inbox, conn_id=conn_id):
            count += 1
            hint = f"closest valid: {', '.join(close)}" if close else "no close match"
            logger.warning(
                "%s: %s %r is not a value %s knows, so this filter never matches (%s)", who, what, value, source, hint
            )
    return count
