"""Flat shapes of a parsed document for storage: one row per key-value, or one row per document.

`rows_per_kv` gives the `row_per_kv` pattern's rows: every scalar or array under a record, with the
path of headings (keys) above it. `document_level` gives the `document_level` pattern's value: the
document's title and front matter, and its sections (the record's own and each nested object's),
each with its key-values. Non-empty objects are sections; arrays and empty objects are values.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from target_iceberg_nessie.markdown_kv.parse import Document


@dataclass(frozen=True, slots=True)
class KvRow:
    """One key-value of a document. `value_text` is what a reader sees (strings as they are, other
    scalars as their JSON text, arrays and empty objects as JSON; null is None); `value_json` is the
    value's exact JSON text, types included."""

    doc_id: str
    record_ord: int  # the record's position in the document, from 0
    record_title: str
    section_path: tuple[str, ...]  # keys of the nested objects above the value; () for record level
    key: str
    value_text: str | None
    value_json: str
    ord: int  # the row's position in the document, from 0

    def table_row(self) -> dict[str, object]:
        """The row of the `<stream>__kv` table (the loader's `structured` pattern)."""
        return {
            "doc_id": self.doc_id,
            "record_ord": self.record_ord,
            "record_title": self.record_title,
            "section": list(self.section_path),
            "key": self.key,
            "value": self.value_text,
            "value_json": self.value_json,
            "ord": self.ord,
        }


@dataclass(frozen=True, slots=True)
class SectionField:
    key: str
    value_text: str | None
    value_json: str


@dataclass(frozen=True, slots=True)
class DocumentSection:
    """A record (path ()) or one of its nested objects (path: the keys down to it)."""

    record_ord: int
    record_title: str
    path: tuple[str, ...]
    heading: str  # the record's title, or the object's key
    depth: int  # 0 for the record, 1 for its objects, ...
    fields: tuple[SectionField, ...]


@dataclass(frozen=True, slots=True)
class DocumentLevel:
    doc_id: str
    title: str | None  # the front matter's `title`, when it is a string
    front_matter_json: str | None
    sections: tuple[DocumentSection, ...]

    def to_dict(self) -> dict[str, Any]:
        """Plain lists and dicts (tuples as lists), ready for a JSON encoder or an Arrow table."""
        plain: dict[str, Any] = _lists(asdict(self))
        return plain


def rows_per_kv(document: Document, *, doc_id: str) -> list[KvRow]:
    rows: list[KvRow] = []
    for record_ord, record in enumerate(document.records):
        for path, key, value in _leaves(record.data, ()):
            text, encoded = value_texts(value)
            rows.append(KvRow(doc_id, record_ord, record.title, path, key, text, encoded, len(rows)))
    return rows


def document_level(document: Document, *, doc_id: str) -> DocumentLevel:
    sections: list[DocumentSection] = []
    for record_ord, record in enumerate(document.records):
        for path, data in _objects(record.data, ()):
            fields = tuple(
                SectionField(key, *value_texts(value))
                for key, value in data.items()
                if not _is_section(value)
            )
            heading = path[-1] if path else record.title
            sections.append(DocumentSection(record_ord, record.title, path, heading, len(path), fields))
    front_matter = None if document.front_matter is None else _json(document.front_matter, default=str)
    return DocumentLevel(doc_id, document.title, front_matter, tuple(sections))


def value_texts(value: Any) -> tuple[str | None, str]:
    """(value_text, value_json) of one value."""
    encoded = _json(value)
    if value is None:
        return None, encoded
    if isinstance(value, str):
        return value, encoded
    return encoded, encoded


def _is_section(value: Any) -> bool:
    return isinstance(value, Mapping) and bool(value)


def _leaves(data: Mapping[str, Any], path: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...], str, Any]]:
    """Values in document order: a section's own lines first, then its nested sections."""
    for key, value in data.items():
        if not _is_section(value):
            yield path, key, value
    for key, value in data.items():
        if _is_section(value):
            yield from _leaves(value, (*path, key))


def _objects(
    data: Mapping[str, Any], path: tuple[str, ...]
) -> Iterator[tuple[tuple[str, ...], Mapping[str, Any]]]:
    yield path, data
    for key, value in data.items():
        if _is_section(value):
            yield from _objects(value, (*path, key))


def _json(value: Any, default: Any = None) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False, default=default)


def _lists(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _lists(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_lists(item) for item in value]
    return value
