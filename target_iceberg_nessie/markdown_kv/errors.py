"""Errors of the Markdown-KV format: one root, a branch for bad documents and one for unrenderable data."""

from __future__ import annotations


class MarkdownKVError(ValueError):
    """Root of every error the Markdown-KV renderer and parser raise on purpose."""


class MarkdownKVSyntaxError(MarkdownKVError):
    """A document breaks the grammar (docs/markdown-kv.md); names the source, the line and the fix."""

    def __init__(self, message: str, *, line: int, source: str | None = None) -> None:
        where = f"{source}, line {line}" if source is not None else f"line {line}"
        super().__init__(f"{where}: {message}")
        self.reason = message
        self.line = line
        self.source = source


class MarkdownKVRenderError(MarkdownKVError):
    """A record holds something that is not JSON-like data (names the record and the key path)."""

    def __init__(self, message: str, *, path: str) -> None:
        super().__init__(f"{path}: {message}")
        self.reason = message
        self.path = path
