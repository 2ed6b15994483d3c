"""Receiving ION's webhooks: the receiver app (``app``), signatures (``signature``), the durable inbox
(``inbox``), where secrets come from (``secrets``) and the ``airflow-ion receiver``/``inbox`` commands.

No re-exports on purpose: the receiver app and the inbox import Starlette and SQLAlchemy, which DAG
files must not pay for by importing this package; import from the modules.
"""

__all__: list[str] = []
