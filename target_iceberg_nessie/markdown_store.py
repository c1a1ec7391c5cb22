"""Markdown-KV storage patterns, per staged batch (on the staging thread, never per input line).

* `render_column`: the `string` pattern's column, one Markdown-KV record per row.
* `DocumentWriter`: the `raw_file` pattern's documents, at deterministic paths (batch id + key), so
  a retried checkpoint rewrites the same files; the commit's snapshot summary lists them.
* `structured_rows`: the `structured` pattern's rows of `<stream>__kv` and `<stream>__doc`.

Values are rendered as the table stores them (after the contract's checks and schema policy):
timestamps as ISO 8601 text in UTC, dates and times as ISO text, decimals as their exact text,
JSON-text columns as the JSON values they hold.
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, date, datetime, time
from decimal import Decimal
from typing import Any, Final
from urllib.parse import quote

import orjson
import pyarrow as pa
import pyarrow.compute as pc
from pyiceberg.io import FileIO

from target_iceberg_nessie import properties as props
from target_iceberg_nessie.errors import BadInputError
from target_iceberg_nessie.markdown_kv import (
    MarkdownKVError,
    document_level,
    parse_document,
    render_document,
    render_record,
    rows_per_kv,
)
from target_iceberg_nessie.markdown_kv.parse import MAX_HEADING_LEVEL
from target_iceberg_nessie.markdown_kv.render import field_prefix, render_value
from target_iceberg_nessie.markdown_kv.render import key_text as heading_key
from target_iceberg_nessie.markdown_options import RawFilePattern, StructuredPattern
from target_iceberg_nessie.schema import JSON_TEXT_KEY

KV_SUFFIX: Final = "__kv"
DOC_SUFFIX: Final = "__doc"
DEFAULT_TITLE: Final = "Record"
# Document lists at most this large (bytes of JSON) stay in the snapshot summary; longer ones go
# to a file whose location the summary holds (like the Singer state).
INLINE_DOCUMENTS_MAX_BYTES: Final = 8192

_TEXT: Final = {"type": ["string", "null"]}
_INT: Final = {"type": ["integer", "null"]}
_TEXTS: Final = {"type": ["array", "null"], "items": {"type": "string"}}
_FIELD: Final = {
    "type": "object",
    "properties": {"key": _TEXT, "value": _TEXT, "value_json": _TEXT},
}
KV_SCHEMA: Final = {
    "type": "object",
    "properties": {
        "doc_id": _TEXT,
        "record_ord": _INT,
        "record_title": _TEXT,
        "section": _TEXTS,
        "key": _TEXT,
        "value": _TEXT,
        "value_json": _TEXT,
        "ord": _INT,
    },
}
DOC_SCHEMA: Final = {
    "type": "object",
    "properties": {
        "doc_id": _TEXT,
        "title": _TEXT,
        "front_matter_json": _TEXT,
        "records": _INT,
        "sections": {
            "type": ["array", "null"],
            "items": {
                "type": "object",
                "properties": {
                    "record_ord": _INT,
                    "record_title": _TEXT,
                    "path": _TEXTS,
                    "heading": _TEXT,
                    "depth": _INT,
                    "fields": {"type": ["array", "null"], "items": _FIELD},
                },
            },
        },
    },
}


# -- values as JSON-like data ---------------------------------------------------------------------


def _needs_python(data_type: pa.DataType) -> bool:
    """A nested type holding a value the renderer cannot take as Arrow gives it."""
    if pa.types.is_struct(data_type):
        children = [data_type.field(i) for i in range(data_type.num_fields)]
        return any(_needs_python(f.type) or _is_json_text(f) for f in children)
    if pa.types.is_list(data_type) or pa.types.is_large_list(data_type):
        return _needs_python(data_type.value_type) or _is_json_text(data_type.value_field)
    return bool(
        pa.types.is_temporal(data_type) or pa.types.is_decimal(data_type) or pa.types.is_binary(data_type)
    )


def _is_json_text(field: pa.Field) -> bool:
    return bool(field.metadata and field.metadata.get(JSON_TEXT_KEY))


def _plain(value: Any, field: pa.Field) -> Any:  # noqa: PLR0911 - a return per kind of value
    """Python path for nested values: JSON text parsed, temporal and decimal values as text."""
    if value is None:
        return None
    if _is_json_text(field) and isinstance(value, str):
        return orjson.loads(value)
    data_type = field.type
    if pa.types.is_struct(data_type) and isinstance(value, Mapping):
        return {
            data_type.field(i).name: _plain(value.get(data_type.field(i).name), data_type.field(i))
            for i in range(data_type.num_fields)
        }
    if (pa.types.is_list(data_type) or pa.types.is_large_list(data_type)) and isinstance(value, list):
        return [_plain(item, data_type.value_field) for item in value]
    if isinstance(value, datetime):  # as Arrow writes top-level columns: UTC, microseconds, "Z"
        utc = value.astimezone(UTC) if value.tzinfo else value
        return utc.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"
    if isinstance(value, time):
        return value.isoformat(timespec="microseconds")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, bytes):
        return value.hex()
    return value


def _column_values(column: pa.ChunkedArray, field: pa.Field) -> list[Any]:
    data_type = field.type
    if _is_json_text(field):
        return [None if v is None else orjson.loads(v) for v in column.to_pylist()]
    if pa.types.is_timestamp(data_type):
        utc = column if data_type.tz else pc.assume_timezone(column, "UTC")
        return pc.strftime(utc, format="%Y-%m-%dT%H:%M:%SZ").to_pylist()  # type: ignore[no-any-return] # pyarrow is untyped
    if pa.types.is_date(data_type) or pa.types.is_time(data_type) or pa.types.is_decimal(data_type):
        return column.cast(pa.string()).to_pylist()  # type: ignore[no-any-return] # pyarrow is untyped
    if _needs_python(data_type):
        return [_plain(v, field) for v in column.to_pylist()]
    return column.to_pylist()  # type: ignore[no-any-return] # pyarrow is untyped


def json_rows(
    table: pa.Table, skip: Sequence[str] = (), described: pa.Schema | None = None
) -> list[dict[str, Any]]:
    """The table's rows as JSON-like dicts (column order kept), without the `skip` columns.
    `described`: the stream's column schema, whose fields mark the columns kept as JSON text."""
    marked = {f.name: f for f in described} if described is not None else {}
    fields = [marked.get(f.name, f) for f in table.schema if f.name not in skip]
    names = [f.name for f in fields]
    columns = [_column_values(table.column(f.name), f) for f in fields]
    return [dict(zip(names, values, strict=True)) for values in zip(*columns, strict=True)]


def title_of(row: Mapping[str, Any], title_key: str | None) -> str:
    """The record's heading: its `title_key` value as text, else "Record"."""
    value = row.get(title_key) if title_key is not None else None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float) and value != "":
        return str(value)
    return DEFAULT_TITLE


# Strings whose form Arrow can decide per column (docs/markdown-kv.md, "Keys, strings and quoting"):
# conservative subsets of what the renderer writes bare or quoted; every other string is decided by
# the renderer itself, once per distinct value. tests/unit/test_markdown_store.py holds both to the
# renderer on generated strings.
_SAFE: Final = r"[A-Za-z0-9 ._@,;'/()&!?%+=*$\[\]-]"
_SAFE_END: Final = r"[A-Za-z0-9._@,;'/()&!?%+=*$\[\]-]"
_SURELY_BARE: Final = (
    rf"^(?:[A-Za-z](?:{_SAFE}*{_SAFE_END})?"  # a word first: not a number, list item or literal
    r"|[0-9]+[A-DF-Za-df-z][A-Za-z0-9]*"  # digits then a letter other than e: not a number
    rf"|[0-9]+ [A-Za-z](?:{_SAFE}*{_SAFE_END})?"  # digits, a space, a word: not a list item
    r"|[0-9]{4}-[0-9]{2}-[0-9]{2}(?:T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]+)?Z)?"  # ISO dates
    r"|[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]+)?)$"
)
# Printable ASCII without '"' or '\\' (JSON quotes it as it stands) that starts like a Markdown block
# or reads as a number: written quoted.
_SURELY_QUOTED: Final = r"^(?:[#*+>|`~<=\[{-][ !#-\[\]-~]*|-?[0-9]+(?:\.[0-9]+)?)$"
_WORDS: Final = pa.array(["null", "true", "false", "none", "nan", "inf", "infinity"])


def surely_bare(strings: pa.Array) -> pa.Array:
    """Per value: True where the string is certainly written bare (null: False)."""
    matched = pc.match_substring_regex(strings, _SURELY_BARE)
    word = pc.is_in(pc.utf8_lower(strings), value_set=_WORDS)
    return pc.fill_null(pc.and_(matched, pc.invert(word)), False)


def surely_quoted(strings: pa.Array) -> pa.Array:
    """Per value: True where the string is certainly written as `"<the string>"` (null: False)."""
    word = pc.and_(
        pc.is_in(pc.utf8_lower(strings), value_set=_WORDS), pc.match_substring_regex(strings, "^[a-zA-Z]+$")
    )
    return pc.fill_null(pc.or_(pc.match_substring_regex(strings, _SURELY_QUOTED), word), False)


def _text_lines(key: str, strings: pa.Array, level: int) -> pa.Array:
    """A string column's lines: bare and plainly quoted ones built by Arrow, the others by the
    renderer, once per distinct value."""
    prefix = field_prefix(key)
    bare = surely_bare(strings)
    quoted = surely_quoted(strings)
    lines = pc.if_else(
        bare,
        pc.binary_join_element_wise(prefix, strings, "\n", ""),
        pc.binary_join_element_wise(prefix + '"', strings, '"\n', ""),
    )
    rest = pc.invert(pc.or_(bare, quoted))
    if not pc.any(rest).as_py():
        return lines
    encoded = pc.dictionary_encode(pc.if_else(rest, strings, pa.scalar(None, pa.string())))
    rendered = pa.array(
        [render_value(key, v, level=level)[0] for v in encoded.dictionary.to_pylist()], pa.string()
    )
    return pc.if_else(rest, pc.take(rendered, encoded.indices), lines)


def _json_text_lines(key: str, column: pa.Array, level: int) -> tuple[pa.Array, pa.Array | None]:
    """Free-form values kept as JSON text: empty objects and arrays stay inline as they are."""
    empty = pc.fill_null(pc.is_in(column, value_set=pa.array(["{}", "[]"])), False)
    if pc.all(pc.or_(empty, column.is_null())).as_py():
        text = pc.binary_join_element_wise(field_prefix(key), column, "\n", "")
        return pc.fill_null(text, pa.scalar(field_prefix(key) + "null\n")), None
    return _python_lines(key, [None if v is None else orjson.loads(v) for v in column.to_pylist()], level)


def _python_lines(key: str, values: Sequence[Any], level: int) -> tuple[pa.Array, pa.Array | None]:
    rendered = [render_value(key, value, level=level) for value in values]
    lines = pa.array([r[0] for r in rendered], pa.string())
    sections = pa.array([r[1] for r in rendered], pa.string())
    return lines, (sections if any(r[1] for r in rendered) else None)


def _string_list_lines(key: str, column: pa.Array, level: int) -> pa.Array:
    """A list of strings: `key:` then one `- item` line per element (`[]` when empty)."""
    items = column.flatten()  # the elements of the non-null lists, in order
    item_key = "k"  # an item's text does not depend on its key: render `k: [item]`, keep the item line
    bare = surely_bare(items)
    quoted = surely_quoted(items)
    item_lines = pc.if_else(
        bare,
        pc.binary_join_element_wise("- ", items, "\n", ""),
        pc.binary_join_element_wise('- "', items, '"\n', ""),
    )
    rest = pc.and_(pc.invert(pc.or_(bare, quoted)), pc.is_valid(items))
    if pc.any(rest).as_py():
        encoded = pc.dictionary_encode(pc.if_else(rest, items, pa.scalar(None, pa.string())))
        skip = len(item_key) + 2  # "k:\n"
        rendered = [
            render_value(item_key, [v], level=level)[0][skip:] for v in encoded.dictionary.to_pylist()
        ]
        item_lines = pc.if_else(rest, pc.take(pa.array(rendered, pa.string()), encoded.indices), item_lines)
    item_lines = pc.fill_null(item_lines, pa.scalar("- null\n"))
    lengths = pc.fill_null(pc.list_value_length(column), 0).cast(pa.int32())
    offsets = pa.concat_arrays([pa.array([0], pa.int32()), pc.cumulative_sum(lengths)])
    joined = pc.binary_join(pa.ListArray.from_arrays(offsets, item_lines), "")
    prefix = field_prefix(key)
    block = pc.binary_join_element_wise(prefix.rstrip(" ") + "\n", joined, "")
    lines = pc.if_else(pc.equal(lengths, 0), pa.scalar(prefix + "[]\n"), block)
    return pc.if_else(column.is_null(), pa.scalar(prefix + "null\n"), lines)


def _float_lines(key: str, column: pa.Array, level: int) -> pa.Array:
    prefix = field_prefix(key)
    return pa.array(
        [
            f"{prefix}null\n"
            if v is None
            else f"{prefix}{v!r}\n"
            if math.isfinite(v)
            else render_value(key, v, level=level)[0]
            for v in column.to_pylist()
        ],
        pa.string(),
    )


# Arrow types whose values are rendered as their text (ISO dates and times, exact decimals).
_AS_TEXT: Final = (pa.types.is_date, pa.types.is_time, pa.types.is_decimal, pa.types.is_large_string)


def _join_lines(parts: Sequence[pa.Array], rows: int) -> pa.Array:
    """A section's field lines, and the blank line after them when there is one."""
    if not parts:
        return pa.array([""] * rows, pa.string())
    lines = pc.binary_join_element_wise(*parts, "")
    return pc.if_else(pc.equal(lines, ""), lines, pc.binary_join_element_wise(lines, "\n", ""))


def _struct_lines(key: str, column: pa.StructArray, field: pa.Field, level: int) -> tuple[pa.Array, pa.Array]:
    """A non-empty object is a sub-section one level down (null: a `key: null` line)."""
    data_type = field.type
    if column.offset:
        column = pa.concat_arrays([column])  # children of a sliced struct are not sliced
    children = column.flatten()  # with the parent's nulls applied
    line_parts: list[pa.Array] = []
    section_parts: list[pa.Array] = []
    for index, child in enumerate(children):
        child_field = data_type.field(index)
        lines, sections = _lines_of(child_field.name, child, child_field, level + 1)
        line_parts.append(lines)
        if sections is not None:
            section_parts.append(sections)
    heading = "#" * (level + 1) + " " + heading_key(key) + "\n\n"
    body = [_join_lines(line_parts, len(column)), *section_parts]
    section = pc.binary_join_element_wise(heading, *body, "")
    is_null = column.is_null()
    empty = pa.scalar("", pa.string())
    lines = pc.if_else(is_null, pa.scalar(field_prefix(key) + "null\n"), empty)
    return lines, pc.if_else(is_null, empty, section)


def _lines_of(  # noqa: PLR0911 - a return per kind of column
    key: str, column: pa.Array, field: pa.Field, level: int = 1
) -> tuple[pa.Array, pa.Array | None]:
    """One column as its lines in each record (and, for objects, the records' sub-sections) when
    the record's heading has `level` hashes."""
    data_type = column.type
    null_line = pa.scalar(field_prefix(key) + "null\n")
    if _is_json_text(field):
        return _json_text_lines(key, column, level)
    if pa.types.is_integer(data_type) or pa.types.is_boolean(data_type):
        text = pc.binary_join_element_wise(field_prefix(key), column.cast(pa.string()), "\n", "")
        return pc.fill_null(text, null_line), None
    if pa.types.is_floating(data_type):
        return _float_lines(key, column, level), None
    if (pa.types.is_list(data_type) or pa.types.is_large_list(data_type)) and (
        pa.types.is_string(data_type.value_type) and not _is_json_text(field.type.value_field)
    ):
        return _string_list_lines(key, column, level), None
    if pa.types.is_struct(data_type) and data_type.num_fields and level < MAX_HEADING_LEVEL:
        return _struct_lines(key, column, field, level)
    if pa.types.is_timestamp(data_type):
        utc = column if data_type.tz else pc.assume_timezone(column, "UTC")
        column = pc.strftime(utc, format="%Y-%m-%dT%H:%M:%SZ")
    elif any(is_kind(data_type) for is_kind in _AS_TEXT):
        column = column.cast(pa.string())
    if pa.types.is_string(column.type):
        return pc.fill_null(_text_lines(key, column, level), null_line), None
    if _needs_python(data_type):
        return _python_lines(key, [_plain(v, field) for v in column.to_pylist()], level)
    return _python_lines(key, column.to_pylist(), level)


def render_column(
    table: pa.Table, *, title_key: str | None, skip: Sequence[str] = (), described: pa.Schema | None = None
) -> pa.Array:
    """The `string` pattern: each row as one Markdown-KV record, exactly as `render_record` writes
    it, built column by column: Arrow joins the lines; Python renders only the values Arrow cannot
    decide (strings that may need quotes, arrays, free-form objects, floats)."""
    marked = {f.name: f for f in described} if described is not None else {}
    fields = [marked.get(f.name, f) for f in table.schema if f.name not in skip]
    line_parts: list[pa.Array] = []
    section_parts: list[pa.Array] = []
    for field in fields:
        chunked = table.column(field.name)
        column = chunked.combine_chunks() if chunked.num_chunks != 1 else chunked.chunk(0)
        lines, sections = _lines_of(field.name, column, field)
        line_parts.append(lines)
        if sections is not None:
            section_parts.append(sections)
    body = [_join_lines(line_parts, table.num_rows), *section_parts]
    return pc.binary_join_element_wise(_headings(table, title_key), *body, "")


def _headings(table: pa.Table, title_key: str | None) -> pa.Array:
    """`# <title>` lines: the title column's text, else "Record"; quoted by the renderer if needed."""
    rows = table.num_rows
    if title_key is None or title_key not in table.column_names:
        return pa.array([f"# {DEFAULT_TITLE}\n\n"] * rows, pa.string())
    values = table.column(title_key).to_pylist()
    titles = pa.array([title_of({"t": v}, "t") for v in values], pa.string())
    bare = surely_bare(titles)
    fast = pc.binary_join_element_wise("# ", titles, "\n\n", "")
    if pc.all(bare).as_py():
        return fast
    slow = [
        None if ok else render_record({}, title=t)
        for t, ok in zip(titles.to_pylist(), bare.to_pylist(), strict=True)
    ]
    return pc.if_else(bare, fast, pa.array(slow, pa.string()))


# -- raw files -----------------------------------------------------------------------------------


def path_part(value: Any) -> str:
    """A value as one safe path segment: everything but letters, digits, '-' and '_' is %-escaped
    (so '/', '..' and the like never leave the folder)."""
    return quote(str(value), safe="-_").replace(".", "%2E")  # quote() never escapes "."


def key_text(row: Mapping[str, Any], keys: Sequence[str]) -> str | None:
    """The record's key for a path: its key properties' values, ','-joined; None without keys."""
    if not keys:
        return None
    values = [row.get(k) for k in keys]
    if any(v is None for v in values):
        return None
    return ",".join(path_part(v) for v in values)


class DocumentWriter:
    """Writes one stream's documents of one checkpoint (on the staging thread only)."""

    def __init__(
        self,
        pattern: RawFilePattern,
        *,
        warehouse: str,
        tenant: str,
        stream: str,
        table: str,
        file_io: Callable[[str], FileIO],
    ) -> None:
        self.pattern = pattern
        self._warehouse = warehouse.rstrip("/")
        self._tenant = tenant
        self._stream = stream
        self._table = table
        self._file_io = file_io
        self._io: FileIO | None = None
        self.written: list[str] = []  # every path begun, in order (for the commit and for cleanup)
        self._seen: set[str] = set()
        self._rows = 0  # rows of the checkpoint so far: keyless records are numbered by it
        self._parts = 0

    def location(self, *, key: str, batch_id: str, day: str) -> str:
        values = {
            "tenant": path_part(self._tenant),
            "stream": path_part(self._table),
            "key": key,
            "date": day,
            "batch": path_part(batch_id.replace(":", "-")),
        }
        path = self.pattern.path
        for name, value in values.items():
            path = path.replace("{" + name + "}", value)
        return path if "://" in path else f"{self._warehouse}/{path}"

    def write(
        self,
        records: Sequence[str],
        key_rows: Sequence[Mapping[str, Any]],
        *,
        keys: Sequence[str],
        batch_id: str,
    ) -> None:
        """`records`: the batch's rows rendered (`render_column`); `key_rows`: their key values."""
        day = datetime.now(UTC).date().isoformat()
        front = {"stream": self._stream, "table": self._table, "batch_id": batch_id}
        if self.pattern.per == "batch":
            self._parts += 1
            location = self.location(key=f"part-{self._parts:05d}", batch_id=batch_id, day=day)
            heading = render_document([], front_matter={**front, "records": len(records)})
            self._put(location, heading + "".join(records))
            return
        heading = render_document([], front_matter=front)
        for text, row in zip(records, key_rows, strict=True):
            self._rows += 1
            key = key_text(row, keys) or f"r{self._rows:07d}"
            self._put(self.location(key=key, batch_id=batch_id, day=day), heading + text)

    def _put(self, location: str, text: str) -> None:
        if self._io is None:
            self._io = self._file_io(location)
        if location not in self._seen:  # a key repeated within the checkpoint rewrites its path
            self._seen.add(location)
            self.written.append(location)
        with self._io.new_output(location).create(overwrite=True) as handle:
            handle.write(text.encode("utf-8"))

    def reset(self) -> None:
        """The checkpoint committed: the next one numbers its keyless records and parts anew."""
        self.written = []
        self._seen = set()
        self._rows = 0
        self._parts = 0


def documents_summary(
    paths: Sequence[str], *, list_location: str, file_io: Callable[[str], FileIO]
) -> dict[str, str]:
    """Snapshot-summary entries listing a checkpoint's documents (inline, or in a JSON file)."""
    unique = list(dict.fromkeys(paths))
    encoded = json.dumps(unique, separators=(",", ":"))
    summary = {props.MARKDOWN_KV_DOCUMENT_COUNT: str(len(unique))}
    if len(encoded.encode()) <= INLINE_DOCUMENTS_MAX_BYTES:
        summary[props.MARKDOWN_KV_DOCUMENTS] = encoded
        return summary
    with file_io(list_location).new_output(list_location).create(overwrite=True) as handle:
        handle.write(encoded.encode())
    summary[props.MARKDOWN_KV_DOCUMENTS_LOCATION] = list_location
    return summary


def documents_of(summary: Mapping[str, str], file_io: Callable[[str], FileIO]) -> list[str]:
    """The documents a snapshot's commit wrote, from its summary (what readers call)."""
    inline = summary.get(props.MARKDOWN_KV_DOCUMENTS)
    if inline is not None:
        listed: list[str] = json.loads(inline)
        return listed
    location = summary.get(props.MARKDOWN_KV_DOCUMENTS_LOCATION)
    if location is None:
        return []
    with file_io(location).new_input(location).open() as handle:
        from_file: list[str] = json.loads(handle.read())
    return from_file


def delete_quietly(paths: Sequence[str], file_io: Callable[[str], FileIO]) -> None:
    for path in dict.fromkeys(paths):
        with contextlib.suppress(OSError):
            file_io(path).delete(path)


# -- structured ----------------------------------------------------------------------------------


def _doc_id(row: Mapping[str, Any], columns: Sequence[str]) -> str | None:
    values = [row.get(c) for c in columns]
    if any(v is None for v in values):
        return None
    return ",".join(v if isinstance(v, str) else json.dumps(v) for v in values)


def structured_rows(
    table: pa.Table,
    pattern: StructuredPattern,
    *,
    stream: str,
    id_columns: Sequence[str],
    line_numbers: Sequence[int],
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Rows of `<stream>__kv` and `<stream>__doc` from the batch's Markdown-KV column."""
    texts = table.column(pattern.column).to_pylist()
    ids = json_rows(table.select(list(id_columns)))
    kv: list[dict[str, Any]] = []
    docs: list[dict[str, Any]] = []
    for index, (text, id_row) in enumerate(zip(texts, ids, strict=True)):
        if text is None:
            continue
        line = line_numbers[index] if index < len(line_numbers) else None
        doc_id = _doc_id(id_row, id_columns)
        if doc_id is None:
            msg = (
                f"markdown_kv structured: the record has no document id (its {list(id_columns)} are null); "
                "give every record a value there, or name another property in the stream's "
                "markdown_kv.streams.<stream>.structured.doc_id"
            )
            raise BadInputError(msg, line=line, stream=stream)
        try:
            document = parse_document(text, source=f"document {doc_id!r}")
        except MarkdownKVError as error:
            msg = (
                f"property '{pattern.column}' does not hold a Markdown-KV document: {error}. Fix the "
                "document at the source (grammar: docs/markdown-kv.md), or remove this stream's "
                "markdown_kv structured setting"
            )
            raise BadInputError(msg, line=line, stream=stream) from None
        if pattern.kv_table:
            kv.extend(r.table_row() for r in rows_per_kv(document, doc_id=doc_id))
        if pattern.doc_table:
            level = document_level(document, doc_id=doc_id).to_dict()
            docs.append(
                {
                    "doc_id": level["doc_id"],
                    "title": level["title"],
                    "front_matter_json": level["front_matter_json"],
                    "records": len(document.records),
                    "sections": [
                        {
                            **{k: s[k] for k in ("record_ord", "record_title", "path", "heading", "depth")},
                            "fields": [
                                {"key": f["key"], "value": f["value_text"], "value_json": f["value_json"]}
                                for f in s["fields"]
                            ],
                        }
                        for s in level["sections"]
                    ],
                }
            )
    return kv, docs
