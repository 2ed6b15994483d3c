"""ION's GraphQL API for Airflow tasks: :class:`IonHook` (``hooks/ion.py``).

``environments`` parses an ``ion`` connection; the ``_auth``, ``_gql`` and ``_retry`` modules are the
hook's private plumbing (tokens, gql clients and error translation, the retry transport).

Example::

    from airflow_provider_ion.hooks import IonHook

    with IonHook("ion_default") as hook:
        hook.execute("Ping")
"""

from airflow_provider_ion.hooks.ion import IonHook, clear_token_cache

__all__ = ["IonHook", "clear_token_cache"]
