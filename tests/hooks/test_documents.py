"""Document loading: names from graphql/, raw text, mutation detection, and the parse cache."""

from __future__ import annotations

import pytest

from airflow_provider_ion import graphql as documents
from airflow_provider_ion.hooks._gql import operation


@pytest.mark.parametrize("name", documents.document_names())
def test_every_document_loads_by_name(name: str) -> None:
    op = operation(name)
    assert op.name == name
    assert op.is_mutation == name.startswith(("Create", "Update", "Delete", "AddHeader", "RemoveHeader"))


def test_names_and_text_are_parsed_once() -> None:
    assert operation("ListWebhookReceivers") is operation("ListWebhookReceivers")
    text = "query Q { webhookReceivers(first: 1) { totalCount } }"
    assert operation(text) is operation(text)
    assert operation(text).document is operation(text, "Q").document


def test_raw_text_and_anonymous_operations() -> None:
    op = operation("{ webhookReceivers { totalCount } }")
    assert (op.name, op.is_mutation, op.label) == (None, False, "anonymous operation")
    op = operation('mutation M { createWebhookReceiver(input: {name: "a", webhookUri: "b"}) { __typename } }')
    assert op.is_mutation and op.name == "M"


def test_multi_operation_documents_need_an_operation_name() -> None:
    text = "query A { a } mutation B { b }"
    with pytest.raises(ValueError, match=r"2 operations .*pass operation_name"):
        operation(text)
    assert operation(text, "B").is_mutation
    assert not operation(text, "A").is_mutation
    with pytest.raises(ValueError, match="no operation named 'C'"):
        operation(text, "C")


def test_unknown_name_lists_the_known_ones() -> None:
    with pytest.raises(KeyError, match="ListWebhookReceivers"):
        operation("ListWebhookRecievers")


def test_syntax_errors_surface() -> None:
    from graphql import GraphQLError

    with pytest.raises(GraphQLError):
        operation("query { unclosed ")
