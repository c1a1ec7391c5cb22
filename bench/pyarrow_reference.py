"""Reference pipeline: Singer lines -> pyarrow JSON reader -> Parquet -> pyiceberg ``table.append``.

This is what "fast" looks like without the singer-sdk: RECORD lines are routed
per stream by a byte-prefix check (no JSON parsing in Python), parsed in chunks
by Arrow's multi-threaded JSON reader against an explicit Arrow schema derived
from the stream's SCHEMA message, and appended to an Iceberg table (one commit
per ``--batch-rows`` records per stream) in a SQLite-backed ``SqlCatalog``.

It does NOT do what a production target must: no JSON Schema validation, no
per-record error reporting, no exactly-once bookkeeping; the last STATE is
printed only after every append is committed. Free-form objects (a schema with
no ``properties``) are read as inferred structs and stored as
``map<string, string>``.

Run::

    python bench/pyarrow_reference.py --input FILE --warehouse DIR --catalog-uri sqlite:///DIR/catalog.db
"""

from __future__ import annotations

import argparse
import io
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj
from pyiceberg.catalog.sql import SqlCatalog
from pyiceberg.table import Table

RECORD_PREFIX = b'{"type":"RECORD","stream":"'
FREE_FORM_MAP = pa.map_(pa.string(), pa.string())
READ_BLOCK = 16 << 20


def arrow_type(prop: dict[str, Any]) -> pa.DataType | None:
    """Arrow type for a JSON Schema property; ``None`` for a free-form object."""
    raw = prop.get("type", "string")
    types = [t for t in ([raw] if isinstance(raw, str) else raw) if t != "null"]
    if len(types) != 1:
        raise NotImplementedError(f"unsupported JSON Schema type {raw!r}")
    kind = types[0]
    if kind == "string":
        return pa.timestamp("us", tz="UTC") if prop.get("format") == "date-time" else pa.string()
    if kind in {"integer", "number", "boolean"}:
        return {"integer": pa.int64(), "number": pa.float64(), "boolean": pa.bool_()}[kind]
    if kind == "array":
        item = arrow_type(prop.get("items", {}))
        if item is None:
            raise NotImplementedError("arrays of free-form objects are not supported")
        return pa.list_(item)
    if kind == "object":
        if not prop.get("properties"):
            return None
        fields = [(name, arrow_type(sub)) for name, sub in prop["properties"].items()]
        if any(t is None for _, t in fields):
            raise NotImplementedError("nested free-form objects are not supported")
        return pa.struct(fields)
    raise NotImplementedError(f"unsupported JSON Schema type {kind!r}")


def struct_to_map(arr: pa.Array) -> pa.Array:
    """Turn an inferred struct (or all-null) column into ``map<string, string>``, vectorized."""
    n = len(arr)
    if pa.types.is_null(arr.type):
        return pa.nulls(n, FREE_FORM_MAP)
    valid = arr.is_valid()
    k = arr.type.num_fields
    entry_rows: list[pa.Array] = []
    entry_fields: list[pa.Array] = []
    entry_values: list[pa.Array] = []
    counts = pa.repeat(pa.scalar(0, pa.int32()), n)
    for i in range(k):
        child = arr.field(i)
        present = pc.and_(child.is_valid(), valid)
        counts = pc.add(counts, pc.cast(present, pa.int32()))
        rows = pc.indices_nonzero(present)
        entry_rows.append(rows)
        entry_fields.append(pa.repeat(pa.scalar(i, pa.int32()), len(rows)))
        entry_values.append(pc.cast(child.filter(present), pa.string()))
    offsets = pa.concat_arrays([pa.array([0], pa.int32()), pc.cumulative_sum(counts)])
    names = pa.array([arr.type.field(i).name for i in range(k)], pa.string())
    if not entry_rows:
        keys = values = pa.array([], pa.string())
    else:  # order the (row, field, value) entries row by row, each row's keys in field order
        rows_all = pc.cast(pa.concat_arrays(entry_rows), pa.int64())
        fields_all = pa.concat_arrays(entry_fields)
        order = pc.sort_indices(pc.add(pc.multiply(rows_all, k), pc.cast(fields_all, pa.int64())))
        keys = pc.take(names, pc.take(fields_all, order))
        values = pc.take(pa.concat_arrays(entry_values), order)
    return pa.MapArray.from_arrays(offsets, keys, values, type=FREE_FORM_MAP, mask=pc.invert(valid))


class StreamWriter:
    """Buffers one stream's RECORD lines and appends them to its Iceberg table in chunks."""

    def __init__(self, catalog: SqlCatalog, identifier: tuple[str, str], schema: dict[str, Any]) -> None:
        self.lines: list[bytes] = []
        self.rows = 0
        typed = {name: arrow_type(prop) for name, prop in schema["properties"].items()}
        self.free_form = [name for name, t in typed.items() if t is None]
        self.target_schema = pa.schema([(name, t or FREE_FORM_MAP) for name, t in typed.items()])
        explicit = pa.struct([(name, t) for name, t in typed.items() if t is not None])
        self.parse_options = pj.ParseOptions(
            explicit_schema=pa.schema([("record", explicit)]), unexpected_field_behavior="infer"
        )
        self.table: Table = catalog.create_table_if_not_exists(identifier, schema=self.target_schema)

    def flush(self) -> None:
        if not self.lines:
            return
        data = b"\n".join(self.lines)
        self.lines.clear()
        parsed = pj.read_json(io.BytesIO(data), parse_options=self.parse_options)
        record = parsed.column("record").combine_chunks()
        present = {record.type.field(i).name for i in range(record.type.num_fields)}
        columns = []
        for field in self.target_schema:
            if field.name not in present:
                columns.append(pa.nulls(len(record), field.type))
            elif field.name in self.free_form:
                columns.append(struct_to_map(record.field(field.name)))
            else:
                columns.append(record.field(field.name))
        batch = pa.Table.from_arrays(columns, schema=self.target_schema)
        self.table.append(batch)
        self.rows += batch.num_rows


def iter_lines(path: Path) -> Iterator[bytes]:
    """Lines of ``path`` without their newline, read in large blocks."""
    carry = b""
    with path.open("rb") as f:
        while block := f.read(READ_BLOCK):
            lines = (carry + block).split(b"\n")
            carry = lines.pop()
            yield from lines
    if carry:
        yield carry


def run(args: argparse.Namespace) -> dict[str, Any]:
    Path(args.warehouse).mkdir(parents=True, exist_ok=True)
    catalog = SqlCatalog("bench", uri=args.catalog_uri, warehouse=Path(args.warehouse).absolute().as_uri())
    catalog.create_namespace_if_not_exists(args.namespace)
    writers: dict[bytes, StreamWriter] = {}
    state: Any = None
    start = len(RECORD_PREFIX)
    for line in iter_lines(Path(args.input)):
        if line.startswith(RECORD_PREFIX):
            stream = line[start : line.index(b'"', start)]
            writer = writers[stream]
            writer.lines.append(line)
            if len(writer.lines) >= args.batch_rows:
                writer.flush()
            continue
        if not line.strip():
            continue
        message = orjson.loads(line)
        if message["type"] == "SCHEMA":
            name = message["stream"]
            previous = writers.get(name.encode())
            if previous is not None:  # a repeated SCHEMA: commit what came before it
                previous.flush()
            writers[name.encode()] = StreamWriter(catalog, (args.namespace, name), message["schema"])
        elif message["type"] == "STATE":
            state = message["value"]
        elif message["type"] == "RECORD":  # not in canonical key order: route it the slow way
            writers[message["stream"].encode()].lines.append(orjson.dumps(message))
    for pending in writers.values():
        pending.flush()
    if state is not None:
        sys.stdout.buffer.write(orjson.dumps(state, option=orjson.OPT_APPEND_NEWLINE))
    return {name.decode(): w.rows for name, w in writers.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--input", required=True, help="Singer messages, one JSON object per line")
    parser.add_argument("--warehouse", required=True, help="directory for the Iceberg warehouse")
    parser.add_argument("--catalog-uri", required=True, help="SQLAlchemy URI, e.g. sqlite:///DIR/catalog.db")
    parser.add_argument("--namespace", default="raw")
    parser.add_argument("--batch-rows", type=int, default=100_000, help="records per Iceberg commit")
    rows = run(parser.parse_args(argv))
    print(f"pyarrow reference: appended {rows}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
