"""A plain Meltano project's own `jobs:` and `schedules:` as Dagster jobs and schedules.

Each Meltano job becomes a Dagster job of one op that runs `meltano run <job>` in the project; each
job-based schedule (`job:` + `interval:`) becomes a Dagster schedule of that job, and an old-style
schedule (`extractor:` + `loader:`) a job of its own that runs the pair. Their output goes to the
step's captured logs (the run's "stdout/stderr" in the UI). The platform's own jobs (configs/jobs)
are the ones with one asset per table; these are whole-project tasks, as Meltano defines them.
"""

# No `from __future__ import annotations`: Dagster reads the op functions' annotations at runtime.

import logging
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import dagster as dg
from dagster import OpExecutionContext

from ingestion.cadence import cron_of
from ingestion.orchestration.translator import dagster_name, project_documents

log = logging.getLogger("ingestion.orchestration")

MELTANO_JOB_TAG: Final = "meltano/job"
_NOT_SCHEDULED: Final = {"@once", "@manual", "@none", ""}


@dataclass(frozen=True)
class MeltanoTask:
    """What one Dagster job of the project runs: `meltano run <args>`."""

    name: str  # the Meltano job's (or old-style schedule's) name
    args: tuple[str, ...]
    description: str


def meltano_tasks(project: Path) -> tuple[list[MeltanoTask], list[tuple[str, str, str]]]:
    """The project's jobs, and its schedules as (schedule name, task name, cron)."""
    tasks: dict[str, MeltanoTask] = {}
    schedules: list[tuple[str, str, str]] = []
    documents = project_documents(project)
    for document in documents:
        for job in document.get("jobs") or []:
            if isinstance(job, Mapping) and job.get("name"):
                name = str(job["name"])
                steps = " ; ".join(_task_text(t) for t in job.get("tasks") or [])
                tasks[name] = MeltanoTask(name, (name,), f"`meltano run {name}`: {steps}")
    for document in documents:
        for entry in document.get("schedules") or []:
            if not isinstance(entry, Mapping) or not entry.get("name"):
                continue
            interval = str(entry.get("interval") or "").strip()
            if entry.get("job"):
                target = str(entry["job"])
            elif entry.get("extractor") and entry.get("loader"):
                target = str(entry["name"])
                pair = (str(entry["extractor"]), str(entry["loader"]))
                tasks[target] = MeltanoTask(target, pair, f"`meltano run {' '.join(pair)}`")
            else:
                continue
            if target in tasks and interval not in _NOT_SCHEDULED:
                schedules.append((str(entry["name"]), target, cron_of(interval, None)))
    return list(tasks.values()), schedules


def _task_text(task: Any) -> str:
    return " ".join(str(t) for t in task) if isinstance(task, list) else str(task)


def meltano_definitions(project: Path) -> tuple[list[dg.JobDefinition], list[dg.ScheduleDefinition]]:
    tasks, schedules = meltano_tasks(project)
    jobs = {task.name: _job(project, task) for task in tasks}
    found = []
    for name, target, cron in schedules:
        try:
            found.append(
                dg.ScheduleDefinition(
                    name=f"meltano__{dagster_name(name)}",
                    job=jobs[target],
                    cron_schedule=cron,
                    default_status=dg.DefaultScheduleStatus.RUNNING,
                    description=f"meltano.yml schedule {name!r}",
                )
            )
        except dg.DagsterInvalidDefinitionError as error:
            log.warning("meltano.yml schedule %r left out: %s; fix its interval", name, error)
    return list(jobs.values()), found


def _job(project: Path, task: MeltanoTask) -> dg.JobDefinition:
    @dg.op(name=f"meltano_run_{dagster_name(task.name)}", description=task.description)
    def _op(context: OpExecutionContext) -> None:
        run_meltano(context, project, task.args)

    @dg.job(
        name=f"meltano__{dagster_name(task.name)}",
        description=task.description,
        tags={MELTANO_JOB_TAG: dagster_name(task.name)},
    )
    def _pipeline() -> None:
        _op()

    return _pipeline


def run_meltano(context: dg.OpExecutionContext, project: Path, args: Sequence[str]) -> None:
    """`meltano run <args>` in the project; its output goes to the step's captured stdout/stderr."""
    meltano = Path(sys.executable).parent / "meltano"
    # --no-install: plugins are installed ahead (`meltano install`, the image build); a run never
    # reaches for the network to (re)build a venv.
    command = [str(meltano if meltano.exists() else "meltano"), "run", "--no-install", *args]
    env = {**os.environ, "MELTANO_CLI_DISABLE_VERSION_CHECK": "true"}
    context.log.info(f"$ meltano run {' '.join(args)} (in {project})")
    done = subprocess.run(command, cwd=project, env=env, check=False)  # noqa: S603 - fixed program
    if done.returncode != 0:
        raise dg.Failure(
            description=(
                f"`meltano run {' '.join(args)}` exited with {done.returncode}; its output is in this "
                "step's stdout/stderr logs"
            ),
            metadata={"exit_code": done.returncode, "project": dg.MetadataValue.path(str(project))},
        )
