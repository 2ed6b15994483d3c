"""per_event=True needs partitioned assets (Airflow 3.3): on an older release the trigger refuses at parse
time with a message that says what to do, instead of never starting a run. CI runs this on both releases."""

from __future__ import annotations

import airflow
import airflow.sdk
import pytest

from airflow_provider_ion.triggers.webhook import IonWebhookTrigger

PARTITIONS = hasattr(airflow.sdk, "PartitionedAssetTimetable")


@pytest.mark.skipif(not PARTITIONS, reason="Airflow with partitioned assets (3.3+)")
def test_per_event_round_trips_where_partitioned_assets_exist() -> None:
    classpath, kwargs = IonWebhookTrigger(resource="RUNS", action="CREATE", per_event=True).serialize()
    assert kwargs["per_event"] is True
    assert IonWebhookTrigger(**kwargs).serialize() == (classpath, kwargs)


@pytest.mark.skipif(PARTITIONS, reason="Airflow without partitioned assets (before 3.3)")
def test_per_event_is_refused_with_what_to_do_before_airflow_3_3() -> None:
    with pytest.raises(ValueError, match=r"needs Airflow 3\.3 or later") as refused:
        IonWebhookTrigger(resource="RUNS", action="CREATE", per_event=True)
    assert f"this is Airflow {airflow.__version__}" in str(refused.value)
    assert "drop per_event" in str(refused.value)
    IonWebhookTrigger(resource="RUNS", action="CREATE")  # the default mode works on this release
