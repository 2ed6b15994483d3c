"""OAuth2 client-credentials tokens for ION: one process-wide cache and the httpx ``Auth`` using it.

Why process-wide: a worker or triggerer runs many hooks for the same API key; each fetching its own
token would multiply load on ION's Keycloak and slow every task. The cache is keyed by
(token URL, client id, audience, a hash of the secret): the secret itself is never a key, so a
logged key reveals nothing.

Concurrency: a ``threading.Lock`` per key serialises fetches, so any number of threads starting cold
share one token request.

This module imports httpx at top level; the hook imports it lazily.
"""

from __future__ import annotations

import json
import logging
import ssl
import threading
import time
import urllib.request
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx

from airflow_provider_ion.exceptions import IonAuthError, IonRetryExhausted, IonTransportError, redact
from airflow_provider_ion.hooks._retry import (
    ATTEMPTS_EXT,
    OPERATION_EXT,
    RetryPolicy,
    RetryTransport,
)
from airflow_provider_ion.hooks.environments import IonConnectionSettings

__all__ = ["TOKENS", "IonAuth", "TokenCache", "TokenKey", "fetch_token"]

_log = logging.getLogger(__name__)
_DEFAULT_EXPIRES_IN = 300.0
_EARLY_CAP = 30.0
_EARLY_FRACTION = 0.1


@dataclass(frozen=True)
class TokenKey:
    """Identity of a token in the cache; safe to log (the secret appears only as a short hash)."""

    token_url: str
    client_id: str
    audience: str
    secret_fingerprint: str

    @classmethod
    def of(cls, settings: IonConnectionSettings) -> TokenKey:
        return cls(settings.token_url, settings.client_id, settings.audience, settings.secret_fingerprint)


@dataclass
class _Token:
    value: str = field(repr=False)
    refresh_at: float


class TokenCache:
    """Access tokens by :class:`TokenKey`, refreshed shortly before they expire.

    A token is used until ``expires_in - min(30 s, 10% of expires_in)``, so a request never leaves
    with a token about to die in flight. ``fetches`` counts token requests (diagnostics, tests).
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._tokens: dict[TokenKey, _Token] = {}
        self._fetch_locks: dict[TokenKey, threading.Lock] = {}
        self.fetches = 0

    def peek(self, key: TokenKey) -> str | None:
        """The cached token for ``key`` if it is still fresh, else None."""
        with self._lock:
            entry = self._tokens.get(key)
            if entry is not None and self._clock() < entry.refresh_at:
                return entry.value
            return None

    def _store(self, key: TokenKey, value: str, expires_in: float) -> str:
        early = min(_EARLY_CAP, _EARLY_FRACTION * expires_in)
        with self._lock:
            self._tokens[key] = _Token(value, self._clock() + expires_in - early)
            self.fetches += 1
        return value

    def get(self, key: TokenKey, fetch: Callable[[], tuple[str, float]]) -> str:
        """The token for ``key``, fetching it (once, whatever the number of threads) when needed."""
        token = self.peek(key)
        if token is not None:
            return token
        with self._lock:
            fetch_lock = self._fetch_locks.setdefault(key, threading.Lock())
        with fetch_lock:
            token = self.peek(key)
            if token is not None:
                return token
            return self._store(key, *fetch())

    def invalidate(self, key: TokenKey, token: str | None = None) -> None:
        """Forget ``key``'s token (only if it is still ``token``, so a late 401 for an old token
        does not throw away the fresh one another caller just fetched)."""
        with self._lock:
            entry = self._tokens.get(key)
            if entry is not None and (token is None or entry.value == token):
                del self._tokens[key]

    def clear(self) -> None:
        """Forget every token (tests; credential rotation)."""
        with self._lock:
            self._tokens.clear()
            self.fetches = 0


TOKENS = TokenCache()
"""The process-wide token cache every :class:`~airflow_provider_ion.hooks.ion.IonHook` shares."""


# --- HTTP plumbing shared with the hook ------------------------------------------------------


def ssl_verify(settings: IonConnectionSettings) -> bool | ssl.SSLContext:
    """httpx ``verify``: a CA bundle path becomes an SSL context (httpx deprecates bare paths)."""
    if isinstance(settings.verify, str):
        return ssl.create_default_context(cafile=settings.verify)
    return settings.verify


def proxy_for(settings: IonConnectionSettings, url: str) -> str | None:
    """The proxy for ``url``: the connection's extra ``proxy``, else the standard environment
    variables (httpx ignores them once we pass our own transport, so we read them here)."""
    if settings.proxy:
        return settings.proxy
    parts = urlsplit(url)
    proxies = urllib.request.getproxies_environment()
    proxy = proxies.get(parts.scheme) or proxies.get("all")
    # proxy_bypass_environment honours no_proxy; it is in CPython's urllib.request but not in typeshed.
    bypass = urllib.request.proxy_bypass_environment  # type: ignore[attr-defined]
    if proxy and not bypass(parts.hostname or "", proxies):
        return proxy
    return None


def sync_transport(
    settings: IonConnectionSettings, policy: RetryPolicy, url: str, logger: Any = None
) -> RetryTransport:
    inner = httpx.HTTPTransport(verify=ssl_verify(settings), proxy=proxy_for(settings, url))
    return RetryTransport(inner, policy, logger=logger)


# --- Token requests ------------------------------------------------------------------------------


def _token_form(settings: IonConnectionSettings) -> dict[str, str]:
    return {
        "grant_type": "client_credentials",
        "client_id": settings.client_id,
        "client_secret": settings.client_secret,
        "audience": settings.audience,
    }


def _check_hint(settings: IonConnectionSettings) -> str:
    where = f"environment '{settings.environment}'" if settings.environment else "the extra 'auth_url'"
    return (
        f"check the client id (login '{settings.client_id}') and client secret (password) of connection "
        f"'{settings.conn_id}', and that the API key was created in the ION environment the connection "
        f"points at ({where})"
    )


def _token_result(settings: IonConnectionSettings, response: httpx.Response) -> tuple[str, float]:
    """(access token, expires_in) from the token endpoint's answer, or the matching IonError."""
    status = response.status_code
    try:
        body: Any = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        body = None
    if status == 200 and isinstance(body, dict) and body.get("access_token"):
        try:
            expires_in = float(body.get("expires_in") or _DEFAULT_EXPIRES_IN)
        except (TypeError, ValueError):
            expires_in = _DEFAULT_EXPIRES_IN
        return str(body["access_token"]), expires_in
    if status in (400, 401, 403):
        detail = ""
        if isinstance(body, dict) and body.get("error"):
            detail = f" ({body['error']}"
            if body.get("error_description"):
                detail += f": {body['error_description']}"
            detail += ")"
        message = (
            f"Connection '{settings.conn_id}': the ION token endpoint {settings.token_url} refused the "
            f"client credentials with HTTP {status}{detail}; {_check_hint(settings)}."
        )
        raise IonAuthError(
            redact(message, [settings.client_secret]),
            conn_id=settings.conn_id,
            status_code=status,
            url=settings.token_url,
        )
    attempts = int(response.extensions.get(ATTEMPTS_EXT, 1))
    cls = IonRetryExhausted if attempts > 1 else IonTransportError
    what = "no access_token in the answer" if status == 200 else f"HTTP {status}"
    raise cls(
        f"Connection '{settings.conn_id}': token request to {settings.token_url} failed: {what}"
        + (f" after {attempts} attempts" if attempts > 1 else ""),
        status_code=status,
        operation_name="token request",
        attempts=attempts,
        url=settings.token_url,
    )


def _token_transport_error(settings: IonConnectionSettings, exc: httpx.HTTPError) -> IonTransportError:
    attempts = int(getattr(exc, "ion_attempts", 1))
    cls = IonRetryExhausted if attempts > 1 else IonTransportError
    return cls(
        f"Connection '{settings.conn_id}': cannot reach the ION token endpoint {settings.token_url}: "
        f"{type(exc).__name__}: {redact(str(exc), [settings.client_secret])}"
        + (f" (after {attempts} attempts)" if attempts > 1 else ""),
        operation_name="token request",
        attempts=attempts,
        url=settings.token_url,
    )


def fetch_token(settings: IonConnectionSettings, policy: RetryPolicy, logger: Any = None) -> tuple[str, float]:
    """POST the client-credentials grant (sync); rare, so a short-lived client is fine."""
    (logger or _log).debug("ION token request to %s for client %s", settings.token_url, settings.client_id)
    transport = sync_transport(settings, policy, settings.token_url, logger)
    with httpx.Client(transport=transport, timeout=settings.timeout, trust_env=False) as client:
        try:
            response = client.post(
                settings.token_url,
                data=_token_form(settings),
                extensions={OPERATION_EXT: "token request"},
            )
        except httpx.HTTPError as exc:
            raise _token_transport_error(settings, exc) from None
    return _token_result(settings, response)


class IonAuth(httpx.Auth):
    """Puts the cached token on every request; on a 401 drops it, fetches a fresh one and resends
    once. A second 401 goes back to the caller (the hook turns it into ``IonAuthError``).

    Living in httpx (not gql) puts it above the retry transport, so a retried request keeps its token.
    """

    def __init__(
        self,
        settings: IonConnectionSettings,
        policy: RetryPolicy,
        *,
        cache: TokenCache = TOKENS,
        logger: Any = None,
    ) -> None:
        self._settings = settings
        self._policy = policy
        self._cache = cache
        self._key = TokenKey.of(settings)
        self._log = logger or _log

    def token(self) -> str:
        return self._cache.get(self._key, lambda: fetch_token(self._settings, self._policy, self._log))

    def _refreshing(self, request: httpx.Request, token: str) -> None:
        operation = request.extensions.get("ion_operation") or request.url.path
        self._log.info(
            "ION answered 401 to %s; dropping the cached token and retrying once with a fresh one",
            operation,
        )
        self._cache.invalidate(self._key, token)

    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        token = self.token()
        request.headers["Authorization"] = self._settings.authorization(token)
        response = yield request
        if response.status_code == 401:
            self._refreshing(request, token)
            request.headers["Authorization"] = self._settings.authorization(self.token())
            yield request
