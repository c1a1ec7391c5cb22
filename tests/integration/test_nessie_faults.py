"""Real network faults between the target and Nessie: a TCP proxy loses one commit exchange.

Each test runs the target through `FaultyProxy` (tests/tcp_proxy.py) against the session's Nessie,
then checks what landed on the real server (rows through pyiceberg and DuckDB, one Nessie commit
per batch id), what crossed the wire (commit requests per batch id) and the STATE lines printed.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Lake, TargetRun, new_nessie_branch, read_duckdb, read_pyiceberg, run_target
from tcp_proxy import Fault, FaultyProxy, Matcher, Request

from devstack.nessie import NessieServer
from target_iceberg_nessie import properties as props
from target_iceberg_nessie.catalogs.nessie_api import NessieClient
from target_iceberg_nessie.errors import CommitOutcomeUnknownError

TABLE = "acme.raw.orders"
PIPELINE = "acme.raw"
ROWS_PER_CHECKPOINT = 3
CHECKPOINTS = 3
CLIENT_TIMEOUT_SECONDS = 1.5  # long enough for any answer of a warm loopback Nessie


@pytest.fixture
def lake(tmp_path: Path, nessie: NessieServer) -> Iterator[Lake]:
    """Readers go to the real server; the target is pointed at the proxy by `through`."""
    opened = Lake(tmp_path / "lake", nessie_uri=nessie.uri, branch=new_nessie_branch(nessie.uri, "fault"))
    yield opened
    opened.close()


def through(proxy: FaultyProxy, lake: Lake, **overrides: object) -> dict[str, object]:
    return lake.config(nessie_uri=proxy.uri, **overrides)


def singer(checkpoints: range) -> str:
    """One stream; checkpoint n carries ids 3n-2..3n and then STATE {"bookmark": n}."""
    schema = {"type": "SCHEMA", "stream": "orders", "schema": {"properties": {"id": {"type": "integer"}}}}
    lines = [schema]
    for n in checkpoints:
        first = (n - 1) * ROWS_PER_CHECKPOINT + 1
        lines += [
            {"type": "RECORD", "stream": "orders", "record": {"id": i}}
            for i in range(first, first + ROWS_PER_CHECKPOINT)
        ]
        lines.append({"type": "STATE", "value": {"bookmark": n}})
    return "".join(json.dumps(line) + "\n" for line in lines)


def all_ids() -> list[int]:
    return list(range(1, CHECKPOINTS * ROWS_PER_CHECKPOINT + 1))


def commit_batch_id(request: Request) -> str | None:
    """The batch id a Nessie commit request carries (None: not a commit)."""
    if request.method != "POST" or not request.path.endswith("/history/commit"):
        return None
    batch_id: str | None = json.loads(request.body)["commitMeta"]["properties"].get(props.BATCH_ID)
    return batch_id


def commit_of(batch_id: str) -> Matcher:
    return lambda request: commit_batch_id(request) == batch_id


def log_lookup(request: Request) -> bool:
    return request.method == "GET" and request.path.endswith("/history")


def commits_sent(proxy: FaultyProxy) -> list[str]:
    """Batch ids of the commit requests that reached the server, in order."""
    return [batch for request in proxy.forwarded if (batch := commit_batch_id(request)) is not None]


def branch_batch_ids(nessie: NessieServer, lake: Lake) -> list[str]:
    """Batch ids of the commits on the lake's branch, oldest first."""
    with NessieClient(nessie.uri) as client:
        found = [e.properties.get(props.BATCH_ID) for e in client.log(lake.branch)]
    return [batch for batch in reversed(found) if batch is not None]


def states(printed: list[str]) -> list[int]:
    return [json.loads(line)["bookmark"] for line in printed]


def committed_bookmark(lake: Lake) -> int:
    """The bookmark of the pipeline's last commit: where the platform restarts the tap from."""
    committed = lake.catalog().committed_state(PIPELINE)
    assert committed is not None
    assert committed.state is not None
    bookmark: int = committed.state["bookmark"]
    return bookmark


def resume(proxy: FaultyProxy, lake: Lake) -> TargetRun:
    """Re-run with the same run id, the tap restarted from the committed state (as the platform
    does: DESIGN.md, the committed state is the source of truth)."""
    return run_target(through(proxy, lake), singer(range(committed_bookmark(lake) + 1, CHECKPOINTS + 1)))


def assert_table_holds(lake: Lake, ids: list[int]) -> None:
    """Every id exactly once, read by pyiceberg and by DuckDB's own Iceberg reader."""
    assert sorted(row["id"] for row in read_pyiceberg(lake, TABLE)) == ids
    assert sorted(row["id"] for row in read_duckdb(lake, TABLE)) == ids


def test_a_commit_whose_answer_is_lost_lands_once_and_is_not_resent(nessie: NessieServer, lake: Lake) -> None:
    with FaultyProxy(nessie.uri) as proxy:
        proxy.arm(Fault.DROP_RESPONSE, commit_of("run-1:2"))
        result = run_target(through(proxy, lake), singer(range(1, CHECKPOINTS + 1)))

    assert result.error is None, "the outcome was settled from the Nessie log"
    assert [(f.fault, commit_batch_id(f.request)) for f in proxy.faulted] == [
        (Fault.DROP_RESPONSE, "run-1:2")
    ]
    assert commits_sent(proxy) == ["run-1:1", "run-1:2", "run-1:3"], "run-1:2 was sent once, not resent"
    assert branch_batch_ids(nessie, lake) == ["run-1:1", "run-1:2", "run-1:3"], "one commit per batch"
    assert states(result.states) == [1, 2, 3]
    assert_table_holds(lake, all_ids())
    assert committed_bookmark(lake) == 3


def test_a_commit_nessie_never_received_is_fenced_off_then_reapplied_once(
    nessie: NessieServer, lake: Lake
) -> None:
    with FaultyProxy(nessie.uri) as proxy:
        proxy.arm(Fault.DROP_REQUEST, commit_of("run-1:2"))
        result = run_target(through(proxy, lake), singer(range(1, CHECKPOINTS + 1)))

    # Not in the log: the target first moves the pipeline's marker from the base hash (a fence: the
    # lost commit, were it still in flight, could no longer land), then re-applies the batch.
    assert result.error is None
    assert [(f.fault, commit_batch_id(f.request)) for f in proxy.faulted] == [(Fault.DROP_REQUEST, "run-1:2")]
    assert commits_sent(proxy) == ["run-1:1", "run-1:2", "run-1:3"], "run-1:2 reached Nessie once"
    assert branch_batch_ids(nessie, lake) == ["run-1:1", "run-1:2", "run-1:3"]
    with NessieClient(nessie.uri) as client:
        fences = [e for e in client.log(lake.branch) if "ingest.fenced-batch-id" in e.properties]
    assert [e.properties["ingest.fenced-batch-id"] for e in fences] == ["run-1:2"]
    assert states(result.states) == [1, 2, 3]
    assert_table_holds(lake, all_ids())
    assert committed_bookmark(lake) == 3


def test_a_commit_answered_after_the_client_timeout_is_settled_from_the_log(
    nessie: NessieServer, lake: Lake
) -> None:
    with FaultyProxy(nessie.uri) as proxy:
        proxy.arm(Fault.HOLD_RESPONSE, commit_of("run-1:2"))
        config = through(proxy, lake, nessie_timeout_seconds=CLIENT_TIMEOUT_SECONDS)
        result = run_target(config, singer(range(1, CHECKPOINTS + 1)))

    assert result.error is None
    assert [(f.fault, commit_batch_id(f.request), f.client_hung_up) for f in proxy.faulted] == [
        (Fault.HOLD_RESPONSE, "run-1:2", True)
    ], "the client gave up waiting (its timeout), the proxy did not cut it off"
    assert commits_sent(proxy) == ["run-1:1", "run-1:2", "run-1:3"]
    assert branch_batch_ids(nessie, lake) == ["run-1:1", "run-1:2", "run-1:3"]
    assert states(result.states) == [1, 2, 3]
    assert_table_holds(lake, all_ids())


# Below: the outcome stays unknown, or the lost commit arrives late. Nothing a landed commit refers
# to may be deleted, and nothing may land twice.


def test_a_lost_answer_whose_log_lookup_fails_too_leaves_a_readable_table(
    nessie: NessieServer, lake: Lake
) -> None:
    with FaultyProxy(nessie.uri) as proxy:
        proxy.arm(Fault.DROP_RESPONSE, commit_of("run-1:2"))
        proxy.arm(Fault.DROP_REQUEST, lambda request: log_lookup(request) and bool(proxy.faulted))
        failed = run_target(through(proxy, lake), singer(range(1, CHECKPOINTS + 1)))

    assert isinstance(failed.error, CommitOutcomeUnknownError), "the outcome could not be settled"
    assert failed.error.exit_code == 75
    assert [f.fault for f in proxy.faulted] == [Fault.DROP_RESPONSE, Fault.DROP_REQUEST]
    assert branch_batch_ids(nessie, lake) == ["run-1:1", "run-1:2"], "batch 2 did land"
    assert states(failed.states) == [1]
    assert committed_bookmark(lake) == 2
    assert_table_holds(lake, list(range(1, 7)))  # the landed batch's files were kept
    with FaultyProxy(nessie.uri) as proxy:
        assert resume(proxy, lake).error is None
    assert_table_holds(lake, all_ids())


def test_a_commit_that_arrives_after_the_timeout_and_the_lookup_lands_once_or_is_fenced_off(
    nessie: NessieServer, lake: Lake
) -> None:
    with FaultyProxy(nessie.uri) as proxy:
        proxy.arm(Fault.DELIVER_LATE, commit_of("run-1:2"), after=log_lookup)
        config = through(proxy, lake, nessie_timeout_seconds=CLIENT_TIMEOUT_SECONDS)
        result = run_target(config, singer(range(1, CHECKPOINTS + 1)))

    # The late commit and the fence race: either the commit landed first (the fence conflicts and the
    # log then shows the batch) or the fence did (the late commit conflicts; the batch is re-applied).
    assert result.error is None
    assert [(f.fault, f.client_hung_up) for f in proxy.faulted] == [(Fault.DELIVER_LATE, True)]
    assert states(result.states) == [1, 2, 3]
    assert_table_holds(lake, all_ids())
    batch_ids = branch_batch_ids(nessie, lake)
    assert sorted(set(batch_ids)) == sorted(batch_ids) == ["run-1:1", "run-1:2", "run-1:3"]
    assert committed_bookmark(lake) == 3
