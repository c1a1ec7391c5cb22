"""The Dagster definitions (ingestion/orchestration), executed in-process against the embedded catalog.

Each test has its own platform folders and a throwaway copy of the Meltano project; the jobs run the
real `meltano run` through the platform runner, as `ingest run` does. What is checked: the
definitions validate with Dagster's own command; a job's run materializes one asset per table with
the run's metadata (rows, snapshot id equal to the table's current snapshot, commit, CPU seconds);
contract results arrive as asset checks; schedules evaluate to run requests; a retryable failure is
retried with backoff and a contract failure is not; a Meltano job of meltano.yml runs as a Dagster job.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from _commands import MeltanoProject, clean_env, copy_meltano_project, redirect_extractor
from _saas import write_stripe_job
from conftest import REPO_ROOT, Lake, read_pyiceberg
from fakes.stripe import SECRET_KEY, FakeStripe

from ingestion.cadence import interval_cron
from ingestion.jobs import PlatformPaths
from ingestion.orchestration import build_definitions

DEMO_ROWS = {"customers": 50, "orders": 200, "products": 10}
SMALL_BUSINESS = 11  # customers whose segment the test contract does not allow (demo/data/customers.csv)
FAST_RETRIES = "{max_attempts: 3, initial_backoff_seconds: 0.2, max_backoff_seconds: 0.3}"

# A contract of the demo tenant for the demo customers: segment must be consumer or enterprise.
CUSTOMERS_CONTRACT = """
apiVersion: v3.0.2
kind: DataContract
id: urn:contract:demo:customers
version: 1.2.0
status: active
name: Demo customers
tenant: demo
domain: sales
dataProduct: demo_crm
description:
  purpose: The demo customers (see https://example.com/demo for the file layout).
tags: [demo, pii]
team:
  - {username: crm-data, role: owner}
schema:
  - name: customers
    physicalName: customers
    logicalType: object
    properties:
      - name: customer_id
        logicalType: integer
        primaryKey: true
        primaryKeyPosition: 1
        required: true
      - name: email
        logicalType: string
        classification: confidential
      - name: segment
        logicalType: string
        quality:
          - {type: library, rule: validValues, validValues: [consumer, enterprise]}
"""


@dataclass
class Platform:
    """Platform folders in a temporary directory, a Meltano project copy, and its lake."""

    root: Path
    project: MeltanoProject
    lake: Lake

    @property
    def paths(self) -> PlatformPaths:
        return PlatformPaths(
            configs=self.root / "configs",
            specs=self.root / "specs",
            secrets=self.root / "secrets",
            state=self.root / "state",
            logs=self.root / "logs",
        )

    def write(self, relative: str, text: str) -> None:
        file = self.root / relative
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")

    def runner(self, catalog: str | None = None, **extra: str) -> None:
        database = self.lake.root / "catalog.db"
        catalog = catalog or f"{{type: sql, uri: 'sqlite:///{database}', warehouse: '{self.lake.warehouse}'}}"
        lines = ["schema_version: 1", f"catalog: {catalog}", f"retry_policy: {FAST_RETRIES}"]
        lines += [f"{key}: {value}" for key, value in extra.items()]
        self.write("configs/runner.yaml", "\n".join(lines) + "\n")

    def job(self, name: str, *extra: str) -> None:
        body = [
            "schema_version: 1",
            "tenant: demo",
            "extractor: csv_files",
            "plugin: tap-demo-csv",
            *extra,
        ]
        if not any(line.startswith("target:") for line in extra):
            body.append("target: {namespace: raw, write_mode: upsert}")
        self.write(f"configs/jobs/demo/{name}.yaml", "\n".join(body) + "\n")

    def definitions(self) -> dg.Definitions:
        return build_definitions(self.paths, project=self.project.root)

    def execute(self, job: str) -> dg.ExecuteInProcessResult:
        with dg.instance_for_test() as instance:
            return (
                self.definitions()
                .resolve_job_def(job)
                .execute_in_process(instance=instance, raise_on_error=False)
            )

    def run_metadata(self) -> list[dict[str, Any]]:
        files = (self.root / "logs" / "demo" / "runs").glob("*.json")
        found = [json.loads(f.read_text(encoding="utf-8")) for f in files]
        return sorted(found, key=lambda m: (m["started_at"], m["attempt"]))


@pytest.fixture
def platform(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Platform]:
    lake = Lake(tmp_path / "lake")
    project = copy_meltano_project(tmp_path / "project", lake)
    for key in [k for k in os.environ if k.startswith(("MELTANO_", "TARGET_ICEBERG_NESSIE_", "INGEST_"))]:
        monkeypatch.delenv(key)
    found = Platform(tmp_path, project, lake)
    (tmp_path / "specs").mkdir()
    (tmp_path / "specs" / "registry").symlink_to(REPO_ROOT / "registry", target_is_directory=True)
    found.write("specs/assets/demo/v1.0/customers.yaml", CUSTOMERS_CONTRACT)
    found.runner()
    found.job("demo_csv", "tags: {business: {cost_center: demo}, governance: {owner: data-team}}")
    yield found
    lake.close()


def _spec(defs: dg.Definitions, key: str) -> dg.AssetSpec:
    return next(s for s in defs.resolve_all_asset_specs() if s.key.to_user_string() == key)


def _materializations(result: dg.ExecuteInProcessResult) -> dict[str, dict[str, Any]]:
    found = {}
    for event in result.get_asset_materialization_events():
        materialization = event.step_materialization_data.materialization
        found[materialization.asset_key.to_user_string()] = {
            key: value.value for key, value in materialization.metadata.items()
        }
    return found


def _check_evaluations(result: dg.ExecuteInProcessResult) -> dict[str, Any]:
    found = {}
    for event in result.all_events:
        if event.event_type_value == "ASSET_CHECK_EVALUATION":
            evaluation = event.event_specific_data
            found[evaluation.asset_key.to_user_string()] = evaluation  # type: ignore[union-attr]
    return found


def _retries(result: dg.ExecuteInProcessResult) -> int:
    return sum(1 for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY")


def test_the_shipped_definitions_validate_with_dagsters_own_command() -> None:
    """`dagster definitions validate` on the checkout's configs/ (all 8 example jobs)."""
    env = {k: v for k, v in clean_env().items() if not k.startswith("INGEST_")}
    done = subprocess.run(
        [str(Path(sys.executable).parent / "dagster"), "definitions", "validate", "-m",
         "ingestion.orchestration.definitions"],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-4000:]
    assert (
        "Validation successful for code location ingestion.orchestration.definitions"
        in done.stdout + done.stderr
    )

    defs = build_definitions(PlatformPaths.resolve(root=REPO_ROOT, environ={}), project=REPO_ROOT)
    keys = {spec.key.to_user_string() for spec in defs.resolve_all_asset_specs()}
    assert {
        "demo/raw/customers", "demo/raw/orders", "demo/raw/products",
        "acme/stripe/customers", "acme/stripe/charges", "acme/stripe/invoices",
        "acme/hubspot/contacts", "acme/hubspot/companies", "acme/hubspot/deals",
        "acme/shop/public_orders", "acme/legacy_shop/shop_orders", "acme/sheets/sales_targets",
        "acme/drive/drive_customers", "acme/notes/support_notes",
    } == keys  # fmt: skip
    jobs = {job.name for job in defs.resolve_all_job_defs()}
    assert {"demo__demo_csv", "acme__stripe_billing", "acme__postgres_shop", "meltano__demo"} <= jobs
    stripe = next(
        s for s in defs.resolve_all_asset_specs() if s.key.to_user_string() == "acme/stripe/charges"
    )
    assert stripe.group_name == "acme"
    assert stripe.kinds == {"iceberg", "stripe"}
    assert "team:billing_team" in stripe.owners  # the job's governance owner
    assert stripe.tags["domain"] == "finance"
    assert stripe.metadata["contract"] == "urn:contract:stripe:charges@1.0.0"
    checks = {key.asset_key.to_user_string() for key in defs.resolve_asset_graph().asset_check_keys}
    assert "acme/stripe/charges" in checks
    assert "demo/raw/customers" not in checks  # no contract, no check


def test_a_job_run_materializes_one_asset_per_table_with_the_run_metadata(platform: Platform) -> None:
    result = platform.execute("demo__demo_csv")
    assert result.success, [e.message for e in result.all_events if e.is_failure]

    found = _materializations(result)
    assert set(found) == {f"demo/raw/{stream}" for stream in DEMO_ROWS}
    (metadata,) = platform.run_metadata()
    assert metadata["status"] == "success"
    catalog = platform.lake.catalog()
    for stream, rows in DEMO_ROWS.items():
        table = found[f"demo/raw/{stream}"]
        assert table["rows_written"] == rows
        assert table["rows_rejected"] == 0
        assert table["dagster/table_name"] == f"demo.raw.{stream}"
        current = catalog.load_table(("demo", "raw", stream)).current_snapshot()
        assert table["snapshot_id"] == str(current.snapshot_id)  # the table's snapshot, as committed
        assert table["commit"] == metadata["catalog"]["commit_id"]
        assert table["bytes_written"] == metadata["streams"][stream]["bytes_written"] > 0
        assert table["cpu_time_sec"] == metadata["cpu_time_sec"] > 0
        assert table["api_calls"] == 0  # local files: no HTTP
        assert table["ingest_run_id"] == metadata["run_id"]
        assert table["tags_business"] == {"tag.cost_center": "demo"}
        assert len(read_pyiceberg(platform.lake, f"demo.raw.{stream}")) == rows
    assert _retries(result) == 0

    # An incremental run with no changed file commits nothing: no table is materialized again.
    again = platform.execute("demo__demo_csv")
    assert again.success
    assert _materializations(again) == {}


def test_contract_results_are_asset_checks(platform: Platform) -> None:
    """Quarantine: the run succeeds (partially), the check fails with severity WARN and names the
    rule; the customers table holds the rows that kept the contract."""
    platform.job(
        "demo_checked",
        "contracts: [demo/v1.0/customers.yaml]",
        "target: {namespace: checked, write_mode: upsert, contract_enforcement: quarantine}",
    )
    defs = platform.definitions()
    spec = next(
        s for s in defs.resolve_all_asset_specs() if s.key.to_user_string() == "demo/checked/customers"
    )
    assert spec.owners == ["team:crm_data"]
    assert spec.tags["contract"] == "urn_contract_demo_customers_1.2.0"
    assert spec.tags["classification"] == "confidential"
    assert "https://" not in (spec.description or "")  # link-free
    assert "Demo customers (urn:contract:demo:customers@1.2.0, active)" in (spec.description or "")

    result = platform.execute("demo__demo_checked")
    assert result.success
    checks = _check_evaluations(result)
    assert set(checks) == {"demo/checked/customers"}
    check = checks["demo/checked/customers"]
    assert not check.passed
    assert check.severity == dg.AssetCheckSeverity.WARN
    failed = check.metadata["failed_checks"].value
    assert sum(failed.values()) == SMALL_BUSINESS
    assert check.metadata["quarantined"].value == SMALL_BUSINESS
    table = _materializations(result)["demo/checked/customers"]
    assert table["rows_written"] == DEMO_ROWS["customers"] - SMALL_BUSINESS
    assert table["rows_rejected"] == SMALL_BUSINESS
    assert (
        len(read_pyiceberg(platform.lake, "demo.checked.customers"))
        == DEMO_ROWS["customers"] - SMALL_BUSINESS
    )


def test_a_contract_failure_is_not_retried(platform: Platform) -> None:
    """At the `fail` level the run stops (exit 2): one attempt, an ERROR check, a Failure that says
    why it is not retried, and no customers table."""
    platform.job(
        "demo_strict",
        "contracts: [demo/v1.0/customers.yaml]",
        "target: {namespace: strict, write_mode: upsert, contract_enforcement: fail}",
    )
    result = platform.execute("demo__demo_strict")
    assert not result.success
    assert _retries(result) == 0
    attempts = [m for m in platform.run_metadata() if m["job_id"] == "demo/demo_strict"]
    assert [(m["attempt"], m["exit_code"]) for m in attempts] == [(1, 2)]
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert "not retried" in str(failure.event_specific_data)
    assert "ContractViolation" in str(failure.event_specific_data)
    check = _check_evaluations(result)["demo/strict/customers"]
    assert not check.passed
    assert check.severity == dg.AssetCheckSeverity.ERROR
    assert platform.lake.catalog().load_table(("demo", "strict", "customers")) is None


def test_a_retryable_failure_is_retried_with_backoff_up_to_max_attempts(platform: Platform) -> None:
    """The catalog is unreachable: exit 75 each time; Dagster retries twice (3 attempts), then fails."""
    platform.runner(
        f"{{type: nessie, nessie_uri: 'http://127.0.0.1:9/api/v2', warehouse: '{platform.lake.warehouse}'}}"
    )
    result = platform.execute("demo__demo_csv")
    assert not result.success
    assert _retries(result) == 2
    attempts = platform.run_metadata()
    assert [(m["attempt"], m["exit_code"], m["retryable"]) for m in attempts] == [
        (1, 75, True),
        (2, 75, True),
        (3, 75, True),
    ]
    waits = [e.message or "" for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]
    assert len(waits) == 2
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert "gave up after 3 attempt(s)" in str(failure.event_specific_data)

    # The job's own `retries` replace runner.yaml's policy.
    platform.job("demo_csv", "retries: {max_attempts: 1}")
    once = platform.execute("demo__demo_csv")
    assert not once.success
    assert _retries(once) == 0


def test_a_job_whose_tables_are_unknown_runs_as_a_plain_job_until_its_first_run(
    platform: Platform, caplog: pytest.LogCaptureFixture
) -> None:
    """A discovering database tap without `streams`: no asset can be declared before a run, so the job
    is an op job; once a run's metadata names the tables, the definitions declare them."""
    shop = """
        schema_version: 1
        tenant: demo
        extractor: postgres
        config: {host: db.example.com, port: 5432, database: shop, user: reader}
        target: {namespace: shop}
        """
    # The connector's default contract is not in this platform's specs: that job is left out, with
    # the reason logged, and every other job still loads.
    platform.write("configs/jobs/demo/shop.yaml", shop)
    defs = platform.definitions()
    assert "demo__shop" not in {job.name for job in defs.resolve_all_job_defs()}
    assert "demo__demo_csv" in {job.name for job in defs.resolve_all_job_defs()}
    assert "no contract at" in caplog.text
    assert "postgres/v1.0/orders.yaml" in caplog.text

    platform.write("configs/jobs/demo/shop.yaml", textwrap.dedent(shop) + "contracts: []\n")
    defs = platform.definitions()
    assert "demo__shop" in {job.name for job in defs.resolve_all_job_defs()}
    assert not any(s.key.to_user_string().startswith("demo/shop/") for s in defs.resolve_all_asset_specs())

    record = {"job_id": "demo/shop", "streams": {"public-orders": {}}}
    runs = platform.root / "logs" / "demo" / "runs"
    runs.mkdir(parents=True)
    (runs / "20261126T000000Z-0000abcd.json").write_text(json.dumps(record), encoding="utf-8")
    again = platform.definitions()
    keys = {s.key.to_user_string() for s in again.resolve_all_asset_specs()}
    assert "demo/shop/public_orders" in keys


def test_a_second_job_writing_a_table_records_materializations_of_its_asset(
    platform: Platform, caplog: pytest.LogCaptureFixture
) -> None:
    """Two jobs writing demo.raw.*: the first by id owns the assets (Dagster refuses a key twice); the
    other is a plain op job whose run records materializations of those same keys."""
    platform.job("demo_csv_again")
    defs = platform.definitions()
    owned = {s.key.to_user_string() for s in defs.resolve_all_asset_specs()}
    assert owned == {f"demo/raw/{stream}" for stream in DEMO_ROWS}
    assert (
        "table demo.raw.customers of job demo/demo_csv_again is written by job demo/demo_csv too"
        in caplog.text
    )
    result = platform.execute("demo__demo_csv_again")
    assert result.success
    found = _materializations(result)
    assert {key: table["rows_written"] for key, table in found.items()} == {
        f"demo/raw/{stream}": rows for stream, rows in DEMO_ROWS.items()
    }
    assert found["demo/raw/orders"]["ingest_run_id"] == platform.run_metadata()[-1]["run_id"]


def test_api_calls_reach_the_assets_and_no_secret_reaches_dagster(tmp_path: Path) -> None:
    """A Stripe job (the fake, through the test-only redirection) run by Dagster: each table's
    materialization carries the run's API calls, equal to what the fake served, and the key appears
    nowhere in the Dagster instance (event log, run storage, captured logs) or in any event."""
    lake = Lake(tmp_path / "lake")
    project = copy_meltano_project(tmp_path / "project", lake, extractors=("tap-stripe",))
    platform = Platform(tmp_path, project, lake)
    (tmp_path / "specs").mkdir()
    (tmp_path / "specs" / "registry").symlink_to(REPO_ROOT / "registry", target_is_directory=True)
    shutil.copytree(REPO_ROOT / "assets" / "stripe", tmp_path / "specs" / "assets" / "stripe")
    platform.runner()
    write_stripe_job(platform.write)
    home = tmp_path / "dagster"
    home.mkdir()
    try:
        with FakeStripe(customers=12, charges=9, invoices=0) as fake:
            redirect_extractor(project, "tap-stripe", fake.redirects)
            job = platform.definitions().resolve_job_def("acme__stripe_billing")
            with dg.instance_for_test(temp_dir=str(home)) as instance:
                result = job.execute_in_process(instance=instance, raise_on_error=False)
                events = [str(e) for e in result.all_events]
            served = fake.request_count
    finally:
        lake.close()
    assert result.success, [e.message for e in result.all_events if e.is_failure]
    found = _materializations(result)
    assert set(found) == {"acme/stripe/customers", "acme/stripe/charges"}
    for table in found.values():
        assert table["api_calls"] == served > 0
        assert sum(table["api_calls_by_host"]["tap-stripe"].values()) == served
    assert found["acme/stripe/customers"]["rows_written"] == 12

    forms = {SECRET_KEY, SECRET_KEY.replace("_", "%5F")}
    assert not [e for e in events if any(s in e for s in forms)]
    scanned = [f for f in home.rglob("*") if f.is_file()]
    assert any(f.suffix == ".db" for f in scanned), scanned  # the instance's SQLite storage
    for file in scanned:
        text = file.read_bytes().decode("utf-8", errors="replace")
        assert not [s for s in forms if s in text], f"the Stripe key in {file}"


def test_schedules_evaluate_to_run_requests(platform: Platform, caplog: pytest.LogCaptureFixture) -> None:
    platform.job(
        "demo_nightly",
        "schedule: {cron: '0 2 * * *', timezone: Europe/Berlin, tags: {tier: gold}}",
        "target: {namespace: nightly}",
    )
    platform.runner(
        schedules="[{job: demo/demo_csv, interval: 15m, tags: {team: crm}}, "
        "{job: demo/demo_csv, cron: '0 3 * * *', enabled: false}, "
        "{job: demo/demo_csv, cron: '99 * * * *'}]"
    )
    defs = platform.definitions()
    # A cron Dagster cannot run (minute 99) leaves that schedule out, not the others.
    assert "demo__demo_csv_schedule_3" not in {s.name for s in defs.schedules}
    assert "schedule of demo/demo_csv left out" in caplog.text
    every = defs.resolve_schedule_def("demo__demo_csv_schedule")
    assert every.cron_schedule == "*/15 * * * *"
    assert every.default_status == dg.DefaultScheduleStatus.RUNNING
    nightly = defs.resolve_schedule_def("demo__demo_nightly_schedule")
    assert nightly.cron_schedule == "0 2 * * *"
    assert nightly.execution_timezone == "Europe/Berlin"
    disabled = defs.resolve_schedule_def("demo__demo_csv_schedule_2")
    assert disabled.cron_schedule == "0 3 * * *"
    assert disabled.default_status == dg.DefaultScheduleStatus.STOPPED

    with dg.build_schedule_context(
        scheduled_execution_time=datetime(2026, 11, 26, 1, 0, tzinfo=UTC)
    ) as context:
        (request,) = every.evaluate_tick(context).run_requests or []
    assert request.tags["team"] == "crm"
    assert every.job_name == "demo__demo_csv"
    job = defs.resolve_job_def("demo__demo_csv")
    assert job.tags["ingest/tenant"] == "demo"  # the run-queue limit per tenant keys on this tag

    # The Berlin schedule's next tick is 02:00 Berlin time (01:00 UTC in winter).
    ticks = nightly.cron_schedule
    with dg.build_schedule_context(
        scheduled_execution_time=datetime(2026, 11, 26, 1, 0, tzinfo=UTC)
    ) as context:
        (nightly_request,) = nightly.evaluate_tick(context).run_requests or []
    assert nightly_request.tags["tier"] == "gold"
    assert ticks == "0 2 * * *"

    assert interval_cron("1h") == "0 * * * *"
    assert interval_cron("6h") == "0 */6 * * *"
    assert interval_cron("1d") == "0 0 * * *"
    with pytest.raises(Exception, match="does not divide an hour or a day"):
        interval_cron("7m")


def test_meltano_yml_jobs_are_dagster_jobs(platform: Platform, monkeypatch: pytest.MonkeyPatch) -> None:
    """meltano.yml's `demo` job (tap-demo-csv → target) runs as `meltano__demo`; its schedule too."""
    with (platform.project.root / "meltano.yml").open("a", encoding="utf-8") as file:
        file.write("\nschedules:\n- name: demo-nightly\n  job: demo\n  interval: '@daily'\n")
    for key, value in platform.project.env.items():
        monkeypatch.setenv(key, value)
    defs = platform.definitions()
    schedule = defs.resolve_schedule_def("meltano__demo_nightly")
    assert schedule.cron_schedule == "0 0 * * *"
    assert schedule.job_name == "meltano__demo"
    result = platform.execute("meltano__demo")
    assert result.success
    for stream, rows in DEMO_ROWS.items():
        assert len(read_pyiceberg(platform.lake, f"default.raw.{stream}")) == rows
