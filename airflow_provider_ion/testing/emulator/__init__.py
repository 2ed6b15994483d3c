"""A stand-in for ION: OAuth token endpoint, GraphQL API, fault injection, in one real HTTP server.

The emulator is a peer of the provider, not part of it: production code never imports this package.
Tests, the demo and ``airflow-ion emulator`` use it so that every hop (token, GraphQL, later webhook
deliveries) crosses a real socket even without an ION tenant.

Importing this package is cheap; :class:`EmulatorServer` is loaded on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow_provider_ion.testing.emulator.server import EmulatorServer

__all__ = ["EmulatorServer"]


def __getattr__(name: str) -> Any:
    if name == "EmulatorServer":
        from airflow_provider_ion.testing.emulator.server import EmulatorServer

        return EmulatorServer
    raise AttributeError(name)
