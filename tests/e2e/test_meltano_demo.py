"""`meltano run tap-demo-csv target-iceberg-nessie` and `make demo`'s steps, in a copy of the project.

Each test project is a temporary copy whose loader writes into a temporary lake through the
TARGET_ICEBERG_NESSIE_* env vars (see `_commands.copy_meltano_project` for how the installed plugin
venvs are reused). Rows are compared with the CSV files, read with the csv module.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from _commands import Finished, MeltanoProject, console_script, copy_meltano_project, plugin_fingerprints, run
from conftest import Lake, read_duckdb, read_pyiceberg

LOADER = "target-iceberg-nessie"
STATE_ID = "dev:tap-demo-csv-to-target-iceberg-nessie"  # meltano.yml: default_environment dev
PIPELINE_ID = "default.raw"  # the target's default: <tenant>.<namespace>
NAMESPACE = ("default", "raw")
TABLES = {"customers": "customer_id", "orders": "order_id", "products": "sku"}  # table -> key column
ROW_COUNTS = {"customers": 50, "orders": 200, "products": 10}
SAMPLE = 3  # make demo: `ingest tables --sample 3`
READERS = {"pyiceberg": read_pyiceberg, "duckdb": read_duckdb}


def _int(text: str) -> int | None:
    return int(text) if text else None


def _text(text: str) -> str:
    return text  # the tap keeps "" for string columns the stream maps do not touch


def _text_or_none(text: str) -> str | None:
    return text or None  # stream map `x or None`


def _date(text: str) -> date | None:
    return date.fromisoformat(text) if text else None


def _timestamp(text: str) -> datetime | None:
    return datetime.fromisoformat(text) if text else None  # "...Z": timezone-aware UTC


def _money(text: str) -> Decimal | None:
    return Decimal(text) if text else None


def _flag(text: str) -> bool | None:
    return {"true": True, "false": False, "": None}[text]


def _float(text: str) -> float | None:
    return float(text) if text else None


# How each CSV column is typed by extractors/tap-spreadsheets.meltano.yml (schema_overrides + stream maps).
COLUMN_TYPES: dict[str, dict[str, Callable[[str], Any]]] = {
    "customers": {
        "customer_id": _int, "first_name": _text, "last_name": _text, "email": _text,
        "phone": _text_or_none, "country": _text, "segment": _text, "signup_date": _date,
        "is_active": _flag, "credit_limit": _money, "notes": _text_or_none,
    },
    "orders": {
        "order_id": _int, "customer_id": _int, "sku": _text, "ordered_at": _timestamp, "quantity": _int,
        "unit_price": _money, "discount_code": _text_or_none, "amount": _money, "currency": _text,
        "is_gift": _flag, "status": _text, "shipped_at": _timestamp,
    },
    "products": {
        "sku": _text, "name": _text, "category": _text, "list_price": _money, "in_stock": _flag,
        "weight_kg": _float,
    },
}  # fmt: skip


def csv_rows(project: MeltanoProject, table: str) -> dict[Any, dict[str, Any]]:
    """The CSV file's rows, typed, by key."""
    with (project.root / "demo" / "data" / f"{table}.csv").open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        assert reader.fieldnames == list(COLUMN_TYPES[table]), f"{table}.csv columns changed"
        typed = [{c: convert(row[c]) for c, convert in COLUMN_TYPES[table].items()} for row in reader]
    return {row[TABLES[table]]: row for row in typed}


def table_rows(rows: list[dict[str, Any]], table: str) -> dict[Any, dict[str, Any]]:
    """Rows read back, limited to the CSV columns, by key."""
    return {row[TABLES[table]]: {c: row[c] for c in COLUMN_TYPES[table]} for row in rows}


def ingest_summary(finished: Finished) -> dict[str, Any]:
    found = re.findall(r"INGEST_SUMMARY (\{.*\})\s*$", finished.stderr, flags=re.MULTILINE)
    assert len(found) == 1, f"one INGEST_SUMMARY line from the loader\n{finished.explain()}"
    summary: dict[str, Any] = json.loads(found[0])
    return summary


def state_document(lake: Lake) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(
        (lake.state_dir / "default" / PIPELINE_ID / "state.json").read_text(encoding="utf-8")
    )
    return document


def snapshot_ids(lake: Lake) -> dict[str, int | None]:
    catalog = lake.catalog()
    found = {}
    for table in TABLES:
        loaded = catalog.load_table((*NAMESPACE, table))
        assert loaded is not None, f"table default.raw.{table} exists"
        snapshot = loaded.current_snapshot()
        found[table] = snapshot.snapshot_id if snapshot is not None else None
    return found


@dataclass(frozen=True)
class TwoRuns:
    """Two `meltano run`s of the same pipeline on unchanged files, and the lake after the first."""

    project: MeltanoProject
    first: Finished
    second: Finished
    rows_after_first: dict[str, dict[str, list[dict[str, Any]]]]  # reader -> table -> rows
    snapshots_after_first: dict[str, int | None]
    state_after_first: dict[str, Any]
    fingerprints: tuple[dict[str, str], dict[str, str]]  # plugin venvs before, after


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory: pytest.TempPathFactory) -> TwoRuns:
    root = tmp_path_factory.mktemp("meltano-demo")
    project = copy_meltano_project(root / "project", Lake(root / "lake"))
    before = plugin_fingerprints()
    first = project.meltano_run("tap-demo-csv", LOADER)
    if first.returncode != 0:
        pytest.fail(f"the first meltano run failed\n{first.explain()}")
    rows = {
        name: {table: reader(project.lake, ".".join((*NAMESPACE, table))) for table in TABLES}
        for name, reader in READERS.items()
    }
    snapshots, state = snapshot_ids(project.lake), state_document(project.lake)
    second = project.meltano_run("tap-demo-csv", LOADER)
    return TwoRuns(project, first, second, rows, snapshots, state, (before, plugin_fingerprints()))


def test_first_run_creates_the_three_tables_in_the_lake_the_env_vars_name(two_runs: TwoRuns) -> None:
    lake = two_runs.project.lake
    tables = sorted(ident[-1] for ident in lake.catalog().list_tables(NAMESPACE))
    assert tables == sorted(TABLES)
    assert not (two_runs.project.root / ".lake").exists(), "the loader wrote where the env vars said"
    summary = ingest_summary(two_runs.first)
    assert {s: v["records"] for s, v in summary["streams"].items()} == ROW_COUNTS
    assert {s: v["rows_committed"] for s, v in summary["streams"].items()} == ROW_COUNTS
    assert summary["pipeline_id"] == PIPELINE_ID


@pytest.mark.parametrize("reader", sorted(READERS))
@pytest.mark.parametrize("table", sorted(TABLES))
def test_first_run_tables_hold_exactly_the_csv_rows(two_runs: TwoRuns, reader: str, table: str) -> None:
    rows = two_runs.rows_after_first[reader][table]
    assert len(rows) == ROW_COUNTS[table]
    expected = csv_rows(two_runs.project, table)
    actual = table_rows(rows, table)
    assert sorted(actual) == sorted(expected), "the same keys, each once"
    mismatched = [key for key in expected if actual[key] != expected[key]]
    assert mismatched == [], f"first differing row: {actual[mismatched[0]]} != {expected[mismatched[0]]}"
    source = str(two_runs.project.root / "demo" / "data" / f"{table}.csv")
    assert {row["_sdc_filename"] for row in rows} == {source}, "the copy's CSV file was read"


@pytest.mark.parametrize("reader", sorted(READERS))
def test_typed_values_survive_the_round_trip(two_runs: TwoRuns, reader: str) -> None:
    customers = table_rows(two_runs.rows_after_first[reader]["customers"], "customers")
    assert customers[2]["notes"] == 'Asked for "net 30" terms'
    assert customers[2]["signup_date"] == date(2024, 2, 29)
    assert customers[2]["is_active"] is True
    limit = customers[2]["credit_limit"]
    assert isinstance(limit, Decimal)
    assert limit.as_tuple() == Decimal("34000.00").as_tuple(), "NUMERIC(38, 2): two decimal places"
    assert customers[1]["phone"] == "+38 973 4994557"
    assert customers[1]["notes"] is None
    orders = table_rows(two_runs.rows_after_first[reader]["orders"], "orders")
    ordered_at = orders[100001]["ordered_at"]
    assert isinstance(ordered_at, datetime)
    assert ordered_at.utcoffset() is not None
    assert ordered_at == datetime.fromisoformat("2024-03-01T14:16:19+00:00")
    assert orders[100003]["shipped_at"] is None
    assert orders[100001]["discount_code"] is None
    products = table_rows(two_runs.rows_after_first[reader]["products"], "products")
    assert products["SKU-1001"]["name"] == "Ceramic mug, 350 ml"
    assert products["SKU-1001"]["weight_kg"] == pytest.approx(0.431)
    assert products["SKU-1003"]["in_stock"] is False


def test_second_run_on_unchanged_files_loads_no_new_rows(two_runs: TwoRuns) -> None:
    assert two_runs.second.returncode == 0, two_runs.second.explain()
    summary = ingest_summary(two_runs.second)
    assert summary["run_id"] != ingest_summary(two_runs.first)["run_id"]
    assert {s: v["records"] for s, v in summary["streams"].items()} == dict.fromkeys(TABLES, 0)
    assert all(v["rows_committed"] == 0 for v in summary["streams"].values())
    lake = two_runs.project.lake
    assert {t: len(read_pyiceberg(lake, ".".join((*NAMESPACE, t)))) for t in TABLES} == ROW_COUNTS
    assert {t: len(read_duckdb(lake, ".".join((*NAMESPACE, t)))) for t in TABLES} == ROW_COUNTS
    assert snapshot_ids(lake) == two_runs.snapshots_after_first, "no table got a new snapshot"


def test_state_store_document_stays_valid_and_matches_catalog_and_meltano(two_runs: TwoRuns) -> None:
    first = two_runs.state_after_first
    bookmarks = first["state"]["bookmarks"]
    assert sorted(bookmarks) == sorted(TABLES)
    assert {b["replication_key"] for b in bookmarks.values()} == {"_sdc_last_modified"}

    second = state_document(two_runs.project.lake)
    assert (second["tenant"], second["pipeline_id"]) == ("default", PIPELINE_ID)
    assert second["state"] == first["state"], "unchanged files: the bookmarks did not move"
    if second != first:  # the second run committed a checkpoint of its own: it must be newer
        assert second["run_id"] != first["run_id"]
        assert datetime.fromisoformat(second["committed_at"]) >= datetime.fromisoformat(first["committed_at"])
    assert second["batch_id"] == second["commit"]["commit_id"]

    committed = two_runs.project.lake.catalog().committed_state(PIPELINE_ID)
    assert committed is not None
    assert committed.state == second["state"], "the state store mirrors the catalog"
    meltano_state = two_runs.project.meltano("state", "get", STATE_ID)
    assert meltano_state.returncode == 0, meltano_state.explain()
    assert json.loads(meltano_state.stdout)["singer_state"] == second["state"], "Meltano saved the same state"


def test_the_repos_plugin_venvs_were_reused_not_reinstalled(two_runs: TwoRuns) -> None:
    before, after = two_runs.fingerprints
    assert before, "the repo's plugin venvs carry Meltano fingerprints"
    assert after == before


def test_make_demo_steps_load_and_print_the_tables(tmp_path: Path) -> None:
    """`make demo` = `meltano run demo` then `ingest tables --sample 3`.

    `ingest tables` finds the lake from its flags, its INGEST_* variables, then the loader's
    TARGET_ICEBERG_NESSIE_* ones, then the project (<project>/.lake). Here the loader's variables
    name the copy's own .lake, the project default too, so either way both commands use one lake.
    """
    project = copy_meltano_project(tmp_path / "project", Lake(tmp_path / "project" / ".lake"))
    demo = project.meltano_run("demo")  # the `demo` job: tap-demo-csv target-iceberg-nessie
    assert demo.returncode == 0, demo.explain()

    shown = run(
        [console_script("ingest"), "tables", "--sample", str(SAMPLE)], cwd=project.root, env=project.env
    )
    assert shown.returncode == 0, shown.explain()
    for table, count in ROW_COUNTS.items():
        name = ".".join((*NAMESPACE, table))
        assert re.search(rf"{re.escape(name)}\W+{count}\b", shown.stdout), (
            f"{name} with {count} rows\n{shown.stdout}"
        )
    assert "SKU-" in shown.stdout, "sample rows are printed"

    as_json = run(
        [console_script("ingest"), "tables", "--sample", str(SAMPLE), "--json"],
        cwd=project.root,
        env=project.env,
    )
    assert as_json.returncode == 0, as_json.explain()
    listed = {t["identifier"]: t for t in json.loads(as_json.stdout)["tables"]}
    assert {name: t["rows"] for name, t in listed.items()} == {
        f"default.raw.{t}": n for t, n in ROW_COUNTS.items()
    }
    for table in TABLES:
        sample = listed[f"default.raw.{table}"]["sample"]
        keys = {str(k) for k in csv_rows(project, table)}
        assert len(sample) == SAMPLE
        assert {str(row[TABLES[table]]) for row in sample} <= keys
