"""`meltano run tap-stripe target-iceberg-nessie` against the local Stripe fake (tests/fakes/stripe.py).

Two runs of one pipeline: a full load, then an incremental one after the fake created, updated and
refunded objects. Every row of the three tables is compared with the fake's objects; the requests of
the second run, the state, the meter's request count and the Stripe contracts (assets/stripe) are
checked too. Then retries (a 5xx and a 429 mid-run) and a permanent 401.

What tap-stripe 3.3.0 sends (extractors/tap-stripe.meltano.yml): new objects from the list endpoints
by `created` (`updated` = `created`), then every changed object again from the events endpoint
(`updated` = the event's time, `updated_by_event_type` = its type). An object created between the
runs is sent twice by the second run: its list row and its creation event (`customer.created`). The
loader runs with `write_mode: upsert`, so each table ends with one row per object: the last version
the tap sent.
"""

from __future__ import annotations

import copy
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
    epoch,
    ingest_summary,
    metered_run,
    saas_project,
    table_names,
)
from conftest import Lake, read_duckdb, read_pyiceberg
from fakes.base import Fault
from fakes.stripe import ACCOUNT_ID, SECRET_KEY, FakeStripe

EXTRACTOR = "tap-stripe"
START_DATE = "2025-01-01T00:00:00Z"
START_EPOCH = int(datetime(2025, 1, 1, tzinfo=UTC).timestamp())
STREAMS = {"customers": "customer", "charges": "charge", "invoices": "invoice"}  # table -> Stripe object
LIST_PATHS = {"customers": "/v1/customers", "charges": "/v1/charges", "invoices": "/v1/invoices"}
# The bookmark of each stream's list pass (invoices keep the pre-2019 name `date`, see the tap).
BOOKMARK_KEYS = {"customers": "created", "charges": "created", "invoices": "date"}
EVENT_TYPES = {"customers": "customer.*", "charges": "charge.*", "invoices": "invoice.*"}
TIMESTAMP_FIELDS = ("created", "period_end", "period_start", "webhooks_delivered_at")
READERS = {"pyiceberg": read_pyiceberg, "duckdb": read_duckdb}


def tap_env(**overrides: str) -> dict[str, str]:
    return {
        "TAP_STRIPE_CLIENT_SECRET": SECRET_KEY,
        "TAP_STRIPE_ACCOUNT_ID": ACCOUNT_ID,
        "TAP_STRIPE_START_DATE": START_DATE,
        "TARGET_ICEBERG_NESSIE_CONTRACTS": '["assets/stripe"]',
        # Upsert by id: a changed object's new version replaces its row (the contracts' key is id).
        "TARGET_ICEBERG_NESSIE_WRITE_MODE": "upsert",
        **overrides,
    }


def expected_row(obj: dict[str, Any], *, updated: int, event_type: str | None) -> dict[str, Any]:
    """The row tap-stripe makes of a Stripe object (list pass: expanded; event: as the event holds it)."""
    row = copy.deepcopy(obj)
    if row["object"] == "charge":
        refunds = row.get("refunds", {"data": []})["data"]
        row["refunds"] = [{**r, "created": epoch(r["created"])} for r in refunds]
    if row["object"] == "invoice":
        row["lines"] = [line["id"] for line in row["lines"]["data"]]  # reduced to ids by the tap
    for name in TIMESTAMP_FIELDS:
        if isinstance(row.get(name), int):
            row[name] = epoch(row[name])
    row["updated"] = epoch(updated)
    row["updated_by_event_type"] = event_type
    return row


def version_key(row: dict[str, Any]) -> tuple[str, datetime, str | None]:
    return (row["id"], row["updated"], row["updated_by_event_type"])


def assert_rows_match(rows: list[dict[str, Any]], expected: list[dict[str, Any]], table: str) -> None:
    """Exactly the expected versions, each once, and every field of each equal to the source's."""
    by_key = {version_key(row): row for row in expected}
    want = Counter(version_key(row) for row in expected)
    assert Counter(version_key(r) for r in rows) == want, f"{table}: the versions loaded"
    mismatched = {r["id"]: d for r in rows if (d := differences(r, by_key[version_key(r)]))}
    assert not mismatched, (
        f"{table}: {len(mismatched)} rows differ, e.g. {next(iter(mismatched.values()))[:5]}"
    )


@dataclass(frozen=True)
class TwoRuns:
    fake: FakeStripe
    project: MeltanoProject
    first: MeteredRun
    second: MeteredRun
    objects_after_first: dict[str, list[dict[str, Any]]]  # table -> the fake's objects then
    rows_after_first: dict[str, dict[str, list[dict[str, Any]]]]  # reader -> table -> rows
    state_after_first: dict[str, Any]
    changed: dict[str, list[str]]  # what changed between the runs: kind -> ids


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TwoRuns]:
    root = tmp_path_factory.mktemp("tap-stripe")
    with FakeStripe() as fake:
        project = saas_project(root / "project", Lake(root / "lake"), EXTRACTOR, fake)
        first = metered_run(project, fake, EXTRACTOR, root / "meter-1", tap_env())
        if first.finished.returncode != 0:
            pytest.fail(f"the first meltano run failed\n{first.finished.explain()}")
        objects = {table: fake.objects(kind) for table, kind in STREAMS.items()}
        rows = {
            name: {t: reader(project.lake, ".".join((*NAMESPACE, t))) for t in STREAMS}
            for name, reader in READERS.items()
        }
        state = committed_state(project.lake)

        customers = objects["customers"]
        new_customers = [fake.add_customer(email=f"new{i}@example.com", name=f"New {i}") for i in range(2)]
        updated_customers = [
            fake.update_customer(c["id"], email=f"changed{i}@example.com", balance=-5000 - i)["id"]
            for i, c in enumerate(customers[:3])
        ]
        new_charges = [fake.add_charge(new_customers[i % 2]["id"], amount=4200 + i) for i in range(2)]
        unrefunded = [c for c in objects["charges"] if c["status"] == "succeeded" and not c["refunded"]]
        refunded = [fake.refund_charge(c["id"], 300)["id"] for c in unrefunded[:2]]
        unpaid = [i for i in objects["invoices"] if i["status"] == "open"]
        paid = [fake.pay_invoice(i["id"])["id"] for i in unpaid[:2]]
        changed = {
            "new_customers": [c["id"] for c in new_customers],
            "updated_customers": updated_customers,
            "new_charges": [c["id"] for c in new_charges],
            "refunded_charges": refunded,
            "paid_invoices": paid,
        }
        second = metered_run(project, fake, EXTRACTOR, root / "meter-2", tap_env())
        yield TwoRuns(fake, project, first, second, objects, rows, state, changed)


def test_first_run_loads_every_object_once_with_the_contracts(two_runs: TwoRuns) -> None:
    assert table_names(two_runs.project.lake) == set(STREAMS), "no __rejected table: every row passed"
    summary = ingest_summary(two_runs.first.finished)
    counts = {t: len(objs) for t, objs in two_runs.objects_after_first.items()}
    assert {s: v["rows_committed"] for s, v in summary["streams"].items()} == counts
    for stream, result in summary["streams"].items():
        assert result["contract"] == f"urn:contract:stripe:{stream}@1.0.0"
        assert result["violations"]["checks"] == {}, f"{stream}: the contract found violations"


@pytest.mark.parametrize("reader", sorted(READERS))
@pytest.mark.parametrize("table", sorted(STREAMS))
def test_first_run_rows_equal_the_fakes_objects(two_runs: TwoRuns, table: str, reader: str) -> None:
    rows = two_runs.rows_after_first[reader][table]
    expected = [
        expected_row(o, updated=o["created"], event_type=None) for o in two_runs.objects_after_first[table]
    ]
    assert_rows_match(rows, expected, table)
    if table == "charges":
        assert sum(1 for r in rows if r["refunds"]) == sum(
            1 for o in two_runs.objects_after_first[table] if o["refunds"]["data"]
        ), "refunds arrive expanded (expand[]=data.refunds)"


def test_first_run_reads_from_the_start_date_in_windows_then_the_last_30_days_of_events(
    two_runs: TwoRuns,
) -> None:
    state = two_runs.state_after_first["bookmarks"]
    for table, path in LIST_PATHS.items():
        queries = two_runs.first.queries(path)
        assert queries[0]["created[gte]"] == str(START_EPOCH)
        assert all(q["limit"] == "100" for q in queries)
        windows = [
            (int(q["created[gte]"]), int(q["created[lt]"])) for q in queries if "starting_after" not in q
        ]
        assert all(end == windows[i + 1][0] for i, (_, end) in enumerate(windows[:-1])), "contiguous windows"
        assert windows[-1][1] == state[table][BOOKMARK_KEYS[table]], "the bookmark is the last window's end"
    charge_pages = [q for q in two_runs.first.queries("/v1/charges") if "starting_after" in q]
    assert charge_pages, "a window of more than 100 charges is read page by page (starting_after)"
    assert all(q["expand[0]"] == "data.refunds" for q in two_runs.first.queries("/v1/charges"))
    events = two_runs.first.queries("/v1/events")
    assert {q["type"] for q in events} == set(EVENT_TYPES.values())


def test_second_run_requests_only_the_window_after_the_bookmarks(two_runs: TwoRuns) -> None:
    assert two_runs.second.finished.returncode == 0, two_runs.second.finished.explain()
    before = two_runs.state_after_first["bookmarks"]
    for table, path in LIST_PATHS.items():
        queries = two_runs.second.queries(path)
        bookmark = before[table][BOOKMARK_KEYS[table]]
        assert [q["created[gte]"] for q in queries] == [str(bookmark)], (
            f"{table}: one window, from the bookmark"
        )
        assert int(queries[0]["created[lt]"]) > bookmark
        events = [q for q in two_runs.second.queries("/v1/events") if q["type"] == EVENT_TYPES[table]]
        since = before[f"{table}_events"]["updates_created"]
        assert events[0]["created[gte]"] == str(since), f"{table}: events from the events bookmark"
        assert all(int(q["created[gte]"]) >= since for q in events)


def expected_second_run(two_runs: TwoRuns, table: str) -> list[dict[str, Any]]:
    """List rows of the objects created since the bookmark, then the latest event of each object."""
    fake, kind = two_runs.fake, STREAMS[table]
    bookmark = two_runs.state_after_first["bookmarks"][table][BOOKMARK_KEYS[table]]
    rows = [
        expected_row(o, updated=o["created"], event_type=None)
        for o in fake.objects(kind)
        if o["created"] >= bookmark
    ]
    latest: dict[str, dict[str, Any]] = {}
    for event in fake.events_of(f"{kind}."):
        latest[event["data"]["object"]["id"]] = event  # oldest first: the last one wins
    rows += [
        expected_row(e["data"]["object"], updated=e["created"], event_type=e["type"]) for e in latest.values()
    ]
    return rows


def expected_after_second_run(two_runs: TwoRuns, table: str) -> list[dict[str, Any]]:
    """Upsert by id: per object, the last version the tap sent (its latest event, else its list row)."""
    final = {
        o["id"]: expected_row(o, updated=o["created"], event_type=None)
        for o in two_runs.fake.objects(STREAMS[table])
    }
    for row in expected_second_run(two_runs, table):  # list rows first, then event rows: the later wins
        final[row["id"]] = row
    return list(final.values())


@pytest.mark.parametrize("reader", sorted(READERS))
@pytest.mark.parametrize("table", sorted(STREAMS))
def test_second_run_upserts_the_changed_objects_one_row_each(
    two_runs: TwoRuns, table: str, reader: str
) -> None:
    rows = READERS[reader](two_runs.project.lake, ".".join((*NAMESPACE, table)))
    duplicated = [object_id for object_id, n in Counter(r["id"] for r in rows).items() if n > 1]
    assert duplicated == [], f"{table}: upsert by id keeps one row per object"
    assert_rows_match(rows, expected_after_second_run(two_runs, table), table)

    changed = two_runs.changed
    by_id = {r["id"]: r for r in rows}
    if table == "customers":
        assert {by_id[i]["email"] for i in changed["updated_customers"]} == {
            f"changed{i}@example.com" for i in range(3)
        }
        assert {by_id[i]["updated_by_event_type"] for i in changed["new_customers"]} == {"customer.created"}
    if table == "charges":
        refunded = [by_id[i] for i in changed["refunded_charges"]]
        assert all(
            r["amount_refunded"] >= 300 and r["updated_by_event_type"] == "charge.refunded" for r in refunded
        )
        # Stripe's events hold charges without their refunds list (API 2022-11-15), and upsert keeps
        # the last version sent: the refunded charge's row has no `refunds`, only `amount_refunded`.
        assert all(not r["refunds"] for r in refunded)
    if table == "invoices":
        assert {
            (by_id[i]["status"], by_id[i]["updated_by_event_type"]) for i in changed["paid_invoices"]
        } == {("paid", "invoice.paid")}


def test_second_run_sent_each_new_object_twice_and_upsert_kept_one(two_runs: TwoRuns) -> None:
    """What the tap sent: a new object twice (its list row and its creation event), a changed one once."""
    summary = ingest_summary(two_runs.second.finished)
    sent = {table: len(expected_second_run(two_runs, table)) for table in STREAMS}
    assert sent == {"customers": 2 * 2 + 3, "charges": 2 * 2 + 2, "invoices": 2}
    assert {s: v["records"] for s, v in summary["streams"].items()} == sent
    rows = {t: len(read_pyiceberg(two_runs.project.lake, ".".join((*NAMESPACE, t)))) for t in STREAMS}
    assert rows == {t: len(two_runs.fake.objects(kind)) for t, kind in STREAMS.items()}


def test_state_advances_and_the_meter_counts_every_request(two_runs: TwoRuns) -> None:
    before = two_runs.state_after_first["bookmarks"]
    after = committed_state(two_runs.project.lake)["bookmarks"]
    for table, kind in STREAMS.items():
        assert after[table][BOOKMARK_KEYS[table]] > before[table][BOOKMARK_KEYS[table]]
        last_event = max(e["created"] for e in two_runs.fake.events_of(f"{kind}."))
        assert after[f"{table}_events"]["updates_created"] == last_event
    for run in (two_runs.first, two_runs.second):
        assert run.api_calls == len(run.served), "the meter saw every request the fake served"
        assert set(run.metered) == {two_runs.fake.url.removeprefix("http://")}
        assert all(s.status == 200 for s in run.served)


def test_a_5xx_and_a_429_mid_run_are_retried_and_the_load_is_complete(tmp_path: Path) -> None:
    with FakeStripe(customers=40, charges=60, invoices=20) as fake:
        project = saas_project(tmp_path / "project", Lake(tmp_path / "lake"), EXTRACTOR, fake)
        fake.inject(Fault(500, path_prefix="/v1/customers"))  # retried by the stripe client
        fake.inject(Fault(429, retry_after=1, path_prefix="/v1/invoices"))  # retried by the tap's backoff
        run = metered_run(project, fake, EXTRACTOR, tmp_path / "meter", tap_env())
        assert run.finished.returncode == 0, run.finished.explain()
        assert fake.pending_faults() == 0
        statuses = Counter((s.path, s.status) for s in run.served)
        assert statuses[("/v1/customers", 500)] == 1
        assert statuses[("/v1/invoices", 429)] == 1
        for table, kind in STREAMS.items():
            expected = [expected_row(o, updated=o["created"], event_type=None) for o in fake.objects(kind)]
            assert_rows_match(read_pyiceberg(project.lake, ".".join((*NAMESPACE, table))), expected, table)
        assert run.api_calls == len(run.served) == fake.request_count


def test_a_wrong_secret_key_fails_naming_the_extractor_and_the_setting(tmp_path: Path) -> None:
    with FakeStripe(customers=5, charges=5, invoices=5) as fake:
        project = saas_project(tmp_path / "project", Lake(tmp_path / "lake"), EXTRACTOR, fake)
        wrong = "sk_test_51RevokedKey0000000000000000000000000000000000"
        run = metered_run(
            project, fake, EXTRACTOR, tmp_path / "meter", tap_env(TAP_STRIPE_CLIENT_SECRET=wrong)
        )
        assert run.finished.returncode != 0
        output = run.finished.stderr
        assert "tap-stripe" in output
        assert "client_secret" in output, run.finished.explain()
        assert "TAP_STRIPE_CLIENT_SECRET" in output
        assert wrong not in output, "the key itself is never printed"
        assert [s.status for s in run.served] == [401], "it stops at the first answer"
        assert tables_if_any(project.lake) == set(), "nothing was loaded"


def test_a_key_revoked_mid_run_commits_nothing_for_the_failed_stream(tmp_path: Path) -> None:
    with FakeStripe(customers=30, charges=30, invoices=30) as fake:
        project = saas_project(tmp_path / "project", Lake(tmp_path / "lake"), EXTRACTOR, fake)
        fake.inject(Fault(401, times=100, path_prefix="/v1/invoices"))
        run = metered_run(project, fake, EXTRACTOR, tmp_path / "meter", tap_env())
        assert run.finished.returncode != 0
        assert "client_secret" in run.finished.stderr, run.finished.explain()
        # The tap announces every stream (SCHEMA) before syncing the first, so the table exists.
        assert read_pyiceberg(project.lake, "default.raw.invoices") == [], "no invoice row committed"
        assert len(read_pyiceberg(project.lake, "default.raw.customers")) == 30
        assert len(read_pyiceberg(project.lake, "default.raw.charges")) == 30
        assert "invoices" not in committed_state(project.lake)["bookmarks"]


def tables_if_any(lake: Lake) -> set[str]:
    if not (lake.root / "catalog.db").exists():
        return set()
    return table_names(lake)
