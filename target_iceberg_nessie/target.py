"""target-iceberg-nessie: Singer messages in, Iceberg tables out, one atomic commit per checkpoint.

The SDK gives the CLI (`--about`, `--config`, `--input`), config validation and logging. The line
loop is ours: per record it only routes the raw line to its stream's buffer (DESIGN.md, columnar
record path); decoding, checks and Parquet writing happen per batch in `sink.py`.
"""

from __future__ import annotations

import io
import json
import sys
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from types import FrameType
from typing import IO, Any, ClassVar

import msgspec
import orjson
from singer_sdk import Target
from singer_sdk.helpers.capabilities import CapabilitiesEnum, PluginCapabilities

from target_iceberg_nessie.catalogs import CheckpointCatalog, open_catalog
from target_iceberg_nessie.coordinator import CommitCoordinator
from target_iceberg_nessie.errors import BadInputError, FatalError, TargetError
from target_iceberg_nessie.settings import CONFIG_SCHEMA, TargetSettings
from target_iceberg_nessie.sink import IcebergSink
from target_iceberg_nessie.state_store import StateStore

# Most taps (singer-sdk, singer-python) write "type" then "stream" first; such lines skip decoding.
_RECORD_PREFIX = b'{"type":"RECORD","stream":"'
_RECORD_PREFIX_SPACED = b'{"type": "RECORD", "stream": "'
_TIME_CHECK_EVERY = 4096


class _Envelope(msgspec.Struct):
    """What routing needs from a message; msgspec skips the rest without building objects."""

    type: str
    stream: str | None = None


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

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("setup_mapper", False)  # stream maps would put Python back on every record
        super().__init__(**kwargs)
        self.settings = TargetSettings.from_config(self.config)
        self._catalog: CheckpointCatalog | None = None
        self._coordinator: CommitCoordinator | None = None
        self.sinks: dict[str, IcebergSink] = {}
        self._sinks_by_raw_name: dict[bytes, IcebergSink] = {}
        self._envelope = msgspec.json.Decoder(_Envelope)
        self._line_number = 0
        self._latest_state: Mapping[str, Any] | None = None  # type: ignore[assignment] # the SDK's is a dict too
        self._records_seen = 0  # RECORD lines so far (synced from the line loop's local counter)
        self._records_counted = 0
        self._checkpoint_mark = 0  # _records_seen at the last checkpoint
        self._warned_types: set[str] = set()

    # -- wiring ------------------------------------------------------------------------------

    @property
    def catalog(self) -> CheckpointCatalog:
        if self._catalog is None:
            self._catalog = open_catalog(
                self.settings.catalog_type,
                name=self.settings.catalog_name,
                uri=self.settings.catalog_uri,
                warehouse=self.settings.warehouse,
            )
        return self._catalog

    @property
    def coordinator(self) -> CommitCoordinator:
        if self._coordinator is None:
            self._coordinator = CommitCoordinator(
                self.settings,
                self.catalog,
                StateStore(self.settings.state_dir),
                self._emit_state,
                self.logger,
            )
        return self._coordinator

    def _emit_state(self, state: Mapping[str, Any]) -> None:
        sys.stdout.write(json.dumps(state) + "\n")
        sys.stdout.flush()

    # -- the line loop -----------------------------------------------------------------------

    @staticmethod
    def _binary_lines(file_input: IO[str] | IO[bytes] | None) -> Iterable[bytes]:
        if file_input is None:
            return sys.stdin.buffer
        buffer = getattr(file_input, "buffer", None)
        if buffer is not None:
            return buffer  # type: ignore[no-any-return]
        if isinstance(file_input, io.TextIOBase | io.StringIO):
            return (line.encode() for line in file_input)
        return file_input  # type: ignore[return-value] # already binary

    def process_lines(self, file_input: IO[str] | None) -> Counter[str]:  # type: ignore[override]
        counts: Counter[str] = Counter()
        settings = self.settings
        max_records, max_bytes = settings.batch_max_records, settings.batch_max_bytes
        microbatch = settings.microbatch_records
        timed = settings.microbatch_seconds > 0 or settings.batch_max_age_seconds > 0
        by_raw_name = self._sinks_by_raw_name
        prefix_len, spaced_len = len(_RECORD_PREFIX), len(_RECORD_PREFIX_SPACED)
        number = self._line_number
        records = self._records_seen
        try:
            for raw in self._binary_lines(file_input):
                number += 1
                line = raw if raw.endswith(b"\n") else raw + b"\n"
                if line.startswith(_RECORD_PREFIX):
                    start = prefix_len
                elif line.startswith(_RECORD_PREFIX_SPACED):
                    start = spaced_len
                else:
                    start = 0
                sink = by_raw_name.get(line[start : line.find(b'"', start)]) if start else None
                if sink is None:
                    if line.isspace():
                        continue
                    self._records_seen = records
                    sink = self._route(line, number, counts)
                    if sink is None:
                        continue
                sink.lines.append(line)
                sink.numbers.append(number)
                sink.buffered_bytes += len(line)
                records += 1
                if len(sink.lines) >= max_records or sink.buffered_bytes >= max_bytes:
                    sink.flush()
                if microbatch and records - self._checkpoint_mark >= microbatch:
                    self._records_seen = records
                    self._checkpoint("microbatch records")
                if timed and not records % _TIME_CHECK_EVERY:
                    self._records_seen = records
                    self._check_time()
        except TargetError:
            self._discard()
            raise
        finally:
            self._line_number = number
            counts["RECORD"] += records - self._records_counted
            self._records_seen = self._records_counted = records
        return counts

    def _route(self, line: bytes, number: int, counts: Counter[str]) -> IcebergSink | None:
        """Everything but a fast-routed RECORD: returns the sink when the line is a RECORD."""
        try:
            envelope = self._envelope.decode(line)
        except msgspec.ValidationError as error:
            raise BadInputError(
                f"not a Singer message ({error}); every line must be a JSON object with a 'type'",
                line=number,
            ) from None
        except msgspec.DecodeError as error:
            raise BadInputError(f"malformed JSON ({error})", line=number) from None
        kind = envelope.type
        if kind == "RECORD":
            sink = self.sinks.get(envelope.stream or "")
            if sink is None:
                raise BadInputError(
                    "RECORD before its SCHEMA; the tap must send a SCHEMA message for a stream first",
                    line=number,
                    stream=envelope.stream,
                )
            return sink
        counts[kind] += 1
        if kind == "SCHEMA":
            self._on_schema(orjson.loads(line), number)
        elif kind == "STATE":
            self._on_state(orjson.loads(line), number)
        elif kind == "ACTIVATE_VERSION":
            self._warn_once(kind, "ACTIVATE_VERSION messages are ignored (full-table versions unsupported)")
        elif kind == "BATCH":
            raise BadInputError(
                "BATCH messages are not supported; turn off the tap's batch mode", line=number
            )
        else:
            self._warn_once(kind, f"unknown message type {kind!r} ignored (Singer spec)", number)
        return None

    def _warn_once(self, kind: str, message: str, number: int | None = None) -> None:
        if kind not in self._warned_types:
            self._warned_types.add(kind)
            self.logger.warning("line %s: %s", number, message) if number else self.logger.warning(message)

    def _on_schema(self, message: Mapping[str, Any], number: int) -> None:
        stream = message.get("stream")
        schema = message.get("schema")
        if not isinstance(stream, str) or not stream:
            raise BadInputError("SCHEMA message without a 'stream' name", line=number)
        if not isinstance(schema, Mapping) or not isinstance(schema.get("properties", {}), Mapping):
            raise BadInputError(
                "SCHEMA message needs a JSON Schema object with 'properties'", line=number, stream=stream
            )
        keys = message.get("key_properties")
        if keys is not None and (not isinstance(keys, list) or not all(isinstance(k, str) for k in keys)):
            raise BadInputError("'key_properties' must be a list of names", line=number, stream=stream)
        sink = self.sinks.get(stream)
        if sink is None:
            sink = self.sink_class(stream, self.settings, self.catalog)
            self.sinks[stream] = sink
            self._sinks_by_raw_name[json.dumps(stream)[1:-1].encode()] = sink
        sink.set_schema(schema, keys)

    def _on_state(self, message: Mapping[str, Any], number: int) -> None:
        if "value" not in message:
            raise BadInputError("STATE message without a 'value'", line=number)
        self._latest_state = message["value"]
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
        pending = self._records_seen > self._checkpoint_mark
        if seconds and pending and now - self.coordinator.last_checkpoint_at >= seconds:
            self._checkpoint("microbatch seconds")

    def _checkpoint(self, reason: str) -> None:
        self.coordinator.checkpoint(self.sinks.values(), self._latest_state, reason)
        self._checkpoint_mark = self._records_seen

    def _discard(self) -> None:
        for sink in self.sinks.values():
            sink.discard()

    # -- end of input ------------------------------------------------------------------------

    def process_endofpipe(self) -> None:
        try:
            self._checkpoint("end of input")
        except TargetError:
            self._discard()
            raise
        self._log_summary()
        if self._catalog is not None:
            self._catalog.close()

    def _log_summary(self) -> None:
        coordinator = self._coordinator
        summary = {
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
                }
                for sink in self.sinks.values()
            },
        }
        self.logger.info("INGEST_SUMMARY %s", json.dumps(summary, separators=(",", ":")))

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
        except TargetError as error:
            cls.logger.error("%s: %s", type(error).__name__, error)  # noqa: TRY400 - the message is the report
            sys.exit(error.exit_code)
