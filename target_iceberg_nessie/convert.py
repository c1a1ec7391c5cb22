"""Vectorised conversion of decoded Arrow columns to the table's column types.

Temporal values arrive as strings; they are parsed here on whole columns. When a column cannot be
converted, the offending rows are located (by comparing null masks, or value by value only on the
error path) so the error names the exact input line.
"""

from __future__ import annotations

from collections.abc import Sequence

import pyarrow as pa
import pyarrow.compute as pc

from target_iceberg_nessie.errors import BadInputError
from target_iceberg_nessie.schema import TIME_TYPE, TIMESTAMP_TYPE

# A zone designator after a time of day (a bare date's "-01" is not a zone).
_ZONE_SUFFIX = r"\d\d:\d\d(:\d\d(\.\d+)?)?\s*([Zz]|[+-]\d\d(:?\d\d)?)$"
_EXTRA_FRACTION = r"(\.\d{6})\d+"
_EPOCH_PREFIX = "1970-01-01T"


class ConversionError(Exception):
    """A value could not be converted; `row` is its index in the batch."""

    def __init__(self, row: int, value: object, target: pa.DataType, path: str) -> None:
        super().__init__(f"property '{path}': value {value!r} is not a valid {target}")
        self.row = row
        self.path = path


def _first_bad_row(source: pa.Array, converted: pa.Array) -> int:
    """Index of the first row that was non-null before a lenient conversion and null after."""
    lost = pc.and_(pc.is_valid(source), pc.is_null(converted))
    return int(pc.index(lost, True).as_py())


def _timestamps(strings: pa.Array, path: str) -> pa.Array:
    try:
        return pc.cast(strings, TIMESTAMP_TYPE)
    except pa.ArrowInvalid:
        pass
    # Slower path: truncate sub-microsecond digits and read values without a zone as UTC.
    fixed = pc.replace_substring_regex(strings, _EXTRA_FRACTION, r"\1")
    has_zone = pc.fill_null(pc.match_substring_regex(fixed, _ZONE_SUFFIX), False)
    null = pa.scalar(None, pa.string())
    try:
        zoned = pc.cast(pc.if_else(has_zone, fixed, null), TIMESTAMP_TYPE)
        naive = pc.cast(pc.cast(pc.if_else(has_zone, null, fixed), pa.timestamp("us")), TIMESTAMP_TYPE)
    except pa.ArrowInvalid:
        row = _locate(strings, _timestamps_strict)
        raise ConversionError(row, strings[row].as_py(), TIMESTAMP_TYPE, path) from None
    return pc.if_else(has_zone, zoned, naive)


def _timestamps_strict(strings: pa.Array) -> pa.Array:
    fixed = pc.replace_substring_regex(strings, _EXTRA_FRACTION, r"\1")
    value = fixed[0].as_py()
    if value is None:
        return fixed
    has_zone = pc.match_substring_regex(fixed, _ZONE_SUFFIX)[0].as_py()
    if has_zone:
        return pc.cast(fixed, TIMESTAMP_TYPE)
    return pc.cast(pc.cast(fixed, pa.timestamp("us")), TIMESTAMP_TYPE)


def _locate(strings: pa.Array, convert: object) -> int:
    """Error path only: find the first value that `convert` rejects."""
    assert callable(convert)
    for row in range(len(strings)):
        try:
            convert(strings.slice(row, 1))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            return row
    return 0


def _dates(strings: pa.Array, path: str) -> pa.Array:
    try:
        return pc.cast(strings, pa.date32())
    except pa.ArrowInvalid:
        # Accept a date-time where a date is declared by keeping its date part.
        head = pc.utf8_slice_codeunits(strings, 0, 10)
        try:
            return pc.cast(head, pa.date32())
        except pa.ArrowInvalid:
            row = _locate(head, lambda one: pc.cast(one, pa.date32()))
            raise ConversionError(row, strings[row].as_py(), pa.date32(), path) from None


def _times(strings: pa.Array, path: str) -> pa.Array:
    def parse(values: pa.Array) -> pa.Array:
        stamped = pc.binary_join_element_wise(_EPOCH_PREFIX, values, "")
        fixed = pc.replace_substring_regex(stamped, _EXTRA_FRACTION, r"\1")
        micros = pc.cast(pc.cast(fixed, pa.timestamp("us")), pa.int64())
        return pc.cast(micros, TIME_TYPE)

    try:
        return parse(strings)
    except pa.ArrowInvalid:
        row = _locate(strings, parse)
        raise ConversionError(row, strings[row].as_py(), TIME_TYPE, path) from None


def convert_array(array: pa.Array, target: pa.DataType, path: str) -> pa.Array:  # noqa: PLR0911 - a return per type
    """Convert `array` (as read) into `target` (the column type), recursing into structs and lists."""
    source = array.type
    if source == target:
        return array
    if pa.types.is_null(source):
        return pa.nulls(len(array), target)
    if pa.types.is_string(source) or pa.types.is_large_string(source):
        if target == TIMESTAMP_TYPE:
            return _timestamps(array, path)
        if pa.types.is_date32(target):
            return _dates(array, path)
        if target == TIME_TYPE:
            return _times(array, path)
    if pa.types.is_struct(target) and pa.types.is_struct(source):
        return _convert_struct(array, target, path)
    lists = (pa.types.is_list, pa.types.is_large_list)
    if any(t(target) for t in lists) and any(t(source) for t in lists):
        values = convert_array(array.values, target.value_type, f"{path}[]")
        if pa.types.is_large_list(target):  # what pyiceberg's schema_to_pyarrow gives for lists
            offsets = pc.cast(array.offsets, pa.int64())
            return pa.LargeListArray.from_arrays(offsets, values, type=target, mask=array.is_null())
        offsets = pc.cast(array.offsets, pa.int32())
        return pa.ListArray.from_arrays(offsets, values, type=target, mask=array.is_null())
    try:
        return pc.cast(array, target)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        row = _locate(array, lambda one: pc.cast(one, target))
        raise ConversionError(row, array[row].as_py(), target, path) from None


def _convert_struct(array: pa.StructArray, target: pa.StructType, path: str) -> pa.Array:
    if array.offset:
        array = pa.concat_arrays([array])  # children of a sliced struct are not sliced
    names = [array.type.field(i).name for i in range(array.type.num_fields)]
    flattened = array.flatten()  # children with the parent's nulls applied (their slots hold junk)
    children = []
    for i in range(target.num_fields):
        field = target.field(i)
        if field.name in names:
            child = flattened[names.index(field.name)]
            children.append(convert_array(child, field.type, f"{path}.{field.name}"))
        else:
            children.append(pa.nulls(len(array), field.type))
    mask = array.is_null() if array.null_count else None
    return pa.StructArray.from_arrays(children, fields=list(target), mask=mask)


def conform_table(
    table: pa.Table, target_schema: pa.Schema, stream: str, line_numbers: Sequence[int]
) -> pa.Table:
    """Return `table` with exactly `target_schema`'s columns, types and field metadata.

    Columns the batch lacks become nulls; columns the target lacks are an error upstream (the table
    schema is evolved before a batch is written).
    """
    columns = []
    for field in target_schema:
        if field.name in table.column_names:
            chunked = table.column(field.name)
            source = chunked.combine_chunks() if chunked.num_chunks != 1 else chunked.chunk(0)
            try:
                columns.append(convert_array(source, field.type, field.name))
            except ConversionError as error:
                line = line_numbers[error.row] if error.row < len(line_numbers) else None
                raise BadInputError(
                    f"{error}; fix the value at the source or declare the property's type/format "
                    "correctly in the SCHEMA message",
                    line=line,
                    stream=stream,
                ) from None
        else:
            columns.append(pa.nulls(table.num_rows, field.type))
    return pa.Table.from_arrays(columns, schema=target_schema)
