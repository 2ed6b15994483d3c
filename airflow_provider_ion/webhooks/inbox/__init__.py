"""The durable webhook inbox (SQLite or PostgreSQL): see :mod:`.store` for its contracts.

Modules: ``store`` (:class:`Inbox`: engine, reads, cursors, counters, retention, stats), ``writer`` (the
group-commit writer and row validation), ``statements`` (the writer's compiled SQL), ``schema`` (tables),
``migrations`` (schema versions, upgrade on first use), ``quarantine``, ``consumers`` (what triggers
and sensors consume, for the audit), ``listener`` (wake-ups),
``records`` (results and errors). Import from here; the modules are the package's own business.
"""

from __future__ import annotations

from airflow_provider_ion.webhooks.inbox.consumers import ConsumerRecord
from airflow_provider_ion.webhooks.inbox.listener import InboxListener
from airflow_provider_ion.webhooks.inbox.migrations import CURRENT_VERSION as SCHEMA_VERSION
from airflow_provider_ion.webhooks.inbox.records import (
    AppendResult,
    InboxEvent,
    InboxUnavailable,
    InvalidDelivery,
    QuarantinedDelivery,
)
from airflow_provider_ion.webhooks.inbox.store import (
    DEFAULT_MAX_BATCH,
    DEFAULT_RETENTION,
    Inbox,
    WriteTransaction,
    default_inbox_url,
)

__all__ = [
    "DEFAULT_MAX_BATCH",
    "DEFAULT_RETENTION",
    "SCHEMA_VERSION",
    "AppendResult",
    "ConsumerRecord",
    "Inbox",
    "InboxEvent",
    "InboxListener",
    "InboxUnavailable",
    "InvalidDelivery",
    "QuarantinedDelivery",
    "WriteTransaction",
    "default_inbox_url",
]
