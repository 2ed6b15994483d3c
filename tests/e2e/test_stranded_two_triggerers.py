"""The stranded-event sweep with two triggerers (PostgreSQL metadata DB and PostgreSQL inbox).

Airflow assigns each trigger to one live triggerer (``models/trigger.py`` ``Trigger.assign_unassigned``:
only triggers without a live ``triggerer_id`` are taken), so each ``IonWebhookTrigger``, and the sweep that
runs inside it, runs on one of the two. The same bursts as ``test_stranded_events`` (20 events 50 ms apart,
then silence; a quick DAG and a ``max_active_runs=1`` DAG whose task takes 3 s; each DAG's trigger on its
own triggerer, ``[triggerer] capacity = 1``), with the same limits:
every accepted event_id in some DAG run's triggering asset events within 10 s of the burst's end, at most
one extra run (only repeats), and every asset event of one event_id carries the same ION body.

Run with -s for the figures.
"""

from __future__ import annotations

import time

import pytest

from airflow_provider_ion.webhooks.inbox import Inbox
from tests.e2e.ion_events_helpers import env_for, post_event, wait_for_consumer
from tests.e2e.test_ion_events_postgres import TwoTriggererStack, query_db, start_second_triggerer
from tests.e2e.test_stranded_events import BURST_DAGS, CASES, burst_and_check, consumer_for, pg_database

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    home = tmp_path_factory.mktemp("airflow-stranded-2t")
    dags = home / "dags"
    dags.mkdir()
    (dags / "ion_burst.py").write_text(BURST_DAGS)
    db_url, drop = pg_database()
    env = env_for(db_url)  # the inbox in the same database, its own tables
    env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC"] = db_url
    # One trigger per triggerer: the first takes one DAG's trigger, the second the other's
    # (``Trigger.assign_unassigned`` stops at ``[triggerer] capacity``).
    env["AIRFLOW__TRIGGERER__CAPACITY"] = "1"
    try:
        with TwoTriggererStack(home, dags_folder=dags, env=env, db_url=db_url) as stack:
            stack.db_url = db_url  # type: ignore[attr-defined]
            start_second_triggerer(stack, db_url)
            inbox = Inbox(db_url)
            for dag_id, action in CASES.items():
                stack.wait_for_dag(dag_id)
                wait_for_consumer(inbox, consumer_for(action))
            # Warm-up: one event per DAG through to a run, so the receiver's and the triggerers' first-use costs
            # do not stretch the first burst (measured: 9 s pauses inside it without this).
            for action in CASES.values():
                post_event(stack.base_url, "RUNS", action, {"warm_up": True})
            deadline = time.monotonic() + 60
            while not all(stack.dag_runs(dag_id) for dag_id in CASES) and time.monotonic() < deadline:
                time.sleep(0.5)
            yield stack
            inbox.close()
    finally:
        drop()


def _holders(stack) -> dict[int, str | None]:
    rows = query_db(stack.db_url, "SELECT id, triggerer_id FROM trigger WHERE classpath LIKE %s", "%IonWebhookTrigger")
    return {trigger_id: stack.jobs.get(job_id) for trigger_id, job_id in rows}


@pytest.mark.parametrize("dag_id", list(CASES))
def test_a_burst_with_two_triggerers_reaches_dag_runs_within_10s(stack, dag_id) -> None:
    before = _holders(stack)
    assert set(before.values()) == {"triggerer", "triggerer-2"}, f"one trigger per triggerer expected: {before}"
    watcher = burst_and_check(stack, dag_id, f"postgres 2 triggerers {sorted(before.items())}")
    after = _holders(stack)
    print(f"trigger -> triggerer before {before}, after {after}")
    assert after == before, "a trigger moved to the other triggerer during the burst"
    differing = {e: bodies for e, bodies in watcher.bodies.items() if len(bodies) > 1}
    assert not differing, f"event_ids handled with different data: {differing}"
