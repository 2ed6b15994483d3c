"""Run the emulator in-process: uvicorn in a background thread on a real (by default free) port.

Tests and the demo get a real HTTP server to talk to, plus direct handles on its state (``store``,
``stats``, faults) for seeding and asserting, without a subprocess to manage.

    with EmulatorServer() as ion:
        ion.store.create_receiver({"name": "qa", "webhookUri": "https://example.test/hook"})
        ion.add_fault("status", status=503, operation="ListWebhookReceivers")
        ...  # point the hook at ion.token_url / ion.graphql_url with ion.client_id / ion.client_secret

Webhook deliveries (see :mod:`.delivery`) run on their own worker thread; tests shorten the retry
schedule, inject delivery faults and wait for the queue to drain::

    with EmulatorServer(delivery=DeliverySettings(retry_schedule=(0.05, 0.1), max_attempts=5)) as ion:
        ion.fire("RUNS", "CREATE", {"id": 1})
        assert ion.wait_for_deliveries(10)
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Mapping
from types import TracebackType
from typing import Any, Self
from urllib.request import ProxyHandler, build_opener

import uvicorn

from airflow_provider_ion.testing.emulator.app import create_app
from airflow_provider_ion.testing.emulator.core import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, Emulator
from airflow_provider_ion.testing.emulator.delivery import Deliveries
from airflow_provider_ion.testing.emulator.delivery_faults import (
    DeliveryFault,
    DeliveryFaultKind,
    DropWhen,
    make_delivery_fault,
)
from airflow_provider_ion.testing.emulator.delivery_settings import DeliverySettings
from airflow_provider_ion.testing.emulator.faults import Endpoint, Fault, FaultKind, FaultQueue, FaultWhen, make_fault
from airflow_provider_ion.testing.emulator.profiles import Profile
from airflow_provider_ion.testing.emulator.store import Store


def with_profile_signature(delivery: DeliverySettings | None, profile: Profile) -> DeliverySettings:
    """``delivery`` signing the way ``profile`` does (a profile's signature wins over the default)."""
    delivery = delivery if delivery is not None else DeliverySettings()
    if profile.signature_style == "ion" and profile.scheme == DeliverySettings().scheme:
        return delivery
    return delivery.with_changes(scheme=profile.scheme, signature_style=profile.signature_style)


_NO_PROXY = build_opener(ProxyHandler({}))
"Health checks go straight to the socket, whatever HTTP_PROXY says."


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening-ready socket bound to ``(host, port)``; port 0 picks a free one, known right away."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto=IPPROTO_TCP matters: asyncio sets TCP_NODELAY only on sockets that say they are TCP, and
    # without it every response pays a 40 ms Nagle/delayed-ACK stall (headers and body are two writes).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


class EmulatorServer:
    """An ION emulator served by uvicorn in a daemon thread. Use as a context manager or start()/stop()."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        token_lifetime: int = 300,
        client_id: str = DEFAULT_CLIENT_ID,
        client_secret: str = DEFAULT_CLIENT_SECRET,
        state_file: str | os.PathLike[str] | None = None,
        allow_remote_control: bool = False,
        log_level: str = "warning",
        delivery: DeliverySettings | None = None,
        profile: str | Profile | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.emulator = Emulator(
            client_id=client_id,
            client_secret=client_secret,
            token_lifetime=token_lifetime,
            state_file=state_file,
            allow_remote_control=allow_remote_control,
            profile=profile,
        )
        self.deliveries = Deliveries(self.emulator.store, with_profile_signature(delivery, self.emulator.profile))
        self.app = create_app(self.emulator, self.deliveries)
        self._log_level = log_level
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None

    # ---- lifecycle ------------------------------------------------------------------------------

    def start(self, timeout: float = 10.0) -> Self:
        """Bind, serve in a background thread, and return once ``/_emulator/health`` answers."""
        if self._thread is not None:
            raise RuntimeError("EmulatorServer is already running")
        self._socket = bind_socket(self.host, self.port)
        self.port = self._socket.getsockname()[1]
        config = uvicorn.Config(
            self.app,
            loop="asyncio",
            lifespan="off",
            log_level=self._log_level,
            log_config=None,
            access_log=False,
            timeout_graceful_shutdown=2,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._socket]}, name=f"ion-emulator-{self.port}", daemon=True
        )
        self._thread.start()
        try:
            self._wait_healthy(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Shut uvicorn down (in-flight requests get ``timeout_graceful_shutdown``) and release the port."""
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive() and self._server is not None:
                self._server.force_exit = True
                self._thread.join(timeout)
        if self._socket is not None:
            self._socket.close()
        self._server = self._thread = self._socket = None
        self.deliveries.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            assert self._thread is not None
            if not self._thread.is_alive():
                raise RuntimeError(f"ION emulator on {self.base_url} exited during startup")
            try:
                with _NO_PROXY.open(f"{self.base_url}/_emulator/health", timeout=1.0) as response:
                    if response.status == 200:
                        return
            except OSError:  # not listening yet (URLError is an OSError)
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"ION emulator on {self.base_url} did not answer health within {timeout}s")
            time.sleep(0.02)

    # ---- where clients connect --------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def graphql_url(self) -> str:
        return f"{self.base_url}/graphql"

    @property
    def token_url(self) -> str:
        return f"{self.base_url}{self.emulator.profile.token_path}"

    @property
    def profile(self) -> Profile:
        """The emulator's profile (see :mod:`.profiles`)."""
        return self.emulator.profile

    @property
    def client_id(self) -> str:
        return self.emulator.tokens.client_id

    @property
    def client_secret(self) -> str:
        return self.emulator.tokens.client_secret

    # ---- state for tests ------------------------------------------------------------------------

    @property
    def store(self) -> Store:
        """The live store: seed and assert directly (thread-safe)."""
        return self.emulator.store

    @property
    def stats(self) -> dict[str, Any]:
        """A snapshot of the request counters (see :meth:`Stats.snapshot`), with ``deliveries``
        (:meth:`Deliveries.stats`: events, attempts, sent, succeeded, failed, retries, pending, ...)."""
        return {**self.emulator.stats.snapshot(), "deliveries": self.deliveries.stats()}

    @property
    def faults(self) -> FaultQueue:
        return self.emulator.faults

    @property
    def changes(self) -> list[dict[str, Any]]:
        """The store's change log of domain objects (``{seq, resource, action, object, at}``)."""
        return self.emulator.store.changes

    @property
    def token_lifetime(self) -> int:
        return self.emulator.tokens.lifetime

    @token_lifetime.setter
    def token_lifetime(self, seconds: int) -> None:
        """Change the lifetime of tokens issued from now on (:meth:`reset` restores the default)."""
        self.emulator.tokens.lifetime = seconds

    def expire_tokens(self) -> None:
        """Invalidate every token issued so far: the next GraphQL call with one gets 401."""
        self.emulator.tokens.expire_all()

    def add_fault(
        self,
        kind: FaultKind,
        *,
        status: int | None = None,
        when: FaultWhen | None = None,
        delay: float = 0.0,
        retry_after: int | None = None,
        operation: str | None = None,
        query_contains: str | None = None,
        endpoint: Endpoint = "graphql",
        times: int = 1,
        skip: int = 0,
    ) -> Fault:
        """Queue a fault for the next ``times`` matching requests after ``skip`` have passed
        (see :mod:`.faults` for the kinds)."""
        return self.emulator.faults.add(
            make_fault(
                kind,
                status=status,
                when=when,
                delay=delay,
                retry_after=retry_after,
                operation=operation,
                query_contains=query_contains,
                endpoint=endpoint,
                times=times,
                skip=skip,
            )
        )

    def clear_faults(self) -> int:
        return self.emulator.faults.clear()

    def reset(self) -> None:
        """Empty store, no faults, zero counters, no valid tokens, default token lifetime; queued
        deliveries cancelled, delivery faults cleared, delivery settings back to the constructor's."""
        self.deliveries.reset()
        self.emulator.reset()

    # ---- webhook deliveries -----------------------------------------------------------------------

    def fire(self, resource: str, action: str, data: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        """Fire ``(resource, action)`` with ``data`` through the same matching and delivery path as a
        domain change, without a domain object. Returns the new WebhookEvent rows (``PENDING``)."""
        return self.deliveries.fire(resource, action, data)

    def wait_for_deliveries(self, timeout: float = 30.0) -> bool:
        """True once every queued delivery is SUCCESS or FAILED; False when ``timeout`` ran out."""
        return self.deliveries.wait_for_deliveries(timeout)

    @property
    def delivery_settings(self) -> DeliverySettings:
        return self.deliveries.settings

    def configure_deliveries(self, **changes: Any) -> DeliverySettings:
        """Change delivery settings (``retry_schedule``, ``max_attempts``, ``timeout``, ``concurrency``,
        ``scheme``, ``accept_any_2xx``, ``allow_http_loopback``, ``verify_tls``) until :meth:`reset`."""
        return self.deliveries.configure(**changes)

    def add_delivery_fault(
        self,
        kind: DeliveryFaultKind,
        *,
        times: int | None = 1,
        copies: int = 2,
        delay: float = 0.0,
        when: DropWhen = "before",
        batch: int = 10,
        window: float = 0.5,
        seed: int | None = None,
        resource: str | None = None,
        action: str | None = None,
        receiver_id: int | str | None = None,
    ) -> DeliveryFault:
        """Queue a delivery fault (duplicate, delay, drop, reorder; see :mod:`.delivery_faults`) for the
        next ``times`` matching attempts (events, for reorder); ``times=None`` until cleared."""
        return self.deliveries.faults.add(
            make_delivery_fault(
                kind,
                times=times,
                copies=copies,
                delay=delay,
                when=when,
                batch=batch,
                window=window,
                seed=seed,
                resource=resource,
                action=action,
                receiver_id=receiver_id,
            )
        )

    def clear_delivery_faults(self) -> int:
        return self.deliveries.faults.clear()
