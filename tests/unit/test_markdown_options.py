"""The `markdown_kv` setting: merging default and stream entries, and errors that name the fix."""

from __future__ import annotations

import json

import pytest

from target_iceberg_nessie.errors import ConfigError
from target_iceberg_nessie.markdown_options import (
    DEFAULT_COLUMN,
    DEFAULT_PATH,
    RawFilePattern,
    StreamPatterns,
    StringPattern,
    StructuredPattern,
    parse_setting,
)
from target_iceberg_nessie.markdown_store import path_part


def test_unset_means_no_pattern_for_any_stream() -> None:
    for value in (None, "", {}):
        assert parse_setting(value).for_stream("orders") == StreamPatterns()


def test_a_stream_entry_replaces_the_default_pattern_by_pattern() -> None:
    settings = parse_setting(
        {
            "default": {"string": True, "raw_file": {"per": "batch"}},
            "streams": {
                "orders": {"raw_file": False, "structured": {"column": "body", "shape": "row_per_kv"}},
                "quiet": None,
            },
        }
    )
    assert settings.for_stream("orders") == StreamPatterns(
        string=StringPattern(DEFAULT_COLUMN), structured=StructuredPattern("body", "row_per_kv")
    )
    assert settings.for_stream("other") == StreamPatterns(
        string=StringPattern(), raw_file=RawFilePattern(DEFAULT_PATH, per="batch")
    )
    assert settings.for_stream("quiet") == StreamPatterns()


def test_json_text_from_an_environment_variable_is_read() -> None:
    text = json.dumps({"streams": {"orders": {"string": {"column": "md"}}}})
    assert parse_setting(text).for_stream("orders").string == StringPattern("md")


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("{not json", "setting 'markdown_kv' must be a JSON object"),
        ({"stream": {}}, "setting 'markdown_kv' has unknown key(s) ['stream']; allowed: default, streams"),
        (
            {"streams": {"orders": {"strings": True}}},
            "'markdown_kv.streams.orders' has unknown key(s) ['strings']",
        ),
        (
            {"streams": {"orders": {"string": "yes"}}},
            "'markdown_kv.streams.orders.string' must be true, false",
        ),
        ({"streams": {"o": {"structured": True}}}, "'markdown_kv.streams.o.structured' needs 'column'"),
        ({"default": {"structured": {"column": "b", "shape": "tree"}}}, "shape' must be one of row_per_kv"),
        (
            {"streams": {"o": {"raw_file": {"per": "file"}}}},
            "'markdown_kv.streams.o.raw_file.per' must be one of",
        ),
        (
            {"streams": {"o": {"raw_file": {"path": "x/{run}/{batch}/{key}.md"}}}},
            "unknown placeholder(s) ['run']",
        ),
        ({"streams": {"o": {"raw_file": {"path": "x/{key}.md"}}}}, "lacks {batch}"),
        ({"streams": {"o": {"raw_file": {"path": "x/{batch}/{key}.txt"}}}}, "must end in .md or .mdkv"),
        ({"streams": {"o": {"raw_file": {"path": "../{batch}/{key}.md"}}}}, "must stay inside the warehouse"),
        ({"streams": {"o": {"string": {"column": 3}}}}, "'markdown_kv.streams.o.string.column' must be text"),
    ],
)
def test_bad_settings_name_the_path_and_the_fix(value: object, message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        parse_setting(value)
    assert message in str(raised.value)


def test_path_parts_cannot_leave_their_folder() -> None:
    assert path_part("../etc/passwd") == "%2E%2E%2Fetc%2Fpasswd"
    assert path_part("a b") == "a%20b"
    assert path_part(42) == "42"
