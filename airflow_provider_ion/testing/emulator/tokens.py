"""Access tokens for the Keycloak-style client-credentials endpoint.

Tokens are random opaque strings remembered with their expiry, like Keycloak's from the client's point
of view (clients must not parse them). The lifetime can be changed on a running emulator, and all
tokens can be expired at once, so tests of a client's token cache and refresh need no sleeping server
restarts. Tokens live in memory only: after an emulator restart clients must fetch a new one, which is
exactly the recovery path a real client needs anyway.
"""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from collections.abc import Callable


class TokenIssuer:
    """Checks client credentials, issues tokens, and tells which client a token belongs to."""

    def __init__(
        self,
        client_id: str,
        client_secret: str,
        lifetime: int = 300,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client_id = client_id
        self.client_secret = client_secret
        self.lifetime = lifetime
        self._clock = clock
        self._lock = threading.Lock()
        self._tokens: dict[str, tuple[str, float]] = {}

    def credentials_ok(self, client_id: str | None, client_secret: str | None) -> bool:
        """Constant-time comparison, as a real auth server does."""
        return (
            client_id is not None
            and client_secret is not None
            and hmac.compare_digest(client_id.encode(), self.client_id.encode())
            and hmac.compare_digest(client_secret.encode(), self.client_secret.encode())
        )

    def issue(self) -> tuple[str, int]:
        """A new token and its lifetime in seconds (``expires_in``)."""
        token = secrets.token_urlsafe(32)
        lifetime = self.lifetime
        now = self._clock()
        with self._lock:
            self._tokens = {t: v for t, v in self._tokens.items() if v[1] > now}
            self._tokens[token] = (self.client_id, now + lifetime)
        return token, lifetime

    def client_of(self, token: str) -> str | None:
        """The client id a valid token was issued to, or None if unknown or expired."""
        with self._lock:
            entry = self._tokens.get(token)
        if entry is None or entry[1] <= self._clock():
            return None
        return entry[0]

    def expire_all(self) -> None:
        """Invalidate every token issued so far (as if they all timed out)."""
        with self._lock:
            self._tokens.clear()
