"""README's table of delivery bodies is what the emulator really sends: generated here from real deliveries.

One object per use case is made with ``airflow-ion emulator``, the emulator POSTs each webhook to a
capturing HTTP server, and the bodies (ids, etags and times made stable) are rendered into the README
section between the ``delivery-bodies`` markers. The test fails when the README differs; run it with
``UPDATE_README=1`` to rewrite that section.
"""

from __future__ import annotations

import json
import os
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from airflow_provider_ion.cli import main

README = Path(__file__).resolve().parents[2] / "README.md"
START, END = "<!-- delivery-bodies:start -->", "<!-- delivery-bodies:end -->"

#: (use case, CLI arguments after `airflow-ion emulator`), in order; "{run}" is the run's id.
USE_CASES = [
    ("A run is created", ["create", "run", "--title", "Run 1", "--workcenter", "WC-1"]),
    ("A run starts at a workcenter", ["update", "run", "{run}", "--status", "IN_PROGRESS"]),
    ("A run has a problem (issue on a run)", ["create", "issue", "--title", "Torque out of spec", "--run-id", "{run}"]),
    ("A purchase order is placed", ["create", "purchase-order", "--supplier", "Acme", "--status", "PLACED"]),
    ("A part is received", ["create", "part-inventory", "--part-id", "7", "--purchase-order-id", "1"]),
    ("A run step gets a data field", ["create", "run-step-field", "--run-id", "{run}", "--name", "torque"]),
    ("A value is entered in a field", ["update", "run-step-field", "1", "--value", "12.5"]),
    ("An issue is deleted", ["delete", "issue", "1"]),
]  # fmt: skip


class _Capture(BaseHTTPRequestHandler):
    bodies: list[bytes] = []

    def do_POST(self) -> None:
        self.bodies.append(self.rfile.read(int(self.headers["content-length"])))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def _stable(body: dict[str, Any]) -> dict[str, Any]:
    text = json.dumps(body)
    text = re.sub(r'"\d{4}-\d\d-\d\dT[\d:.]+\+00:00"', '"2026-01-01T08:00:00+00:00"', text)
    text = re.sub(r'"_etag": "[0-9a-f]+"', '"_etag": "3f2a..."', text)
    # The emulator takes event ids from the clock (a restart never reuses one): one stable example id.
    text = re.sub(r'"event_id": \d+', '"event_id": 1796196777512347', text)
    return json.loads(text)


def render(rows: list[tuple[str, str, dict[str, Any]]]) -> str:
    lines = [
        "| use case | command (`airflow-ion emulator ...`) | webhook | `data` (the object) |",
        "|---|---|---|---|",
    ]
    for use_case, command, body in rows:
        data = ", ".join(f"`{k}`" for k in body["data"])
        lines.append(f"| {use_case} | `{command}` | {body['resource']}/{body['action']} | {data} |")
    example = next(body for use_case, _, body in rows if use_case.startswith("A run has a problem"))
    lines += ["", "The whole body of the issue above, as the emulator sends it (its `data` is the object):", ""]
    lines += ["```json", json.dumps(example, indent=2), "```"]
    return "\n".join(lines)


def test_readme_lists_the_delivery_bodies_the_emulator_sends(emulator, capsys) -> None:
    _Capture.bodies = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Capture)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        hook = f"http://127.0.0.1:{server.server_address[1]}/hook"
        receiver = emulator.store.create_receiver({"name": "capture", "webhookUri": hook})
        for kind in ("RUNS", "ISSUES", "PURCHASE_ORDERS", "PART_INVENTORIES", "RUN_STEPS"):
            for action in ("CREATE", "UPDATE", "DELETE"):
                emulator.store.create_subscription({"receiverId": receiver["id"], "resource": kind, "action": action})
        rows = []
        for use_case, args in USE_CASES:
            assert main(["emulator", *[a.replace("{run}", "1") for a in args], "--url", emulator.base_url]) == 0
            capsys.readouterr()
            assert emulator.wait_for_deliveries(10)
            (raw,) = _Capture.bodies  # one webhook per change
            _Capture.bodies = []
            rows.append((use_case, " ".join(a if " " not in a else f'"{a}"' for a in args).replace("{run}", "1"),
                         _stable(json.loads(raw))))  # fmt: skip
    finally:
        server.shutdown()
        server.server_close()
    assert list(rows[2][2]) == ["event_id", "subscription_id", "resource", "action", "data", "created_at"]
    table = f"{START}\n{render(rows)}\n{END}"
    text = README.read_text()
    current = text[text.index(START) : text.index(END) + len(END)] if START in text else None
    if os.environ.get("UPDATE_README") and current is not None:
        README.write_text(text.replace(current, table))
        return
    assert current == table, "README delivery-body table is stale: run this test with UPDATE_README=1"
