"""One multi-asset per job: one asset per table, one run of the job materializes them all.

The op runs the job once through the platform runner and turns the run metadata into Dagster events:
a materialization per table the run committed (rows, snapshot, commit, branch, bytes, the run's CPU
seconds and API calls), a contract check result per table with a contract, and for a failed run a
Failure that says whether Dagster retries it. Retries follow the run's exit code: 75 (the source,
the catalog or the object store unreachable, rate limits, commit conflicts) is retried with
exponential backoff up to the job's (or runner.yaml's) `max_attempts`; contract failures and
configuration errors are not, because running them again cannot succeed.
"""

# No `from __future__ import annotations`: Dagster reads the op functions' annotations at runtime.

from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Final

import dagster as dg
from dagster import AssetExecutionContext, OpExecutionContext

from ingestion.jobs import JobSpec, RetryPolicy, RunnerConfig
from ingestion.orchestration.resource import IngestPlatform
from ingestion.orchestration.translator import IngestTranslator, JobTable, dagster_name
from ingestion.registry import Connector
from ingestion.runner import EXIT_PARTIAL, EXIT_RETRYABLE, EXIT_SUCCESS, RunResult

TENANT_TAG: Final = "ingest/tenant"
JOB_TAG: Final = "ingest/job"
POOL_PREFIX: Final = "ingest-tenant-"  # one concurrency pool per tenant (dagster.yaml: the limit)


def tenant_pool(tenant: str) -> str:
    return f"{POOL_PREFIX}{dagster_name(tenant)}"


def retry_policy(job: JobSpec, runner: RunnerConfig) -> RetryPolicy:
    """The job's `retries` over runner.yaml's `retry_policy`, setting by setting."""
    return RetryPolicy(**{**runner.retry_policy.model_dump(), **job.retries.model_dump(exclude_none=True)})


def backoff_seconds(policy: RetryPolicy, attempt: int) -> float:
    """The wait after failed attempt `attempt` (1-based): doubling from the initial, capped."""
    return float(min(policy.initial_backoff_seconds * 2 ** (attempt - 1), policy.max_backoff_seconds))


def build_job_assets(
    job: JobSpec,
    connector: Connector,
    tables: Sequence[JobTable],
    runner: RunnerConfig,
    translator: IngestTranslator,
) -> dg.AssetsDefinition:
    """The multi-asset of `job` (at least one table: see `job_tables`)."""
    specs = [translator.asset_spec(job, connector, table) for table in tables]
    checks = [c for c in (translator.check_spec(job, table) for table in tables) if c is not None]
    keys = {table.stream: spec.key for table, spec in zip(tables, specs, strict=True)}
    checked = {c.asset_key for c in checks}
    policy = retry_policy(job, runner)
    job_id = job.id

    @dg.multi_asset(
        name=dagster_name(f"{job.tenant}__{job.name}_run"),
        specs=specs,
        check_specs=checks,
        can_subset=False,  # one Meltano run writes every table of the job in one commit
        pool=tenant_pool(job.tenant),
        op_tags={TENANT_TAG: job.tenant, JOB_TAG: job_id},
        description=f"`ingest run {job_id}`: {connector.label} → Iceberg, one commit per checkpoint.",
    )
    def _run(context: AssetExecutionContext, ingest: IngestPlatform) -> Iterator[Any]:
        yield from execute(context, ingest, job_id, policy, keys, checked)

    return _run


def build_job_op(
    job: JobSpec, connector: Connector, runner: RunnerConfig, *, name: str, tags: Mapping[str, str]
) -> dg.JobDefinition:
    """The job of a job whose tables are unknown until it runs: one op, whose run records each table
    it wrote as a materialization of `<tenant>/<namespace>/<table>`. The next load of the
    definitions finds them in the run metadata and builds the multi-asset instead."""
    policy = retry_policy(job, runner)
    job_id = job.id

    @dg.op(
        name=f"{name}_run",
        out={},  # events only: its tables are not assets of this job
        pool=tenant_pool(job.tenant),
        tags={TENANT_TAG: job.tenant, JOB_TAG: job_id},
        description=f"`ingest run {job_id}`: {connector.label} → Iceberg (tables found at run time).",
    )
    def _run(context: OpExecutionContext, ingest: IngestPlatform) -> Iterator[Any]:
        yield from execute(context, ingest, job_id, policy, {}, set())

    @dg.job(name=name, tags=dict(tags), description=f"`ingest run {job_id}`")
    def _job() -> None:
        _run()

    return _job


def execute(  # noqa: PLR0917 - the op bodies pass what they closed over, in order
    context: dg.OpExecutionContext | dg.AssetExecutionContext,
    ingest: IngestPlatform,
    job_id: str,
    policy: RetryPolicy,
    keys: Mapping[str, dg.AssetKey],
    checked: set[dg.AssetKey],
) -> Iterator[Any]:
    """One attempt: run the job, report what it did, then succeed, retry or fail by its exit code."""
    attempt = context.retry_number + 1
    context.log.info(f"running {job_id} (attempt {attempt} of {policy.max_attempts})")
    result = ingest.run(job_id, attempt=attempt)
    yield from run_events(context, result, keys, checked)
    _raise_for(result, policy, attempt, context)


def run_events(
    context: dg.OpExecutionContext | dg.AssetExecutionContext,
    result: RunResult,
    keys: Mapping[str, dg.AssetKey],
    checked: set[dg.AssetKey],
) -> Iterator[Any]:
    """Materializations and check results of a finished run, failed runs included (a checkpoint a
    failed run committed before it stopped is in the table, and the UI shows it)."""
    metadata = result.metadata
    run_level = _run_metadata(result)
    for stream, info in sorted(metadata["streams"].items()):
        committed = bool(info["snapshot_ids"]) or info["rows_written"] > 0
        key = keys.get(stream)
        table_metadata = {**_table_metadata(info, metadata), **run_level}
        if key is None:
            if committed:
                # Unknown before the run (a quarantine table, a discovered stream): its own key.
                tenant, namespace, table = str(info["table"]).split(".", 2)
                context.log_event(
                    dg.AssetMaterialization(
                        asset_key=dg.AssetKey([tenant, namespace, table]), metadata=table_metadata
                    )
                )
            continue
        check = _check_result(key, info, metadata) if key in checked else None
        if committed:
            yield dg.MaterializeResult(
                asset_key=key, metadata=table_metadata, check_results=[check] if check else None
            )
        elif check is not None:
            yield check


def _raise_for(
    result: RunResult,
    policy: RetryPolicy,
    attempt: int,
    context: dg.OpExecutionContext | dg.AssetExecutionContext,
) -> None:
    code = result.exit_code
    if code in (EXIT_SUCCESS, EXIT_PARTIAL):
        if code == EXIT_PARTIAL:
            context.log.warning(
                f"rows broke their contracts and went to quarantine; see the contract checks and "
                f"{result.metadata_file}"
            )
        return
    error = result.metadata.get("error") or {}
    summary = f"{error.get('kind', 'Failed')}: {error.get('message', '')}".strip()
    facts: dict[str, Any] = {
        "exit_code": code,
        "ingest_run_id": result.run_id,
        "run_metadata": dg.MetadataValue.path(str(result.metadata_file)),
        "run_log": dg.MetadataValue.path(str(result.log_file)),
    }
    if code == EXIT_RETRYABLE and attempt < policy.max_attempts:
        wait = backoff_seconds(policy, attempt)
        context.log.warning(
            f"attempt {attempt} of {policy.max_attempts} failed and can be retried "
            f"(exit {code}); next attempt in {wait:g}s. {summary}"
        )
        raise dg.RetryRequested(max_retries=policy.max_attempts - 1, seconds_to_wait=wait) from None
    why = (
        f"gave up after {attempt} attempt(s)"
        if code == EXIT_RETRYABLE
        else "not retried: running it again cannot succeed until the cause is fixed"
    )
    raise dg.Failure(description=f"{summary} (exit {code}; {why})", metadata=facts, allow_retries=False)


def _run_metadata(result: RunResult) -> dict[str, Any]:
    """What belongs to the whole run; every table of the run carries it."""
    metadata = result.metadata
    calls = metadata.get("api_calls") or {}
    return {
        "ingest_run_id": result.run_id,
        "attempt": int(metadata.get("attempt", 1)),
        "cpu_time_sec": float(metadata.get("cpu_time_sec", 0.0)),
        "duration_sec": float(metadata.get("duration_sec", 0.0)),
        "api_calls": int(sum(int(c.get("requests", 0)) for c in calls.values())),
        "api_calls_by_host": dg.MetadataValue.json(
            {plugin: c.get("by_host", {}) for plugin, c in calls.items()}
        ),
        "run_metadata": dg.MetadataValue.path(str(result.metadata_file)),
        "run_log": dg.MetadataValue.path(str(result.log_file)),
    }


def _table_metadata(info: Mapping[str, Any], metadata: Mapping[str, Any]) -> dict[str, Any]:
    catalog = metadata.get("catalog") or {}
    snapshots = info.get("snapshot_ids") or []
    found: dict[str, Any] = {
        "dagster/table_name": str(info["table"]),
        "rows_written": int(info["rows_written"]),
        "rows_rejected": int(info["rows_rejected"]),
        "rows_replaced": int(info.get("rows_replaced", 0)),
        "rows_read": int(info["rows_read"]),
        "files_written": int(info["files_written"]),
        "bytes_written": int(info["bytes_written"]),
        "snapshot_id": str(snapshots[-1]) if snapshots else "",
        "snapshots": len(snapshots),
        "commit": str(catalog.get("commit_id") or ""),
        "branch": str(catalog.get("branch") or ""),
        "catalog": str(catalog.get("type") or ""),
        "warehouse": dg.MetadataValue.path(str(catalog.get("warehouse") or "")),
    }
    if info.get("contract"):
        found["contract"] = str(info["contract"])
    tags = metadata.get("tags") or {}
    for group in ("governance", "business"):
        if tags.get(group):
            found[f"tags_{group}"] = dg.MetadataValue.json(tags[group])
    return found


def _check_result(
    key: dg.AssetKey, info: Mapping[str, Any], metadata: Mapping[str, Any]
) -> dg.AssetCheckResult:
    """Pass: no row broke the contract. Fail (ERROR): rows broke it at the `fail` level, so the run
    stopped and none of them committed. Fail (WARN): rows went to quarantine or were dropped."""
    found = info.get("contract_checks") or {}
    failed = dict(found.get("failed_checks") or {})
    rules = list(found.get("failed_run_rules") or [])
    enforcement = str(found.get("enforcement") or "fail")
    passed = not failed and not rules
    severity = dg.AssetCheckSeverity.ERROR if enforcement == "fail" else dg.AssetCheckSeverity.WARN
    error = metadata.get("error") or {}
    return dg.AssetCheckResult(
        asset_key=key,
        check_name="contract",
        passed=passed,
        severity=severity,
        description=(
            f"{info['rows_read']} row(s) checked against {info.get('contract')}"
            if passed
            else f"{sum(failed.values())} row(s) broke {info.get('contract')} ({enforcement})"
        ),
        metadata={
            "contract": str(info.get("contract") or ""),
            "enforcement": enforcement,
            "rows_checked": int(info["rows_read"]),
            "failed_checks": dg.MetadataValue.json(failed),
            "failed_run_rules": dg.MetadataValue.json(rules),
            "quarantined": int(found.get("quarantined", 0)),
            "dropped": int(found.get("dropped", 0)),
            **({"run_error": str(error.get("kind"))} if error else {}),
        },
    )
