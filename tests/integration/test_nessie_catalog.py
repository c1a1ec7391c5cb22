"""The target on the Nessie catalog: one Nessie commit per checkpoint, conflicts, lost answers."""

from __future__ import annotations

import contextlib
import io
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import Lake, run_target
from singer_expect import parse_messages

from devstack.nessie import NessieServer
from target_iceberg_nessie.catalogs import open_catalog
from target_iceberg_nessie.catalogs.nessie_api import NessieClient, Put
from target_iceberg_nessie.errors import ConfigError
from target_iceberg_nessie.target import TargetIcebergNessie


@pytest.fixture
def branch(nessie: NessieServer) -> str:
    name = f"t-{uuid.uuid4().hex[:8]}"
    with NessieClient(nessie.uri) as client:
        client.create_branch(name, client.reference("main"))
    return name


@pytest.fixture
def lake(tmp_path: Path, nessie: NessieServer, branch: str) -> Iterator[Lake]:
    """Nessie only: these tests are about the Nessie catalog itself (the scenarios run on both
    catalogs through conftest's parametrized `lake`)."""
    opened = Lake(tmp_path / "lake", nessie_uri=nessie.uri, branch=branch)
    yield opened
    opened.close()


def nessie_config(lake: Lake, nessie: NessieServer, branch: str, **overrides: Any) -> dict[str, Any]:
    return lake.config(catalog_type="nessie", nessie_uri=nessie.uri, branch=branch, **overrides)


def catalog(lake: Lake, nessie: NessieServer, branch: str) -> Any:
    return open_catalog("nessie", name="ingest", uri=nessie.uri, warehouse=str(lake.warehouse), branch=branch)


def test_each_checkpoint_is_one_nessie_commit_carrying_ids_and_state(
    lake: Lake, nessie: NessieServer, branch: str, singer_fixture
) -> None:
    text = singer_fixture("interleaved.singer")
    result = run_target(nessie_config(lake, nessie, branch), text)
    assert result.error is None
    states = [m["value"] for m in parse_messages(text) if m["type"] == "STATE"]
    with NessieClient(nessie.uri) as client:
        ours = [e for e in client.log(branch) if "ingest.batch-id" in e.properties]
    assert [e.properties["ingest.batch-id"] for e in ours] == ["run-1:3", "run-1:2", "run-1:1"]
    assert [json.loads(e.properties["ingest.singer-state"]) for e in reversed(ours)] == states
    first = json.loads(ours[-1].properties["ingest.tables"])
    assert sorted(first) == ["acme.raw.events", "acme.raw.page_views", "acme.raw.users"], "3 tables, 1 commit"
    with catalog(lake, nessie, branch) as opened:
        committed = opened.committed_state("acme.raw")
    assert committed is not None
    assert committed.state == states[-1]
    assert committed.commit_id == ours[0].hash
    with NessieClient(nessie.uri) as client:
        assert client.content("main", ("acme", "raw", "users")) is None, "only the configured branch moved"


def test_a_second_run_appends_and_batch_ids_stay_unique(
    lake: Lake, nessie: NessieServer, branch: str, singer_fixture
) -> None:
    text = singer_fixture("state_every_n.singer")
    assert run_target(nessie_config(lake, nessie, branch), text).error is None
    assert run_target(nessie_config(lake, nessie, branch), text).error is None  # same run id: a retry
    with catalog(lake, nessie, branch) as opened:
        loaded = opened.load_table(("acme", "raw", "ticks"))
        log = opened.commit_log("acme.raw")
    assert loaded is not None
    assert len(loaded.scan().to_arrow()) == 44
    batch_ids = [entry["batch_id"] for entry in log]
    assert len(batch_ids) == len(set(batch_ids)) == 10


def test_a_state_only_checkpoint_commits_the_state(lake: Lake, nessie: NessieServer, branch: str) -> None:
    schema = '{"type":"SCHEMA","stream":"s","schema":{"properties":{"id":{"type":"integer"}}}}\n'
    record = '{"type":"RECORD","stream":"s","record":{"id":1}}\n'
    text = schema + record + '{"type":"STATE","value":{"n":1}}\n' + '{"type":"STATE","value":{"n":2}}\n'
    result = run_target(nessie_config(lake, nessie, branch), text)
    assert result.error is None
    assert [json.loads(s) for s in result.states] == [{"n": 1}, {"n": 2}]
    with catalog(lake, nessie, branch) as opened:
        committed = opened.committed_state("acme.raw")
    assert committed is not None
    assert committed.state == {"n": 2}


def test_a_missing_branch_is_a_clear_error(lake: Lake, nessie: NessieServer) -> None:
    result = run_target(nessie_config(lake, nessie, "no-such-branch"), '{"type":"STATE","value":{}}\n')
    assert result.error is not None
    assert "no-such-branch" in str(result.error)
    assert "does not exist" in str(result.error)


def test_a_concurrent_commit_to_our_table_is_a_conflict_we_reapply_once(
    lake: Lake, nessie: NessieServer, branch: str, caplog: pytest.LogCaptureFixture
) -> None:
    schema = '{"type":"SCHEMA","stream":"c","schema":{"properties":{"id":{"type":"integer"}}}}\n'

    def record(n: int) -> str:
        return json.dumps({"type": "RECORD", "stream": "c", "record": {"id": n}}) + "\n"

    target = TargetIcebergNessie(config=nessie_config(lake, nessie, branch))
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            target.process_lines(
                io.StringIO(schema + record(1) + '{"type":"STATE","value":{"n":1}}\n' + record(2))
            )
            # Another writer commits to the same table after our checkpoint loaded it.
            with NessieClient(nessie.uri) as client:
                content = client.content(branch, ("acme", "raw", "c"))
                assert content is not None
                client.commit(
                    client.reference(branch),
                    [Put(("acme", "raw", "c"), {**content, "snapshotId": content["snapshotId"] + 1})],
                    message="another writer",
                    properties={},
                    author="other",
                )
            target.process_lines(io.StringIO('{"type":"STATE","value":{"n":2}}\n'))
            target.process_endofpipe()
    finally:
        target.close()
    with catalog(lake, nessie, branch) as opened:
        loaded = opened.load_table(("acme", "raw", "c"))
        assert loaded is not None
        assert sorted(r["id"] for r in loaded.scan().to_arrow().to_pylist()) == [1, 2]
        assert opened.committed_state("acme.raw").state == {"n": 2}
    with NessieClient(nessie.uri) as client:
        messages = [e.message for e in client.log(branch)]
    assert messages[1] == "another writer", "our retried checkpoint landed after theirs, once"
    assert messages[0].startswith("checkpoint run-1:2")
    assert any("commit conflict" in r.getMessage() for r in caplog.records), "the first attempt conflicted"


def test_a_missing_branch_is_created_from_branch_from(lake: Lake, nessie: NessieServer, branch: str) -> None:
    new = f"{branch}-child"
    text = (
        '{"type":"SCHEMA","stream":"b","schema":{"properties":{"id":{"type":"integer"}}}}\n'
        '{"type":"RECORD","stream":"b","record":{"id":1}}\n'
    )
    result = run_target(nessie_config(lake, nessie, new, branch_from=branch), text)
    assert result.error is None
    with NessieClient(nessie.uri) as client:
        assert client.content(new, ("acme", "raw", "b")) is not None
        assert client.content(branch, ("acme", "raw", "b")) is None, "the source branch is untouched"
    missing_source = run_target(nessie_config(lake, nessie, f"{branch}-x", branch_from="nope"), text)
    assert missing_source.error is not None
    assert "'nope' does not exist" in str(missing_source.error)


STATE_1 = '{"type":"SCHEMA","stream":"s","schema":{"properties":{"id":{"type":"integer"}}}}\n' + (
    '{"type":"RECORD","stream":"s","record":{"id":1}}\n{"type":"STATE","value":{"n":1}}\n'
)


def test_a_tag_is_read_only_for_the_target_and_readable_for_readers(
    lake: Lake, nessie: NessieServer, branch: str
) -> None:
    assert run_target(nessie_config(lake, nessie, branch), STATE_1).error is None
    tag = f"{branch}-tag"
    with NessieClient(nessie.uri) as client:
        head = client.reference(branch)
        response = httpx.post(
            f"{nessie.uri}/trees", params={"name": tag, "type": "TAG"}, json=head.as_json(), timeout=10
        )
        assert response.status_code == httpx.codes.OK, response.text
    result = run_target(nessie_config(lake, nessie, tag), STATE_1)
    assert isinstance(result.error, ConfigError)
    assert "tag" in str(result.error)
    assert "read-only" in str(result.error)
    with lake.catalog(branch=tag) as reader:
        loaded = reader.load_table(("acme", "raw", "s"))
        assert loaded is not None
        assert [r["id"] for r in loaded.scan().to_arrow().to_pylist()] == [1]
    with NessieClient(nessie.uri) as client:
        assert client.reference(tag).hash == head.hash, "the tag did not move"


def test_a_reader_pinned_to_a_hash_sees_the_tables_as_of_that_commit(
    lake: Lake, nessie: NessieServer, branch: str
) -> None:
    assert run_target(nessie_config(lake, nessie, branch), STATE_1).error is None
    with NessieClient(nessie.uri) as client:
        first = client.reference(branch).hash
    second = '{"type":"RECORD","stream":"s","record":{"id":2}}\n{"type":"STATE","value":{"n":2}}\n'
    assert (
        run_target(nessie_config(lake, nessie, branch), STATE_1.split("\n", 1)[0] + "\n" + second).error
        is None
    )
    with lake.catalog(branch=f"{branch}@{first}") as pinned, lake.catalog() as head:
        then, now = pinned.load_table(("acme", "raw", "s")), head.load_table(("acme", "raw", "s"))
        assert then is not None
        assert now is not None
        assert [r["id"] for r in then.scan().to_arrow().to_pylist()] == [1]
        assert sorted(r["id"] for r in now.scan().to_arrow().to_pylist()) == [1, 2]
        assert pinned.committed_state("acme.raw").state == {"n": 1}
    result = run_target(nessie_config(lake, nessie, f"{branch}@{first}"), STATE_1)
    assert isinstance(result.error, ConfigError), "a writer needs the branch head"


def test_branch_names_with_slashes_work_end_to_end(lake: Lake, nessie: NessieServer) -> None:
    name = f"acme/feature/{uuid.uuid4().hex[:8]}"
    config = nessie_config(lake, nessie, name, branch_from="main")
    assert run_target(config, STATE_1).error is None
    with lake.catalog(branch=name) as opened:
        loaded = opened.load_table(("acme", "raw", "s"))
        assert loaded is not None
        assert [r["id"] for r in loaded.scan().to_arrow().to_pylist()] == [1]
        assert opened.committed_state("acme.raw").state == {"n": 1}
    with NessieClient(nessie.uri) as client:
        assert client.reference(name).name == name
        assert name in {r.name for r in client.references()}


def test_a_large_state_is_kept_in_a_file_and_read_back(lake: Lake, nessie: NessieServer, branch: str) -> None:
    big = {"bookmarks": {f"stream_{n}": {"replication_key_value": "x" * 200} for n in range(100)}}
    text = STATE_1.split("\n", 1)[0] + "\n" + json.dumps({"type": "STATE", "value": big}) + "\n"
    assert run_target(nessie_config(lake, nessie, branch), text).error is None
    with NessieClient(nessie.uri) as client:
        (entry,) = [e for e in client.log(branch) if "ingest.batch-id" in e.properties]
    assert "ingest.singer-state" not in entry.properties, "too large to keep inline"
    location = entry.properties["ingest.singer-state-location"]
    assert location.startswith(str(lake.warehouse))
    with lake.catalog() as opened:
        assert opened.committed_state("acme.raw").state == big
