"""One error root for the platform, with branches named for what the caller should do.

Every message is one line per problem that names what is wrong and the fix; errors carry their data
(file, path inside it) so callers and tests need not parse messages.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

EXIT_FAILURE = 1
EXIT_CONFIG = 2  # usage and configuration errors: fix the command line or the file, then re-run
_MAX_PROBLEMS_SHOWN = 5


class PlatformError(Exception):
    """Root of every error the platform raises on purpose."""

    exit_code: int = EXIT_FAILURE


class ConfigError(PlatformError):
    """An option, a setting or a location is wrong; the message names the fix."""

    exit_code = EXIT_CONFIG


class LakeNotFoundError(ConfigError):
    """The embedded lake (its catalog database) does not exist where it was looked for."""

    def __init__(self, location: Path) -> None:
        super().__init__(
            f"no lake at {location}; run `make demo` or a job first, "
            "or point --project-dir / --catalog-uri at an existing lake"
        )
        self.location = location


@dataclass(frozen=True)
class Problem:
    """One thing wrong inside a file: where (a dotted path, `<root>` for the top) and how to fix it."""

    path: str
    message: str
    fix: str

    def describe(self, file: Path) -> str:
        return f"{file}: at {self.path}: {self.message}; fix: {self.fix}"


class ConfigFileError(ConfigError):
    """A YAML/JSON file the platform reads is malformed or breaks its JSON Schema."""

    def __init__(self, file: Path, problems: list[Problem]) -> None:
        lines = [problem.describe(file) for problem in problems[:_MAX_PROBLEMS_SHOWN]]
        if len(problems) > _MAX_PROBLEMS_SHOWN:
            lines.append(f"{file}: and {len(problems) - _MAX_PROBLEMS_SHOWN} more problem(s)")
        super().__init__("\n".join(lines))
        self.file = file
        self.problems = problems
