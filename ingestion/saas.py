"""The `saas` mode's refusals, checked before anything runs.

A tenant's job config must not make the platform open a connection into the platform's own network
(server-side request forgery) or read its local files. So, in `saas` mode: a connector the registry
marks `allowed_in_saas: false` is refused; a database connection needs TLS as its tap actually
applies it, and a host whose every resolved address is public unicast; a configurable URL (an S3
endpoint, a token URI) needs https and the same host check; file connectors read object stores only.

Every refusal is a `Problem` naming the setting, what is wrong and the fix; secret values are never
echoed. The checks read the tap's source, not its documentation: see docs/platform.md#saas-mode.
"""

from __future__ import annotations

import ipaddress
import json
import re
import socket
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Final, assert_never

from ingestion.addresses import Resolver, address_refusal, inet_aton, is_numeric_host, resolve_host
from ingestion.errors import EXIT_CONFIG, ConfigError, Problem
from ingestion.registry import Category, Connector, Role

__all__ = [
    "EXIT_RETRYABLE",
    "Resolver",
    "SaasProblem",
    "SaasRefusalError",
    "check_host",
    "check_port",
    "check_saas",
    "check_url",
    "refuse_unless_allowed",
    "resolve_host",
]

# Exit code of a refusal that only a later retry can clear (the DNS server did not answer).
EXIT_RETRYABLE: Final = 75

# Settings the checks read (the taps' own names, extractors/*.meltano.yml).
HOST: Final = "host"
PORT: Final = "port"
SQLALCHEMY_URL: Final = "sqlalchemy_url"
PG_SSL_ENABLE: Final = "ssl_enable"
PG_SSL_MODE: Final = "ssl_mode"
PG_SSL_CA: Final = "ssl_certificate_authority"
PG_CLIENT_CERT_ENABLE: Final = "ssl_client_certificate_enable"
PG_CLIENT_CERT: Final = "ssl_client_certificate"
PG_CLIENT_KEY: Final = "ssl_client_private_key"
PG_SSL_STORAGE_DIR: Final = "ssl_storage_directory"
SSH_ENABLE: Final = "ssh_tunnel.enable"
SSH_HOST: Final = "ssh_tunnel.host"
SSH_PORT: Final = "ssh_tunnel.port"
MYSQL_SSL_FILES: Final = ("ssl_ca", "ssl_cert", "ssl_key")
FILES: Final = "files"
S3_ENDPOINT_URL: Final = "s3_endpoint_url"
SERVICE_ACCOUNT_INFO: Final = "service_account_info"
BATCH_CONFIG: Final = "batch_config"

# libpq sslmode values that never fall back to a connection without TLS.
PG_TLS_MODES: Final = ("require", "verify-ca", "verify-full")
PG_DEFAULT_SSL_MODE: Final = "verify-full"  # the tap's and our plugin definition's default
_PG_VERIFY_MODES: Final = ("verify-ca", "verify-full")
_GOOGLE_UNIVERSE: Final = "googleapis.com"

# A top-level setting with one of these names holds a URL the tap connects to.
_URL_SETTING: Final = re.compile(r"^(?:.+_)?(?:url|uri|endpoint)$")
# Names reserved for local use (RFC 6761 localhost/invalid, RFC 6762 local, RFC 8375 home.arpa,
# ICANN's private-use .internal, which holds metadata.google.internal and ec2.internal).
_LOCAL_SUFFIXES: Final = ("localhost", "local", "localdomain", "internal", "home.arpa", "invalid")
_LABEL: Final = re.compile(r"^[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?$")
_SCHEME: Final = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
_URL: Final = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://([^/?#]*)")
_PORT_TEXT: Final = re.compile(r"^[0-9]{1,5}$")
_MAX_NAME: Final = 253
_MAX_PORT: Final = 65535
_HOST_FIX: Final = "give the server's public host name or IP address alone, e.g. db.example.com"
_PUBLIC_FIX: Final = "use the server's public address or name; saas mode reaches public internet hosts only"


@dataclass(frozen=True)
class SaasProblem(Problem):
    """A refusal; `retryable` when only a later attempt can clear it (a DNS server did not answer)."""

    retryable: bool = False


class SaasRefusalError(ConfigError):
    """The job cannot run in saas mode; every problem at once. Exit 2, or 75 when all are retryable."""

    def __init__(self, connector: Connector, problems: Sequence[Problem], source: Path | None = None) -> None:
        where = f"{source}: " if source is not None else ""
        super().__init__(
            "\n".join(
                f"{where}saas mode refuses {connector.id} at {p.path}: {p.message}; fix: {p.fix}"
                for p in problems
            )
        )
        self.connector = connector
        self.problems = list(problems)
        self.source = source
        self.retryable = bool(problems) and all(isinstance(p, SaasProblem) and p.retryable for p in problems)
        self.exit_code = EXIT_RETRYABLE if self.retryable else EXIT_CONFIG


def check_saas(
    connector: Connector, config: Mapping[str, Any], *, resolver: Resolver | None = None
) -> list[Problem]:
    """Why `connector` with these settings must not run in saas mode (empty: it may run).

    `config` is the tap's settings as it will receive them: the job's config AND its resolved
    secrets (sqlalchemy_url, TLS keys and service account keys are secrets). Problem paths are
    setting names (dotted for nested ones, `files[0].path` for list entries).
    """
    if not connector.allowed_in_saas:
        key = "extractor" if connector.has_role(Role.EXTRACTOR) else "loader"
        return [
            SaasProblem(
                key,
                f"connector type {connector.id!r} ({connector.label}) is not allowed in saas mode "
                "(registry/connectors.yaml: allowed_in_saas: false)",
                "run this job on a self_hosted platform, or use a connector type allowed in saas mode",
            )
        ]
    resolve = resolver or resolve_host
    problems: list[Problem] = []
    if _setting(config, BATCH_CONFIG) is not None:
        problems.append(
            SaasProblem(
                BATCH_CONFIG,
                "is set; BATCH messages make the tap write files where storage.root says, "
                "on the platform's machine",
                f"remove {BATCH_CONFIG}: the platform loads RECORD messages",
            )
        )
    specific = _PLUGIN_CHECKS.get(connector.plugin)
    match connector.category:
        case Category.DATABASE | Category.FILES:
            if specific is None:  # fail closed: no known TLS or path settings to check
                problems.append(_unchecked(connector))
        case Category.SAAS_API | Category.LAKEHOUSE:
            pass
        case _:
            assert_never(connector.category)
    if specific is not None:
        problems += specific(config, resolve)
    handled = _HANDLED_URLS.get(connector.plugin, ())
    for key, value in config.items():
        if _URL_SETTING.match(key) and key not in handled and value is not None:
            problems += check_url(value, key, resolver=resolve)
    return problems


def refuse_unless_allowed(
    connector: Connector,
    config: Mapping[str, Any],
    *,
    resolver: Resolver | None = None,
    source: Path | None = None,
) -> None:
    """Raise SaasRefusalError with every problem `check_saas` finds; `source` (the job file) prefixes them."""
    problems = check_saas(connector, config, resolver=resolver)
    if problems:
        raise SaasRefusalError(connector, problems, source)


# --- hosts, ports and URLs ---------------------------------------------------------------------


def check_host(host: object, setting: str, *, resolver: Resolver, resolve: bool = True) -> list[SaasProblem]:
    """Refuse a host value that is not a plain name or address, or that reaches a non-public address.

    Every address the resolver returns is checked. With `resolve=False` (a database reached through
    an SSH tunnel: the bastion resolves it) only the value's form is checked.
    """
    if not isinstance(host, str) or not host:
        what = "is not set" if host is None or host == "" else f"is a {type(host).__name__}, not a host name"
        return [SaasProblem(setting, what, "set it to the server's public host name")]
    syntax = _host_syntax(host, setting)
    if syntax is not None:
        return [syntax]
    literal = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if ":" in literal:
        return _ipv6_literal(host, literal, setting)
    name = host.removesuffix(".")
    parts = name.split(".")
    if is_numeric_host(name):
        return _ipv4_literal(host, inet_aton(name), setting)
    problem = _name_problem(host, name, parts, setting)
    if problem is not None:
        return [problem]
    return _resolved(host, name, setting, resolver) if resolve else []


def check_port(value: object, setting: str) -> list[SaasProblem]:
    """Refuse a port that is not a whole number in 1..65535 (unset: the tap's default applies)."""
    if value is None:
        return []
    port: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        port = value
    elif isinstance(value, str) and _PORT_TEXT.match(value):
        port = int(value)
    if port is None or not 1 <= port <= _MAX_PORT:
        return [SaasProblem(setting, f"{value!r} is not a TCP port", "use a whole number from 1 to 65535")]
    return []


def check_url(value: object, setting: str, *, resolver: Resolver) -> list[SaasProblem]:
    """Refuse a URL that is not https, carries user information or names a non-public host.

    Only the host is quoted in messages: the URL may come from a secret.
    """
    if not isinstance(value, str) or any(ch.isspace() or ch == "\\" or not ch.isprintable() for ch in value):
        return [
            SaasProblem(
                setting,
                "is not a URL without whitespace, control characters or backslashes",
                "write it as https://<public host>[:port]/path",
            )
        ]
    match = _URL.match(value)
    if match is None:
        return [
            SaasProblem(setting, "is not an absolute URL", "write it as https://<public host>[:port]/path")
        ]
    scheme, authority = match.group(1).lower(), match.group(2)
    problems: list[SaasProblem] = []
    if scheme != "https":
        problems.append(
            SaasProblem(setting, f"uses {scheme}://; saas mode requires TLS", "use the server's https:// URL")
        )
    if "@" in authority:
        return [
            *problems,
            SaasProblem(
                setting,
                "carries user information (user:password@) in the URL",
                "remove it; credentials belong in their own secret settings",
            ),
        ]
    if authority.startswith("["):
        end = authority.find("]") + 1 or len(authority)
        host, rest = authority[:end], authority[end:]
    else:
        host, colon, port = authority.partition(":")
        rest = colon + port
    if rest and (not rest.startswith(":") or check_port(rest[1:], setting)):
        problems.append(SaasProblem(setting, "has a port that is not 1..65535", "use a whole number port"))
    return problems + check_host(host, setting, resolver=resolver)


# (test, what is wrong, fix) for a host value, first match wins; the value is not quoted when it
# holds '@' (it may be user:password@host).
_HOST_FORM: Final[tuple[tuple[Callable[[str], bool], str, str], ...]] = (
    (lambda h: "@" in h, "contains '@' (user information)", _HOST_FIX + "; the user goes in its own setting"),
    (lambda h: bool(_SCHEME.match(h)) and "://" in h, "is a URL, not a host", _HOST_FIX + " (no scheme)"),
    (lambda h: "/" in h or "\\" in h, "contains a path separator", _HOST_FIX),
    (
        lambda h: any(ch.isspace() or not ch.isprintable() for ch in h),
        "contains whitespace or control characters",
        _HOST_FIX,
    ),
    (
        lambda h: not h.isascii(),
        "contains non-ASCII characters (IDNA normalisation can turn them into an address, e.g. "
        "full-width digits into 127.0.0.1)",
        "write the name in its ASCII (xn--) form",
    ),
    (lambda h: "," in h, "lists several hosts", "give one host"),
)


def _host_syntax(host: str, setting: str) -> SaasProblem | None:
    shown = "the value" if "@" in host else repr(host)
    for test, message, fix in _HOST_FORM:
        if test(host):
            return SaasProblem(setting, f"{shown} {message}", fix)
    return None


def _name_problem(host: str, name: str, parts: list[str], setting: str) -> SaasProblem | None:
    if len(name) > _MAX_NAME or not all(_LABEL.match(part) for part in parts):
        return SaasProblem(setting, f"{host!r} is not a valid host name", _HOST_FIX)
    if len(parts) == 1:
        return SaasProblem(
            setting,
            f"{host!r} is a single-label name, resolved through the platform's own hosts file "
            "and DNS search domains",
            "use the server's fully qualified public name, e.g. db.example.com",
        )
    lowered = name.lower()
    suffix = next((s for s in _LOCAL_SUFFIXES if lowered == s or lowered.endswith(f".{s}")), None)
    if suffix is not None:
        return SaasProblem(
            setting, f"{host!r} is under .{suffix}, a name reserved for local networks", _PUBLIC_FIX
        )
    return None


def _ipv6_literal(host: str, literal: str, setting: str) -> list[SaasProblem]:
    try:
        address = ipaddress.IPv6Address(literal)
    except ValueError:
        if re.match(r"^[^:\[\]]+:[0-9]*$", host):
            return [
                SaasProblem(setting, f"{host!r} contains a port", "put the port in its own `port` setting")
            ]
        return [SaasProblem(setting, f"{host!r} is not a valid IPv6 address or host name", _HOST_FIX)]
    why = address_refusal(address)
    return [] if why is None else [SaasProblem(setting, f"{host!r} is {why}", _PUBLIC_FIX)]


def _ipv4_literal(host: str, address: ipaddress.IPv4Address | None, setting: str) -> list[SaasProblem]:
    if address is None:
        return [SaasProblem(setting, f"{host!r} is not a valid IPv4 address", _HOST_FIX)]
    why = address_refusal(address)
    if why is not None:
        shown = host if host == str(address) else f"{host!r} (the address {address})"
        return [SaasProblem(setting, f"{shown} is {why}", _PUBLIC_FIX)]
    if host != str(address):  # resolvers and drivers disagree on such forms: accept one spelling
        return [
            SaasProblem(
                setting, f"{host!r} is a non-canonical spelling of {address}", f"write it as {address}"
            )
        ]
    return []


def _resolved(host: str, name: str, setting: str, resolver: Resolver) -> list[SaasProblem]:
    try:
        answers = resolver(name)
    except OSError as error:
        temporary = isinstance(error, socket.gaierror) and error.errno in (socket.EAI_AGAIN, socket.EAI_FAIL)
        reason = error.strerror or str(error)
        if temporary:
            return [
                SaasProblem(
                    setting,
                    f"{host!r} could not be resolved now ({reason})",
                    "retry later; the DNS server did not answer",
                    retryable=True,
                )
            ]
        return [
            SaasProblem(setting, f"{host!r} does not resolve ({reason})", "check the host name for typos")
        ]
    if not answers:
        return [SaasProblem(setting, f"{host!r} resolves to no address", "check the host name")]
    refused: list[str] = []
    for answer in answers:
        try:
            address = ipaddress.ip_address(answer)
        except ValueError:
            refused.append(f"{answer!r}, not an IP address")
            continue
        why = address_refusal(address)
        if why is not None:
            refused.append(f"{address}, {why}")
    if refused:
        return [SaasProblem(setting, f"{host!r} resolves to " + "; and to ".join(refused), _PUBLIC_FIX)]
    return []


# --- per tap -------------------------------------------------------------------------------------


def _postgres(config: Mapping[str, Any], resolver: Resolver) -> list[SaasProblem]:
    """meltanolabs-tap-postgres 0.10.0 (tap_postgres/connection_parameters.py): with ssl_enable the
    libpq sslmode is ssl_mode; a certificate value that names an existing file is used as that file,
    anything else is written to ssl_storage_directory; sqlalchemy_url replaces all of it."""
    problems: list[SaasProblem] = []
    if _setting(config, SQLALCHEMY_URL) is not None:
        problems.append(
            SaasProblem(
                SQLALCHEMY_URL,
                "is set; the tap then ignores every ssl_* setting, and the URL's query can carry libpq "
                "options (hostaddr, service) that bypass the host check",
                "remove it and set host, port, user, password, database, ssl_enable and ssl_mode",
            )
        )
    if _flag(_setting(config, SSH_ENABLE)):  # the bastion, not the platform, connects to `host`
        problems += check_host(_setting(config, SSH_HOST), SSH_HOST, resolver=resolver)
        problems += check_port(_setting(config, SSH_PORT), SSH_PORT)
        problems += check_host(_setting(config, HOST), HOST, resolver=resolver, resolve=False)
    elif _setting(config, SQLALCHEMY_URL) is None or _setting(config, HOST) is not None:
        problems += check_host(_setting(config, HOST), HOST, resolver=resolver)
    problems += check_port(_setting(config, PORT), PORT)
    if _flag(_setting(config, PG_SSL_ENABLE)) is not True:
        problems.append(
            SaasProblem(
                PG_SSL_ENABLE,
                f"{_state(_setting(config, PG_SSL_ENABLE))}; saas mode requires TLS to the database",
                f"set {PG_SSL_ENABLE}: true with {PG_SSL_MODE}: verify-full (and {PG_SSL_CA}) or require",
            )
        )
    mode = _setting(config, PG_SSL_MODE)
    mode = PG_DEFAULT_SSL_MODE if mode is None else mode
    if mode not in PG_TLS_MODES:
        problems.append(
            SaasProblem(
                PG_SSL_MODE,
                f"is {mode!r}, which lets libpq connect without TLS or is no sslmode",
                f"use one of {', '.join(PG_TLS_MODES)} (verify-full also checks the host name)",
            )
        )
    elif mode in _PG_VERIFY_MODES:
        problems += _pem(config, PG_SSL_CA, f"or use {PG_SSL_MODE}: require (encrypted, server unchecked)")
    if _flag(_setting(config, PG_CLIENT_CERT_ENABLE)):
        problems += _pem(config, PG_CLIENT_CERT, f"or set {PG_CLIENT_CERT_ENABLE}: false")
        problems += _pem(config, PG_CLIENT_KEY, f"or set {PG_CLIENT_CERT_ENABLE}: false")
    storage = _setting(config, PG_SSL_STORAGE_DIR)
    if storage is not None and not _relative_inside(storage):
        problems.append(
            SaasProblem(
                PG_SSL_STORAGE_DIR,
                f"{storage!r} is not a relative folder inside the run directory; the tap writes "
                "certificates and keys there",
                f"remove {PG_SSL_STORAGE_DIR} (default .secrets) or use a relative path without '..'",
            )
        )
    return problems


def _mysql(config: Mapping[str, Any], resolver: Resolver) -> list[SaasProblem]:
    """pipelinewise-tap-mysql 1.6.0 (tap_mysql/connection.py) with PyMySQL 1.1 always attempts TLS
    without checking the certificate, whatever `ssl` says (it passes ssl={"": True}); only ssl_ca +
    ssl_cert + ssl_key (PEM text, all three) make it check the server's certificate and host name."""
    problems = check_host(_setting(config, HOST), HOST, resolver=resolver)
    problems += check_port(_setting(config, PORT), PORT)
    why = (
        "saas mode requires a checked TLS connection, and the tap checks the server's certificate "
        "only when ssl_ca, ssl_cert and ssl_key are all set"
    )
    for key in MYSQL_SSL_FILES:
        problems += _pem(config, key, "", why=why)
    return problems


def _spreadsheets(config: Mapping[str, Any], resolver: Resolver) -> list[SaasProblem]:
    """tap-spreadsheets 1.1.2 opens each `files[].path` glob with fsspec: local paths and any other
    fsspec protocol are the platform's own files or network; only s3:// objects are the tenant's."""
    problems = _file_paths(config, "s3://", "s3://<bucket>/<prefix>/*.csv")
    endpoint = _setting(config, S3_ENDPOINT_URL)
    if endpoint is not None:
        problems += check_url(endpoint, S3_ENDPOINT_URL, resolver=resolver)
    return problems


def _google_drive(config: Mapping[str, Any], resolver: Resolver) -> list[SaasProblem]:
    """gdrive-fsspec authenticates with google-auth's service account credentials, which post a signed
    JWT to the key's own `token_uri`: a URL the tenant controls."""
    problems = _file_paths(config, "gdrive://", "gdrive://exports/*.csv")
    info = _setting(config, SERVICE_ACCOUNT_INFO)
    if info is None:
        return problems
    key: object = info
    if isinstance(info, str):
        try:
            key = json.loads(info)
        except json.JSONDecodeError:
            key = None
    if not isinstance(key, Mapping):
        return [
            *problems,
            SaasProblem(SERVICE_ACCOUNT_INFO, "is not a JSON object", "paste the key file's whole text"),
        ]
    token_uri = f"{SERVICE_ACCOUNT_INFO}.token_uri"
    problems += check_url(key.get("token_uri"), token_uri, resolver=resolver)
    universe = key.get("universe_domain", _GOOGLE_UNIVERSE)
    if universe != _GOOGLE_UNIVERSE:
        problems.append(
            SaasProblem(
                f"{SERVICE_ACCOUNT_INFO}.universe_domain",
                f"is {universe!r}, not {_GOOGLE_UNIVERSE}",
                "use a key of a service account in Google Cloud's public universe",
            )
        )
    return problems


_PLUGIN_CHECKS: Final[dict[str, Callable[[Mapping[str, Any], Resolver], list[SaasProblem]]]] = {
    "tap-postgres": _postgres,
    "tap-mysql": _mysql,
    "tap-spreadsheets": _spreadsheets,
    "tap-google-drive": _google_drive,
}
# URL settings a plugin check already judged (or refuses outright).
_HANDLED_URLS: Final[dict[str, tuple[str, ...]]] = {
    "tap-postgres": (SQLALCHEMY_URL,),
    "tap-spreadsheets": (S3_ENDPOINT_URL,),
}


def _unchecked(connector: Connector) -> SaasProblem:
    return SaasProblem(
        "extractor",
        f"{connector.category.value} connector {connector.id!r} (plugin {connector.plugin}) has no saas "
        "checks of its TLS, host or path settings",
        "run it on a self_hosted platform, or add its checks to ingestion/saas.py first",
    )


def _file_paths(config: Mapping[str, Any], prefix: str, example: str) -> list[SaasProblem]:
    files = _setting(config, FILES)
    if files is None:
        return []
    if not isinstance(files, list):
        return [
            SaasProblem(FILES, "is not a list of file entries", f"give a list of {{path: {example}, ...}}")
        ]
    problems: list[SaasProblem] = []
    for index, entry in enumerate(files):
        path = entry.get("path") if isinstance(entry, Mapping) else None
        if not isinstance(path, str) or not path.startswith(prefix) or "::" in path:
            problems.append(
                SaasProblem(
                    f"{FILES}[{index}].path",
                    f"{path!r} is not a {prefix} path; saas mode reads no local files or other protocols",
                    f"use {example}",
                )
            )
    return problems


def _pem(config: Mapping[str, Any], key: str, alternative: str, *, why: str = "") -> list[SaasProblem]:
    """A certificate or key setting must hold PEM text: a file path would name the platform's files."""
    value = _setting(config, key)
    if isinstance(value, str) and "-----BEGIN " in value and "-----END " in value:
        return []
    state = "is not set" if value is None else "is not PEM text (a file path would name the platform's files)"
    fix = f"paste the PEM text (-----BEGIN ...-----) {alternative}".strip()
    return [SaasProblem(key, f"{state}; {why}" if why else state, fix)]


def _relative_inside(value: object) -> bool:
    if not isinstance(value, str) or not value or value.startswith("~") or "\\" in value:
        return False
    path = PurePosixPath(value)
    return not path.is_absolute() and ".." not in path.parts


def _setting(config: Mapping[str, Any], name: str) -> Any:
    """A setting by its Meltano name: `a.b` as a flat key or nested ({a: {b: ...}})."""
    if name in config:
        return config[name]
    node: Any = config
    for part in name.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def _flag(value: object) -> bool | None:
    """A boolean setting as Meltano passes it (a bool, or 'true'/'false' from the environment)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    return None


def _state(value: object) -> str:
    return "is not set" if value is None else f"is {value!r}"
