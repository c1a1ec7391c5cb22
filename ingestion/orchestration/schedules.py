"""Schedules of the platform's jobs: runner.yaml's `schedules` (or a job's own `schedule` when
runner.yaml names none for it), as Dagster schedules with cron, timezone, enabled flag and tags."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Final

import dagster as dg

from ingestion.errors import ConfigError
from ingestion.jobs import JobSpec, RunnerConfig, RunnerSchedule
from ingestion.lookback import parse_lookback
from ingestion.orchestration.translator import dagster_name, tag_value

# Meltano's (and cron's) nicknames, spelled out: Dagster's cron parser wants five fields.
CRON_NICKNAMES: Final = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
}
_MINUTE: Final = 60
_HOUR: Final = 3600
_DAY: Final = 86400


def interval_cron(interval: str) -> str:
    """An `interval` (15m, 1h, 6h, 1d, 1w) as the cron expression that runs at that pace: a number of
    minutes that divides an hour, hours that divide a day, one day or one week."""
    seconds = int(parse_lookback(interval) / timedelta(seconds=1))
    minutes, hours = seconds // _MINUTE, seconds // _HOUR
    if seconds % _MINUTE == 0 and 0 < minutes < _MINUTE and _MINUTE % minutes == 0:
        return "* * * * *" if minutes == 1 else f"*/{minutes} * * * *"
    if seconds % _HOUR == 0 and 0 < hours < 24 and 24 % hours == 0:  # noqa: PLR2004 - hours a day
        return "0 * * * *" if hours == 1 else f"0 */{hours} * * *"
    if seconds == _DAY:
        return "0 0 * * *"
    if seconds == 7 * _DAY:
        return "0 0 * * 0"
    msg = (
        f"interval {interval!r} does not divide an hour or a day evenly; use a cron expression "
        "(`cron: ...`) or an interval such as 15m, 1h, 6h, 1d or 1w"
    )
    raise ConfigError(msg)


def cron_of(cron: str | None, interval: str | None) -> str:
    if cron:
        return CRON_NICKNAMES.get(cron.strip(), cron.strip())
    if interval:
        return interval_cron(interval)
    msg = "a schedule needs `cron` or `interval`"
    raise ConfigError(msg)


def platform_schedules(
    runner: RunnerConfig,
    jobs: Mapping[str, JobSpec],
    targets: Mapping[str, dg.UnresolvedAssetJobDefinition | dg.JobDefinition],
) -> list[dg.ScheduleDefinition]:
    """One Dagster schedule per runner.yaml entry (and per job whose own `schedule` runner.yaml does
    not replace). A disabled schedule exists, stopped, so the UI can turn it on."""
    entries: list[tuple[str, RunnerSchedule]] = [(s.job, s) for s in runner.schedules]
    named = {job for job, _ in entries}
    for job_id, job in sorted(jobs.items()):
        if job.schedule is not None and job_id not in named:
            own = job.schedule
            entries.append(
                (
                    job_id,
                    RunnerSchedule(
                        job=job_id,
                        cron=own.cron,
                        interval=own.interval,
                        timezone=own.timezone,
                        enabled=own.enabled,
                        tags=own.tags,
                    ),
                )
            )
    schedules = []
    used: dict[str, int] = {}
    for job_id, entry in entries:
        target = targets.get(job_id)
        if target is None:  # a job left out for its problems (logged when the definitions loaded)
            continue
        job = jobs[job_id]
        base = f"{dagster_name(job.tenant)}__{dagster_name(job.name)}_schedule"
        used[base] = used.get(base, 0) + 1
        name = base if used[base] == 1 else f"{base}_{used[base]}"
        schedules.append(
            dg.ScheduleDefinition(
                name=name,
                job=target,
                cron_schedule=cron_of(entry.cron, entry.interval),
                execution_timezone=entry.timezone,
                default_status=(
                    dg.DefaultScheduleStatus.RUNNING if entry.enabled else dg.DefaultScheduleStatus.STOPPED
                ),
                tags={tag_value(k): tag_value(v) for k, v in entry.tags.items()},
                description=f"{job_id}: {entry.cron or 'every ' + str(entry.interval)} ({entry.timezone})",
            )
        )
    return schedules
