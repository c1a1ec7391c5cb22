"""The checkpoint protocol on both catalogs: atomic across tables, exactly once, bounded."""

from __future__ import annotations

import contextlib
import io
import json
import time
from collections.abc import Iterator

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import Lake, read_pyiceberg, run_target
from sqlalchemy.exc import OperationalError

from target_iceberg_nessie.catalogs.sql import EmbeddedCatalog
from target_iceberg_nessie.errors import RetriableError
from target_iceberg_nessie.target import TargetIcebergNessie


def schema(stream: str) -> str:
    return (
        json.dumps(
            {
                "type": "SCHEMA",
                "stream": stream,
                "schema": {"properties": {"id": {"type": "integer"}}},
                "key_properties": ["id"],
            }
        )
        + "\n"
    )


def record(stream: str, n: int) -> str:
    return json.dumps({"type": "RECORD", "stream": stream, "record": {"id": n}}) + "\n"


def state(n: int) -> str:
    return json.dumps({"type": "STATE", "value": {"n": n}}) + "\n"


def ids(lake: Lake, table: str) -> list[int]:
    return sorted(r["id"] for r in read_pyiceberg(lake, table))


def test_a_checkpoint_is_all_tables_or_none(embedded_lake: Lake, monkeypatch: pytest.MonkeyPatch) -> None:
    lake = embedded_lake  # fails the embedded catalog's SQL transaction half-way
    first = schema("a") + schema("b") + record("a", 1) + record("b", 1) + state(1)
    second = record("a", 2) + record("b", 2) + state(2)
    applied: list[str] = []
    original = EmbeddedCatalog._apply

    def failing_apply(self, session, change, location):  # type: ignore[no-untyped-def]
        applied.append(change.identifier[-1])
        if len(applied) == 4:  # the second table of the second checkpoint
            raise OperationalError("UPDATE iceberg_tables", {}, Exception("disk I/O error"))
        return original(self, session, change, location)

    monkeypatch.setattr(EmbeddedCatalog, "_apply", failing_apply)
    result = run_target(lake.config(), first + second)
    assert isinstance(result.error, RetriableError)
    assert applied == ["a", "b", "a", "b"]
    assert ids(lake, "acme.raw.a") == [1], "table a kept its first checkpoint only"
    assert ids(lake, "acme.raw.b") == [1]
    assert [json.loads(s) for s in result.states] == [{"n": 1}], (
        "the failed checkpoint's state is not emitted"
    )
    committed = lake.catalog().committed_state("acme.raw")
    assert committed is not None
    assert committed.state == {"n": 1}


def test_a_concurrent_writer_is_kept_and_our_batch_lands_once(embedded_lake: Lake) -> None:
    lake = embedded_lake  # Nessie's concurrent writer: test_nessie_catalog.py
    target = TargetIcebergNessie(config=lake.config())
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        target.process_lines(io.StringIO(schema("t") + record("t", 1) + state(1) + record("t", 2)))
        # Another writer appends between our load and our commit.
        other = lake.catalog().iceberg.load_table(("acme", "raw", "t"))
        other.append(pa.table({"id": pa.array([100], pa.int64())}))
        target.process_lines(io.StringIO(state(2)))
        target.process_endofpipe()
    assert ids(lake, "acme.raw.t") == [1, 2, 100]
    table = lake.catalog().load_table(("acme", "raw", "t"))
    chain = [(s.summary.get("ingest.batch-id"), s.parent_snapshot_id) for s in table.metadata.snapshots]
    assert [batch for batch, _ in chain] == ["run-1:1", None, "run-1:2"]
    snapshots = table.metadata.snapshots
    assert snapshots[2].parent_snapshot_id == snapshots[1].snapshot_id, "our commit was re-applied on theirs"
    assert [json.loads(s) for s in out.getvalue().splitlines()] == [{"n": 1}, {"n": 2}]


def test_microbatch_commits_every_n_records_without_state(lake: Lake) -> None:
    text = schema("m") + "".join(record("m", n) for n in range(1, 36))
    result = run_target(lake.config(microbatch_records=10), text)
    assert result.error is None
    table = lake.catalog().load_table(("acme", "raw", "m"))
    assert [int(s.summary["added-records"]) for s in table.metadata.snapshots] == [10, 10, 10, 5]
    assert result.states == [], "no STATE was received, so none is emitted"


def test_batches_become_row_groups_of_one_file_per_checkpoint(lake: Lake) -> None:
    text = schema("f") + "".join(record("f", n) for n in range(1, 21)) + state(20)
    result = run_target(lake.config(batch_max_records=7), text)
    assert result.error is None
    table = lake.catalog().load_table(("acme", "raw", "f"))
    assert len(table.metadata.snapshots) == 1
    (task,) = list(table.scan().plan_files())
    assert task.file.record_count == 20
    row_groups = pq.ParquetFile(task.file.file_path).metadata
    assert [row_groups.row_group(i).num_rows for i in range(row_groups.num_row_groups)] == [7, 7, 6]
    assert ids(lake, "acme.raw.f") == list(range(1, 21))


def test_unchanged_state_with_no_records_commits_nothing(lake: Lake) -> None:
    text = schema("u") + record("u", 1) + state(1) + state(1) + state(1)
    result = run_target(lake.config(), text)
    assert result.error is None
    assert len(lake.catalog().commit_log("acme.raw")) == 1
    assert len(result.states) == 1


def test_states_within_the_checkpoint_interval_are_held_until_the_next_commit(lake: Lake) -> None:
    text = schema("h") + "".join(record("h", n) + state(n) for n in range(1, 6))
    result = run_target(lake.config(checkpoint_interval_seconds=3600), text)
    assert result.error is None
    # Only the end of input commits: one snapshot, and only the last state is emitted.
    table = lake.catalog().load_table(("acme", "raw", "h"))
    assert [int(s.summary["added-records"]) for s in table.metadata.snapshots] == [5]
    assert [json.loads(s) for s in result.states] == [{"n": 5}]
    assert lake.catalog().committed_state("acme.raw").state == {"n": 5}


def test_microbatch_seconds_commits_a_slow_stream_without_state(lake: Lake) -> None:
    def slow_tap() -> Iterator[bytes]:
        yield schema("slow").encode()
        for n in range(1, 601):
            if n % 200 == 0:
                time.sleep(0.3)  # the tap pauses; the next records arrive after the interval
            yield record("slow", n).encode()

    target = TargetIcebergNessie(config=lake.config(microbatch_seconds=0.2))
    with contextlib.redirect_stdout(io.StringIO()):
        target.process_lines(slow_tap())  # type: ignore[arg-type] # an iterable of byte lines
        target.process_endofpipe()
    table = lake.catalog().load_table(("acme", "raw", "slow"))
    added = [int(s.summary["added-records"]) for s in table.metadata.snapshots]
    assert len(added) >= 3, f"time-based checkpoints happened mid-stream: {added}"
    assert sum(added) == 600
    assert ids(lake, "acme.raw.slow") == list(range(1, 601))


def test_another_pipeline_writing_our_table_between_load_and_commit_keeps_both(lake: Lake) -> None:
    ours = TargetIcebergNessie(config=lake.config())
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        ours.process_lines(io.StringIO(schema("t") + record("t", 1) + state(1) + record("t", 2)))
        # Another pipeline (another target process) appends to the same table and commits first.
        theirs = run_target(
            lake.config(pipeline_id="other", run_id="other-run"), schema("t") + record("t", 100) + state(9)
        )
        assert theirs.error is None
        ours.process_lines(io.StringIO(state(2)))
        ours.process_endofpipe()
    assert ids(lake, "acme.raw.t") == [1, 2, 100], "our batch landed once, theirs stayed"
    assert [json.loads(s) for s in out.getvalue().splitlines()] == [{"n": 1}, {"n": 2}]
    with lake.catalog() as catalog:
        assert catalog.committed_state("acme.raw").state == {"n": 2}
        assert catalog.committed_state("other").state == {"n": 9}
        table = catalog.load_table(("acme", "raw", "t"))
    batches = [s.summary.get("ingest.batch-id") for s in table.metadata.snapshots]
    assert batches == ["run-1:1", "other-run:1", "run-1:2"], "ours was re-applied on top of theirs"
    referenced = {s.manifest_list for s in table.metadata.snapshots} | {
        m.manifest_path for s in table.metadata.snapshots for m in s.manifests(table.io)
    }
    on_disk = {str(p) for p in (lake.warehouse / "acme" / "raw" / "t" / "metadata").glob("*.avro")}
    assert on_disk == {r.removeprefix("file://") for r in referenced}, "the failed attempt left no files"
