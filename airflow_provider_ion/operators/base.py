"""The base of the ION operators: the connection id and a hook built on first use.

Example::

    class IonPingOperator(IonBaseOperator):
        def execute(self, context):
            return self.hook.execute("Ping")

    IonPingOperator(task_id="ping", ion_conn_id="ion_staging")
"""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

if TYPE_CHECKING:
    from airflow_provider_ion.hooks.ion import IonHook

__all__ = ["IonBaseOperator"]


class IonBaseOperator(BaseOperator):
    """An operator that talks to ION through the Airflow connection ``ion_conn_id`` (default ``ion_default``).

    Example::

        IonGraphQLOperator(task_id="ping", document="Ping", ion_conn_id="ion_staging")
    """

    def __init__(self, *, ion_conn_id: str = "ion_default", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.ion_conn_id = ion_conn_id

    @cached_property
    def hook(self) -> IonHook:
        """The :class:`~airflow_provider_ion.hooks.ion.IonHook` of this task (gql/httpx imported on first use)."""
        from airflow_provider_ion.hooks.ion import IonHook

        return IonHook(self.ion_conn_id)
