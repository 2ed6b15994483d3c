"""The ION webhooks the example pipelines need, in one place.

``ion_webhooks_setup`` creates this state, ``ion_webhooks_teardown`` disables it and
``ion_webhooks_audit`` checks ION against it, so they cannot disagree. Change it here: the receiver's
name, the (resource, action) pairs the event-driven examples wait for, and where ION delivers.

Not a pipeline file: it names none of the scheduler's marker words, so the parser's safe mode skips it;
the pipelines import it (their folder is on ``sys.path``).
"""

from __future__ import annotations

from typing import Any

#: The receiver's name in ION; its route is ``/ion-webhooks/v1/receivers/<name>`` on the API server.
RECEIVER_NAME = "airflow"

#: What the event-driven examples wait for: ion_run_created, ion_issue_to_quality, ion_purchase_order_to_erp.
SUBSCRIPTIONS = ("RUNS/CREATE", "ISSUES/CREATE", "PURCHASE_ORDERS/CREATE")

#: Where ION delivers, rendered when the task runs: the ``airflow_url`` param (this deployment's public
#: HTTPS URL), else ``[api] base_url``, then the receiver's route. Templated, never hard-coded.
RECEIVER_URI = (
    "{{ params.airflow_url or conf.get('api', 'base_url') }}/ion-webhooks/v1/receivers/{{ params.receiver_name }}"
)

DESCRIPTION = "Airflow: event-driven pipelines (airflow-provider-ion)"


def params() -> dict[str, Any]:
    """The run parameters the receiver spec is rendered with (setup, teardown and audit take them)."""
    from airflow.sdk import Param

    return {
        "receiver_name": Param(RECEIVER_NAME, type="string", description="Name of the receiver in ION"),
        "airflow_url": Param(
            None,
            type=["null", "string"],
            description="Public HTTPS URL of this deployment's API server (default: [api] base_url)",
        ),
    }


def receiver_spec() -> dict[str, Any]:
    """The receiver as the setup operator and the audit take it (strings rendered at run time)."""
    return {"name": "{{ params.receiver_name }}", "webhook_uri": RECEIVER_URI, "description": DESCRIPTION}


def subscription_pairs() -> list[tuple[str, str]]:
    """``[("RUNS", "CREATE"), ...]``."""
    return [tuple(pair.split("/", 1)) for pair in SUBSCRIPTIONS]  # type: ignore[misc]


def expected() -> dict[str, Any]:
    """The audit's spec: this receiver with exactly these subscriptions (others are reported, not pruned)."""
    return {"receiver": receiver_spec(), "subscriptions": list(SUBSCRIPTIONS), "prune": False}
