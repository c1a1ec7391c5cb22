"""`ingest` against a real lake: the target writes it in-process, the CLI reads it back."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from conftest import Lake, read_pyiceberg, run_target

from ingestion.cli import cli
from ingestion.errors import EXIT_CONFIG


@pytest.fixture
def lake(embedded_lake: Lake) -> Lake:
    """Embedded catalog only: `ingest` reads the embedded lake of a project."""
    return embedded_lake


INGEST = Path(sys.executable).parent / "ingest"  # the console script of this environment
FINAL_STATE = {
    "bookmarks": {
        "customers": {"replication_key_value": "2024-03-02"},
        "orders": {"replication_key_value": "2024-03-01"},
    }
}
CUSTOMERS = [  # as `--json` shows them: exact decimals as text, dates in ISO 8601
    {
        "customer_id": 1,
        "name": "Ada Lovelace",
        "signup_date": "2024-01-15",
        "credit_limit": "1500.25",
        "is_active": True,
    },
    {
        "customer_id": 2,
        "name": "[bold]Grace[/bold]",
        "signup_date": "2024-02-01",
        "credit_limit": None,
        "is_active": False,
    },
    {"customer_id": 3, "name": None, "signup_date": None, "credit_limit": "0.50", "is_active": None},
    {
        "customer_id": 4,
        "name": "Edsger Dijkstra",
        "signup_date": "2024-03-02",
        "credit_limit": "99.99",
        "is_active": True,
    },
]
ORDERS = [
    {"order_id": 100, "customer_id": 1, "amount": "19.99"},
    {"order_id": 101, "customer_id": 3, "amount": "5.00"},
]


def build_lake(lake: Lake, singer_fixture: Any, **overrides: Any) -> Lake:
    """Two runs of one pipeline: run-1 loads customers and orders, run-2 one more customer."""
    for run_id in ("run-1", "run-2"):
        run = run_target(
            lake.config(run_id=run_id, **overrides),
            singer_fixture(f"cli_lake_{run_id.replace('-', '')}.singer"),
        )
        assert run.error is None, run.error
    return lake


@pytest.fixture
def built(lake: Lake, singer_fixture: Any) -> Lake:
    return build_lake(lake, singer_fixture)


def invoke(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)


def lake_args(lake: Lake) -> list[str]:
    return ["--catalog-uri", lake.catalog_uri, "--warehouse", str(lake.warehouse)]


def by_name(payload: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {table["identifier"]: table for table in payload["tables"]}


def test_tables_json_lists_every_table_with_rows_files_snapshot_and_sample(built: Lake) -> None:
    result = invoke("tables", *lake_args(built), "--sample", "10", "--json")

    assert result.exit_code == 0, result.output
    tables = by_name(json.loads(result.stdout))
    assert list(tables) == ["acme.raw.customers", "acme.raw.orders"]
    customers, orders = tables["acme.raw.customers"], tables["acme.raw.orders"]
    assert (customers["tenant"], customers["namespace"], customers["table"]) == ("acme", "raw", "customers")
    assert (customers["rows"], customers["data_files"]) == (4, 2)
    assert (orders["rows"], orders["data_files"]) == (2, 1)
    assert (customers["batch_id"], customers["run_id"]) == ("run-2:1", "run-2")
    assert (orders["batch_id"], orders["run_id"]) == ("run-1:1", "run-1")  # untouched by run-2

    catalog = built.catalog()
    for name, shown in tables.items():
        snapshot = catalog.load_table(tuple(name.split("."))).current_snapshot()
        assert shown["snapshot_id"] == snapshot.snapshot_id
    assert sorted(customers["sample"], key=lambda r: r["customer_id"]) == CUSTOMERS
    assert sorted(orders["sample"], key=lambda r: r["order_id"]) == ORDERS
    assert len(read_pyiceberg(built, "acme.raw.customers")) == customers["rows"]


def test_sample_n_limits_the_rows_read_back(built: Lake) -> None:
    result = invoke("tables", *lake_args(built), "--sample", "1", "--json")

    tables = by_name(json.loads(result.stdout))
    assert [len(t["sample"]) for t in tables.values()] == [1, 1]
    assert tables["acme.raw.customers"]["sample"][0] in CUSTOMERS
    assert tables["acme.raw.orders"]["sample"][0] in ORDERS
    assert (
        "sample"
        not in by_name(json.loads(invoke("tables", *lake_args(built), "--json").stdout))["acme.raw.orders"]
    )


def test_tables_for_people_is_a_table_and_shows_values_verbatim(built: Lake) -> None:
    result = invoke("tables", *lake_args(built), "--sample", "5")

    assert result.exit_code == 0, result.output
    for expected in ("acme.raw.customers", "acme.raw.orders", "run-2:1", "Edsger Dijkstra", "1500.25"):
        assert expected in result.stdout
    assert "[bold]Grace[/bold]" in result.stdout  # data is never read as rich markup


def test_the_console_script_reads_the_lake_of_the_project(tmp_path: Path, singer_fixture: Any) -> None:
    project = tmp_path / "project"
    # The target's default layout: <project>/.lake/{catalog.db,warehouse} and <project>/.state.
    build_lake(Lake(project / ".lake"), singer_fixture, state_dir=str(project / ".state"))
    env = {**os.environ, "MELTANO_PROJECT_ROOT": str(project)}

    done = subprocess.run(
        [str(INGEST), "tables", "--json", "--sample", "3"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )

    assert done.returncode == 0, done.stderr
    tables = by_name(json.loads(done.stdout))
    assert {name: t["rows"] for name, t in tables.items()} == {"acme.raw.customers": 4, "acme.raw.orders": 2}
    assert all(row in CUSTOMERS for row in tables["acme.raw.customers"]["sample"])
    assert sorted(tables["acme.raw.orders"]["sample"], key=lambda r: r["order_id"]) == ORDERS

    shown = invoke("state", "show", "--json", env={"MELTANO_PROJECT_ROOT": str(project)})
    assert shown.exit_code == 0, shown.output
    assert [d["document"]["state"] for d in json.loads(shown.stdout)["documents"]] == [FINAL_STATE]


def test_state_show_returns_the_committed_state(built: Lake) -> None:
    result = invoke("state", "show", "--state-dir", str(built.state_dir), "--json")

    assert result.exit_code == 0, result.output
    [shown] = json.loads(result.stdout)["documents"]
    document = shown["document"]
    committed = built.catalog().committed_state("acme.raw")
    assert document["state"] == FINAL_STATE == committed.state
    assert (document["tenant"], document["pipeline_id"]) == ("acme", "acme.raw")
    assert document["batch_id"] == committed.batch_id == "run-2:1"
    assert list(document["commit"]["tables"]) == ["acme.raw.customers"]
    assert shown["path"] == str(built.state_dir / "acme" / "acme.raw" / "state.json")

    assert "replication_key_value" in invoke("state", "show", "--state-dir", str(built.state_dir)).stdout
    filtered = invoke(
        "state",
        "show",
        "--state-dir",
        str(built.state_dir),
        "--tenant",
        "acme",
        "--pipeline",
        "acme.raw",
        "--json",
    )
    assert len(json.loads(filtered.stdout)["documents"]) == 1
    other = invoke("state", "show", "--state-dir", str(built.state_dir), "--tenant", "globex", "--json")
    assert (other.exit_code, json.loads(other.stdout)["documents"]) == (0, [])


def test_commits_lists_the_commit_log_newest_first(built: Lake) -> None:
    result = invoke("commits", *lake_args(built), "--json")

    assert result.exit_code == 0, result.output
    commits = json.loads(result.stdout)["commits"]
    assert [(c["batch_id"], c["run_id"], c["rows"]) for c in commits] == [
        ("run-2:1", "run-2", {"acme.raw.customers": 1}),
        ("run-1:1", "run-1", {"acme.raw.customers": 3, "acme.raw.orders": 2}),
    ]
    assert commits[0]["streams"] == ["customers"]
    assert {c["pipeline_id"] for c in commits} == {"acme.raw"}

    limited = json.loads(
        invoke("commits", *lake_args(built), "--pipeline", "acme.raw", "--limit", "1", "--json").stdout
    )
    assert [c["batch_id"] for c in limited["commits"]] == ["run-2:1"]
    assert json.loads(invoke("commits", *lake_args(built), "--pipeline", "other", "--json").stdout) == {
        "commits": []
    }
    assert "acme.raw.customers: 3" in invoke("commits", *lake_args(built)).stdout


@pytest.mark.parametrize("command", [["tables"], ["tables", "--json"], ["commits"]])
def test_a_missing_lake_is_a_clear_error_and_creates_nothing(tmp_path: Path, command: list[str]) -> None:
    result = invoke(*command, "--project-dir", str(tmp_path))

    assert result.exit_code == EXIT_CONFIG
    assert result.stdout == ""
    assert result.stderr == (
        f"error: no lake at {tmp_path / '.lake' / 'catalog.db'}; run `make demo` or a job first, "
        "or point --project-dir / --catalog-uri at an existing lake\n"
    )
    assert not (tmp_path / ".lake").exists()


def test_usage_and_config_errors_exit_2_with_one_line(tmp_path: Path) -> None:
    missing = invoke("state", "show", "--state-dir", str(tmp_path / "none"))
    assert (missing.exit_code, missing.stderr.count("\n")) == (EXIT_CONFIG, 1)
    assert "no state store at" in missing.stderr

    tricky = invoke("state", "show", "--state-dir", str(tmp_path), "--tenant", "../etc")
    assert tricky.exit_code == EXIT_CONFIG
    assert "is not a tenant id" in tricky.stderr

    assert invoke("tables", "--sample", "-1").exit_code == EXIT_CONFIG  # click's own usage errors keep code 2


def test_an_empty_lake_lists_no_tables(lake: Lake) -> None:
    lake.root.mkdir(parents=True)
    lake.catalog(create=True).close()  # a writer's first open creates the (empty) database

    assert json.loads(invoke("tables", *lake_args(lake), "--json").stdout) == {
        "catalog_name": "ingest",
        "tables": [],
    }
    assert "no tables in the lake yet" in invoke("tables", *lake_args(lake)).stdout


def test_version() -> None:
    payload = json.loads(invoke("version", "--json").stdout)
    assert payload == {"name": "ingestion-platform", "version": payload["version"]}
    assert payload["version"] != "unknown"
    assert invoke("version").stdout == f"ingest (ingestion-platform) {payload['version']}\n"
