"""Apache Airflow provider for ION, First Resonance's manufacturing execution platform.

Importing this package is cheap on purpose: DAG files import our operators at parse time, so nothing
here pulls in gql, httpx, SQLAlchemy engines or the network. Public entry points live in the
subpackages (``hooks``, ``operators``, ``sensors``, ``triggers``, ``webhooks``) and in
``exceptions``, ``webhook_state``, ``masking`` and ``config``; ``testing`` is test tooling.
"""

__all__ = ["__version__"]

__version__ = "0.2.0"
