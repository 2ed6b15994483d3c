"""Contract tests: what the provider needs from ION, checked against the emulator or a real tenant.

Default: an emulator (profile ``ION_CONTRACT_PROFILE``, default ``default``). With ``ION_CONTRACT_CONN``
holding an Airflow connection (URI ``ion://client-id:secret@api.example.com?auth_url=...`` or the JSON
form), the same tests run against that tenant: read-only, unless ``ION_CONTRACT_WRITE=1`` allows the
write test (one uniquely named, inactive receiver and subscription, removed again at the end).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

CONN_ID = "ion_contract"


@dataclass(frozen=True)
class Target:
    conn_id: str
    real: bool
    writes: bool
    label: str


@pytest.fixture(scope="session")
def contract_target() -> Iterator[Target]:
    conn = os.environ.get("ION_CONTRACT_CONN", "").strip()
    key = f"AIRFLOW_CONN_{CONN_ID.upper()}"
    previous = os.environ.get(key)
    if conn:
        # Airflow reads AIRFLOW_CONN_<ID> as a URI or as JSON, so the value is passed on as it is.
        os.environ[key] = conn
        try:
            yield Target(CONN_ID, True, os.environ.get("ION_CONTRACT_WRITE") == "1", "ION_CONTRACT_CONN")
        finally:
            _restore(key, previous)
        return
    from airflow_provider_ion.testing.emulator.delivery_settings import DeliverySettings
    from airflow_provider_ion.testing.emulator.server import EmulatorServer
    from tests.conftest import connection_json

    profile = os.environ.get("ION_CONTRACT_PROFILE", "default")
    with EmulatorServer(profile=profile, delivery=DeliverySettings(loopback_only=True)) as server:
        os.environ[key] = connection_json(server)
        try:
            yield Target(CONN_ID, False, True, f"emulator profile {profile}")
        finally:
            _restore(key, previous)


def _restore(key: str, previous: str | None) -> None:
    if previous is None:
        os.environ.pop(key, None)
    else:
        os.environ[key] = previous
