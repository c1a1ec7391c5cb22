"""Markdown-KV storage patterns of the loader (`markdown_kv` setting), in-process, on both catalogs:
the `string` column, `raw_file` documents listed by their commit (retries and failures leave no
duplicate and no orphan), and `structured` <stream>__kv / <stream>__doc tables."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pytest
from conftest import Lake, read_duckdb, read_pyiceberg, run_target

from target_iceberg_nessie import properties as props
from target_iceberg_nessie.catalogs.nessie import NessieCatalog
from target_iceberg_nessie.catalogs.sql import EmbeddedCatalog
from target_iceberg_nessie.coordinator import CommitCoordinator
from target_iceberg_nessie.errors import BadInputError, CommitConflictError, ConfigError, FatalError
from target_iceberg_nessie.markdown_kv import document_level, parse_document, render_document, rows_per_kv
from target_iceberg_nessie.markdown_store import documents_of

PROPERTIES = {
    "id": {"type": "integer"},
    "name": {"type": ["string", "null"]},
    "paid": {"type": ["boolean", "null"]},
    "total": {"type": ["number", "null"]},
    "at": {"type": ["string", "null"], "format": "date-time"},
    "meta": {"type": ["object", "null"]},  # free-form: stored as JSON text, rendered as an object
    "ship": {"type": ["object", "null"], "properties": {"city": {"type": ["string", "null"]}}},
    "tags": {"type": ["array", "null"], "items": {"type": "string"}},
    "body": {"type": ["string", "null"]},
}
TABLE = "acme.raw.orders"
BODY = render_document(
    [{"sku": "A-1", "qty": 2, "dims": {"w": 10}}, {"sku": "B-2", "note": "two\nlines", "tags": ["x"]}],
    front_matter={"title": "Order lines"},
    title_key="sku",
)


def record(n: int, **changes: Any) -> dict[str, Any]:
    return {
        "id": n,
        "name": f"Customer {n}",
        "paid": n % 2 == 0,
        "total": n + 0.5,
        "at": f"2026-01-{n % 28 + 1:02d}T09:30:00Z",
        "meta": {"source": "shop", "n": n},
        "ship": {"city": "Paris"},
        "tags": ["gift", "42"],
        "body": BODY,
        **changes,
    }


def expected_record(n: int, **changes: Any) -> dict[str, Any]:
    """A record as its Markdown-KV rendering reads back: timestamps as ISO text in UTC."""
    found = record(n, **changes)
    found["at"] = found["at"].replace("Z", ".000000Z")
    return found


def singer(*batches: Iterable[Mapping[str, Any]], keys: tuple[str, ...] = ("id",)) -> str:
    schema = {
        "type": "SCHEMA",
        "stream": "orders",
        "key_properties": list(keys),
        "schema": {"properties": PROPERTIES},
    }
    lines = [json.dumps(schema)]
    for n, batch in enumerate(batches, start=1):
        lines += [json.dumps({"type": "RECORD", "stream": "orders", "record": r}) for r in batch]
        lines.append(json.dumps({"type": "STATE", "value": {"batch": n}}))
    return "\n".join(lines) + "\n"


def setting(**patterns: Any) -> dict[str, Any]:
    return {"streams": {"orders": patterns}}


def markdown_files(lake: Lake) -> set[str]:
    return {str(p) for p in (lake.warehouse / "markdown_kv").rglob("*.md*")}


def listed_documents(lake: Lake) -> list[list[str]]:
    """Per snapshot of the table, the documents its commit lists."""
    table = lake.catalog().load_table(("acme", "raw", "orders"))
    catalog = lake.catalog()
    return [documents_of(s.summary.additional_properties, catalog.file_io) for s in table.metadata.snapshots]


# -- string --------------------------------------------------------------------------------------


def test_string_column_holds_each_row_as_markdown_kv_in_the_same_commit(lake: Lake) -> None:
    result = run_target(
        lake.config(markdown_kv=setting(string=True)), singer([record(1), record(2)], [record(3)])
    )
    assert result.error is None, result.error
    for reader in (read_pyiceberg, read_duckdb):
        rows = sorted(reader(lake, TABLE), key=lambda r: r["id"])
        assert [r["id"] for r in rows] == [1, 2, 3]
        for row in rows:
            document = parse_document(row["_markdown_kv"])
            (parsed,) = document.records
            assert parsed.title == str(row["id"]), "the title is the key"
            assert parsed.data == expected_record(row["id"]), reader.__name__
    table = lake.catalog().load_table(("acme", "raw", "orders"))
    assert len(table.metadata.snapshots) == 2, (
        "the column is written with the rows, one snapshot per checkpoint"
    )


def test_string_column_name_and_title_are_settings(lake: Lake) -> None:
    patterns = setting(string={"column": "as_markdown", "title_key": "name"})
    result = run_target(lake.config(markdown_kv=patterns), singer([record(7)]))
    assert result.error is None, result.error
    (row,) = read_pyiceberg(lake, TABLE)
    assert "_markdown_kv" not in row
    assert row["as_markdown"].startswith("# Customer 7\n\nid: 7\n")


def test_string_column_that_is_already_a_property_is_refused(lake: Lake) -> None:
    result = run_target(lake.config(markdown_kv=setting(string={"column": "name"})), singer([record(1)]))
    assert isinstance(result.error, ConfigError)
    assert "stream 'orders': column 'name' is already a property" in str(result.error)
    assert "markdown_kv.streams.orders.string" in str(result.error)


# -- raw_file ------------------------------------------------------------------------------------


def test_raw_files_one_per_record_are_listed_by_their_commit(lake: Lake) -> None:
    result = run_target(
        lake.config(markdown_kv=setting(raw_file=True)), singer([record(1), record(2)], [record(3)])
    )
    assert result.error is None, result.error
    listed = listed_documents(lake)
    assert [len(paths) for paths in listed] == [2, 1]
    assert all("/run-1-1/" in p for p in listed[0])
    assert all("/run-1-2/" in p for p in listed[1])
    assert {p for paths in listed for p in paths} == markdown_files(lake), "every file is listed, once"
    for path in listed[0]:
        assert path.startswith(f"{lake.warehouse}/markdown_kv/acme/orders/")
        document = parse_document(Path(path).read_text(encoding="utf-8"))
        assert document.front_matter == {"stream": "orders", "table": "orders", "batch_id": "run-1:1"}
        (parsed,) = document.records
        assert Path(path).name == f"{parsed.data['id']}.md"
        assert parsed.data == expected_record(parsed.data["id"])
    summary = lake.catalog().load_table(("acme", "raw", "orders")).metadata.snapshots[0].summary
    assert summary[props.MARKDOWN_KV_DOCUMENT_COUNT] == "2"


def test_raw_files_one_per_batch_with_a_custom_path(lake: Lake) -> None:
    pattern = {"path": "docs/{tenant}/{stream}/{batch}/{key}.mdkv", "per": "batch", "title_key": "name"}
    config = lake.config(markdown_kv=setting(raw_file=pattern), batch_max_records=2)
    result = run_target(config, singer([record(n) for n in range(1, 6)]))
    assert result.error is None, result.error
    (paths,) = listed_documents(lake)
    names = [p.removeprefix(f"{lake.warehouse}/") for p in paths]
    assert names == [f"docs/acme/orders/run-1-1/part-0000{n}.mdkv" for n in (1, 2, 3)]
    documents = [parse_document(Path(p).read_text(encoding="utf-8")) for p in paths]
    assert [d.front_matter["records"] for d in documents if d.front_matter] == [2, 2, 1]
    assert [r.title for d in documents for r in d.records] == [f"Customer {n}" for n in range(1, 6)]


def test_a_long_document_list_goes_to_a_file_named_by_the_summary(lake: Lake) -> None:
    result = run_target(
        lake.config(markdown_kv=setting(raw_file=True)), singer([record(n) for n in range(1, 201)])
    )
    assert result.error is None, result.error
    table = lake.catalog().load_table(("acme", "raw", "orders"))
    summary = table.metadata.snapshots[0].summary.additional_properties
    assert props.MARKDOWN_KV_DOCUMENTS not in summary
    assert summary[props.MARKDOWN_KV_DOCUMENTS_LOCATION].endswith(
        "/_ingest/markdown_kv/acme.raw/orders/run-1-1.json"
    )
    (paths,) = listed_documents(lake)
    assert len(paths) == 200
    assert set(paths) == markdown_files(lake)


def _commit_classes() -> tuple[type, ...]:
    return (EmbeddedCatalog, NessieCatalog)


def test_a_conflicting_checkpoint_is_retried_with_the_same_documents(
    lake: Lake, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = {"n": 0}
    for cls in _commit_classes():
        original = cls.commit_checkpoint

        def conflicting(self: Any, changes: Any, checkpoint: Any, _original: Any = original) -> Any:
            calls["n"] += 1
            if calls["n"] == 1:
                raise CommitConflictError("injected: another writer moved the table")
            return _original(self, changes, checkpoint)

        monkeypatch.setattr(cls, "commit_checkpoint", conflicting)
    result = run_target(lake.config(markdown_kv=setting(raw_file=True)), singer([record(1), record(2)]))
    assert result.error is None, result.error
    assert calls["n"] == 2, "the checkpoint was re-applied once"
    (paths,) = listed_documents(lake)
    assert sorted(Path(p).name for p in paths) == ["1.md", "2.md"]
    assert set(paths) == markdown_files(lake), "no duplicate document"


def test_a_failed_checkpoint_deletes_its_documents_and_the_rerun_writes_the_same_paths(
    lake: Lake, monkeypatch: pytest.MonkeyPatch
) -> None:
    written: list[set[str]] = []
    original = CommitCoordinator._commit_with_retries

    def failing(self: Any, touched: Any, checkpoint: Any, properties: Any) -> Any:
        written.append(markdown_files(lake))  # the documents exist before the commit
        if checkpoint.batch_seq == 2:
            raise FatalError("injected: the process fails after writing the documents")
        return original(self, touched, checkpoint, properties)

    monkeypatch.setattr(CommitCoordinator, "_commit_with_retries", failing)
    text = singer([record(1)], [record(2), record(3)])
    config = lake.config(markdown_kv=setting(raw_file=True))
    first = run_target(config, text)
    assert isinstance(first.error, FatalError)
    assert len(written[1]) == 3, "checkpoint 2 had written its two documents"
    after_failure = markdown_files(lake)
    assert len(after_failure) == 1, "the failed checkpoint's documents were deleted; the first commit's stay"
    failed_paths = written[1] - after_failure

    monkeypatch.setattr(CommitCoordinator, "_commit_with_retries", original)
    rerun = run_target(config, singer([record(2), record(3)]))  # the source re-sends from the state
    assert rerun.error is None, rerun.error
    listed = listed_documents(lake)
    assert [len(p) for p in listed] == [1, 2]
    assert set(listed[1]) == failed_paths, "the same run id and batch rewrites the same paths"
    assert {p for paths in listed for p in paths} == markdown_files(lake), "no orphan"


# -- structured ----------------------------------------------------------------------------------


def test_structured_hybrid_writes_kv_and_doc_tables_in_the_same_commit(lake: Lake) -> None:
    result = run_target(
        lake.config(markdown_kv=setting(structured={"column": "body"})),
        singer([record(1), record(2, body=None)], [record(3, body="# Only\n\nk: v\n")]),
    )
    assert result.error is None, result.error
    parsed = parse_document(BODY)
    for reader in (read_pyiceberg, read_duckdb):
        kv = sorted(reader(lake, f"{TABLE}__kv"), key=lambda r: (r["doc_id"], r["ord"]))
        expected = [r.table_row() for r in rows_per_kv(parsed, doc_id="1")]
        expected += [
            {
                "doc_id": "3",
                "record_ord": 0,
                "record_title": "Only",
                "section": [],
                "key": "k",
                "value": "v",
                "value_json": '"v"',
                "ord": 0,
            }
        ]
        assert kv == expected, reader.__name__
        docs = {r["doc_id"]: r for r in reader(lake, f"{TABLE}__doc")}
        assert sorted(docs) == ["1", "3"], "a null document has no row"
        level = document_level(parsed, doc_id="1")
        assert docs["1"]["title"] == "Order lines"
        assert docs["1"]["records"] == 2
        assert [s["path"] for s in docs["1"]["sections"]] == [list(s.path) for s in level.sections]
        assert docs["1"]["sections"][1]["fields"] == [{"key": "w", "value": "10", "value_json": "10"}]
    catalog = lake.catalog()
    batch_ids = {
        name: [
            s.summary["ingest.batch-id"] for s in catalog.load_table(("acme", "raw", name)).metadata.snapshots
        ]
        for name in ("orders", "orders__kv", "orders__doc")
    }
    assert batch_ids == {name: ["run-1:1", "run-1:2"] for name in batch_ids}, "one commit per checkpoint"


def test_structured_document_level_alone_and_upserted_by_doc_id(lake: Lake) -> None:
    patterns = setting(structured={"column": "body", "shape": "document_level"})
    config = lake.config(markdown_kv=patterns, write_mode="upsert")
    result = run_target(config, singer([record(1), record(2)], [record(1, body="# New\n\nk: 1\n")]))
    assert result.error is None, result.error
    docs = {r["doc_id"]: r for r in read_pyiceberg(lake, f"{TABLE}__doc")}
    assert sorted(docs) == ["1", "2"]
    assert docs["1"]["sections"][0]["heading"] == "New", "the newer document replaced the older"
    assert lake.catalog().load_table(("acme", "raw", "orders__kv")) is None


def test_structured_errors_name_the_stream_and_the_fix(lake: Lake) -> None:
    bad = run_target(
        lake.config(markdown_kv=setting(structured={"column": "body"})),
        singer([record(1), record(2, body="# Doc\n\nno colon here\n")]),
    )
    assert isinstance(bad.error, BadInputError)
    message = str(bad.error)
    assert message.startswith("stream 'orders', line 3: property 'body' does not hold a Markdown-KV document")
    assert "document '2', line 3: expected 'key: value'" in message
    assert lake.catalog().load_table(("acme", "raw", "orders__kv")) is None, (
        "nothing of that checkpoint landed"
    )

    missing = run_target(lake.config(markdown_kv=setting(structured={"column": "text"})), singer([record(1)]))
    assert isinstance(missing.error, ConfigError)
    assert "column 'text' is not a property of the stream" in str(missing.error)

    upsert = run_target(
        lake.config(markdown_kv=setting(structured={"column": "body"}), write_mode="upsert"),
        singer([record(1)]),
    )
    assert isinstance(upsert.error, ConfigError)
    assert "use shape document_level" in str(upsert.error)

    keyless = run_target(
        lake.config(markdown_kv=setting(structured={"column": "body"})), singer([record(1)], keys=())
    )
    assert isinstance(keyless.error, ConfigError)
    assert "set 'doc_id'" in str(keyless.error)


def test_default_patterns_apply_to_every_stream_but_not_to_derived_tables(lake: Lake) -> None:
    config = lake.config(
        markdown_kv={
            "default": {"string": True, "structured": {"column": "body"}},
            "streams": {"other": None},
        }
    )
    other_schema = singer([]).split("\n", 1)[0].replace('"orders"', '"other"')
    other_record = json.dumps({"type": "RECORD", "stream": "other", "record": record(5)})
    text = singer([record(1)]) + f"{other_schema}\n{other_record}\n"
    result = run_target(config, text)
    assert result.error is None, result.error
    assert "_markdown_kv" in read_pyiceberg(lake, TABLE)[0]
    assert "_markdown_kv" not in read_pyiceberg(lake, f"{TABLE}__kv")[0], "a derived table gets no pattern"
    assert "_markdown_kv" not in read_pyiceberg(lake, "acme.raw.other")[0], "null turns the default off"


def test_raw_files_on_an_s3_warehouse_use_its_credentials(tmp_path: Path, s3_server: Any) -> None:
    lake = Lake(tmp_path / "lake", s3=s3_server)  # the documents' storage is the catalog's FileIO
    try:
        result = run_target(
            lake.config(markdown_kv=setting(raw_file={"per": "batch"})), singer([record(1), record(2)])
        )
        assert result.error is None, result.error
        (paths,) = listed_documents(lake)
        assert len(paths) == 1
        assert paths[0].startswith(f"{lake.warehouse_uri}/markdown_kv/acme/orders/")
        prefix = lake.warehouse_uri.removeprefix(f"s3://{lake.s3_bucket}/")
        stored = [p for p in (s3_server.data_dir / lake.s3_bucket / prefix).rglob("*.md") if p.is_file()]
        assert [str(p).removeprefix(str(s3_server.data_dir / lake.s3_bucket) + "/") for p in stored] == [
            paths[0].removeprefix(f"s3://{lake.s3_bucket}/")
        ]
        catalog = lake.catalog()
        with catalog.file_io(paths[0]).new_input(paths[0]).open() as handle:
            document = parse_document(handle.read().decode("utf-8"))
        assert [r.data["id"] for r in document.records] == [1, 2]
    finally:
        lake.close()


def test_a_key_repeated_in_a_checkpoint_keeps_one_document_with_its_latest_record(
    embedded_lake: Lake,
) -> None:
    lake = embedded_lake  # path naming is catalog-independent
    result = run_target(
        lake.config(markdown_kv=setting(raw_file=True)),
        singer([record(1), record(2), record(1, name="Renamed")]),
    )
    assert result.error is None, result.error
    (paths,) = listed_documents(lake)
    assert sorted(Path(p).name for p in paths) == ["1.md", "2.md"]
    (one,) = [p for p in paths if p.endswith("/1.md")]
    assert parse_document(Path(one).read_text(encoding="utf-8")).records[0].data["name"] == "Renamed"
