from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pytest

from target_iceberg_nessie.convert import ConversionError, conform_table, convert_array
from target_iceberg_nessie.errors import BadInputError
from target_iceberg_nessie.schema import TIME_TYPE, TIMESTAMP_TYPE

UTC = dt.UTC


def test_timestamps_with_zones_naive_and_nanoseconds() -> None:
    values = pa.array(
        [
            "2024-01-01T00:00:00Z",
            "2024-01-01T02:00:00+02:00",
            "2024-01-01T00:00:00",
            "2024-01-01T00:00:00.123456789Z",
            "2024-01-01",
            None,
        ]
    )
    converted = convert_array(values, TIMESTAMP_TYPE, "at").to_pylist()
    midnight = dt.datetime(2024, 1, 1, tzinfo=UTC)
    assert converted == [
        midnight,
        midnight,
        midnight,
        midnight + dt.timedelta(microseconds=123456),
        midnight,
        None,
    ]


def test_bad_timestamp_names_row_and_value() -> None:
    with pytest.raises(ConversionError) as raised:
        convert_array(pa.array(["2024-01-01T00:00:00Z", "not a time"]), TIMESTAMP_TYPE, "at")
    assert raised.value.row == 1
    assert "not a time" in str(raised.value)


def test_dates_and_times() -> None:
    assert convert_array(pa.array(["2024-02-29", "2024-03-01T10:00:00Z"]), pa.date32(), "d").to_pylist() == [
        dt.date(2024, 2, 29),
        dt.date(2024, 3, 1),
    ]
    assert convert_array(pa.array(["17:30:00", "08:00:00.5"]), TIME_TYPE, "t").to_pylist() == [
        dt.time(17, 30),
        dt.time(8, 0, 0, 500000),
    ]


def test_structs_gain_missing_fields_and_keep_nulls() -> None:
    source = pa.array([{"a": "2024-01-01T00:00:00Z"}, None], pa.struct([("a", pa.string())]))
    target = pa.struct([("a", TIMESTAMP_TYPE), ("b", pa.int64())])
    assert convert_array(source, target, "s").to_pylist() == [
        {"a": dt.datetime(2024, 1, 1, tzinfo=UTC), "b": None},
        None,
    ]


def test_conform_table_names_the_input_line() -> None:
    table = pa.table({"at": pa.array(["2024-01-01T00:00:00Z", "bad"])})
    schema = pa.schema([("at", TIMESTAMP_TYPE), ("extra", pa.string())])
    with pytest.raises(BadInputError) as raised:
        conform_table(table, schema, "events", [10, 11])
    assert (raised.value.stream, raised.value.line) == ("events", 11)


def test_conform_table_fills_absent_columns_with_nulls() -> None:
    table = pa.table({"id": pa.array([1, 2], pa.int64())})
    schema = pa.schema([("id", pa.int64()), ("name", pa.string())])
    assert conform_table(table, schema, "s", [1, 2]).to_pylist() == [
        {"id": 1, "name": None},
        {"id": 2, "name": None},
    ]


@pytest.mark.parametrize("target_list", [pa.list_, pa.large_list])
def test_lists_of_structs_convert_into_the_tables_list_type(target_list: object) -> None:
    """pyiceberg gives large_list columns: a list of structs that lacks a field (Stripe's refunds)
    converts element by element, keeping empty and null lists."""
    item = pa.struct([("id", pa.string()), ("amount", pa.int64())])
    source = pa.array([[], [{"id": "re_1", "amount": 5}], None], pa.list_(item))
    wanted = pa.struct([("id", pa.large_string()), ("amount", pa.int64()), ("reason", pa.large_string())])
    target = target_list(pa.field("element", wanted))  # type: ignore[operator]
    converted = convert_array(source, target, "refunds")
    assert converted.type == target
    assert converted.to_pylist() == [[], [{"id": "re_1", "amount": 5, "reason": None}], None]
