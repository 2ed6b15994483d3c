"""The ION sensor: :class:`~airflow_provider_ion.sensors.webhook.IonWebhookSensor` (``sensors/webhook.py``).

No re-exports on purpose: import from the module, so this package stays free to grow without
widening what ``import airflow_provider_ion.sensors`` loads.
"""

__all__: list[str] = []
