"""`ingest validate`, `ingest run`, `ingest runs` and `ingest state set|reset`: the platform runner's
commands (job specs under configs/, see ingestion/jobs.py and ingestion/runner.py).

Exit codes of `ingest run`: 0 success, 1 partial (rows quarantined), 2 failure, 75 retryable failure;
with --all, the worst of the runs (75 only when every failure was retryable).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any, Final, TypeVar

import click
from rich.table import Table

from ingestion.errors import EXIT_CONFIG, ConfigError
from ingestion.jobs import JobSpec, PlatformPaths, find_job, load_runner, validate_tree
from ingestion.lookback import parse_lookback
from ingestion.output import cell, console, emit_json, json_option

F = TypeVar("F", bound=Callable[..., Any])
_SEVERITY: Final = {0: 0, 1: 1, 75: 2, 2: 3}  # how bad an exit code is, for --all


def platform_options(command: F) -> F:
    """Where configs, specs, secrets, state and logs are (the image's volumes, or the checkout's)."""
    for name, help_text in reversed(
        (
            (
                "configs",
                "runner.yaml and jobs/<tenant>/<job>.yaml. Default: $INGEST_CONFIGS_DIR, else configs/.",
            ),
            ("specs", "Contracts (assets/) and registry/. Default: $INGEST_SPECS_DIR, else the checkout."),
            ("secrets", "Secrets, <tenant>/... Default: $INGEST_SECRETS_DIR, else .secrets/."),
            ("state", "State, <tenant>/... Default: $INGEST_STATE_DIR, else .state/."),
            ("logs", "Logs and run metadata, <tenant>/... Default: $INGEST_LOGS_DIR, else .logs/."),
        )
    ):
        command = click.option(
            f"--{name}-dir",
            name,
            type=click.Path(file_okay=False, path_type=Path),
            default=None,
            help=help_text,
        )(command)
    return command


def _paths(**dirs: Path | None) -> PlatformPaths:
    return PlatformPaths.resolve(
        configs=dirs.get("configs"),
        specs=dirs.get("specs"),
        secrets=dirs.get("secrets"),
        state=dirs.get("state"),
        logs=dirs.get("logs"),
    )


@click.command("validate")
@platform_options
@json_option
def validate_command(as_json: bool, **dirs: Path | None) -> None:
    """Check configs/runner.yaml and every job spec (schema, tenant, registry, contracts, branches)."""
    paths = _paths(**dirs)
    tree = validate_tree(paths)
    problems = [
        {"file": str(error.file), "path": p.path, "message": p.message, "fix": p.fix}
        for error in tree.errors
        for p in error.problems
    ]
    if as_json:
        emit_json({"valid": not problems, "jobs": sorted(tree.jobs), "problems": problems})
    else:
        out = console()
        for job_id in sorted(tree.jobs):
            out.print(f"[green]ok[/green]   {job_id}", highlight=False)
        for problem in problems:
            where = f"{problem['file']}: at {problem['path']}"
            out.print(cell(f"error {where}: {problem['message']}; fix: {problem['fix']}"))
        out.print(f"{len(tree.jobs)} job(s) valid, {len(problems)} problem(s)")
    if problems:
        raise SystemExit(EXIT_CONFIG)


def _windows(start: str, end: str, window: str) -> list[tuple[str, str]]:
    """[start, end) split into consecutive windows of `window` (ISO dates or date-times)."""
    size = parse_lookback(window)
    if size <= timedelta(0):
        msg = f"--window {window!r} must be longer than zero"
        raise ConfigError(msg)
    first, last = _instant(start, "--from"), _instant(end, "--to")
    if last <= first:
        msg = f"--to {end!r} must be after --from {start!r}"
        raise ConfigError(msg)
    found = []
    cursor = first
    while cursor < last:
        upper = min(cursor + size, last)
        found.append((_iso(cursor), _iso(upper)))
        cursor = upper
    return found


def _instant(text: str, option: str) -> datetime:
    try:
        if len(text) == len("2026-01-01"):
            return datetime.combine(date.fromisoformat(text), datetime.min.time())
        return datetime.fromisoformat(text.replace("Z", "+00:00")).replace(tzinfo=None)
    except ValueError:
        msg = f"{option} {text!r} is not a date (2026-01-31) or a date-time (2026-01-31T06:00:00Z)"
        raise ConfigError(msg) from None


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


@click.command("run")
@click.argument("job", required=False)
@click.option("--all", "run_all", is_flag=True, help="Run every job (of --tenant), one after the other.")
@click.option("--tenant", default=None, help="With --all: only this tenant's jobs.")
@click.option("--from", "start", default=None, metavar="DATE", help="Backfill from this date (with --to).")
@click.option("--to", "end", default=None, metavar="DATE", help="Backfill up to this date (exclusive).")
@click.option(
    "--window", default=None, help="Backfill window size (1d, 6h; default: the job's backfill_window)."
)
@platform_options
@json_option
def run_command(  # noqa: PLR0917 - click passes every option by name
    job: str | None,
    run_all: bool,
    tenant: str | None,
    start: str | None,
    end: str | None,
    window: str | None,
    as_json: bool,
    **dirs: Path | None,
) -> None:
    """Run JOB (<tenant>/<job>) once, or every job with --all; a backfill with --from/--to runs its
    windows in order, each committed on its own, and resumes at the first unfinished window."""
    from ingestion.backfill import run_backfill  # noqa: PLC0415 - the runner loads Meltano's env
    from ingestion.runner import preflight_checks, run_job  # noqa: PLC0415

    paths = _paths(**dirs)
    runner = load_runner(paths)
    if run_all == bool(job):
        msg = "give a JOB (<tenant>/<job>) or --all, not both"
        raise click.UsageError(msg)
    if (start is None) != (end is None):
        msg = "--from and --to go together"
        raise click.UsageError(msg)
    jobs: list[JobSpec]
    if run_all:
        tree = validate_tree(paths)
        if tree.errors:
            raise tree.errors[0]
        jobs = [j for j in tree.jobs.values() if tenant is None or j.tenant == tenant]
        if not jobs:
            msg = f"no jobs{f' of tenant {tenant!r}' if tenant else ''} under {paths.jobs}"
            raise ConfigError(msg)
    else:
        assert job is not None
        jobs = [find_job(paths, job)]
    checks = preflight_checks(runner)
    interactive = sys.stderr.isatty() and not as_json
    results = []
    for spec in sorted(jobs, key=lambda j: j.id):
        if start is not None and end is not None:
            size = window or spec.incremental.backfill_window or "1d"
            results.extend(
                run_backfill(
                    spec, paths, runner, _windows(start, end, size), console=interactive, checks=checks
                )
            )
        else:
            results.append(run_job(spec, paths, runner, console=interactive, checks=checks))
    summary = [
        {
            "job": r.metadata["job_id"],
            "run_id": r.run_id,
            "status": r.metadata["status"],
            "exit_code": r.exit_code,
            "rows_written": r.metadata["totals"]["rows_written"],
            "window": r.metadata.get("window"),
            "metadata": str(r.metadata_file),
            "error": (r.metadata.get("error") or {}).get("message"),
        }
        for r in results
    ]
    if as_json:
        emit_json(summary if run_all or start else summary[0])
    else:
        _print_runs(summary)
    worst = max((r.exit_code for r in results), key=lambda code: _SEVERITY.get(code, 3), default=0)
    raise SystemExit(worst)


def _print_runs(rows: list[dict[str, Any]]) -> None:
    table = Table("job", "run id", "status", "exit", "rows", "window", "error")
    for row in rows:
        window = row.get("window") or {}
        table.add_row(
            cell(row["job"]),
            cell(row["run_id"]),
            cell(row["status"]),
            cell(row["exit_code"]),
            cell(row["rows_written"]),
            cell(f"{window.get('start')} → {window.get('end')}" if window else ""),
            cell((row.get("error") or "")[:120]),
        )
    console().print(table)


@click.command("runs")
@click.option("--tenant", default=None, help="Only this tenant's runs.")
@click.option("--job", "job_id", default=None, help="Only this job's runs (<tenant>/<job>).")
@click.option("--limit", default=20, show_default=True, help="The newest N runs.")
@platform_options
@json_option
def runs_command(
    tenant: str | None, job_id: str | None, limit: int, as_json: bool, **dirs: Path | None
) -> None:
    """Recent runs, newest first, from their run metadata records (<logs>/<tenant>/runs/*.json)."""
    paths = _paths(**dirs)
    found = []
    roots = (
        [paths.tenant_dir("logs", tenant)]
        if tenant
        else sorted(p for p in paths.logs.glob("*") if p.is_dir())
    )
    for root in roots:
        for file in (root / "runs").glob("*.json"):
            try:
                document = json.loads(file.read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError):
                continue
            if job_id is None or document.get("job_id") == job_id:
                found.append(document)
    found.sort(key=lambda d: str(d.get("started_at")), reverse=True)
    found = found[:limit]
    if as_json:
        emit_json(found)
        return
    table = Table(
        "started", "job", "run id", "status", "exit", "rows", "rejected", "cpu s", "api calls", "secs"
    )
    for run in found:
        table.add_row(
            cell(run.get("started_at")),
            cell(run.get("job_id")),
            cell(run.get("run_id")),
            cell(run.get("status")),
            cell(run.get("exit_code")),
            cell(run.get("totals", {}).get("rows_written")),
            cell(run.get("totals", {}).get("rows_rejected")),
            cell(run.get("cpu_time_sec")),
            cell(sum(v.get("requests", 0) for v in (run.get("api_calls") or {}).values())),
            cell(run.get("duration_sec")),
        )
    console().print(table)


def state_id(job: JobSpec, plugin: str, environment: str = "dev") -> str:
    """Meltano's state id of the job's runs (`meltano run --state-id-suffix <pipeline id>`)."""
    return f"{environment}:{plugin}-to-target-iceberg-nessie:{job.pipeline_id}"


def _meltano_state(job: JobSpec, paths: PlatformPaths, *args: str) -> subprocess.CompletedProcess[str]:
    """`meltano state ...` on the job's state id, through the `ingest://` backend of its tenant."""
    from ingestion.runner import project_dir  # noqa: PLC0415

    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("MELTANO_", "TAP_", "TARGET_"))},
        "MELTANO_CLI_DISABLE_VERSION_CHECK": "true",
        "MELTANO_SEND_ANONYMOUS_USAGE_STATS": "false",
        "MELTANO_STATE_BACKEND_URI": f"ingest://{paths.tenant_dir('state', job.tenant)}",
    }
    meltano = str(Path(sys.executable).parent / "meltano")
    return subprocess.run(  # noqa: S603 - our own meltano
        [meltano, "state", *args],
        cwd=project_dir(os.environ),
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )


def register_state_commands(group: click.Group) -> None:
    """`ingest state set|reset <job>` on the existing `ingest state` group."""

    @group.command("set")
    @click.argument("job")
    @click.argument("state_json")
    @platform_options
    def state_set(job: str, state_json: str, **dirs: Path | None) -> None:
        """Make STATE_JSON (a Singer state) the state JOB's next run starts from."""
        paths = _paths(**dirs)
        spec = find_job(paths, job)
        try:
            parsed = json.loads(state_json)
        except json.JSONDecodeError as error:
            msg = f"STATE_JSON is not JSON ({error}); give a Singer state like '{{\"bookmarks\": {{}}}}'"
            raise ConfigError(msg) from None
        if not isinstance(parsed, dict):
            msg = "STATE_JSON must be a JSON object (a Singer state)"
            raise ConfigError(msg)
        plugin = spec.plugin or _plugin(spec, paths)
        document = json.dumps({"singer_state": parsed})  # how Meltano stores a Singer state
        done = _meltano_state(spec, paths, "set", "--force", state_id(spec, plugin), document)
        _report(done, f"state of {spec.id} set; its next run starts from it")

    @group.command("reset")
    @click.argument("job")
    @platform_options
    def state_reset(job: str, **dirs: Path | None) -> None:
        """Forget JOB's state: its next run loads everything again (the committed rows stay)."""
        paths = _paths(**dirs)
        spec = find_job(paths, job)
        plugin = spec.plugin or _plugin(spec, paths)
        done = _meltano_state(spec, paths, "clear", "--force", state_id(spec, plugin))
        _report(done, f"state of {spec.id} reset; its next run is a full load")


def _plugin(job: JobSpec, paths: PlatformPaths) -> str:
    from ingestion.registry import load_registry  # noqa: PLC0415

    return load_registry(paths.registry_file).connector(job.extractor).plugin


def _report(done: subprocess.CompletedProcess[str], message: str) -> None:
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-5:]
        msg = "meltano state failed: " + " | ".join(tail)
        raise ConfigError(msg)
    click.echo(message)


@click.command("check")
@click.argument("job")
@platform_options
@json_option
def check_command(job: str, as_json: bool, **dirs: Path | None) -> None:
    """Check that JOB's catalog answers, its warehouse takes writes and its source accepts its
    credentials, without loading anything. Exit 0 when all pass, 75 when every failure may pass on a
    retry (unreachable, rate limited), 2 otherwise."""
    from ingestion.inspect import check  # noqa: PLC0415
    from ingestion.runner import JobRun  # noqa: PLC0415

    paths = _paths(**dirs)
    run = JobRun(find_job(paths, job), paths, load_runner(paths))
    results = check(run)
    failures = [r for r in results if not r.ok]
    if as_json:
        emit_json({"job": run.job.id, "ok": not failures, "checks": [r.to_json() for r in results]})
    else:
        table = Table("component", "ok", "retryable", "detail")
        for result in results:
            table.add_row(
                cell(result.component),
                cell("yes" if result.ok else "NO"),
                cell(result.retryable),
                cell(result.message),
            )
        console().print(table)
    if failures:
        raise SystemExit(75 if all(r.retryable for r in failures) else EXIT_CONFIG)


def _describe_connector(paths: PlatformPaths, connector_id: str, as_json: bool) -> None:
    """`ingest discover <connector>`: what the registry says the connector type offers."""
    from ingestion.registry import load_registry  # noqa: PLC0415

    connector = load_registry(paths.registry_file).connector(connector_id)
    document = connector.model_dump(mode="json")
    if as_json:
        emit_json(document)
        return
    table = Table("key", "value")
    for key in ("id", "label", "plugin", "variants", "category", "allowed_in_saas", "default_contracts"):
        table.add_row(cell(key), cell(document.get(key)))
    if connector.streams is not None:
        table.add_row(
            cell("streams"), cell(", ".join(connector.streams.names) or connector.streams.description)
        )
    if connector.incremental is not None:
        table.add_row(
            cell("incremental"),
            cell(f"{connector.incremental.strategy.value} ({connector.incremental.replication_key})"),
        )
    console().print(table)
    console().print("Give a job (<tenant>/<job>) to discover the streams with its settings.")


@click.command("discover")
@click.argument("job")
@click.option(
    "--contract",
    "contract_stream",
    default=None,
    metavar="STREAM",
    help="Print a contract skeleton for STREAM.",
)
@platform_options
@json_option
def discover_command(job: str, contract_stream: str | None, as_json: bool, **dirs: Path | None) -> None:
    """The streams JOB's extractor offers with the job's settings, and their columns; with --contract,
    an ODCS v3.0.2 contract skeleton for one stream (save it under assets/ and complete it). Given a
    connector type instead of a job, what the registry says it offers."""
    from ingestion.inspect import contract_skeleton, discover  # noqa: PLC0415
    from ingestion.runner import JobRun  # noqa: PLC0415

    paths = _paths(**dirs)
    if "/" not in job and not sorted(paths.jobs.glob(f"*/{job}.y*ml")):
        _describe_connector(paths, job, as_json)
        return
    run = JobRun(find_job(paths, job), paths, load_runner(paths))
    streams = discover(run)
    if contract_stream is not None:
        if contract_stream not in streams:
            msg = (
                f"{run.plugin} offers no stream {contract_stream!r}; it offers: {', '.join(sorted(streams))}"
            )
            raise ConfigError(msg)
        click.echo(
            contract_skeleton(
                contract_stream, streams[contract_stream], source=run.connector.id, tenant=run.job.tenant
            ),
            nl=False,
        )
        return
    if as_json:
        emit_json({"job": run.job.id, "plugin": run.plugin, "streams": streams})
        return
    table = Table("stream", "columns")
    for name, schema in sorted(streams.items()):
        table.add_row(cell(name), cell(", ".join((schema.get("properties") or {}).keys())))
    console().print(table)


@click.command("serve")
@click.option(
    "--host",
    default=lambda: os.environ.get("DAGSTER_WEBSERVER_HOST", "127.0.0.1"),
    show_default="$DAGSTER_WEBSERVER_HOST, else 127.0.0.1 (the image: 0.0.0.0)",
    help="Address the Dagster UI listens on.",
)
@click.option(
    "--port",
    type=int,
    default=lambda: int(os.environ.get("DAGSTER_WEBSERVER_PORT", "3000")),
    show_default="$DAGSTER_WEBSERVER_PORT, else 3000",
    help="Port of the Dagster UI.",
)
@click.option(
    "--print-instance",
    is_flag=True,
    help="Print the Dagster instance settings (dagster.yaml) runner.yaml implies, and exit.",
)
@click.option(
    "--prepare-only", is_flag=True, help="Write DAGSTER_HOME's dagster.yaml and workspace.yaml, and exit."
)
@platform_options
def serve_command(
    host: str, port: int, print_instance: bool, prepare_only: bool, **dirs: Path | None
) -> None:
    """Start the orchestrator: the Dagster webserver (UI) and daemon (schedules, run queue) for every
    job under configs/, in DAGSTER_HOME (default <state>/dagster). The image's default command."""
    from ingestion.orchestration import serve  # noqa: PLC0415 - Dagster's own start-up is slow
    from ingestion.runner import project_dir  # noqa: PLC0415

    paths = _paths(**dirs)
    runner = load_runner(paths)
    if print_instance:
        click.echo(serve.instance_yaml(runner), nl=False)
        return
    if prepare_only:
        home = serve.dagster_home(paths, os.environ)
        for line in serve.prepare(runner, home, project_dir(os.environ)):
            click.echo(line)
        return
    raise SystemExit(serve.serve(paths, runner, host=host, port=port))
