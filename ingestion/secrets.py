"""A tenant's secrets: files under `<secrets_root>/<tenant>/` and `INGEST_SECRET_<TENANT>__<NAME>` variables.

This is the one module that reads secret values. They leave it only through `get`, `resolve` (for the
child processes' environment) and `values` (for the redactor); messages and reprs name secrets and
where they were looked for, never a value.

Sources, in order (a later source overrides an earlier one):
- `*.json`: a JSON object; each top-level key is a secret. Numbers and booleans become their JSON text,
  nested objects are flattened with dots (`{"google": {"client_id": …}}` → `google.client_id`);
  null and arrays are refused.
- `*.env` and `.env`: dotenv lines (`KEY=VALUE`, `export KEY=VALUE`, `#` comments, single quotes
  literal, double quotes with `\\n \\t \\" \\\\` escapes, quoted values may span lines, no `${}`).
- any other regular file: one secret named by the file name, its content without the trailing newline.
- environment variables `INGEST_SECRET_<TENANT>__<NAME>`; a NAME starting with `_` or containing `__`
  is ignored there because it could belong to another tenant (tenant `a` vs tenant `a__b`).
Hidden files (other than `.env`) and folders are skipped, so Kubernetes' `..data` links work.
"""

from __future__ import annotations

import difflib
import json
import os
import re
import stat
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from ingestion.errors import ConfigError, ConfigFileError, Problem
from ingestion.tenants import TENANT_ID, check_tenant_id

ENV_PREFIX: Final = "INGEST_SECRET_"
ENV_SEPARATOR: Final = "__"
SECRET_NAME: Final = re.compile(r"^[A-Za-z0-9_.-]{1,255}$")
_DOTENV_FILE: Final = ".env"
_JSON_SUFFIX: Final = ".json"
_PRIVATE_MODE_BITS: Final = 0o077
_DOTENV_LINE: Final = re.compile(r"^\s*(?:export\s+)?(?P<key>[A-Za-z0-9_.-]+)\s*=\s*(?P<rest>.*)$")
_DOTENV_ESCAPES: Final = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\"}


def env_var_name(tenant: str, name: str) -> str:
    """The environment variable that provides (or overrides) secret `name` of `tenant`."""
    return f"{ENV_PREFIX}{tenant.upper()}{ENV_SEPARATOR}{name}"


class MissingSecretError(ConfigError):
    """A secret is not defined for the tenant; says where it was looked for, never a value."""

    def __init__(self, tenant: str, name: str, folder: Path, known: list[str]) -> None:
        self.tenant = tenant
        self.name = name
        self.folder = folder
        self.env_var = env_var_name(tenant, name)
        self.problem = Problem(path=name, message=_missing_message(self, known), fix=_missing_fix(self))
        super().__init__(f"{self.problem.message}; fix: {self.problem.fix}")


def _missing_message(error: MissingSecretError, known: list[str]) -> str:
    where = f"{error.folder}/" if error.folder.is_dir() else f"{error.folder}/ (the folder does not exist)"
    message = (
        f"secret {error.name!r} of tenant {error.tenant!r} is not defined: looked in {where} "
        f"and the environment variable {error.env_var}"
    )
    close = difflib.get_close_matches(error.name, known, n=1)
    if close:
        message += f" (did you mean {close[0]!r}?)"
    return message


def _missing_fix(error: MissingSecretError) -> str:
    if error.name.startswith("_") or ENV_SEPARATOR in error.name:
        return (
            f"add it to a file in {error.folder}/; a name starting with '_' or containing '__' "
            "is not read from the environment (it could belong to another tenant)"
        )
    return f"add it to a file in {error.folder}/ (e.g. a file named {error.name}) or set {error.env_var}"


class SecretReferenceError(ConfigError):
    """Secret references (tap setting -> secret name) that are malformed, foreign or undefined.

    `problems` use the path `secrets.<setting>`, so a caller can report them against its job file
    with `ConfigFileError(job_file, error.problems)`.
    """

    def __init__(self, tenant: str, problems: list[Problem]) -> None:
        self.tenant = tenant
        self.problems = problems
        super().__init__(
            # `secrets.password — …`, not `secrets.password: …`: the log redactor would take the
            # first word after a secret-named key and a colon for its value and hide it.
            "\n".join(f"{p.path} — {p.message}; fix: {p.fix}" for p in problems)
            or f"secret references of tenant {tenant!r} are wrong"
        )


def check_reference(tenant: str, reference: str) -> str | None:
    """Why `reference` cannot name a secret of `tenant` (None when it can): no paths, no other tenants."""
    if ":" in reference:
        owner = reference.split(":", 1)[0]
        if owner == tenant:
            return f"reference {reference!r} is qualified with the tenant; drop the {tenant!r}: prefix"
        return (
            f"reference {reference!r} names tenant {owner!r}; a job reads only its own tenant's "
            f"secrets ({tenant!r}); store the secret for {tenant!r} and name it without a prefix"
        )
    if "/" in reference or "\\" in reference or ".." in reference or reference in {"", "."}:
        return (
            f"reference {reference!r} is a path; secrets are named, not located (no '/', '\\' or '..'), "
            f"and a job reads only its own tenant's ({tenant!r}) store; use a name like 'stripe_api_key'"
        )
    if not SECRET_NAME.match(reference):
        return f"reference {reference!r} is not a secret name; use letters, digits, '_', '.' and '-'"
    return None


@dataclass(frozen=True)
class _Entry:
    """A regular file of the tenant folder that is allowed to be read (checked before any is read)."""

    path: Path
    resolved: Path


class TenantSecrets:
    """One tenant's secrets, loaded once; see the module docstring for the sources."""

    def __init__(
        self,
        tenant: str,
        folder: Path,
        *,
        values: Mapping[str, str],
        sources: Mapping[str, str],
        warnings: list[str],
        overridden: frozenset[str] = frozenset(),
    ) -> None:
        self.tenant = tenant
        self.folder = folder
        self._values = dict(values)
        self._sources = dict(sources)
        self._overridden = overridden  # file values the environment replaced: still secret, still redacted
        self.warnings: tuple[str, ...] = tuple(warnings)

    @classmethod
    def load(cls, secrets_root: Path, tenant: str, environ: Mapping[str, str] | None = None) -> TenantSecrets:
        check_tenant_id(tenant)
        root = secrets_root.expanduser().resolve()
        folder = root / tenant
        values: dict[str, str] = {}
        sources: dict[str, str] = {}
        warnings: list[str] = []
        if folder.exists() or folder.is_symlink():
            tenant_dir = _tenant_folder(root, folder, tenant)
            entries = _entries(folder, tenant_dir)  # every file is checked before any is read
            for entry in entries:
                warnings.extend(_mode_warning(entry))
                for name, value in _read_entry(entry):
                    if name in sources:
                        msg = (
                            f"secret {name!r} of tenant {tenant!r} is defined twice: in {sources[name]} "
                            f"and in {entry.path}; fix: keep one of them"
                        )
                        raise ConfigError(msg)
                    values[name] = value
                    sources[name] = str(entry.path)
        overridden: set[str] = set()
        for name, value in _environment(tenant, os.environ if environ is None else environ):
            if name in values:
                overridden.add(values[name])
            values[name] = value
            sources[name] = f"${env_var_name(tenant, name)}"
        return cls(
            tenant,
            folder,
            values=values,
            sources=sources,
            warnings=warnings,
            overridden=frozenset(overridden),
        )

    def get(self, name: str) -> str:
        problem = check_reference(self.tenant, name)
        if problem is not None:
            raise SecretReferenceError(self.tenant, [Problem(name, problem, _reference_fix(self))])
        try:
            return self._values[name]
        except KeyError:
            raise MissingSecretError(self.tenant, name, self.folder, self.names()) from None

    def names(self) -> list[str]:
        return sorted(self._values)

    def values(self) -> list[str]:
        """Every value loaded (each once), also file values the environment overrode: for redaction."""
        return sorted(set(self._values.values()) | self._overridden)

    def source(self, name: str) -> str:
        """Where secret `name` came from: its file, or `$INGEST_SECRET_…` for the environment."""
        self.get(name)
        return self._sources[name]

    def resolve(self, refs: Mapping[str, str]) -> dict[str, str]:
        """Setting -> secret value for `refs` (setting -> secret name); all bad references at once."""
        problems: list[Problem] = []
        resolved: dict[str, str] = {}
        for setting, reference in refs.items():
            path = f"secrets.{setting}"
            why = check_reference(self.tenant, reference)
            if why is not None:
                problems.append(Problem(path, why, _reference_fix(self)))
            elif reference not in self._values:
                missing = MissingSecretError(self.tenant, reference, self.folder, self.names())
                problems.append(Problem(path, missing.problem.message, missing.problem.fix))
            else:
                resolved[setting] = self._values[reference]
        if problems:
            raise SecretReferenceError(self.tenant, problems)
        return resolved

    def __contains__(self, name: object) -> bool:
        return name in self._values

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"TenantSecrets(tenant={self.tenant!r}, names={self.names()!r})"


def _reference_fix(secrets: TenantSecrets) -> str:
    return f"name a secret stored in {secrets.folder}/ or in {env_var_name(secrets.tenant, '<NAME>')}"


def _tenant_folder(root: Path, folder: Path, tenant: str) -> Path:
    """The tenant folder, resolved; it must stay inside the store and not be another tenant's folder."""
    resolved = folder.resolve()
    fix = f"make {folder} a real folder (or a link to a folder of its own inside {root})"
    if not resolved.is_relative_to(root) or resolved == root:
        msg = (
            f"secrets folder {folder} of tenant {tenant!r} resolves to {resolved}, outside {root}; fix: {fix}"
        )
        raise ConfigError(msg)
    first = resolved.relative_to(root).parts[0]
    if first != tenant and TENANT_ID.match(first):
        msg = (
            f"secrets folder {folder} of tenant {tenant!r} resolves to {resolved}, the folder of tenant "
            f"{first!r}; fix: {fix}"
        )
        raise ConfigError(msg)
    if not resolved.is_dir():
        msg = f"secrets of tenant {tenant!r}: {folder} is not a folder; fix: {fix}"
        raise ConfigError(msg)
    return resolved


def _entries(folder: Path, tenant_dir: Path) -> list[_Entry]:
    entries: list[_Entry] = []
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") and path.name != _DOTENV_FILE:
            continue  # editor files, .gitkeep, Kubernetes' ..data links
        try:
            resolved = path.resolve(strict=True)
        except OSError as error:
            msg = f"secret file {path} cannot be resolved ({error.strerror}); fix: remove the broken link"
            raise ConfigError(msg) from error
        if not resolved.is_relative_to(tenant_dir):
            msg = (
                f"secret file {path} links to {resolved}, outside the tenant folder {tenant_dir}; "
                f"fix: copy the secret into {tenant_dir}/ instead of linking to it"
            )
            raise ConfigError(msg)
        if resolved.is_dir():
            continue
        if not stat.S_ISREG(resolved.stat().st_mode):
            msg = f"secret file {path} is not a regular file; fix: store the secret in a plain file"
            raise ConfigError(msg)
        if path.suffix not in {_JSON_SUFFIX, ".env"} and path.name != _DOTENV_FILE:
            _check_name(path.name, path, "file name")
        entries.append(_Entry(path, resolved))
    return entries


def _check_name(name: str, file: Path, what: str) -> None:
    if not SECRET_NAME.match(name) or ".." in name:
        msg = (
            f"{file}: {what} {name!r} is not a secret name; fix: rename it with letters, digits, "
            "'_', '.' and '-' only (no '..')"
        )
        raise ConfigError(msg)


def _mode_warning(entry: _Entry) -> list[str]:
    mode = entry.resolved.stat().st_mode
    if mode & _PRIVATE_MODE_BITS:
        return [
            f"secret file {entry.path} is accessible to group or others (mode {stat.S_IMODE(mode):04o}); "
            f"fix: chmod 600 {entry.resolved}"
        ]
    return []


def _read_entry(entry: _Entry) -> list[tuple[str, str]]:
    text = _read_text(entry)
    if entry.path.suffix == _JSON_SUFFIX:
        return _parse_json(entry.path, text)
    if entry.path.suffix == ".env" or entry.path.name == _DOTENV_FILE:
        return _parse_dotenv(entry.path, text)
    return [(entry.path.name, _strip_newline(text))]


def _read_text(entry: _Entry) -> str:
    try:
        return entry.resolved.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        msg = f"secret file {entry.path} is not UTF-8 text; fix: store a binary secret base64-encoded"
        raise ConfigError(msg) from None
    except OSError as error:
        msg = (
            f"secret file {entry.path} cannot be read ({error.strerror}); fix: make it readable by this user"
        )
        raise ConfigError(msg) from error


def _strip_newline(text: str) -> str:
    if text.endswith("\r\n"):
        return text[:-2]
    return text.removesuffix("\n")


def _parse_json(file: Path, text: str) -> list[tuple[str, str]]:
    try:
        document = json.loads(text)
    except json.JSONDecodeError as error:
        # The decoder's message names a position, never the text around it.
        raise ConfigFileError(
            file, [Problem("<root>", f"not JSON ({error.msg} at line {error.lineno})", "fix the JSON syntax")]
        ) from None
    if not isinstance(document, dict):
        raise ConfigFileError(
            file, [Problem("<root>", "is not a JSON object", 'write {"name": "value", ...}')]
        )
    pairs: list[tuple[str, str]] = []
    problems: list[Problem] = []
    for name, value in _flatten(document, ""):
        if not SECRET_NAME.match(name) or ".." in name:
            problems.append(
                Problem(name, "is not a secret name", "use letters, digits, '_', '.' and '-' in keys")
            )
        elif value is None or isinstance(value, list):
            kind = "null" if value is None else "an array"
            problems.append(Problem(name, f"is {kind}", "give the secret a string value"))
        elif isinstance(value, str):
            pairs.append((name, value))
        else:
            pairs.append((name, json.dumps(value)))
    if problems:
        raise ConfigFileError(file, problems)
    return pairs


def _flatten(document: Mapping[str, Any], prefix: str) -> Iterator[tuple[str, Any]]:
    for key, value in document.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            yield from _flatten(value, f"{name}.")
        else:
            yield name, value


def _parse_dotenv(file: Path, text: str) -> list[tuple[str, str]]:
    lines = text.splitlines()
    pairs: list[tuple[str, str]] = []
    index = 0
    while index < len(lines):
        number = index + 1
        line = lines[index]
        index += 1
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = _DOTENV_LINE.match(line)
        if match is None:  # the message names the line, never its content (it may be a pasted value)
            raise ConfigFileError(
                file,
                [Problem(f"line {number}", "is not a KEY=VALUE line", "write NAME=value or a # comment")],
            )
        key, rest = match["key"], match["rest"]
        _check_name(key, file, f"line {number}: key")
        if rest[:1] in {'"', "'"}:
            quote = rest[0]
            body = rest[1:]
            while (end := _closing_quote(body, quote)) is None:
                if index >= len(lines):
                    raise ConfigFileError(
                        file,
                        [
                            Problem(
                                f"line {number}",
                                f"the {quote} quote is not closed",
                                f"add the closing {quote}",
                            )
                        ],
                    )
                body += "\n" + lines[index]
                index += 1
            after = body[end + 1 :].strip()
            if after and not after.startswith("#"):
                raise ConfigFileError(
                    file,
                    [Problem(f"line {number}", "has text after the closing quote", "quote the whole value")],
                )
            value = body[:end]
            pairs.append((key, _unescape(value) if quote == '"' else value))
        else:
            pairs.append((key, re.split(r"\s+#", rest, maxsplit=1)[0].strip()))
    return pairs


def _closing_quote(body: str, quote: str) -> int | None:
    position = 0
    while position < len(body):
        char = body[position]
        if char == "\\" and quote == '"':
            position += 2
            continue
        if char == quote:
            return position
        position += 1
    return None


def _unescape(value: str) -> str:
    return re.sub(r"\\(.)", lambda m: _DOTENV_ESCAPES.get(m[1], m[0]), value, flags=re.DOTALL)


def _environment(tenant: str, environ: Mapping[str, str]) -> Iterator[tuple[str, str]]:
    prefix = env_var_name(tenant, "")
    for variable in sorted(environ):
        if not variable.startswith(prefix):
            continue
        name = variable[len(prefix) :]
        # `a` + `B__X` and `a__b` + `X` are the same variable: such names belong to no tenant for sure.
        if name.startswith("_") or ENV_SEPARATOR in name or not SECRET_NAME.match(name) or ".." in name:
            continue
        yield name, environ[variable]
