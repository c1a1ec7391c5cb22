"""Write modes: upsert by key (copy-on-write, one snapshot per checkpoint) and overwrite (full refresh),
on both catalogs; rows read back through pyiceberg AND DuckDB."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

import pytest
from conftest import Lake, read_duckdb, read_pyiceberg, run_target

from target_iceberg_nessie import properties as props

SCHEMA = {
    "type": "SCHEMA",
    "stream": "customers",
    "key_properties": ["id"],
    "schema": {
        "type": "object",
        "properties": {
            "id": {"type": "integer"},
            "name": {"type": ["string", "null"]},
            "updated_at": {"type": ["string", "null"], "format": "date-time"},
        },
    },
}
TABLE = "acme.raw.customers"


def singer(*batches: Iterable[Mapping[str, Any]], schema: Mapping[str, Any] = SCHEMA) -> str:
    """SCHEMA, then each batch of records followed by a STATE (one checkpoint per batch)."""
    lines = [json.dumps(schema)]
    for n, batch in enumerate(batches, start=1):
        lines += [json.dumps({"type": "RECORD", "stream": schema["stream"], "record": r}) for r in batch]
        lines.append(json.dumps({"type": "STATE", "value": {"batch": n}}))
    return "\n".join(lines) + "\n"


def rec(n: int, name: str) -> dict[str, Any]:
    return {"id": n, "name": name, "updated_at": f"2026-01-{n % 28 + 1:02d}T00:00:00Z"}


def rows_by_id(lake: Lake) -> dict[int, str]:
    found = {}
    for reader in (read_pyiceberg, read_duckdb):
        rows = reader(lake, TABLE)
        ids = [r["id"] for r in rows]
        assert len(ids) == len(set(ids)), f"{reader.__name__}: a key appears twice: {sorted(ids)}"
        found[reader.__name__] = {r["id"]: r["name"] for r in rows}
    assert found["read_pyiceberg"] == found["read_duckdb"]
    return found["read_pyiceberg"]


def data_files(lake: Lake) -> set[str]:
    table = lake.catalog().load_table(("acme", "raw", "customers"))
    return {task.file.file_path for task in table.scan().plan_files()}


def test_upsert_replaces_rows_by_key_across_checkpoints_and_runs(lake: Lake) -> None:
    first = singer([rec(n, f"v1-{n}") for n in range(1, 101)], [rec(n, f"v2-{n}") for n in range(90, 111)])
    result = run_target(lake.config(write_mode="upsert"), first)
    assert result.error is None, result.error
    expected = {n: f"v1-{n}" for n in range(1, 90)} | {n: f"v2-{n}" for n in range(90, 111)}
    assert rows_by_id(lake) == expected

    # A second run re-sends a boundary row and updates others: still one row per key.
    second = singer([rec(110, "v2-110"), rec(5, "v3-5"), rec(200, "new-200")])
    result = run_target(lake.config(write_mode="upsert", run_id="run-2"), second)
    assert result.error is None, result.error
    expected |= {5: "v3-5", 200: "new-200"}
    assert rows_by_id(lake) == expected

    table = lake.catalog().load_table(("acme", "raw", "customers"))
    snapshots = table.metadata.snapshots
    assert len(snapshots) == 3, "one snapshot per checkpoint"
    assert [s.summary[props.RECORDS_LOADED] for s in snapshots] == ["100", "21", "3"]
    assert [s.summary[props.ROWS_REPLACED] for s in snapshots] == ["0", "11", "2"]
    assert snapshots[-1].summary.operation.value == "overwrite"


def test_upsert_keeps_the_last_record_of_a_key_within_one_checkpoint(lake: Lake) -> None:
    batch = [rec(1, "a"), rec(2, "b"), rec(1, "c"), rec(3, "d"), rec(2, "e"), rec(1, "f")]
    result = run_target(lake.config(write_mode="upsert"), singer(batch))
    assert result.error is None, result.error
    assert rows_by_id(lake) == {1: "f", 2: "e", 3: "d"}
    snapshot = lake.catalog().load_table(("acme", "raw", "customers")).metadata.current_snapshot()
    assert snapshot is not None
    assert snapshot.summary[props.RECORDS_LOADED] == "6"
    assert snapshot.summary["added-records"] == "3"


def test_upsert_leaves_files_without_a_matching_key_untouched(lake: Lake) -> None:
    batches = [[rec(n, "old") for n in range(k * 10, k * 10 + 10)] for k in range(5)]
    assert run_target(lake.config(write_mode="upsert"), singer(*batches)).error is None
    before = {
        t.file.file_path for t in lake.catalog().load_table(("acme", "raw", "customers")).scan().plan_files()
    }
    assert len(before) == 5
    result = run_target(lake.config(write_mode="upsert", run_id="run-2"), singer([rec(23, "new")]))
    assert result.error is None, result.error
    after = {
        t.file.file_path for t in lake.catalog().load_table(("acme", "raw", "customers")).scan().plan_files()
    }
    assert len(before - after) == 1, "only the file holding key 23 is replaced"
    assert len(after - before) == 2, "its other rows, rewritten, and the new record's file"
    assert rows_by_id(lake)[23] == "new"
    assert len(rows_by_id(lake)) == 50


def test_upsert_with_a_composite_key(lake: Lake) -> None:
    schema = {
        "type": "SCHEMA",
        "stream": "lines",
        "key_properties": ["order_id", "line"],
        "schema": {
            "type": "object",
            "properties": {
                "order_id": {"type": "string"},
                "line": {"type": "integer"},
                "qty": {"type": "integer"},
            },
        },
    }
    first = [{"order_id": o, "line": n, "qty": 1} for o in ("a", "b") for n in (1, 2)]
    second = [{"order_id": "a", "line": 2, "qty": 5}, {"order_id": "b", "line": 1, "qty": 7}]
    assert run_target(lake.config(write_mode="upsert"), singer(first, second, schema=schema)).error is None
    for reader in (read_pyiceberg, read_duckdb):
        got = sorted((r["order_id"], r["line"], r["qty"]) for r in reader(lake, "acme.raw.lines"))
        assert got == [("a", 1, 1), ("a", 2, 5), ("b", 1, 7), ("b", 2, 1)], reader.__name__


def test_upsert_without_a_key_is_refused_with_the_fix(lake: Lake) -> None:
    keyless = {**SCHEMA, "key_properties": []}
    result = run_target(lake.config(write_mode="upsert"), singer([rec(1, "a")], schema=keyless))
    assert result.error is not None
    message = str(result.error)
    assert "customers" in message
    assert "primaryKey" in message
    assert "write_mode 'append'" in message
    assert lake.catalog().load_table(("acme", "raw", "customers")) is None, "nothing committed"


def test_overwrite_replaces_the_table_once_per_run(lake: Lake) -> None:
    first = singer([rec(n, "r1") for n in range(1, 11)])
    assert run_target(lake.config(write_mode="overwrite"), first).error is None
    assert rows_by_id(lake) == dict.fromkeys(range(1, 11), "r1")
    # The next run's first checkpoint replaces everything; its second checkpoint appends.
    second = singer([rec(n, "r2") for n in range(1, 4)], [rec(n, "r2") for n in range(4, 6)])
    result = run_target(lake.config(write_mode="overwrite", run_id="run-2"), second)
    assert result.error is None, result.error
    assert rows_by_id(lake) == dict.fromkeys(range(1, 6), "r2")
    snapshots = lake.catalog().load_table(("acme", "raw", "customers")).metadata.snapshots
    assert [s.summary.operation.value for s in snapshots] == ["append", "overwrite", "append"]


def test_append_mode_keeps_every_record(lake: Lake) -> None:
    assert run_target(lake.config(), singer([rec(1, "a"), rec(1, "b")])).error is None
    assert sorted(r["name"] for r in read_pyiceberg(lake, TABLE)) == ["a", "b"]


def test_an_unknown_write_mode_is_refused_before_anything_runs(lake: Lake) -> None:
    from singer_sdk.exceptions import ConfigValidationError  # noqa: PLC0415

    with pytest.raises(ConfigValidationError) as raised:
        run_target(lake.config(write_mode="sideways"), singer([rec(1, "a")]))
    assert any("sideways" in e and "upsert" in e for e in raised.value.errors), raised.value.errors
    assert not lake.warehouse.exists(), "nothing was written"
