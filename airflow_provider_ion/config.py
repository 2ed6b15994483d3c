"""Every ``[ion_webhooks]`` setting, declared once and read one way.

The receiver, the triggers, the sensor, the audit and the ``airflow-ion`` CLI all read their settings
through :func:`get`. Each option is declared in :data:`OPTIONS` (which ``get_provider_info()["config"]``
publishes, so ``airflow config list`` shows it with its description and default) and is set like any
Airflow option: in ``airflow.cfg`` under ``[ion_webhooks]`` or as ``AIRFLOW__ION_WEBHOOKS__<KEY>``.

Outside an Airflow installation (the standalone receiver on a host without ``airflow.cfg``) only the
environment variable form is read. This module imports nothing heavy: DAG files import it through the
triggers at parse time.

Example::

    from airflow_provider_ion import config

    url = config.inbox_url()                  # [ion_webhooks] inbox_url, else $AIRFLOW_HOME/ion_inbox.db
    interval = config.get_float("poll_interval")
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

SECTION = "ion_webhooks"

#: The declared options: ``get_provider_info()["config"]`` publishes them as they are. ``default`` is the
#: value used when the option is not set (``None``: unset, the reader decides, as for ``inbox_url``).
OPTIONS: dict[str, dict[str, Any]] = {
    "inbox_url": {
        "description": "Where the receiver stores deliveries and triggers, sensors, the audit and the CLI read "
        "them: a SQLAlchemy URL (sqlite:////path/inbox.db or postgresql+psycopg://user@host/db). Unset: a "
        "SQLite file ion_inbox.db in AIRFLOW_HOME. Every component of one deployment must use the same value.",
        "version_added": "0.2.0",
        "type": "string",
        "example": "postgresql+psycopg://airflow@db:5432/airflow",
        "default": None,
    },
    "poll_interval": {
        "description": "Seconds between inbox reads by the one inbox reader of each triggerer process "
        "(on PostgreSQL the reader also wakes on NOTIFY). Floored at 0.01.",
        "version_added": "0.2.0",
        "type": "float",
        "example": "0.5",
        "default": "0.2",
    },
    "max_body_bytes": {
        "description": "Largest delivery body the receiver accepts (413 above it); checked while streaming.",
        "version_added": "0.2.0",
        "type": "integer",
        "example": "262144",
        "default": "1048576",
    },
    "allowed_cidrs": {
        "description": "Comma-separated source networks allowed to deliver (ION publishes its source addresses "
        "per environment). Empty: any source.",
        "version_added": "0.2.0",
        "type": "string",
        "example": "203.0.113.7/32,203.0.113.8/32",
        "default": "",
    },
    "trusted_proxies": {
        "description": "Comma-separated networks of proxies whose X-Forwarded-For the allow list trusts. "
        "Empty: the peer address is the source.",
        "version_added": "0.2.0",
        "type": "string",
        "example": "10.0.0.0/8",
        "default": "",
    },
    "required_fields": {
        "description": "Comma-separated top-level fields a delivery body must carry (400 otherwise).",
        "version_added": "0.2.0",
        "type": "string",
        "example": "event_id,resource,action",
        "default": "event_id,resource",
    },
    "ion_conn_id": {
        "description": "Connection the receiver uses to look a receiver's shared secret up in ION when no "
        "Variable or Connection holds it. 'none' turns the look-up off.",
        "version_added": "0.2.0",
        "type": "string",
        "example": "ion_default",
        "default": "ion_default",
    },
    "secret_refresh_interval": {
        "description": "Seconds a receiver's secret may be re-read at most once after a signature mismatch.",
        "version_added": "0.2.0",
        "type": "float",
        "example": "60",
        "default": "60",
    },
    "body_timeout": {
        "description": "Seconds the receiver waits for a delivery's whole body once its headers arrived; a "
        "client still sending after that gets 408 and its connection is closed (a stalled or trickling client "
        "cannot hold a connection open).",
        "version_added": "0.2.0",
        "type": "float",
        "example": "10",
        "default": "30",
    },
    "max_event_age": {
        "description": "Seconds: refuse (400) a signed delivery whose own timestamp (the event_time_field of its "
        "body) is older than this, so a captured delivery cannot be replayed after the inbox forgot its id. "
        "0 turns the check off (the default: ION publishes no signed timestamp and retries for an unknown "
        "time; if you turn it on, set it above ION's retry horizon).",
        "version_added": "0.2.0",
        "type": "float",
        "example": "1209600",
        "default": "0",
    },
    "event_time_field": {
        "description": "Top-level body field holding the event's own timestamp (ISO 8601), read only when "
        "max_event_age is set. The field's name in ION's bodies is not published; created_at is our guess.",
        "version_added": "0.2.0",
        "type": "string",
        "example": "created_at",
        "default": "created_at",
    },
    "freeze_gc_at_startup": {
        "description": "Standalone receiver only: gc.freeze() the heap after startup (keeps full collections "
        "of Airflow's import-time objects off the delivery path).",
        "version_added": "0.2.0",
        "type": "boolean",
        "example": "False",
        "default": "True",
    },
    "dedup_horizon_days": {
        "description": "Days the inbox remembers a delivery's (receiver, event_id) and body hash after storing it, "
        "so a replay is a duplicate also after the body was purged (bodies are kept 7 days). At least the "
        "retention.",
        "version_added": "0.2.0",
        "type": "float",
        "example": "90",
        "default": "90",
    },
    "quarantine_max_count": {
        "description": "Most deliveries with a failed signature the inbox keeps per known receiver for "
        "inspection (further ones are counted as rejections only).",
        "version_added": "0.2.0",
        "type": "integer",
        "example": "100",
        "default": "100",
    },
    "quarantine_max_bytes": {
        "description": "Most bytes of quarantined bodies the inbox keeps per known receiver.",
        "version_added": "0.2.0",
        "type": "integer",
        "example": "10485760",
        "default": "10485760",
    },
    "signature_header": {
        "description": "Header carrying the delivery's signature.",
        "version_added": "0.2.0",
        "type": "string",
        "example": "x-ion-signature",
        "default": "x-ion-signature",
    },
    "signature_algorithm": {
        "description": "HMAC digest algorithm (a hashlib name). ION publishes only 'HMAC'; sha256 is our assumption.",
        "version_added": "0.2.0",
        "type": "string",
        "example": "sha256",
        "default": "sha256",
    },
    "signature_encoding": {
        "description": "How the digest is written in the header: hex or base64.",
        "version_added": "0.2.0",
        "type": "string",
        "example": "hex",
        "default": "hex",
    },
    "signature_prefix": {
        "description": "Prefix written before the digest by the emulator's signer; the receiver accepts the "
        "signature with or without it. 'none' for no prefix.",
        "version_added": "0.2.0",
        "type": "string",
        "example": "none",
        "default": "sha256=",
    },
    "ui_unconsumed_after": {
        "description": "The 'ION webhooks' page lists deliveries older than this many seconds that no DAG run "
        "consumed.",
        "version_added": "0.2.0",
        "type": "float",
        "example": "900",
        "default": "300",
    },
    "max_event_bytes_in_airflow": {
        "description": "Largest delivery body (as JSON, bytes) an IonWebhookTrigger copies into its asset event "
        "(Airflow's metadata DB) and the sensor into XCom; a larger body stays in the inbox and IonEvent.body reads "
        "it from there. -1: no limit.",
        "version_added": "0.2.0",
        "type": "integer",
        "example": "65536",
        "default": "16384",
    },
    "stranded_event_sweep": {
        "description": "Make every asset event an IonWebhookTrigger fires reach a DAG run on Airflow releases whose "
        "scheduler leaves events out of runs (before 3.4.0, apache/airflow PR #70972): after a burst the trigger "
        "re-queues the DAGs through Airflow's REST API (README: 'Every event reaches a DAG run'). auto: on below "
        "Airflow 3.4.0; on; off.",
        "version_added": "0.2.0",
        "type": "string",
        "example": "off",
        "default": "auto",
    },
    "sweep_quiet_period": {
        "description": "Seconds without a new event from a trigger before its stranded-event sweep looks at Airflow.",
        "version_added": "0.2.0",
        "type": "float",
        "example": "2",
        "default": "1.0",
    },
    "airflow_api_url": {
        "description": "Airflow's API server as the triggerer reaches it, for the stranded-event sweep. Unset: "
        "Airflow's [api] base_url.",
        "version_added": "0.2.0",
        "type": "string",
        "example": "http://airflow-api:8080",
        "default": None,
    },
    "airflow_api_conn_id": {
        "description": "Connection whose login and password the stranded-event sweep exchanges for a token at the "
        "API server's /auth/token (the user needs to read DAG runs and asset events, and to write asset events "
        "and queued events). Unset: the sweep asks GET /auth/token, which only the simple auth manager "
        "with all_admins answers (development).",
        "version_added": "0.2.0",
        "type": "string",
        "example": "airflow_api",
        "default": None,
    },
}

_FALSE = frozenset({"0", "false", "no", "off"})
_TRUE = frozenset({"1", "true", "yes", "on"})


def _declared(key: str) -> dict[str, Any]:
    try:
        return OPTIONS[key]
    except KeyError:
        raise KeyError(f"[{SECTION}] {key} is not a declared option; known: {', '.join(sorted(OPTIONS))}") from None


def airflow_conf() -> Any | None:
    """Airflow's config parser (``airflow.sdk.conf``, or ``airflow.configuration.conf`` on 3.1); None
    outside an Airflow installation."""
    try:
        from airflow.sdk import conf as sdk_conf  # task-sdk 1.2+ (Airflow 3.2+)

        return sdk_conf
    except ImportError:
        pass
    try:
        # Airflow 3.1 (task-sdk 1.1) has no airflow.sdk.conf: airflow.configuration is its public config.
        from airflow.configuration import conf as core_conf

        return core_conf
    except ImportError:  # outside an Airflow installation: environment variables only
        return None


def get(key: str) -> str | None:
    """The option's value as text: Airflow config (``airflow.cfg`` or ``AIRFLOW__ION_WEBHOOKS__<KEY>``),
    else the declared default. An empty value counts as unset."""
    option = _declared(key)
    conf = airflow_conf()
    if conf is not None:
        value = conf.get(SECTION, key, fallback=None)
    else:
        value = os.environ.get(f"AIRFLOW__{SECTION.upper()}__{key.upper()}")
    if value is None or str(value).strip() == "":
        return option["default"]
    return str(value)


def get_float(key: str) -> float:
    value = get(key)
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError(f"[{SECTION}] {key} must be a number, got {value!r}") from None


def get_int(key: str) -> int:
    value = get(key)
    try:
        return int(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError(f"[{SECTION}] {key} must be a whole number, got {value!r}") from None


def get_bool(key: str) -> bool:
    value = (get(key) or "").strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(f"[{SECTION}] {key} must be true or false, got {value!r}")


def get_list(key: str) -> tuple[str, ...]:
    """A comma-separated option as a tuple of stripped, non-empty items."""
    return tuple(item.strip() for item in (get(key) or "").split(",") if item.strip())


def airflow_home() -> Path:
    """``$AIRFLOW_HOME``, else ``~/airflow`` (Airflow's own default)."""
    return Path(os.environ.get("AIRFLOW_HOME") or Path.home() / "airflow")


def inbox_url(explicit: str | None = None) -> str:
    """The inbox every component uses: ``explicit`` (an argument), else ``[ion_webhooks] inbox_url``, else
    a SQLite file ``ion_inbox.db`` in ``AIRFLOW_HOME``."""
    return explicit or get("inbox_url") or f"sqlite:///{airflow_home() / 'ion_inbox.db'}"


def provider_config() -> dict[str, Any]:
    """The ``config`` entry of ``get_provider_info()``."""
    return {
        SECTION: {
            "description": "The ION webhook receiver, its inbox and the triggers and sensors that read it.",
            "options": {key: dict(option) for key, option in OPTIONS.items()},
        }
    }
