"""The ION operators: webhook receivers and subscriptions (``webhooks``) and the audit (``audit``).

Their reconciling logic is :mod:`airflow_provider_ion.webhook_state`; the audit's pure checks are
:mod:`airflow_provider_ion.operators.audit_checks`. Importing this package is cheap (no gql, httpx or
SQLAlchemy): DAG files import it at parse time.

Example::

    from airflow_provider_ion.operators import IonEnsureWebhooksOperator
"""

from airflow_provider_ion.operators.audit import IonWebhookAuditOperator
from airflow_provider_ion.operators.base import IonBaseOperator
from airflow_provider_ion.operators.webhooks import (
    IonCreateWebhookReceiverOperator,
    IonCreateWebhookSubscriptionOperator,
    IonDisableWebhookReceiverOperator,
    IonDisableWebhookSubscriptionOperator,
    IonEnableWebhookReceiverOperator,
    IonEnableWebhookSubscriptionOperator,
    IonEnsureWebhooksOperator,
    IonGraphQLOperator,
)

__all__ = [
    "IonBaseOperator",
    "IonCreateWebhookReceiverOperator",
    "IonCreateWebhookSubscriptionOperator",
    "IonDisableWebhookReceiverOperator",
    "IonDisableWebhookSubscriptionOperator",
    "IonEnableWebhookReceiverOperator",
    "IonEnableWebhookSubscriptionOperator",
    "IonEnsureWebhooksOperator",
    "IonGraphQLOperator",
    "IonWebhookAuditOperator",
]
