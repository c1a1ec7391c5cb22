"""The embedded catalog: pyiceberg's SqlCatalog on SQLite (or any SQLAlchemy URL) plus a warehouse.

A checkpoint is ONE SQL transaction: a compare-and-swap of `metadata_location` per table, the
inserts for new tables and namespaces, the pipeline's checkpoint row (its Singer state) and a row in
the commit log keyed by batch id. Either all of it is visible or none of it is.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pyiceberg.catalog import Catalog
from pyiceberg.catalog.sql import IcebergNamespaceProperties, IcebergTables, SqlCatalog
from pyiceberg.exceptions import NoSuchTableError
from pyiceberg.table import Table
from pyiceberg.table.metadata import TableMetadata
from pyiceberg.typedef import Identifier
from sqlalchemy import Integer, String, Text, func, select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from target_iceberg_nessie.catalogs.base import (
    Checkpoint,
    CheckpointCatalog,
    CommitResult,
    CommittedState,
    TableChange,
)
from target_iceberg_nessie.errors import CommitConflictError, ConfigError, FatalError, RetriableError


class _IngestBase(DeclarativeBase):
    pass


class CheckpointRow(_IngestBase):
    """The last committed checkpoint of each pipeline: its Singer state lives here."""

    __tablename__ = "ingest_checkpoints"

    catalog_name: Mapped[str] = mapped_column(String(255), primary_key=True)
    pipeline_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    run_id: Mapped[str] = mapped_column(String(255))
    batch_id: Mapped[str] = mapped_column(String(255))
    batch_seq: Mapped[int] = mapped_column(Integer)
    state_json: Mapped[str | None] = mapped_column(Text, nullable=True)
    tables_json: Mapped[str] = mapped_column(Text)
    committed_at: Mapped[str] = mapped_column(String(40))


class CommitLogRow(_IngestBase):
    """Every checkpoint ever committed, keyed by batch id: how an ambiguous outcome is settled."""

    __tablename__ = "ingest_commit_log"

    catalog_name: Mapped[str] = mapped_column(String(255), primary_key=True)
    batch_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    pipeline_id: Mapped[str] = mapped_column(String(255), index=True)
    run_id: Mapped[str] = mapped_column(String(255))
    batch_seq: Mapped[int] = mapped_column(Integer)
    streams_json: Mapped[str] = mapped_column(Text)
    tables_json: Mapped[str] = mapped_column(Text)
    summary_json: Mapped[str] = mapped_column(Text)
    committed_at: Mapped[str] = mapped_column(String(40))


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class EmbeddedCatalog(CheckpointCatalog):
    """SqlCatalog plus our checkpoint tables, committed together."""

    def __init__(
        self,
        name: str,
        uri: str,
        warehouse: str,
        *,
        create: bool = True,
        io_properties: Mapping[str, str] | None = None,
    ) -> None:
        """Open the catalog; `create=False` (readers) neither creates the database nor its tables."""
        self.name = name
        self.warehouse = warehouse.rstrip("/")
        self.io_properties = dict(io_properties or {})
        if uri.startswith("sqlite:///"):
            path = Path(uri.removeprefix("sqlite:///").split("?", 1)[0])
            if not create and not path.exists():
                msg = f"no catalog database at {path}; run a job (or `make demo`) first"
                raise ConfigError(msg)
            path.parent.mkdir(parents=True, exist_ok=True)
        if create and "://" not in self.warehouse:
            Path(self.warehouse).mkdir(parents=True, exist_ok=True)
        try:
            self.iceberg = SqlCatalog(
                name,
                uri=uri,
                warehouse=self.warehouse,
                init_catalog_tables=str(create).lower(),
                **self.io_properties,  # the FileIO of the tables it loads
            )
            self._engine = self.iceberg.engine
            if create:
                _IngestBase.metadata.create_all(self._engine)
        except SQLAlchemyError as error:
            cause = getattr(error, "orig", None) or error
            msg = (
                f"the catalog database cannot be opened ({type(error).__name__}: {cause}); check catalog_uri"
            )
            raise RetriableError(msg) from error

    # -- reading ---------------------------------------------------------------------------

    def load_table(self, identifier: Identifier) -> Table | None:
        try:
            return self.iceberg.load_table(identifier)
        except NoSuchTableError:
            return None

    def list_namespaces(self) -> list[Identifier]:
        found: set[Identifier] = set()
        with Session(self._engine) as session:
            for (namespace,) in session.execute(
                select(IcebergTables.table_namespace).where(IcebergTables.catalog_name == self.name)
            ):
                found.add(Catalog.identifier_to_tuple(namespace))
            for (namespace,) in session.execute(
                select(IcebergNamespaceProperties.namespace).where(
                    IcebergNamespaceProperties.catalog_name == self.name
                )
            ):
                found.add(Catalog.identifier_to_tuple(namespace))
        return sorted(found)

    def list_tables(self, namespace: Identifier) -> list[Identifier]:
        return sorted(self.iceberg.list_tables(namespace))

    def drop_table(self, identifier: Identifier) -> None:
        try:
            self.iceberg.drop_table(identifier)
        except NoSuchTableError:
            msg = f"table {'.'.join(identifier)} does not exist in catalog {self.name!r}"
            raise FatalError(msg) from None

    def committed_state(self, pipeline_id: str) -> CommittedState | None:
        with Session(self._engine) as session:
            row = session.get(CheckpointRow, (self.name, pipeline_id))
            if row is None:
                return None
            return CommittedState(
                pipeline_id=row.pipeline_id,
                run_id=row.run_id,
                batch_id=row.batch_id,
                commit_id=row.batch_id,
                state=json.loads(row.state_json) if row.state_json else None,
                committed_at=row.committed_at,
                tables=dict(json.loads(row.tables_json)),
            )

    def last_batch_seq(self, pipeline_id: str, run_id: str) -> int:
        with Session(self._engine) as session:
            found = session.execute(
                select(func.max(CommitLogRow.batch_seq)).where(
                    CommitLogRow.catalog_name == self.name,
                    CommitLogRow.pipeline_id == pipeline_id,
                    CommitLogRow.run_id == run_id,
                )
            ).scalar()
        return int(found or 0)

    def commit_log(self, pipeline_id: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        """Newest first: the checkpoints committed, with their batch ids and per-table summaries."""
        query = select(CommitLogRow).where(CommitLogRow.catalog_name == self.name)
        if pipeline_id is not None:
            query = query.where(CommitLogRow.pipeline_id == pipeline_id)
        query = query.order_by(CommitLogRow.committed_at.desc(), CommitLogRow.batch_seq.desc()).limit(limit)
        with Session(self._engine) as session:
            return [
                {
                    "batch_id": row.batch_id,
                    "pipeline_id": row.pipeline_id,
                    "run_id": row.run_id,
                    "streams": json.loads(row.streams_json),
                    "tables": json.loads(row.tables_json),
                    "summary": json.loads(row.summary_json),
                    "committed_at": row.committed_at,
                }
                for row in session.scalars(query)
            ]

    # -- committing --------------------------------------------------------------------------

    def _batch_logged(self, batch_id: str) -> bool:
        with Session(self._engine) as session:
            return session.get(CommitLogRow, (self.name, batch_id)) is not None

    def commit_checkpoint(self, changes: Sequence[TableChange], checkpoint: Checkpoint) -> CommitResult:
        written: dict[Identifier, str] = {}
        committed: dict[Identifier, TableMetadata] = {}
        prepared: list[tuple[TableChange, str]] = []
        for change in changes:
            location, committed[change.identifier] = self.write_metadata_file(change)
            written[change.identifier] = location
            prepared.append((change, location))
        tables_json = json.dumps({".".join(ident): loc for ident, loc in written.items()})
        now = _now()
        try:
            with Session(self._engine) as session, session.begin():
                for change, location in prepared:
                    self._apply(session, change, location)
                self._record(session, checkpoint, tables_json, now)
        except CommitConflictError:
            self.delete_quietly(list(written.values()))
            raise
        except IntegrityError as error:
            self.delete_quietly(list(written.values()))
            if self._batch_logged(checkpoint.batch_id):
                # Nothing of this transaction landed; an earlier commit owns the batch id.
                msg = (
                    f"batch id {checkpoint.batch_id} was already committed by another run with run_id "
                    f"{checkpoint.run_id!r}; give every run its own run_id"
                )
                raise FatalError(msg) from error
            msg = f"a table of batch {checkpoint.batch_id} was created concurrently: {error.orig}"
            raise CommitConflictError(msg) from error
        except SQLAlchemyError as error:
            # The transaction may or may not have landed: the commit log settles it.
            if self._batch_logged(checkpoint.batch_id):
                return CommitResult(checkpoint.batch_id, written, _now(), True, committed)
            self.delete_quietly(list(written.values()))
            msg = f"the catalog database did not accept batch {checkpoint.batch_id}: {error}"
            raise RetriableError(msg) from error
        return CommitResult(checkpoint.batch_id, written, now, metadata=committed)

    def _apply(self, session: Session, change: TableChange, location: str) -> None:
        namespace = Catalog.namespace_to_string(Catalog.namespace_from(change.identifier))
        table_name = Catalog.table_name_from(change.identifier)
        if change.base_location is None:
            self._ensure_namespace(session, namespace)
            session.add(
                IcebergTables(
                    catalog_name=self.name,
                    table_namespace=namespace,
                    table_name=table_name,
                    metadata_location=location,
                    previous_metadata_location=None,
                )
            )
            session.flush()
            return
        result = session.execute(
            update(IcebergTables)
            .where(
                IcebergTables.catalog_name == self.name,
                IcebergTables.table_namespace == namespace,
                IcebergTables.table_name == table_name,
                IcebergTables.metadata_location == change.base_location,
            )
            .values(metadata_location=location, previous_metadata_location=change.base_location)
        )
        if result.rowcount != 1:  # type: ignore[attr-defined] # CursorResult of an UPDATE has rowcount
            msg = f"table {namespace}.{table_name} was changed by another writer since it was loaded"
            raise CommitConflictError(msg)

    def _ensure_namespace(self, session: Session, namespace: str) -> None:
        exists = session.execute(
            select(IcebergNamespaceProperties.namespace).where(
                IcebergNamespaceProperties.catalog_name == self.name,
                IcebergNamespaceProperties.namespace == namespace,
            )
        ).first()
        if exists is None:
            session.add(
                IcebergNamespaceProperties(
                    catalog_name=self.name, namespace=namespace, property_key="exists", property_value="true"
                )
            )

    def _record(self, session: Session, checkpoint: Checkpoint, tables_json: str, now: str) -> None:
        state_json = json.dumps(checkpoint.state) if checkpoint.state is not None else None
        session.merge(
            CheckpointRow(
                catalog_name=self.name,
                pipeline_id=checkpoint.pipeline_id,
                run_id=checkpoint.run_id,
                batch_id=checkpoint.batch_id,
                batch_seq=checkpoint.batch_seq,
                state_json=state_json,
                tables_json=tables_json,
                committed_at=now,
            )
        )
        session.add(
            CommitLogRow(
                catalog_name=self.name,
                batch_id=checkpoint.batch_id,
                pipeline_id=checkpoint.pipeline_id,
                run_id=checkpoint.run_id,
                batch_seq=checkpoint.batch_seq,
                streams_json=json.dumps(list(checkpoint.streams)),
                tables_json=tables_json,
                summary_json=json.dumps(dict(checkpoint.summary)),
                committed_at=now,
            )
        )
        session.flush()

    def close(self) -> None:
        self._engine.dispose()
