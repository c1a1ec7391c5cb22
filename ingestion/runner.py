"""`ingest run <job>`: one run of one job, from its spec to its run metadata (the image's one-shot mode,
and what the orchestrator runs too).

The startup sequence (DESIGN.md): load and validate the job → resolve the tenant's secrets → SaaS
checks → infrastructure check (catalog) → reconcile state (the `ingest://` Meltano state backend
serves the state committed in the catalog) → `meltano run <extractor> target-iceberg-nessie` with the
job's settings in the plugins' environment only → collect metrics (the loader's run report, the HTTP
meter's counts, the CPU seconds of the whole process tree) → write run metadata → exit code.

Exit codes: 0 success, 1 partial (rows quarantined), 2 failure, 75 retryable failure (the source or
the object store unreachable, rate limited, a commit conflict after retries: run again later).
"""

from __future__ import annotations

import functools
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Final

from rich.console import Console

from ingestion.errors import PlatformError
from ingestion.jobs import JobSpec, PlatformPaths, RunnerConfig
from ingestion.paths import SOURCE_ROOT, LakeLocation
from ingestion.redact import Redactor
from ingestion.registry import Connector, load_registry
from ingestion.runlog import RunLog
from ingestion.secrets import TenantSecrets
from ingestion.validation import validate
from target_iceberg_nessie.settings import new_run_id

EXIT_SUCCESS: Final = 0
EXIT_PARTIAL: Final = 1
EXIT_FAILURE: Final = 2
EXIT_RETRYABLE: Final = 75  # EX_TEMPFAIL
LOADER: Final = "target-iceberg-nessie"
PROJECT_ENV: Final = "INGEST_MELTANO_PROJECT"  # the Meltano project to run in (default: this checkout)
RUN_METADATA_SCHEMA: Final = "run-metadata.schema.json"
PLATFORM_TENANT: Final = "_platform"  # the catalog's own secrets: /secrets/_platform/

# Output of a failed tap that says "try again later" rather than "fix something".
RETRYABLE_OUTPUT: Final = re.compile(
    r"\b429\b|Too Many Requests|rate.?limit|Connection refused|could not connect|Could not connect|"
    r"timed out|Temporary failure in name resolution|\b50[234]\b|Service Unavailable|Bad Gateway|"
    r"ConnectionResetError|RemoteDisconnected|\bConnectError\b|\bConnectTimeout\b|did not answer",
)
_CHECKPOINT_LINE: Final = re.compile(r"checkpoint \S+ committed \([^)]*\): (\d+) table\(s\), (\d+) row\(s\)")


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _env_name(plugin: str, setting: str) -> str:
    """Meltano's environment variable of a plugin setting: TAP_STRIPE_CLIENT_SECRET."""
    return f"{plugin}_{setting}".upper().replace("-", "_")


def _env_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return str(value)


@dataclass
class Progress:
    """Rows committed so far, from the loader's checkpoint lines."""

    rows: int = 0
    commits: int = 0
    started: float = field(default_factory=time.monotonic)

    def feed(self, line: str) -> bool:
        found = _CHECKPOINT_LINE.search(line)
        if found is None:
            return False
        self.commits += 1
        self.rows += int(found.group(2))
        return True

    def describe(self, job: str) -> str:
        elapsed = max(time.monotonic() - self.started, 1e-6)
        return (
            f"{job}: {self.rows:,} rows in {self.commits} commit(s), "
            f"{self.rows / elapsed:,.0f} rows/s, {elapsed:,.0f}s"
        )


@dataclass(frozen=True)
class RunResult:
    run_id: str
    exit_code: int
    metadata: dict[str, Any]
    metadata_file: Path
    log_file: Path


@dataclass
class JobRun:
    """One run of `job`: builds the environment, runs Meltano, writes the run metadata."""

    job: JobSpec
    paths: PlatformPaths
    runner: RunnerConfig
    run_id: str = field(default_factory=new_run_id)
    attempt: int = 1
    window: tuple[str, str] | None = None  # a backfill window (start, end)
    pipeline_id: str | None = None  # default: the job's (<tenant>.<job>); a backfill window has its own
    console: bool = False  # a person is watching: progress on stderr
    environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    # Run before Meltano starts (SaaS refusals, infrastructure); a PlatformError stops the run.
    checks: Sequence[Callable[[JobRun], None]] = ()

    def __post_init__(self) -> None:
        registry = load_registry(self.paths.registry_file)
        self.connector: Connector = registry.connector(self.job.extractor)
        self.plugin = self.job.plugin or self.connector.plugin
        self.state_dir = self.paths.tenant_dir("state", self.job.tenant)
        self.logs_dir = self.paths.tenant_dir("logs", self.job.tenant)
        self.log_file = self.logs_dir / self.job.name / f"{self.run_id}.jsonl"
        self.metadata_file = self.logs_dir / "runs" / f"{self.run_id}.json"
        self.secrets = TenantSecrets.load(self.paths.secrets, self.job.tenant, self.environ)
        self.platform_secrets = TenantSecrets.load(self.paths.secrets, PLATFORM_TENANT, self.environ)
        self.redactor = Redactor([*self.secrets.values(), *self.platform_secrets.values()])

    @property
    def pipeline(self) -> str:
        """Whose Singer state this run reads and commits."""
        return self.pipeline_id or self.job.pipeline_id

    # -- the environment of the plugins ----------------------------------------------------------

    @functools.cached_property
    def lake(self) -> LakeLocation:
        """The lake the job loads into: runner.yaml's catalog over the platform's defaults."""
        catalog = self.runner.catalog
        environ = dict(self.environ)
        for key, value in {
            "INGEST_CATALOG_TYPE": catalog.type,
            "INGEST_CATALOG_URI": catalog.uri,
            "INGEST_NESSIE_URI": catalog.nessie_uri,
            "INGEST_WAREHOUSE": catalog.warehouse,
            "INGEST_REF": self.job.target.branch or catalog.branch,
            "INGEST_S3_ENDPOINT": catalog.s3_endpoint,
            "INGEST_S3_REGION": catalog.s3_region,
            "INGEST_S3_PATH_STYLE": None if catalog.s3_path_style is None else str(catalog.s3_path_style),
        }.items():
            if value is not None:
                environ[key] = value
        for setting, name in catalog.secrets.items():
            environ[f"INGEST_{setting.upper()}"] = self.platform_secrets.get(name)
        return LakeLocation.resolve(project_dir(self.environ), environ=environ)

    def extractor_env(self) -> dict[str, str]:
        env = {_env_name(self.plugin, k): _env_value(v) for k, v in self.job.config.items()}
        for setting, value in self.secrets.resolve(self.job.secrets).items():
            env[_env_name(self.plugin, setting)] = value
        if self.window is not None:
            start_setting = self.job.incremental.start_setting or "start_date"
            env[_env_name(self.plugin, start_setting)] = self.window[0]
            if self.job.incremental.end_setting:
                env[_env_name(self.plugin, self.job.incremental.end_setting)] = self.window[1]
        if self.job.streams:
            select = [f"{stream}.*" for stream in self.job.streams]
            env[f"{_env_name(self.plugin, '')}_SELECT"] = json.dumps(select)
        return env

    def loader_env(self, lake: LakeLocation) -> dict[str, str]:
        target = self.job.target
        contracts = self.job.contracts
        if contracts is None:
            contracts = self.connector.default_contracts
        settings: dict[str, Any] = {
            "tenant": self.job.tenant,
            "namespace": self.job.namespace,
            "pipeline_id": self.pipeline,
            "run_id": self.run_id,
            "state_dir": str(self.state_dir),
            "catalog_type": lake.catalog_type,
            "catalog_uri": lake.catalog_uri,
            "warehouse": lake.warehouse,
            "source_type": self.connector.id,
            "contracts": [str(self.paths.assets / c) for c in contracts],
            "write_mode": target.write_mode,
            "publish": target.publish,
            "contract_mode": target.contract_mode,
            "contract_enforcement": target.contract_enforcement,
            "contract_schema_evolution": target.contract_schema_evolution,
            "checkpoint_interval_seconds": target.checkpoint_interval_seconds,
            "batch_max_records": target.batch_max_records,
            "microbatch_seconds": self.job.incremental.microbatch_seconds,
            "table_properties": {**self._tag_properties(), **target.table_properties} or None,
        }
        if lake.is_nessie:
            settings |= {"nessie_uri": lake.nessie_uri, "branch": lake.ref, "nessie_token": lake.nessie_token}
        settings |= {
            "s3_endpoint": lake.io_properties.get("s3.endpoint"),
            "s3_region": lake.io_properties.get("s3.region"),
            "s3_access_key_id": lake.io_properties.get("s3.access-key-id"),
            "s3_secret_access_key": lake.io_properties.get("s3.secret-access-key"),
            "s3_session_token": lake.io_properties.get("s3.session-token"),
        }
        return {_env_name(LOADER, k): _env_value(v) for k, v in settings.items() if v not in (None, [], {})}

    def _tag_properties(self) -> dict[str, str]:
        tags = self.job.tags
        return {
            **{f"governance.{k}": v for k, v in tags.governance.items()},
            **{f"finops.tag.{k}": v for k, v in tags.business.items()},
        }

    def environment(self, lake: LakeLocation, meter_dir: Path, report: Path) -> dict[str, str]:
        """The Meltano process's environment: the platform's own minus anything of other plugins."""
        inherited = {
            k: v
            for k, v in self.environ.items()
            if not k.startswith(("TAP_", "TARGET_", "MELTANO_", "INGEST_"))  # secrets too
        }
        env = {
            **inherited,
            "MELTANO_CLI_DISABLE_VERSION_CHECK": "true",
            "MELTANO_SEND_ANONYMOUS_USAGE_STATS": "false",
            "MELTANO_STATE_BACKEND_URI": f"ingest://{self.state_dir}",
            "INGEST_HTTP_METER_DIR": str(meter_dir),
            "INGEST_RUN_REPORT": str(report),
            **self.extractor_env(),
            **self.loader_env(lake),
        }
        if self.job.incremental.lookback:
            env["INGEST_LOOKBACK"] = self.job.incremental.lookback
        meltano_bin = Path(sys.executable).parent
        env["PATH"] = f"{meltano_bin}{os.pathsep}{env.get('PATH', '')}"
        return env

    # -- the run ---------------------------------------------------------------------------------

    def command(self) -> list[str]:
        return [
            str(Path(sys.executable).parent / "meltano"),
            "run",
            "--no-install",
            "--state-id-suffix",
            self.pipeline,
            self.plugin,
            LOADER,
        ]

    def run(self) -> RunResult:
        started_at, started = _now(), time.monotonic()
        cpu_before = _children_cpu()
        log = RunLog(
            self.log_file,
            tenant=self.job.tenant,
            job=self.job.name,
            run_id=self.run_id,
            redactor=self.redactor,
            console=self.console,
        )
        progress = Progress()
        report: dict[str, Any] = {}
        api_calls: dict[str, int] = {}
        exit_code, error = EXIT_FAILURE, None
        lake: LakeLocation | None = None
        try:
            log.info("run started", extractor=self.connector.id, plugin=self.plugin, attempt=self.attempt)
            for check in self.checks:
                check(self)
            lake = self.lake
            with _scratch() as scratch:
                meter, report_file = scratch / "meter", scratch / "report.json"
                env = self.environment(lake, meter, report_file)
                returncode, output_tail = self._meltano(env, log, progress)
                report = _read_json(report_file)
                api_calls = _meter_counts(meter)
            exit_code, error = _outcome(returncode, report, output_tail)
        except PlatformError as failure:
            exit_code, error = failure.exit_code, {"kind": type(failure).__name__, "message": str(failure)}
            if exit_code not in (EXIT_PARTIAL, EXIT_FAILURE, EXIT_RETRYABLE):
                exit_code = EXIT_FAILURE
            log.error("run refused", error=str(failure))
        metadata = self.metadata(
            started_at=started_at,
            seconds=time.monotonic() - started,
            exit_code=exit_code,
            error=error,
            report=report,
            cpu=_children_cpu() - cpu_before,
            api_calls=api_calls,
            lake=lake,
        )
        self.write_metadata(metadata)
        self._emit_lineage(metadata, log)
        log.info(
            "run finished", status=metadata["status"], exit_code=exit_code, metadata=str(self.metadata_file)
        )
        log.close()
        return RunResult(self.run_id, exit_code, metadata, self.metadata_file, self.log_file)

    def _emit_lineage(self, metadata: Mapping[str, Any], log: RunLog) -> None:
        spec = self.runner.openlineage
        if spec is None:
            return
        from ingestion.lineage import post  # noqa: PLC0415 - only when configured

        key = self.platform_secrets.get(spec.api_key_secret) if spec.api_key_secret else None
        problem = post(metadata, spec, key)
        if problem is None:
            log.info("lineage sent", url=spec.url)
        else:
            log.warning("lineage not sent", problem=problem)

    def _meltano(self, env: Mapping[str, str], log: RunLog, progress: Progress) -> tuple[int, list[str]]:
        """Run Meltano; every line it (and the plugins) print goes through the redacting log."""
        tail: list[str] = []
        lock = threading.Lock()
        show = Console(stderr=True)

        def pump(stream: IO[str], source: str) -> None:
            for line in stream:
                text = line.rstrip("\n")
                log.pipe(source, text)
                with lock:
                    tail.append(self.redactor.text(text))
                    del tail[:-200]
                if progress.feed(text) and self.console:
                    show.print(progress.describe(self.job.id), highlight=False)

        project = project_dir(self.environ)
        # `with`: the pipes are closed when Meltano is done (the orchestrator runs many jobs in one
        # long-lived process).
        with subprocess.Popen(  # noqa: S603 - our own meltano, arguments from validated config
            self.command(),
            cwd=project,
            env=dict(env),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        ) as process:
            assert process.stdout is not None
            assert process.stderr is not None
            readers = [
                threading.Thread(target=pump, args=(process.stdout, "meltano.stdout"), daemon=True),
                threading.Thread(target=pump, args=(process.stderr, "meltano"), daemon=True),
            ]
            for reader in readers:
                reader.start()
            returncode = process.wait()
            for reader in readers:
                reader.join()
        return returncode, tail

    # -- run metadata ----------------------------------------------------------------------------

    def metadata(
        self,
        *,
        started_at: str,
        seconds: float,
        exit_code: int,
        error: Mapping[str, str] | None,
        report: Mapping[str, Any],
        cpu: float,
        api_calls: Mapping[str, int],
        lake: LakeLocation | None,
    ) -> dict[str, Any]:
        streams = {
            name: {
                "table": info.get("table", ""),
                "rows_read": int(info.get("records", 0)),
                "rows_written": int(info.get("rows_committed", 0)),
                "rows_rejected": int(info.get("rejected", 0)),
                "rows_replaced": int(info.get("rows_replaced", 0)),
                "files_written": int(info.get("files", 0)),
                "bytes_written": int(info.get("bytes", 0)),
                "snapshot_ids": [int(s) for s in info.get("snapshots") or []],
                "contract": info.get("contract"),
                "contract_checks": _contract_checks(info),
            }
            for name, info in (report.get("streams") or {}).items()
        }
        totals = {
            key: sum(s[key] for s in streams.values())
            for key in ("rows_read", "rows_written", "rows_rejected", "files_written", "bytes_written")
        }
        totals["commits"] = int(report.get("commits") or 0)
        status = {EXIT_SUCCESS: "success", EXIT_PARTIAL: "partial"}.get(exit_code, "failed")
        governance, business = self._tags(streams)
        document: dict[str, Any] = {
            "schema_version": 1,
            "run_id": self.run_id,
            "job_id": self.job.id,
            "tenant": self.job.tenant,
            "job": self.job.name,
            "extractor": self.connector.id,
            "plugin": self.plugin,
            "attempt": self.attempt,
            "window": {"start": self.window[0], "end": self.window[1]} if self.window else None,
            "started_at": started_at,
            "ended_at": _now(),
            "duration_sec": round(seconds, 3),
            "status": status,
            "exit_code": exit_code,
            "retryable": exit_code == EXIT_RETRYABLE,
            "error": dict(error) if error else None,
            "streams": streams,
            "totals": totals,
            "catalog": {
                "type": (lake.catalog_type if lake else self.runner.catalog.type),
                "commit_id": report.get("last_commit_id"),
                "branch": report.get("branch") or (lake.ref if lake and lake.is_nessie else None),
                "namespace": f"{self.job.tenant}.{self.job.namespace}",
                "warehouse": lake.warehouse if lake else "",
            },
            "cpu_time_sec": round(cpu, 3),
            "api_calls": (
                {self.plugin: {"requests": sum(api_calls.values()), "by_host": dict(api_calls)}}
                if self.connector.category.value == "saas_api" or api_calls
                else {}
            ),
            "tags": {"governance": governance, "business": business},
            "lineage": self._lineage(streams, lake),
        }
        redacted: dict[str, Any] = self.redactor.obj(document)
        return redacted

    def _tags(self, streams: Mapping[str, Any]) -> tuple[dict[str, str], dict[str, str]]:
        """The contracts' governance and business (FinOps) tags, with the job's overrides on top."""
        from target_iceberg_nessie.contracts import ContractSet  # noqa: PLC0415 - only for metadata

        contracts = self.job.contracts if self.job.contracts is not None else self.connector.default_contracts
        governance: dict[str, str] = {}
        business: dict[str, str] = {}
        if contracts:
            found = ContractSet.load([self.paths.assets / c for c in contracts])
            for name, contract in sorted(found.objects.items()):
                if streams and name not in streams:
                    continue
                for key, value in contract.table_properties().items():
                    if key.startswith("finops."):
                        business[key.removeprefix("finops.")] = value
                    elif key.startswith(("governance.", "classification.levels")):
                        governance[key.removeprefix("governance.")] = value
        governance.update(self.job.tags.governance)
        business.update({f"tag.{k}": v for k, v in self.job.tags.business.items()})
        return governance, business

    def _lineage(self, streams: Mapping[str, Any], lake: LakeLocation | None) -> dict[str, Any]:
        source = f"{self.connector.id}://{self.job.tenant}/{self.job.name}"
        inputs = [{"namespace": source, "name": stream} for stream in sorted(streams or self.job.streams)]
        warehouse = lake.warehouse if lake else ""
        outputs = [
            {
                "namespace": f"iceberg://{warehouse}",
                "name": info["table"],
                "facets": {
                    "snapshot": {"snapshotId": info["snapshot_ids"][-1] if info["snapshot_ids"] else None}
                },
            }
            for info in streams.values()
            if info["table"]
        ]
        return {"inputs": inputs, "outputs": outputs}

    def write_metadata(self, metadata: Mapping[str, Any]) -> None:
        validate(metadata, RUN_METADATA_SCHEMA, self.metadata_file)
        self.metadata_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.metadata_file.with_name(f".{self.metadata_file.name}.tmp")
        tmp.write_text(json.dumps(metadata, indent=2) + "\n", encoding="utf-8")
        tmp.replace(self.metadata_file)


def project_dir(environ: Mapping[str, str]) -> Path:
    """The Meltano project `ingest run` runs in: $INGEST_MELTANO_PROJECT, else this checkout."""
    return Path(environ.get(PROJECT_ENV) or SOURCE_ROOT).expanduser().resolve()


@contextmanager
def _scratch() -> Iterator[Path]:
    folder = Path(tempfile.mkdtemp(prefix="ingest-run-"))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _children_cpu() -> float:
    """User + system seconds of every finished child process tree (Meltano waits for its plugins)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _read_json(file: Path) -> dict[str, Any]:
    try:
        loaded = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}
    return loaded if isinstance(loaded, dict) else {}


def _meter_counts(folder: Path) -> dict[str, int]:
    """Requests per host from the HTTP meter's per-process files (packages/ingest-http-meter)."""
    total: dict[str, int] = {}
    for file in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        for host, n in _read_json(file).get("by_host", {}).items():
            total[str(host)] = total.get(str(host), 0) + int(n)
    return total


def _contract_checks(info: Mapping[str, Any]) -> dict[str, Any] | None:
    """What the stream's contract checks found: rows per failed check (no row values: those stay in
    the run log), run-level rules that failed, and what the enforcement level did with the rows."""
    if not info.get("contract"):
        return None
    violations = info.get("violations") or {}
    return {
        "enforcement": str(info.get("enforcement") or "fail"),
        "failed_checks": {
            str(check): int(found.get("rows", 0)) for check, found in (violations.get("checks") or {}).items()
        },
        "failed_run_rules": [str(rule) for rule in violations.get("run_level") or []],
        "quarantined": int(violations.get("quarantined") or 0),
        "dropped": int(violations.get("dropped") or 0),
    }


def _outcome(
    returncode: int, report: Mapping[str, Any], tail: Sequence[str]
) -> tuple[int, dict[str, str] | None]:
    """The run's exit code: the loader's report says what it knew; a tap's failure is retryable when
    its output says the source was unreachable or rate limited."""
    if report.get("status") == "failed":
        code = int(report.get("exit_code") or EXIT_FAILURE)
        return (code if code in (EXIT_FAILURE, EXIT_RETRYABLE) else EXIT_FAILURE), {
            "kind": str(report.get("error") or "LoaderError"),
            "message": str(report.get("message") or ""),
        }
    if returncode == 0:
        return (EXIT_PARTIAL if report.get("status") == "partial" else EXIT_SUCCESS), None
    if report.get("status") == "partial":
        return EXIT_PARTIAL, None
    text = "\n".join(tail)
    message = next((line for line in reversed(tail) if "error" in line.lower()), tail[-1] if tail else "")
    kind = "SourceUnavailable" if RETRYABLE_OUTPUT.search(text) else "ExtractorFailed"
    code = EXIT_RETRYABLE if kind == "SourceUnavailable" else EXIT_FAILURE
    return code, {"kind": kind, "message": message[-2000:]}


def preflight_checks(runner: RunnerConfig) -> list[Callable[[JobRun], None]]:
    """What `ingest run` and the orchestrator check before Meltano starts: the SaaS refusals (saas
    mode), then the infrastructure: the catalog answers and the warehouse takes a write (the source
    is checked by the run itself)."""
    from ingestion.inspect import infrastructure  # noqa: PLC0415 - inspect runs jobs itself

    found: list[Callable[[JobRun], None]] = []
    if runner.deployment == "saas":
        from ingestion.saas import refuse_unless_allowed  # noqa: PLC0415 - saas mode only

        def saas(run: JobRun) -> None:
            refuse_unless_allowed(run.connector, {**run.job.config, **run.secrets.resolve(run.job.secrets)})

        found.append(saas)
    found.append(infrastructure)
    return found


def run_job(
    job: JobSpec,
    paths: PlatformPaths,
    runner: RunnerConfig,
    *,
    console: bool = False,
    window: tuple[str, str] | None = None,
    run_id: str | None = None,
    attempt: int = 1,
    environ: Mapping[str, str] | None = None,
    checks: Sequence[Callable[[JobRun], None]] = (),
    pipeline_id: str | None = None,
) -> RunResult:
    """Run `job` once; `checks` run before Meltano starts (SaaS refusals, infrastructure)."""
    run = JobRun(
        job,
        paths,
        runner,
        run_id=run_id or new_run_id(),
        attempt=attempt,
        window=window,
        console=console,
        environ=dict(os.environ if environ is None else environ),
        checks=checks,
        pipeline_id=pipeline_id,
    )
    return run.run()
