"""Write-audit-publish on the real Nessie server: a run branch, an audit, one merge carrying the state."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import Lake, new_nessie_branch, read_duckdb, read_pyiceberg, run_target

from devstack.nessie import NessieServer
from target_iceberg_nessie.catalogs.nessie_api import NessieClient, Put, Reference
from target_iceberg_nessie.errors import ConfigError
from target_iceberg_nessie.publish import AUDIT, WAP_BRANCH, WAP_HEAD, AuditFailedError, WapPublisher
from target_iceberg_nessie.settings import TargetSettings
from target_iceberg_nessie.target import TargetIcebergNessie

SCHEMA = (
    '{"type":"SCHEMA","stream":"items","schema":{"properties":{"id":{"type":"integer"}}},'
    '"key_properties":["id"]}\n'
)
NO_COMMITS = "2e1cfa82b035c26cbbbdae632cea070514eb8b773f616aaeaf668e2f0be8f10d"


def record(n: int) -> str:
    return json.dumps({"type": "RECORD", "stream": "items", "record": {"id": n}}) + "\n"


def state(n: int) -> str:
    return json.dumps({"type": "STATE", "value": {"n": n}}) + "\n"


@pytest.fixture
def lake(tmp_path: Path, nessie: NessieServer) -> Iterator[Lake]:
    opened = Lake(tmp_path / "lake", nessie_uri=nessie.uri, branch=new_nessie_branch(nessie.uri, "wap"))
    yield opened
    opened.close()


@pytest.fixture
def run_id() -> str:
    return f"r{uuid.uuid4().hex[:8]}"


def wap_config(lake: Lake, run_id: str, **overrides: Any) -> dict[str, Any]:
    return lake.config(publish="wap", run_id=run_id, **overrides)


def branches(uri: str) -> set[str]:
    with NessieClient(uri) as client:
        return {r.name for r in client.references()}


def test_a_run_is_invisible_until_published_then_lands_in_one_merge_with_the_state(
    lake: Lake, run_id: str
) -> None:
    assert lake.nessie_uri is not None
    target = TargetIcebergNessie(config=wap_config(lake, run_id))
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out):
            target.process_lines(
                io.StringIO(SCHEMA + record(1) + record(2) + state(1) + record(3) + state(2))
            )
            # Mid-run: the checkpoints are committed on the run branch, not on the target branch.
            run_branch = f"acme/run-{run_id}"
            assert run_branch in branches(lake.nessie_uri)
            assert lake.catalog().load_table(("acme", "raw", "items")) is None, "nothing published yet"
            on_run = lake.catalog(branch=run_branch).load_table(("acme", "raw", "items"))
            assert on_run is not None
            assert sorted(r["id"] for r in on_run.scan().to_arrow().to_pylist()) == [1, 2, 3]
            assert out.getvalue() == "", "no STATE before the run is published"
            target.process_endofpipe()
    finally:
        target.close()
    assert [json.loads(line) for line in out.getvalue().splitlines()] == [{"n": 2}], "the final state, once"
    assert sorted(r["id"] for r in read_pyiceberg(lake, "acme.raw.items")) == [1, 2, 3]
    assert sorted(r["id"] for r in read_duckdb(lake, "acme.raw.items")) == [1, 2, 3]
    assert run_branch not in branches(lake.nessie_uri), "the run branch is deleted after publishing"
    with NessieClient(lake.nessie_uri) as client:
        head = next(iter(client.log(lake.branch)))
    assert len(head.parent_hashes) == 2, "a merge commit"
    assert head.properties[WAP_BRANCH] == run_branch
    assert json.loads(head.properties["ingest.singer-state"]) == {"n": 2}
    audit = json.loads(head.properties[AUDIT])
    assert {(c["check"], c["passed"]) for c in audit} == {("row-count", True), ("unique-keys", True)}
    assert json.loads(head.properties["ingest.summary"]) == {"acme.raw.items": {"rows": 3}}
    committed = lake.catalog().committed_state("acme.raw")
    assert committed is not None
    assert committed.state == {"n": 2}
    assert committed.commit_id == head.hash
    document = json.loads((lake.state_dir / "acme" / "acme.raw" / "state.json").read_text())
    assert document["state"] == {"n": 2}
    assert document["commit"]["commit_id"] == head.hash


def test_a_failed_audit_publishes_nothing_and_keeps_the_branch(lake: Lake, run_id: str) -> None:
    assert lake.nessie_uri is not None
    duplicated = SCHEMA + record(1) + record(2) + state(1) + record(2) + state(2)
    result = run_target(wap_config(lake, run_id), duplicated)
    assert isinstance(result.error, AuditFailedError)
    assert result.error.exit_code != 0
    assert "unique-keys" in str(result.error)
    assert f"acme/run-{run_id}" in str(result.error), "the message names the branch to inspect"
    assert result.states == [], "no state is released"
    assert lake.catalog().load_table(("acme", "raw", "items")) is None, "nothing published"
    kept = lake.catalog(branch=f"acme/run-{run_id}").load_table(("acme", "raw", "items"))
    assert kept is not None
    assert sorted(r["id"] for r in kept.scan().to_arrow().to_pylist()) == [1, 2, 2]
    assert lake.catalog().committed_state("acme.raw") is None
    assert not (lake.state_dir / "acme" / "acme.raw" / "state.json").exists()


def test_rows_written_to_the_run_branch_by_someone_else_fail_the_row_count(lake: Lake, run_id: str) -> None:
    assert lake.nessie_uri is not None
    target = TargetIcebergNessie(config=wap_config(lake, run_id))
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            target.process_lines(io.StringIO(SCHEMA + record(1) + state(1)))
            # Another writer appends a snapshot to our table on our run branch.
            with NessieClient(lake.nessie_uri) as client:
                branch = f"acme/run-{run_id}"
                loaded = lake.catalog(branch=branch).load_table(("acme", "raw", "items"))
                assert loaded is not None
                snapshot = loaded.metadata.snapshots[-1]
                bumped = loaded.metadata.model_copy(
                    update={
                        "snapshots": [
                            *loaded.metadata.snapshots,
                            snapshot.model_copy(
                                update={
                                    "snapshot_id": snapshot.snapshot_id + 1,
                                    "parent_snapshot_id": snapshot.snapshot_id,
                                    "sequence_number": snapshot.sequence_number + 1,
                                }
                            ),
                        ],
                        "current_snapshot_id": snapshot.snapshot_id + 1,
                        "last_sequence_number": snapshot.sequence_number + 1,
                    }
                )
                from target_iceberg_nessie.catalogs.base import TableChange  # noqa: PLC0415

                location = lake.catalog().write_metadata(
                    TableChange(loaded.name(), loaded.metadata_location, bumped)
                )
                content = client.content(branch, ("acme", "raw", "items"))
                assert content is not None
                client.commit(
                    client.reference(branch),
                    [Put(("acme", "raw", "items"), {**content, "metadataLocation": location})],
                    message="someone else",
                    properties={},
                    author="other",
                )
            with pytest.raises(AuditFailedError, match="row-count"):
                target.process_endofpipe()
    finally:
        target.close()
    assert lake.catalog().load_table(("acme", "raw", "items")) is None


def test_a_published_run_branch_is_never_merged_twice(lake: Lake, run_id: str) -> None:
    assert lake.nessie_uri is not None
    first = run_target(wap_config(lake, run_id), SCHEMA + record(1) + state(1))
    assert first.error is None
    with NessieClient(lake.nessie_uri) as client:
        published = next(iter(client.log(lake.branch)))
        # A crash between the merge and the branch's deletion: the run branch is still there.
        client.create_branch(f"acme/run-{run_id}", Reference(lake.branch, published.properties[WAP_HEAD]))
    # Its publisher, restarted, must see that this branch head was published and not merge it.
    publisher = WapPublisher(TargetSettings.from_config(wap_config(lake, run_id)), logging.getLogger("test"))
    try:
        with NessieClient(lake.nessie_uri) as client:
            publisher.fork = client.reference(lake.branch)
            before = publisher.fork.hash
            outcome = publisher.publish(lake.catalog(), [], last_batch=None, state_properties={})
            assert outcome.merged is False
            assert outcome.commit_hash == published.hash
            assert client.reference(lake.branch).hash == before, "the target branch did not move"
    finally:
        publisher.close()
    assert f"acme/run-{run_id}" not in branches(lake.nessie_uri)
    # The same run id again: the published branch is replaced, the new rows publish once.
    second = run_target(wap_config(lake, run_id), SCHEMA + record(2) + state(2))
    assert second.error is None
    assert sorted(r["id"] for r in read_pyiceberg(lake, "acme.raw.items")) == [1, 2]
    with NessieClient(lake.nessie_uri) as client:
        heads = [e.properties.get(WAP_HEAD) for e in client.log(lake.branch) if WAP_HEAD in e.properties]
    assert len(heads) == len(set(heads)) == 2, "two publishes, each of its own run head"


def test_an_unpublished_attempt_is_set_aside_and_the_rerun_publishes_exactly_the_source(
    lake: Lake, run_id: str
) -> None:
    assert lake.nessie_uri is not None
    # The first attempt dies before publishing (its branch keeps a checkpoint; no state released).
    failed = run_target(wap_config(lake, run_id), SCHEMA + record(1) + state(1) + '{"type":"RECORD"\n')
    assert failed.error is not None
    assert failed.states == []
    # The re-run re-reads the source from the last published state (none): the same rows again.
    rerun = run_target(wap_config(lake, run_id), SCHEMA + record(1) + state(1))
    assert rerun.error is None
    assert [r["id"] for r in read_pyiceberg(lake, "acme.raw.items")] == [1], "no duplicate, no loss"
    names = branches(lake.nessie_uri)
    assert f"acme/run-{run_id}" not in names
    assert any(n.startswith(f"acme/run-{run_id}-abandoned-") for n in names), "the attempt is kept aside"


def test_a_run_without_changes_publishes_nothing(lake: Lake, run_id: str) -> None:
    assert lake.nessie_uri is not None
    result = run_target(wap_config(lake, run_id), "")
    assert result.error is None
    assert f"acme/run-{run_id}" not in branches(lake.nessie_uri)
    with NessieClient(lake.nessie_uri) as client:
        assert not [e for e in client.log(lake.branch) if WAP_HEAD in e.properties]


def test_wap_into_a_branch_without_commits(lake: Lake, nessie: NessieServer, run_id: str) -> None:
    empty = f"empty-{run_id}"
    with NessieClient(nessie.uri) as client:
        client.create_branch(empty, Reference("main", NO_COMMITS))  # Nessie's hash of an empty branch
    result = run_target(wap_config(lake, run_id, branch=empty), SCHEMA + record(1) + state(1))
    assert result.error is None, result.error
    on_empty = Lake(lake.root, nessie.uri, empty)
    try:
        assert [r["id"] for r in read_pyiceberg(on_empty, "acme.raw.items")] == [1]
    finally:
        on_empty.close()


def test_wap_needs_nessie(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="catalog_type: nessie"):
        TargetIcebergNessie(config={**Lake(tmp_path).config(), "publish": "wap"})
