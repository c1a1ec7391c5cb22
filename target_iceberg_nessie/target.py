"""target-iceberg-nessie: Singer messages in, Iceberg tables out, one atomic commit per checkpoint.

The SDK gives the CLI (`--about`, `--config`, `--input`), config validation and logging. The line
loop is ours: per record it only routes the raw line to its stream's buffer (DESIGN.md, columnar
record path); decoding, checks and Parquet writing happen per batch in `sink.py`.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from types import FrameType
from typing import IO, Any, ClassVar, Final
from urllib.parse import urlsplit

from singer_sdk import Target
from singer_sdk.helpers.capabilities import CapabilitiesEnum, PluginCapabilities

from target_iceberg_nessie.catalogs import CheckpointCatalog, open_catalog
from target_iceberg_nessie.contracts import ContractError, ContractSet, ObjectContract
from target_iceberg_nessie.contracts.enforce import StreamContract
from target_iceberg_nessie.coordinator import CommitCoordinator
from target_iceberg_nessie.errors import (
    BadInputError,
    ContractViolation,
    FatalError,
    RetriableError,
    RowsQuarantined,
    TargetError,
)
from target_iceberg_nessie.publish import WapPublisher
from target_iceberg_nessie.reader import SingerLineRouter
from target_iceberg_nessie.settings import CONFIG_SCHEMA, TargetSettings
from target_iceberg_nessie.sink import IcebergSink
from target_iceberg_nessie.staging import StagingThread
from target_iceberg_nessie.state_store import StateStore, meltano_state_id
from target_iceberg_nessie.storage import storage_errors

REPORT_ENV: Final = "INGEST_RUN_REPORT"  # where a run's outcome is written as JSON (the platform runner)


class TargetIcebergNessie(Target):
    """Singer target that writes Apache Iceberg tables, committing each checkpoint atomically."""

    name = "target-iceberg-nessie"
    package_name = "ingestion-platform"  # the distribution that ships this target
    config_jsonschema = CONFIG_SCHEMA
    sink_class = IcebergSink
    capabilities: ClassVar[list[CapabilitiesEnum]] = [
        PluginCapabilities.ABOUT,
        PluginCapabilities.STRUCTURED_LOGGING,
    ]

    @classmethod
    def append_builtin_config(cls, config_jsonschema: dict[str, Any]) -> None:
        """Only the built-ins of the declared capabilities.

        The SDK's Target adds its sinks' settings (load_method, add_record_metadata,
        batch_size_rows); this target has other sinks, so advertising them would be a lie.
        """
        super(Target, cls).append_builtin_config(config_jsonschema)

    def __init__(self, **kwargs: Any) -> None:
        # pyiceberg logs "Defaulting to PyArrow FileIO" at INFO for every file IO it builds.
        logging.getLogger("pyiceberg.io").setLevel(logging.WARNING)
        kwargs.setdefault("setup_mapper", False)  # stream maps would put Python back on every record
        super().__init__(**kwargs)
        self.settings = TargetSettings.from_config(self.config)
        self.contracts = ContractSet.load(self.settings.contracts) if self.settings.contracts else None
        if self.settings.contract_mode == "strict" and self.contracts is None:
            msg = "contract_mode strict needs `contracts` (the job's contract files or folders)"
            raise ContractError(msg)
        self._catalog: CheckpointCatalog | None = None
        self._coordinator: CommitCoordinator | None = None
        self._publisher: WapPublisher | None = None
        self._staging = StagingThread()
        self._started_at = time.monotonic()  # the checkpoint interval counts from the start
        self.sinks: dict[str, IcebergSink] = {}
        self._latest_state: Mapping[str, Any] | None = None  # type: ignore[assignment] # the SDK's is a dict too
        self.router = SingerLineRouter(self)
        self.message_reader = self.router
        self._warned_types: set[str] = set()
        self._reported = False
        _RUNNING[:] = [self]  # the newest target of this process reports

    # -- wiring ------------------------------------------------------------------------------

    @property
    def catalog(self) -> CheckpointCatalog:
        if self._catalog is None:
            nessie = self.settings.catalog_type == "nessie"
            branch, branch_from = self.settings.branch, self.settings.branch_from
            if self.settings.publish == "wap":
                self._publisher = WapPublisher(self.settings, self.logger)
                branch, branch_from = self._publisher.start(), None
            self._catalog = open_catalog(
                self.settings.catalog_type,
                name=self.settings.catalog_name,
                uri=self.settings.nessie_uri if nessie else self.settings.catalog_uri,
                warehouse=self.settings.warehouse,
                create=True,
                branch=branch,
                branch_from=branch_from,
                token=self.settings.nessie_token,
                timeout=self.settings.nessie_timeout_seconds,
                io_properties=self.settings.io_properties,
            )
        return self._catalog

    def _bind_meltano_state_id(self, store: StateStore) -> None:
        """Under Meltano: record which pipeline and catalog this extract-load pair's state id
        commits to, before the first commit, so the `ingest` state backend can serve the state the
        catalog holds even if this process dies between a commit and Meltano saving its STATE."""
        state_id = meltano_state_id(os.environ)
        if state_id is None:
            return
        settings = self.settings
        catalog_uri: str | None = settings.catalog_uri
        if settings.catalog_type != "sql" or urlsplit(settings.catalog_uri).password:
            catalog_uri = None  # secrets stay out of files; the backend reads the loader's env
        store.bind(
            state_id,
            {
                "state_id": state_id,
                "tenant": settings.tenant,
                "pipeline_id": settings.pipeline_id,
                "catalog_type": settings.catalog_type,
                "catalog_name": settings.catalog_name,
                "catalog_uri": catalog_uri,
                "warehouse": settings.warehouse,
                "nessie_uri": settings.nessie_uri or None,
                "branch": settings.branch,
            },
        )

    @property
    def coordinator(self) -> CommitCoordinator:
        if self._coordinator is None:
            store = StateStore(self.settings.state_dir)
            self._bind_meltano_state_id(store)
            self._coordinator = CommitCoordinator(
                settings=self.settings,
                catalog=self.catalog,
                state_store=store,
                emit_state=self._emit_state,
                logger=self.logger,
                started_at=self._started_at,
                hold_state=self.settings.publish == "wap",
            )
        return self._coordinator

    def _emit_state(self, state: Mapping[str, Any]) -> None:
        sys.stdout.write(json.dumps(state) + "\n")
        sys.stdout.flush()

    # -- messages (called by the line router, reader.py) -------------------------------------

    def _process_record_message(self, message_dict: dict[str, Any]) -> None:
        """RECORD lines are routed as bytes by `SingerLineRouter`; never decoded to a dict."""
        msg = "RECORD messages are routed by the line router, not decoded"
        raise NotImplementedError(msg)

    def _process_schema_message(self, message_dict: dict[str, Any]) -> None:
        self._on_schema(message_dict, self.router.line_number)

    def _process_state_message(self, message_dict: dict[str, Any]) -> None:
        self._on_state(message_dict, self.router.line_number)

    def _process_activate_version_message(self, message_dict: dict[str, Any]) -> None:
        self._warn_once(
            "ACTIVATE_VERSION", "ACTIVATE_VERSION messages are ignored (full-table versions unsupported)"
        )

    def _process_batch_message(self, message_dict: dict[str, Any]) -> None:
        raise BadInputError(
            "BATCH messages are not supported; turn off the tap's batch mode", line=self.router.line_number
        )

    def on_unknown(self, kind: str, line: int) -> None:
        self._warn_once(kind, f"unknown message type {kind!r} ignored (Singer spec)", line)

    def on_microbatch(self) -> None:
        self._checkpoint("microbatch records")

    def on_tick(self) -> None:
        self._check_time()

    def on_failure(self) -> None:
        self._discard()

    def _warn_once(self, kind: str, message: str, number: int | None = None) -> None:
        if kind not in self._warned_types:
            self._warned_types.add(kind)
            self.logger.warning("line %s: %s", number, message) if number else self.logger.warning(message)

    def _on_schema(self, message: Mapping[str, Any], number: int) -> None:
        stream = message.get("stream")
        schema = message.get("schema")
        if not isinstance(stream, str) or not stream:
            raise BadInputError("SCHEMA message without a 'stream' name", line=number)
        if not isinstance(schema, Mapping) or not isinstance(schema.get("properties"), Mapping):
            raise BadInputError(
                "SCHEMA message needs a JSON Schema object with 'properties' (the stream's columns); "
                "the tap must describe its records",
                line=number,
                stream=stream,
            )
        keys = message.get("key_properties")
        if keys is not None and (not isinstance(keys, list) or not all(isinstance(k, str) for k in keys)):
            raise BadInputError("'key_properties' must be a list of names", line=number, stream=stream)
        sink = self.sinks.get(stream)
        if sink is None:
            sink = self.sink_class(
                stream, self.settings, self.catalog, self._staging, self._contract_for(stream)
            )
            if sink.markdown.raw_file is not None:  # its documents' paths carry the batch id
                sink.pending_batch_id = self.coordinator.next_batch_id
            self.sinks[stream] = sink
        sink.set_schema(schema, keys)
        if sink.discarded:
            self._warn_once(
                f"discarded:{stream}",
                f"stream '{stream}': properties {sink.discarded} are not in its contract and are not loaded "
                "(schemaEvolution discard)",
                number,
            )

    def _check_source(self, stream: str, contract: ObjectContract) -> None:
        """Strict mode: the contract must be made for this job's source type (`source.object` names
        the object in the source, a table or file, which is not the stream's name)."""
        if self.settings.contract_mode != "strict":
            return
        wanted = self.settings.source_type
        if wanted and contract.source_type != wanted:
            msg = (
                f"stream '{stream}': contract {contract.ref} ({contract.file}) is for source type "
                f"{contract.source_type!r}, this job's source is {wanted!r}; use the contract of this source"
            )
            raise ContractError(msg)

    def _contract_for(self, stream: str) -> StreamContract | None:
        found = self.contracts.for_stream(stream) if self.contracts is not None else None
        if found is None:
            if self.settings.contract_mode == "strict":
                paths = ", ".join(str(p) for p in self.settings.contracts) or "(no `contracts` configured)"
                msg = (
                    f"stream '{stream}' has no data contract in {paths}, and contract_mode is strict: "
                    f"add one (a schema object named '{stream}'), deselect the stream, or set "
                    "contract_mode lenient"
                )
                raise ContractError(msg)
            if self.contracts is not None:
                self._warn_once(
                    f"nocontract:{stream}",
                    f"stream '{stream}' has no data contract; loaded as the tap describes it",
                )
            return None
        self._check_source(stream, found)
        return StreamContract(
            stream,
            found,
            level=self.settings.contract_enforcement or found.enforcement,
            evolution=self.settings.contract_schema_evolution or found.schema_evolution,
        )

    def _on_state(self, message: Mapping[str, Any], number: int) -> None:
        if "value" not in message:
            raise BadInputError("STATE message without a 'value'", line=number)
        self._latest_state = message["value"]
        since_last = self.coordinator.seconds_since_checkpoint()
        if since_last >= self.settings.checkpoint_interval_seconds:
            self._checkpoint("STATE")

    def _check_time(self) -> None:
        now = time.monotonic()
        for sink in self.sinks.values():
            if sink.lines and not sink.first_buffered_at:
                sink.first_buffered_at = now
            elif sink.is_old(now):
                sink.flush()
                sink.first_buffered_at = 0.0
        seconds = self.settings.microbatch_seconds
        if (
            seconds
            and self.router.since_checkpoint
            and self.coordinator.seconds_since_checkpoint() >= seconds
        ):
            self._checkpoint("microbatch seconds")

    def _checkpoint(self, reason: str) -> None:
        self.coordinator.checkpoint(self.sinks.values(), self._latest_state, reason)
        self.router.since_checkpoint = 0

    def _discard(self) -> None:
        for sink in self.sinks.values():
            sink.discard()

    # -- end of input ------------------------------------------------------------------------

    def process_endofpipe(self) -> None:
        try:
            with storage_errors(self.settings.warehouse, self.settings.io_properties):
                self._check_run_rules()
                self._checkpoint("end of input")
                if self._publisher is not None or self.settings.publish == "wap":
                    self._publish()
        except TargetError:
            self._discard()
            raise
        finally:
            self.close()
        self._log_summary()
        quarantined = {
            sink.rejects.table_name: sink.contract.report.quarantined
            for sink in self.sinks.values()
            if sink.contract is not None and sink.rejects is not None and sink.contract.report.quarantined
        }
        if quarantined:
            listed = ", ".join(f"{n} in {table}" for table, n in quarantined.items())
            msg = f"rows that broke their data contracts were quarantined ({listed}); the rest committed"
            raise RowsQuarantined(msg)

    def _check_run_rules(self) -> None:
        """Run-level contract rules (rowCount) on what each stream received, before the last commit."""
        for sink in self.sinks.values():
            if sink.contract is None:
                continue
            failures = sink.contract.run_level_failures(sink.tally.records_read + len(sink.lines))
            sink.contract.report.run_level.extend(failures)
            if failures and sink.contract.level == "fail":
                ref = sink.contract.contract.ref
                msg = f"stream '{sink.stream}' breaks contract {ref}: {'; '.join(failures)}"
                raise ContractViolation(msg)
            for failure in failures:
                self.logger.warning("stream '%s': %s", sink.stream, failure)

    def _publish(self) -> None:
        """Write-audit-publish: audit the run branch, merge it, then release the final state."""
        coordinator = self.coordinator
        publisher = self._publisher
        assert publisher is not None, "the catalog of a wap run starts its publisher"
        published = publisher.publish(
            self.catalog,
            list(self.sinks.values()),
            last_batch=coordinator.last_batch,
            state_properties=coordinator.last_state_properties,
        )
        if coordinator.last_batch is not None and published.merged:
            tables = {
                member.table_name: location
                for sink in self.sinks.values()
                for member in sink.family
                if (location := member.committed_location) is not None
            }
            coordinator.release_state(
                coordinator.committed_state,
                batch_id=coordinator.last_batch[0],
                commit_id=published.commit_hash,
                tables=tables,
                committed_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            )
            coordinator.last_commit_id = published.commit_hash

    def close(self) -> None:
        """Stop the staging thread and release the catalog (also after an error)."""
        self._staging.close()
        if self._publisher is not None:
            self._publisher.close()
        if self._catalog is not None:
            self._catalog.close()
            self._catalog = None

    def summary(self) -> dict[str, Any]:
        """What the run did, per stream: the INGEST_SUMMARY log line and the run report."""
        coordinator = self._coordinator
        return {
            "pipeline_id": self.settings.pipeline_id,
            "run_id": self.settings.run_id,
            "commits": coordinator.commits if coordinator else 0,
            "last_commit_id": coordinator.last_commit_id if coordinator else None,
            "streams": {
                sink.stream: {
                    "table": sink.table_name,
                    "records": sink.tally.records_read,
                    "rows_committed": sink.tally.rows_committed,
                    "files": sink.tally.files_committed,
                    "bytes": sink.tally.bytes_committed,
                    "snapshots": sink.tally.snapshot_ids[-1:] and sink.tally.snapshot_ids,
                    "rows_replaced": sink.tally.rows_replaced,
                    "rejected": (
                        sink.contract.report.quarantined + sink.contract.report.dropped
                        if sink.contract is not None
                        else 0
                    ),
                    **(
                        {
                            "contract": sink.contract.contract.ref,
                            "enforcement": sink.contract.level,
                            "violations": sink.contract.report.to_json(),
                        }
                        if sink.contract is not None
                        else {}
                    ),
                }
                for sink in self.sinks.values()
            },
            "catalog_type": self.settings.catalog_type,
            "branch": self.settings.branch if self.settings.catalog_type == "nessie" else None,
            "warehouse": self.settings.warehouse,
        }

    def _log_summary(self) -> None:
        self.logger.info("INGEST_SUMMARY %s", json.dumps(self.summary(), separators=(",", ":")))

    def write_report(self, error: BaseException | None) -> None:
        """The run's outcome as JSON at $INGEST_RUN_REPORT (the platform runner reads it): the summary,
        and the error's class, exit code and message when the run failed. Written once, atomically."""
        location = os.environ.get(REPORT_ENV)
        if not location or self._reported:
            return
        self._reported = True
        report: dict[str, Any] = {"status": "success", **self.summary()}
        if isinstance(error, RowsQuarantined):
            report |= {"status": "partial", "exit_code": error.exit_code, "message": str(error)}
        elif error is not None:
            exit_code = error.exit_code if isinstance(error, TargetError) else 2
            report |= {
                "status": "failed",
                "exit_code": exit_code,
                "error": type(error).__name__,
                "retryable": isinstance(error, RetriableError),
                "message": str(error),
            }
        else:
            report["exit_code"] = 0
        path = Path(location)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps(report, default=str), encoding="utf-8")
        tmp.replace(path)

    def _handle_termination(self, signum: int, frame: FrameType | None) -> None:
        msg = f"terminated by signal {signum}; the last committed checkpoint stands, nothing else lands"
        raise FatalError(msg)

    @classmethod
    def invoke(  # type: ignore[override]
        cls,
        *,
        about: bool = False,
        about_format: str | None = None,
        config: Any = None,
        file_input: IO[str] | None = None,
    ) -> None:
        try:
            super().invoke(about=about, about_format=about_format, config=config, file_input=file_input)
            _report(None)
        except RowsQuarantined as partial:
            _report(partial)
            cls.logger.warning("%s", partial)
            sys.exit(partial.exit_code)
        except TargetError as error:
            _report(error)
            cls.logger.error("%s: %s", type(error).__name__, error)
            sys.exit(error.exit_code)
        except Exception as error:
            _report(error)
            raise


# The target of this process (one per process), so that `invoke` can report how it ended: the
# SDK's `listen` and `process_lines`, where a run ends, are final and cannot be wrapped.
_RUNNING: list[TargetIcebergNessie] = []


def _report(error: BaseException | None) -> None:
    if _RUNNING:
        _RUNNING[-1].write_report(error)
