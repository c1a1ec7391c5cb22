"""`meltano run tap-hubspot target-iceberg-nessie` against the local HubSpot fake (tests/fakes/hubspot.py).

Two runs of one pipeline: a full load from `start_date`, then an incremental one after the fake
created and updated objects. Every row of the three tables is compared with the fake's objects; the
search requests of the second run, the state, the meter's request count and the HubSpot contracts
(assets/hubspot) are checked too. Then retries (a 5xx and a 429 mid-run), OAuth, and a permanent 401.

What meltano-tap-hubspot 0.10.1 does (extractors/tap-hubspot.meltano.yml): it searches objects whose
last-modified property is >= the bookmark, so the objects AT the bookmark are sent again by the next
run. The loader runs with `write_mode: upsert`, so each table ends with one row per object.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from _commands import MeltanoProject
from _saas import (
    NAMESPACE,
    MeteredRun,
    committed_state,
    differences,
    ingest_summary,
    metered_run,
    saas_project,
    table_names,
)
from conftest import Lake, read_duckdb, read_pyiceberg
from fakes.base import Fault
from fakes.hubspot import (
    ACCESS_TOKEN,
    MODIFIED_PROPERTY,
    OAUTH_CLIENT_ID,
    OAUTH_CLIENT_SECRET,
    OAUTH_REFRESH_TOKEN,
    FakeHubSpot,
    search_filter_value,
)

EXTRACTOR = "tap-hubspot"
START_DATE = "2025-01-01T00:00:00Z"
START_MS = str(int(datetime(2025, 1, 1, tzinfo=UTC).timestamp() * 1000))
STREAMS = ("companies", "contacts", "deals")
READERS = {"pyiceberg": read_pyiceberg, "duckdb": read_duckdb}


def tap_env(**overrides: str) -> dict[str, str]:
    return {
        "TAP_HUBSPOT_ACCESS_TOKEN": ACCESS_TOKEN,
        "TAP_HUBSPOT_START_DATE": START_DATE,
        "TARGET_ICEBERG_NESSIE_CONTRACTS": '["assets/hubspot"]',
        # Upsert by id: the boundary object and the changed ones replace their rows.
        "TARGET_ICEBERG_NESSIE_WRITE_MODE": "upsert",
        **overrides,
    }


def timestamp(text: str) -> datetime:
    return datetime.fromisoformat(text)


def expected_row(obj: dict[str, Any], stream: str) -> dict[str, Any]:
    """The row the tap makes of a CRM object: every portal property as text, the key copied up."""
    key = MODIFIED_PROPERTY[stream]
    return {
        "id": obj["id"],
        "properties": dict(obj["properties"]),
        "createdAt": timestamp(obj["createdAt"]),
        "updatedAt": timestamp(obj["updatedAt"]),
        "archived": False,
        key: timestamp(obj["properties"][key]),
    }


def version_key(row: dict[str, Any], stream: str) -> tuple[str, datetime]:
    return (row["id"], row[MODIFIED_PROPERTY[stream]])


def assert_rows_match(rows: list[dict[str, Any]], expected: list[dict[str, Any]], stream: str) -> None:
    """Exactly the expected versions (with their multiplicity), every field equal to the source's."""
    by_key = {version_key(row, stream): row for row in expected}
    want = Counter(version_key(row, stream) for row in expected)
    assert Counter(version_key(r, stream) for r in rows) == want, f"{stream}: the versions loaded"
    mismatched = {r["id"]: d for r in rows if (d := differences(r, by_key[version_key(r, stream)]))}
    assert not mismatched, (
        f"{stream}: {len(mismatched)} rows differ, e.g. {next(iter(mismatched.values()))[:5]}"
    )


@dataclass(frozen=True)
class TwoRuns:
    fake: FakeHubSpot
    project: MeltanoProject
    first: MeteredRun
    second: MeteredRun
    searches: tuple[list[tuple[str, dict[str, Any]]], list[tuple[str, dict[str, Any]]]]  # per run
    objects_after_first: dict[str, list[dict[str, Any]]]
    rows_after_first: dict[str, dict[str, list[dict[str, Any]]]]  # reader -> stream -> rows
    state_after_first: dict[str, Any]
    changed: dict[str, list[str]]  # stream -> ids created or updated between the runs


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TwoRuns]:
    root = tmp_path_factory.mktemp("tap-hubspot")
    with FakeHubSpot() as fake:
        project = saas_project(root / "project", Lake(root / "lake"), EXTRACTOR, fake)
        first = metered_run(project, fake, EXTRACTOR, root / "meter-1", tap_env())
        if first.finished.returncode != 0:
            pytest.fail(f"the first meltano run failed\n{first.finished.explain()}")
        searched = len(fake.search_bodies)
        objects = {stream: fake.objects(stream) for stream in STREAMS}
        rows = {
            name: {s: reader(project.lake, ".".join((*NAMESPACE, s))) for s in STREAMS}
            for name, reader in READERS.items()
        }
        state = committed_state(project.lake)

        changed = {
            "contacts": [
                *(
                    fake.add("contacts", email=f"new{i}@example.com", firstname=f"New{i}")["id"]
                    for i in range(2)
                ),
                *(
                    fake.update("contacts", c["id"], lifecyclestage="customer")["id"]
                    for c in objects["contacts"][:3]
                ),
            ],
            "companies": [
                fake.update("companies", c["id"], numberofemployees="999")["id"]
                for c in objects["companies"][:2]
            ],
            "deals": [
                fake.add("deals", dealname="New deal", amount="5000", dealstage="qualifiedtobuy")["id"],
                *(fake.update("deals", d["id"], dealstage="closedwon")["id"] for d in objects["deals"][1:3]),
            ],
        }
        second = metered_run(project, fake, EXTRACTOR, root / "meter-2", tap_env())
        searches = (fake.search_bodies[:searched], fake.search_bodies[searched:])
        yield TwoRuns(fake, project, first, second, searches, objects, rows, state, changed)


def test_first_run_loads_every_object_once_with_the_contracts(two_runs: TwoRuns) -> None:
    assert table_names(two_runs.project.lake) == set(STREAMS), "no __rejected table: every row passed"
    summary = ingest_summary(two_runs.first.finished)
    counts = {s: len(objs) for s, objs in two_runs.objects_after_first.items()}
    assert {s: v["rows_committed"] for s, v in summary["streams"].items()} == counts
    for stream, result in summary["streams"].items():
        assert result["contract"] == f"urn:contract:hubspot:{stream}@1.0.0"
        assert result["violations"]["checks"] == {}, f"{stream}: the contract found violations"


@pytest.mark.parametrize("reader", sorted(READERS))
@pytest.mark.parametrize("stream", STREAMS)
def test_first_run_rows_equal_the_fakes_objects(two_runs: TwoRuns, stream: str, reader: str) -> None:
    expected = [expected_row(o, stream) for o in two_runs.objects_after_first[stream]]
    assert_rows_match(two_runs.rows_after_first[reader][stream], expected, stream)


def test_first_run_searches_from_the_start_date_page_by_page(two_runs: TwoRuns) -> None:
    first, _ = two_runs.searches
    for stream in STREAMS:
        bodies = [body for name, body in first if name == stream]
        key = MODIFIED_PROPERTY[stream]
        assert {search_filter_value(b) for b in bodies} == {(key, "GTE", START_MS)}
        assert all(b["sorts"] == [{"propertyName": key, "direction": "ASCENDING"}] for b in bodies)
        assert all(sorted(b["properties"]) == sorted(two_runs.fake.property_names(stream)) for b in bodies)
        pages = len(two_runs.objects_after_first[stream]) // 100 + 1
        assert [b.get("after") for b in bodies] == [None, *(str(100 * p) for p in range(1, pages))]


def test_second_run_searches_only_from_the_bookmarks(two_runs: TwoRuns) -> None:
    assert two_runs.second.finished.returncode == 0, two_runs.second.finished.explain()
    _, second = two_runs.searches
    bookmarks = two_runs.state_after_first["bookmarks"]
    for stream in STREAMS:
        value = bookmarks[stream]["replication_key_value"]
        millis = str(int(timestamp(value).timestamp() * 1000))
        bodies = [body for name, body in second if name == stream]
        assert [search_filter_value(b) for b in bodies] == [(MODIFIED_PROPERTY[stream], "GTE", millis)]
    listed = [
        s for s in two_runs.second.served if s.method == "GET" and s.path.startswith("/crm/v3/objects/")
    ]
    assert listed == [], "an incremental run never lists every object"


def expected_second_run(two_runs: TwoRuns, stream: str) -> list[dict[str, Any]]:
    """Every object modified at or after the bookmark, as it is now (the bookmark's own objects too)."""
    bookmark = timestamp(two_runs.state_after_first["bookmarks"][stream]["replication_key_value"])
    key = MODIFIED_PROPERTY[stream]
    return [
        expected_row(o, stream)
        for o in two_runs.fake.objects(stream)
        if timestamp(o["properties"][key]) >= bookmark
    ]


@pytest.mark.parametrize("reader", sorted(READERS))
@pytest.mark.parametrize("stream", STREAMS)
def test_second_run_upserts_the_changed_objects_one_row_each(
    two_runs: TwoRuns, stream: str, reader: str
) -> None:
    rows = READERS[reader](two_runs.project.lake, ".".join((*NAMESPACE, stream)))
    duplicated = [object_id for object_id, n in Counter(r["id"] for r in rows).items() if n > 1]
    assert duplicated == [], f"{stream}: upsert by id keeps one row per object"
    assert_rows_match(rows, [expected_row(o, stream) for o in two_runs.fake.objects(stream)], stream)
    changed = set(two_runs.changed[stream])
    before = {r["id"]: r for r in two_runs.rows_after_first[reader][stream]}
    assert {r["id"] for r in rows if r["id"] not in before or r != before[r["id"]]} == changed


def test_second_run_sent_the_boundary_object_again_and_upsert_kept_one(two_runs: TwoRuns) -> None:
    """The search is GTE the bookmark: the object at the first run's bookmark comes back unchanged."""
    summary = ingest_summary(two_runs.second.finished)
    for stream in STREAMS:
        sent = expected_second_run(two_runs, stream)
        boundary = [row["id"] for row in sent if row["id"] not in two_runs.changed[stream]]
        assert len(boundary) == 1, "the seeded modification times are distinct: one object at the bookmark"
        assert summary["streams"][stream]["records"] == len(two_runs.changed[stream]) + 1
        rows = read_pyiceberg(two_runs.project.lake, ".".join((*NAMESPACE, stream)))
        assert len(rows) == len(two_runs.fake.objects(stream))


def test_state_advances_and_the_meter_counts_every_request(two_runs: TwoRuns) -> None:
    after = committed_state(two_runs.project.lake)["bookmarks"]
    for stream in STREAMS:
        key = MODIFIED_PROPERTY[stream]
        latest = max(o["properties"][key] for o in two_runs.fake.objects(stream))
        assert after[stream] == {"replication_key": key, "replication_key_value": latest}
        assert latest > two_runs.state_after_first["bookmarks"][stream]["replication_key_value"]
    for run in (two_runs.first, two_runs.second):
        assert run.api_calls == len(run.served), "the meter saw every request the fake served"
        assert set(run.metered) == {two_runs.fake.url.removeprefix("http://")}
    # Discovery (first run only: Meltano keeps the catalog while the config is unchanged) reads the
    # property list of every CRM object the tap knows; the token has the scopes of contacts,
    # companies and deals only, and the tap skips the others on 403.
    refused = {(s.path, s.status) for s in two_runs.first.served if s.status != 200}
    assert refused, "discovery met the objects the token may not read"
    assert all(path.startswith("/crm/v3/properties/") and status == 403 for path, status in refused)
    properties = sorted(s.path for s in two_runs.second.served if s.path.startswith("/crm/v3/properties/"))
    assert properties == [f"/crm/v3/properties/{s}" for s in STREAMS], (
        "the sync reads its streams' properties"
    )
    assert all(s.status == 200 for s in two_runs.second.served)


def test_a_5xx_and_a_429_mid_run_are_retried_and_the_load_is_complete(tmp_path: Path) -> None:
    with FakeHubSpot(contacts=40, companies=20, deals=30) as fake:
        project = saas_project(tmp_path / "project", Lake(tmp_path / "lake"), EXTRACTOR, fake)
        fake.inject(Fault(503, path_prefix="/crm/v3/objects/contacts/search"))
        fake.inject(Fault(429, retry_after=1, path_prefix="/crm/v3/objects/deals/search"))
        run = metered_run(project, fake, EXTRACTOR, tmp_path / "meter", tap_env())
        assert run.finished.returncode == 0, run.finished.explain()
        assert fake.pending_faults() == 0
        statuses = Counter((s.path, s.status) for s in run.served)
        assert statuses[("/crm/v3/objects/contacts/search", 503)] == 1
        assert statuses[("/crm/v3/objects/deals/search", 429)] == 1
        for stream in STREAMS:
            expected = [expected_row(o, stream) for o in fake.objects(stream)]
            assert_rows_match(read_pyiceberg(project.lake, ".".join((*NAMESPACE, stream))), expected, stream)
        assert run.api_calls == len(run.served) == fake.request_count


def test_oauth_refresh_token_gets_an_access_token_first(tmp_path: Path) -> None:
    with FakeHubSpot(contacts=10, companies=5, deals=5) as fake:
        # Only the tokens the OAuth endpoint hands out work from here on.
        fake.access_token = "pat-na1-not-this-one"  # noqa: S105 - a test value
        project = saas_project(tmp_path / "project", Lake(tmp_path / "lake"), EXTRACTOR, fake)
        oauth = {
            "TAP_HUBSPOT_ACCESS_TOKEN": "",
            "TAP_HUBSPOT_CLIENT_ID": OAUTH_CLIENT_ID,
            "TAP_HUBSPOT_CLIENT_SECRET": OAUTH_CLIENT_SECRET,
            "TAP_HUBSPOT_REFRESH_TOKEN": OAUTH_REFRESH_TOKEN,
        }
        run = metered_run(project, fake, EXTRACTOR, tmp_path / "meter", tap_env(**oauth))
        assert run.finished.returncode == 0, run.finished.explain()
        assert fake.oauth_tokens, "the tap exchanged the refresh token"
        assert run.served[0].path == "/oauth/v1/token"
        for stream in STREAMS:
            expected = [expected_row(o, stream) for o in fake.objects(stream)]
            assert_rows_match(read_pyiceberg(project.lake, ".".join((*NAMESPACE, stream))), expected, stream)


def test_a_wrong_token_fails_naming_the_extractor_and_the_setting(tmp_path: Path) -> None:
    with FakeHubSpot(contacts=5, companies=5, deals=5) as fake:
        project = saas_project(tmp_path / "project", Lake(tmp_path / "lake"), EXTRACTOR, fake)
        wrong = "pat-na1-revoked-0000-0000-0000-000000000000"
        run = metered_run(
            project, fake, EXTRACTOR, tmp_path / "meter", tap_env(TAP_HUBSPOT_ACCESS_TOKEN=wrong)
        )
        assert run.finished.returncode != 0
        output = run.finished.stderr
        assert "tap-hubspot: authentication failed" in output, run.finished.explain()
        assert "`access_token` (env TAP_HUBSPOT_ACCESS_TOKEN)" in output
        assert wrong not in output, "the token itself is never printed"
        assert [s.status for s in run.served] == [401], "it stops at the first answer"
        assert not (project.lake.root / "catalog.db").exists(), "nothing was loaded"


def test_a_token_revoked_mid_run_commits_nothing_for_the_failed_stream(tmp_path: Path) -> None:
    with FakeHubSpot(contacts=30, companies=30, deals=30) as fake:
        project = saas_project(tmp_path / "project", Lake(tmp_path / "lake"), EXTRACTOR, fake)
        fake.inject(Fault(401, times=100, path_prefix="/crm/v3/objects/deals"))
        run = metered_run(project, fake, EXTRACTOR, tmp_path / "meter", tap_env())
        assert run.finished.returncode != 0
        assert "TAP_HUBSPOT_ACCESS_TOKEN" in run.finished.stderr, run.finished.explain()
        assert len(read_pyiceberg(project.lake, "default.raw.companies")) == 30
        assert len(read_pyiceberg(project.lake, "default.raw.contacts")) == 30
        if "deals" in table_names(project.lake):
            assert read_pyiceberg(project.lake, "default.raw.deals") == [], "no deal row committed"
        assert "deals" not in committed_state(project.lake)["bookmarks"]


def test_without_a_start_date_the_first_run_lists_every_object_then_searches(tmp_path: Path) -> None:
    with FakeHubSpot(contacts=130, companies=10, deals=10) as fake:
        project = saas_project(tmp_path / "project", Lake(tmp_path / "lake"), EXTRACTOR, fake)
        env = tap_env(TAP_HUBSPOT_START_DATE="")
        first = metered_run(project, fake, EXTRACTOR, tmp_path / "meter-1", env)
        assert first.finished.returncode == 0, first.finished.explain()
        assert fake.search_bodies == [], "no bookmark and no start date: the list endpoint"
        pages = first.queries("/crm/v3/objects/contacts")
        assert [q.get("after") for q in pages] == [None, pages[1]["after"]], "130 contacts: two pages"
        assert all(q["limit"] == "100" for q in pages)
        contact = fake.update("contacts", fake.objects("contacts")[5]["id"], jobtitle="CTO")
        second = metered_run(project, fake, EXTRACTOR, tmp_path / "meter-2", env)
        assert second.finished.returncode == 0, second.finished.explain()
        searched = {name for name, _ in fake.search_bodies}
        assert searched == set(STREAMS), "the second run searches from the bookmark"
        for stream in STREAMS:
            expected = [expected_row(o, stream) for o in fake.objects(stream)]
            assert_rows_match(read_pyiceberg(project.lake, ".".join((*NAMESPACE, stream))), expected, stream)
        rows = {r["id"]: r for r in read_pyiceberg(project.lake, "default.raw.contacts")}
        assert rows[contact["id"]]["properties"]["jobtitle"] == "CTO"
