"""The static connector catalog (`registry/connectors.yaml`): loaded, checked against
`schemas/connectors.schema.json`, and returned as typed models that mirror that schema.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Final, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ingestion.errors import ConfigError, ConfigFileError, Problem
from ingestion.paths import REGISTRY_FILE
from ingestion.validation import read_yaml, validate

SCHEMA: Final = "connectors.schema.json"


class Role(StrEnum):
    EXTRACTOR = "extractor"
    LOADER = "loader"


class Category(StrEnum):
    FILES = "files"
    SAAS_API = "saas_api"
    DATABASE = "database"
    LAKEHOUSE = "lakehouse"


class StreamKind(StrEnum):
    FIXED = "fixed"
    DISCOVERED = "discovered"
    CONFIGURABLE = "configurable"


class IncrementalStrategy(StrEnum):
    FULL_TABLE = "full_table"
    KEY = "key"
    FILE_MODIFIED_TIME = "file_modified_time"
    LOG_BASED = "log_based"


class CatalogType(StrEnum):
    SQL = "sql"
    NESSIE = "nessie"
    REST = "rest"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Streams(_Model):
    kind: StreamKind
    description: str
    config_key: str | None = None
    names: tuple[str, ...] = ()


class Incremental(_Model):
    strategy: IncrementalStrategy
    replication_key: str | None = None
    description: str = ""


class Connector(_Model):
    id: str  # the key in `connectors:`, copied in by the loader
    label: str
    description: str = ""
    plugin: str
    variants: tuple[str, ...] = ()
    roles: tuple[Role, ...]
    category: Category
    allowed_in_saas: bool
    streams: Streams | None = None
    incremental: Incremental | None = None
    default_contracts: tuple[str, ...] = ()
    catalogs: tuple[CatalogType, ...] = ()

    @property
    def plugins(self) -> tuple[str, ...]:
        """Every Meltano plugin name that runs this connector type."""
        return (self.plugin, *self.variants)

    def has_role(self, role: Role) -> bool:
        return role in self.roles


class Registry(_Model):
    schema_version: Literal[1]
    connectors: dict[str, Connector] = Field(default_factory=dict)
    source: Path = Field(default=REGISTRY_FILE, exclude=True)  # where it was read from, for messages

    def connector(self, connector_id: str) -> Connector:
        found = self.connectors.get(connector_id)
        if found is None:
            known = ", ".join(sorted(self.connectors))
            msg = f"unknown connector type {connector_id!r} (not in {self.source}); use one of: {known}"
            raise ConfigError(msg)
        return found

    def for_plugin(self, plugin: str) -> Connector | None:
        """The connector type a Meltano plugin (or an inheriting variant of it) belongs to."""
        return next((c for c in self.connectors.values() if plugin in c.plugins), None)

    def with_role(self, role: Role) -> list[Connector]:
        return [c for c in self.connectors.values() if c.has_role(role)]


def load_registry(file: Path = REGISTRY_FILE) -> Registry:
    """Read and check the registry; every problem names the file, the path inside it and the fix."""
    document = read_yaml(file)
    validate(document, SCHEMA, file)
    connectors = {key: {"id": key, **value} for key, value in document["connectors"].items()}
    try:
        return Registry.model_validate({**document, "connectors": connectors, "source": file})
    except ValidationError as error:  # the schema and the models disagree: a bug here, not in the file
        problems = [
            Problem(
                ".".join(map(str, e["loc"])), e["msg"], f"align ingestion/registry.py with schemas/{SCHEMA}"
            )
            for e in error.errors()
        ]
        raise ConfigFileError(file, problems) from None
