"""Staged Parquet files, written on one background thread while the line loop keeps routing.

pyarrow's JSON reader and Parquet writer release the GIL, so decoding and encoding a batch on this
thread overlaps with the Python line loop on the other core. Each stream writes one file per
checkpoint (a row group per batch), so overlapping does not multiply small files. At most
`max_in_flight` batches wait or run here, which bounds memory; the checkpoint waits for its
stream's work before committing, and any error surfaces there, before anything is visible.
"""

from __future__ import annotations

import functools
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pyarrow as pa
import pyarrow.compute as pc
from pyiceberg.io import FileIO
from pyiceberg.io.fileformat import FileFormatFactory, FileFormatWriter
from pyiceberg.manifest import DataFile, DataFileContent, FileFormat
from pyiceberg.partitioning import PartitionFieldValue, PartitionKey, PartitionSpec
from pyiceberg.schema import Schema
from pyiceberg.table.locations import load_location_provider
from pyiceberg.table.metadata import TableMetadata
from pyiceberg.typedef import Record

T = TypeVar("T")

_ROLL_AFTER_ROWS = 5_000_000  # a long checkpoint still writes files of bounded size


class StagingThread:
    """The one background thread all streams stage their files on, with bounded work in flight."""

    def __init__(self, max_in_flight: int = 2) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="staging")
        self._slots = threading.BoundedSemaphore(max_in_flight)

    def submit(self, work: Callable[[], T]) -> Future[T]:
        self._slots.acquire()  # blocks the line loop while the thread is behind: memory stays bounded
        try:
            future = self._executor.submit(work)
        except BaseException:
            self._slots.release()
            raise
        future.add_done_callback(lambda _: self._slots.release())
        return future

    def close(self) -> None:
        self._executor.shutdown(wait=True)


def field_ids(schema: Schema) -> dict[str, int]:
    return {name: schema.find_field(name).field_id for name in schema.column_names}


@dataclass
class StagedFile:
    data_file: DataFile
    rows: int
    field_ids: dict[str, int] = field(default_factory=dict)


@dataclass
class _OpenFile:
    writer: FileFormatWriter
    path: str
    output_len: Callable[[], int]
    metadata: TableMetadata
    partition: Record
    rows: int = 0


def split_partitions(
    spec: PartitionSpec, schema: Schema, table: pa.Table
) -> Iterator[tuple[tuple[Any, ...], PartitionKey, pa.Table]]:
    """The batch's rows per partition of `spec`: (key, partition record, rows). The transforms are
    Iceberg's own (pyiceberg, pyiceberg-core), so the values match what readers prune by."""
    names = []
    for n, partition_field in enumerate(spec.fields):
        source = schema.find_field(partition_field.source_id)
        column = schema.find_column_name(partition_field.source_id)
        assert column is not None
        transform = partition_field.transform.pyarrow_transform(source.field_type)
        table = table.append_column(f"__partition_{n}", transform(table.column(column)))
        names.append(f"__partition_{n}")
    for values in table.select(names).group_by(names, use_threads=False).aggregate([]).to_pylist():
        conditions = [
            pc.is_null(table.column(name))
            if values[name] is None
            else pc.equal(table.column(name), values[name])
            for name in names
        ]
        rows = table.filter(functools.reduce(pc.and_, conditions)).drop_columns(names)
        key = PartitionKey(
            field_values=[
                PartitionFieldValue(field=f, value=values[name])
                for f, name in zip(spec.fields, names, strict=True)
            ],
            partition_spec=spec,
            schema=schema,
        )
        yield tuple(values[name] for name in names), key, rows


class DataFileWriter:
    """One table's open staged files: one per partition (one in all for an unpartitioned table).
    Used only on the staging thread."""

    def __init__(self, run_id: str, io: FileIO) -> None:
        self._run_id = run_id
        self._io = io
        self._seq = 0
        self._open_files: dict[tuple[Any, ...], _OpenFile] = {}
        self.written: list[StagedFile] = []  # closed files, in order
        self.open_paths: list[str] = []  # files begun (closed or not), for cleanup

    def write(self, table: pa.Table, metadata: TableMetadata) -> None:
        if any(f.metadata.current_schema_id != metadata.current_schema_id for f in self._open_files.values()):
            self.close()
        spec = metadata.spec()
        if spec.is_unpartitioned():
            parts: Iterable[tuple[tuple[Any, ...], PartitionKey | None, pa.Table]] = [((), None, table)]
        else:
            parts = split_partitions(spec, metadata.schema(), table)
        for key, partition, rows in parts:
            open_file = self._open_files.get(key)
            if open_file is not None and open_file.rows >= _ROLL_AFTER_ROWS:
                self._close(key)
                open_file = None
            if open_file is None:
                open_file = self._open(metadata, key, partition)
            open_file.writer.write(rows)
            open_file.rows += rows.num_rows

    def _open(
        self, metadata: TableMetadata, key: tuple[Any, ...], partition: PartitionKey | None
    ) -> _OpenFile:
        self._seq += 1
        name = f"{self._run_id}-{self._seq:05d}-{uuid.uuid4().hex[:12]}.parquet"
        properties = dict(metadata.properties)
        provider = load_location_provider(metadata.location, properties)
        path = provider.new_data_location(name, partition)
        output = self._io.new_output(path)
        writer = FileFormatFactory.get(FileFormat.PARQUET).create_writer(
            output, metadata.schema(), properties
        )
        record = partition.partition if partition is not None else Record()
        opened = _OpenFile(writer, path, output.__len__, metadata, record)
        self._open_files[key] = opened
        self.open_paths.append(path)
        return opened

    def close(self) -> None:
        """Finish the open files (if any) and record them as staged."""
        for key in list(self._open_files):
            self._close(key)

    def _close(self, key: tuple[Any, ...]) -> None:
        opened = self._open_files.pop(key)
        with opened.writer:
            pass
        statistics = opened.writer.result()
        metadata = opened.metadata
        data_file = DataFile.from_args(
            content=DataFileContent.DATA,
            file_path=opened.path,
            file_format=FileFormat.PARQUET,
            partition=opened.partition,
            file_size_in_bytes=opened.output_len(),
            sort_order_id=None,
            spec_id=metadata.default_spec_id,
            equality_ids=None,
            key_metadata=None,
            **statistics.to_serialized_dict(),
        )
        data_file.spec_id = metadata.default_spec_id  # not in the struct; snapshot producers read it
        self.written.append(StagedFile(data_file, opened.rows, field_ids(metadata.schema())))

    def abandon(self) -> None:
        """Close without recording; the caller deletes `open_paths`."""
        opened, self._open_files = list(self._open_files.values()), {}
        for item in opened:
            item.writer.close()
