"""The executable GraphQL schema: ION's webhook SDL plus emulator/domain.graphql, wired to the store.

The webhook part comes from :func:`airflow_provider_ion.graphql.schema_sdl`, the same SDL the provider's
documents are validated against, so the emulator cannot drift from what the provider sends. Resolvers
read the store from the execution context (:class:`RequestContext`), so one schema serves any number of
emulators.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from graphql import GraphQLObjectType, GraphQLSchema, build_schema

from airflow_provider_ion.graphql import schema_sdl
from airflow_provider_ion.testing.emulator.domain import DOMAIN_KINDS
from airflow_provider_ion.testing.emulator.pagination import connection
from airflow_provider_ion.testing.emulator.profiles import Profile, get_profile
from airflow_provider_ion.testing.emulator.store import Store

DOMAIN_FIELDS: dict[str, tuple[str, str]] = {
    "runs": ("run", "runs"),
    "issues": ("issue", "issues"),
    "purchaseOrders": ("purchaseOrder", "purchaseOrders"),
    "partInventories": ("partInventory", "partInventories"),
    "runStepFields": ("runStepField", "runStepFields"),
}
"Domain table -> (single-object query and payload field, list query)."


@dataclass(frozen=True)
class RequestContext:
    """What resolvers see as ``info.context``: the store, and who is calling (the token's client id)."""

    store: Store
    client_id: str | None = None


def domain_sdl() -> str:
    """The emulator's own types (runs, issues, purchase orders, part inventories)."""
    return resources.files(__package__).joinpath("domain.graphql").read_text(encoding="utf-8")


def build_emulator_schema(profile: str | Profile | None = None) -> GraphQLSchema:
    """The schema of ``profile`` (default: ION as published), built once per process, with resolvers."""
    return _build(get_profile(profile))


@cache
def _build(profile: Profile) -> GraphQLSchema:
    schema = build_schema(profile.sdl(schema_sdl(), domain_sdl()))
    for (type_name, field_name), resolver in _resolvers().items():
        owner = schema.get_type(type_name)
        assert isinstance(owner, GraphQLObjectType), type_name
        if field_name in owner.fields:  # a profile may lack a field (e.g. headers as mutations)
            owner.fields[field_name].resolve = resolver
    return schema


def _store(info: Any) -> Store:
    return info.context.store


def _single(table: str) -> Any:
    def resolve(_source: Any, info: Any, id: str) -> dict[str, Any] | None:
        return _store(info).get(table, id)

    return resolve


def _listing(table: str) -> Any:
    def resolve(
        _source: Any,
        info: Any,
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
        filters: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        items = _store(info).list(table, filters)
        return connection(items, first=first, after=after, last=last, before=before)

    return resolve


def _children(table: str, foreign_key: str) -> Any:
    """Objects of ``table`` whose ``foreign_key`` names the source object."""

    def resolve(source: dict[str, Any], info: Any) -> list[dict[str, Any]]:
        return _store(info).list(table, {foreign_key: {"eq": source["id"]}})

    return resolve


def _parent(table: str, foreign_key: str) -> Any:
    """The object of ``table`` that the source's ``foreign_key`` names (None when unset or gone)."""

    def resolve(source: dict[str, Any], info: Any) -> dict[str, Any] | None:
        ref = source.get(foreign_key)
        return _store(info).get(table, ref) if ref is not None else None

    return resolve


def _subscription_events(source: dict[str, Any], info: Any) -> list[dict[str, Any]]:
    """The manual selects ``events { id status }`` as a plain list."""
    return _store(info).list("events", {"subscriptionId": {"eq": source["id"]}})


def _created_by(source: dict[str, Any], info: Any) -> dict[str, Any] | None:
    """An object, as the manual selects it (the store keeps the creating client id)."""
    who = source.get("createdBy")
    if who is None:
        return None
    if str(info.schema.get_type("User").fields["id"].type) == "Int!":  # the int-ids profile
        return {"id": zlib.crc32(str(who).encode()) & 0x7FFFFFFF, "email": None}
    return {"id": who, "email": None}


def _mutation(action: str, table: str, payload_field: str) -> Any:
    def resolve(_source: Any, info: Any, input: dict[str, Any]) -> dict[str, Any]:
        store = _store(info)
        if action == "create":
            return {payload_field: store.create_object(table, input)}
        if action == "update":
            return {payload_field: store.update_object(table, input)}
        return {"id": store.delete_object(table, input)["id"]}

    return resolve


def _resolvers() -> dict[tuple[str, str], Any]:
    resolvers: dict[tuple[str, str], Any] = {
        ("Query", "webhookReceiver"): _single("receivers"),
        ("Query", "webhookReceivers"): _listing("receivers"),
        ("Query", "webhookSubscription"): _single("subscriptions"),
        ("Query", "webhookSubscriptions"): _listing("subscriptions"),
        ("Query", "webhookEvent"): _single("events"),
        ("Query", "webhookEvents"): _listing("events"),
        ("Mutation", "createWebhookReceiver"): lambda _s, info, input: {
            "webhookReceiver": _store(info).create_receiver(input)
        },
        ("Mutation", "updateWebhookReceiver"): lambda _s, info, input: {
            "webhookReceiver": _store(info).update_receiver(input)
        },
        ("Mutation", "createWebhookSubscription"): lambda _s, info, input: {
            "webhookSubscription": _store(info).create_subscription(input, created_by=info.context.client_id)
        },
        ("Mutation", "updateWebhookSubscription"): lambda _s, info, input: {
            "webhookSubscription": _store(info).update_subscription(input)
        },
        ("Mutation", "deleteWebhookReceiver"): lambda _s, info, input: _store(info).delete_webhook("receivers", input),
        ("Mutation", "deleteWebhookSubscription"): lambda _s, info, input: _store(info).delete_webhook(
            "subscriptions", input
        ),
        ("Mutation", "addHeaderToWebhookReceiver"): lambda _s, info, input: {
            "webhookReceiver": _store(info).add_header(input)
        },
        ("Mutation", "removeHeaderFromWebhookReceiver"): lambda _s, info, input: {
            "webhookReceiver": _store(info).remove_header(input)
        },
        ("WebhookReceiver", "subscriptions"): _children("subscriptions", "receiverId"),
        ("WebhookSubscription", "receiver"): _parent("receivers", "receiverId"),
        ("WebhookSubscription", "events"): _subscription_events,
        ("WebhookSubscription", "createdBy"): _created_by,
        ("Run", "issues"): _children("issues", "runId"),
        ("Issue", "run"): _parent("runs", "runId"),
        ("PartInventory", "purchaseOrder"): _parent("purchaseOrders", "purchaseOrderId"),
        ("RunStepField", "run"): _parent("runs", "runId"),
    }
    for table, (single, plural) in DOMAIN_FIELDS.items():
        type_name = DOMAIN_KINDS[table].type_name
        resolvers[("Query", single)] = _single(table)
        resolvers[("Query", plural)] = _listing(table)
        for action in ("create", "update", "delete"):
            resolvers[("Mutation", f"{action}{type_name}")] = _mutation(action, table, single)
    return resolvers
