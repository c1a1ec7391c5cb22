"""tap-markdown-kv in-process: schema inference, incremental file selection, and its errors.

The tap is a separate distribution (taps/tap-markdown-kv); the project venv has its dependencies
(singer-sdk and this repository), so the package is imported from its folder.
"""

from __future__ import annotations

import datetime
import io
import json
import os
import sys
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "taps" / "tap-markdown-kv"))
from tap_markdown_kv.infer import infer_properties
from tap_markdown_kv.tap import TapMarkdownKV, TapMarkdownKVError

from target_iceberg_nessie.markdown_kv import render_document

T0 = datetime.datetime(2026, 3, 1, 12, 0, 0, 250000, tzinfo=datetime.UTC)


def write(path: Path, text: str, modified: datetime.datetime) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    micros = (modified - datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)) // datetime.timedelta(
        microseconds=1
    )
    os.utime(path, ns=(micros * 1000, micros * 1000))


def sync(config: dict[str, Any], state: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    out = io.StringIO()
    with redirect_stdout(out):
        TapMarkdownKV(config=config, state=state, setup_mapper=True).sync_all()
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_inferred_types_widen_numbers_and_keep_mixed_values_as_json_text() -> None:
    properties = infer_properties(
        [
            {"n": 1, "mixed": "a", "nested": {"a": 1}, "list": ["x"], "empty": {}, "nulls": None},
            {"n": 2.5, "mixed": 3, "nested": {"b": True}, "list": [], "empty": {}, "nulls": None},
        ]
    )
    assert properties == {
        "n": {"type": ["number", "null"]},
        "mixed": {},
        "nested": {
            "type": ["object", "null"],
            "properties": {"a": {"type": ["integer", "null"]}, "b": {"type": ["boolean", "null"]}},
        },
        "list": {"type": ["array", "null"], "items": {"type": ["string", "null"]}},
        "empty": {"type": ["object", "null"]},
        "nulls": {},
    }


def test_sync_reads_oldest_file_first_and_skips_files_not_newer_than_the_bookmark(tmp_path: Path) -> None:
    write(tmp_path / "b.md", render_document([{"id": 2}]), T0 + datetime.timedelta(seconds=1))
    write(tmp_path / "a.mdkv", render_document([{"id": 1, "title_like": "x"}]), T0)
    write(tmp_path / "skip.txt", "not matched", T0)
    config = {"streams": [{"name": "things", "path": str(tmp_path), "title_property": "heading"}]}

    messages = sync(config)
    records = [m["record"] for m in messages if m["type"] == "RECORD"]
    assert records == [
        {
            "id": 1,
            "title_like": "x",
            "heading": "Record 1",
            "_sdc_source_file": str(tmp_path / "a.mdkv"),
            "_sdc_record_index": 0,
            "_sdc_modified_at": "2026-03-01T12:00:00.250000+00:00",
        },
        {
            "id": 2,
            "heading": "Record 1",
            "_sdc_source_file": str(tmp_path / "b.md"),
            "_sdc_record_index": 0,
            "_sdc_modified_at": "2026-03-01T12:00:01.250000+00:00",
        },
    ]
    schema = next(m for m in messages if m["type"] == "SCHEMA")
    assert schema["bookmark_properties"] == ["_sdc_modified_at"]
    assert schema["schema"]["properties"]["_sdc_modified_at"] == {"type": ["string"], "format": "date-time"}
    state = [m for m in messages if m["type"] == "STATE"][-1]["value"]
    assert state["bookmarks"]["things"]["replication_key_value"] == "2026-03-01T12:00:01.250000+00:00"

    again = sync(config, state=state)
    assert [m for m in again if m["type"] == "RECORD"] == [], "no file is newer than the bookmark"
    write(tmp_path / "a.mdkv", render_document([{"id": 1}, {"id": 3}]), T0 + datetime.timedelta(minutes=5))
    changed = [m["record"]["id"] for m in sync(config, state=state) if m["type"] == "RECORD"]
    assert changed == [1, 3], "the changed file is read again whole"


def test_a_declared_schema_is_used_as_given(tmp_path: Path) -> None:
    write(tmp_path / "a.md", render_document([{"id": "7"}]), T0)
    schema = {"properties": {"id": {"type": ["string"]}, "extra": {"type": ["integer", "null"]}}}
    config = {"streams": [{"name": "s", "path": str(tmp_path), "schema": schema, "key_properties": ["id"]}]}
    messages = sync(config)
    declared = next(m for m in messages if m["type"] == "SCHEMA")
    assert declared["key_properties"] == ["id"]
    assert declared["schema"]["properties"]["extra"] == {"type": ["integer", "null"]}
    assert [m["record"]["id"] for m in messages if m["type"] == "RECORD"] == ["7"]


@pytest.mark.parametrize(
    ("streams", "files", "message"),
    [
        (
            [{"name": "s", "path": "{root}"}, {"name": "s", "path": "{root}"}],
            {},
            "stream names must be unique; given more than once: s",
        ),
        ([{"name": "s", "path": "{root}/missing"}], {}, "stream 's': path '{root}/missing' is not a folder"),
        ([{"name": "s", "path": "s3://bucket/x"}], {}, "only local folders are read"),
        ([{"name": "s", "path": "{root}", "schema": {"type": "object"}}], {}, "must be a JSON Schema object"),
        (
            [{"name": "s", "path": "{root}"}],
            {"bad.md": "# A\n\nid: 1\nno colon\n"},
            "stream 's': {root}/bad.md, line 4: expected 'key: value'",
        ),
        (
            [{"name": "s", "path": "{root}"}],
            {"r.md": "# A\n\n_sdc_source_file: x\n"},
            "stream 's': {root}/r.md, line 1: key '_sdc_source_file' is set by the tap",
        ),
        (
            [{"name": "s", "path": "{root}", "title_property": "id"}],
            {"r.md": "# A\n\nid: 1\n"},
            "key 'id' is set by the tap; rename it in the file (or choose another title_property)",
        ),
    ],
)
def test_bad_configuration_and_files_are_named(
    tmp_path: Path, streams: list[dict[str, Any]], files: dict[str, str], message: str
) -> None:
    for name, text in files.items():
        write(tmp_path / name, text, T0)
    config = {"streams": json.loads(json.dumps(streams).replace("{root}", str(tmp_path)))}
    with pytest.raises(TapMarkdownKVError) as raised:
        sync(config)
    assert message.replace("{root}", str(tmp_path)) in str(raised.value)


def test_a_file_that_is_not_utf8_is_named(tmp_path: Path) -> None:
    (tmp_path / "latin1.md").write_bytes("# A\n\nname: Zoë\n".encode("latin-1"))
    with pytest.raises(TapMarkdownKVError, match=r"latin1\.md is not UTF-8 text .* save it as UTF-8"):
        sync({"streams": [{"name": "s", "path": str(tmp_path)}]})
