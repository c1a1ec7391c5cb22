"""Where things are by default: the same defaults the target uses (meltano.yml, target settings).

project dir = --project-dir, else $MELTANO_PROJECT_ROOT, else the working directory;
lake = <project>/.lake/{catalog.db,warehouse}; state store = <project>/.state.
Files shipped with the platform (schemas/, registry/) are found next to the `ingestion` package.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

PROJECT_ROOT_ENV: Final = "MELTANO_PROJECT_ROOT"
CATALOG_NAME: Final = "ingest"
LAKE_DIR: Final = ".lake"
STATE_DIR: Final = ".state"

SOURCE_ROOT: Final = Path(__file__).resolve().parent.parent
SCHEMAS_DIR: Final = SOURCE_ROOT / "schemas"
REGISTRY_FILE: Final = SOURCE_ROOT / "registry" / "connectors.yaml"

# sqlite:///relative.db, sqlite:////absolute.db, sqlite+pysqlite:///... (SQLAlchemy URL forms)
_SQLITE_URL = re.compile(r"^sqlite(\+\w+)?:///(?P<path>[^?]*)")
_IN_MEMORY = {"", ":memory:"}


def project_dir(explicit: Path | None = None) -> Path:
    if explicit is not None:
        return explicit.expanduser().resolve()
    return Path(os.environ.get(PROJECT_ROOT_ENV) or Path.cwd()).expanduser().resolve()


def default_catalog_uri(project: Path) -> str:
    return f"sqlite:///{project / LAKE_DIR / 'catalog.db'}"


def default_warehouse(project: Path) -> Path:
    return project / LAKE_DIR / "warehouse"


def default_state_dir(project: Path) -> Path:
    return project / STATE_DIR


def sqlite_file(catalog_uri: str) -> Path | None:
    """The database file of a SQLite catalog URI; None for other databases and in-memory SQLite."""
    match = _SQLITE_URL.match(catalog_uri)
    if match is None or match["path"] in _IN_MEMORY:
        return None
    return Path(match["path"]).expanduser().resolve()


@dataclass(frozen=True)
class LakeLocation:
    """Where the embedded lake is: catalog database, warehouse folder and catalog name."""

    catalog_uri: str = field(repr=False)  # a database URL may carry a password
    warehouse: str
    catalog_name: str = CATALOG_NAME

    def describe(self) -> str:
        """The catalog for messages: its SQLite file, never a database URL (it may hold a password)."""
        database = sqlite_file(self.catalog_uri)
        return f"{self.catalog_name!r} at {database}" if database else repr(self.catalog_name)

    @classmethod
    def resolve(
        cls,
        project: Path | None = None,
        catalog_uri: str | None = None,
        warehouse: str | None = None,
        catalog_name: str = CATALOG_NAME,
    ) -> LakeLocation:
        root = project_dir(project)
        if warehouse is None:
            warehouse = str(default_warehouse(root))
        elif "://" not in warehouse:  # a local folder, as the target resolves it
            warehouse = str(Path(warehouse).expanduser().resolve())
        return cls(catalog_uri or default_catalog_uri(root), warehouse, catalog_name)
