"""Stand-ins for the factory systems the example pipelines talk to: environment monitoring, QA, ERP.

Each "system" is an append-only JSON-lines file in one folder (``$ION_DEMO_OUTBOX``, default
``$AIRFLOW_HOME/ion_demo_outbox``), so the demo and the tests can see exactly what each pipeline did.
Writes are idempotent by ION ``event_id``: a redelivered event (ION delivers at least once) is recorded
once, which is what a real integration must do too.

The pipelines import this module inside their tasks. It never names the scheduler's file marker words,
so the parser's safe mode skips it as a pipeline file.
"""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path
from typing import Any


def outbox() -> Path:
    folder = os.environ.get("ION_DEMO_OUTBOX") or os.path.join(
        os.environ.get("AIRFLOW_HOME") or os.path.expanduser("~/airflow"), "ion_demo_outbox"
    )
    path = Path(folder)
    path.mkdir(parents=True, exist_ok=True)
    return path


def record_once(system: str, event_id: str | int, record: dict[str, Any]) -> bool:
    """Append ``record`` to ``<outbox>/<system>.jsonl`` unless ``event_id`` is there; True if written."""
    path = outbox() / f"{system}.jsonl"
    with open(path, "a+", encoding="utf-8") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # several tasks may write at once
        handle.seek(0)
        seen = {json.loads(line).get("event_id") for line in handle if line.strip()}
        if str(event_id) in seen:
            return False
        handle.write(json.dumps({"event_id": str(event_id), **record}) + "\n")
        return True


def read(system: str) -> list[dict[str, Any]]:
    path = outbox() / f"{system}.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
