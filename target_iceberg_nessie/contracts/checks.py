"""Contract checks on whole batches: pyarrow.compute on columns, never a Python loop per record.

`BatchChecker.check(table)` returns, per check that found offending rows, a boolean mask over the
batch. Checks: required, logical type (castable, no silent truncation), string length, pattern and
format (email, uuid, date, date-time, uri, ipv4), numeric and date ranges, integer width,
multipleOf, unique and primary key (not null; unique within the checkpoint), and the ODCS library
rules nullCheck, validValues and duplicateCount (with their thresholds). Nested object properties
are checked through their struct fields; array items through their flattened values.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import pyarrow as pa
import pyarrow.compute as pc

from target_iceberg_nessie.contracts.model import ColumnRule, ObjectContract, QualityRule

_INTEGER: Final = r"^\s*[+-]?\d+\s*$"
_NUMBER: Final = r"^\s*[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?\s*$"
_DATE: Final = r"^\d{4}-\d{2}-\d{2}$"
_DATE_TIME: Final = r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?$"
_DATE_OR_TIME: Final = r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?)?$"
FORMATS: Final = {
    "email": r"^[^@\s]+@[^@\s]+\.[^@\s]+$",
    "uuid": r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$",
    "date": _DATE,
    "date-time": _DATE_TIME,
    "uri": r"^[A-Za-z][A-Za-z0-9+.-]*:[^\s]*$",
    "ipv4": r"^((25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(25[0-5]|2[0-4]\d|1?\d?\d)$",
}
_INT_RANGES: Final = {
    "i8": (-(2**7), 2**7 - 1),
    "i16": (-(2**15), 2**15 - 1),
    "i32": (-(2**31), 2**31 - 1),
    "i64": (-(2**63), 2**63 - 1),
    "u8": (0, 2**8 - 1),
    "u16": (0, 2**16 - 1),
    "u32": (0, 2**32 - 1),
    "u64": (0, 2**64 - 1),
}


def _arange(n: int) -> pa.Array:
    return pa.array(range(n), type=pa.int64())


def _all(n: int) -> pa.Array:
    return pa.array([True] * n, type=pa.bool_())


def _offending(mask: pa.Array | pa.ChunkedArray) -> pa.Array:
    """A mask with nulls read as "not offending" (a null is only the `required` check's business)."""
    filled = pc.fill_null(mask, False)
    return filled.combine_chunks() if isinstance(filled, pa.ChunkedArray) else filled


def _as_text(array: pa.Array) -> pa.Array:
    return (
        array
        if pa.types.is_string(array.type) or pa.types.is_large_string(array.type)
        else pc.cast(array, pa.string())
    )


def _not_matching(array: pa.Array, pattern: str) -> pa.Array:
    text = _as_text(array)
    return _offending(pc.invert(pc.match_substring_regex(text, pattern)))


@dataclass
class Found:
    """The checks that found offending rows in one batch: check name → mask over the batch."""

    rows: int
    masks: dict[str, pa.Array] = field(default_factory=dict)

    def add(self, check: str, mask: pa.Array) -> None:
        if mask.true_count:
            previous = self.masks.get(check)
            self.masks[check] = mask if previous is None else pc.or_(previous, mask)

    @property
    def any(self) -> bool:
        return bool(self.masks)

    def bad_mask(self) -> pa.Array:
        combined = None
        for mask in self.masks.values():
            combined = mask if combined is None else pc.or_(combined, mask)
        return combined if combined is not None else pa.array([False] * self.rows, type=pa.bool_())

    def counts(self) -> dict[str, int]:
        return {check: mask.true_count for check, mask in self.masks.items()}

    def checks_per_row(self, rows: pa.Array) -> list[list[str]]:
        """For each index in `rows` (an int array), the names of the checks it failed."""
        taken = {check: pc.take(mask, rows).to_pylist() for check, mask in self.masks.items()}
        return [[check for check, flags in taken.items() if flags[i]] for i in range(len(rows))]


class BatchChecker:
    """The compiled checks of one stream's contract. Keeps the keys seen in the current checkpoint
    (primary key, unique columns, duplicateCount) so uniqueness holds across its batches."""

    def __init__(self, contract: ObjectContract) -> None:
        self.contract = contract
        self.primary_key = contract.primary_key
        self._seen: dict[str, list[pa.Array]] = {}

    def reset_checkpoint(self) -> None:
        self._seen = {}

    # -- the batch ---------------------------------------------------------------------------

    def check(self, table: pa.Table) -> Found:
        found = Found(table.num_rows)
        if table.num_rows == 0:
            return found
        names = set(table.column_names)
        for rule in self.contract.columns.values():
            if rule.path not in names:
                if rule.required:
                    found.add(f"{rule.path}: required", _all(table.num_rows))
                continue
            column = table.column(rule.path).combine_chunks()
            self._check_column(found, rule, column, present=None)
        if self.primary_key and self.contract.key_unique:
            self._check_primary_key(found, table)
        return found

    def _check_column(
        self, found: Found, rule: ColumnRule, column: pa.Array, present: pa.Array | None
    ) -> None:
        """`present`: rows whose parent object exists (nested fields); None for top-level columns."""
        nulls = pc.is_null(column)
        if rule.required or rule.primary_key_position is not None:
            missing = nulls if present is None else pc.and_(present, nulls)
            found.add(f"{rule.path}: required", _offending(missing))
        for quality in rule.quality:
            self._check_quality(found, quality, column)
        if column.null_count == len(column):
            return
        for check, mask in self._value_checks(rule, column):
            found.add(f"{rule.path}: {check}", mask)
        if rule.unique and rule.primary_key_position is None:
            found.add(f"{rule.path}: unique", self._repeats(rule.path, pa.table({rule.path: column})))
        if pa.types.is_struct(column.type):
            struct = column
            parent = pc.is_valid(struct)
            for child in rule.children:
                if struct.type.get_field_index(child.name) < 0:
                    if child.required:
                        found.add(f"{child.path}: required", _offending(parent))
                    continue
                self._check_column(found, child, pc.struct_field(struct, child.name), parent)
        if rule.items is not None and (pa.types.is_list(column.type) or pa.types.is_large_list(column.type)):
            self._check_items(found, rule.items, column)

    def _check_items(self, found: Found, items: ColumnRule, column: pa.Array) -> None:
        values = pc.list_flatten(column)
        if len(values) == 0:
            return
        parents = pc.list_parent_indices(column)
        element = Found(len(values))
        self._check_column(element, items, values, _all(len(values)))
        rows = _arange(len(column))
        for check, mask in element.masks.items():
            found.add(check, pc.is_in(rows, value_set=pc.filter(parents, mask)))

    def _value_checks(self, rule: ColumnRule, column: pa.Array) -> Iterator[tuple[str, pa.Array]]:
        kind = rule.logical_type
        arrow = column.type
        is_text = pa.types.is_string(arrow) or pa.types.is_large_string(arrow)
        numeric = pa.types.is_integer(arrow) or pa.types.is_floating(arrow) or pa.types.is_decimal(arrow)
        # Logical type: the value must be castable to it, without losing anything.
        if kind == "integer":
            if is_text:
                yield "logicalType integer", _not_matching(column, _INTEGER)
            elif pa.types.is_floating(arrow) or pa.types.is_decimal(arrow):
                yield (
                    "logicalType integer (a fraction would be truncated)",
                    _offending(pc.not_equal(column, pc.floor(column))),
                )
            elif pa.types.is_boolean(arrow):
                yield "logicalType integer", _offending(pc.is_valid(column))
        elif kind == "number":
            if is_text:
                yield "logicalType number", _not_matching(column, _NUMBER)
            elif pa.types.is_boolean(arrow):
                yield "logicalType number", _offending(pc.is_valid(column))
        elif kind == "boolean" and is_text:
            yield (
                "logicalType boolean",
                _offending(pc.invert(pc.is_in(pc.utf8_lower(column), pa.array(["true", "false"])))),
            )
        elif kind == "date" and is_text:
            shape = pc.match_substring_regex(column, _DATE_OR_TIME)
            day = pc.strptime(
                pc.utf8_slice_codeunits(column, 0, 10), format="%Y-%m-%d", unit="s", error_is_null=True
            )
            yield (
                "logicalType date",
                _offending(pc.and_(pc.is_valid(column), pc.invert(pc.and_(shape, pc.is_valid(day))))),
            )
        elif kind in {"object", "array"} and (numeric or pa.types.is_boolean(arrow)):
            yield f"logicalType {kind}", _offending(pc.is_valid(column))
        yield from self._text_checks(rule, column)
        yield from self._number_checks(rule, column)

    @staticmethod
    def _text_checks(rule: ColumnRule, column: pa.Array) -> Iterator[tuple[str, pa.Array]]:
        kind, options, arrow = rule.logical_type, rule.options, column.type
        is_text = pa.types.is_string(arrow) or pa.types.is_large_string(arrow)
        if is_text:
            if "minLength" in options:
                yield (
                    f"minLength {options['minLength']}",
                    _offending(pc.less(pc.utf8_length(column), options["minLength"])),
                )
            if "maxLength" in options:
                yield (
                    f"maxLength {options['maxLength']}",
                    _offending(pc.greater(pc.utf8_length(column), options["maxLength"])),
                )
            if "pattern" in options:
                yield "pattern", _not_matching(column, options["pattern"])
            fmt = options.get("format")
            if kind == "string" and isinstance(fmt, str) and fmt in FORMATS:
                yield f"format {fmt}", _not_matching(column, FORMATS[fmt])

    def _number_checks(self, rule: ColumnRule, column: pa.Array) -> Iterator[tuple[str, pa.Array]]:
        kind, options, arrow = rule.logical_type, rule.options, column.type
        is_text = pa.types.is_string(arrow) or pa.types.is_large_string(arrow)
        numeric = pa.types.is_integer(arrow) or pa.types.is_floating(arrow) or pa.types.is_decimal(arrow)
        values = column
        if kind in {"integer", "number"} and is_text:
            values = pc.cast(
                pc.if_else(pc.match_substring_regex(column, _NUMBER), column, pa.scalar(None, arrow)),
                pa.float64(),
            )
            numeric = True
        if numeric and kind in {"integer", "number", None}:
            yield from self._range(options, values)
            width = options.get("format") if kind == "integer" else None
            if isinstance(width, str) and width in _INT_RANGES:
                low, high = _INT_RANGES[width]
                as_float = pc.cast(values, pa.float64())
                yield (
                    f"format {width}",
                    _offending(pc.or_(pc.less(as_float, float(low)), pc.greater(as_float, float(high)))),
                )
            if "multipleOf" in options:
                step = float(options["multipleOf"])
                ratio = pc.divide(pc.cast(values, pa.float64()), step)
                yield (
                    f"multipleOf {options['multipleOf']}",
                    _offending(pc.greater(pc.abs(pc.subtract(ratio, pc.round(ratio))), 1e-9)),
                )
        if kind == "date" and ("minimum" in options or "maximum" in options):
            text = _as_text(column) if not is_text else column
            yield from self._range(options, pc.utf8_slice_codeunits(text, 0, 10), as_text=True)

    @staticmethod
    def _range(
        options: Mapping[str, Any], values: pa.Array, *, as_text: bool = False
    ) -> Iterator[tuple[str, pa.Array]]:
        if "minimum" in options:
            bound = str(options["minimum"])[:10] if as_text else options["minimum"]
            below = pc.less_equal if options.get("exclusiveMinimum") else pc.less
            yield f"minimum {options['minimum']}", _offending(below(values, bound))
        if "maximum" in options:
            bound = str(options["maximum"])[:10] if as_text else options["maximum"]
            above = pc.greater_equal if options.get("exclusiveMaximum") else pc.greater
            yield f"maximum {options['maximum']}", _offending(above(values, bound))

    # -- quality rules -------------------------------------------------------------------------

    def _check_quality(self, found: Found, rule: QualityRule, column: pa.Array) -> None:
        if rule.rule == "nullCheck":
            mask = _offending(pc.is_null(column))
        elif rule.rule == "validValues":
            allowed = pa.array(list(rule.valid_values))
            try:
                values = column if column.type == allowed.type else pc.cast(column, allowed.type)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                values = _as_text(column)
                allowed = pa.array([str(v) for v in rule.valid_values])
            mask = _offending(pc.and_(pc.is_valid(values), pc.invert(pc.is_in(values, allowed))))
        elif rule.rule == "duplicateCount":
            assert rule.column is not None
            mask = self._repeats(f"quality:{rule.name}", pa.table({rule.column: column}))
        else:
            return  # run-level rules are evaluated at the end of the run
        offending = int(pc.sum(mask).as_py() or 0)
        if offending and not rule.passes(offending, len(column)):
            found.add(f"{rule.name}", mask)

    # -- keys ----------------------------------------------------------------------------------

    def _check_primary_key(self, found: Found, table: pa.Table) -> None:
        names = list(self.primary_key)
        present = [n for n in names if n in table.column_names]
        if len(present) != len(names):
            return  # the missing key columns are already reported as required
        keys = table.select(present)
        found.add(
            f"primary key ({', '.join(names)}): unique within the checkpoint", self._repeats("__pk__", keys)
        )

    def _repeats(self, slot: str, keys: pa.Table) -> pa.Array:
        """Rows whose non-null key was already seen, in this batch or earlier in the checkpoint."""
        rows = keys.num_rows
        if len(keys.column_names) == 1:
            key = keys.column(0).combine_chunks()
        else:  # a composite key: one text value per row (JSON-ish join of the parts)
            parts = [_as_text(keys.column(i).combine_chunks()) for i in range(len(keys.column_names))]
            key = pc.binary_join_element_wise(*[pc.fill_null(p, "\x00null") for p in parts], "\x1f")
        valid = pc.is_valid(key)
        earlier = self._seen.get(slot, [])
        # Within the batch: every occurrence after the first; and anything seen earlier.
        index = _arange(rows)
        firsts = pa.table({"k": key, "i": index}).group_by("k", use_threads=False).aggregate([("i", "min")])
        repeated = pc.invert(pc.is_in(index, value_set=firsts["i_min"]))
        if earlier:
            repeated = pc.or_(repeated, _offending(pc.is_in(key, value_set=pa.concat_arrays(earlier))))
        self._seen.setdefault(slot, []).append(key.filter(valid))
        return _offending(pc.and_(repeated, valid))


def describe_rows(
    table: pa.Table, rows: Sequence[int], key: Sequence[str], line_numbers: Sequence[int]
) -> list[str]:
    """How a violation report names offending rows: by primary key, with the input line."""
    named = []
    for row in rows:
        line = line_numbers[row] if row < len(line_numbers) else None
        if key and all(k in table.column_names for k in key):
            parts = ", ".join(f"{k}={table.column(k)[row].as_py()!r}" for k in key)
            named.append(f"{parts} (line {line})")
        else:
            named.append(f"line {line}")
    return named
