"""How stream names become Iceberg namespace and table names.

Rules (documented in docs/target.md): lower-case; every run of characters outside [a-z0-9_] becomes
one underscore; leading/trailing underscores are trimmed; a name that starts with a digit gets a
leading underscore; an empty result is an error. Examples: ``public-users`` → ``public_users``,
``Deals (2024)`` → ``deals_2024``, ``2fa`` → ``_2fa``.
"""

from __future__ import annotations

import re

from target_iceberg_nessie.errors import ConfigError

_INVALID_RUN = re.compile(r"[^a-z0-9_]+")
MAX_NAME_LENGTH = 128


def sanitize_name(name: str, *, what: str = "name") -> str:
    """Return the identifier-safe form of ``name`` or raise when nothing usable is left."""
    cleaned = _INVALID_RUN.sub("_", name.strip().lower()).strip("_")
    if not cleaned:
        msg = f"{what} {name!r} has no letters or digits; rename it (for a stream, with a stream map)"
        raise ConfigError(msg)
    if cleaned[0].isdigit():
        cleaned = f"_{cleaned}"
    return cleaned[:MAX_NAME_LENGTH]


def table_identifier(tenant: str, namespace: str, stream: str) -> tuple[str, str, str]:
    """The (tenant, namespace, table) identifier a stream is written to."""
    return (
        sanitize_name(tenant, what="tenant"),
        sanitize_name(namespace, what="namespace"),
        sanitize_name(stream, what="stream name"),
    )
