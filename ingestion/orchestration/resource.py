"""The platform as a Dagster resource: where its folders are, and the one-shot runner.

Every asset run goes through `ingestion.runner.run_job`, the function `ingest run <job>` calls, with
the same pre-flight checks: one code path for the CLI, the image's one-shot mode and Dagster.
"""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg
from pydantic import Field

from ingestion.jobs import JobSpec, PlatformPaths, RunnerConfig, find_job, load_runner
from ingestion.runner import PROJECT_ENV, RunResult, preflight_checks, run_job


class IngestPlatform(dg.ConfigurableResource):  # type: ignore[type-arg]  # it is its own value
    """The platform's folders (unset: INGEST_*_DIR, the image's volumes, or the checkout's folders,
    as for `ingest run`) and the Meltano project the jobs run in."""

    configs_dir: str | None = Field(default=None, description="configs/ (runner.yaml, jobs/)")
    specs_dir: str | None = Field(default=None, description="Contracts (assets/) and the registry")
    secrets_dir: str | None = Field(default=None, description="Per-tenant secrets")
    state_dir: str | None = Field(default=None, description="Per-tenant state")
    logs_dir: str | None = Field(default=None, description="Per-tenant run logs and run metadata")
    meltano_project: str | None = Field(default=None, description="The Meltano project to run in")

    def paths(self) -> PlatformPaths:
        def given(value: str | None) -> Path | None:
            return Path(value) if value else None

        return PlatformPaths.resolve(
            configs=given(self.configs_dir),
            specs=given(self.specs_dir),
            secrets=given(self.secrets_dir),
            state=given(self.state_dir),
            logs=given(self.logs_dir),
        )

    def runner(self) -> RunnerConfig:
        return load_runner(self.paths())

    def job(self, job_id: str) -> JobSpec:
        return find_job(self.paths(), job_id)

    def run(self, job_id: str, *, attempt: int) -> RunResult:
        """One run of the job, as `ingest run <job>` does it (the spec is read again: a run uses the
        file as it is when it starts)."""
        paths = self.paths()
        runner = load_runner(paths)
        environ = dict(os.environ)
        if self.meltano_project:
            environ[PROJECT_ENV] = self.meltano_project
        return run_job(
            find_job(paths, job_id),
            paths,
            runner,
            attempt=attempt,
            environ=environ,
            checks=preflight_checks(runner),
        )
