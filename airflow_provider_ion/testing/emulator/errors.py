"""Errors the emulator's store raises, each carrying the ``extensions.code`` ION-style clients see.

The store knows nothing about GraphQL or HTTP; the GraphQL layer turns these into ``errors[]`` entries
(and a stale etag into HTTP 409, see :mod:`.executor`).
"""

from __future__ import annotations


class EmulatorError(Exception):
    """Base class: ``code`` becomes ``extensions.code`` in the GraphQL error."""

    code = "INTERNAL_SERVER_ERROR"


class NotFound(EmulatorError):
    """An id names no object of that type."""

    code = "NOT_FOUND"

    def __init__(self, type_name: str, object_id: object) -> None:
        super().__init__(f"{type_name} {object_id} not found")
        self.type_name = type_name
        self.object_id = object_id


class BadUserInput(EmulatorError):
    """The input is well-typed but not acceptable (empty name, bad URL, page too large, ...)."""

    code = "BAD_USER_INPUT"


class ConcurrencyConflict(EmulatorError):
    """An update or delete carried an etag that is no longer the object's current ``_etag``."""

    code = "CONCURRENCY_CONFLICT"

    def __init__(self, type_name: str, object_id: object) -> None:
        super().__init__(f"{type_name} {object_id} was changed since it was read (stale etag); read it again and retry")
        self.type_name = type_name
        self.object_id = object_id
