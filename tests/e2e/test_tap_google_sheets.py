"""`meltano run tap-google-sheets target-iceberg-nessie` against the local Google APIs (fakes.google_sheets).

One copy of the project runs three times: a full load during which the Sheets API answers one 503
and one 429; a run with nothing changed (Drive's modifiedTime says so: no Sheets request at all);
a run after a cell edit and a new row, which reads every sheet again (Drive has no per-sheet time).
Every row of the tables is compared with the fake's cells, rendered as the tap renders them; the
data contract assets/google_sheets applies to sales_targets. Each run's API calls, counted by the
HTTP meter in the plugin venv, equal the requests the fake served.
"""

from __future__ import annotations

import json
import math
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from _commands import Finished, MeltanoProject, copy_meltano_project, redirect_extractor
from conftest import REPO_ROOT, Lake, read_duckdb, read_pyiceberg
from fakes.base import Fault, Served
from fakes.google import rfc3339
from fakes.google_sheets import Column, FakeGoogleSheets, Sheet, unformatted

sys.path.insert(0, str(REPO_ROOT / "packages" / "ingest-http-meter" / "src"))
from ingest_http_meter import read_counts

EXTRACTOR = "tap-google-sheets"
LOADER = "target-iceberg-nessie"
NAMESPACE = "default.raw"
PIPELINE_ID = "default.raw"
TABLES = ("sales_targets", "accounts")  # the sheet "scratch" has only a header row: the tap skips it
READERS = {"pyiceberg": read_pyiceberg, "duckdb": read_duckdb}
SHEETS_EPOCH_DAYS = 25569  # the tap converts serial numbers with 1970-01-01 = day 25569


def tap_value(kind: str, value: Any) -> Any:
    """A cell as tap-google-sheets 3.1.2 emits it and the lake keeps it (transform.py)."""
    if value is None:
        return None
    if kind == "text":
        return str(value)
    if kind == "bool":
        return "true" if value else "false"  # boolean|string column: the loader keeps text
    if kind == "number":
        return str(Decimal(str(unformatted_number(value))))  # singer.decimal: a decimal string
    # date and date-time: seconds from the serial number, floored (so float error can cost a second)
    serial = unformatted(Column("cell", kind), value)
    seconds = math.floor((serial - SHEETS_EPOCH_DAYS) * 86400)
    return (datetime(1970, 1, 1) + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def unformatted_number(value: Decimal) -> int | float:
    return int(value) if value == value.to_integral_value() else float(value)


def expected_rows(fake: FakeGoogleSheets, sheet: Sheet) -> list[dict[str, Any]]:
    rows = []
    for number, cells in enumerate(sheet.rows, start=2):
        row: dict[str, Any] = {
            "__sdc_spreadsheet_id": fake.spreadsheet_id,
            "__sdc_sheet_id": sheet.sheet_id,
            "__sdc_row": number,
        }
        padded = [*cells, *[None] * (len(sheet.columns) - len(cells))]
        row.update({c.name: tap_value(c.kind, v) for c, v in zip(sheet.columns, padded, strict=True)})
        rows.append(row)
    return rows


def by_row(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(rows, key=lambda r: (r["__sdc_row"], json.dumps(r, sort_keys=True, default=str)))


@dataclass
class Run:
    finished: Finished
    served: list[Served]  # what the fake served during this run
    meter: dict[str, int]  # the plugin venv's HTTP meter, per host
    state: dict[str, Any]


@dataclass
class SheetsRuns:
    fake: FakeGoogleSheets
    project: MeltanoProject
    runs: list[Run]
    expected: list[dict[str, list[dict[str, Any]]]]  # per run: table -> the sheet's rows at that time
    lake_rows: list[dict[str, dict[str, list[dict[str, Any]]]]]  # per run: reader -> table -> rows
    modified: list[str]  # the spreadsheet's Drive modifiedTime at each run


def tap_env(fake: FakeGoogleSheets, **overrides: str) -> dict[str, str]:
    env = {
        "TAP_GOOGLE_SHEETS_CLIENT_ID": fake.oauth.client_id,
        "TAP_GOOGLE_SHEETS_CLIENT_SECRET": fake.oauth.client_secret,
        "TAP_GOOGLE_SHEETS_REFRESH_TOKEN": fake.oauth.refresh_token,
        "TAP_GOOGLE_SHEETS_SPREADSHEET_ID": fake.spreadsheet_id,
        "TARGET_ICEBERG_NESSIE_CONTRACTS": json.dumps([str(REPO_ROOT / "assets" / "google_sheets")]),
    }
    return {**env, **overrides}


def state_document(lake: Lake) -> dict[str, Any]:
    path = lake.state_dir / "default" / PIPELINE_ID / "state.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}  # type: ignore[no-any-return]


def run_once(fake: FakeGoogleSheets, project: MeltanoProject, meter: Path) -> Run:
    before = fake.request_count
    finished = project.meltano_run(
        EXTRACTOR, LOADER, env={**tap_env(fake), "INGEST_HTTP_METER_DIR": str(meter)}
    )
    assert finished.returncode == 0, finished.explain()
    served = list(fake.served[before:])
    return Run(finished, served, read_counts(meter) if meter.is_dir() else {}, state_document(project.lake))


def lake_rows(lake: Lake) -> dict[str, dict[str, list[dict[str, Any]]]]:
    return {name: {t: reader(lake, f"{NAMESPACE}.{t}") for t in TABLES} for name, reader in READERS.items()}


@pytest.fixture(scope="module")
def sheets_runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SheetsRuns]:
    root = tmp_path_factory.mktemp("google-sheets")
    with FakeGoogleSheets() as fake:
        project = copy_meltano_project(root / "project", Lake(root / "lake"), extractors=(EXTRACTOR,))
        redirect_extractor(project, EXTRACTOR, fake.redirects)
        values = f"/v4/spreadsheets/{fake.spreadsheet_id}/values/"
        fake.inject(Fault(503, path_prefix=f"{values}'sales_targets'"))  # transient: retried by the tap
        fake.inject(Fault(429, retry_after=1, path_prefix=f"{values}'accounts'"))
        expected, rows, runs, modified = [], [], [], []
        modified.append(rfc3339(fake.files[fake.spreadsheet_id].modified))
        runs.append(run_once(fake, project, root / "meter-1"))
        assert fake.pending_faults() == 0, "both faults were served"
        expected.append({t: expected_rows(fake, fake.sheet(t)) for t in TABLES})
        rows.append(lake_rows(project.lake))

        runs.append(run_once(fake, project, root / "meter-2"))  # nothing changed
        rows.append(lake_rows(project.lake))

        fake.set_cell("sales_targets", 5, "target_eur", Decimal("512345.25"))
        fake.set_cell("sales_targets", 5, "comment", "raised after the Q1 review")
        fake.append_row("accounts", [Decimal(1013), "Account 13", datetime(2025, 6, 30, tzinfo=UTC), True])
        modified.append(rfc3339(fake.files[fake.spreadsheet_id].modified))
        runs.append(run_once(fake, project, root / "meter-3"))
        expected.append({t: expected_rows(fake, fake.sheet(t)) for t in TABLES})
        rows.append(lake_rows(project.lake))
        yield SheetsRuns(fake, project, runs, expected, rows, modified)


@pytest.mark.parametrize("reader", sorted(READERS))
@pytest.mark.parametrize("table", TABLES)
def test_first_run_loads_every_row_of_every_sheet(sheets_runs: SheetsRuns, reader: str, table: str) -> None:
    """Through a 503 and a 429 (each retried), every cell arrives as the tap renders it."""
    actual = sheets_runs.lake_rows[0][reader][table]
    assert by_row(actual) == by_row(sheets_runs.expected[0][table])
    statuses = [s.status for s in sheets_runs.runs[0].served]
    assert statuses.count(503) == 1
    assert statuses.count(429) == 1


def test_contract_applies_to_sales_targets_and_every_row_passes(sheets_runs: SheetsRuns) -> None:
    summary = ingest_summary(sheets_runs.runs[0].finished)
    streams = summary["streams"]
    assert streams["sales_targets"]["contract"] == "urn:contract:google_sheets:sales_targets@1.0.0"
    assert streams["sales_targets"]["violations"]["quarantined"] == 0
    assert streams["sales_targets"]["rows_committed"] == len(sheets_runs.expected[0]["sales_targets"])
    assert "contract" not in streams["accounts"], "no contract for accounts: loaded as the tap describes it"
    catalog = sheets_runs.project.lake.catalog()
    assert catalog.load_table(("default", "raw", "sales_targets__rejected")) is None


def test_unchanged_spreadsheet_is_not_read_again(sheets_runs: SheetsRuns) -> None:
    second = sheets_runs.runs[1]
    paths = [s.path for s in second.served]
    assert paths == ["/token", f"/drive/v3/files/{sheets_runs.fake.spreadsheet_id}"], paths
    assert "not read" in second.finished.stderr
    assert sheets_runs.lake_rows[1] == sheets_runs.lake_rows[0], "no rows were added"


@pytest.mark.parametrize("reader", sorted(READERS))
@pytest.mark.parametrize("table", TABLES)
def test_edited_spreadsheet_is_read_again_whole(sheets_runs: SheetsRuns, reader: str, table: str) -> None:
    """Append mode: the tables hold the first load and the third run's full read of every sheet."""
    actual = sheets_runs.lake_rows[2][reader][table]
    assert by_row(actual) == by_row(sheets_runs.expected[0][table] + sheets_runs.expected[1][table])
    values = [s for s in sheets_runs.runs[2].served if "/values/" in s.path]
    assert {s.path.split("/values/")[1].split("!")[0] for s in values} == {"'sales_targets'", "'accounts'"}


def test_edits_are_in_the_third_load(sheets_runs: SheetsRuns) -> None:
    targets = sheets_runs.lake_rows[2]["pyiceberg"]["sales_targets"]
    row5 = sorted((r for r in targets if r["__sdc_row"] == 5), key=lambda r: r["target_eur"])
    assert [r["target_eur"] for r in row5] == [
        "512345.25",
        str(sheets_runs.expected[0]["sales_targets"][3]["target_eur"]),
    ]
    assert max(r["__sdc_row"] for r in sheets_runs.lake_rows[2]["pyiceberg"]["accounts"]) == 14


def test_state_records_the_modification_time_of_each_complete_sync(sheets_runs: SheetsRuns) -> None:
    spreadsheet, (first, second, third) = sheets_runs.fake.spreadsheet_id, sheets_runs.runs
    key = "ingest_spreadsheet_modified_time"
    assert first.state["state"][key] == {spreadsheet: sheets_runs.modified[0]}
    assert second.state["state"][key] == first.state["state"][key]
    assert third.state["state"][key] == {spreadsheet: sheets_runs.modified[1]}
    bookmarks = third.state["state"]["bookmarks"]
    assert set(bookmarks) >= set(TABLES)
    assert all(bookmarks[t] > first.state["state"]["bookmarks"][t] for t in TABLES), "new sheet versions"


def test_api_calls_metered_in_the_tap_equal_the_requests_served(sheets_runs: SheetsRuns) -> None:
    for number, run in enumerate(sheets_runs.runs, start=1):
        assert sum(run.meter.values()) == len(run.served), f"run {number}"
        assert set(run.meter) == {sheets_runs.fake.url.removeprefix("http://")}, f"run {number}"


def ingest_summary(finished: Finished) -> dict[str, Any]:
    lines = [line for line in finished.stderr.splitlines() if "INGEST_SUMMARY {" in line]
    assert len(lines) == 1, finished.explain()
    summary: dict[str, Any] = json.loads(lines[0].split("INGEST_SUMMARY ", 1)[1])
    return summary


def test_refused_token_names_the_extractor_and_settings_and_commits_nothing_of_that_sheet(
    tmp_path: Path,
) -> None:
    """A permanent 401 on one sheet's values: a clear error, exit non-zero, no table for that sheet."""
    with FakeGoogleSheets() as fake:
        project = copy_meltano_project(tmp_path / "project", Lake(tmp_path / "lake"), extractors=(EXTRACTOR,))
        redirect_extractor(project, EXTRACTOR, fake.redirects)
        fake.inject(
            Fault(401, times=100, path_prefix=f"/v4/spreadsheets/{fake.spreadsheet_id}/values/'accounts'")
        )
        finished = project.meltano_run(EXTRACTOR, LOADER, env=tap_env(fake))
    assert finished.returncode != 0
    assert f"{EXTRACTOR}: Google refused the OAuth credentials" in finished.stderr, finished.explain()
    assert "client_id, client_secret and refresh_token" in finished.stderr
    catalog = project.lake.catalog()
    accounts = catalog.load_table(("default", "raw", "accounts"))  # its SCHEMA came before the 401
    assert accounts is None or accounts.current_snapshot() is None, "nothing of the failed sheet committed"
    state = state_document(project.lake).get("state", {})
    assert "ingest_spreadsheet_modified_time" not in state, "an incomplete sync is not recorded"


def test_wrong_client_secret_is_refused_at_the_token_endpoint(tmp_path: Path) -> None:
    with FakeGoogleSheets() as fake:
        project = copy_meltano_project(tmp_path / "project", Lake(tmp_path / "lake"), extractors=(EXTRACTOR,))
        redirect_extractor(project, EXTRACTOR, fake.redirects)
        finished = project.meltano_run(
            EXTRACTOR,
            LOADER,
            env=tap_env(fake, TAP_GOOGLE_SHEETS_CLIENT_SECRET="wrong"),  # noqa: S106 - a wrong test value
        )
        served = [(s.path, s.status) for s in fake.served]
    assert finished.returncode != 0
    assert "invalid_client" in finished.stderr, finished.explain()
    assert "Fix the extractor settings client_id, client_secret and refresh_token" in finished.stderr
    assert served == [("/token", 401)], "discovery stopped at the token endpoint"


# --- the fake itself follows the documented Sheets API (fast; no Meltano) -------------------------


def _get(fake: FakeGoogleSheets, path: str, query: dict[str, Any], bearer: str) -> tuple[int, Any]:
    url = f"{fake.url}{path}?{urllib.parse.urlencode(query, doseq=True)}"
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {bearer}"})  # noqa: S310 - loopback
    try:
        with urllib.request.urlopen(request) as answer:  # noqa: S310 - the fake on loopback
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_fake_sheets_renders_values_and_grid_data_as_google_does() -> None:
    with FakeGoogleSheets() as fake:
        fake.tokens["t"] = frozenset({"https://www.googleapis.com/auth/spreadsheets.readonly"})
        base = f"/v4/spreadsheets/{fake.spreadsheet_id}"
        ranges = ["'sales_targets'!A2:H3", "accounts!A2:B2"]
        status, batch = _get(fake, f"{base}/values:batchGet", {"ranges": ranges}, "t")
        assert status == 200
        first, accounts = batch["valueRanges"]
        assert first["values"][0][:5] == ["EMEA", "2025-Q1", "lena@example.com", "Lena Rossi", "677,500.00"]
        assert first["values"][0][5] == "TRUE"
        assert accounts["values"] == [["1,001.00", "Account 01"]]
        status, raw = _get(
            fake, f"{base}/values:batchGet", {"ranges": ranges, "valueRenderOption": "UNFORMATTED_VALUE"}, "t"
        )
        assert raw["valueRanges"][0]["values"][0][4:6] == [677500, True]
        assert isinstance(raw["valueRanges"][0]["values"][0][6], float), "date-times as serial numbers"
        latam_q4 = fake.sheet("sales_targets").rows[11]
        assert latam_q4[3] is None
        status, row = _get(fake, f"{base}/values/'sales_targets'!A13:H13", {}, "t")
        assert row["values"][0][3] == "", "an empty cell inside a row is an empty string"
        status, grid = _get(fake, base, {"includeGridData": "true", "ranges": "'accounts'!1:2"}, "t")
        (sheet,) = grid["sheets"]
        header, first_row = sheet["data"][0]["rowData"]
        assert header["values"][0]["formattedValue"] == "account_id"
        assert first_row["values"][2]["effectiveFormat"]["numberFormat"]["type"] == "DATE"
        assert first_row["values"][3]["effectiveValue"] == {"boolValue": True}
        assert _get(fake, f"{base}/values/'nope'!A1", {}, "t")[0] == 400
        fake.tokens["drive-only"] = frozenset({"https://www.googleapis.com/auth/drive.metadata.readonly"})
        status, error = _get(fake, base, {}, "drive-only")
        assert (status, error["error"]["errors"][0]["reason"]) == (403, "insufficientPermissions")
