"""`ingest run <job>`: the platform runner end to end, as the image's one-shot mode runs it.

Each test has its own configs/secrets/state/logs folders and a throwaway copy of the Meltano project
(INGEST_MELTANO_PROJECT), and checks what the run left: tables, run metadata (valid against
schemas/run-metadata.schema.json, CPU seconds from the OS, API calls equal to what the fake served),
logs without a single secret, exit codes, a resumed backfill.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from _commands import MeltanoProject, clean_env, copy_meltano_project, redirect_extractor
from _saas import write_stripe_job
from conftest import REPO_ROOT, Lake, new_nessie_branch, read_duckdb, read_pyiceberg
from fakes.base import ApiError, Fault
from fakes.stripe import SECRET_KEY, FakeStripe

INGEST = Path(sys.executable).parent / "ingest"
SCHEMA = json.loads((REPO_ROOT / "schemas" / "run-metadata.schema.json").read_text(encoding="utf-8"))
EXAMPLE = REPO_ROOT / "docs" / "examples" / "run-metadata.json"
DEMO_ROWS = {"customers": 50, "orders": 200, "products": 10}


@dataclass
class Platform:
    """A platform installation in a temporary folder: its volumes and the Meltano project it runs."""

    root: Path
    project: MeltanoProject
    lake: Lake

    @property
    def dirs(self) -> list[str]:
        return [
            *("--configs-dir", str(self.root / "configs")),
            *("--specs-dir", str(REPO_ROOT)),
            *("--secrets-dir", str(self.root / "secrets")),
            *("--state-dir", str(self.root / "state")),
            *("--logs-dir", str(self.root / "logs")),
        ]

    def write(self, relative: str, text: str) -> Path:
        file = self.root / relative
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
        return file

    def ingest(self, *args: str) -> subprocess.CompletedProcess[str]:
        """`ingest <command> [<subcommand>] <this platform's folders> <the rest>`."""
        env = {k: v for k, v in clean_env().items() if not k.startswith("INGEST_")}
        env["INGEST_MELTANO_PROJECT"] = str(self.project.root)
        words = 2 if args[0] == "state" else 1
        return subprocess.run(
            [str(INGEST), *args[:words], *self.dirs, *args[words:]],
            capture_output=True,
            text=True,
            env=env,
            timeout=900,
            check=False,
        )

    def run(self, job: str, *extra: str) -> tuple[subprocess.CompletedProcess[str], Any]:
        done = self.ingest("run", job, "--json", *extra)
        try:
            return done, json.loads(done.stdout)
        except json.JSONDecodeError:
            pytest.fail(f"`ingest run {job}` printed no JSON (exit {done.returncode})\n{done.stderr[-4000:]}")

    def metadata(self, summary: dict[str, Any]) -> dict[str, Any]:
        document = json.loads(Path(summary["metadata"]).read_text(encoding="utf-8"))
        jsonschema.Draft202012Validator(SCHEMA, format_checker=jsonschema.FormatChecker()).validate(document)
        return document


def runner_yaml(lake: Lake, **extra: str) -> str:
    catalog = (
        f"{{type: sql, uri: 'sqlite:///{lake.root / 'catalog.db'}', warehouse: '{lake.warehouse}'}}"
        if lake.nessie_uri is None
        else f"{{type: nessie, nessie_uri: '{lake.nessie_uri}', branch: '{lake.branch}', "
        f"warehouse: '{lake.warehouse}'}}"
    )
    lines = ["schema_version: 1", f"catalog: {catalog}", *(f"{k}: {v}" for k, v in extra.items())]
    return "\n".join(lines) + "\n"


@pytest.fixture
def platform(tmp_path: Path) -> Iterator[Platform]:
    lake = Lake(tmp_path / "lake")
    project = copy_meltano_project(tmp_path / "project", lake)
    found = Platform(tmp_path, project, lake)
    found.write("configs/runner.yaml", runner_yaml(lake))
    found.write(
        "configs/jobs/demo/demo_csv.yaml",
        """
        schema_version: 1
        tenant: demo
        extractor: csv_files
        plugin: tap-demo-csv
        target: {namespace: raw, write_mode: upsert}
        tags: {business: {cost_center: demo}, governance: {owner: data-team}}
        """,
    )
    yield found
    lake.close()


class LineageReceiver:
    """A local OpenLineage endpoint: keeps every RunEvent POSTed to it."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                receiver.events.append(json.loads(self.rfile.read(length)))
                self.send_response(201)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/api/v1/lineage"


def assert_state_shown(platform: Platform, job: str, commit_id: str) -> None:
    """`ingest state show <tenant>/<job>` finds the job's pipeline and its last commit."""
    shown = subprocess.run(
        [
            str(INGEST),
            *("state", "show", job, "--json"),
            *("--state-dir", str(platform.root / "state" / job.split("/", maxsplit=1)[0])),
            *("--catalog-uri", platform.lake.catalog_uri, "--warehouse", str(platform.lake.warehouse)),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert shown.returncode == 0, shown.stderr
    assert job.replace("/", ".") in shown.stdout
    assert commit_id in shown.stdout, "the committed state is the run's last commit"


def test_a_run_loads_the_job_and_leaves_valid_run_metadata(platform: Platform) -> None:
    receiver = LineageReceiver()
    platform.write(
        "configs/runner.yaml",
        runner_yaml(platform.lake, openlineage=f"{{url: '{receiver.url}', namespace: ingest-tests}}"),
    )
    done, summary = platform.run("demo/demo_csv")
    receiver.server.shutdown()
    receiver.server.server_close()
    assert done.returncode == 0, done.stderr[-4000:]
    assert summary["status"] == "success"
    metadata = platform.metadata(summary)
    assert metadata["job_id"] == "demo/demo_csv"
    assert metadata["tenant"] == "demo"
    assert metadata["exit_code"] == 0
    assert metadata["cpu_time_sec"] > 0, "the process tree's CPU seconds, from the OS"
    assert metadata["totals"]["rows_written"] == sum(DEMO_ROWS.values())
    assert metadata["tags"]["business"] == {"tag.cost_center": "demo"}
    assert metadata["tags"]["governance"]["owner"] == "data-team"
    for stream, count in DEMO_ROWS.items():
        table = f"demo.raw.{stream}"
        assert metadata["streams"][stream]["table"] == table
        assert metadata["streams"][stream]["rows_written"] == count
        rows = read_pyiceberg(platform.lake, table)
        assert len(rows) == count == len(read_duckdb(platform.lake, table))
        snapshot = platform.lake.catalog().load_table(tuple(table.split("."))).metadata.current_snapshot()
        assert metadata["streams"][stream]["snapshot_ids"][-1] == snapshot.snapshot_id
    outputs = {o["name"]: o for o in metadata["lineage"]["outputs"]}
    assert set(outputs) == {f"demo.raw.{s}" for s in DEMO_ROWS}
    assert metadata["catalog"]["commit_id"], "the run's last commit"
    [event] = receiver.events
    assert event["eventType"] == "COMPLETE"
    assert event["job"] == {"namespace": "ingest-tests", "name": "demo/demo_csv"}
    assert {o["name"] for o in event["outputs"]} == set(outputs)
    assert event["run"]["facets"]["ingestion"]["runId"] == metadata["run_id"]
    if os.environ.get("INGEST_WRITE_EXAMPLE") == "1":  # `make examples`: keep this real record
        EXAMPLE.write_text(json.dumps(metadata, indent=2) + "\n", encoding="utf-8")
    log = Path(platform.root / "logs" / "demo" / "demo_csv" / f"{metadata['run_id']}.jsonl")
    events = [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()]
    assert all(e["tenant"] == "demo" and e["run_id"] == metadata["run_id"] for e in events)

    assert_state_shown(platform, "demo/demo_csv", metadata["catalog"]["commit_id"])

    again, second = platform.run("demo/demo_csv")
    assert again.returncode == 0, again.stderr[-4000:]
    assert platform.metadata(second)["totals"]["rows_written"] == 0, "incremental: nothing new"

    runs = platform.ingest("runs", "--tenant", "demo", "--json")
    assert runs.returncode == 0, runs.stderr
    listed = json.loads(runs.stdout)
    assert [r["run_id"] for r in listed] == [second["run_id"], summary["run_id"]], "newest first"

    reset = platform.ingest("state", "reset", "demo/demo_csv")
    assert reset.returncode == 0, reset.stderr[-2000:]
    third_done, third = platform.run("demo/demo_csv")
    assert third_done.returncode == 0, third_done.stderr[-4000:]
    assert platform.metadata(third)["totals"]["rows_written"] == sum(DEMO_ROWS.values()), "a full load again"
    assert len(read_pyiceberg(platform.lake, "demo.raw.customers")) == DEMO_ROWS["customers"], (
        "upsert: no dups"
    )


def stripe_job(platform: Platform, fake: FakeStripe, *, extra: str = "") -> None:
    redirect_extractor(platform.project, "tap-stripe", fake.redirects)
    write_stripe_job(platform.write, extra=extra)


@pytest.fixture
def stripe_platform(tmp_path: Path, nessie: Any) -> Iterator[Platform]:
    lake = Lake(tmp_path / "lake", nessie_uri=nessie.uri, branch=new_nessie_branch(nessie.uri, "run"))
    project = copy_meltano_project(tmp_path / "project", lake, extractors=("tap-stripe",))
    found = Platform(tmp_path, project, lake)
    found.write("configs/runner.yaml", runner_yaml(lake))
    yield found
    lake.close()


def test_api_calls_equal_what_the_source_served_and_no_secret_is_left_anywhere(
    stripe_platform: Platform, nessie: Any
) -> None:
    with FakeStripe(customers=30, charges=40, invoices=5) as fake:
        stripe_job(stripe_platform, fake)
        done, summary = stripe_platform.run("acme/stripe_billing")
        served = fake.request_count
    assert done.returncode == 0, done.stdout[-4000:]
    metadata = stripe_platform.metadata(summary)
    assert metadata["api_calls"]["tap-stripe"]["requests"] == served > 0
    assert metadata["streams"]["customers"]["rows_written"] == 30
    assert metadata["catalog"]["type"] == "nessie"
    assert metadata["catalog"]["branch"] == stripe_platform.lake.branch

    secret_forms = {SECRET_KEY, SECRET_KEY.replace("_", "%5F")}
    scanned = 0
    for folder in ("logs", "state"):
        for file in (stripe_platform.root / folder).rglob("*"):
            if file.is_file():
                scanned += 1
                text = file.read_text(encoding="utf-8", errors="replace")
                assert not [s for s in secret_forms if s in text], f"a secret in {file}"
    for file in stripe_platform.lake.warehouse.rglob("*.json"):  # table metadata: properties
        scanned += 1
        assert SECRET_KEY not in file.read_text(encoding="utf-8")
    from target_iceberg_nessie.catalogs.nessie_api import NessieClient  # noqa: PLC0415

    with NessieClient(nessie.uri) as client:
        commits = list(itertools.islice(client.log(stripe_platform.lake.branch), 100))
    assert commits, "the run committed to Nessie"
    for commit in commits:
        assert SECRET_KEY not in json.dumps([commit.message, commit.properties])
    assert scanned > 3


def test_a_source_that_stays_unavailable_is_a_retryable_failure(stripe_platform: Platform) -> None:
    with FakeStripe(customers=5, charges=5, invoices=1) as fake:
        stripe_job(stripe_platform, fake)
        fake.inject(Fault(503, times=1000))
        done, summary = stripe_platform.run("acme/stripe_billing")
    assert done.returncode == 75, done.stderr[-3000:]
    metadata = stripe_platform.metadata(summary)
    assert metadata["status"] == "failed"
    assert metadata["retryable"] is True
    assert SECRET_KEY not in json.dumps(metadata)


def test_a_backfill_runs_its_windows_in_order_and_resumes_after_a_failure(stripe_platform: Platform) -> None:
    args = ("--from", "2025-01-01", "--to", "2025-01-04", "--window", "1d")
    second_window = str(int(datetime(2025, 1, 2, tzinfo=UTC).timestamp()))
    broken = {"on": True}
    with FakeStripe(customers=10, charges=10, invoices=2) as fake:
        stripe_job(stripe_platform, fake)
        original = fake.handle

        def fail_the_second_window(request: Any) -> Any:
            # The key is refused while the second window is read: that window's run fails.
            if broken["on"] and request.arg("created[gte]") == second_window:
                raise ApiError(
                    401, {"error": {"type": "invalid_request_error", "message": "Invalid API Key"}}
                )
            return original(request)

        fake.handle = fail_the_second_window  # type: ignore[method-assign]
        first_done = stripe_platform.ingest("run", "acme/stripe_billing", "--json", *args)
        first = json.loads(first_done.stdout)
        assert first_done.returncode == 2, first_done.stderr[-3000:]
        assert [(r["window"]["start"], r["status"]) for r in first] == [
            ("2025-01-01T00:00:00Z", "success"),
            ("2025-01-02T00:00:00Z", "failed"),
        ], "the windows run in order and the backfill stops at the failed one"
        broken["on"] = False
        second_done = stripe_platform.ingest("run", "acme/stripe_billing", "--json", *args)
        second = json.loads(second_done.stdout)
    assert second_done.returncode == 0, second_done.stderr[-3000:]
    assert [r["window"]["start"] for r in second] == ["2025-01-02T00:00:00Z", "2025-01-03T00:00:00Z"], (
        "the re-run resumes at the first unfinished window"
    )
    runs = json.loads(stripe_platform.ingest("runs", "--tenant", "acme", "--json").stdout)
    assert len(runs) == 4
    assert all(r["window"] is not None for r in runs)
    ids = [r["id"] for r in read_pyiceberg(stripe_platform.lake, "acme.stripe.customers")]
    assert len(ids) == len(set(ids)), "upsert: windows that overlap store each customer once"


def test_saas_mode_refuses_a_database_job_before_anything_runs(platform: Platform) -> None:
    platform.write("configs/runner.yaml", runner_yaml(platform.lake, deployment="saas"))
    platform.write("secrets/acme/db.env", "PG_PASSWORD=hunter2-secret\n")
    platform.write(
        "configs/jobs/acme/shop.yaml",
        """
        schema_version: 1
        tenant: acme
        extractor: postgres
        config: {host: 127.0.0.1, port: 5432, user: reader, database: shop}
        secrets: {password: PG_PASSWORD}
        """,
    )
    done, summary = platform.run("acme/shop")
    assert done.returncode == 2
    metadata = platform.metadata(summary)
    assert metadata["status"] == "failed"
    assert "saas" in metadata["error"]["message"].lower()
    assert metadata["totals"]["commits"] == 0
    assert not (platform.lake.root / "catalog.db").exists(), "nothing ran"


def test_a_job_reaching_for_another_tenants_secret_fails_before_anything_runs(platform: Platform) -> None:
    platform.write("secrets/globex/stripe.env", "STRIPE_API_KEY=sk_globex_secret_value\n")
    (platform.root / "secrets" / "acme").mkdir(parents=True)
    (platform.root / "secrets" / "acme" / "stolen.env").symlink_to(
        platform.root / "secrets" / "globex" / "stripe.env"
    )
    platform.write(
        "configs/jobs/acme/stripe_billing.yaml",
        """
        schema_version: 1
        tenant: acme
        extractor: stripe
        secrets: {client_secret: STRIPE_API_KEY}
        """,
    )
    done = platform.ingest("run", "acme/stripe_billing", "--json")
    assert done.returncode == 2
    assert "sk_globex_secret_value" not in done.stdout + done.stderr
    assert "stolen.env" in done.stderr
    shutil.rmtree(platform.root / "secrets" / "globex")


def test_check_reports_each_component_and_a_retryable_source(platform: Platform) -> None:
    done = platform.ingest("check", "demo/demo_csv", "--json")
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    report = json.loads(done.stdout)
    assert [(c["component"], c["ok"]) for c in report["checks"]] == [
        ("catalog", True),
        ("object_store", True),
        ("source", True),
    ]
    assert not (platform.lake.root / "catalog.db").exists(), "check loads nothing"
    platform.write("secrets/acme/db.env", "PG_PASSWORD=not-used-secret\n")
    platform.write(
        "configs/jobs/acme/shop.yaml",
        """
        schema_version: 1
        tenant: acme
        extractor: postgres
        config: {host: 127.0.0.1, port: 9, user: reader, database: shop}
        secrets: {password: PG_PASSWORD}
        """,
    )
    down = platform.ingest("check", "acme/shop", "--json")
    report = json.loads(down.stdout)
    source = next(c for c in report["checks"] if c["component"] == "source")
    assert source["ok"] is False
    assert source["retryable"] is True, source
    assert down.returncode == 75
    assert "not-used-secret" not in down.stdout + down.stderr


def test_discover_lists_streams_and_writes_a_contract_skeleton_that_validates(platform: Platform) -> None:
    done = platform.ingest("discover", "demo/demo_csv", "--json")
    assert done.returncode == 0, done.stderr[-3000:]
    streams = json.loads(done.stdout)["streams"]
    assert set(streams) == set(DEMO_ROWS)
    assert "customer_id" in streams["customers"]["properties"]
    skeleton = platform.ingest("discover", "demo/demo_csv", "--contract", "customers")
    assert skeleton.returncode == 0, skeleton.stderr[-3000:]
    contract = platform.write("assets/csv_files/v0.1/customers.yaml", skeleton.stdout)
    checked = subprocess.run(
        [str(INGEST), "contracts", "validate", str(contract)], capture_output=True, text=True, check=False
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_run_all_runs_every_job_and_exits_with_the_worst_outcome(platform: Platform) -> None:
    platform.write(
        "configs/jobs/demo/needs_a_secret.yaml",
        """
        schema_version: 1
        tenant: demo
        extractor: csv_files
        plugin: tap-demo-csv
        secrets: {s3_secret_access_key: NOT_THERE}
        """,
    )
    done = platform.ingest("run", "--all", "--tenant", "demo", "--json")
    results = {r["job"]: r for r in json.loads(done.stdout)}
    assert set(results) == {"demo/demo_csv", "demo/needs_a_secret"}
    assert results["demo/demo_csv"]["status"] == "success"
    assert results["demo/needs_a_secret"]["status"] == "failed"
    assert "NOT_THERE" in results["demo/needs_a_secret"]["error"], "the missing secret is named"
    assert done.returncode == 2, "the worst of the runs"

    # `state set` makes the next run start from the given state: empty bookmarks, a full load.
    reset = platform.ingest("state", "set", "demo/demo_csv", '{"bookmarks": {}}')
    assert reset.returncode == 0, reset.stderr[-2000:]
    again, summary = platform.run("demo/demo_csv")
    assert again.returncode == 0, again.stderr[-3000:]
    assert summary["rows_written"] == sum(DEMO_ROWS.values())

    described = platform.ingest("discover", "stripe", "--json")
    assert described.returncode == 0, described.stderr
    assert json.loads(described.stdout)["streams"]["names"] == ["customers", "charges", "invoices"]
