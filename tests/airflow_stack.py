"""The end-to-end tests' Airflow: the package's local Airflow launcher (see its docstring)."""

from airflow_provider_ion.local_airflow import COMPONENTS, AirflowStack, free_port, stop_group

__all__ = ["COMPONENTS", "AirflowStack", "free_port", "stop_group"]
