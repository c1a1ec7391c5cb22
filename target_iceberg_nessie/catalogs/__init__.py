"""Catalog backends. The only package that speaks SQL to the embedded catalog (or HTTP to Nessie)."""

from __future__ import annotations

from collections.abc import Mapping

from target_iceberg_nessie.catalogs.base import (
    Checkpoint,
    CheckpointCatalog,
    CommitResult,
    CommittedState,
    TableChange,
)
from target_iceberg_nessie.errors import ConfigError

CATALOG_TYPES = ("sql", "nessie")


def open_catalog(
    catalog_type: str,
    *,
    name: str,
    uri: str,
    warehouse: str,
    create: bool = False,
    branch: str = "main",
    branch_from: str | None = None,
    token: str | None = None,
    timeout: float = 30.0,
    io_properties: Mapping[str, str] | None = None,
) -> CheckpointCatalog:
    """Open the catalog a target (`create=True`) or a reader of its tables is configured for.

    `uri`: the SQLAlchemy URL (sql) or the Nessie REST API v2 base URI (nessie). A Nessie reader
    may name a tag or `<reference>@<hash>` as `branch`; a writer needs a branch. `io_properties`:
    pyiceberg FileIO properties of the warehouse (an S3 endpoint and its credentials).
    """
    if catalog_type == "sql":
        from target_iceberg_nessie.catalogs.sql import EmbeddedCatalog  # noqa: PLC0415 - lazy backend

        return EmbeddedCatalog(
            name=name, uri=uri, warehouse=warehouse, create=create, io_properties=io_properties
        )
    if catalog_type == "nessie":
        from target_iceberg_nessie.catalogs.nessie import NessieCatalog  # noqa: PLC0415 - lazy backend

        return NessieCatalog(
            name=name,
            uri=uri,
            warehouse=warehouse,
            branch=branch,
            branch_from=branch_from,
            token=token,
            writable=create,
            timeout=timeout,
            io_properties=io_properties,
        )
    msg = f"catalog_type {catalog_type!r} is not supported; use one of: {', '.join(CATALOG_TYPES)}"
    raise ConfigError(msg)


__all__ = [
    "CATALOG_TYPES",
    "Checkpoint",
    "CheckpointCatalog",
    "CommitResult",
    "CommittedState",
    "TableChange",
    "open_catalog",
]
