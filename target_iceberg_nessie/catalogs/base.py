"""What every catalog offers the target: load and stage tables, commit a checkpoint atomically.

A checkpoint is ONE atomic catalog operation that moves every touched table to its new metadata
and records the pipeline's Singer state with it (DESIGN.md, exactly-once protocol).
"""

from __future__ import annotations

import abc
import contextlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
from pyiceberg.catalog import Catalog
from pyiceberg.io import FileIO, load_file_io
from pyiceberg.io.pyarrow import pyarrow_to_schema
from pyiceberg.partitioning import UNPARTITIONED_PARTITION_SPEC, PartitionField, PartitionSpec
from pyiceberg.schema import Schema
from pyiceberg.serializers import ToOutputFile
from pyiceberg.table import Table
from pyiceberg.table.locations import load_location_provider
from pyiceberg.table.metadata import TableMetadata, new_table_metadata
from pyiceberg.table.snapshots import MetadataLogEntry
from pyiceberg.table.sorting import UNSORTED_SORT_ORDER, SortField, SortOrder
from pyiceberg.transforms import IdentityTransform, parse_transform
from pyiceberg.typedef import Identifier

from target_iceberg_nessie.errors import ConfigError

_FIELD_ID = b"PARQUET:field_id"
_METADATA_LOG_MAX = 100
_METADATA_VERSION = re.compile(r"^(\d+)-")  # 00003-<uuid>.metadata.json


def _with_ids(data_type: pa.DataType, next_id: list[int]) -> pa.DataType:
    if pa.types.is_struct(data_type):
        return pa.struct([_field_with_id(data_type.field(i), next_id) for i in range(data_type.num_fields)])
    if pa.types.is_list(data_type):
        return pa.list_(_field_with_id(data_type.value_field, next_id))
    return data_type


def _field_with_id(field: pa.Field, next_id: list[int]) -> pa.Field:
    next_id[0] += 1
    metadata = {**(field.metadata or {}), _FIELD_ID: str(next_id[0]).encode()}
    return pa.field(field.name, _with_ids(field.type, next_id), nullable=True, metadata=metadata)


def arrow_to_iceberg_schema(schema: pa.Schema) -> Schema:
    """An Iceberg schema for Arrow columns; ids are placeholders (new table metadata reassigns them)."""
    next_id = [0]
    return pyarrow_to_schema(pa.schema([_field_with_id(f, next_id) for f in schema]))


def partition_spec(
    schema: Schema, fields: Sequence[tuple[str, str]], identifier: Identifier
) -> PartitionSpec:
    if not fields:
        return UNPARTITIONED_PARTITION_SPEC
    partition_fields = []
    for n, (column, name) in enumerate(fields):
        source = schema.find_field(column) if column in schema._name_to_id else None
        table = ".".join(identifier)
        if source is None:
            msg = f"table {table}: partition column {column!r} is not a column of the table"
            raise ConfigError(msg)
        transform = parse_transform(name)
        if not transform.can_transform(source.field_type):
            msg = f"table {table}: cannot partition {column!r} ({source.field_type}) by {name}"
            raise ConfigError(msg)
        label = column if name == "identity" else f"{column}_{name.split('[')[0]}"
        partition_fields.append(
            PartitionField(source_id=source.field_id, field_id=1000 + n, transform=transform, name=label)
        )
    return PartitionSpec(*partition_fields)


def sort_order(schema: Schema, columns: Sequence[str]) -> SortOrder:
    present = [c for c in columns if c in schema._name_to_id]
    if not present:
        return UNSORTED_SORT_ORDER
    return SortOrder(
        *(SortField(source_id=schema.find_field(c).field_id, transform=IdentityTransform()) for c in present)
    )


@dataclass(frozen=True)
class TableChange:
    """One table's part of a checkpoint: from `base_location` (None = new table) to `metadata`."""

    identifier: Identifier
    base_location: str | None
    metadata: TableMetadata
    base_updated_ms: int = 0  # last-updated-ms of the base metadata, for the metadata log


@dataclass(frozen=True)
class Checkpoint:
    """The ids and state a checkpoint commits; `batch_id` is unique per pipeline and run."""

    pipeline_id: str
    run_id: str
    batch_seq: int
    state: Mapping[str, Any] | None
    streams: tuple[str, ...] = ()
    summary: Mapping[str, Any] = field(default_factory=dict)
    state_location: str | None = None  # the state's file when it is too large to keep inline

    @property
    def batch_id(self) -> str:
        return f"{self.run_id}:{self.batch_seq}"


@dataclass(frozen=True)
class CommitResult:
    """Where a checkpoint landed: a commit id (SQL: the batch id; Nessie: the commit hash)."""

    commit_id: str
    metadata_locations: Mapping[Identifier, str]
    committed_at: str
    already_committed: bool = False  # found in the log after an ambiguous outcome
    metadata: Mapping[Identifier, TableMetadata] = field(default_factory=dict)  # as committed


@dataclass(frozen=True)
class CommittedState:
    """The last checkpoint a pipeline committed: the source of truth for its Singer state."""

    pipeline_id: str
    run_id: str
    batch_id: str
    commit_id: str
    state: Mapping[str, Any] | None
    committed_at: str
    tables: Mapping[str, str] = field(default_factory=dict)  # table → metadata location


class CheckpointCatalog(abc.ABC):
    """The catalog operations the target needs. Implementations live in this package only."""

    name: str
    warehouse: str  # root of new tables' locations
    iceberg: Catalog  # the pyiceberg catalog, for readers and for staged tables
    # FileIO properties for the warehouse (s3.endpoint, s3.access-key-id, ...): never written into
    # table metadata, so credentials stay out of the catalog.
    io_properties: Mapping[str, str] = {}

    def file_io(self, location: str, table_properties: Mapping[str, str] | None = None) -> FileIO:
        """The FileIO for `location` (a table's own properties may tune it)."""
        return load_file_io({**(table_properties or {}), **self.io_properties}, location)

    @abc.abstractmethod
    def load_table(self, identifier: Identifier) -> Table | None:
        """The committed table, or None if it does not exist."""

    def new_table_metadata(
        self,
        identifier: Identifier,
        schema: pa.Schema,
        properties: Mapping[str, str],
        partition_by: Sequence[tuple[str, str]] = (),
        sort_by: Sequence[str] = (),
    ) -> TableMetadata:
        """Metadata of a table that becomes visible only when its checkpoint commits.

        `partition_by`: (column, transform) pairs, e.g. ("created", "day"), ("id", "bucket[16]");
        `sort_by`: columns of the table's sort order (ascending)."""
        iceberg = arrow_to_iceberg_schema(schema)
        return new_table_metadata(
            schema=iceberg,
            partition_spec=partition_spec(iceberg, partition_by, identifier),
            sort_order=sort_order(iceberg, sort_by),
            location="/".join([self.warehouse, *identifier]),
            properties=dict(properties),
        )

    def write_metadata(self, change: TableChange) -> str:
        """Write the change's metadata JSON (next version, with a metadata-log entry for its base)."""
        return self.write_metadata_file(change)[0]

    def write_metadata_file(self, change: TableChange) -> tuple[str, TableMetadata]:
        """`write_metadata`, also returning the metadata exactly as written (the writer keeps it as
        the table's state after the commit instead of reading it back)."""
        metadata, version = change.metadata, 0
        if change.base_location is not None:
            entry = MetadataLogEntry(metadata_file=change.base_location, timestamp_ms=change.base_updated_ms)
            metadata = metadata.model_copy(
                update={"metadata_log": [*metadata.metadata_log, entry][-_METADATA_LOG_MAX:]}
            )
            found = _METADATA_VERSION.match(change.base_location.rsplit("/", 1)[-1])
            version = int(found.group(1)) + 1 if found else 0
        provider = load_location_provider(metadata.location, metadata.properties)
        location = provider.new_table_metadata_file_location(version)
        ToOutputFile.table_metadata(metadata, self.file_io(location).new_output(location))
        return location, metadata

    def delete_quietly(self, locations: Sequence[str]) -> None:
        """Delete files of a commit that surely did not land (best effort)."""
        for location in locations:
            with contextlib.suppress(OSError):
                self.file_io(location).delete(location)

    @abc.abstractmethod
    def commit_checkpoint(self, changes: Sequence[TableChange], checkpoint: Checkpoint) -> CommitResult:
        """Commit all `changes` and the checkpoint's state atomically, or nothing.

        Raises CommitConflictError when a table moved since it was loaded (the caller reloads and
        re-applies), RetriableError when the outcome could not be settled.
        """

    @abc.abstractmethod
    def committed_state(self, pipeline_id: str) -> CommittedState | None:
        """The state of the pipeline's last committed checkpoint."""

    @abc.abstractmethod
    def last_batch_seq(self, pipeline_id: str, run_id: str) -> int:
        """The highest batch sequence committed for this pipeline and run (0: none); a retried
        process with the same run id continues after it instead of reusing batch ids."""

    @abc.abstractmethod
    def commit_log(self, pipeline_id: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        """Newest first: committed checkpoints with batch ids, streams and per-table summaries."""

    @abc.abstractmethod
    def list_tables(self, namespace: Identifier) -> list[Identifier]:
        """Tables directly in `namespace`."""

    @abc.abstractmethod
    def list_namespaces(self) -> list[Identifier]:
        """Every namespace, at any depth."""

    @abc.abstractmethod
    def drop_table(self, identifier: Identifier) -> None:
        """Remove the table from the catalog (its files stay: other branches or snapshots may use
        them). Raises FatalError naming the table when it does not exist."""

    def close(self) -> None:  # noqa: B027 - optional hook; most catalogs hold nothing to release
        """Release connections."""

    def __enter__(self) -> CheckpointCatalog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
