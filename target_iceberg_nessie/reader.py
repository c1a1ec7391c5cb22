"""The line loop: route each Singer line to its stream without decoding its record.

This is the SDK's message-reader extension point (`Target.message_reader_class`). Per RECORD line it
does a prefix check, a dict lookup and three list appends; every other message is decoded and
handed to the target's callbacks, as the SDK's own reader does.
"""

from __future__ import annotations

import io
import sys
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from typing import IO, Any, Protocol

import msgspec
import orjson
from singer_sdk.singerlib.encoding import GenericSingerReader

from target_iceberg_nessie.errors import BadInputError, TargetError
from target_iceberg_nessie.settings import TargetSettings
from target_iceberg_nessie.sink import IcebergSink
from target_iceberg_nessie.storage import storage_error

# Most taps (singer-sdk, singer-python) write "type" then "stream" first; such lines skip decoding.
_RECORD_PREFIX = b'{"type":"RECORD","stream":"'
_RECORD_PREFIX_SPACED = b'{"type": "RECORD", "stream": "'
_TICK_EVERY = 256  # records between time checks (batch age, microbatch seconds); also at every non-RECORD


class _Envelope(msgspec.Struct):
    """What routing needs from a message; msgspec skips the rest without building objects."""

    type: str
    stream: str | None = None


class RecordRouting(Protocol):
    """What the router needs from the target."""

    settings: TargetSettings
    sinks: dict[str, IcebergSink]

    def on_microbatch(self) -> None:
        """`microbatch_records` records arrived since the last checkpoint."""

    def on_tick(self) -> None:
        """Every few thousand records: time-based limits."""

    def on_unknown(self, kind: str, line: int) -> None:
        """A message type the Singer spec says to ignore."""

    def on_failure(self) -> None:
        """The run stops with an error: the open checkpoint's work is discarded."""


def binary_lines(file_input: IO[str] | IO[bytes] | None) -> Iterable[bytes]:
    if file_input is None:
        return sys.stdin.buffer
    buffer = getattr(file_input, "buffer", None)
    if isinstance(buffer, io.BufferedIOBase):
        return buffer
    if isinstance(file_input, io.TextIOBase):
        return (line.encode() for line in file_input)
    return file_input  # type: ignore[return-value] # neither text nor wrapped: already binary


class SingerLineRouter(GenericSingerReader[bytes]):
    """Reads Singer lines as bytes; RECORD lines go straight to their stream's buffer."""

    def __init__(self, routing: RecordRouting) -> None:
        super().__init__()
        self.routing = routing
        self.line_number = 0  # of the message being handled: errors name it
        self.records = 0  # RECORD lines so far
        self.since_checkpoint = 0  # RECORD lines since the last checkpoint (the target resets it)
        self._by_raw_name: dict[bytes, IcebergSink] = {}
        self._envelope = msgspec.json.Decoder(_Envelope)

    @property
    def default_input(self) -> IO[bytes]:
        return sys.stdin.buffer

    def deserialize_json(self, line: bytes) -> dict[str, Any]:
        decoded: dict[str, Any] = orjson.loads(line)
        return decoded

    def process_lines(  # noqa: PLR0912, PLR0915 - the hot loop is inlined on purpose: no call per record
        self, file_input: IO[bytes] | None, callbacks: Mapping[str, Callable[[dict[str, Any]], None]]
    ) -> Counter[str]:
        counts: Counter[str] = Counter()
        settings = self.routing.settings
        max_records, max_bytes = settings.batch_max_records, settings.batch_max_bytes
        microbatch = settings.microbatch_records
        timed = settings.microbatch_seconds > 0 or settings.batch_max_age_seconds > 0
        by_raw_name = self._by_raw_name
        prefix_len, spaced_len = len(_RECORD_PREFIX), len(_RECORD_PREFIX_SPACED)
        number, records = self.line_number, self.records
        records_before = records
        since = self.since_checkpoint
        try:
            for raw in binary_lines(file_input):
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
                    self.line_number, self.records, self.since_checkpoint = number, records, since
                    sink = self._route(line, number, counts, callbacks)
                    since = self.since_checkpoint
                    if sink is None:
                        continue
                sink.lines.append(line)
                sink.numbers.append(number)
                sink.buffered_bytes += len(line)
                records += 1
                since += 1
                if len(sink.lines) >= max_records or sink.buffered_bytes >= max_bytes:
                    sink.flush()
                if (microbatch and since >= microbatch) or (timed and not records % _TICK_EVERY):
                    self.line_number, self.records, self.since_checkpoint = number, records, since
                    if microbatch and since >= microbatch:
                        self.routing.on_microbatch()
                    if timed:
                        self.routing.on_tick()
                    since = self.since_checkpoint
        except TargetError:
            self.routing.on_failure()
            raise
        except OSError as error:  # the warehouse's store failed while a batch was staged
            translated = storage_error(error, settings.warehouse, settings.io_properties)
            self.routing.on_failure()
            if translated is None:
                raise
            raise translated from error
        finally:
            counts["RECORD"] += records - records_before
            self.line_number, self.records, self.since_checkpoint = number, records, since
        return counts

    def _route(
        self,
        line: bytes,
        number: int,
        counts: Counter[str],
        callbacks: Mapping[str, Callable[[dict[str, Any]], None]],
    ) -> IcebergSink | None:
        """Everything but a fast-routed RECORD; returns the sink when the line is a RECORD."""
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
            stream = envelope.stream or ""
            sink = self.routing.sinks.get(stream)
            if sink is None:
                raise BadInputError(
                    "RECORD before its SCHEMA; the tap must send a SCHEMA message for a stream first",
                    line=number,
                    stream=envelope.stream,
                )
            return sink
        counts[kind] += 1
        callback = callbacks.get(kind)
        if callback is None:
            self.routing.on_unknown(kind, number)
            return None
        callback(orjson.loads(line))
        self.routing.on_tick()  # slow taps send few records: time limits are also checked here
        if kind == "SCHEMA":
            sink = self.routing.sinks.get(envelope.stream or "")
            if sink is not None:  # later RECORDs of the stream take the fast path
                self._by_raw_name[orjson.dumps(sink.stream)[1:-1]] = sink
        return None
