"""The loader's run report ($INGEST_RUN_REPORT): what the platform runner reads after a run, written
however the run ended."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from conftest import Lake

TARGET = Path(sys.executable).parent / "target-iceberg-nessie"
LINES = [
    {
        "type": "SCHEMA",
        "stream": "items",
        "key_properties": ["id"],
        "schema": {"properties": {"id": {"type": "integer"}}},
    },
    {"type": "RECORD", "stream": "items", "record": {"id": 1}},
    {"type": "RECORD", "stream": "items", "record": {"id": 2}},
    {"type": "STATE", "value": {"n": 2}},
]


def run(
    embedded_lake: Lake, tmp_path: Path, lines: list[str]
) -> tuple[subprocess.CompletedProcess[str], dict]:
    config = tmp_path / "config.json"
    config.write_text(json.dumps(embedded_lake.config()), encoding="utf-8")
    report = tmp_path / "report.json"
    done = subprocess.run(
        [str(TARGET), "--config", str(config)],
        input="\n".join(lines) + "\n",
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "INGEST_RUN_REPORT": str(report)},
        check=False,
    )
    return done, json.loads(report.read_text(encoding="utf-8"))


def test_a_successful_run_reports_rows_files_snapshots_and_commit(
    embedded_lake: Lake, tmp_path: Path
) -> None:
    done, report = run(embedded_lake, tmp_path, [json.dumps(m) for m in LINES])
    assert done.returncode == 0, done.stderr[-2000:]
    assert report["status"] == "success"
    assert report["exit_code"] == 0
    assert report["commits"] == 1
    assert report["last_commit_id"] == "run-1:1"
    items = report["streams"]["items"]
    assert items["table"] == "acme.raw.items"
    assert (items["records"], items["rows_committed"], items["rejected"], items["files"]) == (2, 2, 0, 1)
    assert items["bytes"] > 0
    snapshot = embedded_lake.catalog().load_table(("acme", "raw", "items")).metadata.current_snapshot()
    assert items["snapshots"] == [snapshot.snapshot_id]


def test_a_failed_run_reports_its_error_class_and_exit_code(embedded_lake: Lake, tmp_path: Path) -> None:
    lines = [json.dumps(m) for m in LINES[:2]] + [
        '{"type": "RECORD", "stream": "items", "record": {"id": "x"}}'
    ]
    done, report = run(embedded_lake, tmp_path, lines)
    assert done.returncode == 2
    assert report["status"] == "failed"
    assert report["exit_code"] == 2
    assert report["retryable"] is False
    assert report["error"] == "BadInputError"
    assert "line 3" in report["message"]
    assert report["commits"] == 0
