"""Redaction of secret values and secret-named fields from text and JSON-like objects, with `***`.

Known values are replaced in every form they commonly take in logs: raw, URL-encoded (`quote` with
and without `/`, `quote_plus`, either hex case), JSON-escaped (once and twice), Python-repr-escaped,
and base64 (standard and URL-safe, padded or not, and inside a longer base64 blob such as the
`user:password` of a Basic auth header: the whole blob is replaced). Values shorter than
`min_length` are not replaced by value (they would hit ordinary words and numbers); they are only
hidden when they sit under a secret-named key.

Without knowing any value, the redactor also hides the password of `scheme://user:PASSWORD@host`
URLs/DSNs and the value under a secret-named key (`password`, `clientSecret`,
`TAP_STRIPE_CLIENT_SECRET`, `Authorization: Bearer …`) in dicts (`obj`) and in text
(`key=value`, `key: value`, `"key": "value"`, `'key': 'value'`).
"""

from __future__ import annotations

import base64
import json
import re
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import quote, quote_plus

MASK: Final = "***"

# Secret-named keys: a key is secret when, lower-cased without separators, it contains one of these...
SECRET_KEY_PARTS: Final = (
    "password",
    "passwd",
    "secret",
    "token",
    "apikey",
    "accesskey",
    "privatekey",
    "clientsecret",
    "refreshtoken",
    "authorization",
    "credentials",
)
# ...or when one of its words is one of these (too short to match inside other words).
SECRET_KEY_WORDS: Final = ("dsn", "pwd", "cookie")

_KEY_WORD: Final = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+")
_B64_CHARS: Final = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/-_")
# A base64 fragment of a value inside a longer blob is only trusted from this length on.
_MIN_B64_FRAGMENT: Final = 8
_MIN_LINE_OF_MULTILINE_VALUE: Final = 8
_MAX_PASSES: Final = 4
_PERCENT_ESCAPE: Final = re.compile(r"%[0-9A-F]{2}")

_URL_PASSWORD: Final = re.compile(
    r"(?P<head>\b[A-Za-z][A-Za-z0-9+.-]*://[^:/?#@\s\"']*:)(?P<password>[^/?#\s\"']*)(?P<at>@)"
)
_NOT_SECRETS: Final = frozenset({"null", "none", "true", "false"})  # JSON/Python literals stay readable
_ASCII_LOWER: Final = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
_KEY_CHARS: Final = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-")
# Every secret-named key contains one of these (lower-cased); a cheap `find` locates candidates.
_KEY_NEEDLES: Final = (
    "passw",
    "secret",
    "token",
    "key",
    "authorization",
    "credentials",
    "dsn",
    "pwd",
    "cookie",
)
_AFTER_KEY: Final = re.compile(
    r"(?P<close>\\?[\"'])?(?P<sep>\s*[=:]\s*)"
    r"(?P<scheme>(?:Bearer|Basic|Token|Digest|Bot)\s+)?"
    r"(?P<value>\\\"(?:(?!\\\").)*\\\"|\"(?:[^\"\\]|\\.)*\"|'(?:[^'\\]|\\.)*'|[^\s,;&'\"{}\[\]()\\]+)",
    re.IGNORECASE,
)


def is_secret_key(key: str) -> bool:
    """Whether a field named `key` holds a secret, whatever its value (`clientSecret`, `API_KEY`, `dsn`)."""
    words = [word.lower() for word in _KEY_WORD.findall(key)]
    joined = "".join(words)
    return any(part in joined for part in SECRET_KEY_PARTS) or any(w in SECRET_KEY_WORDS for w in words)


def value_forms(value: str) -> set[str]:
    """The literal forms a secret value takes in logs: raw, URL-encoded, JSON- and repr-escaped."""
    forms = {value, quote(value, safe=""), quote(value), quote_plus(value)}
    for ensure_ascii in (True, False):
        escaped = json.dumps(value, ensure_ascii=ensure_ascii)[1:-1]
        forms |= {escaped, escaped.replace("/", "\\/"), json.dumps(escaped, ensure_ascii=ensure_ascii)[1:-1]}
    forms.add(repr(value)[1:-1])
    forms |= {_PERCENT_ESCAPE.sub(lambda m: m[0].lower(), form) for form in forms}  # either hex case
    return forms


def base64_forms(value: str) -> set[str]:
    """Base64 text that appears whenever `value` is encoded, alone or inside a longer byte string.

    The value alone: standard and URL-safe, padded or not. Inside a longer string (`user:password`),
    at each of the three byte offsets: the characters made only of the value's bits.
    """
    raw = _utf8(value)
    forms: set[str] = set()
    for encoded in (base64.b64encode(raw).decode(), base64.urlsafe_b64encode(raw).decode()):
        forms |= {encoded, encoded.rstrip("=")}
    for offset in range(3):
        encoded = base64.b64encode(b"\0" * offset + raw).decode()
        # Characters fully made of the value's bits: from ceil(8*offset/6) to floor(8*(offset+len)/6).
        fragment = encoded[-(-8 * offset // 6) : 8 * (offset + len(raw)) // 6]
        if len(fragment) >= _MIN_B64_FRAGMENT:
            forms |= {fragment, fragment.replace("+", "-").replace("/", "_")}
    return forms


def _utf8(value: str) -> bytes:
    # Undecodable bytes from the environment come back as surrogates; encode them as they were.
    try:
        return value.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return value.encode("utf-8", "surrogatepass")


class Redactor:
    """Replaces secret values (and secret-named fields) with `***`; safe to share between threads."""

    def __init__(self, values: Iterable[str] = (), *, min_length: int = 4) -> None:
        self.min_length = min_length
        self._lock = threading.Lock()
        self._values: set[str] = set()
        self._matcher: _Matcher | None = None
        self.add(values)

    def add(self, values: Iterable[str]) -> None:
        """Learn more secret values; the matching regex is rebuilt once."""
        with self._lock:
            new = {v for v in values if len(v) >= self.min_length} - self._values
            if not new:
                return
            self._values = self._values | new  # a new set: readers may be iterating the old one
            self._matcher = _compile(self._values, self.min_length)

    @property
    def values(self) -> frozenset[str]:
        return frozenset(self._values)

    def text(self, s: str) -> str:
        """`s` with every known value (in every form), URL password and secret-named field masked."""
        matcher = self._matcher  # read once: another thread may swap in a rebuilt one
        for _ in range(_MAX_PASSES if matcher is not None and matcher.repeat else 1):
            before = s
            if matcher is not None:
                s = _mask_values(matcher, s)
            if "://" in s:
                s = _URL_PASSWORD.sub(_mask_url_password, s)
            s = _mask_keyed(s)
            if s == before:
                break
        return s

    def obj(self, o: Any) -> Any:
        """A copy of `o` with dicts/lists/tuples recursed, strings redacted, secret-named keys masked.

        Other values become their redacted `str()` (ints, floats, booleans and None are kept unless
        they print as a secret), so the result is plain JSON data.
        """
        if isinstance(o, str):
            return self.text(o)
        if o is None or isinstance(o, bool):
            return o
        if isinstance(o, int | float):
            printed = str(o)
            return MASK if self.text(printed) != printed else o
        if isinstance(o, Mapping):
            return {self._key(k): self._field(k, v) for k, v in o.items()}
        if isinstance(o, list | tuple | set | frozenset):
            return [self.obj(item) for item in o]
        return self.text(str(o))

    def _key(self, key: object) -> str:
        return self.text(key if isinstance(key, str) else str(key))

    def _field(self, key: object, value: Any) -> Any:
        if (
            isinstance(key, str)
            and is_secret_key(key)
            and value not in (None, "")
            and not isinstance(value, bool)
        ):
            return MASK
        return self.obj(value)


@dataclass(frozen=True)
class _Matcher:
    pattern: re.Pattern[str]
    fragments: frozenset[str]
    repeat: bool  # some form contains `*`: masking may reveal another occurrence, so repeat


def _compile(values: set[str], min_length: int) -> _Matcher:
    literal: set[str] = set()
    fragments: set[str] = set()
    for value in values:
        lines = {line.strip() for line in value.splitlines()} if "\n" in value else set()
        for each in {value} | {
            line for line in lines if len(line) >= max(min_length, _MIN_LINE_OF_MULTILINE_VALUE)
        }:
            literal |= value_forms(each)
            fragments |= base64_forms(each)
    # One trie for all forms (a top-level alternation of groups would defeat the regex's first-character
    # scan); a match that is a base64 fragment is told apart afterwards.
    repeat = any("*" in form for form in literal)
    return _Matcher(re.compile(_trie_pattern(literal | fragments)), frozenset(fragments - literal), repeat)


def _trie_pattern(words: Iterable[str]) -> str:
    """One regex for many literals, shared prefixes factored out; a longer match wins at each position."""
    trie: dict[str, Any] = {}
    for word in words:
        node = trie
        for char in word:
            node = node.setdefault(char, {})
        node[""] = {}
    return _node_pattern(trie)


def _node_pattern(node: dict[str, Any]) -> str:
    chain: list[str] = []
    while "" not in node and len(node) == 1:  # a run of single children: no group needed
        ((char, node),) = node.items()
        chain.append(re.escape(char))
    prefix = "".join(chain)
    branches = [re.escape(char) + _node_pattern(child) for char, child in sorted(node.items()) if char]
    if not branches:
        return prefix
    body = branches[0] if len(branches) == 1 else "(?:" + "|".join(branches) + ")"
    return prefix + (f"(?:{body})?" if "" in node else body)


def _mask_values(matcher: _Matcher, s: str) -> str:
    spans: list[tuple[int, int]] = []
    for match in matcher.pattern.finditer(s):
        start, end = match.span()
        if match[0] in matcher.fragments:  # a fragment of a longer base64 blob: mask the whole blob
            while start > 0 and s[start - 1] in _B64_CHARS:
                start -= 1
            while end < len(s) and s[end] in _B64_CHARS:
                end += 1
            end += len(s[end : end + 2]) - len(s[end : end + 2].lstrip("="))  # its padding
        if spans and start <= spans[-1][1]:
            spans[-1] = (min(start, spans[-1][0]), max(end, spans[-1][1]))
        else:
            spans.append((start, end))
    if not spans:
        return s
    parts: list[str] = []
    position = 0
    for start, end in spans:
        parts.append(s[position:start])
        parts.append(MASK)
        position = end
    parts.append(s[position:])
    return "".join(parts)


def _mask_url_password(match: re.Match[str]) -> str:
    return f"{match['head']}{MASK}{match['at']}" if match["password"] else match[0]


def _mask_keyed(s: str) -> str:
    lower = s.translate(_ASCII_LOWER)  # ASCII only, so positions stay those of `s`
    edits: dict[int, tuple[int, str]] = {}
    for needle in _KEY_NEEDLES:
        found = lower.find(needle)
        while found != -1:
            start, end = found, found + len(needle)
            while start > 0 and s[start - 1] in _KEY_CHARS:
                start -= 1
            while end < len(s) and s[end] in _KEY_CHARS:
                end += 1
            found = lower.find(needle, end)
            if start in edits or not is_secret_key(s[start:end]):
                continue
            after = _AFTER_KEY.match(s, end)
            if after is None:
                continue
            value = after["value"]
            if value.strip("\\\"'") == MASK or value.lower() in _NOT_SECRETS:
                continue
            quote = value[: len(value) - len(value.lstrip("\\\"'"))]
            edits[start] = (after.end(), s[start : after.start("value")] + quote + MASK + quote)
    if not edits:
        return s
    parts: list[str] = []
    position = 0
    for start in sorted(edits):
        end, replacement = edits[start]
        if start < position:
            continue
        parts.append(s[position:start])
        parts.append(replacement)
        position = end
    parts.append(s[position:])
    return "".join(parts)
