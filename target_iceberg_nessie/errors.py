"""One error root for the target, with branches named for what the caller should do.

`FatalError`: stop, fix the input or the config, re-run. `RetriableError`: the same run may succeed
later (a service was unreachable, a commit conflicted after all retries). `ContractViolation`: the
data broke its contract. Errors carry data (stream, line, key) so that messages name the fix.
"""

from __future__ import annotations


class TargetError(Exception):
    """Root of every error the target raises on purpose."""

    exit_code: int = 2


class FatalError(TargetError):
    """Not worth retrying as is: the input, the config or the table must change first."""


class RetriableError(TargetError):
    """A transient condition; re-running the same job may succeed."""

    exit_code = 75  # EX_TEMPFAIL, documented in docs/target.md


class ConfigError(FatalError):
    """A setting is missing, malformed or contradictory."""


class BadInputError(FatalError):
    """A Singer message could not be used; names the line and stream."""

    def __init__(self, message: str, *, line: int | None = None, stream: str | None = None) -> None:
        where = []
        if stream is not None:
            where.append(f"stream '{stream}'")
        if line is not None:
            where.append(f"line {line}")
        prefix = f"{', '.join(where)}: " if where else ""
        super().__init__(prefix + message)
        self.line = line
        self.stream = stream


class SchemaEvolutionError(FatalError):
    """A SCHEMA message asks for a change the table cannot take safely."""

    def __init__(self, message: str, *, stream: str, table: str) -> None:
        super().__init__(f"stream '{stream}' → table '{table}': {message}")
        self.stream = stream
        self.table = table


class CommitOutcomeUnknownError(RetriableError):
    """A commit was sent and its outcome could not be settled (the catalog stopped answering): it
    may have landed, so nothing it refers to may be deleted. Re-run when the catalog is back."""


class CommitConflictError(RetriableError):
    """Another writer changed a table between our load and our commit, beyond what a retry fixes."""


class ContractViolation(TargetError):  # noqa: N818 - the name says what happened, like the DESIGN calls it
    """Rows broke their data contract at the `fail` level."""


class RowsQuarantined(TargetError):  # noqa: N818 - not a failure: a partial success
    """Everything committed, but some rows broke their contracts and went to `<table>__rejected`:
    a partial success (exit 1)."""

    exit_code = 1
