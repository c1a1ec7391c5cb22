"""Reading the embedded lake: tables, their current snapshots, sample rows and the commit log.

The catalog is opened only through `target_iceberg_nessie.catalogs` (the one package that speaks SQL
to it); tables are read back with pyiceberg. Snapshot summary keys come from the target's
`properties` module, where every key the platform reads back is declared.
"""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Final

from pyiceberg.table import Table

from ingestion.errors import ConfigError, LakeNotFoundError, PlatformError
from ingestion.paths import LakeLocation, sqlite_file
from ingestion.tenants import check_pipeline_id
from target_iceberg_nessie import properties as props
from target_iceberg_nessie.catalogs import CheckpointCatalog, open_catalog

CATALOG_TYPE: Final = "sql"  # the embedded lake; Nessie joins when its catalog ships
# Iceberg's standard snapshot summary keys (spec: "Snapshot Summary").
TOTAL_RECORDS: Final = "total-records"
TOTAL_DATA_FILES: Final = "total-data-files"


@contextmanager
def open_lake(location: LakeLocation) -> Iterator[CheckpointCatalog]:
    """The lake's catalog; refuses to create an empty SQLite catalog where none exists."""
    database = sqlite_file(location.catalog_uri)
    if database is not None and not database.is_file():
        raise LakeNotFoundError(database)
    catalog = open_catalog(
        CATALOG_TYPE, name=location.catalog_name, uri=location.catalog_uri, warehouse=location.warehouse
    )
    try:
        yield catalog
    finally:
        catalog.close()


@dataclass(frozen=True)
class TableSummary:
    """One table as its current snapshot describes it (written by the target's last checkpoint)."""

    identifier: tuple[str, ...]
    rows: int
    data_files: int
    snapshot_id: int | None
    batch_id: str | None
    run_id: str | None
    sample: list[dict[str, Any]] | None = field(default=None, compare=False)

    @property
    def name(self) -> str:
        return ".".join(self.identifier)

    def to_json(self) -> dict[str, Any]:
        shown: dict[str, Any] = {
            "identifier": self.name,
            "tenant": self.identifier[0],
            "namespace": ".".join(self.identifier[1:-1]),
            "table": self.identifier[-1],
            "rows": self.rows,
            "data_files": self.data_files,
            "snapshot_id": self.snapshot_id,
            "batch_id": self.batch_id,
            "run_id": self.run_id,
        }
        if self.sample is not None:
            shown["sample"] = [{key: jsonable(value) for key, value in row.items()} for row in self.sample]
        return shown


def _count(summary: Mapping[str, str], key: str) -> int:
    value = summary.get(key)
    return int(value) if value is not None else 0


def summarize(identifier: tuple[str, ...], table: Table, sample: int = 0) -> TableSummary:
    snapshot = table.current_snapshot()
    summary: Mapping[str, str] = (
        snapshot.summary.additional_properties if snapshot and snapshot.summary else {}
    )
    rows: list[dict[str, Any]] | None = None
    if sample > 0:
        rows = table.scan(limit=sample).to_arrow().to_pylist() if snapshot is not None else []
    return TableSummary(
        identifier=identifier,
        rows=_count(summary, TOTAL_RECORDS),
        data_files=_count(summary, TOTAL_DATA_FILES),
        snapshot_id=snapshot.snapshot_id if snapshot is not None else None,
        batch_id=summary.get(props.BATCH_ID),
        run_id=summary.get(props.RUN_ID),
        sample=rows,
    )


def list_lake_tables(catalog: CheckpointCatalog, sample: int = 0) -> list[TableSummary]:
    """Every table in the lake, sorted by identifier, with up to `sample` rows each."""
    if sample < 0:
        msg = f"--sample must be 0 or more, got {sample}"
        raise ConfigError(msg)
    found: list[TableSummary] = []
    identifiers = sorted({ident for ns in catalog.list_namespaces() for ident in catalog.list_tables(ns)})
    for identifier in identifiers:
        try:
            table = catalog.load_table(identifier)
            if table is not None:  # None: dropped between listing and loading
                found.append(summarize(tuple(identifier), table, sample))
        except OSError as error:
            msg = (
                f"table {'.'.join(identifier)} cannot be read ({error}); "
                "restore the warehouse files the catalog points at, or check their permissions"
            )
            raise PlatformError(msg) from error
    return found


@dataclass(frozen=True)
class CommitEntry:
    """One checkpoint in the catalog's commit log."""

    batch_id: str
    pipeline_id: str
    run_id: str
    streams: list[str]
    rows: dict[str, int]  # table identifier → rows this checkpoint appended
    committed_at: str

    def to_json(self) -> dict[str, Any]:
        return {
            "batch_id": self.batch_id,
            "pipeline_id": self.pipeline_id,
            "run_id": self.run_id,
            "streams": self.streams,
            "rows": self.rows,
            "committed_at": self.committed_at,
        }


def commit_log(
    catalog: CheckpointCatalog, pipeline_id: str | None = None, limit: int = 50
) -> list[CommitEntry]:
    """Newest first, at most `limit` entries, optionally of one pipeline."""
    from target_iceberg_nessie.catalogs.sql import EmbeddedCatalog  # noqa: PLC0415 - only the SQL catalog has a log today

    if pipeline_id is not None:
        check_pipeline_id(pipeline_id)
    if limit < 1:
        msg = f"--limit must be 1 or more, got {limit}"
        raise ConfigError(msg)
    if not isinstance(catalog, EmbeddedCatalog):
        msg = f"catalog {catalog.name!r} keeps no commit log; `ingest commits` reads the embedded (sql) lake"
        raise ConfigError(msg)
    return [
        CommitEntry(
            batch_id=entry["batch_id"],
            pipeline_id=entry["pipeline_id"],
            run_id=entry["run_id"],
            streams=list(entry["streams"]),
            rows={table: int(part.get("rows", 0)) for table, part in entry["summary"].items()},
            committed_at=entry["committed_at"],
        )
        for entry in catalog.commit_log(pipeline_id=pipeline_id, limit=limit)
    ]


def jsonable(value: Any) -> Any:
    """A JSON-friendly form of a value read from a table (exact decimals as text, times as ISO 8601)."""
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, dt.datetime | dt.date | dt.time):
        value = value.isoformat()
    elif isinstance(value, bytes):
        value = base64.b64encode(value).decode()
    elif not (value is None or isinstance(value, bool | int | float | str)):
        value = str(value)  # Decimal, UUID and anything else exact as text
    return value
