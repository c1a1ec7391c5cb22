"""One stream's table: buffer raw RECORD lines, write staged Parquet files, hand changes to commit.

Nothing a sink writes is visible until the checkpoint that carries it commits: data files and
manifests are written under the table location, the new metadata only by the catalog at commit.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
from pyiceberg.exceptions import ValidationError
from pyiceberg.io import FileIO, load_file_io
from pyiceberg.io.fileformat import FileFormatFactory
from pyiceberg.io.pyarrow import schema_to_pyarrow
from pyiceberg.manifest import DataFile, DataFileContent, FileFormat
from pyiceberg.schema import Schema
from pyiceberg.table import StagedTable, Table
from pyiceberg.table.locations import load_location_provider
from pyiceberg.table.metadata import TableMetadata
from pyiceberg.typedef import Identifier, Record

from target_iceberg_nessie import properties as props
from target_iceberg_nessie.catalogs import CheckpointCatalog, TableChange
from target_iceberg_nessie.convert import conform_table
from target_iceberg_nessie.decode import RecordDecoder
from target_iceberg_nessie.errors import CommitConflictError, SchemaEvolutionError
from target_iceberg_nessie.naming import table_identifier
from target_iceberg_nessie.schema import StreamShape, stream_shape
from target_iceberg_nessie.settings import TargetSettings
from target_iceberg_nessie.snapshots import append_snapshot


@dataclass
class StreamTally:
    """What a stream did in this run (for the summary line and run metadata)."""

    records_read: int = 0
    rows_committed: int = 0
    files_committed: int = 0
    bytes_committed: int = 0
    snapshot_ids: list[int] = field(default_factory=list)


@dataclass
class _Staged:
    files: list[DataFile] = field(default_factory=list)
    rows: int = 0
    field_ids: dict[str, int] = field(default_factory=dict)  # column path → field id the files use


def _field_ids(schema: Schema) -> dict[str, int]:
    return {name: schema.find_field(name).field_id for name in schema.column_names}


class IcebergSink:
    """The Iceberg table of one Singer stream."""

    def __init__(self, stream: str, settings: TargetSettings, catalog: CheckpointCatalog) -> None:
        self.stream = stream
        self.settings = settings
        self.catalog = catalog
        self.identifier: Identifier = table_identifier(settings.tenant, settings.namespace, stream)
        self.table_name = ".".join(self.identifier)
        self.shape: StreamShape | None = None
        self._raw_schema: Mapping[str, Any] | None = None
        self._decoder: RecordDecoder | None = None
        self.lines: list[bytes] = []
        self.numbers: list[int] = []
        self.buffered_bytes = 0
        self.first_buffered_at = 0.0
        self._base: Table | None = None  # the committed table (None: not created yet)
        self._working: TableMetadata | None = None  # base + staged schema changes / creation
        self._dirty = False
        self._staged = _Staged()
        self._file_seq = 0
        self._io: FileIO | None = None
        self.tally = StreamTally()

    # -- schema ------------------------------------------------------------------------------

    def set_schema(self, schema: Mapping[str, Any], key_properties: list[str] | None) -> None:
        """Apply a SCHEMA message: create or evolve the (staged) table."""
        if schema == self._raw_schema and self.shape is not None:
            return
        self.flush()  # records buffered under the previous schema are written with it
        shape = stream_shape(schema, key_properties)
        self._evolve(shape)
        self.shape = shape
        self._raw_schema = schema
        self._decoder = RecordDecoder(self.stream, shape)

    def _table_properties(self) -> dict[str, str]:
        return {
            props.TENANT: self.settings.tenant,
            props.STREAM: self.stream,
            props.WRITER: "target-iceberg-nessie",
            "write.parquet.compression-codec": self.settings.parquet_compression,
            "format-version": "2",
        }

    def _load(self, shape: StreamShape) -> TableMetadata:
        """Working metadata from the committed table, or a new table's (then the sink is dirty)."""
        self._base = self.catalog.load_table(self.identifier)
        if self._base is None:
            self._dirty = True
            return self.catalog.new_table_metadata(self.identifier, shape.column_schema, self._table_properties())
        return self._base.metadata

    def _evolve(self, shape: StreamShape) -> None:
        working = self._working if self._working is not None else self._load(shape)
        io = self.io(working)
        staged = StagedTable(
            identifier=self.identifier,
            metadata=working,
            metadata_location=self._base.metadata_location if self._base else working.location,
            io=io,
            catalog=self.catalog.iceberg,
        )
        tx = staged.transaction()
        try:
            with tx.update_schema() as update:
                update.union_by_name(shape.column_schema)
        except (ValidationError, ValueError) as error:
            raise SchemaEvolutionError(
                f"{error}. Only new columns and safe widening (int→long, float→double, wider decimal, "
                "required→optional) are applied automatically; to change a column's type, load into a "
                "new table (another namespace or stream name) or migrate this one",
                stream=self.stream,
                table=self.table_name,
            ) from None
        evolved = tx.table_metadata
        if evolved.current_schema_id != working.current_schema_id:
            self._dirty = True
        self._working = evolved

    def io(self, metadata: TableMetadata) -> FileIO:
        if self._io is None:
            self._io = load_file_io(dict(metadata.properties), metadata.location)
        return self._io

    # -- records -----------------------------------------------------------------------------

    def is_old(self, now: float) -> bool:
        return bool(self.lines) and now - self.first_buffered_at >= self.settings.batch_max_age_seconds

    def flush(self) -> None:
        """Write buffered records to a staged Parquet file (not visible until committed)."""
        if not self.lines:
            return
        assert self._decoder is not None and self._working is not None
        lines, numbers = self.lines, self.numbers
        self.lines, self.numbers, self.buffered_bytes, self.first_buffered_at = [], [], 0, 0.0
        decoded = self._decoder.decode(lines, numbers)
        schema = self._working.schema()
        conformed = conform_table(decoded, schema_to_pyarrow(schema), self.stream, numbers)
        self._write_file(conformed, self._working)
        self.tally.records_read += len(lines)

    def _write_file(self, table: pa.Table, metadata: TableMetadata) -> None:
        self._file_seq += 1
        name = f"{self.settings.run_id}-{self._file_seq:05d}-{uuid.uuid4().hex[:12]}.parquet"
        properties = dict(metadata.properties)
        path = load_location_provider(metadata.location, properties).new_data_location(name)
        output = self.io(metadata).new_output(path)
        schema = metadata.schema()
        writer = FileFormatFactory.get(FileFormat.PARQUET).create_writer(output, schema, properties)
        with writer:
            writer.write(table)
        statistics = writer.result()
        self._staged.files.append(
            DataFile.from_args(
                content=DataFileContent.DATA,
                file_path=path,
                file_format=FileFormat.PARQUET,
                partition=Record(),
                file_size_in_bytes=len(output),
                sort_order_id=None,
                spec_id=metadata.default_spec_id,
                equality_ids=None,
                key_metadata=None,
                **statistics.to_serialized_dict(),
            )
        )
        self._staged.rows += table.num_rows
        self._staged.field_ids.update(_field_ids(schema))
        self._dirty = True

    # -- checkpoint --------------------------------------------------------------------------

    @property
    def has_changes(self) -> bool:
        return self._dirty

    @property
    def staged_rows(self) -> int:
        return self._staged.rows

    def table_change(self, snapshot_properties: Mapping[str, str]) -> TableChange:
        """This table's part of a checkpoint: its staged schema change and one append snapshot."""
        assert self._working is not None
        metadata = self._working
        if self._staged.files:
            summary = {**snapshot_properties, props.STREAM: self.stream}
            metadata = append_snapshot(metadata, self._staged.files, self.io(metadata), summary)
        base = self._base
        return TableChange(
            identifier=self.identifier,
            base_location=base.metadata_location if base is not None else None,
            metadata=metadata,
            base_updated_ms=base.metadata.last_updated_ms if base is not None else 0,
        )

    def prepare_retry(self) -> None:
        """After a conflict: reload the table and re-apply the schema; staged files are kept."""
        assert self.shape is not None
        self._working = None
        self._evolve(self.shape)
        self._dirty = True
        assert self._working is not None
        now_ids = _field_ids(self._working.schema())
        moved = [name for name, fid in self._staged.field_ids.items() if now_ids.get(name) != fid]
        if moved:
            msg = (
                f"table {self.table_name} was changed by another writer so that columns {moved[:5]} have "
                "new field ids; the staged files cannot be committed. Re-run the job"
            )
            raise CommitConflictError(msg)

    def committed(self, snapshot_id: int | None) -> None:
        """The checkpoint landed: the staged work is now the table's committed state."""
        self.tally.rows_committed += self._staged.rows
        self.tally.files_committed += len(self._staged.files)
        self.tally.bytes_committed += sum(f.file_size_in_bytes for f in self._staged.files)
        if snapshot_id is not None:
            self.tally.snapshot_ids.append(snapshot_id)
        self._staged = _Staged()
        self._dirty = False
        if self.shape is not None:
            self._working = self._load(self.shape)

    def discard(self) -> None:
        """The checkpoint will never commit: delete its staged data files."""
        for data_file in self._staged.files:
            with contextlib.suppress(OSError):
                (self._io or load_file_io({}, data_file.file_path)).delete(data_file.file_path)
        self._staged = _Staged()
        self.lines, self.numbers, self.buffered_bytes = [], [], 0
