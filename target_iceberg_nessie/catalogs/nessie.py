"""The Nessie catalog: Iceberg tables on a Nessie branch, one Nessie commit per checkpoint.

The client writes table metadata JSON itself (so any warehouse pyiceberg's FileIO reaches works,
`file://` included) and commits ONE Put per touched table (plus namespace Puts) with the batch id,
run id, pipeline id and Singer state in the commit properties. Reads within a checkpoint are pinned
to the hash the checkpoint started from, and the commit expects that hash: a concurrent change to
one of our tables is a conflict (re-applied by the coordinator), a change elsewhere is rebased by
the server. After an ambiguous outcome the batch id is looked up in the log since that hash.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from pyiceberg.catalog.noop import NoopCatalog
from pyiceberg.serializers import FromInputFile
from pyiceberg.table import Table
from pyiceberg.typedef import Identifier

from target_iceberg_nessie import properties as props
from target_iceberg_nessie.catalogs.base import (
    Checkpoint,
    CheckpointCatalog,
    CommitResult,
    CommittedState,
    TableChange,
)
from target_iceberg_nessie.catalogs.nessie_api import (
    ICEBERG_TABLE,
    NAMESPACE,
    CommitEntry,
    Delete,
    NessieClient,
    NessieConflictError,
    NessieNotFoundError,
    NessieUnavailableError,
    Put,
    Reference,
    iceberg_table_content,
    namespace_content,
)
from target_iceberg_nessie.errors import CommitOutcomeUnknownError, ConfigError, FatalError

_AUTHOR = "target-iceberg-nessie"
_STATE_NAMESPACE: Identifier = ("_ingest",)
_LOG_SCAN_LIMIT = 10_000  # commits read when looking for a pipeline's state or batch numbers


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class NessieCatalog(CheckpointCatalog):
    """Tables on one Nessie branch."""

    def __init__(
        self,
        name: str,
        uri: str,
        warehouse: str,
        *,
        branch: str = "main",
        branch_from: str | None = None,
        token: str | None = None,
        writable: bool = True,
        timeout: float = 30.0,
        io_properties: Mapping[str, str] | None = None,
    ):
        """`branch`: the branch to commit to; a reader (`writable` False) may also name a tag or
        `<reference>@<hash>` to read the tables as of that commit."""
        if not uri:
            msg = "catalog_type nessie needs the setting nessie_uri (e.g. http://127.0.0.1:19120/api/v2)"
            raise ConfigError(msg)
        self.name = name
        self.warehouse = warehouse.rstrip("/")
        self.io_properties = dict(io_properties or {})
        self.branch, _, pinned = branch.partition("@")
        self.writable = writable
        self.client = NessieClient(uri, token=token, timeout=timeout)
        self.iceberg = NoopCatalog(name)  # tables need a catalog object; commits go through Nessie
        try:
            if pinned and writable:
                msg = f"branch {branch!r}: commits go to a branch's head; remove '@{pinned}'"
                raise ConfigError(msg)
            self._base = self._branch_head(self.branch, branch_from)
            if pinned:
                self._base = Reference(self._base.name, pinned, self._base.type)
            if writable and self._base.type != "BRANCH":
                msg = (
                    f"{self.branch!r} is a Nessie {self._base.type.lower()}, which is read-only; set "
                    "`branch` to a branch (tags can be read with `ingest`, not written)"
                )
                raise ConfigError(msg)
        except BaseException:
            self.client.close()
            raise
        self._content_ids: dict[Identifier, str] = {}

    def _branch_head(self, branch: str, branch_from: str | None) -> Reference:
        """The branch's head; a missing branch is created from `branch_from`, or is an error."""
        try:
            return self.client.reference(branch)
        except NessieNotFoundError:
            if branch_from is None:
                msg = (
                    f"Nessie branch {branch!r} does not exist at {self.client.uri}; create it, or set "
                    "`branch_from` to create it from another reference"
                )
                raise ConfigError(msg) from None
        try:
            source = self.client.reference(branch_from)
        except NessieNotFoundError:
            msg = f"cannot create Nessie branch {branch!r}: its source {branch_from!r} does not exist"
            raise ConfigError(msg) from None
        try:
            return self.client.create_branch(branch, source)
        except NessieConflictError:
            return self.client.reference(branch)  # a concurrent run created it meanwhile

    # -- reading ---------------------------------------------------------------------------

    def load_table(self, identifier: Identifier) -> Table | None:
        content = self.client.content(f"{self.branch}@{self._base.hash}", identifier)
        if content is None or content.get("type") != ICEBERG_TABLE:
            self._content_ids.pop(identifier, None)
            return None
        self._content_ids[identifier] = content["id"]
        location = content["metadataLocation"]
        io = self.file_io(location)
        metadata = FromInputFile.table_metadata(io.new_input(location))
        return Table(identifier, metadata=metadata, metadata_location=location, io=io, catalog=self.iceberg)

    @property
    def _ref(self) -> str:
        """What reads look at: the branch's head for a writer, the pinned hash for a pinned reader."""
        return f"{self.branch}@{self._base.hash}" if self._pinned else self.branch

    @property
    def _pinned(self) -> bool:
        return not self.writable

    def list_namespaces(self) -> list[Identifier]:
        return sorted(key for key, kind in self.client.entries(self._ref) if kind == NAMESPACE)

    def list_tables(self, namespace: Identifier) -> list[Identifier]:
        return sorted(
            key
            for key, kind in self.client.entries(self._ref)
            if kind == ICEBERG_TABLE and key[:-1] == tuple(namespace)
        )

    def drop_table(self, identifier: Identifier) -> None:
        if not self.writable:
            msg = f"cannot drop {'.'.join(identifier)}: this catalog was opened read-only"
            raise ConfigError(msg)
        head = self.client.reference(self.branch)
        content = self.client.content(f"{self.branch}@{head.hash}", identifier)
        if content is None or content.get("type") != ICEBERG_TABLE:
            msg = f"table {'.'.join(identifier)} does not exist on Nessie branch {self.branch!r}"
            raise FatalError(msg)
        self._base = self.client.commit(
            head,
            [Delete(tuple(identifier))],
            message=f"drop table {'.'.join(identifier)}",
            properties={},
            author=_AUTHOR,
        )

    def _ingest_commits(self, pipeline_id: str | None) -> Iterator[CommitEntry]:
        for n, entry in enumerate(self.client.log(self._ref)):
            if n >= _LOG_SCAN_LIMIT:
                return
            found = entry.properties.get(props.PIPELINE_ID)
            if found is not None and (pipeline_id is None or found == pipeline_id):
                yield entry

    def _state_of(self, entry: CommitEntry) -> Mapping[str, Any] | None:
        if inline := entry.properties.get(props.SINGER_STATE):
            loaded: Mapping[str, Any] = json.loads(inline)
            return loaded
        if location := entry.properties.get(props.SINGER_STATE_LOCATION):
            with self.file_io(location).new_input(location).open() as handle:
                from_file: Mapping[str, Any] = json.loads(handle.read())
                return from_file
        return None

    def committed_state(self, pipeline_id: str) -> CommittedState | None:
        for entry in self._ingest_commits(pipeline_id):
            return CommittedState(
                pipeline_id=pipeline_id,
                run_id=entry.properties.get(props.RUN_ID, ""),
                batch_id=entry.properties.get(props.BATCH_ID, ""),
                commit_id=entry.hash,
                state=self._state_of(entry),
                committed_at=entry.properties.get(props.COMMITTED_AT, ""),
                tables=json.loads(entry.properties.get(props.TABLES, "{}")),
            )
        return None

    def last_batch_seq(self, pipeline_id: str, run_id: str) -> int:
        seqs = [
            int(e.properties.get(props.BATCH_SEQ, "0"))
            for e in self._ingest_commits(pipeline_id)
            if e.properties.get(props.RUN_ID) == run_id
        ]
        return max(seqs, default=0)

    def commit_log(self, pipeline_id: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        entries: list[dict[str, Any]] = []
        for entry in self._ingest_commits(pipeline_id):
            if len(entries) >= limit:
                break
            entries.append(
                {
                    "batch_id": entry.properties.get(props.BATCH_ID),
                    "pipeline_id": entry.properties.get(props.PIPELINE_ID),
                    "run_id": entry.properties.get(props.RUN_ID),
                    "streams": json.loads(entry.properties.get(props.STREAMS, "[]")),
                    "tables": json.loads(entry.properties.get(props.TABLES, "{}")),
                    "summary": json.loads(entry.properties.get(props.SUMMARY, "{}")),
                    "committed_at": entry.properties.get(props.COMMITTED_AT),
                    "commit_hash": entry.hash,
                }
            )
        return entries

    # -- committing --------------------------------------------------------------------------

    def _batch_committed(self, batch_id: str, since: str) -> CommitEntry | None:
        for entry in self.client.log(self.branch, until_hash=since):
            if entry.properties.get(props.BATCH_ID) == batch_id:
                return entry
        return None

    def commit_checkpoint(self, changes: Sequence[TableChange], checkpoint: Checkpoint) -> CommitResult:
        base = self._base
        written = {change.identifier: self.write_metadata_file(change) for change in changes}
        locations = {identifier: location for identifier, (location, _) in written.items()}
        committed = {identifier: metadata for identifier, (_, metadata) in written.items()}
        operations: list[Put] = []
        at_base = f"{self.branch}@{base.hash}"
        for change in changes:
            for depth in range(1, len(change.identifier)):
                namespace = change.identifier[:depth]
                if change.base_location is None and not self._exists(at_base, namespace, operations):
                    operations.append(Put(namespace, namespace_content(namespace)))
            metadata = change.metadata
            snapshot = metadata.current_snapshot_id
            operations.append(
                Put(
                    change.identifier,
                    iceberg_table_content(
                        metadata_location=locations[change.identifier],
                        snapshot_id=snapshot if snapshot is not None else -1,
                        schema_id=metadata.current_schema_id,
                        spec_id=metadata.default_spec_id,
                        sort_order_id=metadata.default_sort_order_id,
                        content_id=self._content_id(change.identifier, at_base)
                        if change.base_location
                        else None,
                    ),
                )
            )
        now = _now()
        properties = {
            props.PIPELINE_ID: checkpoint.pipeline_id,
            props.RUN_ID: checkpoint.run_id,
            props.BATCH_ID: checkpoint.batch_id,
            props.BATCH_SEQ: str(checkpoint.batch_seq),
            props.STREAMS: json.dumps(list(checkpoint.streams)),
            props.TABLES: json.dumps({".".join(k): v for k, v in locations.items()}),
            props.SUMMARY: json.dumps(dict(checkpoint.summary)),
            props.COMMITTED_AT: now,
        }
        contracts = {t: s["contract"] for t, s in checkpoint.summary.items() if "contract" in s}
        if contracts:
            properties[props.CONTRACTS] = json.dumps(contracts)
        if checkpoint.state_location is not None:
            properties[props.SINGER_STATE_LOCATION] = checkpoint.state_location
        elif checkpoint.state is not None:
            properties[props.SINGER_STATE] = json.dumps(
                checkpoint.state, separators=(",", ":"), sort_keys=True
            )
        message = f"checkpoint {checkpoint.batch_id} of {checkpoint.pipeline_id}: {len(changes)} table(s)"
        operations.extend(self._state_marker(checkpoint, at_base, operations))
        try:
            head, added = self.client.commit_with_ids(
                base, operations, message=message, properties=properties, author=_AUTHOR
            )
        except NessieConflictError:
            self.delete_quietly(list(locations.values()))
            self._base = self.client.reference(self.branch)  # the retry reloads from the new head
            raise
        except NessieUnavailableError as error:
            result = self._settle(checkpoint, base, locations, now, error)
            return dataclasses.replace(result, metadata=committed)
        self._base = head
        self._content_ids.update({key: cid for key, cid in added.items() if key in locations})
        return CommitResult(head.hash, locations, now, metadata=committed)

    def _content_id(self, identifier: Identifier, at_base: str) -> str | None:
        """The content id of an existing table (Nessie needs it to update one): known from loading
        or creating it, else looked up once."""
        if identifier not in self._content_ids:
            content = self.client.content(at_base, identifier)
            if content is not None:
                self._content_ids[identifier] = content["id"]
        return self._content_ids.get(identifier)

    def _settle(
        self,
        checkpoint: Checkpoint,
        base: Reference,
        locations: Mapping[Identifier, str],
        now: str,
        error: Exception,
    ) -> CommitResult:
        """Settle a commit whose answer was lost. Found in the log since the base hash: it landed.
        Not found: it may still be in flight, so first fence it off by moving the pipeline's marker
        from the base hash (the lost commit expects that hash and puts the marker, so it can no
        longer land); only then is it surely failed, its metadata deleted and the batch re-applied.
        If Nessie stops answering meanwhile, nothing is deleted (CommitOutcomeUnknownError)."""
        batch_id = checkpoint.batch_id
        try:
            found = self._batch_committed(batch_id, base.hash)
            if found is None:
                try:
                    self._fence(checkpoint, base)
                except NessieConflictError:
                    # The marker moved since the base hash: our commit landed meanwhile, or another
                    # commit of this pipeline did (then ours conflicts and cannot land).
                    found = self._batch_committed(batch_id, base.hash)
        except NessieUnavailableError as again:
            msg = (
                f"Nessie did not confirm batch {batch_id} ({error}) and could not be asked whether it "
                f"landed ({again}); its files are kept. Re-run when Nessie answers: the committed "
                "state decides where the re-run starts"
            )
            raise CommitOutcomeUnknownError(msg) from again
        if found is not None:
            self._base = Reference(self.branch, found.hash)
            return CommitResult(found.hash, locations, now, already_committed=True)
        self.delete_quietly(list(locations.values()))
        self._base = self.client.reference(self.branch)
        msg = f"Nessie did not confirm batch {batch_id} ({error}); it did not land and is re-applied"
        raise NessieConflictError(msg) from error

    def _fence(self, checkpoint: Checkpoint, base: Reference) -> None:
        """Move the pipeline's marker from `base`: a commit expecting `base` that puts the marker
        (every checkpoint of this pipeline does) conflicts from now on."""
        fence = {props.FENCED_BATCH_ID: checkpoint.batch_id, props.RUN_ID: checkpoint.run_id}
        operations = self._state_marker(checkpoint, f"{self.branch}@{base.hash}", [], fence)
        self.client.commit(
            base,
            operations,
            message=f"fence: batch {checkpoint.batch_id} of {checkpoint.pipeline_id} was not confirmed",
            properties={props.FENCED_BATCH_ID: checkpoint.batch_id},
            author=_AUTHOR,
        )

    def _exists(self, at_base: str, key: Identifier, staged: Sequence[Put]) -> bool:
        """Whether `key` exists at the base hash or is already put by this commit (one lookup per
        key: only new tables' namespaces and the marker are checked, not the whole branch)."""
        return any(put.key == key for put in staged) or self.client.content(at_base, key) is not None

    def _state_marker(
        self,
        checkpoint: Checkpoint,
        at_base: str,
        staged: Sequence[Put],
        properties: Mapping[str, str] | None = None,
    ) -> list[Put]:
        """Every checkpoint also puts the pipeline's marker `_ingest.<pipeline id>` (a namespace whose
        properties hold the batch id): a state-only checkpoint has something to commit (Nessie
        refuses empty commits), and two runs of one pipeline racing conflict on it."""
        key = (*_STATE_NAMESPACE, checkpoint.pipeline_id)
        current = self.client.content(at_base, key)
        operations = []
        if current is None and not self._exists(at_base, _STATE_NAMESPACE, staged):
            operations.append(Put(_STATE_NAMESPACE, namespace_content(_STATE_NAMESPACE)))
        marker = namespace_content(
            key,
            current.get("id") if current else None,
            properties or {props.BATCH_ID: checkpoint.batch_id, props.RUN_ID: checkpoint.run_id},
        )
        operations.append(Put(key, marker))
        return operations

    def close(self) -> None:
        self.client.close()
