"""The target's settings: declared once (JSON Schema for `--about` and Meltano), read once, typed."""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Final

from singer_sdk import typing as th

from target_iceberg_nessie.catalogs import CATALOG_TYPES
from target_iceberg_nessie.errors import ConfigError
from target_iceberg_nessie.markdown_options import MarkdownKVSettings, parse_setting
from target_iceberg_nessie.naming import sanitize_name

CATALOG_TYPE: Final = "catalog_type"
CATALOG_NAME: Final = "catalog_name"
CATALOG_URI: Final = "catalog_uri"
WAREHOUSE: Final = "warehouse"
TENANT: Final = "tenant"
NAMESPACE: Final = "namespace"
PIPELINE_ID: Final = "pipeline_id"
RUN_ID: Final = "run_id"
STATE_DIR: Final = "state_dir"
BATCH_MAX_RECORDS: Final = "batch_max_records"
BATCH_MAX_BYTES: Final = "batch_max_bytes"
BATCH_MAX_AGE_SECONDS: Final = "batch_max_age_seconds"
MICROBATCH_RECORDS: Final = "microbatch_records"
MICROBATCH_SECONDS: Final = "microbatch_seconds"
PARQUET_COMPRESSION: Final = "parquet_compression"
COMMIT_RETRIES: Final = "commit_retries"
CHECKPOINT_INTERVAL_SECONDS: Final = "checkpoint_interval_seconds"
NESSIE_URI: Final = "nessie_uri"
NESSIE_TOKEN: Final = "nessie_token"  # noqa: S105 - the setting's name, not a secret
BRANCH: Final = "branch"
BRANCH_FROM: Final = "branch_from"
PUBLISH: Final = "publish"
NESSIE_TIMEOUT_SECONDS: Final = "nessie_timeout_seconds"
CONTRACTS: Final = "contracts"
SOURCE_TYPE: Final = "source_type"
CONTRACT_MODE: Final = "contract_mode"
CONTRACT_MODES: Final = ("lenient", "strict")
CONTRACT_ENFORCEMENT: Final = "contract_enforcement"
CONTRACT_SCHEMA_EVOLUTION: Final = "contract_schema_evolution"
TABLE_PROPERTIES: Final = "table_properties"
PUBLISH_MODES: Final = ("direct", "wap")
S3_ENDPOINT: Final = "s3_endpoint"
S3_REGION: Final = "s3_region"
S3_ACCESS_KEY_ID: Final = "s3_access_key_id"
S3_SECRET_ACCESS_KEY: Final = "s3_secret_access_key"  # noqa: S105 - the setting's name, not a secret
S3_SESSION_TOKEN: Final = "s3_session_token"  # noqa: S105 - the setting's name, not a secret
S3_PATH_STYLE: Final = "s3_path_style"
S3_SETTINGS: Final = (
    S3_ENDPOINT,
    S3_REGION,
    S3_ACCESS_KEY_ID,
    S3_SECRET_ACCESS_KEY,
    S3_SESSION_TOKEN,
    S3_PATH_STYLE,
)
WRITE_MODE: Final = "write_mode"
WRITE_MODES: Final = ("append", "upsert", "overwrite")
MARKDOWN_KV: Final = "markdown_kv"

# Seconds: a number, or its text (how Meltano passes a setting given by an environment variable).
_SECONDS: Final = th.CustomType({"type": ["number", "string"], "pattern": r"^\s*[0-9]+(\.[0-9]*)?\s*$"})

CONFIG_SCHEMA: Final = th.PropertiesList(
    th.Property(
        CATALOG_TYPE,
        th.StringType(allowed_values=list(CATALOG_TYPES)),
        default="sql",
        description="Catalog backend. `sql`: the embedded catalog (pyiceberg SqlCatalog, SQLite by default); "
        "`nessie`: Project Nessie at nessie_uri, on `branch`.",
    ),
    th.Property(
        NESSIE_URI,
        th.StringType,
        description="Nessie REST API v2 base URI (catalog_type nessie), e.g. http://127.0.0.1:19120/api/v2.",
    ),
    th.Property(
        NESSIE_TOKEN, th.StringType, secret=True, description="Bearer token for Nessie, if it needs one."
    ),
    th.Property(
        BRANCH, th.StringType, default="main", description="Nessie branch the checkpoints commit to."
    ),
    th.Property(
        S3_ENDPOINT,
        th.StringType,
        description="S3-compatible endpoint of an s3:// warehouse (e.g. http://127.0.0.1:9000 for MinIO "
        "or SeaweedFS); unset: AWS S3.",
    ),
    th.Property(S3_REGION, th.StringType, description="Region of the warehouse bucket (default us-east-1)."),
    th.Property(
        S3_ACCESS_KEY_ID,
        th.StringType,
        secret=True,
        description="Access key id for the s3:// warehouse; unset: the AWS default credential chain.",
    ),
    th.Property(S3_SECRET_ACCESS_KEY, th.StringType, secret=True, description="Secret access key."),
    th.Property(S3_SESSION_TOKEN, th.StringType, secret=True, description="Session token (temporary keys)."),
    th.Property(
        S3_PATH_STYLE,
        th.BooleanType,
        default=True,
        description="Path-style requests (http://endpoint/bucket/key), which S3-compatible servers need; "
        "false: virtual-hosted style (http://bucket.endpoint/key).",
    ),
    th.Property(
        BRANCH_FROM,
        th.StringType,
        description="When `branch` does not exist, create it from this reference (a branch or tag name); "
        "unset: a missing branch is an error.",
    ),
    th.Property(
        CONTRACTS,
        th.ArrayType(th.StringType),
        description="ODCS v3.0.2 contract files, or folders searched for *.yaml, that the streams are "
        "checked against (a stream matches a schema object's name or physicalName). Relative paths are "
        "relative to the project. Unset: no contracts.",
    ),
    th.Property(
        SOURCE_TYPE,
        th.StringType,
        description="The job's connector type (registry/connectors.yaml, e.g. stripe). In strict contract "
        "mode a contract made for another source type (its `source.type`) is refused.",
    ),
    th.Property(
        CONTRACT_MODE,
        th.StringType(allowed_values=list(CONTRACT_MODES)),
        default="lenient",
        description="strict: a stream without a contract is refused before any of its records land. "
        "lenient: it is loaded with its Singer schema, and a warning.",
    ),
    th.Property(
        CONTRACT_ENFORCEMENT,
        th.StringType(allowed_values=["fail", "quarantine", "drop"]),
        description="Overrides every contract's `enforcement` for this job: fail (the checkpoint is not "
        "committed, exit 2), quarantine (bad rows go to <table>__rejected, exit 1), drop (counted only).",
    ),
    th.Property(
        CONTRACT_SCHEMA_EVOLUTION,
        th.StringType(allowed_values=["evolve", "freeze", "discard"]),
        description="Overrides every contract's `schemaEvolution` for this job (properties the contract "
        "does not declare: add the column, refuse the stream, or drop the column).",
    ),
    th.Property(
        TABLE_PROPERTIES,
        th.ObjectType(additional_properties=th.StringType),
        description="Table properties set on every table this job writes; they win over the ones a "
        "contract gives (governance.*, finops.*, classification.*, contract.*).",
    ),
    th.Property(
        NESSIE_TIMEOUT_SECONDS,
        _SECONDS,
        default=30,
        description="How long to wait for one Nessie answer. A commit whose answer does not come in time "
        "is looked up in the log (and fenced off if it is not there) before it is re-applied.",
    ),
    th.Property(
        PUBLISH,
        th.StringType(allowed_values=list(PUBLISH_MODES)),
        default="direct",
        description="`direct`: every checkpoint commits to `branch` and its state is emitted at once. "
        "`wap` (write-audit-publish, Nessie only): the run commits to its own branch "
        "`<tenant>/run-<run_id>`, audits it at the end (row counts, unique keys) and merges it into "
        "`branch` in one commit carrying the final state; STATE is emitted only then. A failed audit "
        "publishes nothing and keeps the run branch for inspection.",
    ),
    th.Property(
        WRITE_MODE,
        th.StringType(allowed_values=list(WRITE_MODES)),
        default="append",
        description="`append`: every record is a new row. `upsert`: a record replaces the row with the "
        "same key (the contract's primary key, else the stream's key_properties), so a replayed or "
        "re-read record (incremental boundaries, lookback windows, retried runs) is stored once; the "
        "latest record of a key within a checkpoint wins. Files holding replaced rows are rewritten "
        "in the same commit (copy-on-write). `overwrite`: the run's first checkpoint of each table "
        "replaces its rows (full refresh); later checkpoints append.",
    ),
    th.Property(
        MARKDOWN_KV,
        th.CustomType({"type": ["object", "string", "null"]}),  # text: JSON from an environment variable
        description="Also store streams as Markdown-KV (docs/markdown-kv.md): "
        '{"default": {...}, "streams": {"<stream>": {...} | null}} with, per stream, any of '
        "`string` (a column, default `_markdown_kv`, holding each row as a Markdown-KV record), "
        "`raw_file` (.md/.mdkv documents in the warehouse at `path`, per record or per batch, listed "
        "in the commit's snapshot summary) and `structured` (a text `column` holding Markdown-KV "
        "documents, parsed into <stream>__kv and/or <stream>__doc tables). See docs/target.md.",
    ),
    th.Property(
        CATALOG_NAME,
        th.StringType,
        default="ingest",
        description="Catalog name recorded in the catalog tables.",
    ),
    th.Property(
        CATALOG_URI,
        th.StringType,
        secret=True,  # a database URL may carry a password
        description="SQLAlchemy URL of the embedded catalog database. "
        "Default: sqlite:///<project>/.lake/catalog.db (project = $MELTANO_PROJECT_ROOT or the working dir).",
    ),
    th.Property(
        WAREHOUSE,
        th.StringType,
        description="Where table data and metadata live: a local folder or file:// URI. "
        "Default: <project>/.lake/warehouse.",
    ),
    th.Property(
        TENANT, th.StringType, default="default", description="Tenant id; the first namespace level."
    ),
    th.Property(
        NAMESPACE, th.StringType, default="raw", description="Namespace under the tenant that tables go into."
    ),
    th.Property(
        PIPELINE_ID,
        th.StringType,
        description="Id of the pipeline (tenant + job) whose state the checkpoints carry. "
        "Default: <tenant>.<namespace>.",
    ),
    th.Property(RUN_ID, th.StringType, description="Id of this run. Default: generated (UTC time + random)."),
    th.Property(
        STATE_DIR,
        th.StringType,
        description="Platform state store root; the committed state goes to "
        "<state_dir>/<tenant>/<pipeline_id>/state.json. Default: <project>/.state.",
    ),
    th.Property(
        BATCH_MAX_RECORDS,
        th.IntegerType,
        default=25_000,
        description="A stream's buffered records become a row group of its staged file at this count.",
    ),
    th.Property(
        BATCH_MAX_BYTES,
        th.IntegerType,
        default=16 * 1024 * 1024,
        description="... or when its buffered input reaches this many bytes (bounds memory per stream).",
    ),
    th.Property(
        BATCH_MAX_AGE_SECONDS,
        _SECONDS,
        default=300,
        description="... or when its oldest buffered record is this old.",
    ),
    th.Property(
        CHECKPOINT_INTERVAL_SECONDS,
        _SECONDS,
        default=1.0,
        description="A STATE message commits a checkpoint when at least this many seconds passed since the "
        "last one; otherwise it is held (not emitted) and the next checkpoint commits it with the rows "
        "before it. 0: every STATE commits. The end of input always commits.",
    ),
    th.Property(
        MICROBATCH_RECORDS,
        th.IntegerType,
        default=0,
        description="Commit a checkpoint every N records even without a STATE message (0: off).",
    ),
    th.Property(
        MICROBATCH_SECONDS,
        _SECONDS,
        default=0,
        description="Commit a checkpoint every T seconds even without a STATE message (0: off).",
    ),
    th.Property(
        PARQUET_COMPRESSION,
        th.StringType(allowed_values=["zstd", "snappy", "gzip", "lz4", "none"]),
        default="zstd",
        description="Parquet compression codec of data files.",
    ),
    th.Property(
        COMMIT_RETRIES,
        th.IntegerType,
        default=5,
        description="How often a checkpoint that conflicts with another writer is re-applied.",
    ),
).to_dict()


# Settings of singer-sdk's own sinks that users carry over from other targets, and what to use here.
_SDK_SINK_SETTINGS: Final = {
    "load_method": "use write_mode (append, upsert or overwrite)",
    "add_record_metadata": "Singer metadata columns are not added",
    "batch_size_rows": "use batch_max_records",
    "validate_records": "records are checked per batch against their column types",
}


def project_root() -> Path:
    return Path(os.environ.get("MELTANO_PROJECT_ROOT") or Path.cwd())


def new_run_id() -> str:
    return f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{secrets.token_hex(4)}"


def _positive(config: Mapping[str, Any], key: str, default: float) -> float:
    value = config.get(key, default)
    if value is None:
        return default
    if isinstance(value, str | Decimal) and not isinstance(value, bool):
        # Text from an environment variable; Decimal: the SDK reads fractions of a --config file so.
        try:
            value = float(value)
        except ValueError:
            msg = f"setting '{key}' must be a number >= 0, got {value!r}"
            raise ConfigError(msg) from None
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        msg = f"setting '{key}' must be a number >= 0, got {value!r}"
        raise ConfigError(msg)
    return value


def _listed(config: Mapping[str, Any], key: str) -> list[Any]:
    """A list setting; Meltano may pass one given by an environment variable as JSON text."""
    value = config.get(key)
    if value is None or value == "":
        return []
    if isinstance(value, str):
        try:
            value = json.loads(value) if value.lstrip().startswith("[") else [value]
        except json.JSONDecodeError:
            msg = f"setting '{key}' must be a list (JSON array) of paths, got {value!r}"
            raise ConfigError(msg) from None
    if not isinstance(value, list):
        msg = f"setting '{key}' must be a list of paths, got {value!r}"
        raise ConfigError(msg)
    return value


def _choice(config: Mapping[str, Any], key: str, choices: Sequence[str], default: str) -> str:
    value = str(config.get(key) or default)
    if value not in choices:
        msg = f"setting '{key}' must be one of {', '.join(choices)}, got {value!r}"
        raise ConfigError(msg)
    return value


def _flag(config: Mapping[str, Any], key: str, default: bool) -> bool:
    value = config.get(key)
    if value is None or value == "":
        return default
    if isinstance(value, str):  # from an environment variable
        if value.strip().lower() in {"true", "1", "yes"}:
            return True
        if value.strip().lower() in {"false", "0", "no"}:
            return False
        msg = f"setting '{key}' must be true or false, got {value!r}"
        raise ConfigError(msg)
    return bool(value)


def io_properties(config: Mapping[str, Any], warehouse: str) -> dict[str, str]:
    """pyiceberg FileIO properties for the warehouse from the s3_* settings."""
    found = {
        "s3.endpoint": config.get(S3_ENDPOINT),
        "s3.region": config.get(S3_REGION),
        "s3.access-key-id": config.get(S3_ACCESS_KEY_ID),
        "s3.secret-access-key": config.get(S3_SECRET_ACCESS_KEY),
        "s3.session-token": config.get(S3_SESSION_TOKEN),
    }
    properties = {k: str(v) for k, v in found.items() if v not in (None, "")}
    if not properties and not warehouse.startswith(("s3://", "s3a://")):
        return {}
    if bool(config.get(S3_ACCESS_KEY_ID)) != bool(config.get(S3_SECRET_ACCESS_KEY)):
        msg = "settings 's3_access_key_id' and 's3_secret_access_key' go together; set both or neither"
        raise ConfigError(msg)
    properties.setdefault("s3.region", "us-east-1")
    properties["s3.force-virtual-addressing"] = str(not _flag(config, S3_PATH_STYLE, True)).lower()
    return properties


@dataclass(frozen=True)
class TargetSettings:
    catalog_type: str
    catalog_name: str
    catalog_uri: str
    warehouse: str
    tenant: str
    namespace: str
    pipeline_id: str
    run_id: str
    state_dir: Path
    batch_max_records: int
    batch_max_bytes: int
    batch_max_age_seconds: float
    microbatch_records: int
    microbatch_seconds: float
    parquet_compression: str
    commit_retries: int
    checkpoint_interval_seconds: float
    nessie_uri: str
    nessie_token: str | None
    branch: str
    branch_from: str | None
    publish: str = "direct"
    nessie_timeout_seconds: float = 30.0
    contracts: tuple[Path, ...] = ()
    contract_mode: str = "lenient"
    source_type: str | None = None
    contract_enforcement: str | None = None
    contract_schema_evolution: str | None = None
    table_properties: Mapping[str, str] = field(default_factory=dict)
    write_mode: str = "append"
    markdown_kv: MarkdownKVSettings = field(default_factory=MarkdownKVSettings)
    # pyiceberg FileIO properties of the warehouse; they carry credentials, so they are handed to the
    # FileIO only and never written into table metadata, commits or logs.
    io_properties: Mapping[str, str] = field(default_factory=dict, repr=False)

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> TargetSettings:
        for key, instead in _SDK_SINK_SETTINGS.items():
            if key in config:
                msg = f"setting '{key}' belongs to singer-sdk's sinks, not this target; remove it ({instead})"
                raise ConfigError(msg)
        root = project_root()
        lake = root / ".lake"
        tenant = sanitize_name(str(config.get(TENANT) or "default"), what="tenant")
        namespace = sanitize_name(str(config.get(NAMESPACE) or "raw"), what="namespace")
        warehouse = str(config.get(WAREHOUSE) or lake / "warehouse")
        if "://" not in warehouse:
            warehouse = str(Path(warehouse).expanduser().resolve())
        catalog_uri = str(config.get(CATALOG_URI) or f"sqlite:///{lake / 'catalog.db'}")
        catalog_type = str(config.get(CATALOG_TYPE) or "sql")
        publish = str(config.get(PUBLISH) or "direct")
        if publish not in PUBLISH_MODES:
            msg = f"setting 'publish' must be one of {', '.join(PUBLISH_MODES)}, got {publish!r}"
            raise ConfigError(msg)
        if publish == "wap" and catalog_type != "nessie":
            msg = "setting 'publish: wap' needs 'catalog_type: nessie' (the embedded catalog has no branches)"
            raise ConfigError(msg)
        pipeline_id = str(config.get(PIPELINE_ID) or f"{tenant}.{namespace}")
        if "/" in pipeline_id or ".." in pipeline_id or not pipeline_id.strip():
            msg = f"setting 'pipeline_id' must not contain '/' or '..', got {pipeline_id!r}"
            raise ConfigError(msg)
        return cls(
            catalog_type=catalog_type,
            catalog_name=str(config.get(CATALOG_NAME) or "ingest"),
            catalog_uri=catalog_uri,
            warehouse=warehouse,
            tenant=tenant,
            namespace=namespace,
            pipeline_id=pipeline_id,
            run_id=str(config.get(RUN_ID) or new_run_id()),
            state_dir=Path(str(config.get(STATE_DIR) or root / ".state")).expanduser(),
            batch_max_records=max(1, int(_positive(config, BATCH_MAX_RECORDS, 25_000))),
            batch_max_bytes=max(1, int(_positive(config, BATCH_MAX_BYTES, 16 * 1024 * 1024))),
            batch_max_age_seconds=_positive(config, BATCH_MAX_AGE_SECONDS, 300),
            microbatch_records=int(_positive(config, MICROBATCH_RECORDS, 0)),
            microbatch_seconds=_positive(config, MICROBATCH_SECONDS, 0),
            parquet_compression=str(config.get(PARQUET_COMPRESSION) or "zstd"),
            commit_retries=int(_positive(config, COMMIT_RETRIES, 5)),
            checkpoint_interval_seconds=_positive(config, CHECKPOINT_INTERVAL_SECONDS, 1.0),
            nessie_uri=str(config.get(NESSIE_URI) or ""),
            nessie_token=config.get(NESSIE_TOKEN) or None,
            branch=str(config.get(BRANCH) or "main"),
            branch_from=config.get(BRANCH_FROM) or None,
            publish=publish,
            nessie_timeout_seconds=max(0.1, _positive(config, NESSIE_TIMEOUT_SECONDS, 30.0)),
            contracts=tuple(
                p if p.is_absolute() else root / p
                for p in (Path(str(c)).expanduser() for c in _listed(config, CONTRACTS))
            ),
            contract_mode=_choice(config, CONTRACT_MODE, CONTRACT_MODES, "lenient"),
            source_type=config.get(SOURCE_TYPE) or None,
            contract_enforcement=config.get(CONTRACT_ENFORCEMENT) or None,
            contract_schema_evolution=config.get(CONTRACT_SCHEMA_EVOLUTION) or None,
            table_properties={str(k): str(v) for k, v in (config.get(TABLE_PROPERTIES) or {}).items()},
            write_mode=_choice(config, WRITE_MODE, WRITE_MODES, "append"),
            markdown_kv=parse_setting(config.get(MARKDOWN_KV)),
            io_properties=io_properties(config, warehouse),
        )
