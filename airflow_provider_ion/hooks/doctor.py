"""``airflow-ion doctor``: how this ION tenant differs from ION's public pages, and what to change.

Checks, in order: the connection, the token, introspection, every GraphQL document against the live
schema, the resource and action enums, the id types, where ``totalCount`` lives, how receiver headers
are set, the stale-etag behaviour (as far as it shows without writing) and the receiver's
``[ion_webhooks]`` signature settings. Each check is ✓ (as published), ! (differs; the provider
adapts, nothing to change) or ✗ (must change something: the line says what). Read-only: doctor never
writes to ION. No secret is printed: not the client secret, not a token, not a shared secret.

    airflow-ion doctor --conn-id ion_default
    airflow-ion doctor --json

The connection form's Test button (:meth:`IonHook.test_connection`) runs the fast part (:func:`fast_checks`)
and reports the first problem.

Imported by the CLI at startup: the heavy imports (gql, graphql-core) happen inside functions.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from airflow_provider_ion.hooks.ion import IonHook
    from airflow_provider_ion.hooks.schema import LiveSchema

__all__ = ["Check", "add_arguments", "fast_checks", "format_table", "run", "run_checks"]

Status = Literal["ok", "differs", "fail", "unknown"]
MARKS = {"ok": "✓", "differs": "!", "fail": "✗", "unknown": "?"}
_QUERIES_TO_RUN = ("Ping", "ListWebhookReceivers", "ListWebhookSubscriptions", "ListWebhookEvents")


@dataclass(frozen=True)
class Check:
    """One line of the doctor's table.

    Example::

        Check("token", "ok", "token from https://auth.buildwithion.com/realms/api-keys/...")
    """

    name: str
    status: Status
    detail: str
    fix: str = ""

    @property
    def mark(self) -> str:
        return MARKS[self.status]


def _safe(hook: IonHook, text: str) -> str:
    from airflow_provider_ion.exceptions import redact

    try:
        secret = hook.settings.client_secret
    except Exception:  # an unusable connection has no secret to hide
        secret = None
    return redact(text, [secret])


def _connection_and_token(hook: IonHook) -> list[Check]:
    from airflow_provider_ion.exceptions import IonConfigError, IonError
    from airflow_provider_ion.hooks._auth import IonAuth

    try:
        settings = hook.settings
    except IonConfigError as exc:
        return [Check("connection", "fail", _safe(hook, str(exc)), "Fix the connection's fields or extras")]
    checks = [
        Check("connection", "ok", f"'{settings.conn_id}': API {settings.graphql_url}, client id '{settings.client_id}'")
    ]
    try:
        IonAuth(settings, hook.retry_policy, logger=hook.log).token()
    except IonError as exc:
        fix = "Check the client id/secret and the extra 'auth_url' (or 'environment') of the connection"
        return [*checks, Check("token", "fail", _safe(hook, str(exc)), fix)]
    if "/auth/realms/" in settings.token_url:
        detail = f"token from {settings.token_url}: the older Keycloak path (/auth before /realms)"
        return [*checks, Check("token", "differs", detail, "Nothing required while it answers")]
    return [*checks, Check("token", "ok", f"client-credentials token from {settings.token_url}")]


def _introspection(hook: IonHook) -> tuple[Check, LiveSchema | None]:
    from airflow_provider_ion.exceptions import IonError
    from airflow_provider_ion.hooks.schema import live_schema

    try:
        live = live_schema(hook, refresh=True)
    except IonError as exc:
        return Check("introspection", "fail", _safe(hook, str(exc)), "Check the API URL (host) of the connection"), None
    if live is None:
        return (
            Check(
                "introspection",
                "differs",
                "refused by the server: the published documents are sent as they are (no adaptation)",
                "Nothing required; to adapt anyway, pin the tenant's SDL (hooks.schema.pin_schema)",
            ),
            None,
        )
    return Check("introspection", "ok", f"schema learned ({len(live.schema.type_map)} types)"), live


def _documents(hook: IonHook, live: LiveSchema | None) -> list[Check]:
    from airflow_provider_ion import graphql as documents
    from airflow_provider_ion.exceptions import IonError, IonSchemaError

    checks: list[Check] = []
    if live is None:  # cannot validate: run the read-only ones for real
        for name in _QUERIES_TO_RUN:
            try:
                hook.execute(name, {"first": 1} if name != "Ping" else None)
                checks.append(Check(f"document {name}", "ok", "ran (published form)"))
            except IonError as exc:
                checks.append(Check(f"document {name}", "fail", _safe(hook, str(exc))[:300], "Report this document"))
        return checks
    for name in documents.document_names():
        if name in ("AddHeaderToWebhookReceiver", "RemoveHeaderFromWebhookReceiver") and not _header_mutations(live):
            continue  # used only where headers are set by mutations
        try:
            prepared = live.prepared(name)
        except IonSchemaError as exc:
            optional = name in ("GetWebhookEvent", "GetWebhookReceiver", "GetWebhookSubscription", "ListWebhookEvents")
            fix = "Only get_event/get_receiver/... need it" if optional else "The provider cannot run this call here"
            checks.append(Check(f"document {name}", "fail", str(exc)[:400], fix))
            continue
        if prepared.notes:
            checks.append(Check(f"document {name}", "differs", "adapted: " + "; ".join(prepared.notes)[:400]))
        else:
            checks.append(Check(f"document {name}", "ok", "valid as published"))
    return checks


def _header_mutations(live: LiveSchema) -> bool:
    return live.has_mutation("addHeaderToWebhookReceiver") and live.has_mutation("removeHeaderFromWebhookReceiver")


def _type_name(type_: Any) -> str:
    from graphql import get_named_type

    return get_named_type(type_).name if type_ is not None else "?"


def _schema_facts(hook: IonHook, live: LiveSchema | None) -> list[Check]:
    if live is None:
        why = "not visible without introspection"
        return [
            Check("resource enum", "unknown", why + "; operators pass RUN/RUNS as written"),
            Check("id types", "unknown", why + "; ids are sent as integers, as ION's published inputs do"),
        ]
    checks: list[Check] = []
    resources = live.enum_values("ResourceEnum")
    if resources is None:
        checks.append(Check("resource enum", "fail", "no enum ResourceEnum", "Subscriptions cannot be validated"))
    else:
        plural = sum(v.endswith("S") for v in resources) > len(resources) / 2
        shown = ", ".join(resources[:8]) + (" ..." if len(resources) > 8 else "")
        if plural:
            checks.append(Check("resource enum", "ok", f"plural, as ION's manual ({shown})"))
        else:
            checks.append(
                Check("resource enum", "differs", f"singular, as the newer docs ({shown}); RUNS resolves to RUN")
            )
    actions = live.enum_values("WebhookSubscriptionActions") or []
    missing = {"CREATE", "UPDATE", "DELETE"} - set(actions)
    checks.append(
        Check("action enum", "ok", ", ".join(actions))
        if not missing
        else Check("action enum", "fail", f"missing {', '.join(sorted(missing))} (has {', '.join(actions)})")
    )
    query = live.schema.query_type
    arg = query.fields["webhookReceiver"].args.get("id") if query and "webhookReceiver" in query.fields else None
    update = live.schema.get_type("UpdateWebhookReceiverInput")
    input_id = getattr(update, "fields", {}).get("id") if update is not None else None
    kinds = {_type_name(found.type) for found in (arg, input_id) if found}
    if kinds <= {"ID"}:
        checks.append(Check("id types", "ok", "ID (integers sent, as ION's published inputs)"))
    else:
        checks.append(
            Check("id types", "differs", f"{'/'.join(sorted(kinds))}: variables retyped, ids sent as integers")
        )
    page_info = live.type_fields("PageInfo") or []
    if "totalCount" in page_info:
        checks.append(Check("totalCount", "ok", "inside pageInfo, as ION's pagination guide"))
    else:
        checks.append(Check("totalCount", "differs", "on the connection, not in pageInfo: documents adapted"))
    create = live.schema.get_type("CreateWebhookReceiverInput")
    if "headers" in (getattr(create, "fields", None) or {}):
        checks.append(Check("receiver headers", "ok", "inside the create/update inputs"))
    elif _header_mutations(live):
        checks.append(Check("receiver headers", "differs", "set with addHeader/removeHeader mutations (done for you)"))
    else:
        fix = "Do not pass headers= to receivers on this tenant"
        checks.append(Check("receiver headers", "fail", "neither in the inputs nor as mutations", fix))
    return checks


def _stale_etag() -> Check:
    return Check(
        "stale etag",
        "unknown",
        "not visible without a write; HTTP 409 and a 200 whose error names a stale/mismatched etag are both "
        "treated as a conflict (re-read, retry)",
    )


def _receiver_settings() -> Check:
    from airflow_provider_ion import config

    try:
        header, algorithm = config.get("signature_header"), config.get("signature_algorithm")
        encoding, prefix = config.get("signature_encoding"), config.get("signature_prefix")
    except Exception as exc:  # a broken setting: say which
        return Check("receiver signature", "fail", str(exc), "Fix [ion_webhooks] in airflow.cfg")
    detail = f"{header}: {prefix or ''}<{encoding} HMAC-{algorithm}> (assumed: ION publishes only the header name)"
    published = header == "x-ion-signature"
    return Check(
        "receiver signature",
        "ok" if published else "differs",
        detail,
        "" if published else "A non-default header: make sure it is what ION sends",
    )


def fast_checks(hook: IonHook) -> list[Check]:
    """Connection, token, introspection and the documents: what the Test button runs."""
    checks = _connection_and_token(hook)
    if any(c.status == "fail" for c in checks):
        return checks
    intro, live = _introspection(hook)
    checks.append(intro)
    if intro.status == "fail":
        return checks
    return checks + _documents(hook, live)


def run_checks(hook: IonHook) -> list[Check]:
    """Every check (read-only)."""
    checks = fast_checks(hook)
    if any(c.name in ("connection", "token", "introspection") and c.status == "fail" for c in checks):
        return [*checks, _receiver_settings()]
    from airflow_provider_ion.hooks.schema import live_schema

    live = live_schema(hook)
    return checks + _schema_facts(hook, live) + [_stale_etag(), _receiver_settings()]


def format_table(checks: list[Check]) -> str:
    width = max(len(c.name) for c in checks) if checks else 10
    lines = [f"  {'':1} {'check':<{width}}  result"]
    for c in checks:
        lines.append(f"  {c.mark} {c.name:<{width}}  {c.detail}")
        if c.fix:
            lines.append(f"    {'':<{width}}  -> {c.fix}")
    counts = {s: sum(c.status == s for c in checks) for s in MARKS}
    lines.append(
        f"\n  {counts['ok']} as published, {counts['differs']} different (adapted), {counts['fail']} to fix, "
        f"{counts['unknown']} not visible"
    )
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--conn-id", default="ion_default", help="the ion connection (default: %(default)s)")
    parser.add_argument("--json", action="store_true", help="print the checks as JSON")


def run(args: argparse.Namespace) -> int:
    from airflow_provider_ion.hooks.ion import IonHook

    with IonHook(args.conn_id) as hook:
        checks = run_checks(hook)
    if args.json:
        print(json.dumps([{**asdict(c), "mark": c.mark} for c in checks], indent=2, ensure_ascii=False))
    else:
        print(f"ION doctor for connection '{args.conn_id}'\n")
        print(format_table(checks))
    sys.stdout.flush()
    return 1 if any(c.status == "fail" for c in checks) else 0
