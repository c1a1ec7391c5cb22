"""Singer scenario files through the target; every row read back by pyiceberg AND by DuckDB."""

from __future__ import annotations

import contextlib
import io
import json

import pytest
from conftest import Lake, read_duckdb, read_pyiceberg, run_target
from singer_expect import actual_rows, expected_rows, merged_properties, parse_messages

from target_iceberg_nessie.errors import FatalError

SCENARIOS = [
    # file, stream, table, key
    ("schema_evolution.singer", "accounts", "acme.raw.accounts", "id"),
    ("nested.singer", "orders", "acme.raw.orders", "id"),
    ("nulls.singer", "sparse", "acme.raw.sparse", "id"),
    ("interleaved.singer", "users", "acme.raw.users", "id"),
    ("interleaved.singer", "events", "acme.raw.events", "id"),
    ("interleaved.singer", "Page-Views", "acme.raw.page_views", "id"),
    ("state_every_n.singer", "ticks", "acme.raw.ticks", "n"),
    ("interrupted.singer", "logs", "acme.raw.logs", "seq"),
]


@pytest.mark.parametrize(("fixture", "stream", "table", "key"), SCENARIOS)
def test_every_row_reads_back_through_pyiceberg_and_duckdb(
    lake: Lake, singer_fixture, fixture: str, stream: str, table: str, key: str
) -> None:
    text = singer_fixture(fixture)
    result = run_target(lake.config(), text)
    assert result.error is None, result.error
    messages = parse_messages(text)
    props = merged_properties(messages, stream)
    expected = expected_rows(messages, stream, key)
    assert expected, "the scenario has records for the stream"
    assert actual_rows(read_pyiceberg(lake, table), props, key) == expected
    assert actual_rows(read_duckdb(lake, table), props, key) == expected


def test_state_is_emitted_after_each_commit_and_matches_the_catalog(lake: Lake, singer_fixture) -> None:
    text = singer_fixture("state_every_n.singer")
    result = run_target(lake.config(), text)
    assert result.error is None
    sent = [m["value"] for m in parse_messages(text) if m["type"] == "STATE"]
    assert [json.loads(s) for s in result.states] == sent
    committed = lake.catalog().committed_state("acme.raw")
    assert committed is not None
    assert committed.state == sent[-1]
    # 4 STATE messages each commit their rows; the final 2 records land at the end of input.
    table = lake.catalog().load_table(("acme", "raw", "ticks"))
    snapshots = table.metadata.snapshots
    assert [int(s.summary["added-records"]) for s in snapshots] == [5, 5, 5, 5, 2]
    assert [s.summary["ingest.batch-id"] for s in snapshots] == [f"run-1:{n}" for n in range(1, 6)]
    assert json.loads(snapshots[0].summary["ingest.singer-state"]) == sent[0]
    document = json.loads((lake.state_dir / "acme" / "acme.raw" / "state.json").read_text())
    assert document["state"] == sent[-1]
    assert document["batch_id"] == "run-1:5"
    assert document["commit"]["tables"]["acme.raw.ticks"] == table.metadata_location


def test_interrupted_stream_commits_rows_with_the_last_state_it_saw(lake: Lake, singer_fixture) -> None:
    result = run_target(lake.config(), singer_fixture("interrupted.singer"))
    assert result.error is None
    assert [json.loads(s) for s in result.states] == [{"bookmarks": {"logs": {"seq": 8}}}]
    committed = lake.catalog().committed_state("acme.raw")
    assert committed is not None
    assert committed.state == {"bookmarks": {"logs": {"seq": 8}}}
    assert len(read_pyiceberg(lake, "acme.raw.logs")) == 12


def test_schema_evolution_adds_columns_without_rewriting_data(lake: Lake, singer_fixture) -> None:
    result = run_target(lake.config(), singer_fixture("schema_evolution.singer"))
    assert result.error is None
    table = lake.catalog().load_table(("acme", "raw", "accounts"))
    schema = table.schema()
    assert [f.name for f in schema.fields] == ["id", "name", "email", "address", "joined"]
    assert [f.name for f in schema.find_field("address").field_type.fields] == ["city", "zip"]
    assert len(table.metadata.schemas) == 3
    # Each snapshot added its own files; no file was rewritten.
    added = [int(s.summary["added-data-files"]) for s in table.metadata.snapshots]
    assert added == [1, 1, 1]
    assert int(table.current_snapshot().summary["total-data-files"]) == 3


def test_tables_are_created_for_streams_without_records(lake: Lake) -> None:
    text = (
        '{"type":"SCHEMA","stream":"empty","schema":{"properties":{"id":{"type":"integer"}}},'
        '"key_properties":["id"]}\n'
    )
    result = run_target(lake.config(), text)
    assert result.error is None
    table = lake.catalog().load_table(("acme", "raw", "empty"))
    assert table is not None
    assert table.current_snapshot() is None
    assert read_pyiceberg(lake, "acme.raw.empty") == []


def test_a_second_run_appends_and_keeps_the_first(lake: Lake, singer_fixture) -> None:
    text = singer_fixture("state_every_n.singer")
    assert run_target(lake.config(run_id="run-1"), text).error is None
    assert run_target(lake.config(run_id="run-2"), text).error is None
    rows = read_pyiceberg(lake, "acme.raw.ticks")
    assert len(rows) == 44
    log = lake.catalog().commit_log("acme.raw")
    assert {entry["run_id"] for entry in log} == {"run-1", "run-2"}


def test_the_reader_counts_every_message_type(lake: Lake, singer_fixture) -> None:
    from target_iceberg_nessie.target import TargetIcebergNessie  # noqa: PLC0415

    target = TargetIcebergNessie(config=lake.config())
    with contextlib.redirect_stdout(io.StringIO()):
        counts = target.process_lines(io.StringIO(singer_fixture("interleaved.singer")))
        target.process_endofpipe()
    assert (counts["SCHEMA"], counts["RECORD"], counts["STATE"]) == (3, 90, 3)


def test_a_dropped_table_is_gone_and_the_next_run_creates_it_again(lake: Lake, singer_fixture) -> None:
    text = singer_fixture("state_every_n.singer")
    assert run_target(lake.config(), text).error is None
    with lake.catalog(create=True) as writer:
        writer.drop_table(("acme", "raw", "ticks"))
        assert writer.load_table(("acme", "raw", "ticks")) is None
        with pytest.raises(FatalError, match=r"acme\.raw\.ticks does not exist"):
            writer.drop_table(("acme", "raw", "ticks"))
    with lake.catalog() as reader:
        assert ("acme", "raw", "ticks") not in reader.list_tables(("acme", "raw"))
    assert run_target(lake.config(run_id="run-2"), text).error is None
    assert len(read_pyiceberg(lake, "acme.raw.ticks")) == 22, "a new table, with only the new run's rows"


def test_lists_of_objects_holding_untyped_objects_load(lake: Lake) -> None:
    """tap-stripe's charges.refunds: a list of objects whose `metadata` declares no properties."""
    item = {
        "type": ["null", "object"],
        "properties": {"id": {"type": "string"}, "metadata": {"type": "object"}},
    }
    schema = {"properties": {"id": {"type": "string"}, "refunds": {"type": ["null", "array"], "items": item}}}
    lines = [
        {"type": "SCHEMA", "stream": "charges", "key_properties": ["id"], "schema": schema},
        {
            "type": "RECORD",
            "stream": "charges",
            "record": {"id": "ch_1", "refunds": [{"id": "re_1", "metadata": {"a": "b"}}]},
        },
        {"type": "RECORD", "stream": "charges", "record": {"id": "ch_2", "refunds": []}},
        {"type": "STATE", "value": {"n": 1}},
    ]
    result = run_target(lake.config(), "".join(json.dumps(line) + "\n" for line in lines))
    assert result.error is None, result.error
    rows = {r["id"]: r["refunds"] for r in read_duckdb(lake, "acme.raw.charges")}
    assert rows == {"ch_1": [{"id": "re_1", "metadata": '{"a":"b"}'}], "ch_2": []}
