"""Documents adapted to a live schema (hooks/schema.py): pure, against variants of the published SDL."""

from __future__ import annotations

import re

import pytest
from graphql import build_schema, print_ast, validate

from airflow_provider_ion.exceptions import IonConcurrencyError, IonSchemaError
from airflow_provider_ion.graphql import document_names, schema_sdl, total_count
from airflow_provider_ion.hooks import _gql
from airflow_provider_ion.hooks.schema import LiveSchema, adapt, coerce_loose, resolve_enum_value
from airflow_provider_ion.resources import canonical_resource, resolve_resource

HEADER_DOCUMENTS = {"AddHeaderToWebhookReceiver", "RemoveHeaderFromWebhookReceiver"}
PUBLISHED = schema_sdl()


def variant(*edits: tuple[str, str]) -> object:
    sdl = PUBLISHED
    for old, new in edits:
        assert re.search(old, sdl), old
        sdl = re.sub(old, new, sdl)
    return build_schema(sdl)


@pytest.mark.parametrize("name", sorted(set(document_names()) - HEADER_DOCUMENTS))
def test_every_document_adapts_to_the_published_schema_unchanged(name: str) -> None:
    schema = build_schema(PUBLISHED)
    prepared = adapt(schema, name)
    assert validate(schema, prepared.op.document) == []
    assert prepared.notes == ()
    assert "@optional" not in print_ast(prepared.op.document)


def test_total_count_moves_to_the_connection_when_page_info_lacks_it() -> None:
    schema = variant(
        (r"  \"Objects matching the query, over all pages[^\n]*\n  totalCount: Int\n", ""),
        (r"type WebhookReceiverConnection \{\n", "type WebhookReceiverConnection {\n  totalCount: Int!\n"),
    )
    for name in ("Ping", "ListWebhookReceivers"):
        prepared = adapt(schema, name)
        assert validate(schema, prepared.op.document) == [], name
        assert any("totalCount read from the connection" in n for n in prepared.notes)
    assert total_count({"totalCount": 7, "pageInfo": {}}) == 7
    assert total_count({"pageInfo": {"totalCount": 3}}) == 3


def test_optional_fields_missing_are_dropped_and_required_ones_fail_with_closest_names() -> None:
    schema = variant((r"  createdAt: DateTime!\n  updatedAt: DateTime!\n\}\n\n\"A \(resource", '}\n\n"A (resource'))
    prepared = adapt(schema, "ListWebhookReceivers")
    assert validate(schema, prepared.op.document) == []
    assert "WebhookReceiver.createdAt is not in this schema: not selected" in prepared.notes

    renamed = variant((r"  webhookUri: String!\n  sharedSecret", "  webhookUrl: String!\n  sharedSecret"))
    with pytest.raises(IonSchemaError) as info:
        adapt(renamed, "ListWebhookReceivers")
    error = info.value
    assert (error.document, error.type_name, error.field) == ("ListWebhookReceivers", "WebhookReceiver", "webhookUri")
    assert "webhookUrl" in error.closest and "webhookUrl" in str(error)


def test_created_by_as_a_scalar_or_without_id() -> None:
    scalar = variant((r"  createdBy: User\n", "  createdBy: String\n"))
    prepared = adapt(scalar, "ListWebhookSubscriptions")
    assert validate(scalar, prepared.op.document) == []
    assert any("createdBy is a String here" in n for n in prepared.notes)
    no_id = variant((r"type User \{\n  id: ID!\n", "type User {\n"))
    prepared = adapt(no_id, "ListWebhookSubscriptions")
    assert validate(no_id, prepared.op.document) == []
    assert "createdBy" not in print_ast(prepared.op.document)


def test_int_ids_retype_variables_and_coerce_values() -> None:
    schema = variant(
        (r"webhookReceiver\(id: ID!\)", "webhookReceiver(id: Int!)"), (r"  id: ID!\n  etag", "  id: Int!\n  etag")
    )
    prepared = adapt(schema, "GetWebhookReceiver")
    assert validate(schema, prepared.op.document) == []
    assert "$id: Int!" in print_ast(prepared.op.document)
    live = LiveSchema(schema)
    assert live.coerce(live.prepared("GetWebhookReceiver"), {"id": "12"}) == {"id": 12}
    update = live.prepared("UpdateWebhookReceiver")
    assert live.coerce(update, {"input": {"id": "12", "etag": "e", "active": False}}) == {
        "input": {"id": 12, "etag": "e", "active": False}
    }
    assert coerce_loose({"input": {"receiverId": "4", "name": "7"}}) == {"input": {"receiverId": 4, "name": "7"}}


def test_missing_argument_is_dropped_when_null_and_fails_when_used() -> None:
    schema = variant((r"    before: String\n    filters: WebhookReceiversInputFilters\n", "    before: String\n"))
    live = LiveSchema(schema)
    prepared = live.prepared("ListWebhookReceivers")
    assert validate(schema, prepared.op.document) == []
    assert live.coerce(prepared, {"first": 5, "after": None, "filters": None}) == {"first": 5, "after": None}
    with pytest.raises(IonSchemaError, match="filters"):
        live.coerce(prepared, {"first": 5, "filters": {"name": {"eq": "x"}}})


def test_unknown_input_field_names_the_input_type() -> None:
    schema = variant(
        (
            r"  active: Boolean\n  headers: \[WebhookHeaderInput!\]\n\}\n\ninput Update",
            "  active: Boolean\n}\n\ninput Update",
        )
    )
    live = LiveSchema(schema)
    with pytest.raises(IonSchemaError) as info:
        live.coerce(
            live.prepared("CreateWebhookReceiver"), {"input": {"name": "n", "headers": [{"key": "a", "value": "b"}]}}
        )
    assert info.value.type_name == "CreateWebhookReceiverInput" and info.value.field == "headers"


def test_enum_values_resolve_singular_and_plural() -> None:
    schema = variant((r"  RUNS\n  RUN_STEPS\n", "  RUN\n  RUN_STEP\n"))
    live = LiveSchema(schema)
    prepared = live.prepared("CreateWebhookSubscription")
    values = live.coerce(prepared, {"input": {"receiverId": "1", "resource": "runs", "action": "CREATE"}})
    assert values == {"input": {"receiverId": 1, "resource": "RUN", "action": "CREATE"}}
    assert resolve_enum_value("RUN", ["RUNS", "ISSUES"]) == "RUNS"
    assert resolve_enum_value("nope", ["RUNS"]) is None


@pytest.mark.parametrize(
    ("spelling", "key"),
    [
        ("RUNS", "RUN"),
        ("run", "RUN"),
        ("Run", "RUN"),
        ("PART_INVENTORIES", "PART_INVENTORY"),
        ("part-inventory", "PART_INVENTORY"),
        ("Purchase Orders", "PURCHASE_ORDER"),
        ("FILE_ATTACHMENTS", "FILE_ATTACHMENT"),
        ("ISSUES", "ISSUE"),
        ("RUN_STEPS", "RUN_STEP"),
        ("STATUS", "STATUS"),
    ],
)
def test_canonical_resource(spelling: str, key: str) -> None:
    assert canonical_resource(spelling) == key


def test_resolve_resource_prefers_exact_and_rejects_empty() -> None:
    assert resolve_resource("RUNS", ["RUN", "RUNS"]) == "RUNS"
    assert resolve_resource("runs", ["RUN", "ISSUE"]) == "RUN"
    assert resolve_resource("widgets", ["RUN"]) is None
    with pytest.raises(ValueError, match="non-empty"):
        canonical_resource(" ")


@pytest.mark.parametrize(
    "error",
    [
        {"message": "The _etag mismatch", "extensions": {"code": "BAD_REQUEST"}},
        {"message": "Stale etag for WebhookSubscription 3"},
        {"message": "x", "extensions": {"code": "ETAG_MISMATCH"}},
    ],
)
def test_stale_etag_inside_a_200_is_a_concurrency_error(error: dict) -> None:
    op = _gql.operation("UpdateWebhookSubscription")
    exc = _gql.graphql_error([error], op=op, variables={"input": {"id": 3}}, secrets=[], conn_id="c")
    assert isinstance(exc, IonConcurrencyError)


def test_other_errors_mentioning_etag_are_not_conflicts() -> None:
    op = _gql.operation("UpdateWebhookSubscription")
    exc = _gql.graphql_error([{"message": "etag is required"}], op=op, variables=None, secrets=[], conn_id="c")
    assert not isinstance(exc, IonConcurrencyError)
