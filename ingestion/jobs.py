"""Job specs (`configs/jobs/<tenant>/<job>.yaml`) and the runner's settings (`configs/runner.yaml`):
read, checked against their JSON Schemas, then against the registry, the contracts and the tenant
boundary, and returned as typed models that mirror the schemas.

`validate_tree` checks everything at once and reports every problem with its file, the path inside
it and the fix (`ingest validate`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field

from ingestion.cadence import interval_cron
from ingestion.errors import ConfigError, ConfigFileError, Problem
from ingestion.lookback import parse_lookback
from ingestion.paths import SOURCE_ROOT
from ingestion.registry import Connector, Registry, Role, load_registry
from ingestion.tenants import check_tenant_id
from ingestion.validation import read_yaml, validate

JOB_SCHEMA: Final = "job.schema.json"
RUNNER_SCHEMA: Final = "runner.schema.json"
RUNNER_FILE: Final = "runner.yaml"
JOB_NAME: Final = re.compile(r"[a-z][a-z0-9_-]{0,63}")  # as schemas/job.schema.json's job_name
JOBS_DIR: Final = "jobs"

# The image's volumes; each can be moved by an environment variable (or a flag), and defaults to a
# folder of the checkout for local use.
_DIRS: Final = {
    "configs": ("INGEST_CONFIGS_DIR", "/configs", "configs"),
    "specs": ("INGEST_SPECS_DIR", "/specs", "."),
    "secrets": ("INGEST_SECRETS_DIR", "/secrets", ".secrets"),
    "state": ("INGEST_STATE_DIR", "/state", ".state"),
    "logs": ("INGEST_LOGS_DIR", "/logs", ".logs"),
}
IN_CONTAINER_ENV: Final = "INGEST_IN_CONTAINER"  # set by the image: use the volume paths by default
SHARED_CONTRACT_TENANT: Final = "default"  # contracts every tenant may use (the shipped ones)


@dataclass(frozen=True)
class PlatformPaths:
    """Where configs, specs (contracts + registry), secrets, state and logs live."""

    configs: Path
    specs: Path
    secrets: Path
    state: Path
    logs: Path

    @classmethod
    def resolve(
        cls,
        *,
        root: Path | None = None,
        environ: Mapping[str, str] | None = None,
        configs: Path | None = None,
        specs: Path | None = None,
        secrets: Path | None = None,
        state: Path | None = None,
        logs: Path | None = None,
    ) -> PlatformPaths:
        """Flags first, then INGEST_*_DIR, then the image's volumes (in the container) or folders of
        the checkout at `root` (default: this repository)."""
        overrides = {"configs": configs, "specs": specs, "secrets": secrets, "state": state, "logs": logs}
        env = os.environ if environ is None else environ
        base = (root or SOURCE_ROOT).resolve()
        in_container = env.get(IN_CONTAINER_ENV, "").lower() == "true"
        found = {}
        for name, (variable, volume, local) in _DIRS.items():
            given = overrides.get(name) or env.get(variable)
            if given:
                found[name] = Path(given).expanduser().resolve()
            else:
                found[name] = Path(volume) if in_container else (base / local).resolve()
        return cls(**found)

    @property
    def jobs(self) -> Path:
        return self.configs / JOBS_DIR

    @property
    def runner_file(self) -> Path:
        return self.configs / RUNNER_FILE

    @property
    def assets(self) -> Path:
        return self.specs / "assets"

    @property
    def registry_file(self) -> Path:
        return self.specs / "registry" / "connectors.yaml"

    def tenant_dir(self, kind: Literal["secrets", "state", "logs"], tenant: str) -> Path:
        """`<kind>/<tenant>`, refusing anything that would leave `<kind>`."""
        root: Path = getattr(self, kind)
        folder = (root / check_tenant_id(tenant)).resolve()
        if folder.parent != root.resolve():
            msg = f"{kind} folder of tenant {tenant!r} resolves to {folder}, outside {root}; remove the link"
            raise ConfigError(msg)
        return folder


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TargetSpec(_Model):
    namespace: str | None = None
    branch: str | None = None
    write_mode: Literal["append", "upsert", "overwrite"] | None = None
    publish: Literal["direct", "wap"] | None = None
    contract_mode: Literal["lenient", "strict"] | None = None
    contract_enforcement: Literal["fail", "quarantine", "drop"] | None = None
    contract_schema_evolution: Literal["evolve", "freeze", "discard"] | None = None
    checkpoint_interval_seconds: float | None = None
    batch_max_records: int | None = None
    table_properties: dict[str, str] = Field(default_factory=dict)


class IncrementalSpec(_Model):
    lookback: str | None = None
    microbatch_seconds: float | None = None
    backfill_window: str | None = None
    start_setting: str | None = None
    end_setting: str | None = None


class ScheduleSpec(_Model):
    cron: str | None = None
    interval: str | None = None
    timezone: str = "UTC"
    enabled: bool = True
    tags: dict[str, str] = Field(default_factory=dict)


class RetrySpec(_Model):
    max_attempts: int | None = None
    initial_backoff_seconds: float | None = None
    max_backoff_seconds: float | None = None


class TagsSpec(_Model):
    governance: dict[str, str] = Field(default_factory=dict)
    business: dict[str, str] = Field(default_factory=dict)


class JobSpec(_Model):
    """One job of one tenant (mirrors schemas/job.schema.json)."""

    schema_version: Literal[1]
    tenant: str
    name: str
    extractor: str
    plugin: str | None = None
    description: str = ""
    streams: tuple[str, ...] = ()
    config: dict[str, Any] = Field(default_factory=dict)
    secrets: dict[str, str] = Field(default_factory=dict)
    contracts: tuple[str, ...] | None = None
    target: TargetSpec = Field(default_factory=TargetSpec)
    incremental: IncrementalSpec = Field(default_factory=IncrementalSpec)
    schedule: ScheduleSpec | None = None
    retries: RetrySpec = Field(default_factory=RetrySpec)
    tags: TagsSpec = Field(default_factory=TagsSpec)
    source: Path = Field(exclude=True)

    @property
    def id(self) -> str:
        """`<tenant>/<job>`: how commands and schedules name the job."""
        return f"{self.tenant}/{self.name}"

    @property
    def pipeline_id(self) -> str:
        """Whose Singer state the loader commits: unique per tenant and job."""
        return f"{self.tenant}.{self.name}"

    @property
    def namespace(self) -> str:
        return self.target.namespace or self.name.replace("-", "_")


class CatalogSpec(_Model):
    type: Literal["sql", "nessie"] = "sql"
    uri: str | None = None
    nessie_uri: str | None = None
    branch: str = "main"
    warehouse: str | None = None
    s3_endpoint: str | None = None
    s3_region: str | None = None
    s3_path_style: bool | None = None
    secrets: dict[str, str] = Field(default_factory=dict)


class RetryPolicy(_Model):
    max_attempts: int = 3
    initial_backoff_seconds: float = 30
    max_backoff_seconds: float = 900


class RunnerSchedule(ScheduleSpec):
    """A runner.yaml schedule: a job's `schedule`, and which job (`<tenant>/<job>`)."""

    job: str


class OpenLineageSpec(_Model):
    url: str
    namespace: str = "ingestion"
    api_key_secret: str | None = None
    timeout_seconds: float = 10


class RunnerConfig(_Model):
    """configs/runner.yaml (mirrors schemas/runner.schema.json); every key has a default."""

    schema_version: Literal[1] = 1
    mode: Literal["orchestrated", "oneshot"] = "orchestrated"
    deployment: Literal["self_hosted", "saas"] = "self_hosted"
    catalog: CatalogSpec = Field(default_factory=CatalogSpec)
    concurrency_per_tenant: int = 1
    retry_policy: RetryPolicy = Field(default_factory=RetryPolicy)
    schedules: tuple[RunnerSchedule, ...] = ()
    openlineage: OpenLineageSpec | None = None


def load_runner(paths: PlatformPaths) -> RunnerConfig:
    """configs/runner.yaml, or the defaults when the file does not exist."""
    file = paths.runner_file
    if not file.exists():
        return RunnerConfig()
    document = read_yaml(file)
    validate(document, RUNNER_SCHEMA, file)
    return RunnerConfig.model_validate(document)


def _job_files(paths: PlatformPaths) -> Iterator[Path]:
    if paths.jobs.is_dir():
        yield from sorted(paths.jobs.glob("*/*.yaml"))
        yield from sorted(paths.jobs.glob("*/*.yml"))


def load_job(file: Path, paths: PlatformPaths, registry: Registry | None = None) -> JobSpec:
    """One job spec, checked against its schema, its folder (tenant), the registry and the contracts."""
    document = read_yaml(file)
    validate(document, JOB_SCHEMA, file)
    tenant_folder = file.parent.name
    problems = _check_job(document, file, paths, registry or load_registry(paths.registry_file))
    if problems:
        raise ConfigFileError(file, problems)
    return JobSpec.model_validate(
        {**document, "name": document.get("name") or file.stem, "tenant": tenant_folder, "source": file}
    )


def _check_job(
    document: Mapping[str, Any], file: Path, paths: PlatformPaths, registry: Registry
) -> list[Problem]:
    problems: list[Problem] = []
    folder = file.parent.name
    jobs_root = paths.jobs.resolve()
    if file.resolve().parent.parent != jobs_root or file.is_symlink():
        problems.append(
            Problem(
                "<file>",
                f"the job file must be a regular file directly in {paths.jobs}/<tenant>/",
                "move it there",
            )
        )
    try:
        check_tenant_id(folder)
    except ConfigError as error:
        problems.append(Problem("<folder>", str(error), "rename the tenant folder"))
    if document.get("tenant") != folder:
        problems.append(
            Problem(
                "tenant",
                f"the job says tenant {document.get('tenant')!r}; it is in the folder of tenant {folder!r}",
                f"set `tenant: {folder}` or move the file to {paths.jobs}/{document.get('tenant')}/",
            )
        )
    name = document.get("name")
    if name is not None and name != file.stem:
        problems.append(
            Problem("name", f"name {name!r} differs from the file name {file.stem!r}", "make them equal")
        )
    elif name is None and not _valid_job_name(file.stem):
        problems.append(
            Problem("<file>", f"{file.stem!r} is not a job name", "rename the file: [a-z][a-z0-9_-]*")
        )
    connector = _check_connector(document, registry, problems)
    # Contracts the job names must describe a stream it loads (the connector's defaults cover all
    # its streams, of which a job may load some).
    streams = set(_job_streams(document, connector)) if connector and document.get("contracts") else set()
    if document.get("contracts") is None and connector is not None and connector.default_contracts:
        # The connector's defaults apply: they must be there too (`contracts: []` opts out).
        document = {**document, "contracts": list(connector.default_contracts)}
    _check_references(document, paths, folder, problems, streams)
    return problems


def _check_connector(
    document: Mapping[str, Any], registry: Registry, problems: list[Problem]
) -> Connector | None:
    connector = _connector(document, registry, problems)
    if connector is not None:
        plugin = document.get("plugin")
        if plugin is not None and plugin not in connector.plugins:
            problems.append(
                Problem(
                    "plugin",
                    f"{plugin!r} is not a plugin of connector {connector.id!r}",
                    f"use one of: {', '.join(connector.plugins)}",
                )
            )
        if connector.streams and connector.streams.names and document.get("streams"):
            unknown = [s for s in document["streams"] if s not in connector.streams.names]
            if unknown:
                problems.append(
                    Problem(
                        "streams",
                        f"stream(s) {unknown} are not offered by {connector.id}",
                        f"use some of: {', '.join(connector.streams.names)}",
                    )
                )
    return connector


def configured_streams(config: Mapping[str, Any], connector: Connector) -> list[str]:
    """Stream names from the setting that configures them (`files[].table_name`, `streams[].name`)."""
    key = connector.streams.config_key if connector.streams else None
    entries = config.get(key) if key else None
    names = [e.get("table_name") or e.get("name") for e in entries or [] if isinstance(e, Mapping)]
    return [str(n) for n in names if n]


def _job_streams(document: Mapping[str, Any], connector: Connector) -> list[str]:
    """The streams a job names: `streams`, or the entries of the setting that configures them."""
    if document.get("streams"):
        return [str(s) for s in document["streams"]]
    return configured_streams(document.get("config") or {}, connector)


def _check_references(
    document: Mapping[str, Any], paths: PlatformPaths, folder: str, problems: list[Problem], streams: set[str]
) -> None:
    """Contracts inside the specs, of the tenant, describing one of `streams` (when given); branches of
    the tenant, durations that parse, no setting twice."""
    for n, asset in enumerate(document.get("contracts") or []):
        contract = (paths.assets / asset).resolve()
        if not contract.is_relative_to(paths.assets.resolve()):
            problems.append(
                Problem(f"contracts[{n}]", f"{asset!r} leaves {paths.assets}", "name a file under assets/")
            )
        elif not contract.is_file():
            problems.append(
                Problem(f"contracts[{n}]", f"no contract at {contract}", "fix the path or add the contract")
            )
        else:
            _check_contract(
                contract, asset, path=f"contracts[{n}]", folder=folder, streams=streams, problems=problems
            )
    branch = (document.get("target") or {}).get("branch")
    if branch is not None and "/" in branch and not branch.startswith(f"{folder}/"):
        problems.append(
            Problem(
                "target.branch",
                f"branch {branch!r} is not a branch of tenant {folder!r} (its own start with '{folder}/')",
                f"use main or a branch named {folder}/...",
            )
        )
    for key in ("lookback", "backfill_window"):
        value = (document.get("incremental") or {}).get(key)
        if value is not None:
            try:
                parse_lookback(str(value))
            except ConfigError as error:
                problems.append(Problem(f"incremental.{key}", str(error), "write a duration like 2d"))
    for _, bad in _bad_intervals([(document.get("schedule") or {}).get("interval")]):
        problems.append(Problem("schedule.interval", str(bad), "use a cron expression or another interval"))
    overlap = set(document.get("config") or {}) & set(document.get("secrets") or {})
    if overlap:
        problems.append(
            Problem(
                "secrets", f"setting(s) {sorted(overlap)} are given in both config and secrets", "keep one"
            )
        )


def _check_contract(
    file: Path, asset: str, *, path: str, folder: str, streams: set[str], problems: list[Problem]
) -> None:
    """The contract's `tenant` is the job's or the shared one; with `streams`, it describes one of
    them (a contract of no stream the job loads would never be enforced). An unreadable file is
    left to `ingest contracts validate`, which names what is wrong in it."""
    try:
        document = read_yaml(file)
    except ConfigError:
        return
    if not isinstance(document, dict):
        return
    owner = document.get("tenant") if isinstance(document.get("tenant"), str) else None
    if owner not in (None, SHARED_CONTRACT_TENANT, folder):
        problems.append(
            Problem(
                path,
                f"{asset!r} is tenant {owner!r}'s contract",
                f"use a contract of tenant {folder!r} or a shared one (tenant: {SHARED_CONTRACT_TENANT})",
            )
        )
        return
    objects = [o for o in document.get("schema") or [] if isinstance(o, Mapping)]
    names = {str(o.get(k)) for o in objects for k in ("name", "physicalName")}
    if streams and not names & streams:
        problems.append(
            Problem(
                path,
                f"{asset!r} describes stream(s) {sorted(str(o.get('name')) for o in objects)}, none of "
                f"which the job loads ({', '.join(sorted(streams))}), so it would never be enforced",
                "name the stream as the contract does (streams, table_name) or use its contract",
            )
        )


def _connector(document: Mapping[str, Any], registry: Registry, problems: list[Problem]) -> Connector | None:
    try:
        connector = registry.connector(str(document.get("extractor")))
    except ConfigError as error:
        problems.append(Problem("extractor", str(error), "use a connector type of the registry"))
        return None
    if not connector.has_role(Role.EXTRACTOR):
        problems.append(
            Problem("extractor", f"{connector.id!r} is not an extractor", "name a source connector")
        )
        return None
    return connector


def _valid_job_name(name: str) -> bool:
    return JOB_NAME.fullmatch(name) is not None


@dataclass(frozen=True)
class Tree:
    """Everything under configs/, loaded: the runner settings and every job that is valid."""

    runner: RunnerConfig
    jobs: dict[str, JobSpec]
    errors: list[ConfigFileError]


def validate_tree(paths: PlatformPaths) -> Tree:
    """Load configs/runner.yaml and every job, collecting every file's problems instead of stopping
    at the first. Schedules must name existing jobs."""
    errors: list[ConfigFileError] = []
    runner = RunnerConfig()
    try:
        runner = load_runner(paths)
    except ConfigFileError as error:
        errors.append(error)
    registry = load_registry(paths.registry_file)
    jobs: dict[str, JobSpec] = {}
    for file in _job_files(paths):
        try:
            job = load_job(file, paths, registry)
        except ConfigFileError as error:
            errors.append(error)
            continue
        jobs[job.id] = job
    missing = [
        Problem(f"schedules[{n}].job", f"no job {s.job!r} under {paths.jobs}", "fix the name or add the job")
        for n, s in enumerate(runner.schedules)
        if s.job not in jobs and not any(e.file.parent.name + "/" + e.file.stem == s.job for e in errors)
    ]
    missing += [
        Problem(
            f"schedules[{n}].interval", str(error), "use a cron expression or an interval like 15m, 6h, 1d"
        )
        for n, error in _bad_intervals(s.interval for s in runner.schedules)
    ]
    if missing:
        errors.append(ConfigFileError(paths.runner_file, missing))
    return Tree(runner, jobs, errors)


def _bad_intervals(intervals: Iterable[str | None]) -> Iterator[tuple[int, ConfigError]]:
    """Intervals no cron expression runs at (7m, 5h): the orchestrator could not schedule them."""
    for n, interval in enumerate(intervals):
        if interval:
            try:
                interval_cron(interval)
            except ConfigError as error:
                yield n, error


def find_job(paths: PlatformPaths, job: str) -> JobSpec:
    """A job by `<tenant>/<job>` (or by its name alone when only one tenant has it)."""
    tenant, _, name = job.rpartition("/")
    if tenant:
        check_tenant_id(tenant)
        candidates = [paths.jobs / tenant / f"{name}.yaml", paths.jobs / tenant / f"{name}.yml"]
    else:
        candidates = sorted(paths.jobs.glob(f"*/{name}.yaml")) + sorted(paths.jobs.glob(f"*/{name}.yml"))
        if len(candidates) > 1:
            listed = ", ".join(f"{c.parent.name}/{name}" for c in candidates)
            msg = f"job {name!r} exists for several tenants ({listed}); name it as <tenant>/{name}"
            raise ConfigError(msg)
    for file in candidates:
        if file.is_file():
            return load_job(file, paths)
    expected = candidates[0] if candidates else paths.jobs
    msg = f"no job {job!r} under {paths.jobs} (expected {expected}); `ingest validate` lists the jobs"
    raise ConfigError(msg)
