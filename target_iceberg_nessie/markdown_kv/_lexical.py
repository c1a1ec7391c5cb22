"""Lexical rules the renderer and the parser share: bare or quoted keys and strings, scalar literals.

Both sides use these functions, so whatever the renderer writes bare the parser reads back as the
same string (docs/markdown-kv.md, "Keys, strings and quoting"). No pattern here can backtrack: the
one regular expression is a JSON number (linear), the rest are set look-ups and `str` methods.
"""

from __future__ import annotations

import functools
import json
import math
import re
from typing import Any, Final

# A JSON number (RFC 8259). fullmatch only: linear, no nested quantifiers.
NUMBER: Final = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")

# Characters that never appear raw in a key, bare string or quoted string: C0/C1 controls, line and
# paragraph separators, the byte-order mark and the bidirectional controls (they reorder what a
# reader sees, "Trojan source"). Quoted strings carry them as \uXXXX escapes.
_ESCAPED: Final = (
    [chr(c) for c in range(0x20)]
    + [chr(c) for c in range(0x7F, 0xA0)]
    + ["\u2028", "\u2029", "\ufeff", "\u061c", "\u200e", "\u200f"]
    + [chr(c) for c in range(0x202A, 0x202F)]
    + [chr(c) for c in range(0x2066, 0x206A)]
)
_ESCAPED_CHARS: Final = re.compile("[" + "".join(re.escape(c) for c in _ESCAPED) + "]")
# json.dumps escapes C0 controls itself; these are the ones it leaves raw.
_EXTRA_ESCAPES: Final = str.maketrans({c: f"\\u{ord(c):04x}" for c in _ESCAPED if c >= "\x7f"})
# Characters that start a Markdown block (heading, list, quote, fence, HTML, table, setext line) or
# one of our own value forms (quoted string, inline JSON): a bare key or string never starts with one.
_STRUCTURAL_START: Final = frozenset('"[{#-*+>|`~<=')
# Words a reader could take for a literal; quoted even where the grammar would read them as text.
_LITERAL_WORDS: Final = frozenset({"null", "true", "false", "none"})
_LONGEST_LITERAL_WORD: Final = max(map(len, _LITERAL_WORDS))
_FLOAT_START: Final = frozenset("+-.iInN")
LITERALS: Final[dict[str, Any]] = {"null": None, "true": True, "false": False}
# Inside a fenced block every character is literal except the line break itself.
_FENCE_FORBIDDEN: Final = re.compile("[" + "".join(re.escape(c) for c in _ESCAPED if c not in "\n\t") + "]")
_JSON_SEPARATORS: Final = (", ", ": ")


def quote(text: str) -> str:
    """`text` as a JSON string literal with every character of `_ESCAPED` escaped."""
    return json.dumps(text, ensure_ascii=False).translate(_EXTRA_ESCAPES)


def inline_json(value: Any) -> str:
    """A JSON value on one line (arrays and objects written inline); the caller checked its types."""
    return json.dumps(value, ensure_ascii=False, separators=_JSON_SEPARATORS, allow_nan=False).translate(
        _EXTRA_ESCAPES
    )


def _plain(text: str) -> bool:
    """Non-empty, no surrounding whitespace, no escaped character, no Markdown block start."""
    if text == "":
        return False
    first, last = text[0], text[-1]
    if first in _STRUCTURAL_START or first.isspace() or last.isspace():
        return False
    if last == "#" and _closing_hashes(text):
        return False
    if "0" <= first <= "9" and _ordered_list_start(text):
        return False
    return _ESCAPED_CHARS.search(text) is None


def _ordered_list_start(text: str) -> bool:
    """`1. x` / `2) x`: Markdown would read an ordered list item."""
    digits = 0
    for char in text[:10]:
        if not ("0" <= char <= "9"):
            break
        digits += 1
    if digits == 0 or digits == len(text) or text[digits] not in ".)":
        return False
    return digits + 1 == len(text) or text[digits + 1] == " "


def _closing_hashes(text: str) -> bool:
    """`a #`: in a heading, Markdown drops a closing run of `#` that follows a space."""
    trimmed = text.rstrip("#")
    return trimmed != text and (trimmed == "" or trimmed[-1] in " \t")


def looks_like_number(text: str) -> bool:
    """A JSON number, or anything Python's float() takes (`1_000`, `.5`, `inf`, `nan`, `٤٢`)."""
    if NUMBER.fullmatch(text) is not None:
        return True
    if text[0] not in _FLOAT_START and not text[0].isdecimal():
        return False
    try:
        float(text)
    except ValueError:
        return False
    return True


def bare_key(key: str) -> bool:
    """Whether `key` may be written without quotes (a bare key has no colon at all)."""
    return _plain(key) and ":" not in key


def bare_string(text: str) -> bool:
    """Whether a string value may be written without quotes and still read back as that string."""
    return (
        _plain(text)
        and ": " not in text
        and text[-1] != ":"
        and (len(text) > _LONGEST_LITERAL_WORD or text.lower() not in _LITERAL_WORDS)
        and not looks_like_number(text)
    )


def bare_title(title: str) -> bool:
    """Whether a record title may stand bare in its heading (titles may hold colons)."""
    return _plain(title)


@functools.lru_cache(maxsize=4096)  # records of a batch repeat their keys
def key_text(key: str) -> str:
    return key if bare_key(key) else quote(key)


def title_text(title: str) -> str:
    return title if bare_title(title) else quote(title)


def fenceable(text: str) -> bool:
    """Multi-line text that a fenced block can hold exactly (no carriage return or other control)."""
    return "\n" in text and _FENCE_FORBIDDEN.search(text) is None


def fence_for(text: str) -> str:
    """A backtick fence longer than any run of backticks in `text` (at least three)."""
    longest = run = 0
    for char in text:
        run = run + 1 if char == "`" else 0
        longest = max(longest, run)
    return "`" * max(3, longest + 1)


def quoted_end(text: str, start: int = 0) -> int:
    """Index just past the JSON string literal that starts at `text[start]` (a `"`), or -1."""
    position = start + 1
    while True:
        found = text.find('"', position)
        if found == -1:
            return -1
        backslashes = 0
        before = found - 1
        while text[before] == "\\":  # stops at text[start] == '"' at the latest
            backslashes += 1
            before -= 1
        if backslashes % 2 == 0:
            return found + 1
        position = found + 1


def reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def finite_float(text: str) -> float:
    number = float(text)
    if math.isinf(number):
        raise ValueError(f"{text} is too large for a 64-bit float")
    return number
