"""`ingest` on a real Nessie: branches and tags, the target's commits, committed state, rollback.

The target writes a fresh branch in-process (two runs of one pipeline); the CLI reads it back and
rolls it back; tables are read independently with pyiceberg.
"""

from __future__ import annotations

import io
import json
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner, Result
from conftest import Lake, new_nessie_branch, read_pyiceberg, run_target

from devstack.nessie import NessieServer, free_port
from ingestion.cli import cli
from ingestion.errors import EXIT_CONFIG, EXIT_FAILURE
from ingestion.lake import EXIT_RETRY
from target_iceberg_nessie.catalogs.nessie_api import NessieClient

PIPELINE = "acme.raw"
STATE_RUN_1 = {
    "bookmarks": {
        "customers": {"replication_key_value": "2024-03-01"},
        "orders": {"replication_key_value": "2024-03-01"},
    }
}
STATE_RUN_2 = {
    "bookmarks": {
        "customers": {"replication_key_value": "2024-03-02"},
        "orders": {"replication_key_value": "2024-03-01"},
    }
}
ROWS_RUN_1 = {"acme.raw.customers": 3, "acme.raw.orders": 2}
ROWS_RUN_2 = {"acme.raw.customers": 1}


@pytest.fixture
def lake(tmp_path: Path, nessie: NessieServer) -> Iterator[Lake]:
    """A fresh Nessie branch (tests share one server) and a local warehouse and state store."""
    opened = Lake(tmp_path / "lake", nessie_uri=nessie.uri, branch=new_nessie_branch(nessie.uri, "cli"))
    yield opened
    opened.close()


def write(lake: Lake, singer_fixture: Any, run_id: str, fixture: str | None = None) -> str:
    """Run the target once on the lake's branch; returns the branch head (the run's last commit)."""
    name = fixture or f"cli_lake_{run_id.replace('-', '')}.singer"
    run = run_target(lake.config(run_id=run_id), singer_fixture(name))
    assert run.error is None, run.error
    return head(lake) if lake.nessie_uri else ""


@pytest.fixture
def built(lake: Lake, singer_fixture: Any) -> dict[str, str]:
    """Two runs of one pipeline: run-1 loads customers and orders, run-2 one more customer; the
    branch head after each run, by run id."""
    return {run_id: write(lake, singer_fixture, run_id) for run_id in ("run-1", "run-2")}


def head(lake: Lake, ref: str | None = None) -> str:
    with NessieClient(lake.nessie_uri or "") as client:
        return client.reference(ref or lake.branch).hash


def invoke(*args: str, env: dict[str, str] | None = None, stdin: Any = None) -> Result:
    return CliRunner().invoke(cli, list(args), env=env, input=stdin, catch_exceptions=False)


def server(lake: Lake) -> list[str]:
    """Options that point `ingest` at the lake's Nessie server."""
    return ["--catalog-type", "nessie", "--nessie-uri", lake.nessie_uri or ""]


def on(lake: Lake, ref: str | None = None) -> list[str]:
    """Options that point `ingest` at the lake's branch (or `ref`) on Nessie, or at its embedded catalog."""
    if lake.nessie_uri is None:
        return ["--catalog-uri", lake.catalog_uri, "--warehouse", str(lake.warehouse)]
    return [*server(lake), "--ref", ref or lake.branch, "--warehouse", str(lake.warehouse)]


def customers(lake: Lake) -> list[int]:
    return sorted(row["customer_id"] for row in read_pyiceberg(lake, "acme.raw.customers"))


def commits_json(lake: Lake, *more: str) -> list[dict[str, Any]]:
    result = invoke("commits", *on(lake), *more, "--json")
    assert result.exit_code == 0, result.output
    commits: list[dict[str, Any]] = json.loads(result.stdout)["commits"]
    return commits


def test_branches_lists_every_branch_and_tag_with_the_targets_ids(lake: Lake, built: dict[str, str]) -> None:
    tag = f"release-{uuid.uuid4().hex[:8]}"
    created = httpx.post(
        f"{lake.nessie_uri}/trees",
        params={"name": tag, "type": "TAG"},
        json={"type": "BRANCH", "name": lake.branch, "hash": built["run-1"]},
    )
    assert created.status_code == 200, created.text

    result = invoke("branches", "--nessie-uri", lake.nessie_uri or "", "--json")

    assert result.exit_code == 0, result.output
    references = {r["name"]: r for r in json.loads(result.stdout)["references"]}
    ours, tagged = references[lake.branch], references[tag]
    assert (ours["type"], ours["hash"]) == ("BRANCH", built["run-2"])
    assert (ours["pipeline_id"], ours["run_id"], ours["batch_id"]) == (PIPELINE, "run-2", "run-2:1")
    assert (tagged["type"], tagged["hash"]) == ("TAG", built["run-1"])
    assert (tagged["pipeline_id"], tagged["run_id"], tagged["batch_id"]) == (PIPELINE, "run-1", "run-1:1")
    assert tagged["committed_at"] < ours["committed_at"]
    assert references["main"]["type"] == "BRANCH"

    people = invoke("branches", "--nessie-uri", lake.nessie_uri or "")
    row = next(line for line in people.stdout.splitlines() if tag in line)
    assert "tag" in row
    assert built["run-1"][:12] in row
    assert "run-1:1" in row

    as_of_tag = invoke("tables", *on(lake, tag), "--json")  # a tag reads the tables as of its commit
    assert {t["identifier"]: t["rows"] for t in json.loads(as_of_tag.stdout)["tables"]} == ROWS_RUN_1


def test_commits_show_each_checkpoint_with_its_hash_run_and_rows(lake: Lake, built: dict[str, str]) -> None:
    commits = commits_json(lake)

    assert [(c["commit_hash"], c["batch_id"], c["run_id"], c["rows"]) for c in commits] == [
        (built["run-2"], "run-2:1", "run-2", ROWS_RUN_2),
        (built["run-1"], "run-1:1", "run-1", ROWS_RUN_1),
    ]
    assert [c["streams"] for c in commits] == [["customers"], ["customers", "orders"]]
    assert {c["pipeline_id"] for c in commits} == {PIPELINE}
    with NessieClient(lake.nessie_uri or "") as client:
        logged = {e.hash: e.properties for e in client.log(lake.branch)}
    for c in commits:  # what `ingest` shows is what Nessie holds
        assert logged[c["commit_hash"]]["ingest.batch-id"] == c["batch_id"]
        assert json.loads(logged[c["commit_hash"]]["ingest.summary"]) == {
            table: {"rows": rows} for table, rows in c["rows"].items()
        }

    assert [c["batch_id"] for c in commits_json(lake, "--run", "run-1")] == ["run-1:1"]
    assert commits_json(lake, "--run", "run-9") == []
    assert [c["batch_id"] for c in commits_json(lake, "--limit", "1")] == ["run-2:1"]

    people = invoke("commits", *on(lake))
    assert built["run-2"][:12] in people.stdout
    assert "acme.raw.orders: 2" in people.stdout


def test_a_ref_at_a_commit_reads_the_lake_as_of_that_commit(lake: Lake, built: dict[str, str]) -> None:
    earlier = f"{lake.branch}@{built['run-1'][:10]}"  # a shortened hash, as people copy it

    tables = json.loads(invoke("tables", *on(lake, earlier), "--json").stdout)["tables"]
    assert {t["identifier"]: t["rows"] for t in tables} == ROWS_RUN_1
    assert [c["batch_id"] for c in commits_json(lake, "--ref", earlier)] == ["run-1:1"]


def test_state_show_returns_the_last_committed_state(lake: Lake, built: dict[str, str]) -> None:
    result = invoke("state", "show", PIPELINE, *on(lake), "--state-dir", str(lake.state_dir), "--json")

    assert result.exit_code == 0, result.output
    assert result.stderr == ""  # the state store agrees: no warning
    [check] = json.loads(result.stdout)["committed"]
    assert check["pipeline_id"] == PIPELINE
    assert check["committed"]["state"] == STATE_RUN_2
    assert (check["committed"]["batch_id"], check["committed"]["commit_id"]) == ("run-2:1", built["run-2"])
    assert (check["state_store"], check["state_store_batch_id"]) == ("in sync", "run-2:1")

    people = invoke("state", "show", PIPELINE, *on(lake), "--state-dir", str(lake.state_dir))
    assert "2024-03-02" in people.stdout
    assert "in sync" in people.stdout


@pytest.mark.parametrize("catalog", ["embedded_lake", "lake"])
def test_state_show_warns_when_the_state_store_is_behind_the_catalog(
    catalog: str, request: pytest.FixtureRequest, singer_fixture: Any
) -> None:
    lake: Lake = request.getfixturevalue(catalog)  # both catalogs: the embedded one and Nessie
    write(lake, singer_fixture, "run-1")
    document = lake.state_dir / "acme" / PIPELINE / "state.json"
    after_run_1 = document.read_text()
    write(lake, singer_fixture, "run-2")
    document.write_text(after_run_1)  # as if the process died between the commit and the store

    result = invoke("state", "show", PIPELINE, *on(lake), "--state-dir", str(lake.state_dir), "--json")

    assert result.exit_code == 0, result.output
    assert "the state store is behind the catalog" in result.stderr
    assert "run-1:1" in result.stderr
    [check] = json.loads(result.stdout)["committed"]
    assert check["committed"]["state"] == STATE_RUN_2  # the catalog is the source of truth
    assert (check["state_store"], check["state_store_batch_id"]) == ("behind", "run-1:1")
    [shown] = json.loads(result.stdout)["documents"]
    assert shown["document"]["state"] == STATE_RUN_1

    people = invoke("state", "show", PIPELINE, *on(lake), "--state-dir", str(lake.state_dir))
    assert "2024-03-02" in people.stdout  # both states are shown
    assert "Singer state in the state store" in people.stdout


def test_rollback_moves_the_branch_back_and_the_tables_read_the_earlier_rows(
    lake: Lake, built: dict[str, str]
) -> None:
    assert customers(lake) == [1, 2, 3, 4]

    result = invoke("rollback", lake.branch, "--to", built["run-1"][:12], *server(lake), "--yes")

    assert result.exit_code == 0, result.output
    assert head(lake) == built["run-1"]
    assert customers(lake) == [1, 2, 3]
    assert "run-2:1" in result.stdout  # what was undone
    assert "acme.raw.customers: 1" in result.stdout
    assert f"rolled back branch {lake.branch} from {built['run-2'][:12]}" in result.stdout
    assert [c["batch_id"] for c in commits_json(lake)] == ["run-1:1"]

    shown = invoke("state", "show", PIPELINE, *on(lake), "--state-dir", str(lake.state_dir), "--json")
    [check] = json.loads(shown.stdout)["committed"]
    assert check["committed"]["state"] == STATE_RUN_1  # the committed state went back too
    assert check["state_store"] == "not in history"
    assert "not in the history of" in shown.stderr


def test_rollback_asks_first_and_json_reports_what_it_undid(lake: Lake, built: dict[str, str]) -> None:
    declined = invoke("rollback", lake.branch, "--to", built["run-1"], *server(lake), stdin="n\n")
    assert declined.exit_code == EXIT_FAILURE
    assert "not confirmed" in declined.stderr
    assert head(lake) == built["run-2"]

    confirmed = invoke("rollback", lake.branch, "--to", built["run-1"], *server(lake), stdin="y\n")
    assert confirmed.exit_code == 0, confirmed.output
    assert head(lake) == built["run-1"]

    to_start = head(lake, "main")  # where the branch began: before its first commit
    result = invoke("rollback", lake.branch, "--to", to_start, *server(lake), "--yes", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert (report["from"], report["to"], report["rolled_back"]) == (built["run-1"], to_start, True)
    assert [(c["commit_hash"], c["batch_id"], c["rows"]) for c in report["undone"]] == [
        (built["run-1"], "run-1:1", ROWS_RUN_1)
    ]
    assert report["pipelines"] == [PIPELINE]
    assert head(lake) == to_start
    assert json.loads(invoke("tables", *on(lake), "--json").stdout)["tables"] == []

    again = json.loads(invoke("rollback", lake.branch, "--to", to_start, *server(lake), "--json").stdout)
    assert (again["rolled_back"], again["undone"]) == (False, [])


def test_rollback_refuses_a_commit_outside_the_branchs_history(
    lake: Lake, built: dict[str, str], nessie: NessieServer, singer_fixture: Any
) -> None:
    other = Lake(
        lake.root.parent / "other", nessie_uri=nessie.uri, branch=new_nessie_branch(nessie.uri, "cli")
    )
    elsewhere = write(other, singer_fixture, "run-1")

    result = invoke("rollback", lake.branch, "--to", elsewhere, *server(lake), "--yes")

    assert result.exit_code == EXIT_CONFIG
    assert f"commit {elsewhere} is not in the history of branch {lake.branch!r}" in result.stderr
    assert f"ingest commits --ref {lake.branch}" in result.stderr
    assert head(lake) == built["run-2"]

    for bad in ("zz", "not-a-hash!"):
        refused = invoke("rollback", lake.branch, "--to", bad, *server(lake), "--yes")
        assert (refused.exit_code, "is not a commit hash" in refused.stderr) == (EXIT_CONFIG, True)
    assert head(lake) == built["run-2"]


class AnswerAfter(io.BytesIO):
    """Stdin whose first read runs `meanwhile` first: another writer acts while the user reads."""

    def __init__(self, answer: bytes, meanwhile: Callable[[], object]) -> None:
        super().__init__(answer)
        self._meanwhile: Callable[[], object] | None = meanwhile

    def _first(self) -> None:
        if self._meanwhile is not None:
            act, self._meanwhile = self._meanwhile, None
            act()

    def read(self, size: int | None = -1) -> bytes:
        if size != 0:
            self._first()
        return super().read(size)

    def read1(self, size: int | None = -1) -> bytes:
        if size != 0:
            self._first()
        return super().read1(size)


def test_rollback_refuses_when_the_branch_moves_meanwhile(
    lake: Lake, built: dict[str, str], singer_fixture: Any
) -> None:
    moved: list[str] = []
    stdin = AnswerAfter(
        b"y\n", lambda: moved.append(write(lake, singer_fixture, "run-3", "cli_lake_run2.singer"))
    )

    result = invoke("rollback", lake.branch, "--to", built["run-1"], *server(lake), stdin=stdin)

    assert result.exit_code == EXIT_RETRY
    assert moved, "the concurrent commit ran"
    assert f"branch {lake.branch!r} moved" in result.stderr
    assert "re-run" in result.stderr
    assert head(lake) == moved[0] != built["run-2"]  # the other writer's commit stands
    assert [c["batch_id"] for c in commits_json(lake)] == ["run-3:1", "run-2:1", "run-1:1"]


def test_rollback_on_the_embedded_catalog_says_it_needs_nessie(tmp_path: Path) -> None:
    result = invoke("rollback", "main", "--to", "0123456789ab", "--project-dir", str(tmp_path))

    assert result.exit_code == EXIT_CONFIG
    assert "`ingest rollback` needs a Nessie catalog" in result.stderr
    assert "no history of commits across tables" in result.stderr
    assert "--catalog-type nessie" in result.stderr


def test_an_unknown_branch_points_at_ingest_branches(lake: Lake) -> None:
    result = invoke("commits", *on(lake, "no-such-branch"))

    assert result.exit_code == EXIT_CONFIG
    assert result.stderr == (
        f"error: no branch or tag 'no-such-branch' on Nessie at {lake.nessie_uri}; "
        "`ingest branches` lists them\n"
    )


def test_an_unreachable_nessie_exits_75_with_its_uri_and_never_shows_the_token() -> None:
    uri = f"http://127.0.0.1:{free_port()}/api/v2"
    env = {"INGEST_NESSIE_URI": uri, "INGEST_NESSIE_TOKEN": "s3cret-t0ken"}

    for command in (["tables"], ["branches"], ["commits", "--json"], ["state", "show", PIPELINE]):
        result = invoke(*command, env=env)
        assert result.exit_code == EXIT_RETRY, (command, result.output)
        assert uri in result.stderr
        assert "make nessie" in result.stderr
        assert "s3cret-t0ken" not in result.output


def test_the_targets_environment_is_enough_to_read_its_lake(lake: Lake, built: dict[str, str]) -> None:
    env = {
        "TARGET_ICEBERG_NESSIE_CATALOG_TYPE": "nessie",
        "TARGET_ICEBERG_NESSIE_NESSIE_URI": lake.nessie_uri or "",
        "TARGET_ICEBERG_NESSIE_BRANCH": lake.branch,
        "TARGET_ICEBERG_NESSIE_WAREHOUSE": str(lake.warehouse),
    }
    result = invoke("commits", "--json", env=env)

    assert result.exit_code == 0, result.output
    assert [c["commit_hash"] for c in json.loads(result.stdout)["commits"]] == [
        built["run-2"],
        built["run-1"],
    ]

    pinned = invoke("commits", "--json", env={**env, "INGEST_REF": f"{lake.branch}@{built['run-1']}"})
    assert [c["batch_id"] for c in json.loads(pinned.stdout)["commits"]] == ["run-1:1"]  # INGEST_REF wins
