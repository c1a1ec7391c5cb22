"""ODCS v3.0.2 data contracts: read, validated, and compiled into the rules the target enforces.

A contract file is an ODCS document (`assets/<source>/v<M.m>/<object>.yaml`). It is checked against
the official ODCS v3.0.2 JSON Schema (shipped by the `open-data-contract-standard` package) and the
platform's extension schema (`odcs-extensions.schema.json`: what we read from `customProperties`).
Each schema object becomes an `ObjectContract`, found by the Singer stream name (the object's
`name`, or its `physicalName`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, Final

import yaml
from jsonschema import Draft201909Validator
from jsonschema.exceptions import ValidationError

from target_iceberg_nessie.errors import ConfigError

LEVELS: Final = ("fail", "quarantine", "drop")
EVOLUTION: Final = ("evolve", "freeze", "discard")
ROW_RULES: Final = ("nullCheck", "validValues", "duplicateCount")  # evaluated on rows of a batch
RUN_RULES: Final = ("rowCount",)  # evaluated on the run's totals
DEFAULT_SAMPLES: Final = 5


@dataclass(frozen=True)
class ContractIssue:
    """One problem of one contract file: where (file, path inside it) and what."""

    file: str
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}: {self.path or '(document)'}: {self.message}"


class ContractError(ConfigError):
    """A contract is missing, invalid, or does not fit the stream it is used for."""

    def __init__(self, message: str, issues: Sequence[ContractIssue] = ()) -> None:
        details = "".join(f"\n  - {issue}" for issue in issues)
        super().__init__(message + details)
        self.issues = list(issues)


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML that refuses a key given twice in one mapping (safe_load keeps the last silently)."""


def _mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"key {key!r} is given twice in one mapping", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)


def load_yaml(text: str) -> Any:
    return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass


@cache
def odcs_schema() -> dict[str, Any]:
    """The official ODCS v3.0.2 JSON Schema, as the open-data-contract-standard package ships it."""
    text = resources.files("open_data_contract_standard").joinpath("schema.json").read_text("utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


@cache
def extension_schema() -> dict[str, Any]:
    text = resources.files(__package__).joinpath("odcs-extensions.schema.json").read_text("utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


def _path(error: ValidationError) -> str:
    parts = []
    for part in error.absolute_path:
        parts.append(f"[{part}]" if isinstance(part, int) else f".{part}")
    return "".join(parts).lstrip(".")


def _describe(error: ValidationError, document: Mapping[str, Any]) -> str:
    """The error in words, with the name of the schema object or property it is in when known."""
    names = []
    node: Any = document
    for part in error.absolute_path:
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            break
        if isinstance(node, Mapping) and isinstance(node.get("name"), str):
            names.append(node["name"])
        elif isinstance(node, Mapping) and isinstance(node.get("property"), str):
            names.append(node["property"])
    where = f" (in {' → '.join(names)})" if names else ""
    return f"{error.message}{where}"


def validate_document(document: Any, file: str) -> list[ContractIssue]:
    """Every problem of `document` against ODCS v3.0.2 and the platform's extensions."""
    if not isinstance(document, Mapping):
        return [ContractIssue(file, "", "a contract is a YAML mapping (an ODCS document)")]
    errors: list[ValidationError] = []
    for schema in (odcs_schema(), extension_schema()):
        validator = Draft201909Validator(schema)
        errors.extend(sorted(validator.iter_errors(document), key=lambda e: list(map(str, e.absolute_path))))
    issues = [ContractIssue(file, _path(e), _describe(e, document)) for e in errors if not _echo(e, errors)]
    issues.extend(_semantic_issues(document, file))
    if not issues:
        try:
            compile_contract(document, file)
        except ContractError as error:
            issues.extend(error.issues or [ContractIssue(file, "", str(error))])
    return list(dict.fromkeys(issues))


def _echo(error: ValidationError, errors: Sequence[ValidationError]) -> bool:
    """An "unevaluated properties" error on an element that has a real error inside it: ODCS's
    `unevaluatedProperties: false` repeats every child failure as one about the parent."""
    if error.validator != "unevaluatedProperties":
        return False
    path = list(error.absolute_path)
    return any(
        other is not error
        and list(other.absolute_path)[: len(path)] == path
        and other.validator != "unevaluatedProperties"
        for other in errors
    )


def _semantic_issues(document: Mapping[str, Any], file: str) -> list[ContractIssue]:
    """What JSON Schema cannot say: unique names, consistent key positions, usable patterns."""
    issues = []
    import re  # noqa: PLC0415 - only here

    for i, obj in enumerate(document.get("schema") or []):
        if not isinstance(obj, Mapping):
            continue
        names = [p.get("name") for p in obj.get("properties") or [] if isinstance(p, Mapping)]
        for name in {n for n in names if names.count(n) > 1}:
            issues.append(
                ContractIssue(file, f"schema[{i}].properties", f"property {name!r} is declared twice")
            )
        positions = [
            p.get("primaryKeyPosition")
            for p in obj.get("properties") or []
            if isinstance(p, Mapping) and p.get("primaryKey")
        ]
        known = [p for p in positions if isinstance(p, int) and p > 0]
        if len(known) != len(set(known)):
            issues.append(
                ContractIssue(
                    file, f"schema[{i}].properties", "two primary key columns share a primaryKeyPosition"
                )
            )
        for j, prop in enumerate(obj.get("properties") or []):
            if not isinstance(prop, Mapping):
                continue
            pattern = (prop.get("logicalTypeOptions") or {}).get("pattern")
            if isinstance(pattern, str):
                try:
                    re.compile(pattern)
                except re.error as error:
                    issues.append(
                        ContractIssue(
                            file,
                            f"schema[{i}].properties[{j}].logicalTypeOptions.pattern",
                            f"not a usable regular expression: {error}",
                        )
                    )
    return issues


# -- compiled rules ------------------------------------------------------------------------------


@dataclass(frozen=True)
class QualityRule:
    """An ODCS `library` quality rule the target evaluates (nullCheck, validValues, duplicateCount
    on rows; rowCount on the run). The count of offending rows (or their percent with
    `unit: percent`) must meet the threshold; without one it must be 0."""

    rule: str
    column: str | None
    name: str
    thresholds: Mapping[str, Any] = field(default_factory=dict)
    unit: str = "rows"
    valid_values: tuple[Any, ...] = ()

    def passes(self, offending: float, total: int) -> bool:
        value = offending * 100.0 / total if self.unit == "percent" and total else offending
        t = self.thresholds
        if not t:
            return value == 0
        checks: dict[str, Callable[[Any], bool]] = {
            "mustBe": lambda x: value == x,
            "mustNotBe": lambda x: value != x,
            "mustBeGreaterThan": lambda x: value > x,
            "mustBeGreaterOrEqualTo": lambda x: value >= x,
            "mustBeLessThan": lambda x: value < x,
            "mustBeLessOrEqualTo": lambda x: value <= x,
            "mustBeBetween": lambda x: x[0] <= value <= x[1],
            "mustNotBeBetween": lambda x: not x[0] <= value <= x[1],
        }
        return all(checks[key](bound) for key, bound in t.items() if key in checks)


@dataclass(frozen=True)
class ColumnRule:
    """What the contract says about one property (a column, or a nested field: `path` a.b)."""

    path: str
    logical_type: str | None
    required: bool = False
    unique: bool = False
    primary_key_position: int | None = None
    classification: str | None = None
    critical: bool = False
    description: str | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
    quality: tuple[QualityRule, ...] = ()
    children: tuple[ColumnRule, ...] = ()  # nested `properties` of an object
    items: ColumnRule | None = None  # `items` of an array
    partition_position: int | None = None  # `partitioned` + `partitionKeyPosition`
    partition_transform: str = "identity"  # extension `partitionTransform`

    @property
    def name(self) -> str:
        return self.path.rsplit(".", 1)[-1]


@dataclass(frozen=True)
class ObjectContract:
    """One schema object of a contract: the rules for one stream's table."""

    file: str
    contract_id: str
    version: str
    status: str
    contract_name: str
    name: str
    physical_name: str | None
    columns: Mapping[str, ColumnRule]
    quality: tuple[QualityRule, ...] = ()
    enforcement: str = "fail"
    schema_evolution: str = "evolve"
    write_mode: str = "append"
    source_type: str | None = None
    source_object: str | None = None
    violation_samples: int = DEFAULT_SAMPLES
    key_unique: bool = True  # extension keyUniqueness: checkpoint (True) or none
    document: Mapping[str, Any] = field(default_factory=dict, repr=False)

    @property
    def ref(self) -> str:
        return f"{self.contract_id}@{self.version}"

    @property
    def partition_fields(self) -> tuple[tuple[str, str], ...]:
        """(column, Iceberg transform) of the partitioned properties, in partitionKeyPosition order."""
        keyed = [c for c in self.columns.values() if c.partition_position is not None]
        ordered = sorted(keyed, key=lambda c: c.partition_position or 0)
        return tuple((c.path, c.partition_transform) for c in ordered)

    @property
    def primary_key(self) -> tuple[str, ...]:
        keyed = [c for c in self.columns.values() if c.primary_key_position is not None]
        return tuple(c.path for c in sorted(keyed, key=lambda c: c.primary_key_position or 0))

    def table_properties(self) -> dict[str, str]:
        """Governance, FinOps, classification and contract tags as Iceberg table properties."""
        doc = self.document
        custom = _custom(doc.get("customProperties"))
        found: dict[str, str] = {
            "contract.id": self.contract_id,
            "contract.version": self.version,
            "contract.name": self.contract_name,
            "contract.status": self.status,
            "contract.object": self.name,
            "contract.enforcement": self.enforcement,
            "contract.schema-evolution": self.schema_evolution,
        }
        for key, prop in (
            ("governance.domain", "domain"),
            ("governance.data-product", "dataProduct"),
            ("governance.tenant", "tenant"),
        ):
            if isinstance(doc.get(prop), str):
                found[key] = doc[prop]
        tags = [t for t in doc.get("tags") or [] if isinstance(t, str)]
        if tags:
            found["governance.tags"] = ",".join(tags)
        team = doc.get("team")
        if isinstance(team, list) and team:
            members = [m.get("username") or m.get("name") for m in team if isinstance(m, Mapping)]
            found["governance.team"] = ",".join(str(m) for m in members if m)
        governance = custom.get("governance") or {}
        for key in ("owner", "steward", "retention"):
            if key in governance:
                found[f"governance.{key}"] = str(governance[key])
        finops = custom.get("finops") or {}
        if "costCenter" in finops:
            found["finops.cost-center"] = str(finops["costCenter"])
        for tag, value in (finops.get("businessTags") or {}).items():
            found[f"finops.tag.{tag}"] = str(value)
        for column in walk_columns(self.columns.values()):
            if column.classification:
                found[f"classification.column.{column.path}"] = column.classification
            if column.critical:
                found[f"classification.critical.{column.path}"] = "true"
        classes = sorted({c.classification for c in walk_columns(self.columns.values()) if c.classification})
        if classes:
            found["classification.levels"] = ",".join(classes)
        return found


def walk_columns(columns: Iterable[ColumnRule]) -> Iterator[ColumnRule]:
    """Every column, nested fields (a.b) and array items (a[]) after their parent."""
    for column in columns:
        yield column
        yield from walk_columns(column.children)
        if column.items is not None:
            yield from walk_columns([column.items])


def _custom(entries: Any) -> dict[str, Any]:
    return {
        e["property"]: e.get("value")
        for e in entries or []
        if isinstance(e, Mapping) and isinstance(e.get("property"), str)
    }


_THRESHOLDS: Final = (
    "mustBe",
    "mustNotBe",
    "mustBeGreaterThan",
    "mustBeGreaterOrEqualTo",
    "mustBeLessThan",
    "mustBeLessOrEqualTo",
    "mustBeBetween",
    "mustNotBeBetween",
)


def _quality(
    entries: Any, column: str | None, where: str, file: str, problems: list[ContractIssue]
) -> tuple[QualityRule, ...]:
    rules = []
    for n, entry in enumerate(entries or []):
        if not isinstance(entry, Mapping) or entry.get("type", "library") != "library":
            continue  # text, sql and custom rules are for other tools
        rule = entry.get("rule")
        supported = ROW_RULES + RUN_RULES
        if rule not in supported:
            msg = f"quality rule {rule!r} is not one the target evaluates ({', '.join(supported)})"
            problems.append(ContractIssue(file, f"{where}.quality[{n}]", msg))
            continue
        if rule == "validValues" and not isinstance(entry.get("validValues"), list):
            msg = "a validValues rule needs the list `validValues`"
            problems.append(ContractIssue(file, f"{where}.quality[{n}]", msg))
            continue
        rules.append(
            QualityRule(
                rule=rule,
                column=column,
                name=str(entry.get("name") or f"{column + ': ' if column else ''}{rule}"),
                thresholds={k: entry[k] for k in _THRESHOLDS if k in entry},
                unit=str(entry.get("unit") or "rows"),
                valid_values=tuple(entry.get("validValues") or ()),
            )
        )
    return tuple(rules)


def _column(
    prop: Mapping[str, Any], prefix: str, where: str, file: str, problems: list[ContractIssue]
) -> ColumnRule:
    path = f"{prefix}{prop['name']}"
    children = tuple(
        _column(child, f"{path}.", f"{where}.properties[{i}]", file, problems)
        for i, child in enumerate(prop.get("properties") or [])
        if isinstance(child, Mapping)
    )
    items = prop.get("items")
    position = prop.get("primaryKeyPosition") if prop.get("primaryKey") else None
    partition = prop.get("partitionKeyPosition")
    partition_position = (
        (partition if isinstance(partition, int) and partition > 0 else 1_000)
        if prop.get("partitioned")
        else None
    )
    transform = _custom(prop.get("customProperties")).get("partitionTransform") or "identity"
    return ColumnRule(
        path=path,
        logical_type=prop.get("logicalType"),
        required=bool(prop.get("required")),
        unique=bool(prop.get("unique")),
        primary_key_position=(position if isinstance(position, int) and position > 0 else 1_000)
        if prop.get("primaryKey")
        else None,
        classification=prop.get("classification"),
        critical=bool(prop.get("criticalDataElement")),
        description=prop.get("description"),
        options=dict(prop.get("logicalTypeOptions") or {}),
        quality=_quality(prop.get("quality"), path, where, file, problems),
        children=children,
        items=_column({**items, "name": "[]"}, f"{path}", f"{where}.items", file, problems)
        if isinstance(items, Mapping)
        else None,
        partition_position=partition_position if not prefix else None,
        partition_transform=str(transform),
    )


def compile_contract(document: Mapping[str, Any], file: str) -> list[ObjectContract]:
    """The document's schema objects as rules; ContractError lists every rule it cannot evaluate."""
    problems: list[ContractIssue] = []
    objects = _compile(document, file, problems)
    if problems:
        msg = f"contract {file} has rules the target cannot evaluate"
        raise ContractError(msg, problems)
    return objects


def _compile(document: Mapping[str, Any], file: str, problems: list[ContractIssue]) -> list[ObjectContract]:
    custom = _custom(document.get("customProperties"))
    source = custom.get("source") or {}
    objects = []
    for i, obj in enumerate(document.get("schema") or []):
        where = f"schema[{i}]"
        columns = {
            prop["name"]: _column(prop, "", f"{where}.properties[{j}]", file, problems)
            for j, prop in enumerate(obj.get("properties") or [])
        }
        objects.append(
            ObjectContract(
                file=file,
                contract_id=str(document["id"]),
                version=str(document["version"]),
                status=str(document.get("status", "")),
                contract_name=str(document.get("name", "")),
                name=str(obj["name"]),
                physical_name=obj.get("physicalName"),
                columns=columns,
                quality=_quality(obj.get("quality"), None, where, file, problems),
                enforcement=str(custom.get("enforcement") or "fail"),
                schema_evolution=str(custom.get("schemaEvolution") or "evolve"),
                write_mode=str(custom.get("writeMode") or "append"),
                source_type=source.get("type"),
                source_object=source.get("object"),
                violation_samples=int(custom.get("violationSamples") or DEFAULT_SAMPLES),
                key_unique=custom.get("keyUniqueness", "checkpoint") != "none",
                document=document,
            )
        )
    return objects


def read_contract(path: Path) -> list[ObjectContract]:
    """Load, validate and compile one contract file; ContractError lists every problem."""
    file = str(path)
    try:
        document = load_yaml(path.read_text(encoding="utf-8"))
    except OSError as error:
        msg = f"contract {file} cannot be read: {error.strerror}"
        raise ContractError(msg) from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        msg = f"contract {file} is not valid YAML"
        raise ContractError(
            msg, [ContractIssue(file, where, str(getattr(error, "problem", error)))]
        ) from None
    issues = validate_document(document, file)
    if issues:
        msg = f"contract {file} is not a valid ODCS v3.0.2 contract ({len(issues)} problem(s))"
        raise ContractError(msg, issues)
    return compile_contract(document, file)


def contract_files(paths: Iterable[Path]) -> list[Path]:
    """The YAML files named, or found (recursively) in the folders named."""
    found = []
    for path in paths:
        if path.is_dir():
            found.extend(sorted(p for p in path.rglob("*") if p.suffix in {".yaml", ".yml"} and p.is_file()))
        elif path.exists():
            found.append(path)
        else:
            msg = f"contract path {path} does not exist"
            raise ContractError(msg)
    return found


@dataclass
class ContractSet:
    """Contracts by stream name; a stream matches an object's `name` or `physicalName`."""

    objects: dict[str, ObjectContract] = field(default_factory=dict)

    @classmethod
    def load(cls, paths: Iterable[Path]) -> ContractSet:
        found = cls()
        for file in contract_files(paths):
            for obj in read_contract(file):
                for key in {obj.name, obj.physical_name} - {None}:
                    assert key is not None
                    other = found.objects.get(key)
                    if other is not None and other.file != obj.file:
                        msg = f"stream {key!r} has two contracts: {other.file} and {obj.file}"
                        raise ContractError(msg)
                    found.objects[key] = obj
        return found

    def for_stream(self, stream: str) -> ObjectContract | None:
        return self.objects.get(stream)
