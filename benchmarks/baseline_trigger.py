"""The baseline event trigger for benchmark 2: a trivial ``BaseEventTrigger`` fired by lines appended to a file.

It polls the file's line count every ``poll_interval`` seconds (the same interval as the ION trigger) and
yields one ``TriggerEvent`` per new line (``{"line": <text>, "n": <line number>}``). No inbox, no cursor,
no shared reader: the least an ``AssetWatcher`` trigger can do, so the difference to the ION trigger is
what our path costs on top of Airflow's own event-to-task machinery.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from airflow.triggers.base import BaseEventTrigger, TriggerEvent


class FileLineTrigger(BaseEventTrigger):
    """Fires once per line appended to ``path`` (counting from line ``start``)."""

    def __init__(self, path: str, poll_interval: float = 0.2, start: int = 0) -> None:
        super().__init__()
        self.path, self.poll_interval, self.start = path, float(poll_interval), int(start)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return f"{type(self).__module__}.{type(self).__qualname__}", {
            "path": self.path,
            "poll_interval": self.poll_interval,
            "start": self.start,
        }

    def _lines(self) -> list[str]:
        try:
            return Path(self.path).read_text().splitlines()
        except FileNotFoundError:
            return []

    async def run(self) -> AsyncIterator[TriggerEvent]:
        seen = self.start
        while True:
            lines = self._lines()
            for n in range(seen, len(lines)):
                yield TriggerEvent({"line": lines[n], "n": n + 1})
            seen = max(seen, len(lines))
            await asyncio.sleep(self.poll_interval)
