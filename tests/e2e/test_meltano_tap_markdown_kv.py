"""`meltano run tap-markdown-kv target-iceberg-nessie` on a folder of Markdown-KV files, twice.

The first run loads every file; then one file changes (a value, a new record, a new key) and the
second run loads that file alone, again whole, into the same table. Every row is compared with the
records the files hold, read back through pyiceberg and through DuckDB.
"""

from __future__ import annotations

import datetime
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from _commands import Finished, MeltanoProject, copy_meltano_project
from conftest import Lake, read_duckdb, read_pyiceberg

from target_iceberg_nessie.markdown_kv import parse_document, render_document

EXTRACTOR = "tap-markdown-kv"
LOADER = "target-iceberg-nessie"
TABLE = "default.raw.orders"
STATE_ID = "dev:tap-markdown-kv-to-target-iceberg-nessie"
READERS: dict[str, Callable[[Lake, str], list[dict[str, Any]]]] = {
    "pyiceberg": read_pyiceberg,
    "duckdb": read_duckdb,
}
T0 = datetime.datetime(2026, 1, 5, 9, 30, 0, 123456, tzinfo=datetime.UTC)

FIRST_FILE = [
    {
        "id": 1001,
        "customer": "Ada Lovelace",
        "total": 18.5,
        "paid": True,
        "status": "true",  # a string that looks like a boolean stays a string
        "note": "Leave at the door.\nRing twice: once, then again.",
        "tags": ["gift", "42"],
        "coupon": None,
        "shipping": {"city": "Paris", "zip": "01234"},
    },
    {
        "id": 1002,
        "customer": "Grace Hopper",
        "total": 7.0,
        "paid": False,
        "status": "shipped",
        "note": "",
        "tags": [],
        "coupon": None,
        "shipping": {"city": "Zürich", "zip": "8001"},
    },
]
SECOND_FILE = [
    {
        "id": 1003,
        "customer": "שרה כהן",
        "total": 120.25,
        "paid": True,
        "status": "# not a heading",
        "note": "- not a list item",
        "tags": ["a: b"],
        "coupon": None,
        "shipping": {"city": "Tel Aviv", "zip": "6100000"},
    }
]
# Written by hand, as a person (or a model) would: comments are not part of the grammar, so none.
HAND_WRITTEN = """\
# Order 1004

id: 1004
customer: Zoë Ballard
total: 3
paid: false
status: "null"
note:
```
Two lines
and a ```` run of backticks inside
```
tags:
- x
coupon: null

## shipping

city: Lyon
zip: "69001"
"""
CHANGED_SECOND_FILE = [
    {**SECOND_FILE[0], "total": 99.75, "gift_wrap": True},
    {
        "id": 1005,
        "customer": "Late Order",
        "total": 1.5,
        "paid": False,
        "status": "new",
        "note": "added in the second run",
        "tags": ["late"],
        "coupon": None,
        "shipping": {"city": "Oslo", "zip": "0150"},
        "gift_wrap": False,
    },
]


@dataclass(frozen=True)
class Runs:
    project: MeltanoProject
    files: dict[str, Path]
    first: Finished
    second: Finished
    rows_after_first: dict[str, list[dict[str, Any]]]  # reader -> rows
    rows_after_second: dict[str, list[dict[str, Any]]]
    state_after_first: dict[str, Any]


def write(path: Path, text: str, modified: datetime.datetime) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    ns = (modified - datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)) // datetime.timedelta(microseconds=1)
    os.utime(path, ns=(ns * 1000, ns * 1000))


def meltano_state(project: MeltanoProject) -> dict[str, Any]:
    shown = project.meltano("state", "get", STATE_ID)
    assert shown.returncode == 0, shown.explain()
    state: dict[str, Any] = json.loads(shown.stdout)["singer_state"]
    return state


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Runs:
    root = tmp_path_factory.mktemp("meltano-markdown-kv")
    project = copy_meltano_project(root / "project", Lake(root / "lake"), extractors=(EXTRACTOR,))
    data = root / "data"
    files = {
        "first": data / "orders-1.md",
        "second": data / "more" / "orders-2.mdkv",
        "hand": data / "orders-3.md",
    }
    write(files["first"], render_document(FIRST_FILE, title_key="id"), T0)
    write(
        files["second"],
        render_document(SECOND_FILE, front_matter={"title": "Orders from Israel"}, title_key="id"),
        T0 + datetime.timedelta(hours=1),
    )
    write(files["hand"], HAND_WRITTEN, T0 + datetime.timedelta(hours=2))
    (data / "notes.txt").write_text("not matched by the globs: no records\n", encoding="utf-8")
    streams = [{"name": "orders", "path": str(data), "key_properties": ["id"], "title_property": "title"}]
    env = {"TAP_MARKDOWN_KV_STREAMS": json.dumps(streams)}

    first = project.meltano_run(EXTRACTOR, LOADER, env=env)
    if first.returncode != 0:
        pytest.fail(f"the first meltano run failed\n{first.explain()}")
    after_first = {name: read(project.lake, TABLE) for name, read in READERS.items()}
    state = meltano_state(project)

    changed = render_document(
        CHANGED_SECOND_FILE, front_matter={"title": "Orders from Israel"}, title_key="id"
    )
    write(files["second"], changed, T0 + datetime.timedelta(days=1))
    second = project.meltano_run(EXTRACTOR, LOADER, env=env)
    if second.returncode != 0:
        pytest.fail(f"the second meltano run failed\n{second.explain()}")
    after_second = {name: read(project.lake, TABLE) for name, read in READERS.items()}
    return Runs(project, files, first, second, after_first, after_second, state)


def expected_rows(
    path: Path, records: list[dict[str, Any]], titles: list[str], modified: datetime.datetime
) -> list[dict[str, Any]]:
    """The rows the tap makes of one file's records: the record, its heading and the file's facts."""
    return [
        {
            **record,
            "title": titles[index],
            "_sdc_source_file": str(path),
            "_sdc_record_index": index,
            "_sdc_modified_at": modified,
        }
        for index, record in enumerate(records)
    ]


def ids(records: list[dict[str, Any]]) -> list[str]:
    return [str(record["id"]) for record in records]  # render_document(..., title_key="id")


def comparable(rows: list[dict[str, Any]], columns: set[str]) -> list[dict[str, Any]]:
    """Rows restricted to `columns` (absent ones as None), in a stable order."""
    projected = [{c: row.get(c) for c in sorted(columns)} for row in rows]
    return sorted(
        projected, key=lambda r: (r["_sdc_modified_at"], r["_sdc_source_file"], r["_sdc_record_index"])
    )


def first_run_rows(runs: Runs) -> list[dict[str, Any]]:
    hand = parse_document(HAND_WRITTEN).records[0].data
    hour = datetime.timedelta(hours=1)
    return [
        *expected_rows(runs.files["first"], FIRST_FILE, ids(FIRST_FILE), T0),
        *expected_rows(runs.files["second"], SECOND_FILE, ids(SECOND_FILE), T0 + hour),
        *expected_rows(runs.files["hand"], [hand], ["Order 1004"], T0 + 2 * hour),
    ]


def normalise(row: dict[str, Any]) -> dict[str, Any]:
    """What the lake gives back for a record's values: nested objects as dicts, lists as lists."""
    out = dict(row)
    modified = out.get("_sdc_modified_at")
    if isinstance(modified, datetime.datetime):
        out["_sdc_modified_at"] = modified.astimezone(datetime.UTC)
    return out


@pytest.mark.parametrize("reader", sorted(READERS))
def test_first_run_loads_every_record_of_every_file(runs: Runs, reader: str) -> None:
    expected = first_run_rows(runs)
    rows = [normalise(r) for r in runs.rows_after_first[reader]]
    columns = set().union(*(r.keys() for r in expected))
    assert len(rows) == len(expected) == 4
    assert comparable(rows, columns) == comparable(expected, columns)
    assert "gift_wrap" not in rows[0], "no column the files did not have yet"


@pytest.mark.parametrize("reader", sorted(READERS))
def test_second_run_appends_the_changed_file_alone_read_again_whole(runs: Runs, reader: str) -> None:
    changed = expected_rows(
        runs.files["second"], CHANGED_SECOND_FILE, ids(CHANGED_SECOND_FILE), T0 + datetime.timedelta(days=1)
    )
    expected = [*first_run_rows(runs), *changed]
    rows = [normalise(r) for r in runs.rows_after_second[reader]]
    columns = set().union(*(r.keys() for r in expected)) | {"gift_wrap"}
    assert len(rows) == len(expected) == 6
    assert comparable(rows, columns) == comparable(expected, columns)
    by_id: dict[int, list[dict[str, Any]]] = {}
    for row in rows:
        by_id.setdefault(row["id"], []).append(row)
    totals = sorted(r["total"] for r in by_id[1003])
    assert totals == [99.75, 120.25], "append mode: the old and the new version of the changed record"
    assert by_id[1001][0]["gift_wrap"] is None, "older rows read the new column as NULL"


def test_values_keep_their_types(runs: Runs) -> None:
    rows = {r["id"]: r for r in runs.rows_after_first["pyiceberg"]}
    assert rows[1001]["status"] == "true"
    assert rows[1001]["paid"] is True
    assert isinstance(rows[1002]["total"], float)
    assert rows[1001]["shipping"] == {"city": "Paris", "zip": "01234"}
    assert rows[1004]["status"] == "null"
    assert rows[1004]["note"] == "Two lines\nand a ```` run of backticks inside"
    assert rows[1004]["total"] == 3.0, "an integer and a number in one key widen to number"
    assert rows[1003]["customer"] == "שרה כהן"
    assert rows[1002]["note"] == ""
    assert rows[1001]["coupon"] is None


def test_bookmarks_are_the_newest_file_time(runs: Runs) -> None:
    first = runs.state_after_first["bookmarks"]["orders"]
    assert first["replication_key"] == "_sdc_modified_at"
    newest = T0 + datetime.timedelta(hours=2)
    assert datetime.datetime.fromisoformat(first["replication_key_value"]) == newest
    second = meltano_state(runs.project)["bookmarks"]["orders"]
    assert datetime.datetime.fromisoformat(second["replication_key_value"]) == T0 + datetime.timedelta(days=1)


def test_a_malformed_file_fails_the_run_naming_file_and_line(runs: Runs, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    write(broken / "bad.md", "# Order 1\n\nid: 1\nno colon on this line\n", T0)
    streams = [{"name": "broken", "path": str(broken)}]
    failed = runs.project.meltano_run(EXTRACTOR, LOADER, env={"TAP_MARKDOWN_KV_STREAMS": json.dumps(streams)})
    assert failed.returncode != 0
    assert f"stream 'broken': {broken / 'bad.md'}, line 4: expected 'key: value'" in failed.stderr, (
        failed.explain()
    )
