"""Checkpoints: flush every stream, commit all touched tables and the Singer state atomically,
then emit the state, then persist it to the platform's state store — in that order, always.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from target_iceberg_nessie import properties as props
from target_iceberg_nessie.catalogs import Checkpoint, CheckpointCatalog, CommitResult
from target_iceberg_nessie.errors import CommitConflictError, CommitOutcomeUnknownError
from target_iceberg_nessie.settings import TargetSettings
from target_iceberg_nessie.sink import IcebergSink
from target_iceberg_nessie.state_store import StateStore

_BACKOFF_BASE_SECONDS = 0.2
_BACKOFF_MAX_SECONDS = 5.0


class CommitCoordinator:
    """Owns the checkpoint sequence of one run of one pipeline."""

    def __init__(
        self,
        *,
        settings: TargetSettings,
        catalog: CheckpointCatalog,
        state_store: StateStore,
        emit_state: Callable[[Mapping[str, Any]], None],
        logger: logging.Logger,
        started_at: float | None = None,
        hold_state: bool = False,
    ) -> None:
        """`hold_state`: commit checkpoints but neither emit their state nor record it in the state
        store (write-audit-publish: the state is released when the run is published)."""
        self.settings = settings
        self.catalog = catalog
        self.state_store = state_store
        self.emit_state = emit_state
        self.logger = logger
        self.batch_seq = catalog.last_batch_seq(settings.pipeline_id, settings.run_id)
        self.commits = 0
        self.last_commit_id: str | None = None
        self.hold_state = hold_state
        self._emitted_state: Mapping[str, Any] | None = None
        self._committed_state: Mapping[str, Any] | None = None
        self.last_batch: tuple[str, int] | None = None  # (batch id, seq) of the last commit
        self.last_state_properties: dict[str, str] = {}
        self.last_checkpoint_at = time.monotonic() if started_at is None else started_at

    @property
    def next_batch_id(self) -> str:
        """The batch id the next checkpoint commits under (a retry of it keeps it)."""
        return f"{self.settings.run_id}:{self.batch_seq + 1}"

    def seconds_since_checkpoint(self) -> float:
        return time.monotonic() - self.last_checkpoint_at

    def _state_properties(self, checkpoint: Checkpoint) -> dict[str, str]:
        if checkpoint.state is None:
            return {}
        encoded = json.dumps(checkpoint.state, separators=(",", ":"), sort_keys=True)
        if len(encoded.encode()) <= props.INLINE_STATE_MAX_BYTES:
            return {props.SINGER_STATE: encoded}
        location = (
            f"{self.settings.warehouse.rstrip('/')}/_ingest/state/{self.settings.pipeline_id}/"
            f"{checkpoint.batch_id.replace(':', '-')}.json"
        )
        output = self.catalog.file_io(location).new_output(location)
        with output.create(overwrite=True) as handle:
            handle.write(encoded.encode())
        return {props.SINGER_STATE_LOCATION: location}

    def checkpoint(self, sinks: Iterable[IcebergSink], state: Mapping[str, Any] | None, reason: str) -> bool:
        """Commit what is staged with `state`. Returns False when there was nothing to commit."""
        sinks = list(sinks)
        pending = self.next_batch_id
        for sink in sinks:
            sink.pending_batch_id = pending  # stamps the rows it rejects in this checkpoint
            sink.flush()
        for sink in sinks:
            sink.seal()  # also stages its rejected rows in its rejects table
        touched = [member for sink in sinks for member in sink.family if member.has_changes]
        if not touched and (state is None or state == self._committed_state):
            return False
        self.batch_seq += 1
        checkpoint = Checkpoint(
            pipeline_id=self.settings.pipeline_id,
            run_id=self.settings.run_id,
            batch_seq=self.batch_seq,
            state=state,
            streams=tuple(sink.stream for sink in touched),
            summary={sink.table_name: _table_summary(sink) for sink in touched},
        )
        state_properties = self._state_properties(checkpoint)
        if location := state_properties.get(props.SINGER_STATE_LOCATION):
            checkpoint = dataclasses.replace(checkpoint, state_location=location)
        snapshot_properties = {
            props.PIPELINE_ID: checkpoint.pipeline_id,
            props.RUN_ID: checkpoint.run_id,
            props.BATCH_ID: checkpoint.batch_id,
            props.BATCH_SEQ: str(checkpoint.batch_seq),
            **state_properties,
        }
        started = time.perf_counter()
        result = self._commit_with_retries(touched, checkpoint, snapshot_properties)
        for sink in touched:
            snapshot = result.snapshot_ids.get(sink.identifier)
            commit = result.commit
            sink.committed(
                snapshot, commit.metadata.get(sink.identifier), commit.metadata_locations.get(sink.identifier)
            )
        for sink in sinks:
            sink.pending_batch_id = self.next_batch_id  # what the next checkpoint's batches stage under
        self.commits += 1
        self.last_commit_id = result.commit.commit_id
        self.last_checkpoint_at = time.monotonic()
        self.logger.info(
            "checkpoint %s committed (%s): %d table(s), %d row(s) in %.3fs",
            checkpoint.batch_id,
            reason,
            len(touched),
            sum(checkpoint.summary[s.table_name]["rows"] for s in touched),
            time.perf_counter() - started,
        )
        self._committed_state = state
        self.last_batch = (checkpoint.batch_id, checkpoint.batch_seq)
        self.last_state_properties = state_properties
        if not self.hold_state:
            self.release_state(
                state,
                batch_id=checkpoint.batch_id,
                commit_id=result.commit.commit_id,
                tables={".".join(k): v for k, v in result.commit.metadata_locations.items()},
                committed_at=result.commit.committed_at,
            )
        return True

    def release_state(
        self,
        state: Mapping[str, Any] | None,
        *,
        batch_id: str,
        commit_id: str,
        tables: Mapping[str, str],
        committed_at: str,
    ) -> None:
        """After the commit that carries `state` is visible where readers look: emit it, then
        record it in the platform's state store."""
        if state is not None and state != self._emitted_state:
            self.emit_state(state)
            self._emitted_state = state
        self.state_store.write(
            self.settings.tenant,
            self.settings.pipeline_id,
            {
                "tenant": self.settings.tenant,
                "pipeline_id": self.settings.pipeline_id,
                "run_id": self.settings.run_id,
                "batch_id": batch_id,
                "commit": {
                    "catalog_type": self.settings.catalog_type,
                    "catalog_name": self.catalog.name,
                    "commit_id": commit_id,
                    "tables": dict(tables),
                },
                "state": state,
                "committed_at": committed_at,
            },
        )

    @property
    def committed_state(self) -> Mapping[str, Any] | None:
        return self._committed_state

    def _commit_with_retries(
        self, touched: list[IcebergSink], checkpoint: Checkpoint, snapshot_properties: Mapping[str, str]
    ) -> _Committed:
        attempt = 0
        while True:
            changes = [sink.table_change(snapshot_properties) for sink in touched]
            try:
                commit = self.catalog.commit_checkpoint(changes, checkpoint)
            except CommitOutcomeUnknownError:
                for sink in touched:
                    sink.in_doubt = True  # it may have landed: its files must stay
                raise
            except CommitConflictError as conflict:
                attempt += 1
                if attempt > self.settings.commit_retries:
                    msg = (
                        f"batch {checkpoint.batch_id} still conflicts after {attempt - 1} retries: {conflict}"
                    )
                    raise CommitConflictError(msg) from conflict
                delay = min(_BACKOFF_MAX_SECONDS, _BACKOFF_BASE_SECONDS * 2 ** (attempt - 1))
                self.logger.warning("commit conflict (%s); re-applying in %.1fs", conflict, delay)
                time.sleep(delay)
                for sink in touched:
                    sink.prepare_retry()
                continue
            snapshot_ids = {
                change.identifier: change.metadata.current_snapshot_id
                for change in changes
                if change.metadata.current_snapshot_id is not None
            }
            return _Committed(commit, snapshot_ids)


def _table_summary(sink: IcebergSink) -> dict[str, Any]:
    summary: dict[str, Any] = {"rows": sink.staged_rows}
    if sink.contract is not None:
        summary["contract"] = sink.contract.contract.ref
    return summary


class _Committed:
    def __init__(self, commit: CommitResult, snapshot_ids: Mapping[Any, int | None]) -> None:
        self.commit = commit
        self.snapshot_ids = snapshot_ids
