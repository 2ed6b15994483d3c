"""Write contract (emulator always; a real tenant only with ION_CONTRACT_WRITE=1): create a uniquely
named, inactive receiver and subscription, update, see a stale etag refused, disable, clean up, also
when a step fails."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from airflow_provider_ion.exceptions import IonConcurrencyError, IonError
from airflow_provider_ion.hooks.ion import IonHook
from airflow_provider_ion.hooks.schema import live_schema
from airflow_provider_ion.webhook_state import set_subscription_active, validate_enum


@pytest.fixture
def created(contract_target) -> Iterator[tuple[IonHook, dict[str, list]]]:
    if not contract_target.writes:
        pytest.skip("writes to a real ION need ION_CONTRACT_WRITE=1")
    made: dict[str, list] = {"receivers": [], "subscriptions": []}
    hook = IonHook(contract_target.conn_id)
    try:
        yield hook, made
    finally:
        problems = _clean_up(hook, made)
        hook.close()
        assert problems == [], "clean-up left objects in ION: " + "; ".join(problems)


def _delete(hook: IonHook, kind: str, obj_id: object) -> bool:
    """Delete with the tenant's delete mutation when the schema has one; False when it has none."""
    live = live_schema(hook)
    field = f"deleteWebhook{kind}"
    if live is None or not live.has_mutation(field):
        return False
    mutation = live.schema.mutation_type.fields[field]  # type: ignore[union-attr]
    input_type = str(mutation.args["input"].type)
    current = hook.get_receiver(obj_id) if kind == "Receiver" else hook.get_subscription(obj_id)
    if current is None:
        return True
    text = f"mutation Delete($input: {input_type}) {{ {field}(input: $input) {{ __typename }} }}"
    hook.execute(text, {"input": {"id": current["id"], "etag": current["_etag"]}})
    return True


def _clean_up(hook: IonHook, made: dict[str, list]) -> list[str]:
    problems: list[str] = []
    for kind, table in (("Subscription", "subscriptions"), ("Receiver", "receivers")):
        for obj_id in made[table]:
            try:
                if not _delete(hook, kind, obj_id):  # no delete mutation: leave it disabled
                    if kind == "Subscription":
                        set_subscription_active(hook, obj_id, False)
                    else:
                        current = hook.get_receiver(obj_id)
                        if current is not None and current["active"]:
                            hook.update_receiver(obj_id, current["_etag"], active=False)
            except IonError as exc:
                problems.append(f"{kind} {obj_id}: {exc}")
    return problems


def test_receiver_and_subscription_lifecycle(created) -> None:
    hook, made = created
    name = f"airflow-ion-contract-{uuid.uuid4().hex[:10]}"
    receiver = hook.create_receiver(
        name, f"https://example.invalid/airflow-ion-contract/{name}", description="contract test", active=False
    )
    made["receivers"].append(receiver["id"])
    assert receiver["name"] == name and receiver["active"] is False
    resource = validate_enum(hook, "ResourceEnum", "RUNS", "resource")
    subscription = hook.create_subscription(receiver["id"], resource, "CREATE", active=False)
    made["subscriptions"].append(subscription["id"])
    assert [s["id"] for s in hook.list_subscriptions(receiver["id"])] == [subscription["id"]]

    updated = hook.update_receiver(receiver["id"], receiver["_etag"], description="contract test, updated")
    assert updated["description"] == "contract test, updated"
    with pytest.raises(IonConcurrencyError):  # the etag read before the update is stale now
        hook.update_receiver(receiver["id"], receiver["_etag"], description="must not apply")
    assert hook.get_receiver(receiver["id"])["description"] == "contract test, updated"

    enabled = set_subscription_active(hook, subscription["id"], True)
    disabled = set_subscription_active(hook, subscription["id"], False)
    assert (enabled.change, disabled.change) == ("enabled", "disabled")
    assert [r["id"] for r in hook.find_receivers_by_name(name)] == [receiver["id"]]
