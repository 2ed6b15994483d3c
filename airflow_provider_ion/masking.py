"""The one way the provider hides secrets from Airflow's logs and rendered fields.

Every secret the provider reads or is given (a connection's client secret, a receiver's shared secret,
an access token) goes through :func:`mask` the moment it is in hand. ``airflow.sdk.log.mask_secret``
registers it with the secrets masker of this process and, inside a task, of the supervisor too
(``airflow/sdk/log.py`` in task-sdk 1.1 and 1.3); it exists in every Airflow release this provider
supports, so there is no fallback that could silently skip masking.

Example::

    from airflow_provider_ion.masking import mask, mask_in

    mask(secret)                 # "***" in every later log line of this process
    mask_in(graphql_result)      # every "sharedSecret" value anywhere in a nested dict/list
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["SECRET_FIELD", "mask", "mask_in"]

#: ION's name for a receiver's shared secret in GraphQL objects.
SECRET_FIELD = "sharedSecret"


def mask(secret: str | None) -> None:
    """Register ``secret`` with Airflow's secrets masker; ``None`` and ``""`` are ignored."""
    if not secret:
        return
    from airflow.sdk.log import mask_secret

    mask_secret(secret)


def mask_in(obj: Any) -> None:
    """:func:`mask` every ``sharedSecret`` string found in ``obj`` (dicts and lists, recursively)."""
    if isinstance(obj, Mapping):
        for key, value in obj.items():
            if key == SECRET_FIELD and isinstance(value, str):
                mask(value)
            else:
                mask_in(value)
    elif isinstance(obj, list):
        for value in obj:
            mask_in(value)
