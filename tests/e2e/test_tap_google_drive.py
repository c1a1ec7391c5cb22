"""`meltano run tap-google-drive target-iceberg-nessie` against the local Drive API (fakes.google_drive).

One copy of the project runs twice on a Drive folder of CRM customer exports: a full load during
which Drive answers one 429 (Retry-After: 1) and one 503, then, after one export was rewritten and
a new one uploaded, an incremental run that downloads exactly those two files (Drive's
modifiedTime against the stream's bookmark). Every row of the table is compared with the fake's
CSV files; the data contract assets/google_drive applies. Each run's API calls, counted by the
HTTP meter in the plugin venv, equal the requests the fake served.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from _commands import Finished, MeltanoProject, copy_meltano_project, redirect_extractor
from conftest import REPO_ROOT, Lake, read_duckdb, read_pyiceberg
from fakes.base import Fault, Served
from fakes.google import JWT_BEARER, ServiceAccountKey, rfc3339
from fakes.google_drive import FakeGoogleDrive

sys.path.insert(0, str(REPO_ROOT / "packages" / "ingest-http-meter" / "src"))
from ingest_http_meter import read_counts  # the meter package is not installed in the project venv

EXTRACTOR = "tap-google-drive"
LOADER = "target-iceberg-nessie"
STREAM = "drive_customers"
TABLE = f"default.raw.{STREAM}"
PIPELINE_ID = "default.raw"
READERS = {"pyiceberg": read_pyiceberg, "duckdb": read_duckdb}
# The customers entry of tap-demo-csv (extractors/tap-spreadsheets.meltano.yml), on Drive; the
# contract assets/google_drive/v1.0/customers.yaml describes this configuration.
FILES = [
    {
        "path": "gdrive://customers_*.csv",
        "format": "csv",
        "table_name": STREAM,
        "delimiter": ",",
        "primary_keys": ["customer_id"],
        "schema_overrides": {
            "customer_id": {"type": ["integer", "null"]},
            "signup_date": {"type": ["string", "null"], "format": "date"},
            "credit_limit": {"type": ["number", "null"], "multipleOf": 0.01},
        },
    }
]
STREAM_MAPS = {
    STREAM: {
        "phone": "phone or None",
        "notes": "notes or None",
        "is_active": "bool(is_active == 'true') if is_active else None",
        "_sdc_worksheet": "__NULL__",
    }
}


def expected_row(file_name: str, modified: datetime, cells: dict[str, str]) -> dict[str, Any]:
    """A CSV row as the configured tap and stream maps type it, with the tap's file columns."""
    return {
        "customer_id": int(cells["customer_id"]),
        "first_name": cells["first_name"],
        "last_name": cells["last_name"],
        "email": cells["email"],
        "phone": cells["phone"] or None,
        "country": cells["country"],
        "segment": cells["segment"],
        "signup_date": date.fromisoformat(cells["signup_date"]),
        "is_active": {"true": True, "false": False}[cells["is_active"]],
        "credit_limit": Decimal(cells["credit_limit"]),
        "notes": cells["notes"] or None,
        "_sdc_last_modified": modified.replace(microsecond=0),  # the tap keeps whole seconds
        "_sdc_filename": f"gdrive://{file_name}",
        "_sdc_stream": STREAM,
    }


def snapshot_rows(fake: FakeGoogleDrive, file_ids: list[str] | None = None) -> list[dict[str, Any]]:
    """The rows of the named exports (all by default) as they are now on the fake Drive."""
    wanted = file_ids if file_ids is not None else list(fake.exports)
    return [
        expected_row(fake.exports[f].name, fake.files[f].modified, row)
        for f in wanted
        for row in fake.exports[f].rows
    ]


def comparable(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows limited to the expected columns, timestamps in UTC, in a stable order."""
    keep = expected_row("x", datetime(2000, 1, 1, tzinfo=UTC), _blank()).keys()
    limited = [{k: r[k].astimezone(UTC) if k == "_sdc_last_modified" else r[k] for k in keep} for r in rows]
    return sorted(limited, key=lambda r: (r["_sdc_filename"], r["customer_id"], r["_sdc_last_modified"]))


def _blank() -> dict[str, str]:
    return {
        "customer_id": "1", "first_name": "", "last_name": "", "email": "", "phone": "", "country": "",
        "segment": "", "signup_date": "2000-01-01", "is_active": "true", "credit_limit": "0", "notes": "",
    }  # fmt: skip


def tap_env(fake: FakeGoogleDrive, key: ServiceAccountKey | None = None) -> dict[str, str]:
    assert fake.service_account is not None
    return {
        "TAP_GOOGLE_DRIVE_SERVICE_ACCOUNT_INFO": (key or fake.service_account).json,
        "TAP_GOOGLE_DRIVE_FOLDER_ID": fake.folder.id,
        "TAP_GOOGLE_DRIVE_FILES": json.dumps(FILES),
        "TAP_GOOGLE_DRIVE_STREAM_MAPS": json.dumps(STREAM_MAPS),
        "TARGET_ICEBERG_NESSIE_CONTRACTS": json.dumps([str(REPO_ROOT / "assets" / "google_drive")]),
        # strict: the stream must have a contract, and the contract must name this connector type
        "TARGET_ICEBERG_NESSIE_SOURCE_TYPE": "google_drive",
        "TARGET_ICEBERG_NESSIE_CONTRACT_MODE": "strict",
    }


def state_document(lake: Lake) -> dict[str, Any]:
    path = lake.state_dir / "default" / PIPELINE_ID / "state.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}  # type: ignore[no-any-return]


@dataclass
class Run:
    finished: Finished
    served: list[Served]
    downloads: list[str]  # file ids whose content Drive served in this run
    meter: dict[str, int]
    state: dict[str, Any]
    rows: dict[str, list[dict[str, Any]]]  # reader -> the table's rows after the run


@dataclass
class DriveRuns:
    fake: FakeGoogleDrive
    project: MeltanoProject
    first: Run
    second: Run
    expected_first: list[dict[str, Any]]
    expected_second: list[dict[str, Any]]  # the table after the second run
    changed: list[str]  # ids of the rewritten and the new export
    newest_first: datetime  # the newest modification time at the first run
    expected_first_ids: list[str]  # the exports at the first run


def run_once(fake: FakeGoogleDrive, project: MeltanoProject, meter: Path) -> Run:
    before, downloaded = fake.request_count, len(fake.downloads())
    finished = project.meltano_run(
        EXTRACTOR, LOADER, env={**tap_env(fake), "INGEST_HTTP_METER_DIR": str(meter)}
    )
    assert finished.returncode == 0, finished.explain()
    return Run(
        finished,
        list(fake.served[before:]),
        fake.downloads()[downloaded:],
        read_counts(meter) if meter.is_dir() else {},
        state_document(project.lake),
        {name: reader(project.lake, TABLE) for name, reader in READERS.items()},
    )


@pytest.fixture(scope="module")
def drive_runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DriveRuns]:
    root = tmp_path_factory.mktemp("google-drive")
    with FakeGoogleDrive() as fake:
        project = copy_meltano_project(root / "project", Lake(root / "lake"), extractors=(EXTRACTOR,))
        redirect_extractor(project, EXTRACTOR, fake.redirects)
        fake.inject(Fault(429, retry_after=1, path_prefix="/drive/v3/files"))  # the first listing page
        fake.inject(Fault(503, path_prefix="/drive/v3/files/"))  # the first download
        first = run_once(fake, project, root / "meter-1")
        assert fake.pending_faults() == 0, "both faults were served"
        expected_first = snapshot_rows(fake)
        newest_first = max(fake.files[f].modified for f in fake.exports)
        first_ids = list(fake.exports)

        rewritten = sorted(fake.exports)[1]
        second_file = fake.exports[rewritten]
        changes = {
            second_file.rows[0]["customer_id"]: {"segment": "enterprise", "credit_limit": "250000.00"},
            second_file.rows[4]["customer_id"]: {"phone": "", "notes": "Moved to the Oslo office"},
        }
        fake.rewrite_customers(rewritten, changes)
        added = fake.add_customers_file("customers_2025-04.csv").file_id
        changed = sorted([rewritten, added], key=lambda f: fake.exports[f].name)
        second = run_once(fake, project, root / "meter-2")
        yield DriveRuns(
            fake,
            project,
            first,
            second,
            expected_first,
            expected_first + snapshot_rows(fake, changed),
            changed,
            newest_first,
            first_ids,
        )


@pytest.mark.parametrize("reader", sorted(READERS))
def test_first_run_loads_every_row_of_every_export(drive_runs: DriveRuns, reader: str) -> None:
    """Only the root folder's customers_*.csv: not README.txt, the trashed export or archive/."""
    assert comparable(drive_runs.first.rows[reader]) == comparable(drive_runs.expected_first)
    statuses = [s.status for s in drive_runs.first.served]
    assert statuses.count(429) == 1
    assert statuses.count(503) == 1


def test_listing_is_paged_and_filtered_by_folder(drive_runs: DriveRuns) -> None:
    listings = [s for s in drive_runs.first.served if s.path == "/drive/v3/files" and s.status == 200]
    assert any("pageToken" in s.query for s in listings), "the folder takes several pages"
    assert {s.query["q"][0].strip() for s in listings} == {
        f"'{drive_runs.fake.folder.id}' in parents and trashed = false"
    }


def test_contract_applies_and_every_row_passes(drive_runs: DriveRuns) -> None:
    summary = ingest_summary(drive_runs.first.finished)["streams"][STREAM]
    assert summary["contract"] == "urn:contract:google_drive:customers@1.0.0"
    assert summary["violations"]["quarantined"] == 0
    assert summary["rows_committed"] == len(drive_runs.expected_first)


def test_second_run_downloads_only_the_changed_and_the_new_export(drive_runs: DriveRuns) -> None:
    assert drive_runs.second.downloads == drive_runs.changed
    by_name = sorted(drive_runs.expected_first_ids, key=lambda f: drive_runs.fake.exports[f].name)
    # discovery reads the first export for the schema; the sync downloads each export once
    assert drive_runs.first.downloads == [by_name[0], *by_name]
    unchanged = set(drive_runs.fake.exports) - set(drive_runs.changed)
    assert not unchanged & set(drive_runs.second.downloads)


@pytest.mark.parametrize("reader", sorted(READERS))
def test_second_run_appends_exactly_the_changed_files_rows(drive_runs: DriveRuns, reader: str) -> None:
    assert comparable(drive_runs.second.rows[reader]) == comparable(drive_runs.expected_second)
    summary = ingest_summary(drive_runs.second.finished)["streams"][STREAM]
    assert summary["rows_committed"] == 2 * drive_runs.fake.rows_per_file


def test_bookmark_advances_to_the_newest_modification_time(drive_runs: DriveRuns) -> None:
    def bookmark(run: Run) -> datetime:
        value = run.state["state"]["bookmarks"][STREAM]["replication_key_value"]
        return datetime.fromisoformat(value)

    newest = max(drive_runs.fake.files[f].modified for f in drive_runs.fake.exports)
    assert bookmark(drive_runs.first) == drive_runs.newest_first.replace(microsecond=0)
    assert bookmark(drive_runs.second) == newest.replace(microsecond=0)
    assert bookmark(drive_runs.second) > bookmark(drive_runs.first)


def test_api_calls_metered_in_the_tap_equal_the_requests_served(drive_runs: DriveRuns) -> None:
    for run in (drive_runs.first, drive_runs.second):
        assert sum(run.meter.values()) == len(run.served)
        assert set(run.meter) == {drive_runs.fake.url.removeprefix("http://")}


def ingest_summary(finished: Finished) -> dict[str, Any]:
    lines = [line for line in finished.stderr.splitlines() if "INGEST_SUMMARY {" in line]
    assert len(lines) == 1, finished.explain()
    summary: dict[str, Any] = json.loads(lines[0].split("INGEST_SUMMARY ", 1)[1])
    return summary


def _failed_run(
    tmp_path: Path, fake: FakeGoogleDrive, key: ServiceAccountKey | None = None
) -> tuple[Finished, Lake]:
    project = copy_meltano_project(tmp_path / "project", Lake(tmp_path / "lake"), extractors=(EXTRACTOR,))
    redirect_extractor(project, EXTRACTOR, fake.redirects)
    finished = project.meltano_run(EXTRACTOR, LOADER, env=tap_env(fake, key))
    assert finished.returncode != 0, finished.explain()
    return finished, project.lake


def test_permanent_401_names_the_extractor_and_setting_and_commits_nothing(tmp_path: Path) -> None:
    with FakeGoogleDrive() as fake:
        fake.inject(Fault(401, times=100, path_prefix="/drive/v3/files"))
        finished, lake = _failed_run(tmp_path, fake)
    assert f"{EXTRACTOR}: Google Drive refused the service account's token" in finished.stderr, (
        finished.explain()
    )
    assert "Fix the extractor setting service_account_info" in finished.stderr
    assert not fake.downloads()
    assert not (lake.root / "catalog.db").exists(), (
        "discovery failed, the loader never started: nothing committed"
    )


def test_unknown_service_account_key_is_refused_at_the_token_endpoint(tmp_path: Path) -> None:
    """A key whose signature Google cannot verify: invalid_grant, and the setting to fix."""
    with FakeGoogleDrive() as fake:
        finished, _ = _failed_run(tmp_path, fake, ServiceAccountKey.generate())
        served = [(s.path, s.status) for s in fake.served]
    assert f"{EXTRACTOR}: Google refused the service account key (invalid_grant: Invalid JWT Signature.)" in (
        finished.stderr
    ), finished.explain()
    assert "Fix the extractor setting service_account_info" in finished.stderr
    assert served, "the tap asked for a token"
    assert all(s == ("/token", 400) for s in served), served


# --- the fake itself follows the documented Drive API (fast; no Meltano) --------------------------


def _call(
    fake: FakeGoogleDrive, path: str, *, bearer: str | None = None, **headers: str
) -> tuple[int, Any, Any]:
    request = urllib.request.Request(f"{fake.url}{path}", headers=headers)  # noqa: S310 - the fake on loopback
    if bearer is not None:
        request.add_header("Authorization", f"Bearer {bearer}")
    try:
        with urllib.request.urlopen(request) as answer:  # noqa: S310 - the fake on loopback
            body = answer.read()
            return answer.status, body, answer.headers
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read()), error.headers


def _signed_jwt(key: ServiceAccountKey, claims: dict[str, Any], tmp_path: Path) -> str:
    def part(document: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(document).encode()).decode().rstrip("=")

    signing_input = f"{part({'alg': 'RS256', 'typ': 'JWT'})}.{part(claims)}"
    pem = tmp_path / "key.pem"
    pem.write_text(key.info["private_key"], encoding="ascii")
    signature = subprocess.run(
        ["openssl", "dgst", "-sha256", "-sign", str(pem)],
        input=signing_input.encode(),
        capture_output=True,
        check=True,
    ).stdout
    return f"{signing_input}.{base64.urlsafe_b64encode(signature).decode().rstrip('=')}"


def test_fake_token_endpoint_verifies_the_service_account_jwt(tmp_path: Path) -> None:
    with FakeGoogleDrive() as fake:
        key = fake.service_account
        assert key is not None
        now = int(time.time())
        claims = {
            "iss": key.info["client_email"],
            "aud": key.info["token_uri"],
            "iat": now,
            "exp": now + 3600,
        }
        claims["scope"] = "https://www.googleapis.com/auth/drive.readonly"

        def exchange(assertion: str) -> tuple[int, Any]:
            form = urllib.parse.urlencode({"grant_type": JWT_BEARER, "assertion": assertion}).encode()
            try:
                with urllib.request.urlopen(f"{fake.url}/token", data=form) as answer:  # noqa: S310 - loopback
                    return answer.status, json.loads(answer.read())
            except urllib.error.HTTPError as error:
                return error.code, json.loads(error.read())

        status, body = exchange(_signed_jwt(key, claims, tmp_path))
        assert (status, body["token_type"], body["scope"]) == (200, "Bearer", claims["scope"])
        assert _call(fake, f"/drive/v3/files/{fake.folder.id}", bearer=body["access_token"])[0] == 200
        other = ServiceAccountKey.generate()
        assert exchange(_signed_jwt(other, claims, tmp_path)) == (
            400,
            {"error": "invalid_grant", "error_description": "Invalid JWT Signature."},
        )
        late = {**claims, "exp": now + 7200}
        assert exchange(_signed_jwt(key, late, tmp_path))[0] == 400


def test_fake_drive_filters_by_parent_and_modified_time_with_pages_and_partial_fields() -> None:
    with FakeGoogleDrive(page_size_cap=1000) as fake:
        fake.tokens["t"] = frozenset({"https://www.googleapis.com/auth/drive.readonly"})
        exports = sorted(fake.exports, key=lambda f: fake.exports[f].name)
        since = fake.files[exports[0]].modified.isoformat().replace("+00:00", "Z")
        q = f"'{fake.folder.id}' in parents and trashed = false and modifiedTime > '{since}'"
        q += " and name contains 'customers'"
        names, token = [], ""
        while True:
            query = {"q": q, "pageSize": "1", "fields": "nextPageToken,files(id,name)", "pageToken": token}
            status, body, _ = _call(fake, f"/drive/v3/files?{urllib.parse.urlencode(query)}", bearer="t")
            assert status == 200
            page = json.loads(body)
            assert [set(f) for f in page["files"]] == [{"id", "name"}] * len(page["files"])
            names += [f["name"] for f in page["files"]]
            token = page.get("nextPageToken", "")
            if not token:
                break
        assert names == [fake.exports[f].name for f in exports[1:]], (
            "newer than the first export, not trashed"
        )
        bad = urllib.parse.urlencode({"q": "fullText contains 'x'"})
        status, error, _ = _call(fake, f"/drive/v3/files?{bad}", bearer="t")
        assert (status, error["error"]["errors"][0]["location"]) == (400, "q")


def test_fake_drive_downloads_ranges_and_refuses_bad_tokens_and_scopes() -> None:
    with FakeGoogleDrive() as fake:
        first = sorted(fake.exports)[0]
        fake.tokens["media"] = frozenset({"https://www.googleapis.com/auth/drive.readonly"})
        fake.tokens["metadata"] = frozenset({"https://www.googleapis.com/auth/drive.metadata.readonly"})
        status, body, headers = _call(
            fake, f"/drive/v3/files/{first}?alt=media", bearer="media", Range="bytes=0-9"
        )
        content = fake.files[first].content
        assert (status, body, headers["Content-Range"]) == (206, content[:10], f"bytes 0-9/{len(content)}")
        status, error, _ = _call(fake, f"/drive/v3/files/{first}?alt=media")
        assert (status, error["error"]["status"], error["error"]["errors"][0]["reason"]) == (
            401,
            "UNAUTHENTICATED",
            "authError",
        )
        status, error, _ = _call(fake, f"/drive/v3/files/{first}?alt=media", bearer="metadata")
        assert (status, error["error"]["errors"][0]["reason"]) == (403, "insufficientPermissions")
        status, body, _ = _call(fake, f"/drive/v3/files/{first}?fields=modifiedTime", bearer="metadata")
        assert json.loads(body) == {"modifiedTime": rfc3339(fake.files[first].modified)}
