"""How `ingest` commands print (rich tables for people, JSON for machines) and their shared options."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Final

import click
from rich.console import Console
from rich.text import Text

PIPED_WIDTH: Final = 1000  # tables are as wide as their content; nothing is cut or folded


def console() -> Console:
    found = Console()  # per command, so it writes to the current stdout (CliRunner swaps it)
    if not found.is_terminal:  # piped or captured: no window to fit, so do not squeeze the columns
        found.width = max(found.width, PIPED_WIDTH)
    return found


def emit_json(payload: Any) -> None:
    click.echo(json.dumps(payload, indent=2, ensure_ascii=False))


def cell(value: Any) -> Text:
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
