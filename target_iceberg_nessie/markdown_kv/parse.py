"""Parse Markdown-KV documents (grammar: docs/markdown-kv.md) into front matter and records.

A single pass over the lines with a stack of open sections; every construct is recognised by its
first characters, so parsing is linear in the document's length. Errors name the line and the fix.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Final

import yaml

from target_iceberg_nessie.markdown_kv._lexical import (
    LITERALS,
    NUMBER,
    finite_float,
    quoted_end,
    reject_constant,
)
from target_iceberg_nessie.markdown_kv.errors import MarkdownKVSyntaxError

FRONT_MATTER_FENCE: Final = "---"
MAX_HEADING_LEVEL: Final = 6
_BLANK: Final = " \t"


@dataclass
class Record:
    """One top-level section: its heading text, where it starts and its data."""

    title: str
    line: int
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class Document:
    """A parsed document: its YAML front matter (None when it has none) and its records in order."""

    front_matter: dict[str, Any] | None
    records: list[Record]
    record_level: int | None = None  # heading level of the records (the first heading's); None: no record

    @property
    def title(self) -> str | None:
        """The front matter's `title` when it is a string."""
        value = (self.front_matter or {}).get("title")
        return value if isinstance(value, str) else None


def parse_document(text: str, *, source: str | None = None) -> Document:
    """Parse a whole document; `source` (a file name) prefixes every error message."""
    return _Parser(text, source).document()


def parse_records(text: str, *, source: str | None = None) -> list[dict[str, Any]]:
    """Just the records' data, in document order."""
    return [record.data for record in parse_document(text, source=source).records]


@dataclass
class _Section:
    level: int
    data: dict[str, Any]
    lines: dict[str, int]  # key -> line that set it, for duplicate-key errors


class _Parser:
    def __init__(self, text: str, source: str | None) -> None:
        text = text.removeprefix("\ufeff")
        self.lines = [line.removesuffix("\r") for line in text.split("\n")]
        self.source = source
        self.index = 0  # the next line to read (0-based)

    def error(self, message: str, line: int | None = None) -> MarkdownKVSyntaxError:
        return MarkdownKVSyntaxError(
            message, line=line if line is not None else self.index, source=self.source
        )

    def document(self) -> Document:
        front_matter = self.front_matter()
        records: list[Record] = []
        stack: list[_Section] = []
        record_level: int | None = None
        first_heading = 0
        while self.index < len(self.lines):
            line = self.lines[self.index]
            self.index += 1
            if line.strip(_BLANK) == "":
                continue
            if line[0] == "#":
                level, title = self.heading(line)
                if record_level is None:
                    record_level, first_heading = level, self.index
                if level < record_level:
                    raise self.error(
                        f"a level-{level} heading above the records, which are level {record_level} "
                        f"(set by the first heading, line {first_heading}); every record heading has "
                        "the same level"
                    )
                if level == record_level:
                    records.append(Record(title=title, line=self.index))
                    stack = [_Section(level, records[-1].data, {})]
                    continue
                while stack[-1].level >= level:
                    stack.pop()
                parent = stack[-1]
                if level != parent.level + 1:
                    raise self.error(
                        f"a level-{level} heading directly under a level-{parent.level} one; nested "
                        f"objects go one level deeper at a time (use {'#' * (parent.level + 1)})"
                    )
                child: dict[str, Any] = {}
                self.store(parent, title, child)
                stack.append(_Section(level, child, {}))
                continue
            if not stack:
                raise self.error(
                    "content before the first heading: every record starts with a heading such as "
                    "'# Record 1'"
                )
            self.field(stack[-1], line)
        return Document(front_matter=front_matter, records=records, record_level=record_level)

    def front_matter(self) -> dict[str, Any] | None:
        if not self.lines or self.lines[0].rstrip(_BLANK) != FRONT_MATTER_FENCE:
            return None
        for end in range(1, len(self.lines)):
            if self.lines[end].rstrip(_BLANK) == FRONT_MATTER_FENCE:
                break
        else:
            raise self.error("the front matter opened here is never closed by a '---' line", line=1)
        try:
            loaded = yaml.safe_load("\n".join(self.lines[1:end]))
        except yaml.YAMLError as error:
            mark = getattr(error, "problem_mark", None)
            line = 1 + (mark.line + 1 if mark is not None else 1)
            problem = getattr(error, "problem", None) or str(error)
            raise self.error(f"the front matter is not valid YAML: {problem}", line=line) from error
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise self.error(
                f"the front matter must be a YAML mapping (key: value lines), not a {type(loaded).__name__}",
                line=2,
            )
        self.index = end + 1
        return loaded

    def heading(self, line: str) -> tuple[int, str]:
        level = len(line) - len(line.lstrip("#"))
        if level > MAX_HEADING_LEVEL:
            raise self.error(f"{level} '#': Markdown headings have at most {MAX_HEADING_LEVEL} levels")
        if level == len(line.rstrip(_BLANK)):
            raise self.error("an empty heading: write its title or key after the '#'s")
        if line[level] not in _BLANK:
            raise self.error(
                f"{line[: level + 1]!r} is not a heading (a space must follow the '#'s); a key that "
                f"starts with '#' is quoted: \"{line.partition(':')[0]}\": value"
            )
        return level, self.text(line[level:].strip(_BLANK), "heading")

    def text(self, raw: str, what: str) -> str:
        """A bare text (as it stands) or a quoted one (a JSON string literal, nothing after it)."""
        if not raw.startswith('"'):
            return raw
        end = quoted_end(raw)
        if end != len(raw):
            detail = "is not closed" if end == -1 else f"is followed by {raw[end:]!r}"
            raise self.error(f"the quoted {what} {detail}; a quoted text is one JSON string literal")
        return self.json_string(raw, what)

    def json_string(self, raw: str, what: str) -> str:
        try:
            decoded = json.loads(raw)
        except json.JSONDecodeError as error:
            raise self.error(f"the quoted {what} is not a valid JSON string: {error.msg}") from error
        if not isinstance(decoded, str):
            raise self.error(f"the quoted {what} is not a JSON string")
        return decoded

    def field(self, section: _Section, line: str) -> None:
        line_number = self.index
        first = line[0]
        if first in _BLANK:
            raise self.error(
                "unexpected indentation: only the continuation lines of a list item ('  key: value' "
                "under '- key: value') are indented"
            )
        if first == "-" and (line.startswith("- ") or line.rstrip(_BLANK) == "-"):
            raise self.error("a list item without a 'key:' line above it (a list is the value of a key)")
        if first == "`" and line.startswith("```"):
            raise self.error("a fenced block without a 'key:' line above it (it is the value of a key)")
        key, rest = self.entry(line, "line")
        value = self.value(rest) if rest is not None else self.block(key)
        self.store(section, key, value, line_number)

    def entry(self, text: str, where: str) -> tuple[str, str | None]:
        """`key: value` → (key, value text); `key:` → (key, None)."""
        if text.startswith('"'):
            end = quoted_end(text)
            if end == -1:
                raise self.error("a quoted key is not closed (a quoted key is one JSON string literal)")
            key = self.json_string(text[:end], "key")
            if text[end : end + 1] != ":":
                raise self.error(f"the quoted key {text[:end]} must be followed by ':'")
            rest = text[end + 1 :]
        else:
            colon = text.find(":")
            if colon == -1:
                raise self.error(
                    f"expected 'key: value' but this {where} has no colon: {_excerpt(text)} (a record "
                    "holds key: value lines, lists, fenced blocks and sub-headings only)"
                )
            key = text[:colon].rstrip(_BLANK)
            if key == "":
                raise self.error('an empty key: write an empty key quoted, "": value')
            rest = text[colon + 1 :]
        if rest.strip(_BLANK) == "":
            return key, None
        if rest[0] not in _BLANK:
            raise self.error(
                f"a space must follow the colon after key {key!r}; a key holding a colon is quoted: "
                f"{json.dumps(text.partition(' ')[0].rstrip(':'))}: value"
            )
        return key, rest.strip(_BLANK)

    def value(self, raw: str) -> Any:
        """An inline value: literal, number, quoted string, inline JSON, or else a bare string."""
        if raw in LITERALS:
            return LITERALS[raw]
        first = raw[0]
        if first == '"':
            end = quoted_end(raw)
            if end != len(raw):
                detail = "is not closed" if end == -1 else f"is followed by {raw[end:]!r}"
                raise self.error(
                    f"the quoted string {detail}; a quoted value is one JSON string literal (escape "
                    'inner quotes as \\")'
                )
            return self.json_string(raw, "string")
        if first in "[{":
            try:
                return json.loads(raw, parse_constant=reject_constant, parse_float=finite_float)
            except ValueError as error:
                message = error.msg if isinstance(error, json.JSONDecodeError) else str(error)
                raise self.error(
                    f"a value starting with {first!r} is inline JSON, and this is not valid JSON: "
                    f"{message}; quote a string that starts with {first!r}"
                ) from error
        if (first == "-" or "0" <= first <= "9") and NUMBER.fullmatch(raw) is not None:
            if "." in raw or "e" in raw or "E" in raw:
                try:
                    return finite_float(raw)
                except ValueError as error:
                    raise self.error(f"{error}; quote it to keep it as text") from error
            try:
                return int(raw)
            except ValueError as error:  # over Python's int-to-text digit limit (4300 by default)
                raise self.error(f"{error}; quote it to keep it as text") from error
        return raw

    def block(self, key: str) -> Any:
        """The value of a `key:` line: a list or a fenced block on the lines that follow."""
        following = self.lines[self.index] if self.index < len(self.lines) else ""
        if following.startswith("```"):
            return self.fenced()
        if following.startswith("- ") or following.rstrip(_BLANK) == "-":
            return self.list_items()
        raise self.error(
            f"key {key!r} has no value: 'key:' alone must be followed by a list ('- item') or a fenced "
            'block (```) on the next line; write key: "" for an empty string, key: null for null'
        )

    def fenced(self) -> str:
        opening = self.lines[self.index]
        opened_at = self.index + 1
        fence = opening[: len(opening) - len(opening.lstrip("`"))]
        if "`" in opening[len(fence) :]:
            raise self.error("an opening fence's info string cannot hold a backtick", line=opened_at)
        self.index += 1
        content_start = self.index
        while self.index < len(self.lines):
            closing = self.lines[self.index].rstrip(_BLANK)
            self.index += 1
            if len(closing) >= len(fence) and closing.lstrip("`") == "":
                return "\n".join(self.lines[content_start : self.index - 1])
        raise self.error(
            f"the fenced block opened here is never closed (a line of {len(fence)} or more backticks)",
            line=opened_at,
        )

    def list_items(self) -> list[Any]:
        items: list[Any] = []
        while self.index < len(self.lines):
            line = self.lines[self.index]
            if not (line.startswith("- ") or line.rstrip(_BLANK) == "-"):
                break
            self.index += 1
            text = line[2:].strip(_BLANK)
            if text == "":
                raise self.error('an empty list item: write - "" for an empty string, - null for null')
            if not _is_entry(text):
                items.append(self.value(text))
                continue
            item = _Section(0, {}, {})
            self.item_entry(item, text)
            while self.index < len(self.lines) and _continues(self.lines[self.index]):
                self.index += 1
                self.item_entry(item, self.lines[self.index - 1][2:])
            items.append(item.data)
        return items

    def item_entry(self, item: _Section, text: str) -> None:
        if text[:1] in _BLANK:
            raise self.error("a list item's continuation line is indented by exactly two spaces")
        key, rest = self.entry(text, "list item line")
        if rest is None:
            raise self.error(
                f"key {key!r} in a list item has no value: inside list items values are inline "
                "(nested lists and fenced blocks are not allowed there; write arrays and objects "
                "as inline JSON, multi-line text as a quoted string with \\n)"
            )
        self.store(item, key, self.value(rest), self.index)

    def store(self, section: _Section, key: str, value: Any, line: int | None = None) -> None:
        line = self.index if line is None else line
        if key in section.data:
            raise self.error(f"duplicate key {key!r} (first set on line {section.lines[key]})", line=line)
        section.data[key] = value
        section.lines[key] = line


def _is_entry(text: str) -> bool:
    """Whether a list item's text is an object entry (`key: value`) rather than a scalar."""
    if text[0] == '"':
        end = quoted_end(text)
        return end != -1 and text[end : end + 1] == ":" and (end + 1 == len(text) or text[end + 1] in _BLANK)
    if text[0] in "[{":
        return False
    colon = text.find(":")
    return colon > 0 and (colon + 1 == len(text) or text[colon + 1] in _BLANK)


def _continues(line: str) -> bool:
    """A list item's continuation line: two spaces of indentation, then something."""
    return line.startswith("  ") and line.strip(_BLANK) != ""


def _excerpt(text: str, limit: int = 60) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "…")
