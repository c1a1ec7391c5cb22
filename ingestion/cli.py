"""`ingest`: the platform's command line. Tables for people (rich), `--json` for machines.

Exit codes: 0 success, 1 failure, 2 usage or configuration error (the message names the fix), and
75 when the catalog reports a retriable condition (the target's RetriableError: try again later).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Final, TypeVar

import click
from rich.console import Console
from rich.json import JSON
from rich.table import Table
from rich.text import Text

from ingestion.errors import PlatformError
from ingestion.paths import CATALOG_NAME, LakeLocation, default_state_dir, project_dir
from ingestion.state import read_state_documents
from target_iceberg_nessie.errors import TargetError

DISTRIBUTION: Final = "ingestion-platform"
_PIPED_WIDTH: Final = 160
_NUMERIC: Final = frozenset({"rows", "data files"})
_IDS: Final = frozenset({"committed at", "pipeline", "batch id", "run id"})
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


def _console() -> Console:
    console = Console()  # per command, so it writes to the current stdout (CliRunner swaps it)
    if not console.is_terminal:  # piped or captured: no window to fit, so do not squeeze the columns
        console.width = max(console.width, _PIPED_WIDTH)
    return console


def _emit_json(payload: Any) -> None:
    click.echo(json.dumps(payload, indent=2, ensure_ascii=False))


def _cell(value: Any) -> Text:
    return Text("" if value is None else str(value))  # Text: values are never read as rich markup


json_option = click.option(
    "--json", "as_json", is_flag=True, help="Print JSON for machines instead of tables."
)
project_option = click.option(
    "--project-dir",
    "project",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Project root. Default: $MELTANO_PROJECT_ROOT, else the working directory.",
)


def lake_options(command: F) -> F:
    """Where the lake is: the target's defaults unless told otherwise."""

    @project_option
    @click.option(
        "--catalog-uri",
        default=None,
        metavar="URI",
        help="SQLAlchemy URL of the embedded catalog. Default: sqlite:///<project>/.lake/catalog.db.",
    )
    @click.option(
        "--warehouse",
        default=None,
        metavar="PATH",
        help="Warehouse root. Default: <project>/.lake/warehouse.",
    )
    @click.option(
        "--catalog-name", default=CATALOG_NAME, show_default=True, help="Catalog name (target setting)."
    )
    @functools.wraps(command)
    def wrapper(
        project: Path | None, catalog_uri: str | None, warehouse: str | None, catalog_name: str, **kwargs: Any
    ) -> Any:
        location = LakeLocation.resolve(project, catalog_uri, warehouse, catalog_name)
        return command(location=location, **kwargs)

    return wrapper  # type: ignore[return-value] # the wrapper swaps four options for `location`


@click.group(cls=_IngestGroup, context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """Lakehouse ingestion platform: Singer taps via Meltano into Apache Iceberg tables."""


@cli.command("tables")
@lake_options
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
    """The state store: each pipeline's last committed Singer state."""


@state_group.command("show")
@project_option
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="State store root. Default: <project>/.state.",
)
@click.option("--tenant", default=None, help="Only this tenant's pipelines.")
@click.option("--pipeline", "pipeline_id", default=None, help="Only this pipeline id.")
@json_option
def state_show_command(
    project: Path | None, state_dir: Path | None, tenant: str | None, pipeline_id: str | None, as_json: bool
) -> None:
    """Show the state store documents (<state_dir>/<tenant>/<pipeline_id>/state.json)."""
    root = state_dir.expanduser().resolve() if state_dir else default_state_dir(project_dir(project))
    documents = read_state_documents(root, tenant, pipeline_id)
    if as_json:
        _emit_json({"state_dir": str(root), "documents": [d.to_json() for d in documents]})
        return
    console = _console()
    if not documents:
        console.print(
            Text(f"no state documents under {root}" + (" for that filter" if tenant or pipeline_id else ""))
        )
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
@lake_options
@click.option("--pipeline", "pipeline_id", default=None, help="Only this pipeline id.")
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True, help="At most N commits.")
@json_option
def commits_command(location: LakeLocation, pipeline_id: str | None, limit: int, as_json: bool) -> None:
    """The commit log of the embedded catalog, newest first."""
    from ingestion.lake import commit_log, open_lake  # noqa: PLC0415 - pyiceberg/pyarrow load only here

    with open_lake(location) as catalog:
        entries = commit_log(catalog, pipeline_id, limit)
    if as_json:
        _emit_json({"commits": [e.to_json() for e in entries]})
        return
    console = _console()
    if not entries:
        console.print(Text("no commits yet" + (f" for pipeline {pipeline_id}" if pipeline_id else "")))
        return
    log = Table(title=Text("Commits, newest first"))
    for header in ("committed at", "pipeline", "batch id", "run id", "streams", "rows per table"):
        log.add_column(header, overflow="fold", no_wrap=header in _IDS)
    for e in entries:
        rows = "\n".join(f"{table}: {count}" for table, count in e.rows.items()) or "(state only)"
        log.add_row(
            *map(_cell, (e.committed_at, e.pipeline_id, e.batch_id, e.run_id, ", ".join(e.streams), rows))
        )
    console.print(log)


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
