"""The stranded-event sweep: every asset event an ``IonWebhookTrigger`` fires reaches a DAG run.

Why (Airflow 3.3.x, read in its source): an asset event queues one ``AssetDagRunQueue`` row per target DAG
whose ``created_at`` is set once (``models/asset.py`` ``AssetDagRunQueue.created_at`` default; a second
event merges into the row, ``assets/manager.py`` ``_queue_dagruns_nonpartitioned_*``). The scheduler cuts
a run at the newest row's ``created_at``, gives it the events with ``previous run_after < timestamp <=
cut`` and deletes the rows (``jobs/scheduler_job_runner.py`` ``_create_dag_runs_asset_triggered``); while
the DAG is at ``max_active_runs`` the row is kept and the cut stays at its old ``created_at``
(``models/dag.py`` ``dags_needing_dagruns``). An event written while the row existed is therefore left out
and waits for the *next* event of its asset. Fixed upstream by apache/airflow PR #70972 (the queue row
references its asset event; migration ``0128_3_4_0_add_asset_event_id_to_adrq``, so Airflow 3.4.0).

What (after a burst, over Airflow's public REST API): once the trigger has fired nothing for
``[ion_webhooks] sweep_quiet_period`` seconds, and its newest event is visible in Airflow, the sweep looks
at each DAG scheduled on the trigger's asset(s):

- a queue row exists but an event of the asset is newer than the row: the run it will make leaves that
  event out. The sweep deletes the row (``DELETE /dags/{dag}/assets/{asset}/queuedEvents``) and posts one
  asset event (``POST /assets/events``), which re-creates it *now*: the next run takes every event.
  No run is added (the row would have made one anyway);
- no queue row, and an event of the asset is newer than the DAG's newest asset-triggered run: it is
  stranded. The posted asset event queues a run that takes it (the one extra run of the burst).

The posted event's ``extra`` is ``{"ion_sweep": {...}, "payload": <the trigger's newest event>}``: code
that reads ``extra["payload"]`` sees a repeat of an event with the same ``event_id`` (``IonEvent`` skips
it). Nothing is swept when nothing is stranded. It runs in the triggerer, inside the trigger. With several
triggerers each trigger, so each sweep, runs on one of them: a triggerer takes only triggers without a live
triggerer (``models/trigger.py`` ``Trigger.assign_unassigned``) and cancels those no longer assigned to it
(``jobs/triggerer_job_runner.py`` ``load_triggers``/``ids_for_triggerer``); tested with two triggerers in
``tests/e2e/test_stranded_two_triggerers.py``. Read in that source, not tested: when a triggerer misses
heartbeats for ``[triggerer] triggerer_health_check_threshold``, another takes its triggers while it may still
run them until its next loop, so in that window both can sweep (a guess: one more sweep event, so possibly one
more extra run).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from datetime import datetime
from typing import Any

log = logging.getLogger(__name__)

#: apache/airflow PR #70972 (migration 0128_3_4_0_add_asset_event_id_to_adrq) ends the stranding.
SCHEDULER_FIXED_IN = (3, 4, 0)
#: How long the sweep waits for the trigger's newest event to become visible in Airflow.
VISIBILITY_TIMEOUT = 60.0
#: Asset events read per look-up (the newest ones of the asset).
NEWEST = 25


def _version_tuple(text: str) -> tuple[int, ...]:
    parts = []
    for piece in text.split(".")[:3]:
        digits = "".join(ch for ch in piece if ch.isdigit())
        if not digits:
            break
        parts.append(int(digits))
    return tuple(parts)


def sweep_enabled() -> bool:
    """``[ion_webhooks] stranded_event_sweep``: ``on``, ``off`` or ``auto`` (on below Airflow 3.4.0)."""
    from airflow_provider_ion import config

    mode = (config.get("stranded_event_sweep") or "auto").strip().lower()
    if mode in ("on", "true", "1"):
        return True
    if mode in ("off", "false", "0"):
        return False
    if mode != "auto":
        raise ValueError(f"[ion_webhooks] stranded_event_sweep must be auto, on or off, got {mode!r}")
    from airflow import __version__

    return _version_tuple(__version__) < SCHEDULER_FIXED_IN


def _ts(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


class AirflowApi:
    """A small async client of Airflow's public REST API (``/api/v2``) for the sweep.

    Where: ``[ion_webhooks] airflow_api_url``, else Airflow's ``[api] base_url``. Credentials: the
    connection ``[ion_webhooks] airflow_api_conn_id`` (login and password, exchanged at ``POST /auth/token``);
    when that setting is unset, ``GET /auth/token`` (answered only by the simple auth manager with
    ``simple_auth_manager_all_admins``, i.e. development setups).
    """

    def __init__(self, base_url: str, conn_id: str | None) -> None:
        self.base_url = base_url.rstrip("/")
        self.conn_id = conn_id or None
        self._token: str | None = None
        self._client: Any = None

    @classmethod
    def from_config(cls) -> AirflowApi:
        from airflow_provider_ion import config

        url = config.get("airflow_api_url")
        if not url:
            from airflow.sdk import conf

            url = conf.get("api", "base_url", fallback=None) or "http://localhost:8080"
        return cls(url, config.get("airflow_api_conn_id"))

    async def _credentials(self) -> tuple[str, str] | None:
        if self.conn_id is None:
            return None
        from airflow.sdk import BaseHook

        conn = await BaseHook.aget_connection(self.conn_id)  # set but missing: an error that names it
        return (conn.login or "", conn.password or "")

    async def _login(self) -> str:
        import httpx

        if self._client is None:
            self._client = httpx.AsyncClient(timeout=20)
        creds = await self._credentials()
        if creds is not None:
            response = await self._client.post(
                f"{self.base_url}/auth/token", json={"username": creds[0], "password": creds[1]}
            )
        else:
            response = await self._client.get(f"{self.base_url}/auth/token")
        if response.status_code >= 300:
            raise PermissionError(
                f"Airflow API at {self.base_url} gave no token ({response.status_code}); set [ion_webhooks] "
                "airflow_api_conn_id to a connection with the login/password of a user who may read DAG runs and "
                "write asset events, or set [ion_webhooks] stranded_event_sweep = off"
            )
        return str(response.json()["access_token"])

    async def login(self) -> None:
        if self._token is None:
            self._token = await self._login()

    async def call(self, method: str, path: str, **kwargs: Any) -> Any:
        """JSON answer, ``None`` for 404/204; one re-login on 401."""
        for attempt in (0, 1):
            if self._token is None:
                self._token = await self._login()
            response = await self._client.request(
                method, f"{self.base_url}/api/v2{path}", headers={"authorization": f"Bearer {self._token}"}, **kwargs
            )
            if response.status_code == 401 and attempt == 0:
                self._token = None
                continue
            if response.status_code in (204, 404):
                return None
            response.raise_for_status()
            return response.json() if response.content else None
        return None

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None


async def watched_assets(api: AirflowApi, trigger_id: int | None) -> list[dict[str, Any]]:
    """The assets whose watchers run the Airflow trigger ``trigger_id`` (``GET /assets``, ``watchers``)."""
    found, offset = [], 0
    while True:
        page = await api.call("GET", "/assets", params={"limit": 100, "offset": offset})
        assets = (page or {}).get("assets", [])
        for asset in assets:
            if any(w.get("trigger_id") == trigger_id for w in asset.get("watchers") or []):
                found.append(asset)
        if len(assets) < 100:
            return found
        offset += 100


class PartitionRelay:
    """Per-event mode: each matching event becomes an asset event keyed by its ``event_id``.

    Airflow drops a trigger event (which has no partition key) for a DAG whose timetable is partition-aware
    (``assets/manager.py``, "partition-aware but the run has no partition key"), so instead of firing, the
    trigger posts the event to its asset(s) through the public REST API (``POST /api/v2/assets/events`` with
    ``partition_key``; ``api_fastapi/core_api/routes/public/assets.py`` ``create_asset_event``). A
    ``PartitionedAssetTimetable`` DAG then gets one run per key, that is per ION event. The trigger's cursor
    moves past the event only after the post succeeded (the post happens before the next event is read).
    """

    def __init__(self, trigger_id: int | None, api: AirflowApi | None = None) -> None:
        if trigger_id is None:
            raise ValueError("per_event needs an Airflow trigger (an AssetWatcher in a triggerer)")
        self.trigger_id = trigger_id
        self.api = api
        self._assets: list[dict[str, Any]] = []
        self.posted = 0

    async def _stored(self, asset_id: int, key: str) -> bool:
        """After a failed post: did Airflow store it anyway (the answer was lost)? Its newest events tell."""
        assert self.api is not None
        newest = await self.api.call(
            "GET", "/assets/events", params={"asset_id": asset_id, "order_by": "-timestamp", "limit": NEWEST * 4}
        )
        return any(e.get("partition_key") == key for e in (newest or {}).get("asset_events", []))

    async def relay(self, payload: dict[str, Any]) -> None:
        """Post ``payload`` to every watched asset with ``partition_key = event_id``; retried until it is stored
        (a post whose answer was lost is not repeated when Airflow shows it stored)."""
        failures = 0
        key = str(payload["event_id"])
        done: set[int] = set()
        while True:
            try:
                if self.api is None:
                    self.api = AirflowApi.from_config()
                if not self._assets:
                    self._assets = await watched_assets(self.api, self.trigger_id)
                    if not self._assets:
                        raise LookupError(f"no asset is watched by Airflow trigger {self.trigger_id} yet")
                for asset in self._assets:
                    if asset["id"] in done:
                        continue
                    if failures and await self._stored(asset["id"], key):
                        done.add(asset["id"])
                        continue
                    body = {"asset_id": asset["id"], "partition_key": key,
                            "extra": {"payload": payload, "ion_per_event": True}}  # fmt: skip
                    await self.api.call("POST", "/assets/events", json=body)
                    done.add(asset["id"])
                self.posted += 1
                return
            except asyncio.CancelledError:
                raise
            except Exception as error:  # Airflow API down: the event waits (the cursor does not move past it)
                failures += 1
                delay = min(30.0, 0.5 * 2 ** min(failures, 6))
                log.warning("ION per-event relay: could not post event %s (retrying in %.1fs): %s: %s",
                            key, delay, type(error).__name__, error)  # fmt: skip
                await asyncio.sleep(delay)

    async def close(self) -> None:
        if self.api is not None:
            await self.api.aclose()


class StrandedEventSweeper:
    """One trigger's sweep (see the module doc). ``fired(event)`` after each TriggerEvent; ``close()`` at the end."""

    def __init__(self, trigger_id: int | None, quiet_period: float, api: AirflowApi | None = None) -> None:
        self.trigger_id = trigger_id
        self.quiet_period = quiet_period
        self.api = api
        self.sweeps = 0
        self._last_fired_at = 0.0
        self._last_event: dict[str, Any] | None = None
        self._pending = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._assets: list[dict[str, Any]] | None = None

    def start(self) -> None:
        """Start the sweep's task; it logs in to the API at once, so that one-time cost (a connection look-up
        can make the triggerer start its in-process API client) is paid when the trigger starts, not after
        a burst."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name=f"ion-sweep[{self.trigger_id}]")

    def fired(self, event: dict[str, Any]) -> None:
        self._last_event = event
        self._last_fired_at = time.monotonic()
        self._pending.set()
        self.start()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None
        if self.api is not None:
            await self.api.aclose()

    async def _run(self) -> None:
        if self.api is None:
            self.api = AirflowApi.from_config()
        try:
            await self.api.login()
            await self._watched_assets()
        except Exception as error:  # retried by the first sweep
            log.warning("ION stranded-event sweep: Airflow API not reachable yet: %s", error)
        failures = 0
        while True:
            await self._pending.wait()
            quiet_for = time.monotonic() - self._last_fired_at
            if quiet_for < self.quiet_period:
                await asyncio.sleep(self.quiet_period - quiet_for)
                continue
            self._pending.clear()
            event = self._last_event
            started = time.monotonic()
            try:
                while not await self.sweep_once(event):  # newest event not visible in Airflow yet
                    if self._pending.is_set() or time.monotonic() - started > VISIBILITY_TIMEOUT:
                        break
                    await asyncio.sleep(0.5)
                failures = 0
            except asyncio.CancelledError:
                raise
            except Exception as error:  # Airflow API down or refused: try again later, never fail the trigger
                failures += 1
                delay = min(30.0, 2.0 * failures)
                log.warning(
                    "ION stranded-event sweep failed (retrying in %.0fs): %s: %s", delay, type(error).__name__, error
                )
                self._pending.set()
                await asyncio.sleep(delay)

    async def _watched_assets(self) -> list[dict[str, Any]]:
        if not self._assets:
            assert self.api is not None
            self._assets = await watched_assets(self.api, self.trigger_id)
        return self._assets

    async def sweep_once(self, event: dict[str, Any] | None) -> bool:
        """One look at every DAG scheduled on the trigger's assets; ``False`` if ``event`` is not visible yet."""
        assert self.api is not None
        event_id = str((event or {}).get("event_id"))
        for asset in await self._watched_assets():
            asset_id = asset["id"]
            newest = await self.api.call(
                "GET", "/assets/events", params={"asset_id": asset_id, "order_by": "-timestamp", "limit": NEWEST}
            )
            events = (newest or {}).get("asset_events", [])
            ids = {str(((e.get("extra") or {}).get("payload") or {}).get("event_id")) for e in events}
            if event is not None and event_id not in ids and len(events) < NEWEST:
                return False
            if not events:
                continue
            newest_ts = _ts(events[0]["timestamp"])
            stale_rows, stranded = [], []
            for ref in asset.get("scheduled_dags") or []:
                dag_id = ref["dag_id"]
                row = await self.api.call("GET", f"/dags/{dag_id}/assets/{asset_id}/queuedEvents")
                if row is not None:
                    if _ts(row["created_at"]) < newest_ts:
                        stale_rows.append(dag_id)
                    continue
                runs = await self.api.call(
                    "GET",
                    f"/dags/{dag_id}/dagRuns",
                    params={"run_type": "asset_triggered", "order_by": "-run_after", "limit": 1},
                )
                latest = ((runs or {}).get("dag_runs") or [None])[0]
                if latest is not None and _ts(latest["run_after"]) < newest_ts:
                    stranded.append(dag_id)
            if not stale_rows and not stranded:
                continue
            for dag_id in stale_rows:
                await self.api.call("DELETE", f"/dags/{dag_id}/assets/{asset_id}/queuedEvents")
            extra = {"ion_sweep": {"stale_queue": stale_rows, "stranded": stranded}}
            if event is not None:
                extra["payload"] = event
            await self.api.call("POST", "/assets/events", json={"asset_id": asset_id, "extra": extra})
            self.sweeps += 1
            log.info(
                "ION sweep for asset %s: re-queued DAG(s) %s so events newer than their queue row reach a run; "
                "stranded events queued for %s (Airflow < 3.4 scheduler, apache/airflow#70972)",
                asset.get("uri"),
                stale_rows,
                stranded,
            )
        return True
