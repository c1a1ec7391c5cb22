"""Staged Parquet files, written on one background thread while the line loop keeps routing.

pyarrow's JSON reader and Parquet writer release the GIL, so decoding and encoding a batch on this
thread overlaps with the Python line loop on the other core. Each stream writes one file per
checkpoint (a row group per batch), so overlapping does not multiply small files. At most
`max_in_flight` batches wait or run here, which bounds memory; the checkpoint waits for its
stream's work before committing, and any error surfaces there, before anything is visible.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TypeVar

import pyarrow as pa
from pyiceberg.io import FileIO
from pyiceberg.io.fileformat import FileFormatFactory, FileFormatWriter
from pyiceberg.manifest import DataFile, DataFileContent, FileFormat
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


class DataFileWriter:
    """One table's open staged file. Used only on the staging thread."""

    def __init__(self, run_id: str, io: FileIO) -> None:
        self._run_id = run_id
        self._io = io
        self._seq = 0
        self._writer: FileFormatWriter | None = None
        self._output_len: Callable[[], int] | None = None
        self._path = ""
        self._metadata: TableMetadata | None = None
        self._rows = 0
        self.written: list[StagedFile] = []  # closed files, in order
        self.open_paths: list[str] = []  # files begun (closed or not), for cleanup

    def write(self, table: pa.Table, metadata: TableMetadata) -> None:
        if self._writer is not None and (
            self._metadata is None
            or self._metadata.current_schema_id != metadata.current_schema_id
            or self._rows >= _ROLL_AFTER_ROWS
        ):
            self.close()
        if self._writer is None:
            self._open(metadata)
        assert self._writer is not None
        self._writer.write(table)
        self._rows += table.num_rows

    def _open(self, metadata: TableMetadata) -> None:
        self._seq += 1
        name = f"{self._run_id}-{self._seq:05d}-{uuid.uuid4().hex[:12]}.parquet"
        properties = dict(metadata.properties)
        self._path = load_location_provider(metadata.location, properties).new_data_location(name)
        output = self._io.new_output(self._path)
        self._writer = FileFormatFactory.get(FileFormat.PARQUET).create_writer(
            output, metadata.schema(), properties
        )
        self._output_len = output.__len__
        self._metadata = metadata
        self._rows = 0
        self.open_paths.append(self._path)

    def close(self) -> None:
        """Finish the open file (if any) and record it as staged."""
        if self._writer is None:
            return
        assert self._metadata is not None
        assert self._output_len is not None
        with self._writer:
            pass
        statistics = self._writer.result()
        metadata = self._metadata
        data_file = DataFile.from_args(
            content=DataFileContent.DATA,
            file_path=self._path,
            file_format=FileFormat.PARQUET,
            partition=Record(),
            file_size_in_bytes=self._output_len(),
            sort_order_id=None,
            spec_id=metadata.default_spec_id,
            equality_ids=None,
            key_metadata=None,
            **statistics.to_serialized_dict(),
        )
        self.written.append(StagedFile(data_file, self._rows, field_ids(metadata.schema())))
        self._writer = None
        self._metadata = None

    def abandon(self) -> None:
        """Close without recording; the caller deletes `open_paths`."""
        if self._writer is not None:
            try:
                self._writer.close()
            finally:
                self._writer = None
