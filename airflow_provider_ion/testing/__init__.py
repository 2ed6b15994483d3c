"""Test and demo tooling that ships with the provider: the ION emulator, a local Airflow launcher, the demo,
``airflow-ion dev`` (:mod:`.dev`), and the pytest plugin for users' DAG tests (:mod:`.pytest_plugin`, on
:mod:`.dag_test`).

Nothing in the provider's production modules (hooks, operators, triggers, sensors, the receiver) imports
from here; these modules exist so that the demo, our own tests and users' DAG tests can run without an ION
tenant. They are installed with the wheel so a user's test suite can ``from airflow_provider_ion.testing
import ...``.
"""

__all__: list[str] = []  # import from the modules: emulator, local_airflow, demo
