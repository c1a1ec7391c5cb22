"""A JSON Schema for parsed records, inferred from every value seen (a stream can also declare one).

Every property is nullable (Singer does not promise presence). Integers and numbers widen to
number; any other mix of types, and properties that were only ever null, get no type at all, which
the loader stores as the value's JSON text: declare `schema` on the stream for stable types.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Shape:
    """The JSON types seen at one place of the records, with the shapes of object fields and items."""

    kinds: set[str] = field(default_factory=set)
    properties: dict[str, Shape] = field(default_factory=dict)
    items: Shape | None = None

    def see(self, value: Any) -> None:
        if value is None:
            return
        if isinstance(value, bool):
            self.kinds.add("boolean")
        elif isinstance(value, int):
            self.kinds.add("integer")
        elif isinstance(value, float):
            self.kinds.add("number")
        elif isinstance(value, str):
            self.kinds.add("string")
        elif isinstance(value, Mapping):
            self.kinds.add("object")
            for key, item in value.items():
                self.properties.setdefault(key, Shape()).see(item)
        elif isinstance(value, list):
            self.kinds.add("array")
            for item in value:
                if self.items is None:
                    self.items = Shape()
                self.items.see(item)
        else:
            raise TypeError(f"a parsed Markdown-KV value is never a {type(value).__name__}")

    def schema(self) -> dict[str, Any]:
        kinds = self.kinds
        if kinds == {"integer", "number"}:
            kinds = {"number"}
        if len(kinds) != 1:
            return {}  # never seen with a value, or of several types: kept as JSON text
        (kind,) = kinds
        schema: dict[str, Any] = {"type": [kind, "null"]}
        if kind == "object" and self.properties:
            schema["properties"] = {key: shape.schema() for key, shape in self.properties.items()}
        if kind == "array" and self.items is not None and self.items.kinds:
            schema["items"] = self.items.schema()
        return schema


def infer_properties(records: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """The `properties` of an object schema that every record fits."""
    shape = Shape()
    for record in records:
        shape.see(record)
    return {key: item.schema() for key, item in shape.properties.items()}
