"""Buffered RECORD lines of one stream → one Arrow table, without a Python loop per value.

The fast path hands the raw lines to pyarrow's JSON reader with the stream's read schema. Properties
no Arrow type fits (free-form objects) are pulled out as raw JSON text by msgspec, which skips
everything else without building Python objects. Only a stream with an untypeable value *inside* a
struct or list takes the Python path (orjson per record). Errors are located on a slow path that
runs only after the fast one failed, so good batches never pay for it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import msgspec
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj

from target_iceberg_nessie.errors import BadInputError
from target_iceberg_nessie.schema import JSON_TEXT_KEY, StreamShape

_BLOCK_SIZE = 1 << 20  # blocks are parsed in parallel; 1 MiB keeps both cores busy on a batch
_NULL_RAW = msgspec.Raw(b"null")
_NULL_TEXT = pa.scalar(None, pa.string())


def _json_text_decoder(columns: Sequence[str]) -> msgspec.json.Decoder[Any]:
    """A decoder that returns only the raw JSON of `columns` from a RECORD message."""
    attrs = [f"f{i}" for i in range(len(columns))]
    record = msgspec.defstruct(
        "JsonTextColumns",
        [(attr, msgspec.Raw, _NULL_RAW) for attr in attrs],  # a missing key reads as JSON null
        rename=dict(zip(attrs, columns, strict=True)),
    )
    envelope = msgspec.defstruct("RecordEnvelope", [("record", record)])
    return msgspec.json.Decoder(envelope)


def _jsonify(value: Any, arrow_type: pa.DataType, field: pa.Field | None) -> Any:
    """Python path: replace untypeable values (per the Arrow field metadata) with JSON text."""
    if value is None:
        return None
    if field is not None and field.metadata and field.metadata.get(JSON_TEXT_KEY):
        return orjson.dumps(value).decode()
    if pa.types.is_struct(arrow_type) and isinstance(value, Mapping):
        return {
            arrow_type.field(i).name: _jsonify(
                value.get(arrow_type.field(i).name), arrow_type.field(i).type, arrow_type.field(i)
            )
            for i in range(arrow_type.num_fields)
        }
    if pa.types.is_list(arrow_type) and isinstance(value, list):
        item = arrow_type.value_field
        return [_jsonify(v, item.type, item) for v in value]
    return value


class RecordDecoder:
    """Decodes the buffered RECORD lines of one stream into an Arrow table of its read types."""

    def __init__(self, stream: str, shape: StreamShape) -> None:
        self.stream = stream
        self.shape = shape
        record_type = pa.struct(list(shape.read_schema))
        self._parse_options = pj.ParseOptions(
            explicit_schema=pa.schema([pa.field("record", record_type)]),
            unexpected_field_behavior="ignore",
        )
        self._read_options = pj.ReadOptions(use_threads=True, block_size=_BLOCK_SIZE)
        self._json_text = _json_text_decoder(shape.json_text_columns) if shape.json_text_columns else None

    def extract_json_text(self, lines: Sequence[bytes], line_numbers: Sequence[int]) -> list[list[bytes]]:
        """The raw JSON of each untypeable top-level property, per column (holds the GIL: the
        caller runs it on the line-loop thread while the staging thread parses the batch)."""
        if self._json_text is None or self.shape.needs_python_decode:
            return []
        decode = self._json_text.decode
        try:
            records = [decode(line).record for line in lines]
        except msgspec.DecodeError as error:
            self._raise_for_bad_line(lines, line_numbers)
            raise BadInputError(str(error), stream=self.stream) from error
        return [
            [bytes(getattr(r, f"f{i}")) for r in records] for i in range(len(self.shape.json_text_columns))
        ]

    def decode(
        self, lines: Sequence[bytes], line_numbers: Sequence[int], json_text: Sequence[list[bytes]] = ()
    ) -> pa.Table:
        """The batch as an Arrow table of read types; `json_text` from `extract_json_text`."""
        if self.shape.needs_python_decode:
            return self._decode_python(lines, line_numbers)
        table = self._decode_typed(lines, line_numbers)
        if self._json_text is not None:
            raw = json_text or self.extract_json_text(lines, line_numbers)
            for name, values in zip(self.shape.json_text_columns, raw, strict=True):
                text = pa.array(values, type=pa.binary()).cast(pa.string())
                # JSON null (or a missing key) is SQL NULL, not the text "null"; decided per column.
                table = table.append_column(name, pc.if_else(pc.equal(text, "null"), _NULL_TEXT, text))
        return table

    def _decode_typed(self, lines: Sequence[bytes], line_numbers: Sequence[int]) -> pa.Table:
        if not self.shape.read_schema:
            return pa.table({"__rows": pa.nulls(len(lines))}).drop_columns(["__rows"])
        try:
            parsed = pj.read_json(
                pa.BufferReader(b"".join(lines)),  # not BytesIO: Arrow reads it without the GIL
                read_options=self._read_options,
                parse_options=self._parse_options,
            )
        except pa.ArrowInvalid:
            self._raise_for_bad_line(lines, line_numbers)
            raise  # _raise_for_bad_line always raises; this keeps the type checker honest
        record = parsed.column("record")
        if record.null_count:
            row = next(i for i, valid in enumerate(record.is_valid().to_pylist()) if not valid)
            raise BadInputError(
                "RECORD message has no 'record' object; the tap must send one per RECORD",
                line=line_numbers[row],
                stream=self.stream,
            )
        batches = [pa.RecordBatch.from_struct_array(chunk) for chunk in record.chunks]
        return pa.Table.from_batches(batches, schema=self.shape.read_schema)

    def _decode_python(self, lines: Sequence[bytes], line_numbers: Sequence[int]) -> pa.Table:
        schema = self.shape.full_read_schema
        record_type = pa.struct(list(schema))
        rows = []
        for line, number in zip(lines, line_numbers, strict=True):
            try:
                record = orjson.loads(line)["record"]
            except (orjson.JSONDecodeError, KeyError, TypeError):
                self._raise_for_bad_line([line], [number])
                raise
            rows.append(_jsonify(record, record_type, None))
        try:
            array = pa.array(rows, type=record_type)
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            for row, number in zip(rows, line_numbers, strict=True):
                try:
                    pa.array([row], type=record_type)
                except (pa.ArrowInvalid, pa.ArrowTypeError) as error:
                    raise BadInputError(
                        f"a value does not match its declared type: {error}; fix the source value or "
                        "the property's type in the SCHEMA message",
                        line=number,
                        stream=self.stream,
                    ) from None
            raise
        return pa.Table.from_batches([pa.RecordBatch.from_struct_array(array)], schema=schema)

    def _raise_for_bad_line(self, lines: Sequence[bytes], line_numbers: Sequence[int]) -> None:
        """Error path only: find the first line that does not parse or convert, and say why."""
        for line, number in zip(lines, line_numbers, strict=True):
            try:
                message = orjson.loads(line)
            except orjson.JSONDecodeError as error:
                raise BadInputError(f"malformed JSON ({error})", line=number, stream=self.stream) from None
            if not isinstance(message.get("record"), dict):
                raise BadInputError(
                    "RECORD message has no 'record' object; the tap must send one per RECORD",
                    line=number,
                    stream=self.stream,
                )
            if not self.shape.read_schema:
                continue
            try:
                pj.read_json(pa.BufferReader(line), parse_options=self._parse_options)
            except pa.ArrowInvalid as error:
                detail = str(error).replace("JSON parse error: ", "").replace("/record/", "")
                raise BadInputError(
                    f"a value does not match its declared type ({detail}); fix the value at the source "
                    "or the property's type in the SCHEMA message",
                    line=number,
                    stream=self.stream,
                ) from None
        raise BadInputError("the batch could not be decoded, but no single line fails", stream=self.stream)
