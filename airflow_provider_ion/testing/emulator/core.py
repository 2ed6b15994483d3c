"""One emulator instance: its store, tokens, faults and counters, shared by the routes and the server."""

from __future__ import annotations

import os

from airflow_provider_ion.testing.emulator.faults import FaultQueue
from airflow_provider_ion.testing.emulator.profiles import Profile, get_profile
from airflow_provider_ion.testing.emulator.schema import build_emulator_schema
from airflow_provider_ion.testing.emulator.stats import Stats
from airflow_provider_ion.testing.emulator.store import Store
from airflow_provider_ion.testing.emulator.tokens import TokenIssuer

DEFAULT_CLIENT_ID = "ion-emulator"
DEFAULT_CLIENT_SECRET = "ion-emulator-secret"


class Emulator:
    """The state behind the HTTP routes (see :func:`airflow_provider_ion.testing.emulator.app.create_app`)."""

    def __init__(
        self,
        *,
        client_id: str = DEFAULT_CLIENT_ID,
        client_secret: str = DEFAULT_CLIENT_SECRET,
        token_lifetime: int = 300,
        state_file: str | os.PathLike[str] | None = None,
        allow_remote_control: bool = False,
        profile: str | Profile | None = None,
    ) -> None:
        self.profile = get_profile(profile)
        self.store = Store(state_file, int_ids=self.profile.id_type == "Int")
        self.tokens = TokenIssuer(client_id, client_secret, token_lifetime)
        self.faults = FaultQueue()
        self.stats = Stats()
        self.schema = build_emulator_schema(self.profile)
        self.default_token_lifetime = token_lifetime
        self.allow_remote_control = allow_remote_control

    def reset(self) -> None:
        """Back to a fresh emulator: empty store, no faults, zero counters, no valid tokens, default lifetime."""
        self.store.reset()
        self.faults.clear()
        self.stats.reset()
        self.tokens.expire_all()
        self.tokens.lifetime = self.default_token_lifetime
