"""`ingest serve` on loopback: the Dagster webserver and daemon, the run queue, and the UI in Chromium.

One server for the module (its start-up is the slow part): two tenants, `alpha` with two jobs and
`beta` with one, all loading the demo CSV files into the embedded catalog through the real Meltano.
The daemon must hold alpha's second run in the queue until its first has finished (concurrency per
tenant 1) while beta's run goes side by side. Then headless Chromium (Debian's, driven by Playwright)
opens the UI: the asset catalog lists every table, a run launched with "Materialize all" finishes
green, and screenshots of what a user sees are taken (`make examples` keeps them in docs/images/ for
the README and docs/orchestration.md).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from _commands import MeltanoProject, clean_env, copy_meltano_project
from conftest import REPO_ROOT, Lake, service_required

INGEST = Path(sys.executable).parent / "ingest"
CHROMIUM = Path("/usr/bin/chromium")
# Chromium as this machine runs it headless: no sandbox (root), no GPU, and no background traffic
# to Google's hosts (the network is closed; those connections fail by the dozen otherwise).
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
DOC_IMAGES = REPO_ROOT / "docs" / "images"  # `make examples` (INGEST_WRITE_EXAMPLE=1) refreshes them
JOBS = {"alpha/one": "one", "alpha/two": "two", "beta/one": "one"}
TABLES = ("customers", "orders", "products")
START_TIMEOUT_SECONDS = 180
RUN_TIMEOUT_SECONDS = 600
TERMINAL = {"SUCCESS", "FAILURE", "CANCELED"}

# beta's customers carry a contract, so the UI shows an asset check (quarantine: WARN, 11 rows).
BETA_CONTRACT = """
apiVersion: v3.0.2
kind: DataContract
id: urn:contract:beta:customers
version: 1.0.0
status: active
name: Beta customers
tenant: beta
domain: sales
dataProduct: crm
description: {purpose: Customers of the beta tenant.}
team: [{username: beta-data, role: owner}]
schema:
  - name: customers
    physicalName: customers
    logicalType: object
    properties:
      - {name: customer_id, logicalType: integer, primaryKey: true, primaryKeyPosition: 1, required: true}
      - name: segment
        logicalType: string
        quality: [{type: library, rule: validValues, validValues: [consumer, enterprise]}]
"""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Orchestrator:
    url: str
    root: Path
    process: subprocess.Popen[bytes]
    log: Path

    def graphql(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        request = urllib.request.Request(  # noqa: S310 - the server this test started on loopback
            f"{self.url}/graphql",
            data=json.dumps({"query": query, "variables": variables or {}}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            answer: dict[str, Any] = json.loads(response.read())
        assert "errors" not in answer, answer
        return answer["data"]

    def launch(self, job: str, assets: list[list[str]] | None = None) -> str:
        """Launch a run of `job`, or of the asset graph's implicit job for `assets` (as the UI's
        "Materialize" on an asset does: no job tags)."""
        data = self.graphql(
            """
            mutation Launch($params: ExecutionParams!) {
              launchRun(executionParams: $params) {
                __typename
                ... on LaunchRunSuccess { run { runId } }
                ... on PythonError { message }
                ... on InvalidStepError { invalidStepKey }
                ... on RunConfigValidationInvalid { errors { message } }
              }
            }
            """,
            {
                "params": {
                    "selector": {
                        "repositoryLocationName": "ingestion",
                        "repositoryName": "__repository__",
                        "jobName": job,
                        **({"assetSelection": [{"path": key} for key in assets]} if assets else {}),
                    },
                    "runConfigData": {},
                }
            },
        )
        launched = data["launchRun"]
        assert launched["__typename"] == "LaunchRunSuccess", launched
        return str(launched["run"]["runId"])

    def runs(self) -> list[dict[str, Any]]:
        data = self.graphql(
            "{ runsOrError { ... on Runs { results { runId jobName status startTime endTime "
            "tags { key value } } } } }"
        )
        return list(data["runsOrError"]["results"])

    def wait(self, run_ids: set[str]) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
        """Poll until the runs are finished; returns them and every status seen along the way."""
        seen: list[dict[str, str]] = []
        deadline = time.monotonic() + RUN_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            runs = [r for r in self.runs() if r["runId"] in run_ids]
            seen.append({r["jobName"]: r["status"] for r in runs})
            if len(runs) == len(run_ids) and all(r["status"] in TERMINAL for r in runs):
                return runs, seen
            time.sleep(1)
        pytest.fail(f"runs not finished in {RUN_TIMEOUT_SECONDS}s: {seen[-1:]}\n{self.tail()}")

    def tail(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")[-6000:]


def _write(root: Path, relative: str, text: str) -> None:
    file = root / relative
    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")


@pytest.fixture(scope="module")
def orchestrator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Orchestrator]:
    root = tmp_path_factory.mktemp("orchestrator")
    lake = Lake(root / "lake")
    project: MeltanoProject = copy_meltano_project(root / "project", lake)
    _write(
        root,
        "configs/runner.yaml",
        f"""
        schema_version: 1
        catalog: {{type: sql, uri: 'sqlite:///{lake.root / "catalog.db"}', warehouse: '{lake.warehouse}'}}
        concurrency_per_tenant: 1
        retry_policy: {{max_attempts: 2, initial_backoff_seconds: 1, max_backoff_seconds: 1}}
        """,
    )
    for job, namespace in JOBS.items():
        tenant = job.split("/")[0]
        lines = [
            "schema_version: 1",
            f"tenant: {tenant}",
            "extractor: csv_files",
            "plugin: tap-demo-csv",
            f"target: {{namespace: {namespace}, write_mode: upsert, contract_enforcement: quarantine}}",
        ]
        if tenant == "beta":
            lines.append("contracts: [beta/v1.0/customers.yaml]")
        _write(root, f"configs/jobs/{job}.yaml", "\n".join(lines) + "\n")
    (root / "specs").mkdir()
    (root / "specs" / "registry").symlink_to(REPO_ROOT / "registry", target_is_directory=True)
    _write(root, "specs/assets/beta/v1.0/customers.yaml", BETA_CONTRACT)
    port = _free_port()
    env = {k: v for k, v in clean_env().items() if not k.startswith("INGEST_")}
    env |= {"INGEST_MELTANO_PROJECT": str(project.root), "DAGSTER_HOME": str(root / "dagster")}
    log = root / "serve.log"
    command = [str(INGEST), "serve", "--host", "127.0.0.1", "--port", str(port)]
    for folder in ("configs", "specs", "secrets", "state", "logs"):
        command += [f"--{folder}-dir", str(root / folder)]
    with log.open("wb") as output:
        process = subprocess.Popen(
            command, env=env, stdout=output, stderr=subprocess.STDOUT, start_new_session=True
        )
    found = Orchestrator(f"http://127.0.0.1:{port}", root, process, log)
    try:
        _wait_until_up(found)
        yield found
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        lake.close()
    assert process.returncode == 0, f"ingest serve exited {process.returncode} on SIGTERM\n{found.tail()}"


def _wait_until_up(server: Orchestrator) -> None:
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            pytest.fail(f"ingest serve exited with {server.process.returncode}\n{server.tail()}")
        try:
            with urllib.request.urlopen(f"{server.url}/server_info", timeout=5):  # noqa: S310
                pass
            # The webserver answers before the code location has loaded: wait for the jobs.
            data = server.graphql(
                "{ repositoriesOrError { ... on RepositoryConnection { nodes { jobs { name } } } } }"
            )
            nodes = (data.get("repositoriesOrError") or {}).get("nodes") or []
            if any(job["name"] == "beta__one" for node in nodes for job in node["jobs"]):
                return
        except (urllib.error.URLError, ConnectionError, TimeoutError, AssertionError):
            pass
        time.sleep(1)
    pytest.fail(f"the Dagster webserver did not come up in {START_TIMEOUT_SECONDS}s\n{server.tail()}")


def test_serve_writes_the_instance_settings_from_runner_yaml(orchestrator: Orchestrator) -> None:
    instance = (orchestrator.root / "dagster" / "dagster.yaml").read_text(encoding="utf-8")
    assert "key: ingest/tenant" in instance
    assert "applyLimitPerUniqueValue: true" in instance
    assert "default_limit: 1" in instance
    workspace = (orchestrator.root / "dagster" / "workspace.yaml").read_text(encoding="utf-8")
    assert "ingestion.orchestration.definitions" in workspace


def test_the_ui_lists_the_tables_and_a_run_launched_there_finishes_green(
    orchestrator: Orchestrator, tmp_path: Path
) -> None:
    from playwright.sync_api import sync_playwright  # noqa: PLC0415 - this test's browser driver

    if not CHROMIUM.exists():
        message = f"{CHROMIUM} is missing: `make services` installs Debian's chromium"
        if service_required():
            pytest.fail(message)
        pytest.skip(message)
    before = {r["runId"] for r in orchestrator.runs()}
    shots = DOC_IMAGES if os.environ.get("INGEST_WRITE_EXAMPLE") == "1" else tmp_path
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 860})
            page.goto(f"{orchestrator.url}/assets", wait_until="networkidle")
            _dismiss_welcome(page)
            page.get_by_text("beta / one / customers").first.wait_for(timeout=60_000)
            listed = page.inner_text("body")
            for job, namespace in JOBS.items():
                tenant = job.split("/")[0]
                for table in TABLES:
                    assert f"{tenant} / {namespace} / {table}" in listed

            page.goto(f"{orchestrator.url}/locations/ingestion/jobs/beta__one", wait_until="networkidle")
            _dismiss_welcome(page)
            page.get_by_role("button", name="Materialize all").click()
            page.get_by_text("Launched run").wait_for(timeout=60_000)
            new = {r["runId"] for r in orchestrator.runs()} - before
            assert len(new) == 1
            runs, _ = orchestrator.wait(new)
            assert runs[0]["status"] == "SUCCESS", orchestrator.tail()

            page.goto(f"{orchestrator.url}/runs/{runs[0]['runId']}", wait_until="networkidle")
            page.get_by_text("Success").first.wait_for(timeout=60_000)
            page.screenshot(path=str(shots / "dagster-run.png"))
            page.goto(
                f"{orchestrator.url}/locations/ingestion/asset-groups/beta/lineage", wait_until="networkidle"
            )
            page.get_by_text("Materialized").first.wait_for(timeout=60_000)
            page.screenshot(path=str(shots / "dagster-asset-graph.png"))
            page.goto(f"{orchestrator.url}/assets/beta/one/customers", wait_until="networkidle")
            page.get_by_text("rows_written").first.wait_for(timeout=60_000)
            details = page.inner_text("body")
            for shown in ("rows_written", "snapshot_id", "commit", "cpu_time_sec", "api_calls"):
                assert shown in details
            page.screenshot(path=str(shots / "dagster-asset.png"), full_page=True)
        finally:
            browser.close()
    for name in ("dagster-run.png", "dagster-asset-graph.png", "dagster-asset.png"):
        assert (shots / name).stat().st_size > 10_000


def test_runs_of_one_tenant_are_serialized_and_tenants_run_side_by_side(orchestrator: Orchestrator) -> None:
    launched = {orchestrator.launch(job) for job in ("alpha__one", "alpha__two", "beta__one")}
    runs, seen = orchestrator.wait(launched)
    assert {r["jobName"]: r["status"] for r in runs} == {
        "alpha__one": "SUCCESS",
        "alpha__two": "SUCCESS",
        "beta__one": "SUCCESS",
    }, orchestrator.tail()
    spans = {r["jobName"]: (r["startTime"], r["endTime"]) for r in runs}
    first, second = sorted((spans["alpha__one"], spans["alpha__two"]))
    assert first[1] <= second[0], f"alpha's runs overlapped: {spans}"
    beta = spans["beta__one"]
    assert beta[0] < first[1], f"beta did not run beside alpha's first run: {spans}"
    assert first[0] < beta[1], f"beta did not run beside alpha's first run: {spans}"
    # While one alpha run was in progress, the other waited in the queue.
    assert any({s.get("alpha__one"), s.get("alpha__two")} == {"STARTED", "QUEUED"} for s in seen), seen
    tags = {r["jobName"]: {t["key"]: t["value"] for t in r["tags"]} for r in runs}
    assert tags["alpha__two"]["ingest/tenant"] == "alpha"


def test_a_materialization_from_the_asset_graph_waits_for_its_tenant(orchestrator: Orchestrator) -> None:
    """A run of the asset graph's own job has no `ingest/tenant` tag; the tenant's pool (held at run
    level) keeps it from running beside another run of the tenant all the same."""
    graph = orchestrator.launch("__ASSET_JOB", [["alpha", "one", table] for table in TABLES])
    job = orchestrator.launch("alpha__two")
    runs, _ = orchestrator.wait({graph, job})
    assert {r["runId"]: r["status"] for r in runs} == {graph: "SUCCESS", job: "SUCCESS"}, orchestrator.tail()
    tags = {r["runId"]: {t["key"] for t in r["tags"]} for r in runs}
    assert "ingest/tenant" not in tags[graph]
    first, second = sorted((r["startTime"], r["endTime"]) for r in runs)
    assert first[1] <= second[0], f"two runs of tenant alpha overlapped: {runs}"


def _dismiss_welcome(page: Any) -> None:
    """Dagster's first visit shows a newsletter dialog over the page; skip it when it is there."""
    skip = page.get_by_role("button", name="Skip")
    try:
        skip.wait_for(timeout=3_000)
    except Exception:  # noqa: BLE001 - Playwright's TimeoutError: the dialog was not shown
        return
    skip.click()


def test_serve_refuses_oneshot_mode(tmp_path: Path) -> None:
    """`mode: oneshot` means the image runs one `ingest run <job>`; serving would schedule jobs anyway.
    (That SIGTERM stops the webserver and the daemon with exit 0 is the module fixture's teardown.)"""
    _write(tmp_path, "configs/runner.yaml", "schema_version: 1\nmode: oneshot\n")
    done = subprocess.run(
        [
            str(INGEST),
            "serve",
            "--configs-dir",
            str(tmp_path / "configs"),
            "--state-dir",
            str(tmp_path / "state"),
        ],
        env={k: v for k, v in clean_env().items() if not k.startswith("INGEST_")},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 2
    assert "mode: oneshot" in done.stderr
    assert "ingest run <job>" in done.stderr
    assert not (tmp_path / "state" / "dagster").exists()  # nothing prepared


def test_dagster_dev_loads_the_same_definitions(orchestrator: Orchestrator) -> None:
    """`dagster dev -m ingestion.orchestration.definitions`, with the platform's folders in INGEST_*."""
    root = orchestrator.root
    port = _free_port()
    env = {k: v for k, v in clean_env().items() if not k.startswith("INGEST_")}
    env |= {
        f"INGEST_{folder.upper()}_DIR": str(root / folder) for folder in ("configs", "specs", "state", "logs")
    }
    env |= {"INGEST_MELTANO_PROJECT": str(root / "project"), "DAGSTER_HOME": str(root / "dagster-dev")}
    (root / "dagster-dev").mkdir()
    log = root / "dagster-dev.log"
    dagster = Path(sys.executable).parent / "dagster"
    command = [
        str(dagster),
        "dev",
        "-m",
        "ingestion.orchestration.definitions",
        "-h",
        "127.0.0.1",
        "-p",
        str(port),
    ]
    with log.open("wb") as output:
        process = subprocess.Popen(
            command, env=env, stdout=output, stderr=subprocess.STDOUT, start_new_session=True
        )
    dev = Orchestrator(f"http://127.0.0.1:{port}", root, process, log)
    try:
        _wait_until_up(dev)  # returns once the job beta__one is loaded
        data = dev.graphql(
            "{ repositoriesOrError { ... on RepositoryConnection { nodes { jobs { name } } } } }"
        )
        jobs = {job["name"] for node in data["repositoriesOrError"]["nodes"] for job in node["jobs"]}
        assert {"alpha__one", "alpha__two", "beta__one", "meltano__demo"} <= jobs
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
