"""Markdown-KV: JSON-like records as Markdown headings and `key: value` lines, for LLM readers.

The grammar is docs/markdown-kv.md. Pure Python (PyYAML for the front matter only); used by the
loader's storage patterns and by taps/tap-markdown-kv, so both read the same format the same way.
"""

from __future__ import annotations

from target_iceberg_nessie.markdown_kv.errors import (
    MarkdownKVError,
    MarkdownKVRenderError,
    MarkdownKVSyntaxError,
)
from target_iceberg_nessie.markdown_kv.flatten import (
    DocumentLevel,
    DocumentSection,
    KvRow,
    SectionField,
    document_level,
    rows_per_kv,
    value_texts,
)
from target_iceberg_nessie.markdown_kv.parse import Document, Record, parse_document, parse_records
from target_iceberg_nessie.markdown_kv.render import render_document, render_record

__all__ = [
    "Document",
    "DocumentLevel",
    "DocumentSection",
    "KvRow",
    "MarkdownKVError",
    "MarkdownKVRenderError",
    "MarkdownKVSyntaxError",
    "Record",
    "SectionField",
    "document_level",
    "parse_document",
    "parse_records",
    "render_document",
    "render_record",
    "rows_per_kv",
    "value_texts",
]
