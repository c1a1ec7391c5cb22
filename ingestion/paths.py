"""Where things are by default: the same defaults the target uses (meltano.yml, target settings).

project dir = --project-dir, else $MELTANO_PROJECT_ROOT, else the working directory;
lake = <project>/.lake/{catalog.db,warehouse}; state store = <project>/.state.
A Nessie lake is named by flags or the environment: INGEST_* first, then the target's own
TARGET_ICEBERG_NESSIE_* settings, so a shell configured for the target reads the same lake.
Files shipped with the platform (schemas/, registry/) are found next to the `ingestion` package.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit, urlunsplit

from ingestion.errors import ConfigError
from target_iceberg_nessie.settings import S3_SETTINGS, io_properties

PROJECT_ROOT_ENV: Final = "MELTANO_PROJECT_ROOT"
CATALOG_NAME: Final = "ingest"
LAKE_DIR: Final = ".lake"
STATE_DIR: Final = ".state"
SQL: Final = "sql"
NESSIE: Final = "nessie"
CATALOG_TYPES: Final = (SQL, NESSIE)
DEFAULT_REF: Final = "main"

# Environment variables, first found wins: the platform's own name, then the target's setting.
CATALOG_TYPE_ENV: Final = ("INGEST_CATALOG_TYPE", "TARGET_ICEBERG_NESSIE_CATALOG_TYPE")
CATALOG_URI_ENV: Final = ("INGEST_CATALOG_URI", "TARGET_ICEBERG_NESSIE_CATALOG_URI")
WAREHOUSE_ENV: Final = ("INGEST_WAREHOUSE", "TARGET_ICEBERG_NESSIE_WAREHOUSE")
NESSIE_URI_ENV: Final = ("INGEST_NESSIE_URI", "TARGET_ICEBERG_NESSIE_NESSIE_URI")
REF_ENV: Final = ("INGEST_REF", "TARGET_ICEBERG_NESSIE_BRANCH")
NESSIE_TOKEN_ENV: Final = ("INGEST_NESSIE_TOKEN", "TARGET_ICEBERG_NESSIE_NESSIE_TOKEN")

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


def warehouse_io_properties(warehouse: str, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """FileIO properties of an s3:// warehouse from the environment: INGEST_S3_* first, then the
    target's TARGET_ICEBERG_NESSIE_S3_* (endpoint, region, access key id, secret, path style)."""
    config = {
        key: from_env((f"INGEST_{key.upper()}", f"TARGET_ICEBERG_NESSIE_{key.upper()}"), environ)
        for key in S3_SETTINGS
    }
    return io_properties(config, warehouse)


def from_env(names: Sequence[str], environ: Mapping[str, str] | None = None) -> str | None:
    """The first of `names` set (non-empty) in the environment."""
    env = os.environ if environ is None else environ
    return next((env[name] for name in names if env.get(name)), None)


def without_userinfo(uri: str) -> str:
    """A URI for messages: any user:password@ part is dropped."""
    parts = urlsplit(uri)
    if "@" not in parts.netloc:
        return uri
    return urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))


@dataclass(frozen=True)
class LakeLocation:
    """Where the lake is: the embedded catalog (database, warehouse) or a Nessie server and reference."""

    catalog_uri: str = field(repr=False)  # a database URL may carry a password
    warehouse: str
    catalog_name: str = CATALOG_NAME
    catalog_type: str = SQL
    nessie_uri: str | None = None
    ref: str = DEFAULT_REF  # a branch, a tag or `<name>@<hash>` (Nessie)
    nessie_token: str | None = field(default=None, repr=False)  # sent to Nessie, never shown
    io_properties: Mapping[str, str] = field(default_factory=dict, repr=False)  # S3 credentials
    project: Path | None = None  # the project it was resolved for (its state store is next to it)

    @property
    def is_nessie(self) -> bool:
        return self.catalog_type == NESSIE

    @property
    def uri(self) -> str:
        """What the catalog is opened with: the database URL, or Nessie's REST API v2 base URI."""
        return (self.nessie_uri or "") if self.is_nessie else self.catalog_uri

    def describe(self) -> str:
        """The catalog for messages: its SQLite file or Nessie URI and reference, never a secret."""
        if self.is_nessie:
            where = without_userinfo(self.nessie_uri or "")
            return f"{self.catalog_name!r} on Nessie {where} at {self.ref!r}"
        database = sqlite_file(self.catalog_uri)
        return f"{self.catalog_name!r} at {database}" if database else repr(self.catalog_name)

    def require_nessie(self, command: str, why: str) -> None:
        if not self.is_nessie:
            msg = (
                f"`ingest {command}` needs a Nessie catalog ({why}); pass --catalog-type nessie "
                f"--nessie-uri URI, or set {CATALOG_TYPE_ENV[0]}=nessie and {NESSIE_URI_ENV[0]}"
            )
            raise ConfigError(msg)

    @classmethod
    def resolve(
        cls,
        project: Path | None = None,
        catalog_uri: str | None = None,
        warehouse: str | None = None,
        catalog_name: str = CATALOG_NAME,
        *,
        catalog_type: str | None = None,
        nessie_uri: str | None = None,
        ref: str | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> LakeLocation:
        """Arguments are what the command line said (None: not given); the environment fills the
        rest (`*_ENV`), then the defaults. With no catalog type set, a Nessie URI of the platform's
        own (flag or $INGEST_NESSIE_URI) means Nessie; the target's settings need their catalog type,
        as the target does. The token is read from the environment only (never a shell history)."""
        root = project_dir(project)
        warehouse = warehouse or from_env(WAREHOUSE_ENV, environ)
        if warehouse is None:
            warehouse = str(default_warehouse(root))
        elif "://" not in warehouse:  # a local folder, as the target resolves it
            warehouse = str(Path(warehouse).expanduser().resolve())
        nessie_uri = nessie_uri or from_env(NESSIE_URI_ENV[:1], environ)
        kind = catalog_type or from_env(CATALOG_TYPE_ENV, environ) or (NESSIE if nessie_uri else SQL)
        if kind not in CATALOG_TYPES:
            msg = (
                f"catalog type {kind!r} is not supported; use one of: {', '.join(CATALOG_TYPES)} "
                f"(--catalog-type, {' or '.join(CATALOG_TYPE_ENV)})"
            )
            raise ConfigError(msg)
        catalog_uri = catalog_uri or from_env(CATALOG_URI_ENV, environ) or default_catalog_uri(root)
        io = warehouse_io_properties(warehouse, environ)
        if kind == SQL:
            if ref is not None:
                msg = f"--ref {ref!r} names a Nessie reference; add --catalog-type nessie --nessie-uri URI"
                raise ConfigError(msg)
            return cls(catalog_uri, warehouse, catalog_name, project=root, io_properties=io)
        nessie_uri = nessie_uri or from_env(NESSIE_URI_ENV, environ)
        if not nessie_uri:
            msg = (
                f"a Nessie catalog needs its URI: pass --nessie-uri (or set {' or '.join(NESSIE_URI_ENV)}), "
                "e.g. http://127.0.0.1:19120/api/v2"
            )
            raise ConfigError(msg)
        return cls(
            catalog_uri,
            warehouse,
            catalog_name,
            catalog_type=NESSIE,
            nessie_uri=nessie_uri,
            ref=ref or from_env(REF_ENV, environ) or DEFAULT_REF,
            nessie_token=from_env(NESSIE_TOKEN_ENV, environ),
            project=root,
            io_properties=io,
        )
