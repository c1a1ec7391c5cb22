"""Read the YAML/JSON files the platform uses and check them against `schemas/*.schema.json`.

Every problem is reported with the file, the path inside it and the fix, all of them together.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Hashable, Iterable
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from ingestion.errors import ConfigError, ConfigFileError, Problem
from ingestion.paths import SCHEMAS_DIR

TOP_LEVEL = "the top level"


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys (PyYAML silently keeps the last one)."""


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode) -> dict[Hashable, Any]:
    seen: set[Hashable] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        if key in seen:
            mark = key_node.start_mark
            msg = f"duplicate key {key!r} at line {mark.line + 1}"
            raise yaml.constructor.ConstructorError(None, None, msg, mark)
        seen.add(key)
    return loader.construct_mapping(node)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def read_yaml(file: Path) -> Any:
    """Parse a YAML file; syntax errors and duplicate keys name the file, line and column."""
    text = _read_text(file)
    try:
        return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else TOP_LEVEL
        reason = str(error.problem or error.context)
        problem = Problem(where, reason, "fix the YAML there (indentation, quoting)")
        raise ConfigFileError(file, [problem]) from None
    except yaml.YAMLError as error:
        raise ConfigFileError(file, [Problem(TOP_LEVEL, str(error), "fix the YAML syntax")]) from None


def read_json(file: Path) -> Any:
    text = _read_text(file)
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        where = f"line {error.lineno}, column {error.colno}"
        raise ConfigFileError(file, [Problem(where, error.msg, "write valid JSON there")]) from None


def _read_text(file: Path) -> str:
    try:
        return file.read_text(encoding="utf-8")
    except FileNotFoundError:
        msg = f"{file} does not exist; create it or pass the right location"
        raise ConfigError(msg) from None
    except (OSError, UnicodeDecodeError) as error:
        msg = f"{file} cannot be read ({error}); check its permissions and that it is UTF-8 text"
        raise ConfigError(msg) from None


@functools.cache
def load_schema(name: str) -> dict[str, Any]:
    """A JSON Schema from `schemas/`, itself checked against its meta-schema (draft 2020-12)."""
    file = SCHEMAS_DIR / name
    schema = read_json(file)
    try:
        jsonschema.Draft202012Validator.check_schema(schema)
    except jsonschema.SchemaError as error:
        problem = Problem(_dotted(error.absolute_path), error.message, "make it a valid draft 2020-12 schema")
        raise ConfigFileError(file, [problem]) from None
    if not isinstance(schema, dict):
        raise ConfigFileError(file, [Problem(TOP_LEVEL, "not a JSON object", "make it a JSON Schema object")])
    return schema


def validate(document: Any, schema_name: str, file: Path) -> None:
    """Raise ConfigFileError listing every place where `document` (read from `file`) breaks the schema."""
    validator = jsonschema.Draft202012Validator(
        load_schema(schema_name), format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )
    errors = sorted(validator.iter_errors(document), key=lambda e: [str(p) for p in e.absolute_path])
    if errors:
        raise ConfigFileError(file, [_problem(error, schema_name) for error in _leaves(errors)])


def _leaves(errors: Iterable[Any]) -> list[Any]:
    """For anyOf/oneOf failures, the sub-errors say more than "is not valid under any of"."""
    found: list[Any] = []
    for error in errors:
        if error.context:
            found.extend(_leaves([jsonschema.exceptions.best_match(error.context)]))
        else:
            found.append(error)
    return found


def _dotted(path: Iterable[Any]) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or TOP_LEVEL


def _problem(error: Any, schema_name: str) -> Problem:
    keyword, expected, instance = error.validator, error.validator_value, error.instance
    where = _dotted(error.absolute_path)
    message = error.message
    if keyword == "required":
        missing = [key for key in expected if isinstance(instance, dict) and key not in instance]
        message = f"missing required key(s) {', '.join(map(repr, missing))}"
        fix = f"add {', '.join(map(repr, missing))}"
    elif keyword == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        extra = sorted(set(instance) - set(allowed)) if isinstance(instance, dict) else []
        message = f"unknown key(s) {', '.join(map(repr, extra))}"
        fix = f"remove or rename them; allowed keys here: {', '.join(allowed)}"
    elif keyword == "enum":
        fix = f"use one of: {', '.join(map(repr, expected))}"
    elif keyword == "const":
        fix = f"use {expected!r}"
    elif keyword == "type":
        fix = f"use a value of type {expected}"
    elif keyword == "pattern":
        description = error.schema.get("description") if isinstance(error.schema, dict) else None
        message = f"{instance!r} has the wrong form"
        fix = f"use a value matching {expected}" + (f" ({description})" if description else "")
    elif keyword in {"minItems", "minLength"}:
        fix = "give a non-empty value"
    elif keyword == "uniqueItems":
        fix = "remove the duplicate items"
    elif keyword is None or (keyword == "not" and expected == {}):  # `false` / `not: {}`: key not allowed
        message = "this key is not allowed here"
        fix = "remove it (it does not apply to this kind of entry)"
    else:
        fix = f"see schemas/{schema_name} for what is allowed here"
    return Problem(where, message, fix)
