"""SaaS mode refusals: every kind, the numeric and IPv6 spellings of private addresses, the allowed case."""

from __future__ import annotations

import ipaddress
import json
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingestion.addresses import address_refusal, inet_aton, resolve_host
from ingestion.errors import EXIT_CONFIG, ConfigError, Problem
from ingestion.registry import Connector, Registry, load_registry
from ingestion.saas import (
    EXIT_RETRYABLE,
    SaasProblem,
    SaasRefusalError,
    check_host,
    check_saas,
    refuse_unless_allowed,
)

PUBLIC = "93.184.216.34"
PUBLIC_V6 = "2606:2800:220:1:248:1893:25c8:1946"
CA = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
KEY = "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n"


class StubResolver:
    """Answers every name with fixed addresses (or raises) and remembers what it was asked."""

    def __init__(self, *answers: str, error: OSError | None = None) -> None:
        self.answers = list(answers)
        self.error = error
        self.asked: list[str] = []

    def __call__(self, host: str) -> list[str]:
        self.asked.append(host)
        if self.error is not None:
            raise self.error
        return self.answers


@pytest.fixture(scope="module")
def registry() -> Registry:
    return load_registry()


def allowed(registry: Registry, connector_id: str) -> Connector:
    """The connector as if the registry allowed it in saas mode, to reach its connection checks."""
    return registry.connector(connector_id).model_copy(update={"allowed_in_saas": True})


def postgres_config(**overrides: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "host": "db.example.com",
        "port": 5432,
        "user": "reader",
        "password": "s3cret-pw",
        "database": "shop",
        "ssl_enable": True,
        "ssl_mode": "verify-full",
        "ssl_certificate_authority": CA,
    }
    return {**config, **overrides}


def mysql_config(**overrides: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "host": "db.example.com",
        "port": 3306,
        "user": "reader",
        "password": "s3cret-pw",
        "ssl": "true",
        "ssl_ca": CA,
        "ssl_cert": CA,
        "ssl_key": KEY,
    }
    return {**config, **overrides}


def paths(problems: list[Problem]) -> list[str]:
    return [p.path for p in problems]


def host_problems(host: object, resolver: StubResolver | None = None) -> list[SaasProblem]:
    return check_host(host, "host", resolver=resolver or StubResolver(PUBLIC))


# --- the allowed cases ---------------------------------------------------------------------------


def test_a_public_postgres_with_verified_tls_may_run(registry: Registry) -> None:
    resolver = StubResolver(PUBLIC, PUBLIC_V6)
    assert check_saas(allowed(registry, "postgres"), postgres_config(), resolver=resolver) == []
    assert resolver.asked == ["db.example.com"]
    refuse_unless_allowed(allowed(registry, "postgres"), postgres_config(), resolver=resolver)


def test_a_public_mysql_with_its_three_pem_settings_may_run(registry: Registry) -> None:
    assert check_saas(allowed(registry, "mysql"), mysql_config(), resolver=StubResolver(PUBLIC)) == []


@pytest.mark.parametrize("mode", ["require", "verify-ca", "verify-full", None])
def test_postgres_accepts_every_sslmode_that_never_falls_back_to_plaintext(
    registry: Registry, mode: str | None
) -> None:
    config = postgres_config(ssl_mode=mode)
    if mode is None:
        del config["ssl_mode"]  # the tap's default is verify-full
    assert check_saas(allowed(registry, "postgres"), config, resolver=StubResolver(PUBLIC)) == []


@pytest.mark.parametrize(
    "host", [PUBLIC, PUBLIC_V6, f"[{PUBLIC_V6}]", "db.example.com.", "64:ff9b::5db8:d822"]
)
def test_public_literals_and_names_pass(host: str) -> None:
    assert host_problems(host) == []


def test_allowed_connectors_without_settings_to_check_pass(registry: Registry) -> None:
    sheets = registry.connector("google_sheets")
    assert check_saas(sheets, {"spreadsheet_id": "abc", "refresh_token": "x"}) == []


# --- (a) the registry --------------------------------------------------------------------------------


@pytest.mark.parametrize("connector_id", ["markdown_kv", "postgres", "mysql"])
def test_connectors_the_registry_keeps_out_of_saas_are_refused(registry: Registry, connector_id: str) -> None:
    connector = registry.connector(connector_id)
    assert not connector.allowed_in_saas
    [problem] = check_saas(connector, postgres_config(), resolver=StubResolver(PUBLIC))
    assert problem.path == "extractor"
    assert f"'{connector_id}'" in problem.message
    assert "allowed_in_saas: false" in problem.message
    assert "self_hosted" in problem.fix


def test_a_database_or_files_connector_without_known_checks_fails_closed(registry: Registry) -> None:
    unknown = allowed(registry, "postgres").model_copy(update={"id": "oracle", "plugin": "tap-oracle"})
    problems = check_saas(unknown, {"host": "db.example.com"}, resolver=StubResolver(PUBLIC))
    assert paths(problems) == ["extractor"]
    assert "no saas checks" in problems[0].message


# --- (b) database TLS --------------------------------------------------------------------------------


@pytest.mark.parametrize("enable", [False, None, "false", "yes"])
def test_postgres_without_ssl_enable_is_refused(registry: Registry, enable: object) -> None:
    problems = check_saas(
        allowed(registry, "postgres"), postgres_config(ssl_enable=enable), resolver=StubResolver(PUBLIC)
    )
    assert paths(problems) == ["ssl_enable"]
    assert "requires TLS" in problems[0].message
    assert "ssl_enable: true" in problems[0].fix


def test_postgres_ssl_enable_as_meltano_env_text_counts(registry: Registry) -> None:
    config = postgres_config(ssl_enable="true")
    assert check_saas(allowed(registry, "postgres"), config, resolver=StubResolver(PUBLIC)) == []


@pytest.mark.parametrize("mode", ["disable", "allow", "prefer", "required"])
def test_postgres_sslmodes_that_allow_plaintext_are_refused(registry: Registry, mode: str) -> None:
    problems = check_saas(
        allowed(registry, "postgres"), postgres_config(ssl_mode=mode), resolver=StubResolver(PUBLIC)
    )
    assert paths(problems) == ["ssl_mode"]
    assert repr(mode) in problems[0].message
    assert "require, verify-ca, verify-full" in problems[0].fix


@pytest.mark.parametrize("ca", [None, "/etc/ssl/certs/ca-certificates.crt", "~/.postgresql/root.crt"])
def test_postgres_verify_modes_need_the_ca_as_pem_text(registry: Registry, ca: str | None) -> None:
    problems = check_saas(
        allowed(registry, "postgres"),
        postgres_config(ssl_certificate_authority=ca),
        resolver=StubResolver(PUBLIC),
    )
    assert paths(problems) == ["ssl_certificate_authority"]
    assert ("not set" if ca is None else "not PEM text") in problems[0].message
    assert "ssl_mode: require" in problems[0].fix


def test_postgres_client_certificates_must_be_pem_text_not_paths(registry: Registry) -> None:
    config = postgres_config(
        ssl_client_certificate_enable=True,
        ssl_client_certificate="/configs/runner.yaml",
        ssl_client_private_key=None,
    )
    problems = check_saas(allowed(registry, "postgres"), config, resolver=StubResolver(PUBLIC))
    assert paths(problems) == ["ssl_client_certificate", "ssl_client_private_key"]
    assert "/configs/runner.yaml" not in " ".join(p.message for p in problems)
    good = postgres_config(
        ssl_client_certificate_enable=True, ssl_client_certificate=CA, ssl_client_private_key=KEY
    )
    assert check_saas(allowed(registry, "postgres"), good, resolver=StubResolver(PUBLIC)) == []


@pytest.mark.parametrize("folder", ["/configs", "../../state", "certs/../../x", "~/x"])
def test_postgres_certificate_folder_must_stay_in_the_run_directory(registry: Registry, folder: str) -> None:
    problems = check_saas(
        allowed(registry, "postgres"),
        postgres_config(ssl_storage_directory=folder),
        resolver=StubResolver(PUBLIC),
    )
    assert paths(problems) == ["ssl_storage_directory"]
    assert (
        check_saas(
            allowed(registry, "postgres"),
            postgres_config(ssl_storage_directory="tls"),
            resolver=StubResolver(PUBLIC),
        )
        == []
    )


def test_postgres_sqlalchemy_url_is_refused_without_echoing_it(registry: Registry) -> None:
    url = "postgresql://reader:s3cret-pw@db.example.com/shop?sslmode=require&hostaddr=127.0.0.1"
    config = {"sqlalchemy_url": url, "ssl_enable": True, "ssl_certificate_authority": CA}
    problems = check_saas(allowed(registry, "postgres"), config, resolver=StubResolver(PUBLIC))
    assert paths(problems) == ["sqlalchemy_url"]
    assert "hostaddr" in problems[0].message
    assert "s3cret-pw" not in str(problems)


@pytest.mark.parametrize("ssl", ["true", "false", True, None])
def test_mysql_ssl_setting_neither_helps_nor_hurts(registry: Registry, ssl: object) -> None:
    # PyMySQL attempts unverified TLS whatever `ssl` says; only the PEM settings make it check the server
    config = mysql_config(ssl=ssl)
    assert check_saas(allowed(registry, "mysql"), config, resolver=StubResolver(PUBLIC)) == []
    no_ca = mysql_config(ssl=ssl, ssl_ca=None)
    assert paths(check_saas(allowed(registry, "mysql"), no_ca, resolver=StubResolver(PUBLIC))) == ["ssl_ca"]


def test_mysql_needs_all_three_pem_settings_to_check_the_server(registry: Registry) -> None:
    config = mysql_config(ssl_cert=None, ssl_key="key.pem")
    problems = check_saas(allowed(registry, "mysql"), config, resolver=StubResolver(PUBLIC))
    assert paths(problems) == ["ssl_cert", "ssl_key"]
    assert all("checks the server's certificate only when" in p.message for p in problems)


# --- (b) database hosts and ports --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "message"),
    [
        ("reader:pw@db.example.com", "the value contains '@'"),
        ("db.example.com/shop", "path separator"),
        ("db.example.com\\shop", "path separator"),
        ("/var/run/postgresql", "path separator"),
        ("db .example.com", "whitespace"),
        ("db.example.com\n", "whitespace"),
        ("postgres://db.example.com", "is a URL"),
        ("https://db.example.com", "is a URL"),
        ("db.example.com:5432", "contains a port"),
        ("db1.example.com,db2.example.com", "several hosts"),
        ("\uff11\uff12\uff17.\uff10.\uff10.\uff11", "non-ASCII"),
        ("db_-.example..com", "not a valid host name"),
        ("", "is not set"),
        (None, "is not set"),
        (5432, "is a int, not a host name"),
    ],
)
def test_host_values_that_are_not_a_plain_host_are_refused(host: object, message: str) -> None:
    resolver = StubResolver(PUBLIC)
    [problem] = host_problems(host, resolver)
    assert problem.path == "host"
    assert message in problem.message
    assert problem.fix
    assert resolver.asked == []
    assert "pw@" not in problem.message


@pytest.mark.parametrize(
    ("host", "address", "kind"),
    [
        ("2130706433", "127.0.0.1", "loopback"),
        ("0x7f000001", "127.0.0.1", "loopback"),
        ("0177.0.0.1", "127.0.0.1", "loopback"),
        ("127.1", "127.0.0.1", "loopback"),
        ("0x7f.1", "127.0.0.1", "loopback"),
        ("127.0.1", "127.0.0.1", "loopback"),
        ("127.000.000.001", "127.0.0.1", "loopback"),
        ("017700000001", "127.0.0.1", "loopback"),
        ("127.0.0.1.", "127.0.0.1", "loopback"),
        ("0", "0.0.0.0", "unspecified"),  # noqa: S104 - a refused host value, nothing binds here
        ("2852039166", "169.254.169.254", "cloud metadata"),
        ("0xa9.0xfe.0xa9.0xfe", "169.254.169.254", "cloud metadata"),
        ("10.1", "10.0.0.1", "private"),
        ("0300.0250.1.1", "192.168.1.1", "private"),
    ],
)
def test_numeric_spellings_are_read_as_the_c_library_reads_them(host: str, address: str, kind: str) -> None:
    resolver = StubResolver(PUBLIC)
    [problem] = host_problems(host, resolver)
    assert f"the address {address}" in problem.message
    assert kind in problem.message
    assert resolver.asked == []  # decided without asking the resolver
    assert inet_aton(host.removesuffix(".")) == ipaddress.IPv4Address(address)
    assert socket.inet_ntoa(socket.inet_aton(host.removesuffix("."))) == address  # as libc reads it


def test_a_public_address_in_a_non_canonical_spelling_is_refused_with_its_canonical_form() -> None:
    [problem] = host_problems("1572395042")
    assert "non-canonical spelling of 93.184.216.34" in problem.message
    assert problem.fix == "write it as 93.184.216.34"


@pytest.mark.parametrize("host", ["256.1.1.1", "1.2.3.4.5", "08.1.1.1", "0x", "4294967296", "1.2.65536"])
def test_invalid_numeric_hosts_are_refused(host: str) -> None:
    [problem] = host_problems(host)
    assert "not a valid IPv4 address" in problem.message


@pytest.mark.parametrize(
    ("host", "kind"),
    [
        ("127.0.0.1", "loopback"),
        ("127.255.255.254", "loopback"),
        ("10.0.0.5", "private address (RFC 1918)"),
        ("172.16.0.1", "private address (RFC 1918)"),
        ("172.31.255.255", "private address (RFC 1918)"),
        ("192.168.1.1", "private address (RFC 1918)"),
        ("100.64.0.1", "carrier-grade NAT"),
        ("100.127.255.254", "carrier-grade NAT"),
        ("169.254.1.1", "link-local"),
        ("169.254.169.254", "cloud metadata"),
        ("169.254.170.2", "cloud metadata"),
        ("100.100.100.200", "cloud metadata"),
        ("168.63.129.16", "cloud metadata"),
        ("0.0.0.0", "unspecified"),  # noqa: S104 - a refused host value, nothing binds here
        ("224.0.0.1", "multicast"),
        ("239.255.255.250", "multicast"),
        ("240.0.0.1", "reserved"),
        ("255.255.255.255", "broadcast"),
        ("192.0.2.10", "documentation"),
        ("198.51.100.10", "documentation"),
        ("203.0.113.10", "documentation"),
        ("198.18.0.1", "benchmarking"),
        ("192.0.0.8", "IETF protocol assignment"),
    ],
)
def test_ipv4_literals_outside_public_unicast_are_refused(host: str, kind: str) -> None:
    [problem] = host_problems(host)
    assert kind in problem.message
    assert "public" in problem.fix


@pytest.mark.parametrize(
    ("host", "kind"),
    [
        ("::1", "loopback"),
        ("[::1]", "loopback"),
        ("0:0:0:0:0:0:0:1", "loopback"),
        ("::", "unspecified"),
        ("::ffff:127.0.0.1", "IPv4-mapped IPv6 address of 127.0.0.1, a loopback"),
        ("::ffff:7f00:1", "IPv4-mapped IPv6 address of 127.0.0.1, a loopback"),
        ("[::ffff:169.254.169.254]", "IPv4-mapped IPv6 address of 169.254.169.254, a cloud metadata"),
        ("::ffff:10.0.0.1", "IPv4-mapped IPv6 address of 10.0.0.1, a private"),
        ("64:ff9b::127.0.0.1", "NAT64 IPv6 address of 127.0.0.1, a loopback"),
        ("64:ff9b::a9fe:a9fe", "NAT64 IPv6 address of 169.254.169.254, a cloud metadata"),
        ("64:ff9b:1::a00:1", "local-use NAT64"),
        ("::127.0.0.1", "IPv4-compatible"),
        ("::ffff:0:7f00:1", "reserved"),
        ("fc00::1", "unique local"),
        ("fd12:3456:789a::1", "unique local"),
        ("fd00:ec2::254", "cloud metadata"),
        ("fe80::1", "link-local"),
        ("fe80::1%eth0", "scoped"),
        ("fec0::1", "site-local"),
        ("ff02::1", "multicast"),
        ("2001:db8::1", "documentation"),
        ("3fff::1", "documentation"),
        ("2002:7f00:1::1", "6to4 tunnel address (deprecated, RFC 7526) embedding 127.0.0.1"),
        ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "Teredo"),
        ("100::1", "discard-only"),
    ],
)
def test_ipv6_forms_outside_public_unicast_are_refused(host: str, kind: str) -> None:
    resolver = StubResolver(PUBLIC)
    [problem] = host_problems(host, resolver)
    assert kind in problem.message
    assert resolver.asked == []


@pytest.mark.parametrize(
    ("host", "why"),
    [
        ("localhost", "single-label"),
        ("metadata", "single-label"),
        ("instance-data", "single-label"),
        ("postgres", "single-label"),
        ("metadata.google.internal", "under .internal"),
        ("instance-data.ec2.internal", "under .internal"),
        ("db.localhost", "under .localhost"),
        ("printer.local", "under .local"),
        ("nas.home.arpa", "under .home.arpa"),
        ("db.invalid", "under .invalid"),
        ("METADATA.GOOGLE.INTERNAL.", "under .internal"),
    ],
)
def test_names_of_local_networks_are_refused_before_resolving(host: str, why: str) -> None:
    resolver = StubResolver(PUBLIC)
    [problem] = host_problems(host, resolver)
    assert why in problem.message
    assert resolver.asked == []


@pytest.mark.parametrize(
    ("answers", "refused"),
    [
        (["10.0.0.5"], "10.0.0.5, a private address"),
        ([PUBLIC, "10.0.0.5"], "10.0.0.5, a private address"),
        ([PUBLIC_V6, "::1"], "::1, the loopback address"),
        (["::ffff:127.0.0.1"], "IPv4-mapped IPv6 address of 127.0.0.1"),
        (["169.254.169.254"], "cloud metadata"),
        (["100.64.1.1"], "carrier-grade NAT"),
        (["fe80::1%eth0"], "scoped"),
        (["not-an-address"], "'not-an-address', not an IP address"),
    ],
)
def test_every_resolved_address_is_checked(answers: list[str], refused: str) -> None:
    resolver = StubResolver(*answers)
    [problem] = host_problems("db.example.com", resolver)
    assert resolver.asked == ["db.example.com"]
    assert problem.message.startswith("'db.example.com' resolves to ")
    assert refused in problem.message
    assert PUBLIC not in problem.message


def test_a_name_that_does_not_resolve_is_refused_for_good() -> None:
    error = socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    [problem] = host_problems("db.example.com", StubResolver(error=error))
    assert problem.message == "'db.example.com' does not resolve (Name or service not known)"
    assert isinstance(problem, SaasProblem)
    assert not problem.retryable


def test_a_name_the_dns_server_did_not_answer_for_is_retryable() -> None:
    error = socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")
    [problem] = host_problems("db.example.com", StubResolver(error=error))
    assert "could not be resolved now" in problem.message
    assert problem.retryable


def test_a_name_with_no_address_is_refused() -> None:
    [problem] = host_problems("db.example.com", StubResolver())
    assert "resolves to no address" in problem.message


@pytest.mark.parametrize(
    ("port", "ok"),
    [
        (1, True),
        (65535, True),
        ("5432", True),
        (0, False),
        (65536, False),
        (-1, False),
        ("abc", False),
        ("54 32", False),
        (True, False),
        (5432.0, False),
    ],
)
def test_ports_outside_1_to_65535_are_refused(registry: Registry, port: object, ok: bool) -> None:
    problems = check_saas(
        allowed(registry, "postgres"), postgres_config(port=port), resolver=StubResolver(PUBLIC)
    )
    assert paths(problems) == ([] if ok else ["port"])


def test_the_real_resolver_refuses_localhost(registry: Registry) -> None:
    problems = check_saas(allowed(registry, "postgres"), postgres_config(host="localhost"))
    assert paths(problems) == ["host"]
    # what the system resolver answers for localhost is refused as well, under any name
    answers = resolve_host("localhost")
    assert answers
    assert all(address_refusal(ipaddress.ip_address(a)) is not None for a in answers)
    [problem] = host_problems("db.example.com", StubResolver(*answers))
    assert "loopback" in problem.message


def test_the_real_resolver_reads_numeric_spellings_like_the_checks() -> None:
    for spelling in ("2130706433", "0x7f000001", "0177.0.0.1", "127.1"):
        assert resolve_host(spelling) == ["127.0.0.1"]


def test_ssh_tunnel_checks_the_bastion_and_leaves_the_database_host_to_it(registry: Registry) -> None:
    postgres = allowed(registry, "postgres")
    private_db = postgres_config(host="db.corp.example.com", ssh_tunnel={"enable": True, "host": "10.0.0.9"})
    problems = check_saas(postgres, private_db, resolver=StubResolver("10.0.0.7"))
    assert paths(problems) == ["ssh_tunnel.host"]
    assert "10.0.0.9" in problems[0].message
    flat = postgres_config(
        host="db.corp.example.com",
        **{"ssh_tunnel.enable": "true", "ssh_tunnel.host": "bastion.example.com", "ssh_tunnel.port": 70000},
    )
    problems = check_saas(postgres, flat, resolver=StubResolver(PUBLIC))
    assert paths(problems) == ["ssh_tunnel.port"]
    syntax = postgres_config(host="db@corp", ssh_tunnel={"enable": True, "host": "bastion.example.com"})
    assert paths(check_saas(postgres, syntax, resolver=StubResolver(PUBLIC))) == ["host"]


# --- files and configurable URLs --------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/data/orders.csv",
        "file:///etc/passwd",
        "data/*.csv",
        "S3://bucket/x.csv",
        "simplecache::s3://bucket/x.csv",
        "http://10.0.0.1/x.csv",
        "gdrive://x.csv",
        None,
    ],
)
def test_csv_files_read_only_s3_objects(registry: Registry, path: str | None) -> None:
    files = [
        {"path": "s3://bucket/in/*.csv", "format": "csv", "table_name": "a"},
        {"path": path, "format": "csv", "table_name": "b"},
    ]
    problems = check_saas(registry.connector("csv_files"), {"files": files})
    assert paths(problems) == ["files[1].path"]
    assert "s3://" in problems[0].fix


@pytest.mark.parametrize(
    ("endpoint", "message"),
    [
        ("http://s3.example.com", "uses http://"),
        ("https://minio:9000", "single-label"),
        ("https://10.0.0.5:9000", "private address"),
        ("https://[::1]:9000", "loopback"),
        ("https://s3.example.com:0", "port"),
        ("https://key:secret@s3.example.com", "user information"),
        ("s3.example.com", "not an absolute URL"),
        ("https://s3.example.com\\@10.0.0.1", "backslash"),
    ],
)
def test_the_s3_endpoint_must_be_a_public_https_url(registry: Registry, endpoint: str, message: str) -> None:
    config = {"files": [{"path": "s3://bucket/x.csv"}], "s3_endpoint_url": endpoint}
    problems = check_saas(registry.connector("csv_files"), config, resolver=StubResolver(PUBLIC))
    assert paths(problems) == ["s3_endpoint_url"]
    assert message in problems[0].message
    assert "secret" not in problems[0].message


def test_a_public_https_s3_endpoint_passes(registry: Registry) -> None:
    config = {"files": [{"path": "s3://bucket/x.csv"}], "s3_endpoint_url": "https://s3.example.com:9000/"}
    assert check_saas(registry.connector("csv_files"), config, resolver=StubResolver(PUBLIC)) == []


def drive_key(fields: Mapping[str, str] | None = None) -> str:
    return json.dumps(
        {
            "type": "service_account",
            "client_email": "a@b.iam.gserviceaccount.com",
            "private_key": KEY,
            "token_uri": "https://oauth2.googleapis.com/token",
            **(fields or {}),
        }
    )


@pytest.mark.parametrize(
    ("key", "where", "message"),
    [
        (
            drive_key({"token_uri": "https://169.254.169.254/token"}),
            "service_account_info.token_uri",
            "metadata",
        ),
        (
            drive_key({"token_uri": "http://oauth2.googleapis.com/token"}),
            "service_account_info.token_uri",
            "http://",
        ),
        (drive_key({"universe_domain": "evil.example.com"}), "service_account_info.universe_domain", "evil"),
        ("{not json", "service_account_info", "not a JSON object"),
    ],
)
def test_the_drive_key_token_uri_gets_the_url_check(
    registry: Registry, key: str, where: str, message: str
) -> None:
    config = {"files": [{"path": "gdrive://exports/*.csv"}], "service_account_info": key, "folder_id": "f"}
    problems = check_saas(registry.connector("google_drive"), config, resolver=StubResolver(PUBLIC))
    assert paths(problems) == [where]
    assert message in problems[0].message
    assert "BEGIN PRIVATE KEY" not in str(problems)


def test_drive_paths_are_gdrive_only_and_a_google_key_passes(registry: Registry) -> None:
    drive = registry.connector("google_drive")
    good = {
        "files": [{"path": "gdrive://exports/*.csv"}],
        "service_account_info": drive_key(),
        "folder_id": "f",
    }
    assert check_saas(drive, good, resolver=StubResolver(PUBLIC)) == []
    local = {**good, "files": [{"path": "/srv/exports/*.csv"}]}
    assert paths(check_saas(drive, local, resolver=StubResolver(PUBLIC))) == ["files[0].path"]


@pytest.mark.parametrize("key", ["api_url", "base_url", "url", "token_uri", "endpoint", "auth_endpoint"])
def test_a_configurable_base_url_of_a_saas_api_gets_the_host_check(registry: Registry, key: str) -> None:
    problems = check_saas(registry.connector("google_sheets"), {key: "https://127.0.0.1/v4"})
    assert paths(problems) == [key]
    assert "loopback" in problems[0].message
    ok = check_saas(
        registry.connector("google_sheets"),
        {key: "https://api.example.com/v4"},
        resolver=StubResolver(PUBLIC),
    )
    assert ok == []


def test_batch_messages_are_refused_since_the_tap_would_write_local_files(registry: Registry) -> None:
    config = {"batch_config": {"storage": {"root": "file:///configs"}}}
    problems = check_saas(registry.connector("google_sheets"), config)
    assert paths(problems) == ["batch_config"]


# --- the error ---------------------------------------------------------------------------------------


def test_refusal_reports_every_problem_at_once_with_exit_code_2(registry: Registry, tmp_path: Path) -> None:
    config = postgres_config(host="0x7f000001", port=0, ssl_enable=False, ssl_mode="prefer")
    job = tmp_path / "orders.yaml"
    with pytest.raises(SaasRefusalError) as raised:
        refuse_unless_allowed(
            allowed(registry, "postgres"), config, resolver=StubResolver(PUBLIC), source=job
        )
    error = raised.value
    assert isinstance(error, ConfigError)
    assert error.exit_code == EXIT_CONFIG == 2
    assert not error.retryable
    assert paths(error.problems) == ["host", "port", "ssl_enable", "ssl_mode"]
    lines = str(error).splitlines()
    assert len(lines) == 4
    assert all(
        line.startswith(f"{job}: saas mode refuses postgres at ") and "; fix: " in line for line in lines
    )
    assert "s3cret-pw" not in str(error)


def test_refusal_is_retryable_only_when_every_problem_is(registry: Registry) -> None:
    again = StubResolver(error=socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution"))
    with pytest.raises(SaasRefusalError) as raised:
        refuse_unless_allowed(allowed(registry, "postgres"), postgres_config(), resolver=again)
    assert raised.value.retryable
    assert raised.value.exit_code == EXIT_RETRYABLE == 75
    with pytest.raises(SaasRefusalError) as raised:
        refuse_unless_allowed(
            allowed(registry, "postgres"), postgres_config(ssl_mode="allow"), resolver=again
        )
    assert raised.value.exit_code == EXIT_CONFIG


def test_every_refusal_names_a_setting_and_a_fix(registry: Registry) -> None:
    config: Mapping[str, Any] = {
        "host": "127.1",
        "port": 99999,
        "sqlalchemy_url": "postgresql://u:p@h/d",
        "ssl_mode": "allow",
        "ssl_client_certificate_enable": True,
        "ssl_storage_directory": "/",
        "batch_config": {},
        "ssh_tunnel": {"enable": False},
    }
    problems = check_saas(allowed(registry, "postgres"), config, resolver=StubResolver(PUBLIC))
    assert len(problems) >= 7
    for problem in problems:
        assert problem.path
        assert problem.message
        assert problem.fix


# --- the address rules as properties ---------------------------------------------------------------

REFUSED_V4 = [
    ipaddress.IPv4Network(n)
    for n in (
        "127.0.0.0/8",
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "100.64.0.0/10",
        "169.254.0.0/16",
    )
]


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(REFUSED_V4),
    st.integers(min_value=0),
    st.sampled_from(["dec", "hex", "oct", "mapped", "nat64"]),
)
def test_any_spelling_of_an_address_in_a_refused_range_is_refused(
    network: ipaddress.IPv4Network, offset: int, form: str
) -> None:
    address = network[offset % network.num_addresses]
    value = int(address)
    spelled = {
        "dec": str(value),
        "hex": hex(value),
        "oct": ".".join(f"0{int(b):o}" for b in str(address).split(".")),
        "mapped": f"::ffff:{address}",
        "nat64": f"64:ff9b::{value >> 16:x}:{value & 0xFFFF:x}",
    }[form]
    resolver = StubResolver(PUBLIC)
    [problem] = host_problems(spelled, resolver)
    assert str(address) in problem.message
    assert resolver.asked == []


@settings(max_examples=300, deadline=None)
@given(st.integers(min_value=0, max_value=2**32 - 1))
def test_inet_aton_agrees_with_the_c_library(value: int) -> None:
    for spelling in (str(value), hex(value), f"0{value:o}"):
        assert inet_aton(spelling) == ipaddress.IPv4Address(socket.inet_ntoa(socket.inet_aton(spelling)))
