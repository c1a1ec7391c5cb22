"""Schedules of the platform's jobs: runner.yaml's `schedules` (or a job's own `schedule` when
runner.yaml names none for it), as Dagster schedules with cron, timezone, enabled flag and tags."""

from __future__ import annotations

import logging
from collections.abc import Mapping

import dagster as dg

from ingestion.cadence import cron_of
from ingestion.errors import ConfigError
from ingestion.jobs import JobSpec, RunnerConfig, RunnerSchedule
from ingestion.orchestration.translator import dagster_name, tag_value

log = logging.getLogger("ingestion.orchestration")


def platform_schedules(
    runner: RunnerConfig,
    jobs: Mapping[str, JobSpec],
    targets: Mapping[str, dg.UnresolvedAssetJobDefinition | dg.JobDefinition],
) -> list[dg.ScheduleDefinition]:
    """One Dagster schedule per runner.yaml entry (and per job whose own `schedule` runner.yaml does
    not replace). A disabled schedule exists, stopped, so the UI can turn it on."""
    entries = list(runner.schedules)
    named = {entry.job for entry in entries}
    entries += [
        RunnerSchedule(job=job_id, **job.schedule.model_dump())
        for job_id, job in sorted(jobs.items())
        if job.schedule is not None and job_id not in named
    ]
    schedules = []
    used: dict[str, int] = {}
    for entry in entries:
        job_id = entry.job
        target = targets.get(job_id)
        if target is None:  # a job left out for its problems (logged when the definitions loaded)
            continue
        job = jobs[job_id]
        base = f"{dagster_name(job.tenant)}__{dagster_name(job.name)}_schedule"
        used[base] = used.get(base, 0) + 1
        name = base if used[base] == 1 else f"{base}_{used[base]}"
        try:
            schedules.append(
                dg.ScheduleDefinition(
                    name=name,
                    job=target,
                    cron_schedule=cron_of(entry.cron, entry.interval),
                    execution_timezone=entry.timezone,
                    default_status=(
                        dg.DefaultScheduleStatus.RUNNING
                        if entry.enabled
                        else dg.DefaultScheduleStatus.STOPPED
                    ),
                    tags={tag_value(k): tag_value(v) for k, v in entry.tags.items()},
                    description=f"{job_id}: {entry.cron or f'every {entry.interval}'} ({entry.timezone})",
                )
            )
        except (ConfigError, dg.DagsterInvalidDefinitionError) as error:
            # One bad schedule must not take every other schedule (and job) down with it.
            log.warning(
                "schedule of %s left out: %s; fix it in runner.yaml or the job's schedule", job_id, error
            )
    return schedules
