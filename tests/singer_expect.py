"""What a table should hold after the target read a Singer stream, in one canonical form.

Both the input records and the rows read back (pyiceberg or DuckDB) are turned into plain JSON-like
values driven by the stream's JSON Schema, so a comparison checks every row and every column.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, date, datetime, time
from decimal import Decimal
from typing import Any


def parse_messages(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def _types(schema: Mapping[str, Any]) -> tuple[set[str], Mapping[str, Any]]:
    if "anyOf" in schema:
        options = [s for s in schema["anyOf"] if s.get("type") != "null"]
        if len(options) == 1:
            return _types(options[0])
        return {"__json__"}, schema
    declared = schema.get("type")
    if declared is None:
        return {"__json__"}, schema
    found = {declared} if isinstance(declared, str) else set(declared)
    found.discard("null")
    if found == {"integer", "number"}:
        found = {"number"}
    return (found if len(found) == 1 else {"__json__"}), schema


def _timestamp(value: Any) -> str:
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    assert isinstance(value, datetime)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat(timespec="microseconds")


def _time(value: Any) -> str:
    if isinstance(value, str):
        value = time.fromisoformat(value)
    assert isinstance(value, time)
    return value.isoformat(timespec="microseconds")


def _date(value: Any) -> str:
    if isinstance(value, datetime):
        value = value.date()
    if isinstance(value, str):
        value = date.fromisoformat(value[:10])
    assert isinstance(value, date)
    return value.isoformat()


def canon(value: Any, schema: Mapping[str, Any], *, stored: bool = False) -> Any:  # noqa: PLR0911
    """The canonical form of one value of a property declared by `schema`.

    `stored`: the value was read back from a table, where untypeable values are JSON text.
    """
    if value is None:
        return None
    (kind,), inner = _types(schema)
    if (
        kind == "__json__"
        or (kind == "object" and not inner.get("properties"))
        or (kind == "array" and not inner.get("items"))
    ):
        return json.dumps(json.loads(value) if stored else value, sort_keys=True)
    if kind == "string":
        fmt = inner.get("format")
        if fmt == "date-time":
            return _timestamp(value)
        if fmt == "date":
            return _date(value)
        if fmt == "time":
            return _time(value)
        return str(value)
    if kind == "integer":
        return int(value)
    if kind == "number":
        if "multipleOf" in inner:
            return str(Decimal(str(value)).quantize(Decimal(str(inner["multipleOf"]))))
        return float(value)
    if kind == "boolean":
        return bool(value)
    if kind == "object":
        props = inner["properties"]
        return {name: canon(value.get(name), prop, stored=stored) for name, prop in props.items()}
    if kind == "array":
        return [canon(item, inner["items"], stored=stored) for item in value]
    raise AssertionError(f"unexpected JSON type {kind}")


def merged_properties(messages: list[dict[str, Any]], stream: str) -> dict[str, Any]:
    """Every property any SCHEMA of `stream` declared (later declarations win)."""
    props: dict[str, Any] = {}
    for message in messages:
        if message["type"] == "SCHEMA" and message["stream"] == stream:
            for name, declared in message["schema"]["properties"].items():
                merged = declared
                if isinstance(declared.get("properties"), dict) and isinstance(props.get(name), dict):
                    nested = dict(props[name].get("properties", {}))
                    nested.update(declared["properties"])
                    merged = {**declared, "properties": nested}
                props[name] = merged
    return props


def expected_rows(messages: list[dict[str, Any]], stream: str, key: str) -> list[dict[str, Any]]:
    props = merged_properties(messages, stream)
    rows = [
        {name: canon(m["record"].get(name), prop) for name, prop in props.items()}
        for m in messages
        if m["type"] == "RECORD" and m["stream"] == stream
    ]
    return sorted(rows, key=lambda r: r[key])


def actual_rows(rows: list[dict[str, Any]], props: Mapping[str, Any], key: str) -> list[dict[str, Any]]:
    return sorted(
        ({name: canon(row.get(name), prop, stored=True) for name, prop in props.items()} for row in rows),
        key=lambda r: r[key],
    )
