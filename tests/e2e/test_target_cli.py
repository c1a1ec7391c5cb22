"""`target-iceberg-nessie` as a user runs it: --about, --config/--input, exit codes, what lands."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from _commands import Finished, console_script, run
from conftest import REPO_ROOT, Lake, read_duckdb, read_pyiceberg
from singer_expect import actual_rows, expected_rows, merged_properties, parse_messages


@pytest.fixture
def lake(embedded_lake: Lake) -> Lake:
    """Embedded catalog only: the command line is what is tested here (catalogs: parametrized tests)."""
    return embedded_lake


NAME = "target-iceberg-nessie"
EXIT_BAD_INPUT = 2  # the target's exit code for bad input or config (fix it, then re-run)
# The settings a user must be able to find in --about, with what they mean.
CORE_SETTINGS = (
    "catalog_type",
    "catalog_uri",
    "warehouse",
    "state_dir",
    "tenant",
    "namespace",
    "pipeline_id",
    "run_id",
)

USERS_SCHEMA = {
    "type": "object",
    "properties": {
        "id": {"type": "integer"},
        "name": {"type": ["string", "null"]},
        "signed_up_at": {"type": ["string", "null"], "format": "date-time"},
        "balance": {"type": ["number", "null"], "multipleOf": 0.01},
    },
}
EVENTS_SCHEMA = {
    "type": "object",
    "properties": {
        "id": {"type": "integer"},
        "kind": {"type": "string"},
        "context": {
            "type": "object",
            "properties": {"ip": {"type": "string"}, "tags": {"type": "array", "items": {"type": "string"}}},
        },
    },
}


def _line(message: dict[str, Any]) -> str:
    return json.dumps(message, ensure_ascii=False) + "\n"


def schema(stream: str, body: dict[str, Any]) -> str:
    return _line({"type": "SCHEMA", "stream": stream, "schema": body, "key_properties": ["id"]})


def record(stream: str, **values: Any) -> str:
    return _line({"type": "RECORD", "stream": stream, "record": values})


def state(**value: Any) -> str:
    return _line({"type": "STATE", "value": value})


SMOKE = (
    schema("users", USERS_SCHEMA)
    + schema("events", EVENTS_SCHEMA)
    + record("users", id=1, name="Ada", signed_up_at="2024-01-02T03:04:05Z", balance=10.5)
    + record("events", id=1, kind="login", context={"ip": "10.0.0.1", "tags": ["web", "eu"]})
    + record("users", id=2, name=None, signed_up_at=None, balance=None)
    + state(bookmarks={"users": 2, "events": 1})
    + record("users", id=3, name='Zoë "quoted"', signed_up_at="2024-01-03T00:00:00+02:00", balance=-3)
    + record("events", id=2, kind="logout", context={"ip": "10.0.0.2", "tags": []})
    + state(bookmarks={"users": 3, "events": 2})
)


def run_target_cli(lake: Lake, tmp_path: Path, singer: str, **config: Any) -> Finished:
    config_file = tmp_path / "config.json"
    config_file.write_text(json.dumps(lake.config(**config)), encoding="utf-8")
    input_file = tmp_path / "input.singer"
    input_file.write_text(singer, encoding="utf-8")
    return run([console_script(NAME), "--config", config_file, "--input", input_file], cwd=tmp_path)


def error_lines(finished: Finished) -> list[str]:
    return [line for line in finished.stderr.splitlines() if "ERROR" in line]


def ingest_summary(finished: Finished) -> dict[str, Any]:
    found = re.findall(r"INGEST_SUMMARY (\{.*\})\s*$", finished.stderr, flags=re.MULTILINE)
    assert len(found) == 1, finished.explain()
    summary: dict[str, Any] = json.loads(found[0])
    return summary


def committed_table(lake: Lake, table: str) -> Any:
    """The committed table, or None; a lake whose catalog database was never created has none."""
    if not (lake.root / "catalog.db").exists():
        return None
    return lake.catalog().load_table(tuple(table.split(".")))


def parquet_files(lake: Lake) -> list[Path]:
    return sorted(lake.warehouse.rglob("*.parquet"))


# -- --about ---------------------------------------------------------------------------------


def test_about_text_names_the_target_its_capabilities_and_settings(tmp_path: Path) -> None:
    finished = run([console_script(NAME), "--about"], cwd=tmp_path)
    assert finished.returncode == 0, finished.explain()
    out = finished.stdout
    assert f"Name: {NAME}" in out
    capabilities = re.search(r"^Capabilities:\n((?:  - .*\n)+)", out, flags=re.MULTILINE)
    assert capabilities is not None, out
    assert capabilities.group(1).split() == ["-", "about", "-", "structured-logging"]
    for setting in CORE_SETTINGS:
        assert f"- Name: {setting}\n" in out
        assert f"Environment Variable: TARGET_ICEBERG_NESSIE_{setting.upper()}" in out


def test_about_json_documents_every_setting_and_flags_catalog_uri_secret(tmp_path: Path) -> None:
    finished = run([console_script(NAME), "--about", "--format", "json"], cwd=tmp_path)
    assert finished.returncode == 0, finished.explain()
    about = json.loads(finished.stdout)
    assert about["name"] == NAME
    assert about["capabilities"] == ["about", "structured-logging"]
    settings = about["settings"]["properties"]
    assert set(CORE_SETTINGS) <= set(settings)
    undocumented = [name for name, spec in settings.items() if not str(spec.get("description", "")).strip()]
    assert undocumented == [], "every setting says what it does"
    catalog_uri = settings["catalog_uri"]
    assert catalog_uri.get("secret") is True or catalog_uri.get("sensitive") is True, catalog_uri
    assert catalog_uri.get("writeOnly") is True, "secret settings are write-only in JSON Schema"
    assert about["settings"].get("required", []) == [], "the embedded lake works with no settings at all"


def test_meltano_yml_marks_the_settings_the_target_flags_secret_as_sensitive(tmp_path: Path) -> None:
    """A secret setting declared without `sensitive: true` is shown in plain by `meltano config`."""
    finished = run([console_script(NAME), "--about", "--format", "json"], cwd=tmp_path)
    assert finished.returncode == 0, finished.explain()
    secret = {n for n, s in json.loads(finished.stdout)["settings"]["properties"].items() if s.get("secret")}
    project = yaml.safe_load((REPO_ROOT / "meltano.yml").read_text(encoding="utf-8"))
    (loader,) = (p for p in project["plugins"]["loaders"] if p["name"] == NAME)
    declared = {s["name"]: s for s in loader["settings"]}
    plain = sorted(
        name
        for name in secret & set(declared)
        if not (declared[name].get("sensitive") is True or declared[name].get("kind") == "password")
    )
    assert plain == [], f"meltano.yml declares secret target settings without `sensitive: true`: {plain}"


# -- a run on a file -------------------------------------------------------------------------


def test_run_on_a_singer_file_commits_tables_and_prints_state(lake: Lake, tmp_path: Path) -> None:
    finished = run_target_cli(lake, tmp_path, SMOKE)
    assert finished.returncode == 0, finished.explain()
    messages = parse_messages(SMOKE)
    sent = [m["value"] for m in messages if m["type"] == "STATE"]
    printed = [json.loads(line) for line in finished.stdout.splitlines() if line.strip()]
    assert printed == sent, "stdout carries exactly the STATE values, in order, after their commits"

    for stream in ("users", "events"):
        props = merged_properties(messages, stream)
        expected = expected_rows(messages, stream, "id")
        for reader in (read_pyiceberg, read_duckdb):
            rows = reader(lake, f"acme.raw.{stream}")
            assert actual_rows(rows, props, "id") == expected, f"{stream} via {reader.__name__}"

    summary = ingest_summary(finished)
    assert {s: v["rows_committed"] for s, v in summary["streams"].items()} == {"users": 3, "events": 2}
    document = json.loads((lake.state_dir / "acme" / "acme.raw" / "state.json").read_text(encoding="utf-8"))
    assert document["state"] == sent[-1]
    assert document["run_id"] == "run-1"


# -- bad input -------------------------------------------------------------------------------

_USERS = schema("users", USERS_SCHEMA)
_GOOD = record("users", id=1, name="a") + record("users", id=2, name="b")
_LATER_STATE = state(bookmarks={"users": 9})

MALFORMED = [
    # id, input, the line the error must name
    (
        "truncated-json",
        _USERS + _GOOD + '{"type": "RECORD", "stream": "users", "record": {"id": 3, "na\n' + _LATER_STATE,
        4,
    ),
    ("not-json", _USERS + _GOOD + "this is not JSON\n" + _LATER_STATE, 4),
    ("not-a-message", _USERS + _GOOD + '["RECORD", "users"]\n' + _LATER_STATE, 4),
    ("wrong-type", _USERS + _GOOD + record("users", id="three") + _LATER_STATE, 4),
    ("bad-timestamp", _USERS + _GOOD + record("users", id=3, signed_up_at="yesterday") + _LATER_STATE, 4),
    ("record-before-schema", record("users", id=1) + _USERS + _LATER_STATE, 1),
]


@pytest.mark.parametrize(("singer", "line"), [pytest.param(s, n, id=i) for i, s, n in MALFORMED])
def test_malformed_input_exits_2_names_the_line_and_commits_nothing(
    lake: Lake, tmp_path: Path, singer: str, line: int
) -> None:
    finished = run_target_cli(lake, tmp_path, singer)
    assert finished.returncode == EXIT_BAD_INPUT, finished.explain()
    errors = error_lines(finished)
    assert len(errors) == 1, finished.explain()
    assert re.search(rf"\bline {line}\b", errors[0]), errors[0]
    assert "Traceback" not in finished.stderr, "bad input is reported in one line, not a traceback"
    assert finished.stdout.strip() == "", "no STATE is printed for a checkpoint that did not commit"
    assert committed_table(lake, "acme.raw.users") is None, "no table was committed"
    assert parquet_files(lake) == [], "the staged data files were deleted"


def test_schema_without_properties_is_rejected_like_other_bad_input(lake: Lake, tmp_path: Path) -> None:
    """Regression: {"type": "object"} used to pass _on_schema (its check defaulted 'properties' to {});
    the RECORD then crashed the flush with IndexError from pyarrow (zero-column Parquet): exit 1, a
    traceback, no line number, and the zero-column Parquet file left in the warehouse."""
    singer = (
        _line({"type": "SCHEMA", "stream": "loose", "schema": {"type": "object"}, "key_properties": []})
        + record("loose", id=1, name="lost?")
        + _LATER_STATE
    )
    finished = run_target_cli(lake, tmp_path, singer)
    assert finished.returncode == EXIT_BAD_INPUT, finished.explain()
    assert "Traceback" not in finished.stderr, finished.explain()
    errors = error_lines(finished)
    assert len(errors) == 1, finished.explain()
    assert re.search(r"\bline 1\b", errors[0]), finished.explain()
    assert "properties" in errors[0]
    assert parquet_files(lake) == [], "no data file is left behind"


# -- settings that must not be silently ignored ----------------------------------------------


def _committed_ids(lake: Lake, table: str = "acme.raw.users") -> list[int]:
    return sorted(row["id"] for row in read_pyiceberg(lake, table))


def test_a_second_invocation_with_the_same_run_id_does_not_drop_its_rows(lake: Lake, tmp_path: Path) -> None:
    """BUG: batch ids are run_id:seq with seq restarting at 1 in every process. A second invocation with the
    same `run_id` (a documented setting; e.g. an orchestrator retrying a run) collides with the commit log
    row of batch run-1:1; commit_checkpoint reads the IntegrityError as "already committed", so the rows
    are dropped while the STATE is printed, the state store advances and the exit code is 0."""
    first = run_target_cli(lake, tmp_path, _USERS + record("users", id=1) + state(n=1))
    assert first.returncode == 0, first.explain()
    second = run_target_cli(lake, tmp_path, _USERS + record("users", id=2) + state(n=2))
    printed = [json.loads(line) for line in second.stdout.splitlines() if line.strip()]
    committed = lake.catalog().committed_state("acme.raw")
    assert committed is not None
    store = json.loads((lake.state_dir / "acme" / "acme.raw" / "state.json").read_text(encoding="utf-8"))
    # Exactly once: either the rows landed with their state, or the run failed and nothing moved on.
    if second.returncode == 0:
        assert _committed_ids(lake) == [1, 2], second.explain()
        assert printed == [{"n": 2}]
    else:
        assert printed == []
        assert _committed_ids(lake) == [1]
    assert store["state"] == committed.state, "the state store mirrors the catalog's committed state"


def test_an_advertised_load_method_is_not_silently_ignored(lake: Lake, tmp_path: Path) -> None:
    """BUG: --about advertises the SDK's built-in `load_method` (append-only/upsert/overwrite), plus
    `add_record_metadata` and `batch_size_rows`, but the target never reads them: `overwrite` appends.
    Either honour the setting or refuse it (exit 2 naming it) — or stop advertising it."""
    first = run_target_cli(
        lake, tmp_path, _USERS + _GOOD + state(n=1), load_method="overwrite", run_id="run-a"
    )
    if first.returncode == EXIT_BAD_INPUT:
        assert any("load_method" in line for line in error_lines(first)), first.explain()
        return
    assert first.returncode == 0, first.explain()
    second = run_target_cli(
        lake, tmp_path, _USERS + record("users", id=7) + state(n=2), load_method="overwrite", run_id="run-b"
    )
    assert second.returncode == 0, second.explain()
    assert _committed_ids(lake) == [7], "overwrite: the table holds only the last run's rows"


def test_fractional_seconds_in_a_config_file_are_accepted(lake: Lake, tmp_path: Path) -> None:
    singer = '{"type":"SCHEMA","stream":"users","schema":{"properties":{"id":{"type":"integer"}}}}\n'
    singer += '{"type":"RECORD","stream":"users","record":{"id":1}}\n{"type":"STATE","value":{"n":1}}\n'
    finished = run_target_cli(lake, tmp_path, singer, checkpoint_interval_seconds=0.5, microbatch_seconds=2.5)
    assert finished.returncode == 0, finished.explain()
    assert _committed_ids(lake) == [1]
