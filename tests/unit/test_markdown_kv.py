"""Markdown-KV (docs/markdown-kv.md): any JSON-like record renders and parses back to itself; the
documented grammar reads as documented; each malformed construct gets its own error and line."""

from __future__ import annotations

import json
from datetime import date
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from target_iceberg_nessie.markdown_kv import (
    MarkdownKVRenderError,
    MarkdownKVSyntaxError,
    document_level,
    parse_document,
    parse_records,
    render_document,
    render_record,
    rows_per_kv,
)

# Strings a naive format gets wrong: literals, numbers, Markdown line starts, separators, fences,
# whitespace at the edges, control and invisible characters, combining marks and right-to-left text.
TRICKY = [
    "", " ", "  padded  ", "\t", "true", "false", "null", "True", "NULL", "None", "42", "-7", "3.14",
    "1e5", "01234", "1_000", ".5", "+1", "nan", "inf", "-Infinity", "٤٢", "# heading", "## sub",
    "#", "- item", "-", "--", "---", "* star", "+ plus", "> quote", "1. first", "2) second", "| a |",
    "a: b", "key:", ":", "a:b", "http://example.com/a:b", '"quoted"', '"', "\\", "\\n", "C:\\path\\",
    "[1, 2]", "{}", "[]", "{\"a\": 1}", "```", "````", "~~~", "<b>", "=", "x #", "C#", "line\nbreak",
    "trailing\n", "\n", "\n\n", "a\r\nb", "\r", "tab\there", "e\u0301", "\u0301start", "שלום עולם",
    "مرحبا: عالم", "\u202eevil\u202c", "\u200f", "\u2028", "nul\x00byte", "\x85", "\ufeffbom",
    "emoji 🧪", "ﬁ ligature", "  \n  indented\n", "```\ncode\n```", "`", "a ``` b",
]  # fmt: skip

texts = st.one_of(
    st.sampled_from(TRICKY), st.text(max_size=24), st.text(st.characters(codec="utf-8"), max_size=24)
)
long_texts = st.lists(st.one_of(st.sampled_from(TRICKY), st.text(max_size=60)), max_size=8).map("\n".join)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    texts,
    long_texts,
)
keys = st.one_of(st.sampled_from(TRICKY), st.text(max_size=12))


def json_values() -> st.SearchStrategy[Any]:
    return st.recursive(
        scalars,
        lambda children: st.one_of(
            st.lists(children, max_size=3), st.dictionaries(keys, children, max_size=3)
        ),
        max_leaves=10,
    )


records = st.dictionaries(keys, json_values(), max_size=6)
# Deep enough to pass heading level 6, where objects are written as inline JSON.
deep = st.recursive(
    scalars, lambda children: st.dictionaries(keys, children, min_size=1, max_size=2), max_leaves=12
)

BOUNDED = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def same(a: Any, b: Any) -> bool:
    """Equal as JSON scalars: the type kept too (1 is not 1.0, "1" is not 1, 1 is not True)."""
    return type(a) is type(b) and a == b


def same_data(a: Any, b: Any) -> bool:
    """Equal as JSON objects (key order aside: nested objects follow their record's lines)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_data(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same_data(x, y) for x, y in zip(a, b, strict=True))
    return same(a, b)


@BOUNDED
@given(st.lists(records, max_size=3), st.one_of(st.none(), st.sampled_from(TRICKY)))
def test_any_records_render_and_parse_back(data: list[dict[str, Any]], title_key: str | None) -> None:
    text = render_document(data, title_key=title_key)
    parsed = parse_records(text)
    assert len(parsed) == len(data)
    for original, back in zip(data, parsed, strict=True):
        assert same_data(back, original), text


@BOUNDED
@given(deep, st.integers(min_value=1, max_value=6), texts)
def test_deep_objects_past_heading_level_six_round_trip(value: Any, level: int, title: str) -> None:
    record = {"root": value}
    text = render_record(record, title=title, level=level)
    document = parse_document(text)
    assert [r.title for r in document.records] == [title]
    assert document.record_level == level
    assert same_data(document.records[0].data, record), text


@BOUNDED
@given(
    st.dictionaries(
        st.text(max_size=10), st.one_of(st.none(), st.booleans(), st.integers(), texts), max_size=4
    ),
    st.lists(records, max_size=2),
)
def test_front_matter_round_trips(front_matter: dict[str, Any], data: list[dict[str, Any]]) -> None:
    document = parse_document(render_document(data, front_matter=front_matter))
    assert document.front_matter == front_matter
    assert [r.data for r in document.records] == data


@BOUNDED
@given(st.lists(records, max_size=3))
def test_rows_per_kv_hold_every_value_with_its_exact_json(data: list[dict[str, Any]]) -> None:
    rows = rows_per_kv(parse_document(render_document(data)), doc_id="doc")
    assert [row.ord for row in rows] == list(range(len(rows)))
    rebuilt: list[dict[str, Any]] = [{} for _ in data]
    for row in rows:
        target = rebuilt[row.record_ord]
        for key in row.section_path:
            target = target.setdefault(key, {})
        target[row.key] = json.loads(row.value_json)
        assert row.value_text == (
            target[row.key]
            if isinstance(target[row.key], str)
            else (None if target[row.key] is None else row.value_json)
        )
    assert all(same_data(back, original) for back, original in zip(rebuilt, data, strict=True))


EXAMPLE = """\
---
title: Orders, November
source: shop
---

# Order 1001

id: 1001
customer: Ada Lovelace
paid: true
total: 18.5
discount: null
coupon: ""
zip: "01234"
status: "true"
note:
```
Leave at the door.
Ring twice.
```
tags:
- gift
- "42"
items:
- sku: A-1
  qty: 2
  dims: {"w": 10, "h": 4}
- sku: B-2
  qty: 1
"a: key": C:\\path
links: []

## shipping

city: Paris
lines: ["12 rue X", "75001"]

### geo

lat: 48.86

# "Order #1002"

id: 1002
"""


def test_the_documented_example_reads_as_documented() -> None:
    document = parse_document(EXAMPLE)
    assert document.front_matter == {"title": "Orders, November", "source": "shop"}
    assert document.title == "Orders, November"
    assert [(r.title, r.line) for r in document.records] == [("Order 1001", 6), ("Order #1002", 42)]
    first = document.records[0].data
    assert first == {
        "id": 1001,
        "customer": "Ada Lovelace",
        "paid": True,
        "total": 18.5,
        "discount": None,
        "coupon": "",
        "zip": "01234",
        "status": "true",
        "note": "Leave at the door.\nRing twice.",
        "tags": ["gift", "42"],
        "items": [{"sku": "A-1", "qty": 2, "dims": {"w": 10, "h": 4}}, {"sku": "B-2", "qty": 1}],
        "a: key": "C:\\path",
        "links": [],
        "shipping": {"city": "Paris", "lines": ["12 rue X", "75001"], "geo": {"lat": 48.86}},
    }
    assert isinstance(first["total"], float)
    assert isinstance(first["id"], int)
    assert document.records[1].data == {"id": 1002}


def test_rendering_is_the_documented_layout() -> None:
    record = {
        "id": 7,
        "name": "Ada",
        "address": {"city": "Paris"},
        "note": "two\nlines",
        "tags": ["x", "true"],
        "when": "",
        "gone": None,
    }
    assert render_record(record, title="Customer 7") == (
        "# Customer 7\n\n"
        'id: 7\nname: Ada\nnote:\n```\ntwo\nlines\n```\ntags:\n- x\n- "true"\nwhen: ""\ngone: null\n\n'
        "## address\n\ncity: Paris\n\n"
    )
    document = render_document([{"id": 1}, {"id": 2}], front_matter={"source": "crm"}, title_key="id")
    assert document == "---\nsource: crm\n---\n\n# 1\n\nid: 1\n\n# 2\n\nid: 2\n\n"
    assert render_document([{"a": 1}]) == "# Record 1\n\na: 1\n\n"


@pytest.mark.parametrize(
    ("value", "line"),
    [
        ("plain words", "k: plain words"),
        ("true", 'k: "true"'),
        ("42", 'k: "42"'),
        ("", 'k: ""'),
        (" x", 'k: " x"'),
        ("# h", 'k: "# h"'),
        ("- i", 'k: "- i"'),
        ("a: b", 'k: "a: b"'),
        ("C:\\dir", "k: C:\\dir"),
        ('say "hi"', 'k: say "hi"'),
        ("tab\tin", 'k: "tab\\tin"'),
        ("\u202eevil", 'k: "\\u202eevil"'),
        ("שלום", "k: שלום"),
        (True, "k: true"),
        (-0.5, "k: -0.5"),
        (10**20, "k: 100000000000000000000"),
        ({}, "k: {}"),
        ([], "k: []"),
    ],
)
def test_how_a_value_is_written(value: Any, line: str) -> None:
    assert render_record({"k": value}) == f"# Record\n\n{line}\n\n"
    assert parse_records(render_record({"k": value})) == [{"k": value}]


@pytest.mark.parametrize(
    ("key", "written"),
    [("name", "name"), ("a:b", '"a:b"'), ("# x", '"# x"'), ("", '""'), ("- x", '"- x"'), ("x #", '"x #"')],
)
def test_how_a_key_is_written(key: str, written: str) -> None:
    assert render_record({key: 1}) == f"# Record\n\n{written}: 1\n\n"
    assert render_record({key: {"a": 1}}) == f"# Record\n\n## {written}\n\na: 1\n\n"


def test_lenient_reading_of_hand_written_documents() -> None:
    text = "\ufeff# A\r\n\r\nkey :  spaced value  \r\nn: -0\r\nf: 1E3\r\nk2:\r\n````text\r\nx\r\n`````\r\n"
    assert parse_records(text) == [{"key": "spaced value", "n": 0, "f": 1000.0, "k2": "x"}]
    assert parse_records("## Records at level 2\na: 1\n### sub\nb: 2\n## Next\n") == [
        {"a": 1, "sub": {"b": 2}},
        {},
    ]
    assert parse_records("") == []
    assert parse_document("---\n---\n").front_matter == {}


def test_flattened_shapes() -> None:
    document = parse_document(EXAMPLE)
    rows = rows_per_kv(document, doc_id="orders.md")
    geo = [r for r in rows if r.key == "lat"]
    assert [(r.record_title, r.section_path, r.value_text, r.value_json) for r in geo] == [
        ("Order 1001", ("shipping", "geo"), "48.86", "48.86")
    ]
    status = next(r for r in rows if r.key == "status")
    assert (status.value_text, status.value_json) == ("true", '"true"')
    discount = next(r for r in rows if r.key == "discount")
    assert (discount.value_text, discount.value_json) == (None, "null")
    level = document_level(document, doc_id="orders.md").to_dict()
    assert level["title"] == "Orders, November"
    assert json.loads(level["front_matter_json"]) == {"title": "Orders, November", "source": "shop"}
    assert [(s["path"], s["heading"], s["depth"]) for s in level["sections"]] == [
        ([], "Order 1001", 0),
        (["shipping"], "shipping", 1),
        (["shipping", "geo"], "geo", 2),
        ([], "Order #1002", 0),
    ]
    assert [f["key"] for f in level["sections"][1]["fields"]] == ["city", "lines"]


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("---\na: 1\n", 1, "front matter opened here is never closed"),
        ("---\na: [\n---\n", 2, "front matter is not valid YAML"),
        ("---\n- a\n---\n", 2, "front matter must be a YAML mapping"),
        ("a: 1\n", 1, "content before the first heading"),
        ("####### deep\n", 1, "at most 6 levels"),
        ("# \n", 1, "an empty heading"),
        ("# A\n#tag: 1\n", 2, "is not a heading (a space must follow"),
        ("## A\n# B\n", 2, "a level-1 heading above the records, which are level 2"),
        ("# A\n### B\n", 2, "a level-3 heading directly under a level-1 one"),
        ('# "A\n', 1, "the quoted heading is not closed"),
        ('# "A" b\n', 1, "the quoted heading is followed by ' b'"),
        ("# A\n  a: 1\n", 2, "unexpected indentation"),
        ("# A\n- x\n", 2, "a list item without a 'key:' line"),
        ("# A\n```\nx\n```\n", 2, "a fenced block without a 'key:' line"),
        ("# A\nno colon here\n", 2, "has no colon"),
        ("# A\n: 1\n", 2, "an empty key"),
        ('# A\n"a: 1\n', 2, "a quoted key is not closed"),
        ('# A\n"a" 1\n', 2, 'the quoted key "a" must be followed by'),
        ('# A\n"\\x": 1\n', 2, "the quoted key is not a valid JSON string"),
        ("# A\nurl:http://x\n", 2, "a space must follow the colon after key 'url'"),
        ('# A\na: "x" y\n', 2, "the quoted string is followed by ' y'"),
        ('# A\na: "x\n', 2, "the quoted string is not closed"),
        ("# A\na: [1, 2\n", 2, "is inline JSON, and this is not valid JSON"),
        ("# A\na: [NaN]\n", 2, "is inline JSON, and this is not valid JSON: NaN is not a JSON number"),
        ("# A\na: 1e999\n", 2, "too large for a 64-bit float; quote it"),
        ("# A\na: " + "9" * 5000 + "\n", 2, "limit (4300 digits) for integer string conversion"),
        ("# A\na:\nb: 1\n", 2, "key 'a' has no value"),
        ("# A\na:\n", 2, "key 'a' has no value"),
        ("# A\na:\n```\nx\n", 3, "the fenced block opened here is never closed (a line of 3"),
        ("# A\na:\n```x`y\nz\n```\n", 3, "info string cannot hold a backtick"),
        ("# A\na:\n- \n", 3, "an empty list item"),
        ("# A\na:\n- k:\n", 3, "key 'k' in a list item has no value"),
        ("# A\na:\n- k: 1\n   j: 2\n", 4, "indented by exactly two spaces"),
        ("# A\na:\n- k: 1\n  nope\n", 4, "this list item line has no colon"),
        ("# A\na:\n- k: 1\n  k: 2\n", 4, "duplicate key 'k' (first set on line 3)"),
        ("# A\na: 1\nb: 2\na: 3\n", 4, "duplicate key 'a' (first set on line 2)"),
        ("# A\na: 1\n## a\n", 3, "duplicate key 'a' (first set on line 2)"),
    ],
)
def test_each_malformed_construct_is_named_with_its_line(text: str, line: int, message: str) -> None:
    with pytest.raises(MarkdownKVSyntaxError) as raised:
        parse_document(text, source="in.md")
    assert raised.value.line == line, str(raised.value)
    assert message in str(raised.value)
    assert str(raised.value).startswith(f"in.md, line {line}: ")


@pytest.mark.parametrize(
    ("record", "path", "message"),
    [
        ({"a": float("nan")}, "record 1.a", "nan is not a JSON number"),
        ({"a": [1, {"b": float("inf")}]}, "record 1.a[1].b", "inf is not a JSON number"),
        ({"a": {1: "x"}}, "record 1.a", "key 1 is a int; Markdown-KV keys are strings"),
        ({"a": [date(2024, 1, 1)]}, "record 1.a[0]", "a date is not JSON-like data"),
        ({"a": b"bytes"}, "record 1.a", "a bytes is not JSON-like data"),
        ({"a": 10**5000}, "record 1.a", "limit (4300 digits) for integer string conversion"),
        ({"a": [{"b": 10**5000}]}, "record 1.a[0].b", "limit (4300 digits) for integer string conversion"),
    ],
)
def test_data_that_is_not_json_like_is_refused_with_its_path(
    record: dict[Any, Any], path: str, message: str
) -> None:
    with pytest.raises(MarkdownKVRenderError) as raised:
        render_document([record])
    assert raised.value.path == path
    assert message in str(raised.value)


def test_render_checks_level_records_and_front_matter() -> None:
    with pytest.raises(ValueError, match="level must be 1 to 6"):
        render_record({}, level=7)
    with pytest.raises(MarkdownKVRenderError, match="record 1: a record must be a mapping"):
        render_document([["not", "a", "record"]])  # type: ignore[list-item]
    with pytest.raises(MarkdownKVRenderError, match="front matter: front matter must be a mapping"):
        render_document([], front_matter=["x"])  # type: ignore[arg-type]


def test_a_batch_of_5000_records_round_trips() -> None:
    batch = [
        {"id": n, "name": f"Customer {n}", "email": f"c{n}@example.com", "score": n / 7, "active": n % 2 == 0,
         "tags": ["a", "b"], "address": {"city": "Paris", "zip": "75001"}, "note": "one\ntwo"}
        for n in range(5000)
    ]  # fmt: skip
    text = render_document(batch, title_key="id")
    assert parse_records(text) == batch
    assert text.count("\n# ") == len(batch) - 1
