"""docs/examples/run-metadata.json is a real record of a test run (`make examples` regenerates it);
it must stay valid against schemas/run-metadata.schema.json."""

from __future__ import annotations

import json

import jsonschema
from conftest import REPO_ROOT


def test_the_example_run_metadata_is_valid() -> None:
    schema = json.loads((REPO_ROOT / "schemas" / "run-metadata.schema.json").read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    example = json.loads((REPO_ROOT / "docs" / "examples" / "run-metadata.json").read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker()).validate(example)
    assert example["status"] == "success"
    assert example["cpu_time_sec"] > 0
    assert example["totals"]["rows_written"] > 0
