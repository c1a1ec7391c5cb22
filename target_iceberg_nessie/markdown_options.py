"""The `markdown_kv` setting: which streams the loader also stores as Markdown-KV, and how.

Three patterns, any combination per stream (docs/target.md, "Markdown-KV storage"):

* `string`: a STRING column holding each row rendered as one Markdown-KV record;
* `raw_file`: `.md` / `.mdkv` documents in the warehouse's object storage, listed by the commit;
* `structured`: a text column holding Markdown-KV documents, parsed into `<stream>__kv` (one row
  per key-value) and/or `<stream>__doc` (one row per document, sections as structs).

The setting is `{"default": {...}, "streams": {"<stream>": {...} | null}}`; a stream's entry
replaces the default's patterns one by one (`"string": false` turns one off, `null` all of them).
Errors name the setting path and the fix.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from target_iceberg_nessie.errors import ConfigError

SETTING: Final = "markdown_kv"
DEFAULT_COLUMN: Final = "_markdown_kv"
DEFAULT_PATH: Final = "markdown_kv/{tenant}/{stream}/{date}/{batch}/{key}.md"
PLACEHOLDERS: Final = ("tenant", "stream", "key", "date", "batch")
SHAPES: Final = ("row_per_kv", "document_level", "hybrid")
PER_CHOICES: Final = ("record", "batch")
EXTENSIONS: Final = (".md", ".mdkv")
_PATTERNS: Final = ("string", "raw_file", "structured")
_STRING_KEYS: Final = ("column", "title_key")
_RAW_KEYS: Final = ("path", "per", "title_key")
_STRUCTURED_KEYS: Final = ("column", "shape", "doc_id")
_PLACEHOLDER: Final = re.compile(r"\{([^{}]*)\}")


@dataclass(frozen=True)
class StringPattern:
    column: str = DEFAULT_COLUMN
    title_key: str | None = None  # None: the stream's first key property, else "Record"


@dataclass(frozen=True)
class RawFilePattern:
    path: str = DEFAULT_PATH  # relative: under the warehouse; or a full file:// / s3:// URI pattern
    per: str = "record"
    title_key: str | None = None


@dataclass(frozen=True)
class StructuredPattern:
    column: str
    shape: str = "hybrid"
    doc_id: str | None = None  # None: the stream's key properties

    @property
    def kv_table(self) -> bool:
        return self.shape in {"row_per_kv", "hybrid"}

    @property
    def doc_table(self) -> bool:
        return self.shape in {"document_level", "hybrid"}


@dataclass(frozen=True)
class StreamPatterns:
    """What one stream stores as Markdown-KV (every field None: nothing)."""

    string: StringPattern | None = None
    raw_file: RawFilePattern | None = None
    structured: StructuredPattern | None = None

    @property
    def any(self) -> bool:
        return self.string is not None or self.raw_file is not None or self.structured is not None


@dataclass(frozen=True)
class MarkdownKVSettings:
    default: Mapping[str, Any] = field(default_factory=dict)  # raw, validated pattern entries
    streams: Mapping[str, Mapping[str, Any] | None] = field(default_factory=dict)

    def for_stream(self, stream: str) -> StreamPatterns:
        """The stream's patterns: its own entry's patterns over the default's."""
        if stream in self.streams and self.streams[stream] is None:
            return StreamPatterns()
        where = f"{SETTING}.streams.{stream}" if stream in self.streams else f"{SETTING}.default"
        merged = {**self.default, **(self.streams.get(stream) or {})}
        return StreamPatterns(
            string=_string(merged.get("string"), f"{where}.string"),
            raw_file=_raw_file(merged.get("raw_file"), f"{where}.raw_file"),
            structured=_structured(merged.get("structured"), f"{where}.structured"),
        )


def parse_setting(value: Any) -> MarkdownKVSettings:
    """Validate the whole setting once, at start-up (a stream named later is checked again then)."""
    if value is None or value in ("", {}):
        return MarkdownKVSettings()
    if isinstance(value, str):  # from an environment variable (TARGET_ICEBERG_NESSIE_MARKDOWN_KV)
        try:
            value = json.loads(value)
        except json.JSONDecodeError as error:
            msg = f"setting '{SETTING}' must be a JSON object, got {value!r} ({error})"
            raise ConfigError(msg) from None
    if not isinstance(value, Mapping):
        msg = f"setting '{SETTING}' must be an object with 'default' and/or 'streams', got {value!r}"
        raise ConfigError(msg)
    _known(value, ("default", "streams"), SETTING)
    default = _entry(value.get("default"), f"{SETTING}.default") or {}
    streams_value = value.get("streams") or {}
    if not isinstance(streams_value, Mapping):
        msg = f"setting '{SETTING}.streams' must map stream names to pattern objects, got {streams_value!r}"
        raise ConfigError(msg)
    streams = {str(name): _entry(entry, f"{SETTING}.streams.{name}") for name, entry in streams_value.items()}
    settings = MarkdownKVSettings(default=default, streams=streams)
    settings.for_stream("\0default")  # the default alone must be complete (e.g. structured's column)
    for name in streams:
        settings.for_stream(name)
    return settings


def _entry(value: Any, where: str) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        msg = f"setting '{where}' must be an object with {', '.join(_PATTERNS)} (or null), got {value!r}"
        raise ConfigError(msg)
    _known(value, _PATTERNS, where)
    return dict(value)


def _known(value: Mapping[str, Any], allowed: tuple[str, ...], where: str) -> None:
    unknown = [str(k) for k in value if k not in allowed]
    if unknown:
        msg = f"setting '{where}' has unknown key(s) {unknown}; allowed: {', '.join(allowed)}"
        raise ConfigError(msg)


def _options(value: Any, allowed: tuple[str, ...], where: str) -> dict[str, Any] | None:
    """A pattern's options: false/null → off, true → defaults, an object → checked options."""
    if value is None or value is False:
        return None
    if value is True:
        return {}
    if not isinstance(value, Mapping):
        msg = f"setting '{where}' must be true, false or an object with {', '.join(allowed)}, got {value!r}"
        raise ConfigError(msg)
    _known(value, allowed, where)
    for key, option in value.items():
        if option is not None and not isinstance(option, str):
            msg = f"setting '{where}.{key}' must be text, got {option!r}"
            raise ConfigError(msg)
    return {k: v for k, v in value.items() if v not in (None, "")}


def _choice(options: Mapping[str, Any], key: str, choices: tuple[str, ...], default: str, where: str) -> str:
    value = str(options.get(key, default))
    if value not in choices:
        msg = f"setting '{where}.{key}' must be one of {', '.join(choices)}, got {value!r}"
        raise ConfigError(msg)
    return value


def _string(value: Any, where: str) -> StringPattern | None:
    options = _options(value, _STRING_KEYS, where)
    if options is None:
        return None
    return StringPattern(column=options.get("column", DEFAULT_COLUMN), title_key=options.get("title_key"))


def _raw_file(value: Any, where: str) -> RawFilePattern | None:
    options = _options(value, _RAW_KEYS, where)
    if options is None:
        return None
    path = str(options.get("path", DEFAULT_PATH))
    per = _choice(options, "per", PER_CHOICES, "record", where)
    found = _PLACEHOLDER.findall(path)
    unknown = [name for name in found if name not in PLACEHOLDERS]
    if unknown:
        msg = (
            f"setting '{where}.path' {path!r} has unknown placeholder(s) {unknown}; use "
            f"{', '.join('{' + p + '}' for p in PLACEHOLDERS)}"
        )
        raise ConfigError(msg)
    missing = [name for name in ("batch", "key") if name not in found]
    if missing:
        msg = (
            f"setting '{where}.path' {path!r} lacks {', '.join('{' + m + '}' for m in missing)}: every "
            "document path needs the checkpoint's {batch} (documents are immutable, listed by the commit "
            "that wrote them) and the document's {key} (one per record, or the batch's part number)"
        )
        raise ConfigError(msg)
    if not path.endswith(EXTENSIONS):
        msg = f"setting '{where}.path' {path!r} must end in .md or .mdkv (the document's file type)"
        raise ConfigError(msg)
    if ".." in path.split("/") or (path.startswith("/") and "://" not in path):
        msg = (
            f"setting '{where}.path' {path!r} must stay inside the warehouse: use a relative path "
            "without '..', or a full file:// or s3:// URI"
        )
        raise ConfigError(msg)
    return RawFilePattern(path=path, per=per, title_key=options.get("title_key"))


def _structured(value: Any, where: str) -> StructuredPattern | None:
    options = _options(value, _STRUCTURED_KEYS, where)
    if options is None:
        return None
    column = options.get("column")
    if not column:
        msg = (
            f"setting '{where}' needs 'column': the text property that holds each record's Markdown-KV "
            'document (e.g. {"column": "body"})'
        )
        raise ConfigError(msg)
    shape = _choice(options, "shape", SHAPES, "hybrid", where)
    return StructuredPattern(column=str(column), shape=shape, doc_id=options.get("doc_id"))
