"""The connector registry: the shipped file validates, broken copies are reported precisely."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from ingestion.errors import ConfigError, ConfigFileError
from ingestion.paths import REGISTRY_FILE, SOURCE_ROOT
from ingestion.registry import (
    CatalogType,
    Category,
    IncrementalStrategy,
    Registry,
    Role,
    StreamKind,
    load_registry,
)


def meltano_plugins() -> dict[str, dict[str, Any]]:
    """Every plugin of the Meltano project (meltano.yml plus its include_paths), by name."""
    project = yaml.safe_load((SOURCE_ROOT / "meltano.yml").read_text(encoding="utf-8"))
    documents = [project]
    for pattern in project.get("include_paths", []):
        documents += [yaml.safe_load(p.read_text(encoding="utf-8")) for p in SOURCE_ROOT.glob(pattern)]
    found: dict[str, dict[str, Any]] = {}
    for document in documents:
        for kind, plugins in (document.get("plugins") or {}).items():
            for plugin in plugins:
                found[plugin["name"]] = {**plugin, "kind": kind}
    return found


def test_the_shipped_registry_validates() -> None:
    registry = load_registry()
    assert isinstance(registry, Registry)
    assert registry.source == REGISTRY_FILE

    csv = registry.connector("csv_files")
    assert csv.plugin == "tap-spreadsheets"
    assert csv.plugins == ("tap-spreadsheets", "tap-demo-csv")
    assert csv.roles == (Role.EXTRACTOR,)
    assert csv.category is Category.FILES
    assert csv.allowed_in_saas is True
    assert csv.streams is not None
    assert csv.streams.kind is StreamKind.CONFIGURABLE
    assert csv.streams.config_key == "files"
    assert csv.incremental is not None
    assert csv.incremental.strategy is IncrementalStrategy.FILE_MODIFIED_TIME
    assert csv.incremental.replication_key == "_sdc_last_modified"
    assert csv.default_contracts == ()

    loader = registry.connector("iceberg_nessie")
    assert loader.plugin == "target-iceberg-nessie"
    assert loader.roles == (Role.LOADER,)
    assert loader.catalogs == (CatalogType.SQL, CatalogType.NESSIE)
    assert [c.id for c in registry.with_role(Role.LOADER)] == ["iceberg_nessie"]


def test_every_registered_plugin_exists_in_the_meltano_project() -> None:
    plugins = meltano_plugins()
    for connector in load_registry().connectors.values():
        for name in connector.plugins:
            assert name in plugins, f"{connector.id}: plugin {name} is not defined in the Meltano project"
            kind = plugins[name]["kind"]
            assert Role(kind.removesuffix("s")) in connector.roles, f"{name} is a Meltano {kind[:-1]}"
        for variant in connector.variants:
            assert plugins[variant].get("inherit_from") == connector.plugin


def test_the_settings_that_define_streams_exist_on_the_plugin() -> None:
    plugins = meltano_plugins()
    for connector in load_registry().with_role(Role.EXTRACTOR):
        assert connector.streams is not None
        if connector.streams.config_key is not None:
            settings = {s["name"] for s in plugins[connector.plugin].get("settings", [])}
            assert connector.streams.config_key in settings


def test_a_variant_finds_its_connector_type() -> None:
    registry = load_registry()
    found = registry.for_plugin("tap-demo-csv")
    assert found is not None
    assert found.id == "csv_files"
    assert registry.for_plugin("tap-nothing") is None


def test_an_unknown_connector_type_names_the_known_ones() -> None:
    with pytest.raises(
        ConfigError, match=r"unknown connector type 'salesforce'.*use one of: csv_files, .*iceberg_nessie"
    ):
        load_registry().connector("salesforce")


def shipped() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(REGISTRY_FILE.read_text(encoding="utf-8"))
    return document


def write(tmp_path: Path, document: Any) -> Path:
    file = tmp_path / "connectors.yaml"
    file.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    return file


def test_a_broken_copy_names_the_file_the_path_and_the_fix(tmp_path: Path) -> None:
    document = shipped()
    document["connectors"]["csv_files"]["allowed_in_saas"] = "yes"
    file = write(tmp_path, document)

    with pytest.raises(ConfigFileError) as raised:
        load_registry(file)

    error = raised.value
    assert error.file == file
    assert [p.path for p in error.problems] == ["connectors.csv_files.allowed_in_saas"]
    assert str(error) == (
        f"{file}: at connectors.csv_files.allowed_in_saas: 'yes' is not of type 'boolean'; "
        "fix: use a value of type boolean"
    )


def _drop(key: str) -> Any:
    return lambda c: c["csv_files"].pop(key)


@pytest.mark.parametrize(
    ("breakage", "path", "message", "fix"),
    [
        (
            _drop("incremental"),
            "connectors.csv_files",
            "missing required key(s) 'incremental'",
            "add 'incremental'",
        ),
        (
            lambda c: c["csv_files"].update(allowed_in_sass=True),
            "connectors.csv_files",
            "unknown key(s) 'allowed_in_sass'",
            "remove or rename them; allowed keys here: allowed_in_saas,",
        ),
        (
            lambda c: c["csv_files"]["incremental"].update(strategy="mtime"),
            "connectors.csv_files.incremental.strategy",
            "'mtime' is not one of",
            "use one of: 'full_table', 'key', 'file_modified_time', 'log_based'",
        ),
        (
            lambda c: c["csv_files"]["incremental"].pop("replication_key"),
            "connectors.csv_files.incremental",
            "missing required key(s) 'replication_key'",
            "add 'replication_key'",
        ),
        (
            lambda c: c["iceberg_nessie"].update(streams={"kind": "discovered", "description": "x"}),
            "connectors.iceberg_nessie.streams",
            "this key is not allowed here",
            "remove it (it does not apply to this kind of entry)",
        ),
        (
            lambda c: c["iceberg_nessie"].update(catalogs=["hive"]),
            "connectors.iceberg_nessie.catalogs[0]",
            "'hive' is not one of",
            "use one of: 'sql', 'nessie', 'rest'",
        ),
        (
            lambda c: c["csv_files"].update(default_contracts=["customers.yaml"]),
            "connectors.csv_files.default_contracts[0]",
            "'customers.yaml' has the wrong form",
            "use a value matching",
        ),
        (
            lambda c: c.update({"CSV Files": c.pop("csv_files")}),
            "connectors",
            "'CSV Files' has the wrong form",
            "use a value matching ^[a-z][a-z0-9_]*$ (lower_snake_case",
        ),
    ],
)
def test_each_kind_of_breakage_is_reported_with_its_fix(
    tmp_path: Path, breakage: Any, path: str, message: str, fix: str
) -> None:
    document = shipped()
    breakage(document["connectors"])
    file = write(tmp_path, document)

    with pytest.raises(ConfigFileError) as raised:
        load_registry(file)

    [problem] = raised.value.problems
    assert problem.path == path
    assert message in problem.message
    assert fix in problem.fix
    assert str(raised.value).startswith(f"{file}: at {path}: ")


def test_all_problems_are_reported_together(tmp_path: Path) -> None:
    document = shipped()
    document["schema_version"] = 2
    document["connectors"]["csv_files"]["category"] = "spreadsheets"
    document["connectors"]["iceberg_nessie"].pop("label")
    file = write(tmp_path, document)

    with pytest.raises(ConfigFileError) as raised:
        load_registry(file)

    paths = sorted(p.path for p in raised.value.problems)
    assert paths == ["connectors.csv_files.category", "connectors.iceberg_nessie", "schema_version"]
    assert [line.split(": at ")[1].split(":")[0] for line in str(raised.value).splitlines()] == paths


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "schema_version: 1\nconnectors:\n  csv_files: [unclosed\n",
            r"at line \d+, column \d+: .*; fix: fix the YAML",
        ),
        (
            "schema_version: 1\nschema_version: 1\nconnectors: {}\n",
            r"duplicate key 'schema_version' at line 2",
        ),
    ],
)
def test_yaml_errors_name_the_line(tmp_path: Path, text: str, expected: str) -> None:
    file = tmp_path / "connectors.yaml"
    file.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigFileError, match=expected) as raised:
        load_registry(file)
    assert str(raised.value).startswith(str(file))


def test_a_missing_registry_file_says_so(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nothing\.yaml does not exist"):
        load_registry(tmp_path / "nothing.yaml")
