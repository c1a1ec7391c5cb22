"""The loader's per-batch Markdown-KV rendering is the renderer's, byte for byte.

`render_column` builds records column by column with Arrow and lets Arrow decide the form of the
strings it can (`surely_bare`, `surely_quoted`); these properties hold it to `render_record`.
"""

from __future__ import annotations

import datetime
import decimal
import string
from typing import Any

import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from target_iceberg_nessie.markdown_kv import parse_records, render_record
from target_iceberg_nessie.markdown_kv._lexical import bare_string
from target_iceberg_nessie.markdown_kv.render import render_value
from target_iceberg_nessie.markdown_store import (
    json_rows,
    render_column,
    surely_bare,
    surely_quoted,
    title_of,
)

# Strings near the decisions: the characters the rules look at, digits, letters, words.
TRICKY = st.one_of(
    st.text(alphabet=string.printable, max_size=12),
    st.text(alphabet='0123456789 .:-+#eE_"\\[{abcINFnulnoetrs', max_size=10),
    st.sampled_from(["null", "NULL", "None", "true", "nan", "Infinity", "1e5", "1_000", "01234", "4 rue X",
                     "8C8E650C", "8e5", "1. x", "2)", "a #", "a:", "a: b", "٤٢", "2026-01-05T09:30:00Z"]),
    st.text(max_size=8),
)  # fmt: skip
SCHEMA = pa.schema(
    [
        ("id", pa.int64()),
        ("s", pa.string()),
        ("f", pa.float64()),
        ("b", pa.bool_()),
        ("at", pa.timestamp("us", tz="UTC")),
        ("d", pa.decimal128(10, 2)),
        ("o", pa.struct([("a", pa.string()), ("n", pa.int64()), ("deep", pa.struct([("x", pa.string())]))])),
        ("l", pa.list_(pa.string())),
    ]
)
FLOATS = st.floats(allow_nan=False, allow_infinity=False)
ROWS = st.lists(
    st.fixed_dictionaries(
        {
            "id": st.integers(-(2**63), 2**63 - 1),
            "s": st.none() | TRICKY,
            "f": st.none() | FLOATS,
            "b": st.none() | st.booleans(),
            "at": st.none()
            | st.datetimes(timezones=st.just(datetime.UTC), min_value=datetime.datetime(1900, 1, 1)),
            "d": st.none() | st.decimals(places=2, min_value=-(10**7), max_value=10**7, allow_nan=False),
            "o": st.none()
            | st.fixed_dictionaries(
                {
                    "a": st.none() | TRICKY,
                    "n": st.none() | st.integers(0, 9),
                    "deep": st.none() | st.just({"x": "y"}),
                }
            ),
            "l": st.none() | st.lists(st.none() | TRICKY, max_size=3),
        }
    ),
    min_size=1,
    max_size=8,
)


@given(TRICKY)
@settings(max_examples=3000, deadline=None)
def test_what_arrow_decides_is_what_the_renderer_writes(text: str) -> None:
    strings = pa.array([text], pa.string())
    if surely_bare(strings)[0].as_py():
        assert bare_string(text), text
    if surely_quoted(strings)[0].as_py():
        assert render_value("k", text)[0] == f'k: "{text}"\n', text


@given(ROWS, st.sampled_from(["id", "s", None]))
@settings(max_examples=300, deadline=None)
def test_render_column_is_render_record_row_by_row(rows: list[dict[str, Any]], title_key: str | None) -> None:
    table = pa.Table.from_pylist(rows, schema=SCHEMA)
    rendered = render_column(table, title_key=title_key).to_pylist()
    expected = [render_record(row, title=title_of(row, title_key)) for row in json_rows(table)]
    assert rendered == expected


def test_values_render_as_the_table_stores_them() -> None:
    row = {
        "id": 1,
        "s": "x",
        "f": 2.0,
        "b": None,
        "at": datetime.datetime(2026, 1, 5, 9, 30, tzinfo=datetime.UTC),
        "d": decimal.Decimal("1.50"),
        "o": {"a": None, "n": 3, "deep": None},
        "l": [],
    }
    (text,) = render_column(pa.Table.from_pylist([row], schema=SCHEMA), title_key="id").to_pylist()
    assert parse_records(text) == [
        {
            "id": 1,
            "s": "x",
            "f": 2.0,
            "b": None,
            "at": "2026-01-05T09:30:00.000000Z",
            "d": "1.50",
            "o": {"a": None, "n": 3, "deep": None},
            "l": [],
        }
    ]
    assert text.startswith("# 1\n\nid: 1\n")
