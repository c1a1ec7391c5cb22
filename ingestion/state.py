"""Reading the state store the target writes: `<state_dir>/<tenant>/<pipeline_id>/state.json`.

Each document is checked against `schemas/state-document.schema.json` and against its own location
(the tenant and pipeline in the file must be the folders it sits in).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from ingestion.errors import ConfigError, ConfigFileError, Problem
from ingestion.tenants import check_pipeline_id, check_tenant_id
from ingestion.validation import read_json, validate
from target_iceberg_nessie.state_store import STATE_FILE

SCHEMA: Final = "state-document.schema.json"


@dataclass(frozen=True)
class StateDocument:
    """One pipeline's committed state as the state store holds it."""

    path: Path
    document: Mapping[str, Any]

    @property
    def tenant(self) -> str:
        return str(self.document["tenant"])

    @property
    def pipeline_id(self) -> str:
        return str(self.document["pipeline_id"])

    @property
    def state(self) -> Mapping[str, Any] | None:
        state: Mapping[str, Any] | None = self.document["state"]
        return state

    @property
    def commit(self) -> Mapping[str, Any]:
        commit: Mapping[str, Any] = self.document["commit"]
        return commit

    def to_json(self) -> dict[str, Any]:
        return {"path": str(self.path), "document": dict(self.document)}


def _subfolders(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def read_state_documents(
    state_dir: Path, tenant: str | None = None, pipeline_id: str | None = None
) -> list[StateDocument]:
    """Every state document under `state_dir`, or those of one tenant and/or pipeline."""
    if tenant is not None:
        check_tenant_id(tenant)
    if pipeline_id is not None:
        check_pipeline_id(pipeline_id)
    if not state_dir.is_dir():
        msg = f"no state store at {state_dir}; run a job first, or pass --state-dir / --project-dir"
        raise ConfigError(msg)
    root = state_dir.resolve()
    documents: list[StateDocument] = []
    for tenant_name in [tenant] if tenant is not None else _subfolders(root):
        tenant_dir = root / tenant_name
        if not tenant_dir.is_dir():
            continue
        for pipeline_name in [pipeline_id] if pipeline_id is not None else _subfolders(tenant_dir):
            file = tenant_dir / pipeline_name / STATE_FILE
            if file.is_file():
                documents.append(_read_document(root, file, tenant_name, pipeline_name))
    return documents


def _read_document(root: Path, file: Path, tenant: str, pipeline_id: str) -> StateDocument:
    if not file.resolve().is_relative_to(root):  # a symlinked folder must not lead out of the store
        msg = f"{file} points outside the state store {root}; replace the link with the folder itself"
        raise ConfigError(msg)
    document = read_json(file)
    validate(document, SCHEMA, file)
    problems = [
        Problem(
            key, f"{document[key]!r} does not match its folder {expected!r}", "move the file or fix the key"
        )
        for key, expected in (("tenant", tenant), ("pipeline_id", pipeline_id))
        if document[key] != expected
    ]
    if problems:
        raise ConfigFileError(file, problems)
    return StateDocument(path=file, document=document)
