"""Apache Airflow provider for ION, First Resonance's manufacturing execution platform.

Importing this package is cheap on purpose: DAG files import our operators at parse time, so nothing
here pulls in gql, httpx, SQLAlchemy engines or the network.
"""

__version__ = "0.1.0"
