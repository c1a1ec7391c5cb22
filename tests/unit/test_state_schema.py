"""State store documents: what the target writes validates against schemas/state-document.schema.json."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from conftest import Lake, run_target

from ingestion.errors import ConfigError, ConfigFileError
from ingestion.state import SCHEMA, read_state_documents
from ingestion.validation import load_schema, validate
from target_iceberg_nessie.state_store import StateStore


@pytest.fixture
def lake(embedded_lake: Lake) -> Lake:
    """Embedded catalog only: the state document's shape does not depend on the catalog."""
    return embedded_lake


def coordinator_document(**overrides: Any) -> dict[str, Any]:
    """A document shaped exactly like CommitCoordinator.checkpoint() builds it."""
    return {
        "tenant": "acme",
        "pipeline_id": "acme.raw",
        "run_id": "20260101T000000Z-1a2b3c4d",
        "batch_id": "20260101T000000Z-1a2b3c4d:3",
        "commit": {
            "catalog_type": "sql",
            "catalog_name": "ingest",
            "commit_id": "20260101T000000Z-1a2b3c4d:3",
            "tables": {
                "acme.raw.customers": "/lake/warehouse/acme/raw/customers/metadata/00002-x.metadata.json"
            },
        },
        "state": {"bookmarks": {"customers": {"replication_key_value": "2026-01-01T00:00:00+00:00"}}},
        "committed_at": datetime.now(UTC).isoformat(timespec="milliseconds"),
        **overrides,
    }


def test_the_schema_is_a_valid_draft_2020_12_schema() -> None:
    assert load_schema(SCHEMA)["$schema"] == "https://json-schema.org/draft/2020-12/schema"


@pytest.mark.parametrize(
    "document",
    [
        coordinator_document(),
        coordinator_document(state=None),  # records committed before the tap's first STATE
        # a state-only checkpoint changes no table
        coordinator_document(commit={**coordinator_document()["commit"], "tables": {}}),
    ],
    ids=["with-state", "no-state-yet", "state-only"],
)
def test_documents_written_by_the_target_state_store_validate(
    tmp_path: Path, document: dict[str, Any]
) -> None:
    StateStore(tmp_path).write(document["tenant"], document["pipeline_id"], document)
    [found] = read_state_documents(tmp_path)
    assert found.document == document
    assert found.path == tmp_path / "acme" / "acme.raw" / "state.json"


def test_the_document_of_a_real_target_run_validates(lake: Lake) -> None:
    singer = "\n".join(
        json.dumps(message)
        for message in [
            {"type": "SCHEMA", "stream": "users", "schema": {"properties": {"id": {"type": "integer"}}}},
            {"type": "RECORD", "stream": "users", "record": {"id": 1}},
            {"type": "STATE", "value": {"bookmarks": {"users": {"id": 1}}}},
        ]
    )
    run = run_target(lake.config(), singer + "\n")
    assert run.error is None

    file = lake.state_dir / "acme" / "acme.raw" / "state.json"
    document = json.loads(file.read_text(encoding="utf-8"))
    validate(document, SCHEMA, file)
    assert document["state"] == {"bookmarks": {"users": {"id": 1}}}
    assert list(document["commit"]["tables"]) == ["acme.raw.users"]


@pytest.mark.parametrize(
    ("change", "path", "message"),
    [
        (lambda d: d.pop("batch_id"), "the top level", "missing required key(s) 'batch_id'"),
        (lambda d: d["commit"].pop("commit_id"), "commit", "missing required key(s) 'commit_id'"),
        (lambda d: d.update(batch_id="run-1"), "batch_id", "'run-1' has the wrong form"),
        (lambda d: d.update(committed_at="yesterday"), "committed_at", "'yesterday' has the wrong form"),
        (lambda d: d.update(state=[1, 2]), "state", "is not of type 'object', 'null'"),
        (lambda d: d["commit"].update(catalog_type="hive"), "commit.catalog_type", "'hive' is not one of"),
        (lambda d: d.update(note="x"), "the top level", "unknown key(s) 'note'"),
    ],
)
def test_a_broken_document_names_the_file_and_the_path(
    tmp_path: Path, change: Any, path: str, message: str
) -> None:
    document = coordinator_document()
    change(document)
    file = tmp_path / "state.json"
    with pytest.raises(ConfigFileError) as raised:
        validate(document, SCHEMA, file)
    [problem] = raised.value.problems
    assert (problem.path, raised.value.file) == (path, file)
    assert message in problem.message
    assert "fix: " in str(raised.value)


def test_tenant_and_pipeline_must_match_the_folders(tmp_path: Path) -> None:
    StateStore(tmp_path).write("acme", "acme.raw", coordinator_document(tenant="globex"))
    with pytest.raises(ConfigFileError, match=r"at tenant: 'globex' does not match its folder 'acme'"):
        read_state_documents(tmp_path)


def test_filters_select_documents(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    store.write("acme", "acme.raw", coordinator_document())
    store.write("acme", "acme.crm", coordinator_document(pipeline_id="acme.crm"))
    store.write("globex", "globex.raw", coordinator_document(tenant="globex", pipeline_id="globex.raw"))

    assert [d.pipeline_id for d in read_state_documents(tmp_path)] == ["acme.crm", "acme.raw", "globex.raw"]
    assert [d.pipeline_id for d in read_state_documents(tmp_path, tenant="acme")] == ["acme.crm", "acme.raw"]
    assert [d.tenant for d in read_state_documents(tmp_path, pipeline_id="globex.raw")] == ["globex"]
    assert read_state_documents(tmp_path, tenant="initech") == []


@pytest.mark.parametrize(
    ("tenant", "pipeline"), [("../acme", None), ("Acme", None), (None, "../x"), (None, "a/b")]
)
def test_filters_cannot_leave_the_state_store(
    tmp_path: Path, tenant: str | None, pipeline: str | None
) -> None:
    with pytest.raises(ConfigError, match=r"is not a (tenant|pipeline) id"):
        read_state_documents(tmp_path, tenant=tenant, pipeline_id=pipeline)


def test_a_missing_state_store_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"no state store at .*; run a job first"):
        read_state_documents(tmp_path / "nothing")
