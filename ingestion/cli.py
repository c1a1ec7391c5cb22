"""`ingest`: the platform's command line. Tables for people (rich), `--json` for machines.

Exit codes: 0 success, 1 failure, 2 usage or configuration error (the message names the fix), and
75 when the catalog reports a retriable condition (the target's RetriableError: try again later).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TypeVar

import click
from rich.console import Console
from rich.json import JSON
from rich.table import Table
from rich.text import Text

from ingestion.contracts_cli import contracts_group
from ingestion.errors import LakeNotFoundError, PlatformError
from ingestion.output import cell as _cell
from ingestion.output import console as _console
from ingestion.output import emit_json as _emit_json
from ingestion.output import json_option, project_option
from ingestion.paths import (
    CATALOG_NAME,
    CATALOG_TYPE_ENV,
    CATALOG_TYPES,
    CATALOG_URI_ENV,
    NESSIE_TOKEN_ENV,
    NESSIE_URI_ENV,
    REF_ENV,
    WAREHOUSE_ENV,
    LakeLocation,
    default_state_dir,
    project_dir,
    without_userinfo,
)
from ingestion.platform_cli import (
    check_command,
    discover_command,
    register_state_commands,
    run_command,
    runs_command,
    serve_command,
    validate_command,
)
from ingestion.state import StateDocument, read_state_documents
from target_iceberg_nessie.errors import TargetError

if TYPE_CHECKING:
    from ingestion.lake import CommitEntry, RollbackPlan, StateCheck

DISTRIBUTION: Final = "ingestion-platform"
_NUMERIC: Final = frozenset({"rows", "data files"})
_IDS: Final = frozenset({"commit", "head", "committed at", "pipeline", "batch id", "run id"})
F = TypeVar("F", bound=Callable[..., Any])


class _IngestGroup(click.Group):
    """Turns the platform's errors into one line on stderr and their exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except PlatformError as error:
            _fail(ctx, str(error), error.exit_code)
        except TargetError as error:  # from the catalog package the lake is opened through
            _fail(ctx, str(error), error.exit_code)


def _fail(ctx: click.Context, message: str, exit_code: int) -> None:
    for line in message.splitlines() or [message]:
        click.echo(f"error: {line}", err=True)
    ctx.exit(exit_code)


def _env(names: Sequence[str]) -> str:
    return "$" + ", then $".join(names)


def lake_options(*, ref: bool = True) -> Callable[[F], F]:
    """Where the lake is: the target's defaults unless flags or the environment say otherwise; `ref`
    False for commands that name their Nessie branch themselves."""

    def decorate(command: F) -> F:
        @project_option
        @click.option(
            "--catalog-type",
            type=click.Choice(CATALOG_TYPES),
            default=None,
            help=f"sql (the embedded lake) or nessie. Default: {_env(CATALOG_TYPE_ENV)}, "
            f"else nessie when --nessie-uri or ${NESSIE_URI_ENV[0]} is set, else sql.",
        )
        @click.option(
            "--catalog-uri",
            default=None,
            metavar="URI",
            help="SQLAlchemy URL of the embedded catalog. "
            f"Default: {_env(CATALOG_URI_ENV)}, else sqlite:///<project>/.lake/catalog.db.",
        )
        @click.option(
            "--warehouse",
            default=None,
            metavar="PATH",
            help=f"Warehouse root. Default: {_env(WAREHOUSE_ENV)}, else <project>/.lake/warehouse.",
        )
        @click.option(
            "--nessie-uri",
            default=None,
            metavar="URI",
            help=f"Nessie REST API v2 base URI. Default: {_env(NESSIE_URI_ENV)}. "
            f"A bearer token is read from {_env(NESSIE_TOKEN_ENV)} only.",
        )
        @click.option(
            "--catalog-name", default=CATALOG_NAME, show_default=True, help="Catalog name (target setting)."
        )
        @functools.wraps(command)
        def wrapper(
            *,
            project: Path | None,
            catalog_type: str | None,
            catalog_uri: str | None,
            warehouse: str | None,
            nessie_uri: str | None,
            catalog_name: str,
            **kwargs: Any,
        ) -> Any:
            location = LakeLocation.resolve(
                project,
                catalog_uri,
                warehouse,
                catalog_name,
                catalog_type=catalog_type,
                nessie_uri=nessie_uri,
                ref=kwargs.pop("ref", None),
            )
            return command(location=location, **kwargs)

        if ref:
            wrapper = click.option(
                "--ref",
                "--branch",
                "ref",
                default=None,
                metavar="REF",
                help=f"Nessie branch, tag or <name>@<hash> to read. Default: {_env(REF_ENV)}, else main.",
            )(wrapper)
        return wrapper  # type: ignore[return-value] # the wrapper swaps the options for `location`

    return decorate


@click.group(cls=_IngestGroup, context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """Lakehouse ingestion platform: Singer taps via Meltano into Apache Iceberg tables."""


@cli.command("tables")
@lake_options()
@click.option(
    "--sample", type=click.IntRange(min=0), default=0, metavar="N", help="Also show N rows of each table."
)
@json_option
def tables_command(location: LakeLocation, sample: int, as_json: bool) -> None:
    """List the lake's tables: rows, data files, current snapshot and batch."""
    from ingestion.lake import list_lake_tables, open_lake  # noqa: PLC0415 - pyiceberg/pyarrow load only here

    with open_lake(location) as catalog:
        tables = list_lake_tables(catalog, sample)
    if as_json:
        _emit_json({"catalog_name": location.catalog_name, "tables": [t.to_json() for t in tables]})
        return
    console = _console()
    if not tables:
        console.print(Text(f"no tables in the lake yet (catalog {location.describe()})"))
        return
    overview = Table(title=Text(f"Tables in catalog {location.describe()}"))
    for header in ("table", "rows", "data files", "snapshot", "batch id", "run id"):
        overview.add_column(header, justify="right" if header in _NUMERIC else "left", overflow="fold")
    for t in tables:
        overview.add_row(*map(_cell, (t.name, t.rows, t.data_files, t.snapshot_id, t.batch_id, t.run_id)))
    console.print(overview)
    for t in tables if sample else []:
        _print_rows(console, f"{t.name}: {len(t.sample or [])} of {t.rows} row(s)", t.sample or [])


def _print_rows(console: Console, title: str, rows: Sequence[dict[str, Any]]) -> None:
    console.print(Text(title, style="bold"))
    table = Table()
    for column in rows[0] if rows else ["(no rows)"]:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*map(_cell, row.values()))
    console.print(table)


@cli.group("state")
def state_group() -> None:
    """Each pipeline's last committed Singer state: the catalog's, and the state store's copy."""


@state_group.command("show")
@lake_options()
@click.argument("pipeline", required=False)
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="State store root. Default: <project>/.state.",
)
@click.option("--tenant", default=None, help="Only this tenant's pipelines.")
@click.option(
    "--pipeline", "pipeline_option", default=None, help="Only this pipeline id (or give it as PIPELINE)."
)
@json_option
def state_show_command(
    *,
    location: LakeLocation,
    pipeline: str | None,
    state_dir: Path | None,
    tenant: str | None,
    pipeline_option: str | None,
    as_json: bool,
) -> None:
    """Show each pipeline's (or PIPELINE's) committed state, as the catalog holds it (the source of
    truth), and warn where the state store (<state_dir>/<tenant>/<pipeline_id>/state.json) differs.
    PIPELINE may name a job, <tenant>/<job>."""
    from ingestion.lake import check_states, open_lake  # noqa: PLC0415 - pyiceberg/pyarrow load only here

    if pipeline and pipeline_option and pipeline != pipeline_option:
        msg = f"PIPELINE {pipeline!r} and --pipeline {pipeline_option!r} differ; give one of them"
        raise click.UsageError(msg)
    pipeline = pipeline or pipeline_option
    if pipeline and "/" in pipeline:  # a job, <tenant>/<job>: its pipeline is <tenant>.<job>
        job_tenant, _, job_name = pipeline.partition("/")
        pipeline = f"{job_tenant}.{job_name}"
        if state_dir is None:  # the runner keeps a tenant's state in <state>/<tenant>
            from ingestion.jobs import PlatformPaths  # noqa: PLC0415

            state_dir = PlatformPaths.resolve().tenant_dir("state", job_tenant)
    root = state_dir.expanduser().resolve() if state_dir else default_state_dir(project_dir(location.project))
    try:
        with open_lake(location) as catalog:
            # The default store may not exist (a lake written elsewhere); a store asked for must.
            stored = state_dir is not None or root.is_dir()
            documents = read_state_documents(root, tenant, pipeline) if stored else []
            checks = check_states(catalog, location, documents, pipeline, tenant)
    except LakeNotFoundError as missing:  # no embedded lake: the state store is all there is
        documents = read_state_documents(root, tenant, pipeline)
        click.echo(
            f"note: {missing.location} does not exist, so the state store is shown unchecked", err=True
        )
        _show_documents(root, documents, tenant or pipeline, as_json)
        return
    for check in checks:
        if warning := check.warning(location.describe()):
            click.echo(f"warning: {warning}", err=True)
    if as_json:
        _emit_json(
            {
                "catalog": location.describe(),
                "committed": [c.to_json() for c in checks],
                "state_dir": str(root),
                "documents": [d.to_json() for d in documents],
            }
        )
        return
    _show_checks(location, checks, pipeline)


def _show_checks(location: LakeLocation, checks: Sequence[StateCheck], pipeline: str | None) -> None:
    from ingestion.lake import IN_SYNC, NO_DOCUMENT, short  # noqa: PLC0415 - pyiceberg/pyarrow load only here

    console = _console()
    if not checks:
        which = f"pipeline {pipeline}" if pipeline else "any pipeline"
        console.print(Text(f"no committed state of {which} in catalog {location.describe()}"))
        return
    overview = Table(title=Text(f"Committed state in catalog {location.describe()}"))
    for header in ("pipeline", "run id", "batch id", "commit", "committed at", "tables", "state store"):
        overview.add_column(header, overflow="fold", no_wrap=header in _IDS)
    for c in checks:
        done = c.committed
        commit = (short(done.commit_id) if location.is_nessie else done.commit_id) if done else None
        tables = ("\n".join(done.tables) or "(state only)") if done else None
        overview.add_row(
            *map(_cell, (c.pipeline_id, done and done.run_id, done and done.batch_id, commit)),
            *map(_cell, (done and done.committed_at, tables, c.status)),
        )
    console.print(overview)
    for c in checks:
        if c.committed is not None:
            title = f"{c.pipeline_id}: Singer state committed with batch {c.committed.batch_id}"
            console.print(Text(title, style="bold"))
            state = c.committed.state
            console.print(JSON.from_data(state) if state is not None else Text("(none yet)"))
        if c.document is not None and c.status not in (IN_SYNC, NO_DOCUMENT):
            title = f"{c.pipeline_id}: Singer state in the state store ({c.document.path})"
            console.print(Text(title, style="bold"))
            state = c.document.state
            console.print(JSON.from_data(state) if state is not None else Text("(none yet)"))


def _show_documents(
    root: Path, documents: Sequence[StateDocument], filtered: str | None, as_json: bool
) -> None:
    if as_json:
        _emit_json(
            {
                "catalog": None,
                "committed": [],
                "state_dir": str(root),
                "documents": [d.to_json() for d in documents],
            }
        )
        return
    console = _console()
    if not documents:
        console.print(Text(f"no state documents under {root}" + (" for that filter" if filtered else "")))
        return
    overview = Table(title=Text(f"State store {root}"))
    for header in ("tenant", "pipeline", "run id", "batch id", "commit", "committed at", "tables"):
        overview.add_column(header, overflow="fold", no_wrap=header != "tables")
    for d in documents:
        doc = d.document
        overview.add_row(
            *map(_cell, (d.tenant, d.pipeline_id, doc["run_id"], doc["batch_id"], d.commit["commit_id"])),
            _cell(doc["committed_at"]),
            _cell("\n".join(d.commit["tables"]) or "(state only)"),
        )
    console.print(overview)
    for d in documents:
        console.print(Text(f"{d.tenant} / {d.pipeline_id}: Singer state", style="bold"))
        console.print(JSON.from_data(d.state) if d.state is not None else Text("(none yet)"))


@cli.command("commits")
@lake_options()
@click.option("--pipeline", "pipeline_id", default=None, help="Only this pipeline id.")
@click.option("--run", "run_id", default=None, help="Only this run id.")
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True, help="At most N commits.")
@json_option
def commits_command(
    location: LakeLocation, pipeline_id: str | None, run_id: str | None, limit: int, as_json: bool
) -> None:
    """The target's commits (checkpoints), newest first: batch and run ids, streams, rows per table.
    On Nessie: the commits on the branch (--ref) with their hashes."""
    from ingestion.lake import commit_log, open_lake  # noqa: PLC0415 - pyiceberg/pyarrow load only here

    with open_lake(location) as catalog:
        entries = commit_log(catalog, pipeline_id, limit, run_id)
    if as_json:
        _emit_json({"commits": [e.to_json() for e in entries]})
        return
    console = _console()
    if not entries:
        which = "".join(
            f" for {what} {value}" for what, value in (("pipeline", pipeline_id), ("run", run_id)) if value
        )
        console.print(Text(f"no commits yet{which} in catalog {location.describe()}"))
        return
    title = f"Commits in catalog {location.describe()}, newest first"
    console.print(_commit_table(title, [(e.commit_hash, e, "") for e in entries], location.is_nessie))


def _commit_table(
    title: str, commits: Sequence[tuple[str | None, CommitEntry | None, str]], hashes: bool
) -> Table:
    """(hash, checkpoint, message) as a table; a Nessie commit the target did not write shows its
    message instead of a checkpoint's ids."""
    from ingestion.lake import short  # noqa: PLC0415 - pyiceberg/pyarrow load only here

    log = Table(title=Text(title))
    headers = ("commit", "committed at", "pipeline", "batch id", "run id", "streams", "rows per table")
    for header in headers if hashes else headers[1:]:
        log.add_column(header, overflow="fold", no_wrap=header in _IDS)
    for commit_hash, e, message in commits:
        shown = [_cell(short(commit_hash))] if hashes else []
        if e is None:
            log.add_row(*shown, _cell(None), _cell(f"(not the target's: {message})"))
            continue
        rows = "\n".join(f"{table}: {count}" for table, count in e.rows.items()) or "(state only)"
        log.add_row(
            *shown,
            *map(_cell, (e.committed_at, e.pipeline_id, e.batch_id, e.run_id, ", ".join(e.streams), rows)),
        )
    return log


@cli.command("branches")
@lake_options(ref=False)
@json_option
def branches_command(location: LakeLocation, as_json: bool) -> None:
    """Nessie's branches and tags with their head commit and, when the target wrote it, its batch."""
    from ingestion.lake import list_references, short  # noqa: PLC0415 - pyiceberg/pyarrow load only here

    location.require_nessie("branches", "the embedded catalog has no branches")
    references = list_references(location)
    nessie = without_userinfo(location.nessie_uri or "")
    if as_json:
        _emit_json({"nessie_uri": nessie, "references": [r.to_json() for r in references]})
        return
    overview = Table(title=Text(f"Branches and tags on Nessie {nessie}"))
    for header in ("type", "name", "head", "committed at", "pipeline", "batch id", "run id"):
        overview.add_column(header, overflow="fold", no_wrap=header in _IDS)
    for r in references:
        shown = r.to_json()
        ids = (shown["committed_at"], shown["pipeline_id"], shown["batch_id"], shown["run_id"])
        overview.add_row(*map(_cell, (r.type.lower(), r.name, short(r.hash), *ids)))
    _console().print(overview)


@cli.command("rollback")
@lake_options(ref=False)
@click.argument("branch")
@click.option(
    "--to",
    "to_hash",
    required=True,
    metavar="HASH",
    help="Commit of BRANCH's history to move back to (8+ hex digits).",
)
@click.option("--yes", is_flag=True, help="Roll back without asking.")
@json_option
def rollback_command(*, location: LakeLocation, branch: str, to_hash: str, yes: bool, as_json: bool) -> None:
    """Move Nessie BRANCH back to an earlier commit of its own history, undoing the commits since.

    Fails cleanly (exit 75) when the branch moves meanwhile; asks first unless --yes."""
    from ingestion.lake import apply_rollback, nessie_client, plan_rollback, short  # noqa: PLC0415 - pyiceberg/pyarrow load only here

    location.require_nessie(
        "rollback",
        "the embedded catalog keeps each table's current metadata and a log of batches, "
        "but no history of commits across tables to go back to",
    )
    with nessie_client(location) as client:
        plan = plan_rollback(client, branch, to_hash)
        if not plan.undone:
            if as_json:
                _emit_json({**plan.to_json(), "rolled_back": False})
            else:
                click.echo(f"branch {branch} is at {short(plan.to_hash)} already; nothing to roll back")
            return
        what = f"branch {branch} from {short(plan.branch.hash)} back to {short(plan.to_hash)}"
        if not as_json:
            title = f"Rolling back {what} undoes {len(plan.undone)} commit(s), newest first"
            undone = [(c.hash, c.checkpoint, c.message) for c in plan.undone]
            _console().print(_commit_table(title, undone, hashes=True))
        if not yes and not _confirm(f"Roll back {what}, undoing {len(plan.undone)} commit(s)?"):
            msg = f"not confirmed; {branch} stays at {short(plan.branch.hash)}"
            raise PlatformError(msg)
        apply_rollback(client, plan)
    if as_json:
        _emit_json({**plan.to_json(), "rolled_back": True})
        return
    click.echo(f"rolled back {what}; {len(plan.undone)} commit(s) undone")
    _rollback_note(plan)


def _confirm(question: str) -> bool:
    try:
        return click.confirm(question, default=False, err=True)
    except click.Abort:  # end of input or Ctrl-C: no answer is a no
        return False


def _rollback_note(plan: RollbackPlan) -> None:
    for pipeline in plan.pipelines:
        click.echo(
            f"note: pipeline {pipeline} resumes from the state committed before the undone commits "
            f"(`ingest state show {pipeline} --ref {plan.branch.name}`); Meltano's saved state and the "
            "state store still hold the undone bookmarks: set them back before its next run"
        )


cli.add_command(contracts_group)
for _command in (validate_command, run_command, runs_command, check_command, discover_command, serve_command):
    cli.add_command(_command)
register_state_commands(state_group)


@cli.command("version")
@json_option
def version_command(as_json: bool) -> None:
    """Show the platform's version."""
    try:
        found = version(DISTRIBUTION)
    except PackageNotFoundError:  # running from a source tree that was never installed
        found = "unknown"
    if as_json:
        _emit_json({"name": DISTRIBUTION, "version": found})
    else:
        click.echo(f"ingest ({DISTRIBUTION}) {found}")


def main() -> None:
    cli.main(prog_name="ingest")
