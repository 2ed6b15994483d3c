"""Daily ION webhook audit: find (and optionally fix) drift in receivers and subscriptions.

What ION should have is the desired state in ``ion_desired_state.py``, the one ``ion_webhooks_setup``
creates: change it there, not here.
"""

from __future__ import annotations

from datetime import timedelta

import ion_desired_state as desired
from airflow.sdk import DAG, Asset, Param, task

try:
    from airflow.sdk import CronTriggerTimetable
except ImportError:  # Airflow 3.1: not yet exported by the Task SDK
    from airflow.timetables.trigger import CronTriggerTimetable

from airflow_provider_ion.operators.audit import IonWebhookAuditOperator

ION_CONN_ID = "ion_default"
AUDIT_ASSET = Asset("ion://webhooks/audit")

DOC_MD = """
### ION webhook audit

Every day this DAG reads ION's webhook receivers, subscriptions and the last day's failing deliveries
(a few paginated GraphQL requests, whatever the number of receivers) and reports **drift**:

* an expected receiver or subscription that is missing or disabled (spec: `ion_desired_state.py`, the
  state `ion_webhooks_setup` creates; the receiver URI is rendered from the `airflow_url` Param, else
  `[api] base_url`, as in the setup DAG);
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

Runs daily at 06:00 UTC, never at once when first unpaused: on a fresh deployment the first run comes
after you had the chance to run `ion_webhooks_setup` (a catch-up run would fail on "receiver_missing").
"""


with DAG(
    dag_id="ion_webhooks_audit",
    # No start_date and run_immediately=timedelta(0): with catchup off, the first run is the next 06:00, not
    # the cron point just passed (airflow/timetables/trigger.py: next_dagrun_info makes the latest past point
    # a candidate when there is a start_date, and _calc_first_run treats run_immediately=False like None,
    # "run the past point if it was less than 10% of the period ago"; only a timedelta sets that window).
    schedule=CronTriggerTimetable("0 6 * * *", timezone="UTC", run_immediately=timedelta(0)),
    catchup=False,
    doc_md=DOC_MD,
    tags=["ion", "webhooks", "audit"],
    render_template_as_native_obj=True,
    params={
        **desired.params(),
        "fix": Param(False, type="boolean", description="Apply the spec and disable duplicate subscriptions"),
        "fail_on": Param("error", enum=["error", "warning", "never"], description="Fail the audit task on"),
        "window_hours": Param(24, type="number", minimum=1, description="Failing deliveries look-back"),
    },
) as dag:
    audit = IonWebhookAuditOperator(
        task_id="audit",
        ion_conn_id=ION_CONN_ID,
        expected=desired.expected(),
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
