"""Helpers of ``run_bench.py`` that inspect the input, the machine and the lake a pipeline wrote."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
from pathlib import Path
from typing import Any


def scan_input(path: Path) -> tuple[str, int]:
    """SHA-256 and RECORD count of the input; the read also warms the page cache for every pipeline."""
    digest, records, tail = hashlib.sha256(), 0, b"\n"
    pattern = b'\n{"type":"RECORD"'
    with path.open("rb") as f:
        while block := f.read(16 << 20):
            digest.update(block)
            records += (tail + block).count(pattern)
            tail = block[-(len(pattern) - 1) :]
    return digest.hexdigest(), records


def final_state(path: Path) -> Any:
    """The value of the last STATE message in a Singer file (read from the end)."""
    with path.open("rb") as f:
        f.seek(max(0, f.seek(0, os.SEEK_END) - (1 << 20)))
        for line in reversed(f.read().splitlines()):
            if line.startswith(b'{"type":"STATE"'):
                return json.loads(line)["value"]
    return None


def machine_busy_s() -> float | None:
    """CPU seconds all processors have been busy since boot (Linux ``/proc/stat``), else ``None``."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return None
    # user nice system idle iowait irq softirq steal (guest time is already counted in user)
    return (sum(fields[:8]) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


def rows_in_lake(catalog_db: Path) -> int | None:
    """Total rows of the current snapshots of all tables in a SQLite Iceberg catalog."""
    if not catalog_db.exists():
        return None
    from pyiceberg.table import StaticTable  # noqa: PLC0415 - only needed after the timed run

    with sqlite3.connect(catalog_db) as db:
        locations = [row[0] for row in db.execute("SELECT metadata_location FROM iceberg_tables")]
    total = 0
    for location in locations:
        snapshot = StaticTable.from_metadata(location).current_snapshot()
        if snapshot is not None and snapshot.summary is not None:
            total += int(snapshot.summary.additional_properties.get("total-records", 0))
    return total
