"""The ION domain objects the emulator keeps so that their changes can fire webhooks.

Each kind maps one store table to a GraphQL type (emulator/domain.graphql) and to the ``ResourceEnum``
value a subscription names. "Part received" is modelled as a part inventory (``PART_INVENTORIES``):
receiving a part in ION creates inventory, and the newer ION docs list ``PART_INVENTORY`` among the
common webhook resources, whereas receipts are not documented as a resource. A value entered in a run
step's field is a ``RunStepField`` (``RUN_STEPS``; an assumption, see its definition).

Adding a kind is data only: a :class:`DomainKind` here, its types in domain.graphql, a line in
:data:`airflow_provider_ion.testing.emulator.schema.DOMAIN_FIELDS`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class DomainKind:
    """How the store validates and defaults one kind of domain object."""

    table: str
    type_name: str
    resource: str
    writable: tuple[str, ...]
    defaults: Mapping[str, Any] = field(default_factory=dict)
    required: tuple[str, ...] = ()
    id_fields: tuple[str, ...] = ()
    "Fields holding ION ids: stored as integers, like every id."
    references: Mapping[str, str] = field(default_factory=dict)
    "id field -> table it must name an existing object of (when set)."
    non_negative: tuple[str, ...] = ()


DOMAIN_KINDS: dict[str, DomainKind] = {
    kind.table: kind
    for kind in (
        DomainKind(
            table="runs",
            type_name="Run",
            resource="RUNS",
            writable=("title", "status", "workcenter", "partId"),
            defaults={"status": "TODO", "workcenter": None, "partId": None},
            required=("title",),
            id_fields=("partId",),
        ),
        DomainKind(
            table="issues",
            type_name="Issue",
            resource="ISSUES",
            writable=("title", "description", "status", "runId"),
            defaults={"status": "OPEN", "description": None, "runId": None},
            required=("title",),
            id_fields=("runId",),
            references={"runId": "runs"},
        ),
        DomainKind(
            table="purchaseOrders",
            type_name="PurchaseOrder",
            resource="PURCHASE_ORDERS",
            writable=("supplier", "reference", "status", "totalCost"),
            defaults={"status": "DRAFT", "reference": None, "totalCost": None},
            required=("supplier",),
            non_negative=("totalCost",),
        ),
        DomainKind(
            table="partInventories",
            type_name="PartInventory",
            resource="PART_INVENTORIES",
            writable=("partId", "quantity", "serialNumber", "lotNumber", "status", "purchaseOrderId"),
            defaults={
                "quantity": 1.0,
                "serialNumber": None,
                "lotNumber": None,
                "status": "AVAILABLE",
                "purchaseOrderId": None,
            },
            required=("partId",),
            id_fields=("partId", "purchaseOrderId"),
            references={"purchaseOrderId": "purchaseOrders"},
            non_negative=("quantity",),
        ),
        # "Data entered in a field" (the manual's asynchronous-validation use case). ION publishes no
        # field-level webhook resource; the emulator assumes the value belongs to a run step, so a field
        # is a RUN_STEPS object and entering its value is RUN_STEPS/UPDATE (an assumption, not ION's word).
        DomainKind(
            table="runStepFields",
            type_name="RunStepField",
            resource="RUN_STEPS",
            writable=("runId", "name", "value"),
            defaults={"value": None},
            required=("runId", "name"),
            id_fields=("runId",),
            references={"runId": "runs"},
        ),
    )
}
