from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from ingestion.errors import ConfigError, ConfigFileError
from ingestion.secrets import MissingSecretError, SecretReferenceError, TenantSecrets, env_var_name

STRIPE_KEY = "sk_live_51Hx9QeAbCdEfGh"
HUBSPOT_TOKEN = "pat-na1-0f3e1b2c-7d4e"  # noqa: S105 - a test value to redact
DB_PASSWORD = 'p@ss "w0rd"/#1'  # noqa: S105 - a test value to redact
OTHER_TENANT_KEY = "sk_live_OTHER_TENANT_ONLY"


def _write(path: Path, text: str, mode: int = 0o600) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    path.chmod(mode)
    return path


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = tmp_path / "secrets"
    _write(root / "acme" / "stripe.json", json.dumps({"api_key": STRIPE_KEY, "account": 42, "live": True}))
    _write(
        root / "acme" / "db.env",
        "# database\n"
        "export DB_USER=loader\n"
        f"DB_PASSWORD='{DB_PASSWORD}'\n"
        'DB_NOTE="line one\\nline \\"two\\"" # trailing comment\n'
        "DB_HOST = db.internal   # inline comment\n"
        "\n",
    )
    _write(root / "acme" / "hubspot_token", HUBSPOT_TOKEN + "\n")
    _write(root / "other" / "stripe.json", json.dumps({"api_key": OTHER_TENANT_KEY}))
    return root


def test_secrets_from_json_env_and_plain_files(root: Path) -> None:
    secrets = TenantSecrets.load(root, "acme", environ={})
    assert secrets.get("api_key") == STRIPE_KEY
    assert secrets.get("account") == "42", "a number becomes its JSON text"
    assert secrets.get("live") == "true"
    assert secrets.get("DB_USER") == "loader"
    assert secrets.get("DB_PASSWORD") == DB_PASSWORD, "single quotes are literal"
    assert secrets.get("DB_NOTE") == 'line one\nline "two"'
    assert secrets.get("DB_HOST") == "db.internal"
    assert secrets.get("hubspot_token") == HUBSPOT_TOKEN, "the trailing newline is dropped"
    assert secrets.names() == sorted(
        ["api_key", "account", "live", "DB_USER", "DB_PASSWORD", "DB_NOTE", "DB_HOST", "hubspot_token"]
    )
    assert OTHER_TENANT_KEY not in secrets.values()
    assert {STRIPE_KEY, HUBSPOT_TOKEN, DB_PASSWORD} <= set(secrets.values())
    assert secrets.source("api_key") == str(root / "acme" / "stripe.json")
    assert secrets.warnings == ()


def test_environment_overrides_files_and_adds_secrets(root: Path) -> None:
    environ = {
        env_var_name("acme", "api_key"): "sk_live_from_env",
        "INGEST_SECRET_ACME__EXTRA": "extra-value",
        "INGEST_SECRET_OTHER__api_key": "not-ours",
        "api_key": "unrelated",
    }
    secrets = TenantSecrets.load(root, "acme", environ=environ)
    assert secrets.get("api_key") == "sk_live_from_env"
    assert STRIPE_KEY in secrets.values(), "an overridden file value is still redacted"
    assert secrets.get("EXTRA") == "extra-value"
    assert secrets.source("EXTRA") == "$INGEST_SECRET_ACME__EXTRA"
    assert "not-ours" not in secrets.values()


def test_environment_names_that_could_belong_to_another_tenant_are_ignored(tmp_path: Path) -> None:
    # Tenant `a` with name `B__X` and tenant `a__b` with name `X` spell the same variable.
    environ = {"INGEST_SECRET_A__B__X": "belongs-to-a__b", "INGEST_SECRET_A___Y": "belongs-to-a_"}
    assert TenantSecrets.load(tmp_path, "a", environ=environ).names() == []
    assert TenantSecrets.load(tmp_path, "a__b", environ=environ).get("X") == "belongs-to-a__b"
    assert TenantSecrets.load(tmp_path, "a_", environ=environ).get("Y") == "belongs-to-a_"
    with pytest.raises(MissingSecretError, match="not read from the environment"):
        TenantSecrets.load(tmp_path, "a", environ=environ).get("B__X")


def test_missing_tenant_folder_means_environment_only(tmp_path: Path) -> None:
    secrets = TenantSecrets.load(
        tmp_path / "nowhere", "acme", environ={"INGEST_SECRET_ACME__TOKEN": "t0ken-1"}
    )
    assert secrets.names() == ["TOKEN"]
    with pytest.raises(MissingSecretError, match="the folder does not exist"):
        secrets.get("OTHER")


def test_missing_secret_names_where_it_looked_and_the_fix(root: Path) -> None:
    secrets = TenantSecrets.load(root, "acme", environ={})
    with pytest.raises(MissingSecretError) as caught:
        secrets.get("api_kye")
    message = str(caught.value)
    assert "'api_kye'" in message
    assert str(root / "acme") in message
    assert "INGEST_SECRET_ACME__api_kye" in message
    assert "did you mean 'api_key'?" in message
    assert "fix:" in message
    assert STRIPE_KEY not in message
    assert caught.value.env_var == "INGEST_SECRET_ACME__api_kye"


def test_resolve_maps_settings_to_values_and_reports_every_problem(root: Path) -> None:
    secrets = TenantSecrets.load(root, "acme", environ={})
    assert secrets.resolve({"client_secret": "api_key", "password": "DB_PASSWORD"}) == {
        "client_secret": STRIPE_KEY,
        "password": DB_PASSWORD,
    }
    with pytest.raises(SecretReferenceError) as caught:
        secrets.resolve({"api_key": "api_key", "token": "missing", "password": "other:api_key"})
    assert [p.path for p in caught.value.problems] == ["secrets.token", "secrets.password"]
    assert STRIPE_KEY not in str(caught.value)
    # The message goes through the log redactor (run logs, Dagster) and must come out readable: a
    # colon after `secrets.password` made it hide the next word as the password's value.
    from ingestion.redact import Redactor  # noqa: PLC0415

    assert Redactor([]).text(str(caught.value)) == str(caught.value)


@pytest.mark.parametrize(
    ("reference", "why"),
    [
        ("../other/stripe.json", "is a path"),
        ("../other", "is a path"),
        ("other/api_key", "is a path"),
        ("/etc/passwd", "is a path"),
        ("..", "is a path"),
        ("other:api_key", "names tenant 'other'"),
        ("acme:api_key", "drop the 'acme': prefix"),
        ("api key", "is not a secret name"),
    ],
)
def test_references_outside_the_tenant_are_refused_before_any_value_is_read(
    root: Path, reference: str, why: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    secrets = TenantSecrets.load(root, "acme", environ={})

    def no_reads(self: Path) -> bytes:
        raise AssertionError(f"{self} was read")

    monkeypatch.setattr(Path, "read_bytes", no_reads)
    monkeypatch.setattr(Path, "read_text", no_reads)
    with pytest.raises(SecretReferenceError, match=why) as caught:
        secrets.resolve({"api_key": reference})
    assert caught.value.problems[0].path == "secrets.api_key"
    assert OTHER_TENANT_KEY not in str(caught.value)
    with pytest.raises(SecretReferenceError, match=why):
        secrets.get(reference)


def test_a_file_linking_outside_the_tenant_folder_is_refused_before_any_file_is_read(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (root / "acme" / "zz_stolen").symlink_to(root / "other" / "stripe.json")
    reads: list[Path] = []
    original = Path.read_bytes

    def recording(self: Path) -> bytes:
        reads.append(self)
        return original(self)

    monkeypatch.setattr(Path, "read_bytes", recording)
    with pytest.raises(ConfigError) as caught:
        TenantSecrets.load(root, "acme", environ={})
    message = str(caught.value)
    assert str(root / "acme" / "zz_stolen") in message
    assert "outside the tenant folder" in message
    assert "copy the secret" in message
    assert OTHER_TENANT_KEY not in message
    assert reads == [], "no file of the tenant was read once one link was refused"


def test_links_inside_the_tenant_folder_are_followed_like_kubernetes_mounts(tmp_path: Path) -> None:
    tenant = tmp_path / "acme"
    _write(tenant / "..2026_01_01" / "token", "k8s-token\n")
    (tenant / "..data").symlink_to("..2026_01_01")
    (tenant / "token").symlink_to("..data/token")
    assert TenantSecrets.load(tmp_path, "acme", environ={}).get("token") == "k8s-token"


def test_a_tenant_folder_linking_to_another_tenant_or_outside_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "secrets"
    _write(root / "other" / "token", "other-token")
    _write(tmp_path / "elsewhere" / "token", "elsewhere-token")
    (root / "acme").symlink_to(root / "other")
    (root / "beta").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(ConfigError, match="the folder of tenant 'other'"):
        TenantSecrets.load(root, "acme", environ={})
    with pytest.raises(ConfigError, match="outside"):
        TenantSecrets.load(root, "beta", environ={})


def test_a_tenant_id_with_path_tricks_is_refused(tmp_path: Path) -> None:
    for tenant in ["../other", "acme/..", "", "Acme", "acme.other"]:
        with pytest.raises(ConfigError, match="is not a tenant id"):
            TenantSecrets.load(tmp_path, tenant, environ={})


def test_a_file_name_that_is_not_a_secret_name_is_refused(tmp_path: Path) -> None:
    _write(tmp_path / "acme" / "api key", "value-1")
    with pytest.raises(ConfigError, match="rename it"):
        TenantSecrets.load(tmp_path, "acme", environ={})


def test_hidden_files_and_folders_are_skipped_but_dot_env_is_read(tmp_path: Path) -> None:
    _write(tmp_path / "acme" / ".gitkeep", "")
    _write(tmp_path / "acme" / ".env", "TOKEN=from-dot-env\n")
    _write(tmp_path / "acme" / "nested" / "deep", "ignored")
    assert TenantSecrets.load(tmp_path, "acme", environ={}).names() == ["TOKEN"]


def test_nested_json_objects_are_flattened_with_dots(tmp_path: Path) -> None:
    document = {"google": {"client_id": "id-1", "oauth": {"refresh_token": "rt-1"}}, "top": "t-1"}
    _write(tmp_path / "acme" / "google.json", json.dumps(document))
    secrets = TenantSecrets.load(tmp_path, "acme", environ={})
    assert secrets.names() == ["google.client_id", "google.oauth.refresh_token", "top"]
    assert secrets.get("google.oauth.refresh_token") == "rt-1"


def test_json_null_arrays_bad_keys_and_non_objects_are_refused(tmp_path: Path) -> None:
    file = _write(tmp_path / "acme" / "bad.json", json.dumps({"a": None, "b": [1], "c d": "x", "ok": "y"}))
    with pytest.raises(ConfigFileError) as caught:
        TenantSecrets.load(tmp_path, "acme", environ={})
    assert caught.value.file == file
    assert [p.path for p in caught.value.problems] == ["a", "b", "c d"]
    _write(file, '["hunter2-in-a-list"]')
    with pytest.raises(ConfigFileError, match="is not a JSON object"):
        TenantSecrets.load(tmp_path, "acme", environ={})
    _write(file, '{"api_key": "hunter2-unterminated')
    with pytest.raises(ConfigFileError, match="not JSON") as syntax:
        TenantSecrets.load(tmp_path, "acme", environ={})
    assert "hunter2" not in str(syntax.value), "a syntax error never quotes the file"


def test_dotenv_errors_name_the_line_never_its_content(tmp_path: Path) -> None:
    file = _write(tmp_path / "acme" / "x.env", "# ok\nA=1\nsk_live_pasted_without_key\n")
    with pytest.raises(ConfigFileError) as caught:
        TenantSecrets.load(tmp_path, "acme", environ={})
    assert caught.value.file == file
    assert caught.value.problems[0].path == "line 3"
    assert "sk_live_pasted" not in str(caught.value)
    _write(file, 'A="never closed\nB=2\n')
    with pytest.raises(ConfigFileError, match="quote is not closed"):
        TenantSecrets.load(tmp_path, "acme", environ={})
    _write(file, 'A="x" y\n')
    with pytest.raises(ConfigFileError, match="text after the closing quote"):
        TenantSecrets.load(tmp_path, "acme", environ={})


def test_dotenv_quoted_values_may_span_lines(tmp_path: Path) -> None:
    key = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----"
    _write(tmp_path / "acme" / "google.env", f'PRIVATE_KEY="{key}"\nNEXT=after\n')
    secrets = TenantSecrets.load(tmp_path, "acme", environ={})
    assert secrets.get("PRIVATE_KEY") == key
    assert secrets.get("NEXT") == "after"


def test_a_secret_defined_in_two_files_is_refused(tmp_path: Path) -> None:
    _write(tmp_path / "acme" / "a.env", "TOKEN=one-1\n")
    _write(tmp_path / "acme" / "b.json", json.dumps({"TOKEN": "two-2"}))
    with pytest.raises(ConfigError, match="defined twice") as caught:
        TenantSecrets.load(tmp_path, "acme", environ={})
    assert str(tmp_path / "acme" / "a.env") in str(caught.value)
    assert str(tmp_path / "acme" / "b.json") in str(caught.value)
    assert "one-1" not in str(caught.value)


def test_files_readable_by_others_are_a_warning_not_an_error(tmp_path: Path) -> None:
    _write(tmp_path / "acme" / "open_token", "open-1", mode=0o644)
    _write(tmp_path / "acme" / "closed_token", "closed-1", mode=0o600)
    secrets = TenantSecrets.load(tmp_path, "acme", environ={})
    assert secrets.get("open_token") == "open-1"
    assert len(secrets.warnings) == 1
    assert "open_token" in secrets.warnings[0]
    assert "chmod 600" in secrets.warnings[0]
    assert "0644" in secrets.warnings[0]


def test_binary_and_broken_files_are_refused_with_the_fix(tmp_path: Path) -> None:
    folder = tmp_path / "acme"
    folder.mkdir()
    (folder / "blob").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ConfigError, match="base64-encoded"):
        TenantSecrets.load(tmp_path, "acme", environ={})
    (folder / "blob").unlink()
    (folder / "dangling").symlink_to(folder / "gone")
    with pytest.raises(ConfigError, match="remove the broken link"):
        TenantSecrets.load(tmp_path, "acme", environ={})
    (folder / "dangling").unlink()
    os.mkfifo(folder / "fifo")
    with pytest.raises(ConfigError, match="not a regular file"):
        TenantSecrets.load(tmp_path, "acme", environ={})


def test_repr_names_secrets_without_values(root: Path) -> None:
    secrets = TenantSecrets.load(root, "acme", environ={})
    assert "api_key" in repr(secrets)
    assert STRIPE_KEY not in repr(secrets)
    assert "api_key" in secrets
    assert len(secrets) == 8
