"""A run's structured log: one JSON object per line, secrets redacted before anything is written.

Every event is `{"ts", "level", "tenant", "job", "run_id", "event", ...fields}` in
`<logs>/<tenant>/<job>/<run_id>.jsonl`; with `console=True` it is also rendered for people on stderr.
The redaction processor runs on the whole event (every string, nested values, secret-named keys,
formatted tracebacks) before either output sees it. Output of the child processes comes in through
`pipe` one line at a time, from the threads that read their stdout and stderr.
"""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Final, TextIO

import structlog
from structlog.typing import EventDict, FilteringBoundLogger, WrappedLogger

from ingestion.redact import Redactor

RESERVED_KEYS: Final = ("ts", "level", "tenant", "job", "run_id", "event")
OUTPUT_EVENT: Final = "output"
# A child's line longer than this is cut (after redaction, so no half-masked secret is left).
MAX_LINE_CHARS: Final = 65_536
_LEVELS: Final = ("debug", "info", "warning", "error", "critical")
_LEVEL_ALIASES: Final = {"warn": "warning", "fatal": "critical", "exception": "error"}
# Keys that carry the message of a JSON log line written by Meltano (structlog), singer-sdk or logging.
_MESSAGE_KEYS: Final = ("event", "message", "msg")
_LEVEL_KEYS: Final = ("level", "levelname", "severity")


class _Sink:
    """structlog's wrapped logger: receives the rendered event under a lock, writes file and console."""

    def __init__(self, path: Path, console: TextIO | None) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file: IO[str] = path.open("a", encoding="utf-8", errors="backslashreplace")
        self._console = console
        self._renderer = structlog.dev.ConsoleRenderer(
            colors=bool(console is not None and console.isatty()),
            exception_formatter=structlog.dev.plain_traceback,
            timestamp_key="ts",
        )
        self._lock = threading.Lock()
        self.closed = False

    def write(self, event: dict[str, Any]) -> None:
        line = json.dumps(event, ensure_ascii=False, default=str) + "\n"
        with self._lock:
            if self.closed:
                msg = f"the run log {self._file.name} is closed; log before RunLog.close()"
                raise ValueError(msg)
            self._file.write(line)
            self._file.flush()  # a crash keeps every line logged so far
            if self._console is not None:
                self._console.write(self._renderer(None, event["level"], dict(event)) + "\n")
                self._console.flush()

    def close(self) -> None:
        with self._lock:
            if not self.closed:
                self.closed = True
                self._file.close()

    # structlog calls the method named after the level with what the last processor returned.
    def _write(self, event: dict[str, Any]) -> None:
        self.write(event)

    debug = info = warning = error = critical = exception = msg = _write


class RunLog:
    """The structured log of one run of one job of one tenant."""

    def __init__(
        self,
        path: Path,
        *,
        tenant: str,
        job: str,
        run_id: str,
        redactor: Redactor,
        console: bool,
        console_stream: TextIO | None = None,
    ) -> None:
        self.path = path
        self.tenant = tenant
        self.job = job
        self.run_id = run_id
        self.redactor = redactor
        self._sink = _Sink(path, (console_stream or sys.stderr) if console else None)
        self._logger: FilteringBoundLogger = structlog.wrap_logger(
            self._sink,
            wrapper_class=structlog.make_filtering_bound_logger(0),
            context_class=dict,
            cache_logger_on_first_use=False,
            processors=[
                structlog.processors.add_log_level,
                structlog.processors.TimeStamper(fmt="iso", utc=True, key="ts"),
                structlog.processors.format_exc_info,  # tracebacks become text, so they get redacted
                self._redact,
                self._order,
            ],
        )

    def debug(self, event: str, **fields: Any) -> None:
        self._logger.debug(event, **_checked(fields))

    def info(self, event: str, **fields: Any) -> None:
        self._logger.info(event, **_checked(fields))

    def warning(self, event: str, **fields: Any) -> None:
        self._logger.warning(event, **_checked(fields))

    def error(self, event: str, **fields: Any) -> None:
        self._logger.error(event, **_checked(fields))

    def exception(self, event: str, **fields: Any) -> None:
        """An error event with the traceback of the exception being handled (redacted like the rest)."""
        self._logger.exception(event, **_checked(fields))

    def log(self, level: str, event: str, **fields: Any) -> None:
        getattr(self._logger, _level(level))(event, **_checked(fields))

    def pipe(self, source: str, line: str) -> None:
        """Log one line a child process wrote (`source`: tap, target, meltano…) as an `output` event.

        A JSON object line (Meltano's and singer-sdk's JSON logs) keeps its fields under `fields` and
        its level; `line` is then its message. Everything is redacted like any other event.
        """
        line = line.rstrip("\r\n")
        level, text, fields = "info", line, None
        if line.startswith("{"):
            try:
                parsed = json.loads(line)
            except ValueError:
                parsed = None
            if isinstance(parsed, dict):
                message_key = next((k for k in _MESSAGE_KEYS if isinstance(parsed.get(k), str)), None)
                level_key = next((k for k in _LEVEL_KEYS if isinstance(parsed.get(k), str)), None)
                if message_key is not None:
                    text = parsed[message_key]
                if level_key is not None:
                    level = _level(parsed[level_key], default="info")
                fields = {k: v for k, v in parsed.items() if k not in {message_key, level_key}}
        text = _truncate(self.redactor.text(text))
        extra: dict[str, Any] = {} if fields is None else {"fields": fields}
        getattr(self._logger, level)(OUTPUT_EVENT, source=source, line=text, **extra)

    def close(self) -> None:
        """Close the file; log nothing after this (join the threads that pipe output first)."""
        self._sink.close()

    def __enter__(self) -> RunLog:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _redact(self, _logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
        redacted: dict[str, Any] = self.redactor.obj(event_dict)
        return redacted

    def _order(self, _logger: WrappedLogger, _method: str, event_dict: EventDict) -> Mapping[str, Any]:
        # The run's own ids come last from the RunLog, so no field can claim another tenant or run.
        event = {
            "ts": event_dict.pop("ts"),
            "level": event_dict.pop("level"),
            "tenant": self.tenant,
            "job": self.job,
            "run_id": self.run_id,
            "event": event_dict.pop("event"),
        }
        event.update(event_dict)
        return {"event": event}


def _checked(fields: dict[str, Any]) -> dict[str, Any]:
    clash = sorted(set(fields) & set(RESERVED_KEYS))
    if clash:
        msg = f"log fields {clash} are set by the run log itself; name them differently"
        raise ValueError(msg)
    return fields


def _level(name: str, default: str | None = None) -> str:
    level = name.lower()
    level = _LEVEL_ALIASES.get(level, level)
    if level in _LEVELS:
        return level
    if default is not None:
        return default
    msg = f"log level {name!r} is not one of {', '.join(_LEVELS)}"
    raise ValueError(msg)


def _truncate(text: str) -> str:
    if len(text) <= MAX_LINE_CHARS:
        return text
    return f"{text[:MAX_LINE_CHARS]}… ({len(text) - MAX_LINE_CHARS} more characters)"
