"""`ingest contracts validate|show` over assets/ and over broken contracts; and the target loading
what real taps emitted, under the contracts in assets/."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from conftest import REPO_ROOT, Lake, read_pyiceberg, run_target

from ingestion.cli import cli
from ingestion.errors import EXIT_CONFIG
from target_iceberg_nessie.contracts.model import contract_files
from target_iceberg_nessie.errors import ContractViolation

ASSETS = REPO_ROOT / "assets"
GOOD = """\
apiVersion: v3.0.2
kind: DataContract
id: urn:contract:test:{stream}
version: 1.0.0
status: active
name: Test {stream}
schema:
  - name: {stream}
    properties:
      - {{name: id, logicalType: integer, primaryKey: true, primaryKeyPosition: 1}}
"""
# name → (what is appended to a good contract, the path the problem is reported at, the message)
BROKEN: dict[str, tuple[str, str, str]] = {
    "wrong_logical_type": (
        "      - {name: email, logicalType: text}\n",
        "schema[0].properties[1].logicalType",
        "'text' is not one of ['string', 'date', 'number', 'integer', 'object', 'array', 'boolean']",
    ),
    "bad_enforcement": (
        "customProperties:\n  - {property: enforcement, value: warn}\n",
        "customProperties[0].value",
        "'warn' is not one of ['fail', 'quarantine', 'drop'] (in enforcement)",
    ),
    "duplicate_property": (
        "      - {name: id, logicalType: string}\n",
        "schema[0].properties",
        "property 'id' is declared twice",
    ),
    "invalid_yaml": (
        "      - name: email: text\n",
        "line 11, column 20",
        "mapping values are not allowed here",
    ),
    "unsupported_quality_rule": (
        "    quality:\n      - {type: library, rule: freshness, mustBeLessThan: 3}\n",
        "schema[0].quality[0]",
        "quality rule 'freshness' is not one the target evaluates",
    ),
}


def invoke(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)


def write_contract(folder: Path, stream: str, extra: str = "") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{stream}.yaml"
    path.write_text(GOOD.format(stream=stream) + extra, encoding="utf-8")
    return path


# -- validate ------------------------------------------------------------------------------------


def test_validate_accepts_every_contract_in_assets() -> None:
    result = invoke("contracts", "validate", "--project-dir", str(REPO_ROOT))
    assert result.exit_code == 0, result.output
    files = contract_files([ASSETS])
    for file in files:
        assert f"{file.relative_to(REPO_ROOT)}: OK" in result.output
    assert f"{len(files)} contract file(s): {len(files)} valid, 0 invalid" in result.output


def test_validate_reads_the_assets_folder_of_the_project_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO_ROOT)
    result = invoke("contracts", "validate", env={"MELTANO_PROJECT_ROOT": "", "INGEST_ASSETS": ""})
    assert result.exit_code == 0, result.output
    assert "assets/stripe/v1.0/charges.yaml: OK (charges)" in result.output


def test_validate_json_lists_every_file() -> None:
    result = invoke("contracts", "validate", str(ASSETS), "--json")
    assert result.exit_code == 0, result.output
    files = json.loads(result.output)["files"]
    assert len(files) == len(contract_files([ASSETS]))
    assert all(f["valid"] and f["problems"] == [] for f in files)


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_validate_names_file_path_and_problem(tmp_path: Path, case: str) -> None:
    extra, where, message = BROKEN[case]
    path = write_contract(tmp_path, case, extra)
    result = invoke("contracts", "validate", str(tmp_path))
    assert result.exit_code == EXIT_CONFIG, result.output
    assert f"{path}: {where}: {message}" in result.output
    assert "1 contract file(s): 0 valid, 1 invalid" in result.output


def test_validate_json_reports_every_broken_file(tmp_path: Path) -> None:
    good = write_contract(tmp_path, "fine")
    for case, (extra, _, _) in BROKEN.items():
        write_contract(tmp_path, case, extra)
    result = invoke("contracts", "validate", str(tmp_path), "--json")
    assert result.exit_code == EXIT_CONFIG
    files = {Path(f["file"]).stem: f for f in json.loads(result.output)["files"]}
    assert files["fine"] == {"file": str(good), "valid": True, "problems": []}
    for case, (_, where, message) in BROKEN.items():
        assert not files[case]["valid"]
        assert {"path": where, "message": message} in [
            {"path": p["path"], "message": p["message"][: len(message)]} for p in files[case]["problems"]
        ]


def test_validate_refuses_two_contracts_for_one_stream(tmp_path: Path) -> None:
    write_contract(tmp_path / "a", "orders")
    second = write_contract(tmp_path / "b", "orders")
    result = invoke("contracts", "validate", str(tmp_path))
    assert result.exit_code == EXIT_CONFIG
    assert f"{second}: schema[0].name: stream 'orders' already has a contract in {tmp_path / 'a'}" in (
        result.output
    )


def test_validate_missing_or_empty_paths_are_config_errors(tmp_path: Path) -> None:
    missing = invoke("contracts", "validate", str(tmp_path / "nowhere"))
    assert missing.exit_code == EXIT_CONFIG
    assert f"contract path {tmp_path / 'nowhere'} does not exist" in missing.output
    empty = invoke("contracts", "validate", str(tmp_path))
    assert empty.exit_code == EXIT_CONFIG
    assert f"no contract files (*.yaml, *.yml) in {tmp_path}" in empty.output


# -- show ----------------------------------------------------------------------------------------


def test_show_prints_the_compiled_rules_of_a_stream() -> None:
    result = invoke("contracts", "show", "charges", "--project-dir", str(REPO_ROOT))
    assert result.exit_code == 0, result.output
    for expected in (
        "urn:contract:stripe:charges@1.0.0",
        "quarantine",
        "created (month)",
        "'succeeded'",
        "billing_details.address.postal_code",
        "classification.column.receipt_email",
    ):
        assert expected in result.output


def test_show_json_of_a_stream() -> None:
    result = invoke("contracts", "show", "public-orders", "--assets", str(ASSETS), "--json")
    assert result.exit_code == 0, result.output
    (shown,) = json.loads(result.output)["objects"]
    assert shown["contract_id"] == "urn:contract:postgres:public-orders"
    assert (shown["enforcement"], shown["schema_evolution"]) == ("fail", "freeze")
    assert shown["primary_key"] == ["order_id"]
    assert shown["partition"] == [{"column": "ordered_at", "transform": "month"}]
    columns = {c["column"]: c for c in shown["columns"]}
    assert columns["order_uuid"]["options"] == {"format": "uuid"}
    (status_values,) = columns["status"]["quality"]
    assert status_values["valid_values"] == ["pending", "paid", "shipped", "cancelled", "refunded"]
    assert shown["table_properties"]["governance.owner"] == "commerce-data@example.com"


def test_show_a_contract_file_with_nested_properties() -> None:
    result = invoke("contracts", "show", str(ASSETS / "hubspot" / "v1.0" / "deals.yaml"), "--json")
    assert result.exit_code == 0, result.output
    (shown,) = json.loads(result.output)["objects"]
    columns = {c["column"]: c for c in shown["columns"]}
    assert columns["properties.amount"]["logical_type"] == "number"
    assert shown["quality"][0]["rule"] == "rowCount"


def test_show_finds_streams_in_the_assets_folder_of_the_environment(tmp_path: Path) -> None:
    write_contract(tmp_path, "widgets")
    result = invoke("contracts", "show", "widgets", "--json", env={"INGEST_ASSETS": str(tmp_path)})
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["objects"][0]["object"] == "widgets"


def test_show_an_unknown_stream_names_the_known_ones() -> None:
    result = invoke("contracts", "show", "nope", "--assets", str(ASSETS))
    assert result.exit_code == EXIT_CONFIG
    assert "no contract for stream 'nope'" in result.output
    assert "charges, companies, contacts" in result.output


# -- the target, loading what real taps emitted --------------------------------------------------

# `tap-postgres` (meltanolabs 0.10.0) on the example table of assets/postgres/v1.0/orders.yaml.
POSTGRES: list[dict[str, Any]] = [
    {
        "type": "SCHEMA",
        "stream": "public-orders",
        "key_properties": ["order_id"],
        "bookmark_properties": ["updated_at"],
        "schema": {
            "type": "object",
            "required": ["order_id"],
            "properties": {
                "order_id": {"type": ["integer"]},
                "order_uuid": {"type": ["string", "null"]},
                "customer_id": {"type": ["integer", "null"]},
                "customer_email": {"maxLength": 254, "type": ["string", "null"]},
                "status": {"maxLength": 16, "type": ["string", "null"]},
                "currency": {"maxLength": 3, "type": ["string", "null"]},
                "amount": {"type": ["number", "null"]},
                "tax_amount": {"type": ["number", "null"]},
                "item_count": {"type": ["integer", "null"]},
                "shipping_address": {
                    "type": ["string", "number", "integer", "array", "object", "boolean", "null"],
                    "additionalProperties": True,
                },
                "notes": {"type": ["string", "null"]},
                "ordered_at": {"format": "date-time", "type": ["string", "null"]},
                "updated_at": {"format": "date-time", "type": ["string", "null"]},
                "shipped_on": {"format": "date", "type": ["string", "null"]},
                "is_gift": {"type": ["boolean", "null"]},
            },
        },
    },
    {
        "type": "RECORD",
        "stream": "public-orders",
        "record": {
            "order_id": 1,
            "order_uuid": "4cceb2eb-c560-4c28-bac5-707cd8a018fc",
            "customer_id": 42,
            "customer_email": "ada@example.com",
            "status": "paid",
            "currency": "EUR",
            "amount": 19.99,
            "tax_amount": 3.80,
            "item_count": 2,
            "shipping_address": {"city": "Berlin", "country": "DE"},
            "notes": None,
            "ordered_at": "2025-01-15T10:00:00.000000+00:00",
            "updated_at": "2026-11-25T22:38:03.215716+00:00",
            "shipped_on": "2025-01-16",
            "is_gift": False,
        },
    },
]


DRIVE_COLUMNS = (
    "customer_id", "first_name", "last_name", "email", "phone", "country", "segment", "signup_date",
    "is_active", "credit_limit", "notes",
)  # fmt: skip
DRIVE_ROWS = [  # the first rows of demo/data/customers.csv, as the tap typed them
    (1, "Noah", "Schmidt", "noah.schmidt1@example.com", "+38 973 4994557", "JP", "consumer", "2023-09-03",
     False, 6000.0, None),
    (2, "Hugo", "Novak", "hugo.novak2@example.com", "+33 444 1848279", "PL", "enterprise", "2024-02-29",
     True, 34000.0, 'Asked for "net 30" terms'),
    (10, "Mia", "Rossi", "mia.rossi10@example.com", None, "IT", "small_business", "2024-01-09",
     True, 4500.0, None),
]  # fmt: skip
# `tap-spreadsheets` 1.1.2 on customers.csv, configured as assets/google_drive/v1.0/customers.yaml says.
DRIVE: list[dict[str, Any]] = [
    {
        "type": "SCHEMA",
        "stream": "drive_customers",
        "key_properties": ["customer_id"],
        "bookmark_properties": ["_sdc_last_modified"],
        "schema": {
            "type": "object",
            "properties": {
                "customer_id": {"type": ["integer", "null"]},
                "first_name": {"type": ["string", "null"]},
                "last_name": {"type": ["string", "null"]},
                "email": {"type": ["string", "null"]},
                "phone": {"type": ["string", "null"]},
                "country": {"type": ["string", "null"]},
                "segment": {"type": ["string", "null"]},
                "signup_date": {"format": "date", "type": ["string", "null"]},
                "is_active": {"type": ["boolean", "null"]},
                "credit_limit": {"multipleOf": 0.01, "type": ["number", "null"]},
                "notes": {"type": ["string", "null"]},
                "_sdc_last_modified": {"format": "date-time", "type": ["string", "null"]},
                "_sdc_filename": {"type": ["string", "null"]},
                "_sdc_stream": {"type": ["string", "null"]},
            },
        },
    },
    *(
        {
            "type": "RECORD",
            "stream": "drive_customers",
            "record": {
                **dict(zip(DRIVE_COLUMNS, row, strict=True)),
                "_sdc_last_modified": "2026-11-25T22:37:00+00:00",
                "_sdc_filename": "/data/crm-exports/customers.csv",
                "_sdc_stream": "drive_customers",
            },
        }
        for row in DRIVE_ROWS
    ),
]


def _singer(messages: list[dict[str, Any]]) -> str:
    state = {"type": "STATE", "value": {"bookmarks": {"done": True}}}
    return "".join(json.dumps(m) + "\n" for m in [*messages, state])


@pytest.mark.parametrize(
    ("messages", "contract", "table", "rows"),
    [
        (POSTGRES, "assets/postgres/v1.0/orders.yaml", "acme.raw.public_orders", 1),
        (DRIVE, "assets/google_drive/v1.0/customers.yaml", "acme.raw.drive_customers", 3),
    ],
    ids=["postgres", "google_drive"],
)
def test_real_tap_output_passes_its_contract(
    embedded_lake: Lake, messages: list[dict[str, Any]], contract: str, table: str, rows: int
) -> None:
    config = embedded_lake.config(contracts=[str(REPO_ROOT / contract)], contract_mode="strict")
    run = run_target(config, _singer(messages))
    assert run.error is None, run.error
    assert len(read_pyiceberg(embedded_lake, table)) == rows


def test_a_database_contract_fails_the_checkpoint(embedded_lake: Lake) -> None:
    """enforcement fail: an order in a status the table does not allow stops the load."""
    schema, record = POSTGRES
    broken = {**record, "record": {**record["record"], "status": "lost"}}
    config = embedded_lake.config(contracts=[str(ASSETS / "postgres")], contract_mode="strict")
    run = run_target(config, _singer([schema, broken]))
    assert isinstance(run.error, ContractViolation)
    assert "status: validValues: 1 row(s), e.g. order_id=1" in str(run.error)
