"""Relay cursor connections over stored objects (``first/after/last/before``, ``pageInfo``, ``totalCount``).

Cursors are opaque base64 text that encodes the object's id, not its offset, so paging stays stable
while objects are created during a walk (the walk sees each object at most once). Like real APIs, a
page is capped: asking for more than :data:`MAX_PAGE_SIZE` is an error rather than a silent truncation,
so a client that forgets to paginate finds out in tests.
"""

from __future__ import annotations

import base64
import binascii
from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from typing import Any

from airflow_provider_ion.testing.emulator.errors import BadUserInput

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 500
_PREFIX = "ion-emulator:"


def encode_cursor(object_id: int) -> str:
    return base64.urlsafe_b64encode(f"{_PREFIX}{object_id}".encode()).decode()


def decode_cursor(cursor: str) -> int:
    try:
        text = base64.urlsafe_b64decode(cursor.encode()).decode()
        if not text.startswith(_PREFIX):
            raise ValueError(cursor)
        return int(text.removeprefix(_PREFIX))
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise BadUserInput(f"Invalid cursor {cursor!r}") from None


def connection(
    items: Sequence[dict[str, Any]],
    *,
    first: int | None = None,
    after: str | None = None,
    last: int | None = None,
    before: str | None = None,
) -> dict[str, Any]:
    """A Relay connection over ``items`` (sorted by integer ``id`` ascending).

    With neither ``first`` nor ``last`` the page holds :data:`DEFAULT_PAGE_SIZE` items. ``hasNextPage`` /
    ``hasPreviousPage`` say whether matching items exist beyond the page in either direction.
    """
    for name, size in (("first", first), ("last", last)):
        if size is not None and not 0 <= size <= MAX_PAGE_SIZE:
            raise BadUserInput(f"{name} must be between 0 and {MAX_PAGE_SIZE}, got {size}")
    if first is None and last is None:
        first = DEFAULT_PAGE_SIZE
    start, stop = 0, len(items)
    if after is not None:
        start = bisect_right(items, decode_cursor(after), key=_id)
    if before is not None:
        stop = max(start, bisect_left(items, decode_cursor(before), key=_id))
    if first is not None:
        stop = min(stop, start + first)
    if last is not None:
        start = max(start, stop - last)
    page = items[start:stop]
    edges = [{"node": item, "cursor": encode_cursor(item["id"])} for item in page]
    return {
        "edges": edges,
        "pageInfo": {
            "hasNextPage": stop < len(items),
            "hasPreviousPage": start > 0,
            "startCursor": edges[0]["cursor"] if edges else None,
            "endCursor": edges[-1]["cursor"] if edges else None,
            "totalCount": len(items),
            "count": len(edges),
        },
        # Also on the connection, for a profile whose schema puts it there (ignored when not selected).
        "totalCount": len(items),
    }


def _id(item: dict[str, Any]) -> int:
    return item["id"]
