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
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z") if value.tzinfo else value.isoformat()
    if isinstance(value, date | time):
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


def render_column(rows: Sequence[Mapping[str, Any]], title_key: str | None) -> pa.Array:
    """The `string` pattern: one Markdown-KV record (heading + lines) per row."""
    return pa.array([render_record(row, title=title_of(row, title_key)) for row in rows], type=pa.string())


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

    def write(self, rows: Sequence[Mapping[str, Any]], *, keys: Sequence[str], batch_id: str) -> None:
        day = datetime.now(UTC).date().isoformat()
        title_key = self.pattern.title_key or (keys[0] if keys else None)
        front = {"stream": self._stream, "table": self._table, "batch_id": batch_id}
        if self.pattern.per == "batch":
            self._parts += 1
            location = self.location(key=f"part-{self._parts:05d}", batch_id=batch_id, day=day)
            text = render_document(rows, front_matter={**front, "records": len(rows)}, title_key=title_key)
            self._put(location, text)
        else:
            for row in rows:
                self._rows += 1
                key = key_text(row, keys) or f"r{self._rows:07d}"
                location = self.location(key=key, batch_id=batch_id, day=day)
                self._put(location, render_document([row], front_matter=front, title_key=title_key))

    def _put(self, location: str, text: str) -> None:
        if self._io is None:
            self._io = self._file_io(location)
        if location not in self.written:
            self.written.append(location)
        with self._io.new_output(location).create(overwrite=True) as handle:
            handle.write(text.encode("utf-8"))

    def reset(self) -> None:
        """The checkpoint committed: the next one numbers its keyless records and parts anew."""
        self.written = []
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
            kv.extend(
                {
                    "doc_id": r.doc_id,
                    "record_ord": r.record_ord,
                    "record_title": r.record_title,
                    "section": list(r.section_path),
                    "key": r.key,
                    "value": r.value_text,
                    "value_json": r.value_json,
                    "ord": r.ord,
                }
                for r in rows_per_kv(document, doc_id=doc_id)
            )
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
