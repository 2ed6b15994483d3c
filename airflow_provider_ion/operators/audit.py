"""The ION webhook subscription audit operator: find (and optionally fix) drift between ION and what pipelines need.

Webhooks fail quietly: a disabled subscription, a receiver someone pointed elsewhere, or deliveries that
have been failing for a day look exactly like "nothing happened in the factory". The audit reads ION's
whole webhook state in a few paginated requests, compares it with an optional desired state (the spec
:class:`~airflow_provider_ion.operators.webhooks.IonEnsureWebhooksOperator` takes) and reports findings
(the pure checks live in :mod:`airflow_provider_ion.operators.audit_checks`).

Cost is bounded and independent of the number of receivers: one paginated pass over receivers, one over
subscriptions, one count of the events in the window and one paginated pass over the *failing* events of
the window (filtered by status and ``createdAt`` on the server). Pages are 500 objects (ION's cap in the
emulator), so 5,000 subscriptions cost 10 requests.

Importing this module is cheap (DAG files import it at parse time): the hook (gql, httpx) and the inbox
(SQLAlchemy) are imported inside methods.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from airflow_provider_ion.graphql import total_count
from airflow_provider_ion.masking import mask
from airflow_provider_ion.operators.audit_checks import (
    FAILING_STATUSES,
    SEVERITIES,
    AuditSnapshot,
    ExpectedWebhooks,
    FailOn,
    Finding,
    applies_to,
    audit_findings,
    format_findings_table,
    is_resolved_by,
    normalize_expected,
    summarize,
)
from airflow_provider_ion.operators.base import IonBaseOperator
from airflow_provider_ion.webhook_state import (
    ensure_webhooks,
    set_subscription_active,
    store_receiver_secret,
    without_secret,
)

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_provider_ion.hooks.ion import IonHook

__all__ = ["DEFAULT_PAGE_SIZE", "IonWebhookAuditOperator"]

DEFAULT_PAGE_SIZE = 500


# --------------------------------------------------------------------------------------------------
# The operator
# --------------------------------------------------------------------------------------------------
def _as_bool(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


class IonWebhookAuditOperator(IonBaseOperator):
    """Audit ION's webhooks: report drift, failing deliveries and lagging consumers; optionally fix drift.

    Run it on a schedule (see ``dags/ion_webhooks_audit.py``). It reads every receiver and subscription
    (one paginated pass each, never one query per receiver) and the failing events of the last
    ``window_hours`` (filtered on the server), then reports findings (codes: :data:`FINDING_CODES`).

    Example::

        IonWebhookAuditOperator(
            task_id="audit_webhooks",
            expected={
                "receiver": {"name": "airflow-factory-events", "webhook_uri": "https://airflow.example.com/..."},
                "subscriptions": ["RUNS/CREATE", "ISSUES/CREATE"],
                "prune": True,
            },
            fix=True,               # create / re-enable / prune, disable duplicate subscriptions
            fail_on="error",        # the task fails while errors remain
            outlets=[Asset("ion://webhooks/audit")],  # the summary rides on the asset event's extra
        )

    The report (JSON, never a secret) is pushed to XCom under key ``report`` *before* the task fails on
    ``fail_on`` (Airflow pushes no return value from a failed task, and the notification needs it), and
    is also the return value on success. Shape: ``generated_at``, ``window_hours``, ``since``, ``counts``
    (receivers, subscriptions, active_subscriptions, events in window, failing_events), ``findings``
    (most severe first, at most ``max_findings``; ``truncated`` says how many were left out),
    ``summary`` (open findings by severity: fixed ones do not count), ``fixed`` (changes made),
    ``inbox`` (checked or why not), ``requests`` (GraphQL requests sent) and ``seconds``.

    Decisions:

    * ``fix=True`` applies each ``expected`` entry with :func:`ensure_webhooks` (creates a missing
      receiver when the entry has a ``webhook_uri`` spec, re-enables, creates subscriptions, and with
      ``prune`` disables unlisted ones) and disables duplicate active subscriptions, keeping the oldest.
      It never touches receivers outside the spec, URIs (unless the spec says ``if_exists="update"``),
      nor active subscriptions on a disabled receiver that is not in the spec (intent is unclear).
      Findings are from before the fix; the fixed ones are flagged ``fixed`` and do not count.
    * Plain-HTTP receiver URIs are errors, except to a loopback host (the emulator, tests): info.
    * The inbox is read when ``inbox_url`` is given, when ``[ion_webhooks] inbox_url`` is set, or when the
      default SQLite inbox file exists; otherwise it is skipped (``report["inbox"]["checked"]`` false).
      ``check_inbox=False`` skips it always. The audit never creates an inbox file.

    :param expected: desired state: ``{"receiver": spec-or-name-or-id, "subscriptions": [...],
        "prune": bool}``, a list of them, or their JSON text (for templated Params).
    :param window_hours: how far back to look for failing deliveries (default 24).
    :param fix: apply the desired state and disable duplicate subscriptions.
    :param fail_on: ``"error"`` (default), ``"warning"`` (errors or warnings) or ``"never"``.
    :param inbox_url: the inbox to check for lagging consumers (see above).
    :param max_consumer_lag: events a consumer may be behind before it is reported.
    :param consumer_window_days: triggers and sensors that recorded themselves in the inbox within this many
        days (each running trigger refreshes its record hourly; a sensor when it starts waiting) are compared
        with the active subscriptions: ``consumer_without_subscription`` (warning) and
        ``subscription_without_consumer`` (info). Needs the inbox (see above); skipped when it is not read.
    :param min_failures: failing events of one receiver in the window before it is reported.
    :param store_secret: when fix creates a receiver, store its secret in the Airflow Variable the
        receiver app reads (as IonEnsureWebhooksOperator does).
    :param page_size: objects per GraphQL page (ION's cap is 500 in the emulator).
    :param max_findings: findings kept in the report (the summary counts them all).
    """

    template_fields: Sequence[str] = ("expected", "window_hours", "fix", "fail_on", "inbox_url")
    template_fields_renderers = {"expected": "json"}
    ui_color = "#fcf3cf"

    def __init__(
        self,
        *,
        expected: Mapping[str, Any] | Sequence[Mapping[str, Any]] | str | None = None,
        window_hours: float = 24,
        fix: bool = False,
        fail_on: FailOn = "error",
        inbox_url: str | None = None,
        check_inbox: bool = True,
        max_consumer_lag: int = 1000,
        consumer_window_days: float = 7,
        min_failures: int = 1,
        store_secret: bool = True,
        page_size: int = DEFAULT_PAGE_SIZE,
        max_findings: int = 500,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.expected = expected
        self.window_hours = window_hours
        self.fix = fix
        self.fail_on = fail_on
        self.inbox_url = inbox_url
        self.check_inbox = check_inbox
        self.max_consumer_lag = max_consumer_lag
        if float(consumer_window_days) <= 0:
            raise ValueError(f"consumer_window_days must be positive, got {consumer_window_days!r}")
        self.consumer_window_days = float(consumer_window_days)
        self.min_failures = min_failures
        self.store_secret = store_secret
        self.page_size = page_size
        self.max_findings = max_findings
        if not (isinstance(expected, str) and "{{" in expected):
            normalize_expected(expected)  # a malformed spec fails when the DAG is parsed
        if isinstance(fail_on, str) and "{{" not in fail_on and fail_on not in ("error", "warning", "never"):
            raise ValueError(f"fail_on must be 'error', 'warning' or 'never', got {fail_on!r}")

    def render_template_fields(self, context: Context, jinja_env: Any = None) -> None:
        super().render_template_fields(context, jinja_env)
        # Rendered fields are stored after rendering: mask any secret in the spec before that happens.
        for entry in normalize_expected(self.expected):
            if isinstance(entry.receiver, Mapping):
                mask(entry.receiver.get("shared_secret"))

    # -- reading ---------------------------------------------------------------------------------
    def _read(self, hook: IonHook, since: datetime) -> AuditSnapshot:
        receivers = list(hook.paginate("ListWebhookReceivers", {"filters": None}, page_size=self.page_size))
        subscriptions = list(hook.paginate("ListWebhookSubscriptions", {"filters": None}, page_size=self.page_size))
        window = {"createdAt": {"gte": since.isoformat()}}
        total = total_count(hook.execute("ListWebhookEvents", {"first": 1, "filters": window})["webhookEvents"]) or 0
        failing_filter = {"filters": {**window, "status": {"in": list(FAILING_STATUSES)}}}
        failing = list(hook.paginate("ListWebhookEvents", failing_filter, page_size=self.page_size))
        return AuditSnapshot(without_secret(receivers), subscriptions, failing, events_in_window=int(total))

    def _inbox_url(self) -> str | None:
        from pathlib import Path

        if not self.check_inbox:
            return None
        if self.inbox_url:
            return self.inbox_url
        from airflow_provider_ion import config

        url = config.inbox_url()
        if config.get("inbox_url"):
            return url
        # Not configured: read the default SQLite file only if a receiver has created it.
        path = url.removeprefix("sqlite:///")
        return url if url.startswith("sqlite:///") and Path(path).is_file() else None

    def _read_inbox(
        self,
    ) -> tuple[dict[str, Any], dict[str, dict[str, int]] | None, list[dict[str, Any]] | None]:
        """The inbox summary, its rejection counts and the consumers seen in the consumer window."""
        url = self._inbox_url()
        if url is None:
            reason = "disabled" if not self.check_inbox else "no inbox configured and no default inbox file"
            return {"checked": False, "reason": reason}, None, None
        from airflow_provider_ion.webhooks.inbox import Inbox

        inbox = Inbox.from_url(url)
        try:
            stats = inbox.stats()
            since = datetime.now(UTC) - timedelta(hours=float(self.window_hours))
            rejections = inbox.rejection_counts(since=since)
            seen_since = datetime.now(UTC) - timedelta(days=self.consumer_window_days)
            recorded = [
                {
                    "consumer": c.consumer,
                    "kind": c.kind,
                    "receiver": c.receiver,
                    "resources": list(c.resources) if c.resources is not None else None,
                    "actions": list(c.actions) if c.actions is not None else None,
                    "last_seen": c.last_seen.isoformat(),
                }
                for c in inbox.consumers(since=seen_since)
            ]
        except Exception as error:  # InboxUnavailable and friends: report, don't fail the audit
            return {"checked": False, "url": inbox.safe_url, "error": str(error)[:300]}, None, None
        finally:
            inbox.close()
        consumers = stats.get("consumers") or {}
        summary = {
            "checked": True,
            "url": stats.get("url"),
            "total": stats.get("total"),
            "latest_seq": stats.get("latest_seq"),
            "consumers": consumers,
            "by_receiver": stats.get("by_receiver") or {},
            "recorded_consumers": len(recorded),
            "consumer_window_days": self.consumer_window_days,
        }
        return summary, rejections, recorded

    # -- fixing ----------------------------------------------------------------------------------
    def _apply_fixes(
        self, hook: IonHook, expected: Sequence[ExpectedWebhooks], findings: list[Finding]
    ) -> list[dict[str, Any]]:
        changes: list[dict[str, Any]] = []
        for entry in expected:
            mine = [f for f in findings if f.fixable and applies_to(f, entry)]
            if not mine:
                continue
            try:
                summary = ensure_webhooks(hook, entry.receiver, entry.subscriptions, prune=entry.prune)
            except Exception as error:
                findings.append(
                    Finding(
                        "error",
                        "fix_failed",
                        f"Applying the spec of {entry.ref!r} failed: {error}",
                        {"type": "receiver", "name": entry.ref},
                        "Read the error; fix it by hand or adjust the spec",
                    )
                )
                continue
            secret = summary.pop("_secret", None)
            receiver = summary.pop("receiver")
            if self.store_secret and secret:
                store_receiver_secret(hook, receiver, secret)
            for change in ("created", "updated", "enabled", "disabled"):
                for item in summary.get(change, []):
                    changes.append({"change": change, "receiver_name": receiver.get("name"), **item})
            for f in findings:
                if f in mine or is_resolved_by(f, entry):
                    f.fixed = True
        for f in findings:
            if f.code != "duplicate_subscription" or f.fixed:
                continue
            try:
                for sid in f.details["disable"]:
                    outcome = set_subscription_active(hook, sid, False)
                    if outcome.change == "disabled":
                        changes.append(
                            {
                                "change": "disabled",
                                "subscription": sid,
                                "reason": "duplicate",
                                "receiver_name": f.object.get("receiver_name"),
                                "resource": f.object["resource"],
                                "action": f.object["action"],
                            }
                        )
                f.fixed = True
            except Exception as error:
                findings.append(
                    Finding(
                        "error",
                        "fix_failed",
                        f"Disabling duplicate subscriptions failed: {error}",
                        f.object,
                        "Disable them by hand",
                    )
                )
        return changes

    # -- execute ---------------------------------------------------------------------------------
    def execute(self, context: Context) -> dict[str, Any]:
        from airflow.sdk.exceptions import AirflowException  # the audit's verdict, not an ION error

        started = time.monotonic()
        fail_on = str(self.fail_on)
        if fail_on not in ("error", "warning", "never"):
            raise ValueError(f"fail_on must be 'error', 'warning' or 'never', got {fail_on!r}")
        window_hours = float(self.window_hours)
        fix = _as_bool(self.fix)
        expected = normalize_expected(self.expected)
        now = datetime.now(UTC)
        since = now - timedelta(hours=window_hours)

        hook = self.hook
        sent_before = hook.operations_sent
        snapshot = self._read(hook, since)
        inbox, rejections, recorded = self._read_inbox()
        snapshot.inbox, snapshot.rejections, snapshot.consumers = inbox, rejections, recorded
        findings = audit_findings(
            snapshot,
            expected,
            window_hours=window_hours,
            max_consumer_lag=int(self.max_consumer_lag),
            min_failures=int(self.min_failures),
        )
        read_requests = hook.operations_sent - sent_before
        fixed = self._apply_fixes(hook, expected, findings) if fix else []
        findings.sort(key=lambda f: (SEVERITIES.index(f.severity), f.code))  # fix_failed ones were appended

        summary = summarize(findings)
        kept = [f.to_dict() for f in findings[: self.max_findings]]
        report: dict[str, Any] = without_secret(
            {
                "generated_at": now.isoformat(),
                "window_hours": window_hours,
                "since": since.isoformat(),
                "counts": {
                    "receivers": len(snapshot.receivers),
                    "subscriptions": len(snapshot.subscriptions),
                    "active_subscriptions": sum(1 for s in snapshot.subscriptions if s.get("active")),
                    "events": snapshot.events_in_window,
                    "failing_events": len(snapshot.failing_events),
                },
                "expected": [e.to_dict() for e in expected],
                "findings": kept,
                "truncated": len(findings) - len(kept),
                "summary": summary,
                "fix": fix,
                "fixed": fixed,
                "inbox": inbox,
                "requests": hook.operations_sent - sent_before,
                "read_requests": read_requests,
                "seconds": round(time.monotonic() - started, 3),
                "fail_on": fail_on,
            }
        )
        self.log.info(
            "ION webhook audit: %d receivers, %d subscriptions, %s events in %g h (%d failing); "
            "%d error(s), %d warning(s), %d info; %d change(s) applied; %d GraphQL requests in %.2f s\n%s",
            report["counts"]["receivers"],
            report["counts"]["subscriptions"],
            report["counts"]["events"],
            window_hours,
            report["counts"]["failing_events"],
            summary["error"],
            summary["warning"],
            summary["info"],
            len(fixed),
            report["requests"],
            report["seconds"],
            format_findings_table(kept),
        )
        extra: dict[str, Any] = {
            "summary": summary,
            "counts": report["counts"],
            "generated_at": report["generated_at"],
        }
        for asset in getattr(self, "outlets", None) or []:
            context["outlet_events"][asset].extra = extra
        context["ti"].xcom_push(key="report", value=report)
        failing = summary["error"] + (summary["warning"] if fail_on == "warning" else 0)
        if fail_on != "never" and failing:
            raise AirflowException(
                f"ION webhook audit: {summary['error']} error(s), {summary['warning']} warning(s), "
                f"{summary['info']} info (fail_on={fail_on!r}); the report is in XCom key 'report'"
            )
        return report
