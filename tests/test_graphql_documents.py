"""Every document the hook sends is valid against the SDL of ION's webhook schema."""

from __future__ import annotations

import pytest
from graphql import build_schema, parse, validate

from airflow_provider_ion.graphql import document, document_names, published_document, schema_sdl

SCHEMA = build_schema(schema_sdl())


HEADER_DOCUMENTS = {"AddHeaderToWebhookReceiver", "RemoveHeaderFromWebhookReceiver"}


@pytest.mark.parametrize("name", sorted(set(document_names()) - HEADER_DOCUMENTS))
def test_published_document_validates_against_schema(name: str) -> None:
    errors = validate(SCHEMA, parse(published_document(name)))
    assert errors == [], f"{name}.graphql: {[e.message for e in errors]}"


@pytest.mark.parametrize("name", document_names())
def test_optional_marker_never_reaches_the_wire(name: str) -> None:
    assert "@optional" not in published_document(name)


@pytest.mark.parametrize("name", document_names())
def test_document_holds_one_operation_named_after_its_file(name: str) -> None:
    operations = [d for d in parse(document(name)).definitions if d.kind == "operation_definition"]
    assert [op.name.value for op in operations] == [name]


def test_documents_exist_for_every_typed_call() -> None:
    expected = {
        "ListWebhookReceivers",
        "GetWebhookReceiver",
        "GetWebhookReceiverSecret",
        "CreateWebhookReceiver",
        "UpdateWebhookReceiver",
        "ListWebhookSubscriptions",
        "GetWebhookSubscription",
        "CreateWebhookSubscription",
        "UpdateWebhookSubscription",
        "ListWebhookEvents",
        "GetWebhookEvent",
        "EnumValues",
        "Ping",
    }
    assert expected <= set(document_names())


def test_only_secret_documents_select_the_shared_secret() -> None:
    readers = {n for n in document_names() if "sharedSecret" in document(n)}
    assert readers == {"GetWebhookReceiverSecret", "CreateWebhookReceiver"}


def test_unknown_document_names_the_known_ones() -> None:
    with pytest.raises(KeyError, match="ListWebhookReceivers"):
        document("NoSuchDocument")
