"""Render JSON-like records as Markdown-KV (grammar: docs/markdown-kv.md).

One record is one heading; its scalars and arrays are `key: value` lines, its non-empty objects are
sub-headings one level deeper. Below heading level 6, objects are written inline as JSON.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any, Final

import yaml

from target_iceberg_nessie.markdown_kv._lexical import (
    bare_string,
    fence_for,
    fenceable,
    inline_json,
    key_text,
    quote,
    title_text,
)
from target_iceberg_nessie.markdown_kv.errors import MarkdownKVRenderError
from target_iceberg_nessie.markdown_kv.parse import MAX_HEADING_LEVEL

DEFAULT_TITLE: Final = "Record"
_CHECKED_INT_BITS: Final = 14_000  # below Python's default int-to-text limit of 4300 digits


def render_record(record: Mapping[str, Any], *, title: str | None = None, level: int = 1) -> str:
    """One record as a section whose heading (`level` hashes) carries `title` ("Record" if None)."""
    if not 1 <= level <= MAX_HEADING_LEVEL:
        raise ValueError(f"level must be 1 to {MAX_HEADING_LEVEL} (Markdown has six heading levels): {level}")
    shown = DEFAULT_TITLE if title is None else title
    out: list[str] = []
    _section(out, record, "#" * level + " " + title_text(shown), level, f"record {shown!r}")
    return "".join(out)


def render_value(key: str, value: Any, *, level: int = 1, path: str = "record") -> tuple[str, str]:
    """One key-value of a record whose heading has `level` hashes, exactly as `render_record` writes
    it: (its line(s) among the record's fields, its sub-section after them); one of them is empty.
    For renderers that build a record from its columns (the loader's per-batch rendering)."""
    out: list[str] = []
    if type(value) is not str and isinstance(value, Mapping) and value and level < MAX_HEADING_LEVEL:
        _section(out, value, "#" * (level + 1) + " " + key_text(key), level + 1, f"{path}.{key}")
        return "", "".join(out)
    _field(out, key_text(key), value, path if type(value) is str else f"{path}.{key}")
    return "".join(out), ""


def field_prefix(key: str) -> str:
    """The text a key's line starts with (`key: `, the key quoted when it must be)."""
    return key_text(key) + ": "


__all__ = ["field_prefix", "key_text", "render_document", "render_record", "render_value"]


def render_document(
    records: Iterable[Mapping[str, Any]],
    *,
    front_matter: Mapping[str, Any] | None = None,
    title_key: str | None = None,
) -> str:
    """Records as one document: optional YAML front matter, then one `# title` section per record.

    A record's title is the text of its `title_key` value when it has a scalar one, else
    `Record <n>` (1-based). The title is only a label: the key stays among the record's lines.
    """
    out: list[str] = []
    if front_matter is not None:
        out += ["---\n", _front_matter(front_matter), "---\n\n"]
    for number, record in enumerate(records, start=1):
        title = _title_of(record, title_key, number)
        _section(out, record, "# " + title_text(title), 1, f"record {number}")
    return "".join(out)


def _front_matter(front_matter: Mapping[str, Any]) -> str:
    if not isinstance(front_matter, Mapping):
        raise MarkdownKVRenderError(
            f"front matter must be a mapping, not {type(front_matter).__name__}", path="front matter"
        )
    data = dict(front_matter)
    # PyYAML writes some characters raw that its reader then takes for line breaks (U+0085, U+2028):
    # keep the readable form only when it reads back the same, else escape everything non-ASCII.
    for allow_unicode in (True, False):
        try:
            text: str = yaml.safe_dump(
                data, sort_keys=False, allow_unicode=allow_unicode, default_flow_style=False, width=1 << 30
            )
        except yaml.YAMLError as error:
            raise MarkdownKVRenderError(f"YAML cannot represent it: {error}", path="front matter") from error
        if yaml.safe_load(text) == data:
            return text
    raise MarkdownKVRenderError(
        "YAML does not read it back as written (keep to strings, numbers, booleans, null, lists and "
        "mappings)",
        path="front matter",
    )


def _title_of(record: Mapping[str, Any], title_key: str | None, number: int) -> str:
    if title_key is not None:
        value = record.get(title_key)
        if isinstance(value, str) and value != "":
            return value
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, int | float):
            return _number(value, f"record {number}.{title_key}")
    return f"{DEFAULT_TITLE} {number}"


def _section(out: list[str], record: Mapping[str, Any], heading: str, level: int, path: str) -> None:
    if not isinstance(record, Mapping):
        raise MarkdownKVRenderError(
            f"a record must be a mapping of keys to values, not {type(record).__name__}", path=path
        )
    out.append(heading + "\n\n")
    nested: list[tuple[str, Mapping[str, Any]]] = []
    lines = len(out)
    for key, value in record.items():
        if type(key) is not str and not isinstance(key, str):
            raise MarkdownKVRenderError(
                f"key {key!r} is a {type(key).__name__}; Markdown-KV keys are strings", path=path
            )
        if type(value) is str:  # the common case first: no ABC checks
            _field(out, key_text(key), value, path)
        elif isinstance(value, Mapping) and value and level < MAX_HEADING_LEVEL:
            nested.append((key, value))
        else:
            _field(out, key_text(key), value, f"{path}.{key}")
    if len(out) > lines:
        out.append("\n")
    for key, value in nested:
        _section(out, value, "#" * (level + 1) + " " + key_text(key), level + 1, f"{path}.{key}")


def _field(out: list[str], key: str, value: Any, path: str) -> None:
    if type(value) is str:
        if bare_string(value):
            out.append(f"{key}: {value}\n")
        elif fenceable(value):
            fence = fence_for(value)
            out.append(f"{key}:\n{fence}\n{value}\n{fence}\n")
        else:
            out.append(f"{key}: {quote(value)}\n")
    elif isinstance(value, list | tuple) and value:
        out.append(f"{key}:\n")
        for index, item in enumerate(value):
            _item(out, item, f"{path}[{index}]")
    else:
        out.append(f"{key}: {_inline(value, path)}\n")


def _item(out: list[str], item: Any, path: str) -> None:
    if isinstance(item, Mapping) and item:
        prefix = "- "
        for key, value in item.items():
            if not isinstance(key, str):
                raise MarkdownKVRenderError(
                    f"key {key!r} is a {type(key).__name__}; Markdown-KV keys are strings", path=path
                )
            out.append(f"{prefix}{key_text(key)}: {_inline(value, f'{path}.{key}')}\n")
            prefix = "  "
    else:
        out.append(f"- {_inline(item, path)}\n")


def _inline(value: Any, path: str) -> str:
    """A value on the rest of one line: a literal, a bare or quoted string, or inline JSON."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value if bare_string(value) else quote(value)
    if isinstance(value, int | float):
        return _number(value, path)
    if isinstance(value, Mapping | list | tuple):
        _check_json(value, path)
        return inline_json(value)
    raise MarkdownKVRenderError(_not_json(value), path=path)


def _number(value: float, path: str) -> str:
    if isinstance(value, int):
        try:
            return str(int(value))  # int subclasses (IntEnum) print as their number
        except ValueError as error:  # over Python's int-to-text digit limit (4300 by default)
            raise MarkdownKVRenderError(f"{error}; write it as a string", path=path) from error
    if not math.isfinite(value):
        raise MarkdownKVRenderError(
            f"{value!r} is not a JSON number; write it as a string or null", path=path
        )
    return repr(float(value))


def _check_json(value: Any, path: str) -> None:
    """Inline JSON must hold only JSON types: json.dumps would turn int keys into text silently."""
    if value is None or isinstance(value, str | bool):
        return
    if isinstance(value, int):
        if value.bit_length() > _CHECKED_INT_BITS:
            _number(value, path)  # json.dumps would fail past the digit limit without a path
    elif isinstance(value, float):
        _number(value, path)
    elif isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                raise MarkdownKVRenderError(
                    f"key {key!r} is a {type(key).__name__}; Markdown-KV keys are strings", path=path
                )
            _check_json(item, f"{path}.{key}")
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            _check_json(item, f"{path}[{index}]")
    else:
        raise MarkdownKVRenderError(_not_json(value), path=path)


def _not_json(value: Any) -> str:
    return (
        f"a {type(value).__name__} is not JSON-like data (null, boolean, number, string, array, "
        "object); convert it first, e.g. a date to its ISO text"
    )
