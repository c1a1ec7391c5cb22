"""Singer JSON Schema → Arrow types, the shape the rest of the target works in.

Each property maps to two Arrow types: the *read* type that pyarrow's JSON reader parses the raw
value into, and the *column* type the Iceberg table stores. They differ for temporal strings (read
as strings, parsed by `convert.py` so that bad values can be located) and for untypeable values
(kept as their JSON text). Mapping rules are documented in docs/target.md.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

TIMESTAMP_TYPE = pa.timestamp("us", tz="UTC")
TIME_TYPE = pa.time64("us")
DECIMAL_MAX_PRECISION = 38
_DECIMAL_SCALE_TOLERANCE = 1e-9  # multipleOf 0.01 is not exactly 10^-2 in binary
# Metadata key on an Arrow field whose value is kept as JSON text because no type fits it.
JSON_TEXT_KEY = b"ingest.json_text"


@dataclass(frozen=True)
class ColumnType:
    read: pa.DataType
    column: pa.DataType
    json_text: bool = False  # the value is stored as its JSON text
    nested_json_text: bool = False  # somewhere below, a value is stored as JSON text


@dataclass(frozen=True)
class StreamShape:
    """The Arrow view of one SCHEMA message."""

    read_schema: pa.Schema  # for pyarrow.json: typed properties only
    full_read_schema: pa.Schema  # every property, untypeable ones as JSON text (Python decode path)
    column_schema: pa.Schema  # the table columns this SCHEMA asks for
    json_text_columns: tuple[str, ...] = ()  # top-level untypeable properties
    needs_python_decode: bool = False  # an untypeable value sits inside a struct or list
    key_properties: tuple[str, ...] = field(default_factory=tuple)


def _types_of(schema: Mapping[str, Any]) -> tuple[list[str], Mapping[str, Any]]:
    """Return the non-null JSON types of a property and the sub-schema that declares them."""
    if "anyOf" in schema or "oneOf" in schema:
        options = [s for s in schema.get("anyOf", schema.get("oneOf", [])) if s.get("type") != "null"]
        if len(options) == 1:
            types, inner = _types_of(options[0])
            return types, inner
        merged = list(dict.fromkeys(t for option in options for t in _types_of(option)[0]))
        return merged or ["__untypeable__"], schema  # alternatives of one type (e.g. string formats): plain
    declared = schema.get("type")
    if declared is None:
        return ["__untypeable__"], schema
    types = [declared] if isinstance(declared, str) else list(declared)
    return [t for t in types if t != "null"], schema


def _decimal_scale(multiple_of: Any) -> int | None:
    """Scale s when multipleOf is 10^-s (how taps describe NUMERIC(p, s)), else None."""
    if not isinstance(multiple_of, int | float) or multiple_of <= 0 or multiple_of > 1:
        return None
    scale = -math.log10(multiple_of)
    rounded = round(scale)
    if abs(scale - rounded) > _DECIMAL_SCALE_TOLERANCE or rounded > DECIMAL_MAX_PRECISION:
        return None
    return int(rounded)


def _json_text() -> ColumnType:
    return ColumnType(read=pa.string(), column=pa.string(), json_text=True)


def column_type(schema: Mapping[str, Any]) -> ColumnType:  # noqa: PLR0911, PLR0912 - one branch per JSON type
    """Map one property's JSON Schema to its read and column Arrow types."""
    types, inner = _types_of(schema)
    if set(types) == {"integer", "number"}:
        types = ["number"]
    if len(types) != 1:
        return _json_text()
    json_type = types[0]
    if json_type == "string":
        fmt = inner.get("format")
        if fmt == "date-time":
            return ColumnType(read=pa.string(), column=TIMESTAMP_TYPE)
        if fmt == "date":
            return ColumnType(read=pa.string(), column=pa.date32())
        if fmt == "time":
            return ColumnType(read=pa.string(), column=TIME_TYPE)
        return ColumnType(read=pa.string(), column=pa.string())
    if json_type == "integer":
        return ColumnType(read=pa.int64(), column=pa.int64())
    if json_type == "number":
        scale = _decimal_scale(inner.get("multipleOf"))
        if scale is not None:
            decimal = pa.decimal128(DECIMAL_MAX_PRECISION, scale)
            return ColumnType(read=decimal, column=decimal)
        return ColumnType(read=pa.float64(), column=pa.float64())
    if json_type == "boolean":
        return ColumnType(read=pa.bool_(), column=pa.bool_())
    if json_type == "object":
        properties = inner.get("properties")
        if not properties:
            return _json_text()
        return _struct_type(properties)
    if json_type == "array":
        items = inner.get("items")
        if not isinstance(items, Mapping) or not items:
            return _json_text()
        item = column_type(items)
        return ColumnType(
            read=pa.list_(_read_field("item", item)),
            column=pa.list_(item.column),
            nested_json_text=item.json_text or item.nested_json_text,
        )
    return _json_text()


def _struct_type(properties: Mapping[str, Any]) -> ColumnType:
    read_fields, column_fields = [], []
    nested = False
    for name, prop in properties.items():
        child = column_type(prop if isinstance(prop, Mapping) else {})
        nested = nested or child.json_text or child.nested_json_text
        read_fields.append(_read_field(name, child))
        column_fields.append(_column_field(name, child))
    return ColumnType(read=pa.struct(read_fields), column=pa.struct(column_fields), nested_json_text=nested)


def _read_field(name: str, col: ColumnType) -> pa.Field:
    """A nested read field; untypeable ones carry the JSON-text mark the Python decode path reads."""
    metadata = {JSON_TEXT_KEY: b"1"} if col.json_text else None
    return pa.field(name, col.read, nullable=True, metadata=metadata)


def _column_field(name: str, col: ColumnType) -> pa.Field:
    metadata = {JSON_TEXT_KEY: b"1"} if col.json_text else None
    return pa.field(name, col.column, nullable=True, metadata=metadata)


def stream_shape(schema: Mapping[str, Any], key_properties: list[str] | None = None) -> StreamShape:
    """Build the Arrow view of a stream from its Singer SCHEMA message body."""
    properties = schema.get("properties") or {}
    read_fields: list[pa.Field] = []
    full_read_fields: list[pa.Field] = []
    column_fields: list[pa.Field] = []
    json_text: list[str] = []
    needs_python = False
    for name, prop in properties.items():
        col = column_type(prop if isinstance(prop, Mapping) else {})
        column_fields.append(_column_field(name, col))
        full_read_fields.append(
            _column_field(name, ColumnType(read=col.read, column=col.read, json_text=col.json_text))
        )
        if col.json_text:
            json_text.append(name)
            continue
        needs_python = needs_python or col.nested_json_text
        read_fields.append(pa.field(name, col.read))
    return StreamShape(
        read_schema=pa.schema(read_fields),
        full_read_schema=pa.schema(full_read_fields),
        column_schema=pa.schema(column_fields),
        json_text_columns=tuple(json_text),
        needs_python_decode=needs_python,
        key_properties=tuple(key_properties or ()),
    )
