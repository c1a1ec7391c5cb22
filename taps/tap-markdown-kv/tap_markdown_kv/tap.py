"""tap-markdown-kv: Markdown-KV files from local folders, one stream per configured entry.

Incremental by file: the replication key `_sdc_modified_at` is the file's modification time, files
are read oldest first, and a file not newer than the stream's bookmark is skipped; a changed file is
read again whole (so its records arrive again: load with upsert by key to keep one copy).
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, ClassVar, Final

from singer_sdk import Stream, Tap

from tap_markdown_kv.infer import infer_properties

try:
    from target_iceberg_nessie.markdown_kv import MarkdownKVError, parse_document
except ImportError as missing:  # pragma: no cover - an installation error, named with its fix
    raise ImportError(
        "tap-markdown-kv reads files with the parser of the ingestion repository "
        "(target_iceberg_nessie.markdown_kv): install the repository next to the tap, e.g. "
        "`pip install -e taps/tap-markdown-kv -e . -c requirements/lock.txt` from its root"
    ) from missing

SOURCE_FILE: Final = "_sdc_source_file"
RECORD_INDEX: Final = "_sdc_record_index"
MODIFIED_AT: Final = "_sdc_modified_at"
DEFAULT_GLOBS: Final = ("**/*.md", "**/*.mdkv")
_EPOCH: Final = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)

_STREAM_ENTRY: Final[dict[str, Any]] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["name", "path"],
    "properties": {
        "name": {"type": "string", "minLength": 1, "description": "Stream name (the table name)."},
        "path": {"type": "string", "minLength": 1, "description": "Local folder holding the files."},
        "glob": {
            "description": "Glob pattern(s) under `path`; default **/*.md and **/*.mdkv.",
            "anyOf": [
                {"type": "string", "minLength": 1},
                {"type": "array", "minItems": 1, "items": {"type": "string", "minLength": 1}},
            ],
        },
        "key_properties": {"type": "array", "items": {"type": "string"}, "default": []},
        "schema": {
            "type": "object",
            "description": "JSON Schema of the records (with `properties`); unset: inferred from the files.",
        },
        "title_property": {
            "type": "string",
            "minLength": 1,
            "description": "Property that receives each record's heading text (its title).",
        },
    },
}


class TapMarkdownKVError(Exception):
    """A stream's configuration or files cannot be used; the message names the stream and the fix."""


class MarkdownKVStream(Stream):
    """The records of every matching file of one folder, oldest file first."""

    replication_key = MODIFIED_AT
    is_sorted = True  # files are read by modification time, so a stopped run resumes from its bookmark

    def __init__(self, tap: Tap, entry: Mapping[str, Any]) -> None:
        self.entry = entry
        self.stream_name = str(entry["name"])  # the SDK sets `name` only once the schema is known
        self.root = _folder(entry)
        self.title_property: str | None = entry.get("title_property")
        self.reserved: set[str] = {SOURCE_FILE, RECORD_INDEX, MODIFIED_AT}
        if self.title_property is not None:
            self.reserved.add(self.title_property)
        super().__init__(tap, schema=self._declared_or_inferred_schema(), name=self.stream_name)
        self.primary_keys = list(entry.get("key_properties") or [])

    def _declared_or_inferred_schema(self) -> dict[str, Any]:
        declared = self.entry.get("schema")
        if declared is not None:
            if not isinstance(declared.get("properties"), Mapping):
                raise TapMarkdownKVError(
                    f"stream '{self.stream_name}': `schema` must be a JSON Schema object with `properties`"
                )
            properties = dict(declared["properties"])
        else:
            properties = infer_properties(record for _, _, record in self._records(self._files()))
        properties[SOURCE_FILE] = {"type": ["string"]}
        properties[RECORD_INDEX] = {"type": ["integer"]}
        properties[MODIFIED_AT] = {"type": ["string"], "format": "date-time"}
        return {"type": "object", "properties": properties}

    def _files(self) -> list[tuple[datetime.datetime, Path]]:
        """Matching files, oldest first (then by path), with their modification times in UTC."""
        patterns = self.entry.get("glob") or DEFAULT_GLOBS
        found = {
            p
            for pattern in ([patterns] if isinstance(patterns, str) else patterns)
            for p in self.root.glob(pattern)
        }
        files = [(_modified_at(path), path) for path in found if path.is_file()]
        return sorted(files)

    def _records(
        self, files: Iterable[tuple[datetime.datetime, Path]]
    ) -> Iterator[tuple[datetime.datetime, Path, dict[str, Any]]]:
        for modified, path in files:
            try:
                document = parse_document(path.read_text(encoding="utf-8"), source=str(path))
            except UnicodeDecodeError as error:
                where = f"stream '{self.stream_name}': {path}"
                raise TapMarkdownKVError(
                    f"{where} is not UTF-8 text ({error.reason} at byte {error.start}); save it as UTF-8"
                ) from error
            except MarkdownKVError as error:
                raise TapMarkdownKVError(f"stream '{self.stream_name}': {error}") from error
            for index, record in enumerate(document.records):
                data = dict(record.data)
                reserved = self.reserved & data.keys()
                if reserved:
                    where = f"stream '{self.stream_name}': {path}, line {record.line}"
                    raise TapMarkdownKVError(
                        f"{where}: key {sorted(reserved)[0]!r} is set by the tap; rename it in the file "
                        "(or choose another title_property)"
                    )
                if self.title_property is not None:
                    data[self.title_property] = record.title
                data[SOURCE_FILE] = str(path)
                data[RECORD_INDEX] = index
                yield modified, path, data

    def get_records(self, context: Mapping[str, Any] | None) -> Iterable[dict[str, Any]]:
        bookmark = self.get_starting_timestamp(context)
        files = [(m, p) for m, p in self._files() if bookmark is None or m > bookmark]
        self.logger.info("%s: %d file(s) newer than the bookmark %s", self.name, len(files), bookmark)
        for modified, _, data in self._records(files):
            data[MODIFIED_AT] = modified.isoformat(timespec="microseconds")
            yield data


class TapMarkdownKV(Tap):
    """Markdown-KV files from local folders."""

    name = "tap-markdown-kv"
    config_jsonschema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "required": ["streams"],
        "properties": {
            "streams": {
                "type": "array",
                "minItems": 1,
                "description": "One stream per entry.",
                "items": _STREAM_ENTRY,
            },
        },
    }

    def discover_streams(self) -> list[Stream]:
        entries: list[Mapping[str, Any]] = list(self.config.get("streams") or [])
        names = [str(entry["name"]) for entry in entries]
        twice = sorted({name for name in names if names.count(name) > 1})
        if twice:
            raise TapMarkdownKVError(f"stream names must be unique; given more than once: {', '.join(twice)}")
        return [MarkdownKVStream(self, entry) for entry in entries]


def _folder(entry: Mapping[str, Any]) -> Path:
    raw = str(entry["path"])
    if "://" in raw and not raw.startswith("file://"):
        raise TapMarkdownKVError(
            f"stream '{entry['name']}': path {raw!r}: only local folders are read (a path or file:// URI)"
        )
    folder = Path(raw.removeprefix("file://")).expanduser().resolve()
    if not folder.is_dir():
        raise TapMarkdownKVError(f"stream '{entry['name']}': path {raw!r} is not a folder")
    return folder


def _modified_at(path: Path) -> datetime.datetime:
    """The file's modification time in UTC, truncated to whole microseconds (what a bookmark holds)."""
    return _EPOCH + datetime.timedelta(microseconds=path.stat().st_mtime_ns // 1000)


if __name__ == "__main__":
    TapMarkdownKV.cli()
