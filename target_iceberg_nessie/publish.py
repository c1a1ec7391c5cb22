"""Write-audit-publish on Nessie (`publish: wap`).

The run writes its checkpoints to its own branch `<tenant>/run-<run id>`, made from the target
branch when the run starts. At the end of input it audits what the branch holds against what the
target received, and publishes by merging the run branch into the target branch as ONE commit whose
properties carry the run's final Singer state. Until then no STATE is emitted and the state store is
not touched: an unpublished run leaves Meltano's state where the last published run left it, so a
re-run re-reads the same source rows and nothing is lost or doubled.

- Audit failure: nothing is published, the branch is kept for inspection, the run fails.
- A crash before publishing: the branch stays; a re-run with the same run id sets it aside under
  `<branch>-abandoned-<hash>` and starts a fresh one from the target branch.
- Never merged twice: the merge commit records the run branch's head (`ingest.wap-head`); a run
  branch whose head is already recorded on the target branch is not merged again (and Nessie itself
  treats a repeated merge as a no-op).
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pyiceberg.manifest import ManifestEntryStatus
from pyiceberg.table import Table

from target_iceberg_nessie import properties as props
from target_iceberg_nessie.catalogs import CheckpointCatalog, open_catalog
from target_iceberg_nessie.catalogs.nessie_api import (
    NessieClient,
    NessieConflictError,
    NessieNotFoundError,
    Put,
    Reference,
    namespace_content,
)
from target_iceberg_nessie.errors import ConfigError, FatalError, RetriableError
from target_iceberg_nessie.settings import TargetSettings
from target_iceberg_nessie.sink import IcebergSink

PUBLISH: Final = props.PUBLISH
WAP_BRANCH: Final = props.WAP_BRANCH
WAP_HEAD: Final = props.WAP_HEAD
AUDIT: Final = props.AUDIT
_AUTHOR: Final = "target-iceberg-nessie"
_LOG_SCAN_LIMIT: Final = 10_000
_MERGE_ATTEMPTS: Final = 3


class AuditFailedError(FatalError):
    """The run branch did not pass its audit; nothing was published and the branch is kept."""


def run_branch_name(tenant: str, run_id: str) -> str:
    return f"{tenant}/run-{run_id}"


@dataclass(frozen=True)
class CheckResult:
    table: str
    check: str  # row-count | unique-keys
    passed: bool
    detail: str


@dataclass
class AuditResult:
    checks: list[CheckResult] = field(default_factory=list)
    locations: dict[str, str] = field(default_factory=dict)  # table → metadata location audited

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    def failures(self) -> list[CheckResult]:
        return [c for c in self.checks if not c.passed]

    def to_json(self) -> str:
        return json.dumps([asdict(c) for c in self.checks], separators=(",", ":"))


@dataclass(frozen=True)
class Published:
    commit_hash: str
    merged: bool  # False: the run had nothing to publish, or was published before


class WapPublisher:
    """One run's branch: created at the start, audited and merged at the end."""

    def __init__(self, settings: TargetSettings, logger: logging.Logger) -> None:
        if settings.catalog_type != "nessie":
            msg = "publish: wap needs catalog_type nessie (the embedded catalog has no branches)"
            raise ConfigError(msg)
        self.settings = settings
        self.logger = logger
        self.client = NessieClient(
            settings.nessie_uri, token=settings.nessie_token, timeout=settings.nessie_timeout_seconds
        )
        self.target_branch = settings.branch
        self.run_branch = run_branch_name(settings.tenant, settings.run_id)
        self.fork: Reference | None = None

    def close(self) -> None:
        self.client.close()

    # -- start ---------------------------------------------------------------------------------

    def start(self) -> str:
        """Create the run branch from the target branch's head; returns its name."""
        target = self._target_head()
        if next(iter(self.client.log(target.name, page_size=1)), None) is None:
            # Nessie cannot merge into a branch without commits (no common ancestor): give it one.
            target = self.client.commit(
                target,
                [Put(("_ingest",), namespace_content(("_ingest",)))],
                message="initialise branch for write-audit-publish",
                properties={},
                author=_AUTHOR,
            )
        try:
            existing = self.client.reference(self.run_branch)
        except NessieNotFoundError:
            existing = None
        if existing is not None:
            self._set_aside(existing)
        self.fork = target
        try:
            self.client.create_branch(self.run_branch, target)
        except NessieConflictError as error:
            msg = f"run branch {self.run_branch!r} appeared while this run started; is the run id reused?"
            raise RetriableError(msg) from error
        self.logger.info(
            "write-audit-publish: writing to %s (from %s@%s)", self.run_branch, target.name, target.hash[:12]
        )
        return self.run_branch

    def _target_head(self) -> Reference:
        try:
            head = self.client.reference(self.target_branch)
        except NessieNotFoundError:
            if self.settings.branch_from is None:
                msg = (
                    f"Nessie branch {self.target_branch!r} does not exist at {self.client.uri}; create it, "
                    "or set `branch_from` to create it from another reference"
                )
                raise ConfigError(msg) from None
            head = self.client.create_branch(
                self.target_branch, self.client.reference(self.settings.branch_from)
            )
        if head.type != "BRANCH":
            msg = f"{self.target_branch!r} is a Nessie {head.type.lower()}, which is read-only; set `branch`"
            raise ConfigError(msg)
        return head

    def _set_aside(self, existing: Reference) -> None:
        if self._published_entry(existing.hash) is not None:
            self.logger.info("run branch %s was published before; deleting it", self.run_branch)
        else:
            kept = f"{self.run_branch}-abandoned-{existing.hash[:12]}"
            self.logger.warning(
                "run branch %s holds an unpublished earlier attempt of this run; it is kept as %s and "
                "its rows will be loaded again from the last published state",
                self.run_branch,
                kept,
            )
            with contextlib.suppress(NessieConflictError):  # kept before
                self.client.create_branch(kept, existing)
        self.client.delete_branch(existing)

    def _published_entry(self, run_head: str) -> str | None:
        """Hash of the target branch's commit that published `run_head`, if any."""
        for n, entry in enumerate(self.client.log(self.target_branch)):
            if n >= _LOG_SCAN_LIMIT:
                break
            if entry.properties.get(WAP_HEAD) == run_head:
                return entry.hash
        return None

    # -- audit ---------------------------------------------------------------------------------

    def audit(self, catalog: CheckpointCatalog, sinks: Iterable[IcebergSink]) -> AuditResult:
        """Row counts of the run's snapshots against what the target received; unique keys."""
        assert self.fork is not None, "start() first"
        result = AuditResult()
        fork_ref = f"{self.fork.name}@{self.fork.hash}"
        for sink in sinks:
            table = catalog.load_table(sink.identifier)
            if table is None:
                continue
            result.locations[sink.table_name] = table.metadata_location
            before = self.client.content(fork_ref, sink.identifier)
            stop = before.get("snapshotId") if before else None
            snapshots = run_snapshots(table, stop)
            landed = sum(_records_loaded(s.summary) for s in snapshots if s.summary)
            received = sink.tally.records_read
            if sink.contract is not None:  # rows a contract quarantined or dropped do not land here
                received -= sink.contract.report.quarantined + sink.contract.report.dropped
            result.checks.append(
                CheckResult(
                    sink.table_name,
                    "row-count",
                    landed == received,
                    f"{landed} row(s) in the run's snapshots, {received} record(s) received and kept",
                )
            )
            keys = sink.shape.key_properties if sink.shape else ()
            if keys and landed:
                duplicates = duplicate_keys(table, snapshots, keys)
                result.checks.append(
                    CheckResult(
                        sink.table_name,
                        "unique-keys",
                        not duplicates,
                        f"keys {list(keys)} unique in the run's rows"
                        if not duplicates
                        else f"{len(duplicates)} key value(s) appear more than once, e.g. {duplicates[:3]}",
                    )
                )
        return result

    # -- publish -------------------------------------------------------------------------------

    def publish(
        self,
        catalog: CheckpointCatalog,
        sinks: Sequence[IcebergSink],
        *,
        last_batch: tuple[str, int] | None,
        state_properties: Mapping[str, str],
    ) -> Published:
        """Audit, then merge the run branch into the target branch carrying the final state."""
        run_head = self.client.reference(self.run_branch)
        assert self.fork is not None, "start() first"
        if run_head.hash == self.fork.hash:
            self.logger.info("write-audit-publish: the run committed nothing; nothing to publish")
            self._delete_run_branch(run_head)
            return Published(self.fork.hash, merged=False)
        if (done := self._published_entry(run_head.hash)) is not None:
            self.logger.info(
                "run branch %s@%s was published before (%s)", self.run_branch, run_head.hash, done
            )
            self._delete_run_branch(run_head)
            return Published(done, merged=False)
        # Audit exactly what will be merged: the run branch at this head (whoever wrote to it).
        with open_catalog(
            "nessie",
            name=catalog.name,
            uri=self.settings.nessie_uri,
            warehouse=catalog.warehouse,
            branch=f"{run_head.name}@{run_head.hash}",
            token=self.settings.nessie_token,
            timeout=self.settings.nessie_timeout_seconds,
            io_properties=catalog.io_properties,
        ) as at_head:
            audit = self.audit(at_head, sinks)
        for check in audit.checks:
            self.logger.info(
                "audit %s %s: %s (%s)",
                check.table,
                check.check,
                "pass" if check.passed else "FAIL",
                check.detail,
            )
        if not audit.passed:
            failures = "; ".join(f"{c.table} {c.check}: {c.detail}" for c in audit.failures())
            msg = (
                f"audit failed, nothing was published to {self.target_branch!r}: {failures}. The run's "
                f"rows are kept on branch {self.run_branch!r} for inspection"
            )
            raise AuditFailedError(msg)
        batch_id, batch_seq = last_batch or (f"{self.settings.run_id}:0", 0)
        properties = {
            props.PIPELINE_ID: self.settings.pipeline_id,
            props.RUN_ID: self.settings.run_id,
            props.BATCH_ID: batch_id,
            props.BATCH_SEQ: str(batch_seq),
            props.STREAMS: json.dumps([s.stream for s in sinks if s.tally.rows_committed]),
            props.TABLES: json.dumps(audit.locations),
            props.SUMMARY: json.dumps({s.table_name: {"rows": s.tally.rows_committed} for s in sinks}),
            props.COMMITTED_AT: datetime.now(UTC).isoformat(timespec="milliseconds"),
            PUBLISH: "wap",
            WAP_BRANCH: self.run_branch,
            WAP_HEAD: run_head.hash,
            AUDIT: audit.to_json(),
            **state_properties,  # the final state: inline, or the location of its file
        }
        message = f"publish run {self.settings.run_id} of {self.settings.pipeline_id} from {self.run_branch}"
        merged = self._merge(run_head, message, properties)
        self.logger.info(
            "write-audit-publish: %s merged into %s as %s", self.run_branch, self.target_branch, merged
        )
        self._delete_run_branch(run_head)
        return Published(merged, merged=True)

    def _merge(self, run_head: Reference, message: str, properties: Mapping[str, str]) -> str:
        for attempt in range(1, _MERGE_ATTEMPTS + 1):
            target = self.client.reference(self.target_branch)
            try:
                result = self.client.merge(
                    target, run_head, message=message, properties=properties, author=_AUTHOR
                )
            except NessieConflictError as error:
                if attempt == _MERGE_ATTEMPTS:
                    msg = (
                        f"publishing {self.run_branch!r} into {self.target_branch!r} conflicts with changes "
                        f"made there since the run started ({error}); nothing was published and the branch "
                        "is kept; re-run the job to load from the last published state"
                    )
                    raise RetriableError(msg) from error
                continue
            except RetriableError:
                # Unknown outcome: settle it from the target branch's log.
                if (done := self._published_entry(run_head.hash)) is not None:
                    return done
                raise
            return result.head.hash
        msg = "unreachable"
        raise AssertionError(msg)

    def _delete_run_branch(self, head: Reference) -> None:
        try:
            self.client.delete_branch(head)
        except (NessieNotFoundError, NessieConflictError) as error:
            self.logger.warning("run branch %s not deleted: %s", self.run_branch, error)


def run_snapshots(table: Table, stop_at: int | None) -> list[Any]:
    """The table's snapshots from its current one back to (not including) `stop_at`."""
    by_id = {s.snapshot_id: s for s in table.metadata.snapshots}
    found = []
    current = table.metadata.current_snapshot_id
    while current is not None and current != stop_at:
        snapshot = by_id.get(current)
        if snapshot is None:
            break
        found.append(snapshot)
        current = snapshot.parent_snapshot_id
    return found


def duplicate_keys(table: Table, snapshots: Sequence[Any], keys: Sequence[str]) -> list[Any]:
    """Key values that occur more than once among the rows the snapshots added (key columns only)."""
    paths: list[str] = []
    for snapshot in snapshots:
        for manifest in snapshot.manifests(table.io):
            if manifest.added_snapshot_id != snapshot.snapshot_id:
                continue
            paths.extend(
                entry.data_file.file_path
                for entry in manifest.fetch_manifest_entry(table.io, discard_deleted=True)
                if entry.status == ManifestEntryStatus.ADDED
            )
    if not paths:
        return []
    columns = pa.concat_tables(_read_columns(table, path, keys) for path in paths)
    counts = columns.group_by(list(keys)).aggregate([([], "count_all")])
    repeated = counts.filter(pc.greater(counts["count_all"], 1))
    examples: list[Any] = repeated.select(list(keys)).slice(0, 10).to_pylist()
    return examples


def _read_columns(table: Table, path: str, columns: Sequence[str]) -> pa.Table:
    with table.io.new_input(path).open() as handle:
        return pq.read_table(handle, columns=list(columns))


def _records_loaded(summary: Mapping[str, str]) -> int:
    """The records a snapshot loaded; an upsert's added-records also counts the rows it rewrote."""
    return int(summary.get(props.RECORDS_LOADED) or summary.get("added-records") or 0)
