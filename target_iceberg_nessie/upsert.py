"""Upsert and overwrite write modes: copy-on-write rewrites inside the checkpoint's commit.

Upsert by key: the checkpoint's staged rows replace the table's rows with the same key. Three steps,
all columnar:

1. `latest_per_key`: within the checkpoint, the last record of a key wins (records keep their order
   through the staged files), so the staged files are rewritten only when a key repeats.
2. `rows_to_replace`: the table's data files that may hold one of the staged keys are found with
   Iceberg's own file pruning (partition values and column bounds, from a key filter), read projected
   to the current schema, and anti-joined with the staged keys: a file without a match is left alone,
   a file with matches is rewritten without them (or just removed when nothing is left).
3. `overwrite_snapshot`: ONE snapshot deletes the replaced files and adds the rewritten and staged
   ones, so the table moves from the old rows to the new in the checkpoint's single atomic commit.

No equality-delete files are written: every Iceberg reader (DuckDB, pyiceberg, Spark, Trino) reads
the result without merge-on-read support, and readers never see a key twice.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc
from pyiceberg.expressions import (
    AlwaysTrue,
    And,
    BooleanExpression,
    GreaterThanOrEqual,
    In,
    LessThanOrEqual,
)
from pyiceberg.io import FileIO
from pyiceberg.io.pyarrow import ArrowScan, schema_to_pyarrow
from pyiceberg.manifest import DataFile
from pyiceberg.table import DataScan, FileScanTask, StagedTable
from pyiceberg.table.metadata import TableMetadata
from pyiceberg.typedef import Identifier

from target_iceberg_nessie.staging import DataFileWriter, StagedFile

_ORDINAL = "__ingest_ordinal"
_IN_LIST_MAX = 1_000  # more distinct key values than this prune files by their min/max range instead


@dataclass
class Rewrite:
    """What a checkpoint's upsert does to the committed table."""

    deleted: list[DataFile] = field(default_factory=list)  # files whose rows are replaced (or all gone)
    added: list[StagedFile] = field(default_factory=list)  # those files' surviving rows, rewritten
    rows_replaced: int = 0  # committed rows the checkpoint's records replace

    @property
    def paths(self) -> list[str]:
        return [f.data_file.file_path for f in self.added]


def _read(
    metadata: TableMetadata, io: FileIO, files: Sequence[DataFile], columns: Sequence[str] | None = None
) -> pa.Table:
    """Rows of `files` in order, projected (by field id) to the current schema or its `columns`:
    files written before a schema change read like new ones, a column they lack reads as null."""
    schema = metadata.schema() if columns is None else metadata.schema().select(*columns)
    rows = ArrowScan(metadata, io, schema, AlwaysTrue()).to_table([FileScanTask(f) for f in files])
    # The scan drops the field ids from the Arrow schema; files written from these rows need them.
    return rows.cast(schema_to_pyarrow(schema))


def staged_keys(
    metadata: TableMetadata, io: FileIO, files: Sequence[DataFile], keys: Sequence[str]
) -> pa.Table:
    """The key columns of the staged rows, in record order."""
    return _read(metadata, io, files, keys)


def latest_per_key(
    io: FileIO, files: Sequence[DataFile], keys: Sequence[str], metadata: TableMetadata, run_id: str
) -> tuple[list[StagedFile] | None, pa.Table]:
    """The checkpoint's distinct keys, and staged files holding only the last record of each key
    (None when no key repeats, so the staged files stand as they are). The keys are read once."""
    found = staged_keys(metadata, io, files, keys)
    numbered = found.append_column(_ORDINAL, pa.array(range(found.num_rows), pa.int64()))
    last = numbered.group_by(list(keys), use_threads=False).aggregate([(_ORDINAL, "max")])
    distinct = last.select(list(keys))
    if last.num_rows == found.num_rows:
        return None, distinct
    keep = pc.sort_indices(last.column(f"{_ORDINAL}_max"))
    rows = _read(metadata, io, files)
    latest = rows.take(pc.take(last.column(f"{_ORDINAL}_max"), keep))
    writer = DataFileWriter(f"{run_id}-latest", io)
    writer.write(latest, metadata)
    writer.close()
    return list(writer.written), distinct


def key_filter(staged: pa.Table, keys: Sequence[str]) -> BooleanExpression:
    """A filter every committed row with one of `staged`'s keys matches (maybe others too): Iceberg
    prunes the files that cannot hold one by their partition values and column bounds."""
    expression: BooleanExpression = AlwaysTrue()
    for key in keys:
        column = staged.column(key).drop_null()
        if len(column) == 0:
            continue
        kind = column.type
        if not (pa.types.is_integer(kind) or pa.types.is_string(kind) or pa.types.is_large_string(kind)):
            continue  # other types' literals need conversions the pruning gains little from
        values = pc.unique(column)
        if len(values) <= _IN_LIST_MAX:
            term: BooleanExpression = In(term=key, literals=values.to_pylist())
        else:
            bounds = pc.min_max(column)
            term = And(
                GreaterThanOrEqual(term=key, value=bounds["min"].as_py()),
                LessThanOrEqual(term=key, value=bounds["max"].as_py()),
            )
        expression = term if isinstance(expression, AlwaysTrue) else And(expression, term)
    return expression


def rows_to_replace(
    metadata: TableMetadata, io: FileIO, staged: pa.Table, keys: Sequence[str], run_id: str
) -> Rewrite:
    """The committed files holding one of the `staged` keys (distinct), and their other rows
    rewritten."""
    rewrite = Rewrite()
    if metadata.current_snapshot() is None or staged.num_rows == 0:
        return rewrite
    tasks = DataScan(metadata, io, row_filter=key_filter(staged, keys)).plan_files()
    writer = DataFileWriter(f"{run_id}-rewrite", io)
    for task in tasks:
        file_keys = _read(metadata, io, [task.file], keys)
        numbered = file_keys.append_column(_ORDINAL, pa.array(range(file_keys.num_rows), pa.int64()))
        kept = numbered.join(staged, keys=list(keys), join_type="left anti", use_threads=False)
        if kept.num_rows == file_keys.num_rows:
            continue
        rewrite.deleted.append(task.file)
        rewrite.rows_replaced += file_keys.num_rows - kept.num_rows
        if kept.num_rows:
            rows = _read(metadata, io, [task.file])
            survivors = kept.column(_ORDINAL)
            writer.write(rows.take(pc.take(survivors, pc.sort_indices(survivors))), metadata)
    writer.close()
    rewrite.added = list(writer.written)
    return rewrite


def all_rows(metadata: TableMetadata, io: FileIO) -> list[DataFile]:
    """Every data file of the table's current snapshot (overwrite mode replaces them all)."""
    if metadata.current_snapshot() is None:
        return []
    return [task.file for task in DataScan(metadata, io).plan_files()]


def overwrite_snapshot(
    identifier: Identifier,
    metadata: TableMetadata,
    *,
    io: FileIO,
    deleted: Iterable[DataFile],
    added: Iterable[DataFile],
    summary_properties: Mapping[str, str],
) -> TableMetadata:
    """`metadata` with one new snapshot on `main` that removes `deleted` and adds `added` (an
    OVERWRITE when it removes anything). Built by pyiceberg's snapshot producer on an uncommitted
    table; the catalog commits the result with the rest of the checkpoint."""
    table = StagedTable(identifier, metadata, metadata.location, io, catalog=None)  # type: ignore[arg-type]
    transaction = table.transaction()
    with transaction.update_snapshot(snapshot_properties=dict(summary_properties)).overwrite(
        commit_uuid=uuid.uuid4()
    ) as overwrite:
        for data_file in deleted:
            overwrite.delete_data_file(data_file)
        for data_file in added:
            overwrite.append_data_file(data_file)
    return transaction.table_metadata
