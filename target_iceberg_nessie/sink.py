"""One stream's table: buffer raw RECORD lines, write staged Parquet files, hand changes to commit.

Nothing a sink writes is visible until the checkpoint that carries it commits: data files and
manifests are written under the table location, the new metadata only by the catalog at commit.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
from pyiceberg.exceptions import ValidationError
from pyiceberg.io import FileIO
from pyiceberg.io.pyarrow import schema_to_pyarrow
from pyiceberg.manifest import DataFile
from pyiceberg.table import StagedTable, Table
from pyiceberg.table.metadata import TableMetadata
from pyiceberg.table.snapshots import Snapshot
from pyiceberg.typedef import Identifier

from target_iceberg_nessie import properties as props
from target_iceberg_nessie.catalogs import CheckpointCatalog, TableChange
from target_iceberg_nessie.contracts.enforce import REJECTED_SCHEMA, Outcome, StreamContract
from target_iceberg_nessie.convert import conform_table
from target_iceberg_nessie.decode import RecordDecoder
from target_iceberg_nessie.errors import CommitConflictError, ConfigError, SchemaEvolutionError
from target_iceberg_nessie.markdown_options import SETTING as MARKDOWN_SETTING
from target_iceberg_nessie.markdown_options import StreamPatterns
from target_iceberg_nessie.markdown_store import (
    DOC_SCHEMA,
    DOC_SUFFIX,
    KV_SCHEMA,
    KV_SUFFIX,
    DocumentWriter,
    delete_quietly,
    documents_summary,
    json_rows,
    render_column,
    structured_rows,
)
from target_iceberg_nessie.naming import table_identifier
from target_iceberg_nessie.schema import StreamShape, stream_shape
from target_iceberg_nessie.settings import TargetSettings
from target_iceberg_nessie.snapshots import append_snapshot
from target_iceberg_nessie.staging import DataFileWriter, StagingThread, field_ids
from target_iceberg_nessie.upsert import (
    Rewrite,
    all_rows,
    latest_per_key,
    overwrite_snapshot,
    rows_to_replace,
)


@dataclass
class StreamTally:
    """What a stream did in this run (for the summary line and run metadata)."""

    records_read: int = 0
    rows_committed: int = 0
    rows_replaced: int = 0  # committed rows replaced by newer records (upsert) or a full refresh
    files_committed: int = 0
    bytes_committed: int = 0
    snapshot_ids: list[int] = field(default_factory=list)


@dataclass
class _Staged:
    files: list[DataFile] = field(default_factory=list)
    rows: int = 0
    field_ids: dict[str, int] = field(default_factory=dict)  # column path → field id the files use


class IcebergSink:
    """The Iceberg table of one Singer stream."""

    def __init__(
        self,
        stream: str,
        settings: TargetSettings,
        catalog: CheckpointCatalog,
        staging: StagingThread,
        contract: StreamContract | None = None,
        *,
        derived: bool = False,
    ) -> None:
        """`derived`: a table the target makes from another stream's records (its rejects, its
        Markdown-KV tables); it gets no Markdown-KV patterns of its own."""
        self.stream = stream
        self.contract = contract
        self.rejects: IcebergSink | None = None  # <table>__rejected, made on the first rejected row
        self.markdown = StreamPatterns() if derived else settings.markdown_kv.for_stream(stream)
        self.kv_table: IcebergSink | None = None  # <table>__kv (structured: a row per key-value)
        self.doc_table: IcebergSink | None = None  # <table>__doc (structured: a row per document)
        self._counts_staged_rows = False  # a Markdown-KV table: its records are the rows it stages
        self._documents: DocumentWriter | None = None  # raw_file: this checkpoint's documents
        self.pending_batch_id = ""  # the batch id the next checkpoint commits under
        self._outcomes: list[Outcome] = []
        self.discarded: list[str] = []  # properties the contract's schema policy drops
        self._staging = staging
        self._pending: list[Future[Any]] = []
        self._writer: DataFileWriter | None = None
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
        self.in_doubt = False  # a commit of the staged files was sent and its outcome is unknown
        self._attempt: Snapshot | None = None  # the snapshot of the commit being attempted
        self.write_mode = settings.write_mode  # a rejects table is always appended to
        self._rewrite = Rewrite()  # upsert/overwrite: committed files the attempt replaces
        self._replaced_all = False  # overwrite: the run's first checkpoint replaced the table's rows

    # -- schema ------------------------------------------------------------------------------

    def set_schema(self, schema: Mapping[str, Any], key_properties: list[str] | None) -> None:
        """Apply a SCHEMA message: create or evolve the (staged) table."""
        if schema == self._raw_schema and self.shape is not None:
            return
        self.flush()  # records buffered under the previous schema are written with it
        loaded = schema
        if self.contract is not None:
            loaded, self.discarded = self.contract.apply_policy(schema)
        shape = self._with_markdown(stream_shape(loaded, key_properties), loaded)
        if self.write_mode == "upsert" and not self._upsert_keys(shape):
            msg = (
                f"write_mode 'upsert' needs a key, and stream {self.stream!r} has none: the tap sends no "
                "key_properties and no contract names a primary key. Add `primaryKey: true` columns to "
                "its contract (or key_properties in the tap's metadata), or use write_mode 'append'"
            )
            raise ConfigError(msg)
        self._evolve(shape)
        self.shape = shape
        self._raw_schema = schema
        self._decoder = RecordDecoder(self.stream, shape)
        self._markdown_tables()

    # -- Markdown-KV patterns ------------------------------------------------------------------

    def _markdown_error(self, pattern: str, message: str) -> ConfigError:
        where = f"{MARKDOWN_SETTING}.streams.{self.stream}.{pattern}"
        return ConfigError(f"stream '{self.stream}': {message} (setting '{where}')")

    def _with_markdown(self, shape: StreamShape, schema: Mapping[str, Any]) -> StreamShape:
        """The shape with the `string` pattern's column, after checking the patterns against it."""
        patterns = self.markdown
        properties = schema.get("properties") or {}
        if patterns.structured is not None:
            column = patterns.structured.column
            found = shape.column_schema.field(column) if column in shape.column_schema.names else None
            if found is None or not pa.types.is_string(found.type):
                what = "is not a property of the stream" if found is None else f"is {found.type}, not text"
                raise self._markdown_error(
                    "structured",
                    f"column {column!r} {what}; name the text property that holds the Markdown-KV documents",
                )
            ids = self._doc_id_columns(shape)
            if not ids:
                raise self._markdown_error(
                    "structured",
                    "the documents need an id and the stream has no key_properties; set 'doc_id' to a "
                    "property that names each document",
                )
            missing = [c for c in ids if c not in shape.column_schema.names]
            if missing:
                raise self._markdown_error("structured", f"doc_id {missing} is not a property of the stream")
            if self.write_mode == "upsert" and patterns.structured.kv_table:
                raise self._markdown_error(
                    "structured",
                    f"write_mode upsert cannot replace a document's rows in {self.stream}{KV_SUFFIX} (a "
                    "document has many rows, and upsert keeps one per key); use shape document_level "
                    "(upserted by doc_id), or write_mode append",
                )
        if patterns.string is None:
            return shape
        column = patterns.string.column
        if column in properties:
            raise self._markdown_error(
                "string",
                f"column {column!r} is already a property of the stream; set 'column' to another name",
            )
        columns = shape.column_schema.append(pa.field(column, pa.string(), nullable=True))
        return dataclasses.replace(shape, column_schema=columns)

    def _doc_id_columns(self, shape: StreamShape | None = None) -> tuple[str, ...]:
        structured = self.markdown.structured
        if structured is not None and structured.doc_id:
            return (structured.doc_id,)
        return self._upsert_keys(shape)

    def _markdown_tables(self) -> None:
        """`structured`: the <table>__kv / <table>__doc sinks, committed with this one."""
        structured = self.markdown.structured
        if structured is None:
            return
        wanted = [
            ("kv_table", KV_SUFFIX, KV_SCHEMA, None, structured.kv_table),
            ("doc_table", DOC_SUFFIX, DOC_SCHEMA, ["doc_id"], structured.doc_table),
        ]
        for attribute, suffix, schema, keys, on in wanted:
            if not on or getattr(self, attribute) is not None:
                continue
            table = IcebergSink(
                f"{self.stream}{suffix}", self.settings, self.catalog, self._staging, derived=True
            )
            table.write_mode = self.write_mode
            table._counts_staged_rows = True
            table.set_schema(schema, keys)
            setattr(self, attribute, table)

    def _derived_writer(self, table: IcebergSink | None) -> tuple[DataFileWriter, TableMetadata] | None:
        """A Markdown-KV table's writer and metadata for the staging thread (main thread)."""
        if table is None:
            return None
        assert table._working is not None
        return table._file_writer(table._working), table._working

    def _upsert_keys(self, shape: StreamShape | None = None) -> tuple[str, ...]:
        """The columns a record replaces a row by: the contract's primary key, else the tap's keys."""
        if self.contract is not None and self.contract.contract.primary_key:
            return self.contract.contract.primary_key
        shape = shape or self.shape
        return shape.key_properties if shape is not None else ()

    def _table_properties(self) -> dict[str, str]:
        return {
            **self._governance_properties(),
            props.TENANT: self.settings.tenant,
            props.STREAM: self.stream,
            props.WRITER: "target-iceberg-nessie",
            "write.parquet.compression-codec": self.settings.parquet_compression,
            # zstd level 1 writes files as small as the default level 3 here, ~25% faster (bench/).
            **(
                {"write.parquet.compression-level": "1"}
                if self.settings.parquet_compression == "zstd"
                else {}
            ),
            "format-version": "2",
        }

    def _governance_properties(self) -> dict[str, str]:
        """The contract's tags as table properties; the job's `table_properties` win."""
        found = self.contract.contract.table_properties() if self.contract is not None else {}
        return {**found, **self.settings.table_properties}

    def _load(self, shape: StreamShape) -> TableMetadata:
        """Working metadata from the committed table, or a new table's (then the sink is dirty)."""
        self._base = self.catalog.load_table(self.identifier)
        if self._base is None:
            self._dirty = True
            contract = self.contract.contract if self.contract is not None else None
            return self.catalog.new_table_metadata(
                self.identifier,
                shape.column_schema,
                self._table_properties(),
                partition_by=contract.partition_fields if contract is not None else (),
                sort_by=contract.primary_key if contract is not None else (),
            )
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
            self._describe_columns(tx)
        except (ValidationError, ValueError) as error:
            raise SchemaEvolutionError(
                f"{error}. Only new columns and safe widening (int→long, float→double, wider decimal, "
                "required→optional) are applied automatically; to change a column's type, load into a "
                "new table (another namespace or stream name) or migrate this one",
                stream=self.stream,
                table=self.table_name,
            ) from None
        wanted = self._governance_properties()
        if any(working.properties.get(k) != v for k, v in wanted.items()):
            tx.set_properties(wanted)
        evolved = tx.table_metadata
        if evolved.current_schema_id != working.current_schema_id or evolved.properties != working.properties:
            self._dirty = True
        self._working = evolved

    def _describe_columns(self, tx: Any) -> None:
        """Column docs from the contract: description, classification, critical data element."""
        if self.contract is None:
            return
        schema = tx.table_metadata.schema()
        docs = {}
        for column in self.contract.contract.columns.values():
            parts = [column.description or ""]
            if column.classification:
                parts.append(f"[classification: {column.classification}]")
            if column.critical:
                parts.append("[critical data element]")
            doc = " ".join(p for p in parts if p).strip()
            field = schema.find_field(column.path) if column.path in schema._name_to_id else None
            if doc and field is not None and field.doc != doc:
                docs[column.path] = doc
        if docs:
            with tx.update_schema() as update:
                for path, doc in docs.items():
                    update.update_column(path, doc=doc)

    def io(self, metadata: TableMetadata) -> FileIO:
        if self._io is None:
            self._io = self.catalog.file_io(metadata.location, metadata.properties)
        return self._io

    # -- records -----------------------------------------------------------------------------

    def is_old(self, now: float) -> bool:
        return bool(self.lines) and now - self.first_buffered_at >= self.settings.batch_max_age_seconds

    def flush(self) -> None:
        """Hand buffered records to the staging thread (a row group of a staged file)."""
        if not self.lines:
            return
        assert self._decoder is not None
        assert self._working is not None
        lines, numbers = self.lines, self.numbers
        self.lines, self.numbers, self.buffered_bytes, self.first_buffered_at = [], [], 0, 0.0
        self._raise_failed()
        decoder, metadata, writer = self._decoder, self._working, self._file_writer(self._working)
        stream = self.stream
        json_text = decoder.extract_json_text(lines, numbers)  # GIL-bound: here, not on the staging thread

        contract = self.contract
        markdown = self._markdown_stage(numbers)

        def stage() -> Outcome | None:
            decoded = decoder.decode(lines, numbers, json_text)
            conformed = conform_table(decoded, schema_to_pyarrow(metadata.schema()), stream, numbers)
            outcome = None
            if contract is not None:
                conformed, outcome = contract.enforce(conformed, lines, numbers)
            if markdown is not None:
                conformed = markdown(conformed)
            elif conformed.num_rows:
                writer.write(conformed, metadata)
            return outcome

        self._pending.append(self._staging.submit(stage))
        self.tally.records_read += len(lines)
        self._dirty = True

    def _markdown_stage(self, numbers: list[int]) -> Any:
        """The Markdown-KV part of a batch's staging (None: the stream has no pattern). Everything
        it needs is captured here, on the main thread; the returned function runs on the staging
        thread, after the contract's checks, and writes the batch's table files itself."""
        patterns = self.markdown
        if not patterns.any:
            return None
        assert self._working is not None
        writer, metadata = self._file_writer(self._working), self._working
        keys = self._upsert_keys()
        string = patterns.string
        string_title = (string.title_key or (keys[0] if keys else None)) if string is not None else None
        documents = None
        if patterns.raw_file is not None:
            if self._documents is None:
                self._documents = DocumentWriter(
                    patterns.raw_file,
                    warehouse=self.settings.warehouse,
                    tenant=self.settings.tenant,
                    stream=self.stream,
                    table=self.identifier[-1],
                    file_io=self.catalog.file_io,
                )
            documents = self._documents
        raw_file = patterns.raw_file
        documents_title = (
            (raw_file.title_key or (keys[0] if keys else None)) if raw_file is not None else None
        )
        batch_id = self.pending_batch_id
        structured = patterns.structured
        ids = self._doc_id_columns()
        kv = self._derived_writer(self.kv_table)
        doc = self._derived_writer(self.doc_table)
        stream = self.stream
        described = self.shape.column_schema if self.shape is not None else None

        def stage(conformed: pa.Table) -> pa.Table:
            skip = [string.column] if string is not None else []
            if string is not None:
                index = conformed.schema.get_field_index(string.column)
                field = conformed.schema.field(index)
                rendered = render_column(conformed, title_key=string_title, skip=skip, described=described)
                conformed = conformed.set_column(index, field, rendered.cast(field.type))
            if conformed.num_rows:
                writer.write(conformed, metadata)
            if documents is not None and conformed.num_rows:
                if string is not None and documents_title == string_title:
                    records = conformed.column(string.column).to_pylist()
                else:
                    records = render_column(
                        conformed, title_key=documents_title, skip=skip, described=described
                    ).to_pylist()
                key_rows = json_rows(conformed.select(list(keys))) if keys else [{}] * conformed.num_rows
                documents.write(records, key_rows, keys=keys, batch_id=batch_id)
            if structured is not None and conformed.num_rows:
                lines = numbers if len(numbers) == conformed.num_rows else []
                kv_rows, doc_rows = structured_rows(
                    conformed, structured, stream=stream, id_columns=ids, line_numbers=lines
                )
                for target, produced in ((kv, kv_rows), (doc, doc_rows)):
                    if target is not None and produced:
                        table_writer, table_metadata = target
                        arrow = schema_to_pyarrow(table_metadata.schema())
                        table_writer.write(pa.Table.from_pylist(produced, schema=arrow), table_metadata)
            return conformed

        return stage

    def _settle_outcomes(self) -> None:
        """The checkpoint's contract results: counted, and rejected rows staged in the rejects table."""
        if self.contract is None:
            return
        outcomes, self._outcomes = self._outcomes, []
        rejected: list[bytes] = []
        for outcome in outcomes:
            self.contract.report.add(outcome.counts, outcome.samples)
            self.contract.report.dropped += outcome.dropped
            self.contract.report.quarantined += len(outcome.rejected)
            rejected.extend(self.contract.rejected_lines(outcome, self.pending_batch_id))
        self.contract.reset_checkpoint()
        if not rejected:
            return
        if self.rejects is None:
            self.rejects = IcebergSink(
                self.contract.rejected_stream, self.settings, self.catalog, self._staging, derived=True
            )
            self.rejects.write_mode = "append"  # every rejected record is kept, with its batch id
            self.rejects.set_schema(REJECTED_SCHEMA, None)
        self.rejects.lines.extend(rejected)
        self.rejects.numbers.extend(range(1, len(rejected) + 1))
        self.rejects.flush()
        self.rejects.seal()

    def _file_writer(self, metadata: TableMetadata) -> DataFileWriter:
        if self._writer is None:
            self._writer = DataFileWriter(self.settings.run_id, self.io(metadata))
        return self._writer

    def _raise_failed(self) -> None:
        """Fail fast: an error of an earlier batch stops the run before more work is queued."""
        for future in self._pending:
            if future.done() and future.exception() is not None:
                future.result()

    def seal(self) -> None:
        """Wait for this stream's staged work and close its open file (checkpoint time)."""
        if self._writer is not None:
            writer = self._writer
            self._pending.append(self._staging.submit(writer.close))
        pending, self._pending = self._pending, []
        for future in pending:
            outcome = future.result()  # in order; the first failure raises (its batch never commits)
            if isinstance(outcome, Outcome):
                self._outcomes.append(outcome)
        self._settle_outcomes()
        if self._writer is not None:
            for staged in self._writer.written:
                self._staged.files.append(staged.data_file)
                self._staged.rows += staged.rows
                self._staged.field_ids.update(staged.field_ids)
                if self._counts_staged_rows:  # written by the source stream's staging work
                    self.tally.records_read += staged.rows
                    self._dirty = True
            self._writer.written.clear()
            self._writer.open_paths.clear()
        for table in (self.kv_table, self.doc_table):
            if table is not None:
                table.seal()

    # -- checkpoint --------------------------------------------------------------------------

    @property
    def committed_location(self) -> str | None:
        """The metadata location of the table as last committed (or loaded); None: not created."""
        return self._base.metadata_location if self._base is not None else None

    @property
    def family(self) -> list[IcebergSink]:
        """This sink and the sinks it feeds (its rejects table, its Markdown-KV tables), committed in
        the same checkpoint."""
        return [t for t in (self, self.rejects, self.kv_table, self.doc_table) if t is not None]

    @property
    def has_changes(self) -> bool:
        return self._dirty

    @property
    def staged_rows(self) -> int:
        return self._staged.rows

    def table_change(self, snapshot_properties: Mapping[str, str]) -> TableChange:
        """This table's part of a checkpoint: its staged schema change and one snapshot (an append,
        or in upsert/overwrite mode an overwrite that also replaces committed rows)."""
        assert self._working is not None
        metadata = self._working
        if self._staged.files:
            summary = {
                **snapshot_properties,
                props.STREAM: self.stream,
                props.RECORDS_LOADED: str(self._staged.rows),
                **self._documents_summary(snapshot_properties.get(props.BATCH_ID, "")),
            }
            io = self.io(metadata)
            if self.write_mode == "upsert":
                metadata = self._upsert(metadata, io, summary)
            elif self.write_mode == "overwrite" and not self._replaced_all:
                self._rewrite = Rewrite(deleted=all_rows(metadata, io))
                self._rewrite.rows_replaced = sum(f.record_count for f in self._rewrite.deleted)
                metadata = overwrite_snapshot(
                    self.identifier,
                    metadata,
                    io=io,
                    deleted=self._rewrite.deleted,
                    added=self._staged.files,
                    summary_properties=summary,
                )
            else:
                metadata = append_snapshot(metadata, self._staged.files, io, summary)
            self._attempt = metadata.current_snapshot()
        base = self._base
        return TableChange(
            identifier=self.identifier,
            base_location=base.metadata_location if base is not None else None,
            metadata=metadata,
            base_updated_ms=base.metadata.last_updated_ms if base is not None else 0,
        )

    def _documents_list_location(self, batch_id: str) -> str:
        return (
            f"{self.settings.warehouse.rstrip('/')}/_ingest/markdown_kv/{self.settings.pipeline_id}/"
            f"{self.identifier[-1]}/{batch_id.replace(':', '-')}.json"
        )

    def _documents_summary(self, batch_id: str) -> dict[str, str]:
        """raw_file: the checkpoint's documents, listed in the snapshot summary (readers find them
        there, so a document is visible only through the commit that lists it)."""
        if self._documents is None or not self._documents.written:
            return {}
        return documents_summary(
            self._documents.written,
            list_location=self._documents_list_location(batch_id),
            file_io=self.catalog.file_io,
        )

    def _upsert(self, metadata: TableMetadata, io: FileIO, summary: dict[str, str]) -> TableMetadata:
        """An overwrite snapshot: the staged rows (latest per key) replace the committed rows with
        their keys; committed files holding such rows are rewritten without them."""
        keys = self._upsert_keys()
        latest, distinct = latest_per_key(io, self._staged.files, keys, metadata, self.settings.run_id)
        if latest is not None:  # a key repeats within the checkpoint: keep its last record only
            for old in self._staged.files:
                with contextlib.suppress(OSError):
                    io.delete(old.file_path)
            self._staged.files = [f.data_file for f in latest]
        self._rewrite = rows_to_replace(metadata, io, distinct, keys, self.settings.run_id)
        summary[props.ROWS_REPLACED] = str(self._rewrite.rows_replaced)
        return overwrite_snapshot(
            self.identifier,
            metadata,
            io=io,
            deleted=self._rewrite.deleted,
            added=[*self._staged.files, *(f.data_file for f in self._rewrite.added)],
            summary_properties=summary,
        )

    def _delete_rewrite(self) -> None:
        """Files rewritten for an attempt that did not land (a retry computes them again)."""
        rewrite, self._rewrite = self._rewrite, Rewrite()
        for path in rewrite.paths:
            with contextlib.suppress(OSError):
                (self._io or self.catalog.file_io(path)).delete(path)

    def prepare_retry(self) -> None:
        """After a conflict (the commit surely did not land): delete the failed attempt's manifest
        and manifest list, reload the table and re-apply the schema; staged data files are kept."""
        assert self.shape is not None
        self._delete_attempt()
        self._delete_rewrite()
        self._working = None
        self._evolve(self.shape)
        self._dirty = True
        assert self._working is not None
        now_ids = field_ids(self._working.schema())
        moved = [name for name, fid in self._staged.field_ids.items() if now_ids.get(name) != fid]
        if moved:
            msg = (
                f"table {self.table_name} was changed by another writer so that columns {moved[:5]} have "
                "new field ids; the staged files cannot be committed. Re-run the job"
            )
            raise CommitConflictError(msg)

    def _delete_attempt(self) -> None:
        attempt, self._attempt = self._attempt, None
        if attempt is None or self._working is None:
            return
        io = self.io(self._working)
        with contextlib.suppress(Exception):  # best effort: an orphan costs bytes, not correctness
            ours = [
                m.manifest_path for m in attempt.manifests(io) if m.added_snapshot_id == attempt.snapshot_id
            ]
            for path in [*ours, attempt.manifest_list]:
                io.delete(path)

    def committed(
        self, snapshot_id: int | None, metadata: TableMetadata | None = None, location: str | None = None
    ) -> None:
        """The checkpoint landed: the staged work is now the table's committed state, which is
        `metadata` at `location` as the catalog wrote it (read back only when not given)."""
        self.tally.rows_committed += self._staged.rows
        self.tally.rows_replaced += self._rewrite.rows_replaced
        if self._staged.files:
            self._replaced_all = True
        self._rewrite = Rewrite()
        self.tally.files_committed += len(self._staged.files)
        self.tally.bytes_committed += sum(f.file_size_in_bytes for f in self._staged.files)
        if snapshot_id is not None:
            self.tally.snapshot_ids.append(snapshot_id)
        self._attempt = None
        self._staged = _Staged()
        self._dirty = False
        if self._documents is not None:
            self._documents.reset()
        if metadata is not None and location is not None:
            self._base = Table(
                self.identifier,
                metadata=metadata,
                metadata_location=location,
                io=self.io(metadata),
                catalog=self.catalog.iceberg,
            )
            self._working = metadata
        elif self.shape is not None:
            self._working = self._load(self.shape)

    def discard(self) -> None:
        """The checkpoint will never commit: wait for the staging thread, delete its files (except
        files of a commit whose outcome is unknown: it may have landed)."""
        paths = [] if self.in_doubt else [f.file_path for f in self._staged.files]
        if not self.in_doubt:
            self._delete_attempt()
            self._delete_rewrite()
        for future in self._pending:
            with contextlib.suppress(Exception):
                future.result()
        self._pending = []
        if self._writer is not None:
            writer = self._writer
            with contextlib.suppress(Exception):
                self._staging.submit(writer.abandon).result()
            paths.extend(writer.open_paths)
            self._writer = None
        for path in dict.fromkeys(paths):
            with contextlib.suppress(OSError):
                (self._io or self.catalog.file_io(path)).delete(path)
        if self._documents is not None:
            if not self.in_doubt:  # documents of a commit that may have landed stay, like its files
                written = self._documents.written
                listing = [self._documents_list_location(self.pending_batch_id)]
                delete_quietly([*written, *listing], self.catalog.file_io)
            self._documents.reset()
        self._staged = _Staged()
        self.lines, self.numbers, self.buffered_bytes = [], [], 0
        self._outcomes = []
        if self.contract is not None:
            self.contract.reset_checkpoint()
        for table in (self.rejects, self.kv_table, self.doc_table):
            if table is not None:
                table.discard()
