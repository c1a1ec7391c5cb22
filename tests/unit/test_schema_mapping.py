from __future__ import annotations

from typing import Any

import pyarrow as pa
import pytest

from target_iceberg_nessie.errors import ConfigError
from target_iceberg_nessie.naming import sanitize_name, table_identifier
from target_iceberg_nessie.schema import JSON_TEXT_KEY, TIME_TYPE, TIMESTAMP_TYPE, column_type, stream_shape


@pytest.mark.parametrize(
    ("schema", "expected"),
    [
        ({"type": "string"}, pa.string()),
        ({"type": ["null", "string"]}, pa.string()),
        ({"type": "integer"}, pa.int64()),
        ({"type": ["number", "null"]}, pa.float64()),
        ({"type": ["integer", "number"]}, pa.float64()),
        ({"type": "number", "multipleOf": 0.01}, pa.decimal128(38, 2)),
        ({"type": "number", "multipleOf": 1e-6}, pa.decimal128(38, 6)),
        ({"type": "number", "multipleOf": 0.3}, pa.float64()),
        ({"type": "boolean"}, pa.bool_()),
        ({"type": "string", "format": "date-time"}, TIMESTAMP_TYPE),
        ({"type": ["string", "null"], "format": "date"}, pa.date32()),
        ({"type": "string", "format": "time"}, TIME_TYPE),
        ({"anyOf": [{"type": "string", "format": "date-time"}, {"type": "null"}]}, TIMESTAMP_TYPE),
        ({"type": "array", "items": {"type": "integer"}}, pa.list_(pa.int64())),
        (
            {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "string"}}},
            pa.struct([("a", pa.int64()), ("b", pa.string())]),
        ),
    ],
)
def test_singer_types_map_to_arrow(schema: dict[str, Any], expected: pa.DataType) -> None:
    assert column_type(schema).column == expected


@pytest.mark.parametrize(
    "schema",
    [
        {},
        {"type": "object"},
        {"type": ["object", "null"], "properties": {}},
        {"type": "array"},
        {"type": ["string", "integer"]},
        {"anyOf": [{"type": "string"}, {"type": "object", "properties": {"a": {"type": "integer"}}}]},
        {"type": "null"},
    ],
)
def test_untypeable_values_become_json_text(schema: dict[str, Any]) -> None:
    mapped = column_type(schema)
    assert mapped.json_text
    assert mapped.column == pa.string()


def test_temporal_values_are_read_as_strings_and_stored_typed() -> None:
    mapped = column_type({"type": "string", "format": "date-time"})
    assert (mapped.read, mapped.column) == (pa.string(), TIMESTAMP_TYPE)


def test_stream_shape_separates_json_text_and_marks_nested_ones() -> None:
    shape = stream_shape(
        {
            "properties": {
                "id": {"type": "integer"},
                "meta": {"type": "object"},
                "inner": {"type": "object", "properties": {"free": {}}},
            }
        },
        ["id"],
    )
    assert shape.json_text_columns == ("meta",)
    assert shape.read_schema.names == ["id", "inner"]
    assert shape.column_schema.names == ["id", "meta", "inner"]
    assert shape.column_schema.field("meta").metadata == {JSON_TEXT_KEY: b"1"}
    assert shape.needs_python_decode
    assert shape.key_properties == ("id",)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("public-users", "public_users"),
        ("Deals (2024)", "deals_2024"),
        ("2fa", "_2fa"),
        ("ok_name", "ok_name"),
    ],
)
def test_names_are_sanitised(name: str, expected: str) -> None:
    assert sanitize_name(name) == expected


def test_a_name_without_letters_is_an_error_that_says_what_to_do() -> None:
    with pytest.raises(ConfigError, match="rename it"):
        sanitize_name("---")


def test_table_identifier_is_tenant_namespace_table() -> None:
    assert table_identifier("Acme", "raw", "Page-Views") == ("acme", "raw", "page_views")


def test_alternatives_of_one_type_are_that_type_not_json_text() -> None:
    # tap-google-sheets declares date cells as anyOf a date-time string and a plain string.
    col = column_type(
        {"anyOf": [{"type": ["null", "string"], "format": "date-time"}, {"type": ["null", "string"]}]}
    )
    assert col.column == pa.string()
    assert not col.json_text


def test_untyped_objects_inside_lists_of_objects_are_marked_as_json_text_for_the_decoder() -> None:
    # tap-stripe: charges.refunds[].metadata is an object without declared properties.
    items = {
        "type": ["null", "object"],
        "properties": {"id": {"type": "string"}, "metadata": {"type": "object"}},
    }
    col = column_type({"type": ["null", "array"], "items": items})
    assert col.nested_json_text
    metadata_field = col.read.value_type.field("metadata")
    assert metadata_field.metadata == {JSON_TEXT_KEY: b"1"}
