"""The ION triggers (``triggers/webhook.py``), the inbox reader they share and their filters (``matching``).

No re-exports on purpose: import from the modules (the triggerer imports triggers by their path).
"""

__all__: list[str] = []
