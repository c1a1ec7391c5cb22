"""Reading the lake: tables, their current snapshots, sample rows, the commit log and each
pipeline's committed state; on Nessie also its branches and tags, and rolling a branch back.

The catalog is opened only through `target_iceberg_nessie.catalogs` (the one package that speaks SQL
or Nessie's API); tables are read back with pyiceberg. Snapshot summary keys come from the target's
`properties` module, where every key the platform reads back is declared.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Final

from pyiceberg.table import Table

from ingestion.errors import ConfigError, LakeNotFoundError, PlatformError
from ingestion.paths import NESSIE_URI_ENV, LakeLocation, sqlite_file, without_userinfo
from ingestion.state import StateDocument
from ingestion.tenants import check_pipeline_id
from target_iceberg_nessie import properties as props
from target_iceberg_nessie.catalogs import CheckpointCatalog, CommittedState, open_catalog
from target_iceberg_nessie.catalogs import nessie_api as api

# Iceberg's standard snapshot summary keys (spec: "Snapshot Summary").
TOTAL_RECORDS: Final = "total-records"
TOTAL_DATA_FILES: Final = "total-data-files"
# Commit properties the Nessie catalog writes that `properties` does not declare (yet).
STREAMS: Final = props.STREAMS
SUMMARY: Final = props.SUMMARY
COMMITTED_AT: Final = props.COMMITTED_AT

EXIT_RETRY: Final = 75  # EX_TEMPFAIL, as the target's RetriableError: the same command may work later
SHORT_HASH: Final = 12  # how many hex digits of a Nessie hash people see
MIN_HASH_PREFIX: Final = 8  # and how many they must type
FULL_HASH: Final = 64
LOG_SCAN_LIMIT: Final = 10_000  # commits read when looking through a log (as the Nessie catalog does)
_HEX = re.compile(r"^[0-9a-fA-F]+$")


class CatalogUnavailableError(PlatformError):
    """The catalog's server did not answer (or answered 5xx); nothing changed, re-run later."""

    exit_code = EXIT_RETRY


class BranchMovedError(PlatformError):
    """A branch moved between reading it and changing it; nothing changed, re-run to see it anew."""

    exit_code = EXIT_RETRY


def short(commit_hash: str | None) -> str | None:
    return commit_hash[:SHORT_HASH] if commit_hash else commit_hash


@contextmanager
def _nessie_errors(location: LakeLocation) -> Iterator[None]:
    """Nessie not answering becomes one retriable error that names its URI and the fix."""
    try:
        yield
    except api.NessieUnavailableError as error:
        msg = (
            f"{error}; start Nessie there (`make nessie` runs one locally) or point --nessie-uri / "
            f"{NESSIE_URI_ENV[0]} at a running one, then re-run"
        )
        raise CatalogUnavailableError(msg) from error


@contextmanager
def nessie_client(location: LakeLocation) -> Iterator[api.NessieClient]:
    """A client for the location's Nessie, checked to speak the REST API v2."""
    uri = location.nessie_uri or ""
    with _nessie_errors(location), api.NessieClient(uri, token=location.nessie_token) as client:
        try:
            config = client.config()
        except (api.NessieNotFoundError, ValueError):  # ValueError: an answer that is not JSON
            config = {}
        if config.get("actualApiVersion") != 2:  # noqa: PLR2004 - the API version this client speaks
            msg = (
                f"no Nessie REST API v2 at {without_userinfo(uri)}; the URI ends in /api/v2, "
                "e.g. http://127.0.0.1:19120/api/v2"
            )
            raise ConfigError(msg)
        yield client


def _full_hash(client: api.NessieClient, ref: str, prefix: str) -> str | None:
    """The commit on `ref`'s log whose hash starts with `prefix` (newest first), if any."""
    prefix = prefix.lower()
    for n, entry in enumerate(client.log(ref)):
        if entry.hash.startswith(prefix):
            return entry.hash
        if n >= LOG_SCAN_LIMIT:
            break
    return None


def _check_hash(text: str, what: str) -> None:
    if not (MIN_HASH_PREFIX <= len(text) <= FULL_HASH and _HEX.match(text)):
        msg = f"{what} {text!r} is not a commit hash; give at least {MIN_HASH_PREFIX} of its hex digits"
        raise ConfigError(msg)


def find_reference(client: api.NessieClient, ref: str) -> api.Reference:
    """The branch or tag `ref` names; `<name>@<hash>` (the hash may be shortened): that commit of
    its history. Unknown names and commits are ConfigErrors that say where to look."""
    name, _, pinned = ref.partition("@")
    try:
        head = client.reference(name)
    except api.NessieNotFoundError:
        where = without_userinfo(client.uri)
        msg = f"no branch or tag {name!r} on Nessie at {where}; `ingest branches` lists them"
        raise ConfigError(msg) from None
    if not pinned:
        return head
    _check_hash(pinned, f"{ref!r}:")
    found = _full_hash(client, f"{head.name}@{head.hash}", pinned)
    if found is None:
        msg = f"no commit {pinned!r} in the history of {name!r}; `ingest commits --ref {name}` lists them"
        raise ConfigError(msg)
    return api.Reference(head.name, found, head.type)


@contextmanager
def open_lake(location: LakeLocation) -> Iterator[CheckpointCatalog]:
    """The lake's catalog, for reading; refuses to create an empty SQLite catalog where none exists
    and names the fix for an unknown Nessie reference or an unreachable server."""
    ref = location.ref
    if location.is_nessie:
        with nessie_client(location) as client:
            found = find_reference(client, location.ref)
        if "@" in ref:
            ref = f"{found.name}@{found.hash}"  # Nessie wants the full hash
    else:
        database = sqlite_file(location.catalog_uri)
        if database is not None and not database.is_file():
            raise LakeNotFoundError(database)
    with _nessie_errors(location):
        catalog = open_catalog(
            location.catalog_type,
            name=location.catalog_name,
            uri=location.uri,
            warehouse=location.warehouse,
            create=False,
            branch=ref,
            token=location.nessie_token,
            io_properties=location.io_properties,
        )
        try:
            yield catalog
        finally:
            catalog.close()


@dataclass(frozen=True)
class TableSummary:
    """One table as its current snapshot describes it (written by the target's last checkpoint)."""

    identifier: tuple[str, ...]
    rows: int
    data_files: int
    snapshot_id: int | None
    batch_id: str | None
    run_id: str | None
    sample: list[dict[str, Any]] | None = field(default=None, compare=False)

    @property
    def name(self) -> str:
        return ".".join(self.identifier)

    def to_json(self) -> dict[str, Any]:
        shown: dict[str, Any] = {
            "identifier": self.name,
            "tenant": self.identifier[0],
            "namespace": ".".join(self.identifier[1:-1]),
            "table": self.identifier[-1],
            "rows": self.rows,
            "data_files": self.data_files,
            "snapshot_id": self.snapshot_id,
            "batch_id": self.batch_id,
            "run_id": self.run_id,
        }
        if self.sample is not None:
            shown["sample"] = [{key: jsonable(value) for key, value in row.items()} for row in self.sample]
        return shown


def _count(summary: Mapping[str, str], key: str) -> int:
    value = summary.get(key)
    return int(value) if value is not None else 0


def summarize(identifier: tuple[str, ...], table: Table, sample: int = 0) -> TableSummary:
    snapshot = table.current_snapshot()
    summary: Mapping[str, str] = (
        snapshot.summary.additional_properties if snapshot and snapshot.summary else {}
    )
    rows: list[dict[str, Any]] | None = None
    if sample > 0:
        rows = table.scan(limit=sample).to_arrow().to_pylist() if snapshot is not None else []
    return TableSummary(
        identifier=identifier,
        rows=_count(summary, TOTAL_RECORDS),
        data_files=_count(summary, TOTAL_DATA_FILES),
        snapshot_id=snapshot.snapshot_id if snapshot is not None else None,
        batch_id=summary.get(props.BATCH_ID),
        run_id=summary.get(props.RUN_ID),
        sample=rows,
    )


def list_lake_tables(catalog: CheckpointCatalog, sample: int = 0) -> list[TableSummary]:
    """Every table in the lake, sorted by identifier, with up to `sample` rows each."""
    if sample < 0:
        msg = f"--sample must be 0 or more, got {sample}"
        raise ConfigError(msg)
    found: list[TableSummary] = []
    identifiers = sorted({ident for ns in catalog.list_namespaces() for ident in catalog.list_tables(ns)})
    for identifier in identifiers:
        try:
            table = catalog.load_table(identifier)
            if table is not None:  # None: dropped between listing and loading
                found.append(summarize(tuple(identifier), table, sample))
        except OSError as error:
            msg = (
                f"table {'.'.join(identifier)} cannot be read ({error}); "
                "restore the warehouse files the catalog points at, or check their permissions"
            )
            raise PlatformError(msg) from error
    return found


@dataclass(frozen=True)
class CommitEntry:
    """One checkpoint in the catalog's commit log."""

    batch_id: str
    pipeline_id: str
    run_id: str
    streams: list[str]
    rows: dict[str, int]  # table identifier → rows this checkpoint appended
    committed_at: str
    commit_hash: str | None = None  # Nessie's commit; the embedded catalog logs batches, not commits

    def to_json(self) -> dict[str, Any]:
        return {
            "commit_hash": self.commit_hash,
            "batch_id": self.batch_id,
            "pipeline_id": self.pipeline_id,
            "run_id": self.run_id,
            "streams": self.streams,
            "rows": self.rows,
            "committed_at": self.committed_at,
        }


def _rows(summary: Mapping[str, Any]) -> dict[str, int]:
    return {table: int(part.get("rows", 0)) for table, part in summary.items()}


def commit_log(
    catalog: CheckpointCatalog, pipeline_id: str | None = None, limit: int = 50, run_id: str | None = None
) -> list[CommitEntry]:
    """Newest first, at most `limit` entries, optionally of one pipeline and/or one run."""
    if pipeline_id is not None:
        check_pipeline_id(pipeline_id)
    if limit < 1:
        msg = f"--limit must be 1 or more, got {limit}"
        raise ConfigError(msg)
    found = catalog.commit_log(pipeline_id=pipeline_id, limit=limit if run_id is None else LOG_SCAN_LIMIT)
    return [
        CommitEntry(
            batch_id=str(entry["batch_id"] or ""),
            pipeline_id=str(entry["pipeline_id"] or ""),
            run_id=str(entry["run_id"] or ""),
            streams=list(entry["streams"]),
            rows=_rows(entry["summary"]),
            committed_at=str(entry["committed_at"] or ""),
            commit_hash=entry.get("commit_hash"),
        )
        for entry in found
        if run_id is None or entry["run_id"] == run_id
    ][:limit]


# -- committed state: the catalog's, and the state store's copy --------------------------------------

IN_SYNC: Final = "in sync"
BEHIND: Final = "behind"  # the store holds an older checkpoint of this catalog
NOT_IN_HISTORY: Final = "not in history"  # the store's checkpoint is not in the catalog's log (rolled back?)
OTHER_CATALOG: Final = "other catalog"  # the store's document was committed to another catalog
NO_DOCUMENT: Final = "no document"
NOT_COMMITTED: Final = "not committed"  # a document, but no committed state in this catalog


@dataclass(frozen=True)
class StateCheck:
    """A pipeline's committed state (the source of truth) next to the state store's document."""

    pipeline_id: str
    committed: CommittedState | None
    document: StateDocument | None
    status: str

    def warning(self, catalog: str) -> str | None:
        """One line for people when the state store does not match the catalog."""
        doc, done = self.document, self.committed
        if doc is None or self.status == IN_SYNC:
            return None
        held = f"batch {doc.document['batch_id']}"
        if done is None:
            return (
                f"pipeline {self.pipeline_id}: the state store holds {held}, "
                f"but {catalog} has no committed state"
            )
        if self.status == BEHIND:
            return (
                f"pipeline {self.pipeline_id}: the state store is behind the catalog (it holds {held}, the "
                f"catalog committed batch {done.batch_id}); the catalog is the source of truth"
            )
        if self.status == OTHER_CATALOG:
            commit = doc.commit
            return (
                f"pipeline {self.pipeline_id}: the state store's document ({held}) was committed to the "
                f"{commit['catalog_type']} catalog {commit['catalog_name']!r}, not to {catalog}"
            )
        return (
            f"pipeline {self.pipeline_id}: the state store holds {held}, which is not in the history of "
            f"{catalog} (rolled back, or written to another lake or branch); the catalog committed batch "
            f"{done.batch_id}"
        )

    def to_json(self) -> dict[str, Any]:
        done = self.committed
        return {
            "pipeline_id": self.pipeline_id,
            "committed": None
            if done is None
            else {
                "run_id": done.run_id,
                "batch_id": done.batch_id,
                "commit_id": done.commit_id,
                "committed_at": done.committed_at,
                "tables": dict(done.tables),
                "state": done.state,
            },
            "state_store": self.status,
            "state_store_batch_id": self.document.document["batch_id"] if self.document else None,
        }


def _status(
    catalog: CheckpointCatalog, location: LakeLocation, done: CommittedState | None, doc: StateDocument | None
) -> str:
    if doc is None:
        return NO_DOCUMENT
    if done is None:
        return NOT_COMMITTED
    commit = doc.commit
    if (commit["catalog_type"], commit["catalog_name"]) != (location.catalog_type, location.catalog_name):
        return OTHER_CATALOG
    if commit["commit_id"] == done.commit_id and doc.state == done.state:
        return IN_SYNC
    logged = {e["batch_id"] for e in catalog.commit_log(pipeline_id=done.pipeline_id, limit=LOG_SCAN_LIMIT)}
    return BEHIND if doc.document["batch_id"] in logged else NOT_IN_HISTORY


def check_states(
    catalog: CheckpointCatalog,
    location: LakeLocation,
    documents: Sequence[StateDocument],
    pipeline_id: str | None = None,
    tenant: str | None = None,
) -> list[StateCheck]:
    """Each pipeline's committed state, compared with its state store document. Pipelines: the one
    asked for, else those with a document and those in the catalog's log (of `tenant`: whose id
    starts with `<tenant>.`, the target's default pipeline id)."""
    if pipeline_id is not None:
        check_pipeline_id(pipeline_id)
    stored = {d.pipeline_id: d for d in documents}
    if pipeline_id is not None:
        pipelines = {pipeline_id}
    else:
        logged = {str(e["pipeline_id"]) for e in catalog.commit_log(limit=LOG_SCAN_LIMIT)}
        pipelines = set(stored) | {p for p in logged if tenant is None or p.startswith(f"{tenant}.")}
    checks = []
    for pipeline in sorted(pipelines):
        done, doc = catalog.committed_state(pipeline), stored.get(pipeline)
        if done is not None or doc is not None:
            checks.append(StateCheck(pipeline, done, doc, _status(catalog, location, done, doc)))
    return checks


# -- Nessie: references and rolling a branch back ------------------------------------------------


@dataclass(frozen=True)
class NessieCommit:
    """A commit on a Nessie reference; `checkpoint` when the target wrote it."""

    hash: str
    message: str
    checkpoint: CommitEntry | None

    @classmethod
    def of(cls, entry: api.CommitEntry) -> NessieCommit:
        p = entry.properties
        checkpoint = None
        if props.PIPELINE_ID in p:
            checkpoint = CommitEntry(
                batch_id=p.get(props.BATCH_ID, ""),
                pipeline_id=p[props.PIPELINE_ID],
                run_id=p.get(props.RUN_ID, ""),
                streams=list(json.loads(p.get(STREAMS, "[]"))),
                rows=_rows(json.loads(p.get(SUMMARY, "{}"))),
                committed_at=p.get(COMMITTED_AT, ""),
                commit_hash=entry.hash,
            )
        return cls(entry.hash, entry.message, checkpoint)

    def to_json(self) -> dict[str, Any]:
        shown = self.checkpoint.to_json() if self.checkpoint else {"commit_hash": self.hash}
        return {**shown, "message": self.message}


@dataclass(frozen=True)
class ReferenceSummary:
    """A branch or tag and its head commit."""

    name: str
    type: str
    hash: str
    head: NessieCommit | None  # None: no commits yet

    def to_json(self) -> dict[str, Any]:
        checkpoint = self.head.checkpoint if self.head else None
        return {
            "name": self.name,
            "type": self.type,
            "hash": self.hash,
            "message": self.head.message if self.head else None,
            "pipeline_id": checkpoint.pipeline_id if checkpoint else None,
            "run_id": checkpoint.run_id if checkpoint else None,
            "batch_id": checkpoint.batch_id if checkpoint else None,
            "committed_at": checkpoint.committed_at if checkpoint else None,
        }


def _head(client: api.NessieClient, ref: api.Reference) -> NessieCommit | None:
    entry = next(iter(client.log(f"{ref.name}@{ref.hash}", page_size=1)), None)
    return NessieCommit.of(entry) if entry is not None else None


def list_references(location: LakeLocation) -> list[ReferenceSummary]:
    """Every branch and tag (branches first, by name) with its head commit."""
    with nessie_client(location) as client:
        found = sorted(client.references(), key=lambda r: (r.type != "BRANCH", r.name))
        return [ReferenceSummary(r.name, r.type, r.hash, _head(client, r)) for r in found]


@dataclass(frozen=True)
class RollbackPlan:
    """Move `branch` (expected at its hash) back to `to_hash`, undoing `undone` (newest first)."""

    branch: api.Reference
    to_hash: str
    undone: list[NessieCommit]

    @property
    def pipelines(self) -> list[str]:
        """Pipelines whose committed state goes back with the branch."""
        return sorted({c.checkpoint.pipeline_id for c in self.undone if c.checkpoint})

    def to_json(self) -> dict[str, Any]:
        return {
            "branch": self.branch.name,
            "from": self.branch.hash,
            "to": self.to_hash,
            "undone": [c.to_json() for c in self.undone],
            "pipelines": self.pipelines,
        }


def plan_rollback(client: api.NessieClient, branch: str, to: str) -> RollbackPlan:
    """What rolling `branch` back to commit `to` (a hash or a prefix of at least 8 digits) undoes;
    `to` must be in the branch's own history (its log, or where that log begins)."""
    _check_hash(to, "--to")
    to = to.lower()
    head = find_reference(client, branch)
    if head.type != "BRANCH":
        msg = f"{branch!r} is a Nessie {head.type.lower()}, not a branch; `ingest rollback` moves branches"
        raise ConfigError(msg)
    if head.hash.startswith(to):  # already there (also a branch with no commits of its own yet)
        return RollbackPlan(head, head.hash, [])
    undone: list[NessieCommit] = []
    parent: str | None = None
    for entry in client.log(f"{head.name}@{head.hash}"):
        if entry.hash.startswith(to):
            return RollbackPlan(head, entry.hash, undone)
        if len(undone) >= LOG_SCAN_LIMIT:
            parent = None
            break
        undone.append(NessieCommit.of(entry))
        parent = entry.parent_hashes[0] if entry.parent_hashes else None
    if parent is not None and parent.startswith(to):  # where the log begins: before its first commit
        return RollbackPlan(head, parent, undone)
    msg = (
        f"commit {to} is not in the history of branch {branch!r} ({len(undone)} commit(s) read), "
        "so moving there would not undo commits but jump elsewhere; pick one from "
        f"`ingest commits --ref {branch}`"
    )
    raise ConfigError(msg)


def apply_rollback(client: api.NessieClient, plan: RollbackPlan) -> api.Reference:
    """Assign the branch to the plan's commit, expecting it where the plan saw it."""
    try:
        return client.assign(plan.branch, plan.to_hash)
    except api.NessieConflictError as error:
        msg = (
            f"branch {plan.branch.name!r} moved (it is no longer at {short(plan.branch.hash)}); nothing "
            "was rolled back: re-run to see what rolling back undoes now"
        )
        raise BranchMovedError(msg) from error


def jsonable(value: Any) -> Any:
    """A JSON-friendly form of a value read from a table (exact decimals as text, times as ISO 8601)."""
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, dt.datetime | dt.date | dt.time):
        value = value.isoformat()
    elif isinstance(value, bytes):
        value = base64.b64encode(value).decode()
    elif not (value is None or isinstance(value, bool | int | float | str)):
        value = str(value)  # Decimal, UUID and anything else exact as text
    return value
