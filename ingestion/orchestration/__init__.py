"""Dagster orchestration of the platform's jobs (the default, orchestrated mode).

`build_definitions()` reads configs/runner.yaml and every job spec and returns one Definitions
object: per job a multi-asset with one asset per Iceberg table (`<tenant>/<namespace>/<table>`,
grouped by tenant), a Dagster job and its schedule; contract checks as asset checks; retries from
exit codes; one concurrency pool per tenant. The Meltano project's own jobs and schedules are there
too. `ingestion.orchestration.definitions` holds the loaded object for `dagster dev -m ...` and for
`ingest serve`.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import dagster as dg

from ingestion.errors import PlatformError
from ingestion.jobs import PlatformPaths, validate_tree
from ingestion.orchestration.assets import JOB_TAG, TENANT_TAG, build_job_assets, build_job_op
from ingestion.orchestration.meltano_project import meltano_definitions
from ingestion.orchestration.resource import IngestPlatform
from ingestion.orchestration.schedules import platform_schedules
from ingestion.orchestration.translator import IngestTranslator, dagster_name, job_tables
from ingestion.registry import load_registry
from ingestion.runner import project_dir
from target_iceberg_nessie.errors import TargetError

__all__ = ["IngestPlatform", "IngestTranslator", "build_definitions"]

log = logging.getLogger("ingestion.orchestration")


def build_definitions(
    paths: PlatformPaths | None = None,
    *,
    project: Path | None = None,
    translator: IngestTranslator | None = None,
) -> dg.Definitions:
    """Everything Dagster shows and runs, from the platform's folders (default: as `ingest run`
    finds them) and the Meltano project (default: $INGEST_MELTANO_PROJECT, else this checkout).

    A job with problems is left out, with each problem logged (file, path, fix): one tenant's broken
    file must not stop every other tenant's schedules. `ingest validate` lists the same problems."""
    paths = paths or PlatformPaths.resolve()
    project = project or project_dir(os.environ)
    translator = translator or IngestTranslator()
    tree = validate_tree(paths)
    for error in tree.errors:
        log.warning("left out of the orchestrator: %s", error)
    registry = load_registry(paths.registry_file)
    assets: list[dg.AssetsDefinition] = []
    jobs: list[dg.UnresolvedAssetJobDefinition | dg.JobDefinition] = []
    targets: dict[str, dg.UnresolvedAssetJobDefinition | dg.JobDefinition] = {}
    owners: dict[str, str] = {}  # table → the job whose asset it is (the first by id)
    for job_id, job in sorted(tree.jobs.items()):
        connector = registry.connector(job.extractor)
        tags = {TENANT_TAG: job.tenant, JOB_TAG: job_id}
        name = f"{dagster_name(job.tenant)}__{dagster_name(job.name)}"
        try:
            found = job_tables(job, connector, paths, project)
        except (PlatformError, TargetError) as error:  # a contract it names cannot be read
            log.warning("left out of the orchestrator: %s: %s", job.source, error)
            continue
        tables = []
        for table in found:
            owner = owners.setdefault(table.identifier, job_id)
            if owner == job_id:
                tables.append(table)
            else:  # its runs still record the table's materializations, under the same key
                log.warning(
                    "table %s of job %s is written by job %s too; it is that job's asset (give one of "
                    "the jobs another target.namespace unless both must write it)",
                    table.identifier,
                    job_id,
                    owner,
                )
        target: dg.UnresolvedAssetJobDefinition | dg.JobDefinition
        if tables:
            multi = build_job_assets(job, connector, tables, tree.runner, translator)
            assets.append(multi)
            target = dg.define_asset_job(
                name, selection=dg.AssetSelection.assets(multi), tags=tags, description=multi.op.description
            )
        else:  # no table known before its first run (a discovering tap without `streams`), or all of
            # them another job's
            target = build_job_op(job, connector, tree.runner, name=name, tags=tags)
        jobs.append(target)
        targets[job_id] = target
    meltano_jobs, meltano_schedules = meltano_definitions(project)
    return dg.Definitions(
        assets=assets,
        jobs=[*jobs, *meltano_jobs],
        schedules=[*platform_schedules(tree.runner, tree.jobs, targets), *meltano_schedules],
        # One step per job: a step subprocess per run (Dagster's default) would only add its start-up
        # time. Retries (RetryRequested) work the same in process.
        executor=dg.in_process_executor,
        resources={
            "ingest": IngestPlatform(
                configs_dir=str(paths.configs),
                specs_dir=str(paths.specs),
                secrets_dir=str(paths.secrets),
                state_dir=str(paths.state),
                logs_dir=str(paths.logs),
                meltano_project=str(project),
            )
        },
    )
