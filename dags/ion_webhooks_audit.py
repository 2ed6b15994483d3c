"""Daily ION webhook audit: find (and optionally fix) drift in receivers and subscriptions.

Adapt the ``EXPECTED`` spec below (or override it per run with the ``expected`` Param when you
trigger the DAG by hand). Scheduled runs use the Params' defaults.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, Asset, Param, task

from airflow_provider_ion.operators.audit import IonWebhookAuditOperator

# --- adapt these -----------------------------------------------------------------------------------
ION_CONN_ID = "ion_default"
EXPECTED = {
    "receiver": {
        "name": "airflow-factory-events",
        "webhook_uri": "https://airflow.example.com/ion-webhooks/v1/receivers/airflow-factory-events",
    },
    "subscriptions": ["RUNS/CREATE", "RUNS/UPDATE", "ISSUES/CREATE"],
    "prune": False,
}
AUDIT_ASSET = Asset("ion://webhooks/audit")
# ----------------------------------------------------------------------------------------------------

DOC_MD = """
### ION webhook audit

Every day this DAG reads ION's webhook receivers, subscriptions and the last day's failing deliveries
(a few paginated GraphQL requests, whatever the number of receivers) and reports **drift**:

* an expected receiver or subscription that is missing or disabled (spec: the `expected` Param);
* active subscriptions on a disabled receiver, duplicate subscriptions, receivers with no subscriptions,
  receivers whose URI is not HTTPS;
* `FAILED` / `RETRYING` deliveries in the window, by receiver;
* inbox consumers lagging behind (when an inbox is configured or the default inbox file exists).

Tasks:

1. `audit` (`IonWebhookAuditOperator`): the report goes to XCom (key `report`, also the return value) and,
   on success, the summary to the asset event of `ion://webhooks/audit` (its `extra`). With the `fix` Param
   it also applies the spec (creates, re-enables, with `prune` disables) and disables duplicate
   subscriptions. It fails on `fail_on` (default: any error).
2. `notify`: formats the findings into a message and logs it; replace the body with Slack/email. Runs
   whatever the audit's outcome (`all_done`).
3. `fail_run_if_audit_failed`: keeps the DAG run failed when the audit failed (an always-running leaf
   such as `notify` would otherwise mark the run successful).

Trigger with config to override: `{"fix": true, "fail_on": "warning", "window_hours": 6}`.
"""


with DAG(
    dag_id="ion_webhooks_audit",
    schedule="@daily",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    doc_md=DOC_MD,
    tags=["ion", "webhooks", "audit"],
    render_template_as_native_obj=True,
    params={
        "expected": Param(EXPECTED, type=["object", "array", "null"], description="Desired webhooks (spec)"),
        "fix": Param(False, type="boolean", description="Apply the spec and disable duplicate subscriptions"),
        "fail_on": Param("error", enum=["error", "warning", "never"], description="Fail the audit task on"),
        "window_hours": Param(24, type="number", minimum=1, description="Failing deliveries look-back"),
    },
) as dag:
    audit = IonWebhookAuditOperator(
        task_id="audit",
        ion_conn_id=ION_CONN_ID,
        expected="{{ params.expected }}",
        fix="{{ params.fix }}",
        fail_on="{{ params.fail_on }}",
        window_hours="{{ params.window_hours }}",
        outlets=[AUDIT_ASSET],
    )

    @task(trigger_rule="all_done")
    def notify(ti=None) -> str:
        """Format the findings into one message (a stand-in for Slack or email) and log it."""
        report = ti.xcom_pull(task_ids="audit", key="report")
        if not report:
            message = "ION webhook audit produced no report (it failed before reading ION); see the audit task log."
        else:
            summary = report["summary"]
            lines = [
                f"ION webhook audit {report['generated_at']}: {summary['error']} error(s), "
                f"{summary['warning']} warning(s), {summary['info']} info; "
                f"{len(report['fixed'])} change(s) applied"
            ]
            for finding in report["findings"]:
                if finding.get("fixed"):
                    continue
                lines.append(f"- [{finding['severity']}] {finding['code']}: {finding['message']} -> {finding['fix']}")
            if report.get("truncated"):
                lines.append(f"... and {report['truncated']} more (see the report)")
            message = "\n".join(lines)
        print(message)
        return message

    @task(trigger_rule="one_failed")
    def fail_run_if_audit_failed() -> None:
        """Runs only when an upstream task failed, and fails, so the run's state tells the truth."""
        from airflow.sdk.exceptions import AirflowException

        raise AirflowException("The ION webhook audit failed; see the audit and notify tasks")

    notified = notify()
    audit >> notified
    [audit, notified] >> fail_run_if_audit_failed()
