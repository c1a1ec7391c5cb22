"""`ingest contracts`: check the ODCS data contracts and show the rules the target compiles from them.

Contracts are read exactly as the target reads them (`target_iceberg_nessie.contracts.model`:
`read_contract` = YAML, the official ODCS v3.0.2 schema, the platform's extension schema, then the
compiled rules), so `validate` passes exactly when the target would accept the files.

Exit codes (as `ingest`'s): 0 every contract is valid, 2 a contract is invalid or a path is wrong.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

from ingestion.errors import EXIT_CONFIG, ConfigError
from ingestion.output import cell as _cell
from ingestion.output import console as _console
from ingestion.output import emit_json as _emit_json
from ingestion.output import json_option, project_option
from ingestion.paths import from_env, project_dir

if TYPE_CHECKING:  # the contract model loads jsonschema and the ODCS schema: only when a command runs
    from target_iceberg_nessie.contracts.model import ColumnRule, ContractIssue, ObjectContract, QualityRule

ASSETS_ENV: Final = ("INGEST_ASSETS",)
ASSETS_DIR: Final = "assets"


@dataclass
class FileReport:
    """One contract file's outcome: its compiled objects, or every problem found in it."""

    file: str
    problems: list[ContractIssue] = field(default_factory=list)
    objects: list[ObjectContract] = field(default_factory=list)

    @property
    def valid(self) -> bool:
        return not self.problems

    def to_json(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "valid": self.valid,
            "problems": [{"path": p.path, "message": p.message} for p in self.problems],
        }


def check_files(files: Sequence[Path]) -> list[FileReport]:
    """Read, validate and compile each file as the target does; then, across the valid files, refuse
    a stream named by two of them (the target refuses such a set when it loads them together)."""
    from target_iceberg_nessie.contracts.model import ContractError, ContractIssue, read_contract  # noqa: PLC0415 - see TYPE_CHECKING

    reports = []
    for path in files:
        report = FileReport(str(path))
        try:
            report.objects = read_contract(path)
        except ContractError as error:
            report.problems = error.issues or [ContractIssue(str(path), "", str(error))]
        reports.append(report)
    owners: dict[str, str] = {}
    for report in reports:
        for index, obj in enumerate(report.objects):
            for key, value in (("name", obj.name), ("physicalName", obj.physical_name)):
                other = owners.get(value) if value is not None else None
                if other is not None and other != report.file:
                    message = (
                        f"stream {value!r} already has a contract in {other}; the target refuses two "
                        "contracts for one stream, so rename one object or keep the files apart"
                    )
                    report.problems.append(ContractIssue(report.file, f"schema[{index}].{key}", message))
                elif value is not None:
                    owners[value] = report.file
    return reports


# -- options and output (the patterns of ingestion/cli.py) ------------------------------------------

assets_option = click.option(
    "--assets",
    type=click.Path(path_type=Path),
    default=None,
    metavar="DIR",
    help=f"Contracts folder. Default: ${ASSETS_ENV[0]}, else <project>/{ASSETS_DIR}.",
)


def assets_dir(assets: Path | None, project: Path | None) -> Path:
    """--assets, else $INGEST_ASSETS, else <project>/assets."""
    found = assets or (Path(value) if (value := from_env(ASSETS_ENV)) else None)
    return _shown(found.expanduser()) if found else _shown(project_dir(project) / ASSETS_DIR)


def _shown(path: Path) -> Path:
    """A path as messages name it: relative to the working directory when it is below it."""
    try:
        return path.resolve().relative_to(Path.cwd())
    except ValueError:
        return path


# -- commands ----------------------------------------------------------------------------------------


@click.group("contracts")
def contracts_group() -> None:
    """ODCS v3.0.2 data contracts (assets/<source>/v<M.m>/<object>.yaml): check them, show their rules."""


@contracts_group.command("validate")
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@assets_option
@project_option
@json_option
@click.pass_context
def validate_command(
    ctx: click.Context, paths: tuple[Path, ...], assets: Path | None, project: Path | None, as_json: bool
) -> None:
    """Validate every contract (*.yaml, *.yml) in PATHS (files or folders; default: the assets folder)
    against ODCS v3.0.2 and the platform's extensions, and compile its rules as the target does.

    Prints OK per valid file and `file: path: message` per problem; exits 2 when any is invalid."""
    from target_iceberg_nessie.contracts.model import contract_files  # noqa: PLC0415 - see TYPE_CHECKING

    roots = [_shown(p) for p in paths] or [assets_dir(assets, project)]
    files = contract_files(roots)
    if not files:
        msg = f"no contract files (*.yaml, *.yml) in {', '.join(map(str, roots))}"
        raise ConfigError(msg)
    reports = check_files(files)
    invalid = [r for r in reports if not r.valid]
    if as_json:
        _emit_json({"files": [r.to_json() for r in reports]})
    else:
        for report in reports:
            if report.valid:
                streams = ", ".join(o.name for o in report.objects)
                click.echo(f"{report.file}: OK ({streams})")
            for problem in report.problems:
                click.echo(str(problem))
        valid = len(reports) - len(invalid)
        click.echo(f"{len(reports)} contract file(s): {valid} valid, {len(invalid)} invalid")
    if invalid:
        ctx.exit(EXIT_CONFIG)


@contracts_group.command("show")
@click.argument("target", metavar="STREAM|FILE")
@assets_option
@project_option
@json_option
def show_command(target: str, assets: Path | None, project: Path | None, as_json: bool) -> None:
    """Show the rules the target compiles from a contract: its columns and checks, enforcement level,
    schema evolution, keys, partitioning and the table properties it sets. STREAM|FILE is a contract
    file, or a stream name looked up (object `name` or `physicalName`) in the assets folder."""
    from target_iceberg_nessie.contracts.model import ContractSet, read_contract  # noqa: PLC0415 - see TYPE_CHECKING

    path = Path(target)
    if path.suffix in {".yaml", ".yml"} or path.is_file():
        objects = read_contract(_shown(path))
    else:
        root = assets_dir(assets, project)
        contracts = ContractSet.load([root])
        found = contracts.for_stream(target)
        if found is None:
            known = ", ".join(sorted({o.name for o in contracts.objects.values()})) or "(none)"
            msg = f"no contract for stream {target!r} in {root}; streams with a contract: {known}"
            raise ConfigError(msg)
        objects = [found]
    if as_json:
        _emit_json({"objects": [object_json(o) for o in objects]})
        return
    console = _console()
    for obj in objects:
        _print_object(console, obj)


# -- compiled rules for people and machines ---------------------------------------------------------


def _all_columns(obj: ObjectContract) -> Iterator[ColumnRule]:
    """Every column, nested fields and array items after their parent (the model's own walk)."""
    from target_iceberg_nessie.contracts.model import walk_columns  # noqa: PLC0415 - see TYPE_CHECKING

    return walk_columns(obj.columns.values())


def _quality_json(rule: QualityRule) -> dict[str, Any]:
    return {
        "rule": rule.rule,
        "name": rule.name,
        "column": rule.column,
        "thresholds": dict(rule.thresholds),
        "unit": rule.unit,
        "valid_values": list(rule.valid_values),
    }


def _column_json(column: ColumnRule) -> dict[str, Any]:
    return {
        "column": column.path,
        "logical_type": column.logical_type,
        "required": column.required,
        "unique": column.unique,
        "primary_key_position": column.primary_key_position,
        "partition_position": column.partition_position,
        "partition_transform": column.partition_transform if column.partition_position else None,
        "classification": column.classification,
        "critical": column.critical,
        "options": dict(column.options),
        "quality": [_quality_json(q) for q in column.quality],
        "description": column.description,
    }


def object_json(obj: ObjectContract) -> dict[str, Any]:
    """The compiled rules of one schema object, as `show --json` prints them."""
    return {
        "file": obj.file,
        "contract_id": obj.contract_id,
        "version": obj.version,
        "status": obj.status,
        "contract_name": obj.contract_name,
        "object": obj.name,
        "physical_name": obj.physical_name,
        "enforcement": obj.enforcement,
        "schema_evolution": obj.schema_evolution,
        "write_mode": obj.write_mode,
        "source": {"type": obj.source_type, "object": obj.source_object},
        "violation_samples": obj.violation_samples,
        "primary_key": list(obj.primary_key),
        "partition": [{"column": c, "transform": t} for c, t in obj.partition_fields],
        "quality": [_quality_json(q) for q in obj.quality],
        "columns": [_column_json(c) for c in _all_columns(obj)],
        "table_properties": obj.table_properties(),
    }


_BOUNDS: Final = {
    "mustBe": "=",
    "mustNotBe": "≠",
    "mustBeGreaterThan": ">",
    "mustBeGreaterOrEqualTo": "≥",
    "mustBeLessThan": "<",
    "mustBeLessOrEqualTo": "≤",
    "mustBeBetween": "between",
    "mustNotBeBetween": "not between",
}


def _describe_quality(rule: QualityRule) -> str:
    """E.g. `validValues ['a', 'b']: failing rows = 0`, `rowCount: rows in the run ≤ 1000`."""
    bounds = ", ".join(f"{_BOUNDS.get(k, k)} {v}" for k, v in rule.thresholds.items()) or "= 0"
    if rule.rule == "rowCount":
        measure = "rows in the run"
    else:
        measure = "% of rows failing" if rule.unit == "percent" else "failing rows"
    values = f" {list(rule.valid_values)}" if rule.rule == "validValues" else ""
    return f"{rule.rule}{values}: {measure} {bounds}"


def _describe_options(options: Mapping[str, Any]) -> str:
    return ", ".join(f"{key}={value}" for key, value in options.items())


def _print_object(console: Console, obj: ObjectContract) -> None:
    summary = Table(title=Text(f"Contract {obj.ref}"), show_header=False)
    summary.add_column("what", style="bold")
    summary.add_column("value", overflow="fold")
    partition = ", ".join(f"{c} ({t})" for c, t in obj.partition_fields)
    for label, value in (
        ("file", obj.file),
        ("contract", f"{obj.contract_name} ({obj.status})"),
        ("object", obj.name + (f" (physical name {obj.physical_name})" if obj.physical_name else "")),
        ("source", f"{obj.source_type or '-'} / {obj.source_object or '-'}"),
        ("enforcement", obj.enforcement),
        ("schema evolution", obj.schema_evolution),
        ("write mode", obj.write_mode),
        ("primary key", ", ".join(obj.primary_key) or "(none)"),
        ("partitioned by", partition or "(not partitioned)"),
        ("run checks", "\n".join(_describe_quality(q) for q in obj.quality) or "(none)"),
        ("violation samples", obj.violation_samples),
    ):
        summary.add_row(_cell(label), _cell(value))
    console.print(summary)
    columns = Table(title=Text(f"Columns of {obj.name}: what each row is checked for"))
    for header in ("column", "type", "key", "required", "unique", "class", "CDE", "options", "quality"):
        columns.add_column(header, overflow="fold", no_wrap=header == "column")
    for c in _all_columns(obj):
        columns.add_row(
            *map(_cell, (c.path, c.logical_type, c.primary_key_position, "yes" if c.required else "")),
            *map(_cell, ("yes" if c.unique else "", c.classification, "yes" if c.critical else "")),
            _cell(_describe_options(c.options)),
            _cell("\n".join(_describe_quality(q) for q in c.quality)),
        )
    console.print(columns)
    properties = Table(title=Text(f"Table properties set from {obj.ref}"))
    properties.add_column("property", overflow="fold")
    properties.add_column("value", overflow="fold")
    for key, value in obj.table_properties().items():
        properties.add_row(_cell(key), _cell(value))
    console.print(properties)
