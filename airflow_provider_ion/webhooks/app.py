"""The receiver: an ASGI app that verifies ION's signed deliveries and stores them in the inbox.

Routes (relative to where the app is mounted; Airflow's API server and ``airflow-ion receiver serve``
both mount it at ``/ion-webhooks``):

- ``POST /v1/receivers/{name}``: one delivery for receiver ``name``.
- ``GET /health``: liveness, and whether the inbox answers (no details, no auth needed).
- ``GET /v1/stats``: counters (accepted, duplicate, rejected by reason). Not a webhook route, so it
  checks Airflow authentication itself when mounted in Airflow (plugin apps get none for free).

A delivery passes these checks in this order, each with its own answer and never a 500:
receiver name (400: 1-128 characters of ``A-Za-z0-9._-``, then lower-cased: names are canonical lower
case for secrets, dedup and counters), method (405), content type JSON (415), body size, streamed so the
cap holds before the body is read (413), the whole body within ``body_timeout`` (408, connection closed),
source address allow list (403), known receiver (404; 503 with ``Retry-After`` when a look-up was refused
for lack of budget), signature (401; the body is quarantined when the receiver is known), JSON (400:
invalid, duplicate keys, nested deeper than :data:`MAX_JSON_DEPTH`, text that is not valid Unicode),
required fields (400), the event's own age when ``max_event_age`` is set (400). Then it is appended to
the inbox and only after the commit does the app answer the receiver's expected code (default 200); the
inbox's writer commits concurrent deliveries together (group commit), and each request awaits its commit
on the event loop. A redelivery of
``(receiver, event_id)`` gets the same success and is stored once; one with a different body (a
conflict) also gets success, so ION stops retrying, and is logged at WARNING with both bodies' SHA-256.
A storage failure answers 503 with ``Retry-After``, so ION delivers again. Rejections are logged at
WARNING, at most ``REJECTION_LOG_PER_MINUTE`` lines a minute (then one line with the count left out).
Answers carry a short generic reason and never echo secrets, signatures or the body.

Why one module of ~650 lines: the checks above are one ordered pipeline over one request, and their
order is the contract; splitting them across modules would hide it. Secrets (``secrets.py``), storage
(``inbox/``) and signatures (``signature.py``) already live elsewhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import ipaddress
import json
import logging
import re
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from airflow_provider_ion.webhooks.inbox import Inbox, InboxUnavailable
from airflow_provider_ion.webhooks.secrets import (
    LookupDeferred,
    SecretResolver,
    SecretSource,
    default_sources,
)
from airflow_provider_ion.webhooks.signature import DEFAULT_SCHEME, SignatureScheme, verify

log = logging.getLogger(__name__)

MOUNT_PATH = "/ion-webhooks"
#: Rejections for names not (yet) known to have a secret are counted under this one name, so made-up
#: names cannot grow the counters table.
UNKNOWN_RECEIVER = "(unknown receiver)"
DEFAULT_MAX_BODY_BYTES = 1024 * 1024
#: Receiver names in the URL: what ION receiver names and Airflow Variable keys can both hold.
RECEIVER_NAME = re.compile(r"[A-Za-z0-9._-]{1,128}")
#: Deepest JSON nesting accepted (objects and arrays); deeper bodies are refused with 400 before they
#: can exhaust a recursion limit here or in a consumer.
MAX_JSON_DEPTH = 100
#: Rejection log lines per minute at most; the rest are counted in one summary line.
REJECTION_LOG_PER_MINUTE = 20
#: Request headers kept with a quarantined delivery (never credentials or cookies).
_QUARANTINE_HEADERS = ("content-type", "user-agent", "content-length")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
#: The startup heap is frozen once per process (see ``ReceiverSettings.freeze_gc_at_startup``).
_gc_frozen = False


@dataclass(frozen=True)
class ReceiverSettings:
    """How the receiver app behaves; every field has an embedded default.

    From Airflow's config (:meth:`from_airflow_config`): section ``[ion_webhooks]``, or environment
    variables ``AIRFLOW__ION_WEBHOOKS__<KEY>``, keys named like the fields (``inbox_url``,
    ``max_body_bytes``, ``allowed_cidrs`` and ``trusted_proxies`` comma-separated, ``signature_header``,
    ``signature_algorithm``, ``signature_encoding``, ``signature_prefix``, ``ion_conn_id``,
    ``secret_refresh_interval``, ``required_fields``, ``freeze_gc_at_startup``, ``body_timeout``,
    ``max_event_age``, ``event_time_field``).
    """

    inbox_url: str | None = None
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    allowed_cidrs: tuple[str, ...] = ()
    trusted_proxies: tuple[str, ...] = ()
    scheme: SignatureScheme = DEFAULT_SCHEME
    #: Connection used to look secrets up in ION; empty disables the lookup.
    ion_conn_id: str | None = "ion_default"
    secret_refresh_interval: float = 60.0
    required_fields: tuple[str, ...] = ("event_id", "resource")
    #: Answered on success when ION's expectedResponseCode for the receiver is unknown.
    default_response_code: int = 200
    #: Seconds between writes of the rejection counters to the inbox (read by the subscription audit).
    rejection_flush_interval: float = 5.0
    #: Standalone server only (``airflow-ion receiver serve``): ``gc.freeze()`` the heap after startup.
    #: Importing Airflow's config leaves ~160k tracked objects; every full collection scanned them all
    #: (~60-120 ms on a 2-core VM, about once a second under load) while every delivery in flight waited,
    #: which alone pushed p99 past 100 ms. Frozen, they are never scanned again. Mounted in Airflow's API
    #: server the app gets no lifespan, so Airflow's process is left alone.
    freeze_gc_at_startup: bool = True
    #: Seconds for the whole body once the headers arrived (408 and the connection closed after that).
    body_timeout: float = 30.0
    #: Seconds; > 0 refuses a delivery whose own ``event_time_field`` is older (replays). 0: off.
    max_event_age: float = 0.0
    event_time_field: str = "created_at"

    def __post_init__(self) -> None:
        if self.max_body_bytes < 1:
            raise ValueError(f"max_body_bytes must be positive, got {self.max_body_bytes}")
        if self.body_timeout <= 0:
            raise ValueError(f"body_timeout must be positive seconds, got {self.body_timeout}")
        if self.max_event_age < 0:
            raise ValueError(f"max_event_age must be 0 (off) or positive seconds, got {self.max_event_age}")
        for name in ("allowed_cidrs", "trusted_proxies"):
            for cidr in getattr(self, name):
                try:
                    ipaddress.ip_network(cidr, strict=False)
                except ValueError:
                    raise ValueError(f"{name}: {cidr!r} is not an IP network (e.g. 203.0.113.7/32)") from None

    @classmethod
    def from_airflow_config(cls, **overrides: Any) -> ReceiverSettings:
        """Settings from ``[ion_webhooks]`` (:mod:`airflow_provider_ion.config`), then ``overrides``."""
        from airflow_provider_ion import config

        conn_id = config.get("ion_conn_id")
        values: dict[str, Any] = {
            "inbox_url": config.get("inbox_url"),
            "max_body_bytes": config.get_int("max_body_bytes"),
            "allowed_cidrs": config.get_list("allowed_cidrs"),
            "trusted_proxies": config.get_list("trusted_proxies"),
            "required_fields": config.get_list("required_fields"),
            "ion_conn_id": conn_id if conn_id and conn_id.lower() not in ("none", "off", "false") else None,
            "secret_refresh_interval": config.get_float("secret_refresh_interval"),
            "freeze_gc_at_startup": config.get_bool("freeze_gc_at_startup"),
            "body_timeout": config.get_float("body_timeout"),
            "max_event_age": config.get_float("max_event_age"),
            "event_time_field": config.get("event_time_field") or "created_at",
            "scheme": SignatureScheme(
                header=config.get("signature_header") or DEFAULT_SCHEME.header,
                algorithm=config.get("signature_algorithm") or DEFAULT_SCHEME.algorithm,
                encoding=config.get("signature_encoding") or DEFAULT_SCHEME.encoding,
                prefix="" if (prefix := config.get("signature_prefix") or "").lower() == "none" else prefix,
            ),
        }
        values.update(overrides)
        return cls(**values)


class _Reject(Exception):
    """An answer other than success; ``reason`` feeds the counters and the short response body."""

    def __init__(self, status: int, reason: str, headers: dict[str, str] | None = None) -> None:
        self.status, self.reason, self.headers = status, reason, headers or {}


@dataclass
class ReceiverStats:
    """Counters of one app instance (per process)."""

    accepted: int = 0
    duplicate: int = 0
    #: Redeliveries of a known ``(receiver, event_id)`` with a different body (answered success, not stored).
    conflict: int = 0
    rejected: Counter = field(default_factory=Counter)

    def to_dict(self) -> dict[str, Any]:
        return {
            "accepted": self.accepted,
            "duplicate": self.duplicate,
            "conflict": self.conflict,
            "rejected": dict(self.rejected),
        }


class _Deadlines:
    """Body read deadlines for many requests, enforced by one watchdog task instead of a timer each.

    ``asyncio.timeout`` per request cost ~13 us (a timer scheduled and cancelled per delivery); here a
    request costs two dict operations, and the watchdog (running only while bodies are being read) wakes
    every ``timeout / 4`` (at most 1 s) and cancels the tasks past their deadline, so a deadline fires
    between ``timeout`` and ``timeout`` plus one tick.
    """

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.tick = min(1.0, timeout / 4)
        self.pending: dict[asyncio.Task, float] = {}
        self.cancelled: set[asyncio.Task] = set()
        self.watchdog: asyncio.Task | None = None

    def start(self, task: asyncio.Task) -> None:
        loop = task.get_loop()
        self.pending[task] = loop.time() + self.timeout
        if self.watchdog is None or self.watchdog.done():
            self.watchdog = loop.create_task(self._watch(loop))

    def expired(self, task: asyncio.Task) -> bool:
        """Whether the watchdog cancelled ``task`` (forgets it)."""
        if task in self.cancelled:
            self.cancelled.discard(task)
            return True
        return False

    def stop(self, task: asyncio.Task) -> None:
        self.pending.pop(task, None)
        self.cancelled.discard(task)

    async def _watch(self, loop: asyncio.AbstractEventLoop) -> None:
        while self.pending:
            await asyncio.sleep(self.tick)
            now = loop.time()
            for task, deadline in list(self.pending.items()):
                if now >= deadline:
                    del self.pending[task]
                    self.cancelled.add(task)
                    task.cancel()


class _RateLimitedLog:
    """WARNING lines, at most ``per_minute`` a minute; the rest are counted and summarised in one line."""

    def __init__(self, logger: logging.Logger, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.logger, self.per_minute, self.clock = logger, per_minute, clock
        self.window_start = clock()
        self.logged = self.suppressed = 0

    def warning(self, message: str, *args: Any) -> None:
        now = self.clock()
        if now - self.window_start >= 60:
            if self.suppressed:
                self.logger.warning("%d more rejected deliveries were not logged in the last minute", self.suppressed)
            self.window_start, self.logged, self.suppressed = now, 0, 0
        if self.logged < self.per_minute:
            self.logged += 1
            self.logger.warning(message, *args)
        else:
            self.suppressed += 1


def _is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


class ReceiverApp:
    """The receiver as an object: settings, inbox, secret resolver and counters around one ASGI app.

    Example::

        receiver = ReceiverApp(ReceiverSettings(inbox_url="sqlite:////var/lib/ion/inbox.db"))
        uvicorn.run(receiver.asgi)      # POST /ion-webhooks/v1/receivers/<name>

    ``secret_sources`` defaults to the Airflow Variable, the Airflow Connection and (when
    ``settings.ion_conn_id`` is set) a lookup in ION; see :mod:`.secrets`.
    """

    def __init__(
        self,
        settings: ReceiverSettings | None = None,
        *,
        inbox: Inbox | None = None,
        secret_sources: Sequence[SecretSource] | None = None,
        authorize_admin: Callable[[Request], Any] | None = None,
        mount_path: str = MOUNT_PATH,
    ) -> None:
        self.settings = settings or ReceiverSettings()
        self.inbox = inbox or Inbox.from_url(self.settings.inbox_url)
        if secret_sources is None:
            secret_sources = default_sources(self.settings.ion_conn_id)
        self.secrets = SecretResolver(secret_sources, refresh_interval=self.settings.secret_refresh_interval)
        self.stats = ReceiverStats()
        self._pending_rejections: Counter[tuple[str, str]] = Counter()
        self._rejection_log = _RateLimitedLog(log, REJECTION_LOG_PER_MINUTE)
        self._quarantine_full_until: dict[str, float] = {}
        self._body_deadlines = _Deadlines(self.settings.body_timeout)
        self._flush_task: asyncio.Task | None = None
        self._authorize_admin = authorize_admin
        self._allowed = [ipaddress.ip_network(c, strict=False) for c in self.settings.allowed_cidrs]
        self._proxies = [ipaddress.ip_network(c, strict=False) for c in self.settings.trusted_proxies]
        routes = [
            Route("/v1/receivers/{name}", self.receive, methods=["POST"]),
            Route("/health", self.health, methods=["GET"]),
            Route("/v1/stats", self.stats_route, methods=["GET"]),
        ]
        # The lifespan runs only where this is the served app (a Mount forwards no lifespan events).
        lifespan = None if mount_path else self._lifespan
        self.routes_app = Starlette(routes=routes, lifespan=lifespan)
        # Mounted at mount_path so the standalone server and Airflow's API server share the URLs.
        self.asgi = Starlette(routes=[], lifespan=self._lifespan) if mount_path else self.routes_app
        if mount_path:
            self.asgi.mount(mount_path, self.routes_app)

    @contextlib.asynccontextmanager
    async def _lifespan(self, _app: Starlette) -> AsyncIterator[None]:
        """Server start/stop when this app is the one served (see ``freeze_gc_at_startup``)."""
        global _gc_frozen
        if self.settings.freeze_gc_at_startup and not _gc_frozen:
            gc.collect()  # garbage first: what is frozen is never collected
            gc.freeze()
            _gc_frozen = True
        try:
            yield
        finally:
            # Let the inbox's writer finish what is queued and close its connection.
            await run_in_threadpool(self.inbox.close)

    # the webhook route ---------------------------------------------------------------------------
    async def receive(self, request: Request) -> Response:
        given = request.path_params["name"]
        # One canonical form of a name (lower case) before any use: secrets, dedup, counters, logs.
        name = given.lower() if RECEIVER_NAME.fullmatch(given) else None
        try:
            if name is None:
                raise _Reject(400, "bad receiver name (1-128 characters of A-Z, a-z, 0-9, '.', '_', '-')")
            status, outcome = await self._receive(request, name)
        except _Reject as reject:
            self.stats.rejected[reject.reason] += 1
            counted = name if name is not None and self.secrets.peek(name) is not None else UNKNOWN_RECEIVER
            self._count_rejection(counted, reject.reason)
            self._rejection_log.warning(
                "Rejected delivery for receiver %s: %s (%d)",
                repr(name) if name is not None else "(bad name)",
                reject.reason,
                reject.status,
            )
            return JSONResponse({"error": reject.reason}, reject.status, headers=reject.headers)
        if outcome == "accepted":
            self.stats.accepted += 1
        elif outcome == "conflict":
            self.stats.conflict += 1
        else:
            self.stats.duplicate += 1
        return JSONResponse({"status": outcome}, status)

    async def _receive(self, request: Request, name: str) -> tuple[int, str]:
        if not _is_json(request.headers.get("content-type", "")):
            raise _Reject(415, "content type must be application/json")
        body = await self._read_body(request)
        self._check_source(request)
        # The cached secret on the loop; a thread only when it must be looked up (a miss or an unknown name).
        found = self.secrets.peek(name)
        if found is None:
            try:
                found = await run_in_threadpool(self.secrets.resolve, name)
            except LookupDeferred as deferred:
                # Not "unknown": the look-up was refused for lack of budget; ION retries after Retry-After.
                raise _Reject(503, "receiver look-up deferred", {"Retry-After": str(deferred.retry_after)}) from None
        if found is None:
            raise _Reject(404, "unknown receiver")
        signature = request.headers.get(self.settings.scheme.header)
        result = verify(body, signature, found.secrets, self.settings.scheme)
        if not result and result.reason == "mismatch":
            # Maybe the secret was rotated in ION: look again (rate-limited per name inside the resolver).
            with contextlib.suppress(LookupDeferred):
                refreshed = await run_in_threadpool(self.secrets.refresh, name)
                if refreshed is not None and refreshed != found:
                    found = refreshed
                    result = verify(body, signature, found.secrets, self.settings.scheme)
        if not result:
            await self._quarantine(name, body, request, f"signature {result.reason}")
            raise _Reject(401, f"signature {result.reason}")
        event = self._parse(body)
        self._check_age(event)
        event_id = event["event_id"]
        try:
            # Awaits the inbox writer's group commit without holding a pool thread; the parsed event is
            # handed over so the inbox does not parse the body again (it still stores the raw bytes).
            appended = await self.inbox.aappend(
                name,
                event_id,
                body,
                resource=_text(event.get("resource")),
                action=_text(event.get("action")),
                subscription_id=event.get("subscription_id"),
                fields=event,
            )
        except InboxUnavailable as error:
            log.error("Inbox unavailable; answering 503 so ION retries: %s", error)
            raise _Reject(503, "inbox unavailable", {"Retry-After": "5"}) from None
        except ValueError as error:  # the inbox's InvalidDelivery: this row's own data cannot be stored
            log.warning("Delivery %r for receiver %r cannot be stored: %s", event_id, name, type(error).__name__)
            raise _Reject(400, "event cannot be stored") from None
        code = found.expected_response_code or self.settings.default_response_code
        if not appended.duplicate:
            return code, "accepted"
        if appended.conflict:
            # The inbox logged it at WARNING with both body hashes and counted it (``inbox stats``); the new
            # body is not stored, and ION gets success so it stops retrying.
            return code, "conflict"
        return code, "duplicate"

    async def _quarantine(self, name: str, body: bytes, request: Request, reason: str) -> None:
        """Keep a known receiver's delivery that failed its signature, for an operator to inspect."""
        quarantine = self.inbox.quarantine
        now = time.monotonic()
        if now < self._quarantine_full_until.get(name, 0.0):
            return
        wanted = (*_QUARANTINE_HEADERS, self.settings.scheme.header.lower())
        headers = {k: v for k, v in request.headers.items() if k.lower() in wanted}
        try:
            kept = await run_in_threadpool(quarantine, name, body, headers, reason)
        except Exception as error:  # diagnostics only: the answer stays 401
            log.warning("Could not quarantine a delivery for receiver %r: %s", name, type(error).__name__)
            return
        if kept is False:
            # Full: stop writing for a minute, so a flood of forged deliveries costs no storage writes.
            self._quarantine_full_until[name] = now + 60.0
            self._rejection_log.warning("Quarantine of receiver %r is full; deliveries not kept for 60 s", name)

    def _count_rejection(self, receiver: str, reason: str) -> None:
        """Count in memory; a background flush writes the batch to the inbox every few seconds."""
        self._pending_rejections[(receiver, reason)] += 1
        if self._flush_task is None:
            self._flush_task = asyncio.get_running_loop().create_task(self._flush_rejections_later())

    async def _flush_rejections_later(self) -> None:
        try:
            await asyncio.sleep(self.settings.rejection_flush_interval)
            batch, self._pending_rejections = self._pending_rejections, Counter()
            await run_in_threadpool(self.inbox.add_rejections, batch)
        except InboxUnavailable as error:  # counters are diagnostics: never fail a request over them
            log.warning("Could not record %d rejection count(s): %s", sum(batch.values()), error)
        finally:
            self._flush_task = None

    async def _read_body(self, request: Request) -> bytes:
        cap = self.settings.max_body_bytes
        declared = request.headers.get("content-length")
        if declared is not None:
            try:
                if int(declared) > cap:
                    raise _Reject(413, "body too large")
            except ValueError:
                raise _Reject(400, "bad content-length") from None
        chunks: list[bytes] = []
        size = 0
        task = asyncio.current_task()
        assert task is not None
        self._body_deadlines.start(task)
        try:
            async for chunk in request.stream():
                size += len(chunk)
                if size > cap:
                    raise _Reject(413, "body too large")
                chunks.append(chunk)
        except ClientDisconnect:
            raise _Reject(400, "client disconnected") from None
        except asyncio.CancelledError:
            if not self._body_deadlines.expired(task):
                raise
            task.uncancel()
            # A stalled or trickling client: answer and close, so it cannot hold the connection.
            raise _Reject(408, "body not received in time", {"Connection": "close"}) from None
        finally:
            self._body_deadlines.stop(task)
        return b"".join(chunks)

    def _client_address(self, request: Request) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
        host = request.client.host if request.client else None
        try:
            address = ipaddress.ip_address(host) if host else None
        except ValueError:
            return None
        if address is None or not self._proxies or not any(address in net for net in self._proxies):
            return address
        # Behind a trusted proxy: the client is the right-most X-Forwarded-For hop that is not a proxy. Several
        # header lines are one comma-separated list in order (RFC 9110 5.3): a proxy that appends a line of its
        # own (HAProxy's `option forwardfor`) must not leave a client-written first line in charge.
        forwarded = ",".join(request.headers.getlist("x-forwarded-for"))
        hops = [h.strip() for h in forwarded.split(",") if h.strip()]
        for hop in reversed(hops):
            try:
                candidate = ipaddress.ip_address(hop)
            except ValueError:
                return None
            if not any(candidate in net for net in self._proxies):
                return candidate
        return address

    def _check_source(self, request: Request) -> None:
        if not self._allowed:
            return
        address = self._client_address(request)
        if address is None or not any(address in net for net in self._allowed):
            raise _Reject(403, "source address not allowed")

    def _parse(self, body: bytes) -> dict[str, Any]:
        try:
            event = json.loads(body, object_pairs_hook=_unique_keys)
        except _DuplicateKey:
            raise _Reject(400, "body has duplicate keys in one object (ambiguous JSON)") from None
        except RecursionError:
            raise _Reject(400, f"body is nested deeper than {MAX_JSON_DEPTH} levels") from None
        except (ValueError, UnicodeDecodeError):
            raise _Reject(400, "body is not valid JSON") from None
        if not isinstance(event, dict):
            raise _Reject(400, "body must be a JSON object")
        # Cheap guards first: fewer brackets than the limit cannot nest deeper; a lone surrogate can only
        # arrive as a \uD8xx-\uDFxx escape or as (invalid) raw surrogate bytes.
        if body.count(b"{") + body.count(b"[") > MAX_JSON_DEPTH and _depth_exceeds(event, MAX_JSON_DEPTH):
            raise _Reject(400, f"body is nested deeper than {MAX_JSON_DEPTH} levels")
        if (b"\\u" in body or b"\xed" in body) and not _valid_unicode(event):
            raise _Reject(400, "body holds text that is not valid Unicode (a lone surrogate)")
        missing = [f for f in self.settings.required_fields if event.get(f) in (None, "")]
        if missing:
            raise _Reject(400, f"missing field(s): {', '.join(missing)}")
        event_id = event.get("event_id")
        if isinstance(event_id, bool) or not isinstance(event_id, int | str) or len(str(event_id)) > 255:
            raise _Reject(400, "event_id must be a string or an integer")
        return event

    def _check_age(self, event: dict[str, Any]) -> None:
        """With ``max_event_age`` set: refuse an event whose own timestamp is older (a replay)."""
        max_age = self.settings.max_event_age
        if not max_age:
            return
        field_name = self.settings.event_time_field
        value = event.get(field_name)
        try:
            when = datetime.fromisoformat(value) if isinstance(value, str) else None
        except ValueError:
            when = None
        if when is None:
            raise _Reject(400, f"{field_name} missing or not an ISO 8601 time (max_event_age is set)")
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        if (datetime.now(UTC) - when).total_seconds() > max_age:
            raise _Reject(400, f"event older than max_event_age ({max_age:g} s)")

    # other routes --------------------------------------------------------------------------------
    async def health(self, request: Request) -> Response:
        try:
            await run_in_threadpool(self.inbox.latest_seq)
        except InboxUnavailable:
            return JSONResponse({"status": "unhealthy", "inbox": "unavailable"}, 503)
        return JSONResponse({"status": "healthy", "inbox": "ok"})

    async def stats_route(self, request: Request) -> Response:
        if self._authorize_admin is None:
            return JSONResponse({"error": "stats are not enabled on this server"}, 404)
        denied = await self._authorize_admin(request)
        if denied is not None:
            return denied
        return JSONResponse({"receiver": self.stats.to_dict()})


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


class _DuplicateKey(ValueError):
    pass


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``object_pairs_hook``: a key twice in one object is ambiguous (first-wins vs last-wins parsers)."""
    result = dict(pairs)
    if len(result) != len(pairs):
        raise _DuplicateKey
    return result


def _depth_exceeds(value: Any, limit: int) -> bool:
    """Whether ``value`` nests objects/arrays deeper than ``limit`` (iterative: no recursion)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return True
        children = item.values() if isinstance(item, dict) else item
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False


def _valid_unicode(value: Any) -> bool:
    """Whether every string (keys included) in ``value`` encodes as UTF-8 (no lone surrogates)."""
    stack = [value]
    try:
        while stack:
            item = stack.pop()
            if isinstance(item, str):
                item.encode("utf-8")
            elif isinstance(item, dict):
                stack.extend(item.keys())
                stack.extend(item.values())
            elif isinstance(item, list):
                stack.extend(item)
    except UnicodeEncodeError:
        return False
    return True


def bearer_token_guard(token: str) -> Callable[[Request], Any]:
    """A stats guard for the standalone server: ``Authorization: Bearer <token>``."""
    import hmac

    async def guard(request: Request) -> Response | None:
        given = request.headers.get("authorization", "")
        scheme, _, value = given.partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(value.strip().encode(), token.encode()):
            return None
        return JSONResponse({"error": "unauthorized"}, 401, headers={"WWW-Authenticate": "Bearer"})

    return guard


async def airflow_auth_guard(request: Request) -> Response | None:
    """A stats guard inside Airflow's API server: who the caller is, then whether they may see it.

    Built from the security dependencies Airflow's own API routes use
    (``airflow/api_fastapi/core_api/security.py``: ``get_user`` reads the ``Authorization: Bearer`` token or
    the UI's session cookie; ``requires_access_view`` asks the auth manager), called directly because a
    plugin app's routes get no Airflow dependencies. The permission is the ``PLUGINS`` view (these are a
    plugin's counters). No or an invalid/expired token: 401 (Airflow's own API answers 403 for an invalid
    token; 401 is the HTTP answer for "not authenticated"). Authenticated without the permission: 403.
    """
    from airflow.api_fastapi.auth.managers.models.resource_details import AccessView
    from airflow.api_fastapi.core_api.security import bearer_scheme, get_user, requires_access_view
    from fastapi import HTTPException

    try:
        user = await get_user(request, None, await bearer_scheme(request))
    except HTTPException:
        return JSONResponse({"error": "unauthorized"}, 401, headers={"WWW-Authenticate": "Bearer"})
    try:
        requires_access_view(AccessView.PLUGINS)(request, user)
    except HTTPException:
        return JSONResponse({"error": "forbidden"}, 403)
    return None


def create_app(settings: ReceiverSettings | None = None, **kwargs: Any) -> Starlette:
    """The ASGI app, with settings from Airflow's config unless given."""
    if settings is None:
        settings = ReceiverSettings.from_airflow_config()
    return ReceiverApp(settings, **kwargs).asgi
