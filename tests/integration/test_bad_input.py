"""Bad input gets an error naming line and stream, and nothing of the open checkpoint lands."""

from __future__ import annotations

import json
import logging

import pytest
from conftest import Lake, read_pyiceberg, run_target

from target_iceberg_nessie.errors import BadInputError, SchemaEvolutionError

SCHEMA = (
    '{"type":"SCHEMA","stream":"items","schema":{"properties":{"id":{"type":"integer"},'
    '"at":{"type":["string","null"],"format":"date-time"}}},"key_properties":["id"]}\n'
)
GOOD = '{"type":"RECORD","stream":"items","record":{"id":%d,"at":"2024-01-01T00:00:00Z"}}\n'
STATE = '{"type":"STATE","value":{"n":%d}}\n'


def committed_ids(lake: Lake) -> list[int]:
    return sorted(row["id"] for row in read_pyiceberg(lake, "acme.raw.items"))


def staged_files(lake: Lake) -> list[str]:
    return sorted(p.name for p in (lake.warehouse / "acme" / "raw" / "items" / "data").glob("*.parquet"))


def test_malformed_json_names_the_line_and_keeps_the_committed_checkpoint(lake: Lake) -> None:
    text = SCHEMA + GOOD % 1 + STATE % 1 + GOOD % 2 + '{"type":"RECORD","stream":"items","record":{"id":\n'
    result = run_target(lake.config(), text)
    assert isinstance(result.error, BadInputError)
    assert result.error.line == 5
    assert "line 5" in str(result.error)
    assert "malformed JSON" in str(result.error)
    assert committed_ids(lake) == [1]
    assert [json.loads(s) for s in result.states] == [{"n": 1}]


def test_record_before_schema_names_stream_and_line(lake: Lake) -> None:
    result = run_target(lake.config(), GOOD % 1)
    assert isinstance(result.error, BadInputError)
    assert (result.error.stream, result.error.line) == ("items", 1)
    assert "SCHEMA" in str(result.error)


def test_unconvertible_value_names_line_and_property_and_deletes_staged_files(lake: Lake) -> None:
    text = (
        SCHEMA
        + GOOD % 1
        + STATE % 1
        + GOOD % 2
        + GOOD % 3
        + '{"type":"RECORD","stream":"items","record":{"id":"four"}}\n'
        + STATE % 4
    )
    result = run_target(lake.config(), text)
    assert isinstance(result.error, BadInputError)
    assert (result.error.stream, result.error.line) == ("items", 6)
    assert "id" in str(result.error)
    assert committed_ids(lake) == [1]
    table = lake.catalog().load_table(("acme", "raw", "items"))
    committed_files = {task.file.file_path.rsplit("/", 1)[-1] for task in table.scan().plan_files()}
    assert set(staged_files(lake)) == committed_files, "files of the failed checkpoint were deleted"


def test_bad_timestamp_names_line_and_property(lake: Lake) -> None:
    text = SCHEMA + GOOD % 1 + '{"type":"RECORD","stream":"items","record":{"id":2,"at":"yesterday"}}\n'
    result = run_target(lake.config(), text)
    assert isinstance(result.error, BadInputError)
    assert result.error.line == 3
    assert "'at'" in str(result.error)
    assert "yesterday" in str(result.error)
    assert lake.catalog().load_table(("acme", "raw", "items")) is None, "nothing was committed"


def test_unknown_message_type_is_ignored_with_a_warning(lake: Lake, caplog: pytest.LogCaptureFixture) -> None:
    text = SCHEMA + '{"type":"GREETING","stream":"items"}\n' + GOOD % 1 + STATE % 1
    with caplog.at_level(logging.WARNING):
        result = run_target(lake.config(), text)
    assert result.error is None
    assert committed_ids(lake) == [1]
    assert any("GREETING" in r.getMessage() for r in caplog.records)


def test_not_a_singer_message(lake: Lake) -> None:
    result = run_target(lake.config(), '["not", "an", "object"]\n')
    assert isinstance(result.error, BadInputError)
    assert result.error.line == 1


def test_incompatible_schema_change_is_refused_before_anything_lands(lake: Lake) -> None:
    changed = SCHEMA.replace('"id":{"type":"integer"}', '"id":{"type":"string"}')
    record = '{"type":"RECORD","stream":"items","record":{"id":"x"}}\n'
    text = SCHEMA + GOOD % 1 + STATE % 1 + changed + record
    result = run_target(lake.config(), text)
    assert isinstance(result.error, SchemaEvolutionError)
    assert "acme.raw.items" in str(result.error)
    assert "id" in str(result.error)
    assert committed_ids(lake) == [1]
