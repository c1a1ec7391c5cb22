"""The Nessie REST v2 client against a real Nessie server (devstack.nessie)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from devstack.nessie import NessieServer, free_port
from target_iceberg_nessie.catalogs.nessie_api import (
    Delete,
    NessieClient,
    NessieConflictError,
    NessieNotFoundError,
    NessieUnavailableError,
    Put,
    iceberg_table_content,
    namespace_content,
)


def table(location: str, snapshot: int = 1) -> dict[str, object]:
    return iceberg_table_content(
        metadata_location=location, snapshot_id=snapshot, schema_id=0, spec_id=0, sort_order_id=0
    )


@pytest.fixture
def client(nessie: NessieServer) -> Iterator[NessieClient]:
    with NessieClient(nessie.uri) as opened:
        yield opened


@pytest.fixture
def branch(client: NessieClient) -> str:
    name = f"test-{uuid.uuid4().hex[:8]}"
    client.create_branch(name, client.reference("main"))
    return name


def test_config_names_the_default_branch(client: NessieClient) -> None:
    config = client.config()
    assert config["defaultBranch"] == "main"
    assert config["maxSupportedApiVersion"] >= 2


def test_one_commit_puts_namespaces_and_tables_with_properties(client: NessieClient, branch: str) -> None:
    head = client.reference(branch)
    operations = [
        Put(("acme",), namespace_content(["acme"])),
        Put(("acme", "raw"), namespace_content(["acme", "raw"])),
        Put(("acme", "raw", "orders"), table("file:///w/orders/metadata/00000.metadata.json")),
        Put(("acme", "raw", "users"), table("file:///w/users/metadata/00000.metadata.json")),
    ]
    properties = {"ingest.batch-id": "run-1:1", "ingest.run-id": "run-1"}
    after = client.commit(head, operations, message="checkpoint run-1:1", properties=properties, author="t")
    assert after.hash != head.hash
    (entry, *_) = list(client.log(branch))
    assert entry.hash == after.hash
    assert dict(entry.properties) == properties
    assert entry.message == "checkpoint run-1:1"
    assert sorted(client.entries(branch)) == [
        (("acme",), "NAMESPACE"),
        (("acme", "raw"), "NAMESPACE"),
        (("acme", "raw", "orders"), "ICEBERG_TABLE"),
        (("acme", "raw", "users"), "ICEBERG_TABLE"),
    ]
    stored = client.content(branch, ("acme", "raw", "orders"))
    assert stored is not None
    assert stored["metadataLocation"] == "file:///w/orders/metadata/00000.metadata.json"
    assert client.content("main", ("acme", "raw", "orders")) is None, "main is untouched"


def test_a_stale_hash_conflicts_on_the_same_key_but_not_on_others(client: NessieClient, branch: str) -> None:
    def put(key: str, location: str, content_id: str | None = None) -> Put:
        return Put(
            (key,),
            iceberg_table_content(
                metadata_location=location,
                snapshot_id=1,
                schema_id=0,
                spec_id=0,
                sort_order_id=0,
                content_id=content_id,
            ),
        )

    loaded = client.commit(
        client.reference(branch), [put("t1", "s3://b/t1/0.json")], message="create", properties={}, author="t"
    )
    t1 = client.content(branch, ("t1",))
    assert t1 is not None
    # Another writer updates t1 after we loaded the branch at `loaded`.
    client.commit(
        loaded,
        [put("t1", "s3://b/t1/theirs.json", t1["id"])],
        message="theirs",
        properties={},
        author="other",
    )
    # Our commit, still expecting `loaded`, on a key nobody else touched: the server rebases it.
    client.commit(
        loaded, [put("t2", "s3://b/t2/0.json")], message="ours, other key", properties={}, author="t"
    )
    # Our commit of t1, still expecting `loaded`: a conflict.
    with pytest.raises(NessieConflictError, match="409"):
        client.commit(
            loaded, [put("t1", "s3://b/t1/ours.json", t1["id"])], message="ours", properties={}, author="t"
        )
    current = client.content(branch, ("t1",))
    assert current is not None
    assert current["metadataLocation"] == "s3://b/t1/theirs.json"
    client.commit(client.reference(branch), [Delete(("t2",))], message="drop", properties={}, author="t")
    assert client.content(branch, ("t2",)) is None


def test_the_log_stops_at_a_given_hash(client: NessieClient, branch: str) -> None:
    start = client.reference(branch)
    head = start
    for n in range(3):
        head = client.commit(
            head, [Put((f"k{n}",), table(f"s3://b/{n}.json"))], message=f"m{n}", properties={}, author="t"
        )
    assert [e.message for e in client.log(branch, until_hash=start.hash, page_size=2)] == ["m2", "m1", "m0"]


def test_errors_name_what_is_wrong(client: NessieClient) -> None:
    with pytest.raises(NessieNotFoundError, match="404"):
        client.reference("no-such-branch")
    with (
        NessieClient(f"http://127.0.0.1:{free_port()}/api/v2", timeout=2) as unreachable,
        pytest.raises(NessieUnavailableError, match="did not answer"),
    ):
        unreachable.config()


def test_a_rocksdb_store_keeps_commits_across_a_restart(nessie_rocksdb: NessieServer) -> None:
    with NessieClient(nessie_rocksdb.uri) as client:
        committed = client.commit(
            client.reference("main"),
            [Put(("kept",), table("s3://b/kept.json"))],
            message="m",
            properties={},
            author="t",
        )
    nessie_rocksdb.restart()
    with NessieClient(nessie_rocksdb.uri) as client:
        assert client.reference("main").hash == committed.hash
        assert client.content("main", ("kept",)) is not None
