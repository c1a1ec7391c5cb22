"""ODCS contracts enforced on records in flight, at each level, on both catalogs, row by row."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import REPO_ROOT, Lake, new_nessie_branch, read_duckdb, read_pyiceberg, run_target

from devstack.nessie import NessieServer
from target_iceberg_nessie.catalogs.nessie_api import NessieClient
from target_iceberg_nessie.contracts import ContractError
from target_iceberg_nessie.errors import ContractViolation, RowsQuarantined, SchemaEvolutionError

CONTRACT = REPO_ROOT / "tests" / "fixtures" / "contracts" / "orders.yaml"
SCHEMA = {
    "type": "SCHEMA",
    "stream": "orders",
    "key_properties": ["id"],
    "schema": {
        "properties": {
            "id": {"type": ["integer", "null"]},
            "email": {"type": ["string", "null"]},
            "status": {"type": ["string", "null"]},
            "code": {"type": ["string", "null"]},
            "amount": {"type": ["number", "null"]},
            "quantity": {"type": ["string", "null"]},  # the contract says integer: castable or not
            "ordered_on": {"type": ["string", "null"]},
            "ref": {"type": ["string", "null"]},
        }
    },
}
GOOD = {
    "email": "ann@example.com",
    "status": "paid",
    "code": "ABC-123",
    "amount": 10.5,
    "quantity": "2",
    "ordered_on": "2024-05-01",
    "ref": "123e4567-e89b-12d3-a456-426614174000",
}
# id → (what differs from GOOD, the checks it must fail)
ROWS: dict[int | None, tuple[dict[str, Any], list[str]]] = {
    1: ({}, []),
    2: ({"email": "not-an-email"}, ["email: format email"]),
    3: ({"status": None}, ["status: required"]),
    4: ({"status": "lost"}, ["status: validValues"]),
    5: ({"code": "abc-1"}, ["code: minLength 7", "code: pattern"]),
    6: ({"amount": -5}, ["amount: minimum 0"]),
    7: ({"quantity": "two"}, ["quantity: logicalType integer"]),
    8: ({"quantity": "70000"}, ["quantity: format i16"]),
    9: ({"ordered_on": "yesterday"}, ["ordered_on: logicalType date"]),
    10: ({"ref": "zz"}, ["ref: format uuid"]),
    11: ({"email": "a-very-long-address-for-a-test@example.com"}, ["email: maxLength 40"]),
    12: ({}, []),
}
DUPLICATE_OF_1 = ({}, ["primary key (id): unique within the checkpoint"])
NO_ID = ({}, ["id: required"])


def singer() -> tuple[str, dict[int, list[str]]]:
    """The scenario, and the failed checks expected per input line."""
    lines = [json.dumps(SCHEMA)]
    expected: dict[int, list[str]] = {}
    records = [(n, *ROWS[n]) for n in ROWS] + [(1, *DUPLICATE_OF_1), (None, *NO_ID)]
    for n, changes, checks in records:
        lines.append(
            json.dumps({"type": "RECORD", "stream": "orders", "record": {"id": n, **GOOD, **changes}})
        )
        if checks:
            expected[len(lines)] = checks
    lines.append(json.dumps({"type": "STATE", "value": {"done": True}}))
    return "\n".join(lines) + "\n", expected


def config(lake: Lake, **overrides: Any) -> dict[str, Any]:
    return lake.config(contracts=[str(CONTRACT)], **overrides)


def ids(rows: list[dict[str, Any]]) -> list[Any]:
    return sorted(r["id"] for r in rows)


def test_quarantine_commits_the_good_rows_and_rejects_each_bad_one_with_its_checks(lake: Lake) -> None:
    text, expected = singer()
    result = run_target(config(lake), text)  # the contract's own level: quarantine
    assert isinstance(result.error, RowsQuarantined), result.error
    assert result.error.exit_code == 1
    assert "12 in acme.raw.orders__rejected" in str(result.error)
    assert result.states == ['{"done": true}'], "the good rows and the state committed"
    assert ids(read_pyiceberg(lake, "acme.raw.orders")) == [1, 12]
    assert ids(read_duckdb(lake, "acme.raw.orders")) == [1, 12]
    rejected = read_pyiceberg(lake, "acme.raw.orders__rejected")
    assert {r["line"]: sorted(r["failed_checks"]) for r in rejected} == {
        line: sorted(checks) for line, checks in expected.items()
    }
    for row in rejected:
        assert row["contract_id"] == "urn:contract:test:orders"
        assert row["contract_version"] == "1.0.0"
        assert row["batch_id"] == "run-1:1"
        assert row["stream"] == "orders"
        record = json.loads(row["record"])
        assert set(record) == set(SCHEMA["schema"]["properties"]), "the record as the tap sent it"
    assert {json.loads(r["record"])["id"] for r in rejected} == {*range(2, 12), 1, None}


def test_fail_commits_nothing_and_names_every_check_with_its_rows(lake: Lake) -> None:
    text, _ = singer()
    result = run_target(config(lake, contract_enforcement="fail"), text)
    assert isinstance(result.error, ContractViolation)
    assert result.error.exit_code == 2
    message = str(result.error)
    assert "urn:contract:test:orders@1.0.0" in message
    for check in ["email: format email", "status: validValues", "quantity: format i16", "id: required"]:
        assert f"{check}: 1 row(s)" in message, message
    assert "id=2 (line 3)" in message, "offending rows are named by primary key and input line"
    assert result.states == []
    with lake.catalog() as catalog:
        assert catalog.load_table(("acme", "raw", "orders")) is None, "the checkpoint was not committed"


def test_drop_counts_and_logs_but_keeps_only_the_good_rows(
    lake: Lake, caplog: pytest.LogCaptureFixture
) -> None:
    text, expected = singer()
    with caplog.at_level(logging.INFO):
        result = run_target(config(lake, contract_enforcement="drop"), text)
    assert result.error is None
    assert ids(read_pyiceberg(lake, "acme.raw.orders")) == [1, 12]
    with lake.catalog() as catalog:
        assert catalog.load_table(("acme", "raw", "orders__rejected")) is None
    summary = next(r.getMessage() for r in caplog.records if r.getMessage().startswith("INGEST_SUMMARY"))
    report = json.loads(summary.removeprefix("INGEST_SUMMARY "))["streams"]["orders"]["violations"]
    assert report["dropped"] == len(expected)
    assert report["checks"]["code: pattern"]["rows"] == 1
    assert report["checks"]["code: pattern"]["first"] == ["id=5 (line 6)"]


def test_contract_tags_become_table_properties_and_column_docs(lake: Lake) -> None:
    text, _ = singer()
    run_target(config(lake, table_properties={"finops.cost-center": "CC-9999"}), text)
    with lake.catalog() as catalog:
        table = catalog.load_table(("acme", "raw", "orders"))
    assert table is not None
    properties = table.metadata.properties
    assert properties["contract.id"] == "urn:contract:test:orders"
    assert properties["contract.version"] == "1.0.0"
    assert properties["governance.owner"] == "sales-data@acme.test"
    assert properties["governance.domain"] == "sales"
    assert properties["governance.retention"] == "P90D"
    assert properties["governance.tags"] == "test,sales"
    assert properties["finops.tag.unit"] == "retail"
    assert properties["finops.cost-center"] == "CC-9999", "the job's table_properties win"
    assert properties["classification.column.email"] == "confidential"
    email = table.schema().find_field("email")
    assert "[classification: confidential]" in (email.doc or "")
    assert "[critical data element]" in (email.doc or "")


def test_the_commit_names_the_contract(lake: Lake) -> None:
    text, _ = singer()
    run_target(config(lake, contract_enforcement="drop"), text)
    with lake.catalog() as catalog:
        (entry,) = catalog.commit_log("acme.raw")
    assert entry["summary"]["acme.raw.orders"]["contract"] == "urn:contract:test:orders@1.0.0"


def write_contract(tmp: Path, **changes: Any) -> Path:
    document = yaml.safe_load(CONTRACT.read_text())
    custom = {c["property"]: c for c in document["customProperties"]}
    for key, value in changes.items():
        if key == "properties":
            document["schema"][0]["properties"].extend(value)
        elif key == "version":
            document["version"] = value
        else:
            custom[key] = {"property": key, "value": value}
    document["customProperties"] = list(custom.values())
    path = tmp / "orders.yaml"
    path.write_text(yaml.safe_dump(document), encoding="utf-8")
    return path


def with_extra_property(schema: dict[str, Any], name: str) -> dict[str, Any]:
    extended = json.loads(json.dumps(schema))
    extended["schema"]["properties"][name] = {"type": ["string", "null"]}
    return extended


def good_lines(schema: dict[str, Any], *records: dict[str, Any]) -> str:
    lines = [json.dumps(schema)]
    lines += [json.dumps({"type": "RECORD", "stream": "orders", "record": r}) for r in records]
    return "\n".join([*lines, '{"type":"STATE","value":{"n":1}}']) + "\n"


@pytest.mark.parametrize("policy", ["freeze", "discard", "evolve"])
def test_schema_evolution_policy_for_properties_the_contract_does_not_know(
    lake: Lake, tmp_path: Path, policy: str
) -> None:
    contract = write_contract(tmp_path, schemaEvolution=policy)
    text = good_lines(with_extra_property(SCHEMA, "coupon"), {"id": 1, **GOOD, "coupon": "X1"})
    result = run_target(lake.config(contracts=[str(contract)]), text)
    if policy == "freeze":
        assert isinstance(result.error, ContractViolation)
        assert "coupon" in str(result.error)
        assert "freeze" in str(result.error)
        return
    assert result.error is None
    rows = read_pyiceberg(lake, "acme.raw.orders")
    assert ("coupon" in rows[0]) is (policy == "evolve")


def test_a_new_contract_version_adds_a_column_without_rewriting_data(lake: Lake, tmp_path: Path) -> None:
    v1 = write_contract(tmp_path, schemaEvolution="freeze")
    assert run_target(lake.config(contracts=[str(v1)]), good_lines(SCHEMA, {"id": 1, **GOOD})).error is None
    with lake.catalog() as catalog:
        before = catalog.load_table(("acme", "raw", "orders"))
    files_before = {t.file.file_path for t in before.scan().plan_files()}
    v2 = write_contract(
        tmp_path,
        schemaEvolution="freeze",
        version="1.1.0",
        properties=[{"name": "coupon", "logicalType": "string", "logicalTypeOptions": {"maxLength": 8}}],
    )
    text = good_lines(with_extra_property(SCHEMA, "coupon"), {"id": 2, **GOOD, "coupon": "X1"})
    assert run_target(lake.config(contracts=[str(v2)], run_id="run-2"), text).error is None
    with lake.catalog() as catalog:
        after = catalog.load_table(("acme", "raw", "orders"))
    assert after.metadata.properties["contract.version"] == "1.1.0"
    files_after = {t.file.file_path for t in after.scan().plan_files()}
    assert files_before < files_after, "the first run's file is still the table's, untouched"
    rows = {r["id"]: r for r in read_pyiceberg(lake, "acme.raw.orders")}
    assert rows[1]["coupon"] is None
    assert rows[2]["coupon"] == "X1"


def test_an_incompatible_change_is_refused_before_anything_lands(lake: Lake) -> None:
    assert (
        run_target(config(lake, contract_enforcement="drop"), good_lines(SCHEMA, {"id": 1, **GOOD})).error
        is None
    )
    changed = json.loads(json.dumps(SCHEMA))
    changed["schema"]["properties"]["amount"] = {"type": ["boolean", "null"]}
    text = good_lines(changed, {"id": 2, **GOOD, "amount": True})
    result = run_target(config(lake, contract_enforcement="drop", run_id="run-2"), text)
    assert isinstance(result.error, SchemaEvolutionError)
    assert "amount" in str(result.error)
    assert ids(read_pyiceberg(lake, "acme.raw.orders")) == [1]


def test_strict_mode_refuses_a_stream_without_a_contract(lake: Lake) -> None:
    other = good_lines(SCHEMA, {"id": 1, **GOOD}).replace('"orders"', '"refunds"')
    result = run_target(config(lake, contract_mode="strict"), other)
    assert isinstance(result.error, ContractError)
    assert "refunds" in str(result.error)
    assert "contract_mode" in str(result.error)
    lenient = run_target(config(lake), other)
    assert lenient.error is None, "lenient: loaded as the tap describes it"
    assert ids(read_pyiceberg(lake, "acme.raw.refunds")) == [1]


def test_an_invalid_contract_stops_the_target_before_it_reads_anything(lake: Lake, tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text(CONTRACT.read_text().replace("logicalType: integer", "logicalType: int", 1))
    with pytest.raises(ContractError) as raised:
        run_target(lake.config(contracts=[str(broken)]), "")
    assert str(broken) in str(raised.value)
    assert "schema[0].properties[0].logicalType" in str(raised.value)


def test_the_nessie_commit_names_the_contract_ids_and_versions(nessie: NessieServer, tmp_path: Path) -> None:
    lake = Lake(tmp_path / "lake", nessie_uri=nessie.uri, branch=new_nessie_branch(nessie.uri))
    text, _ = singer()
    run_target(config(lake), text)
    with NessieClient(nessie.uri) as client:
        (entry,) = [e for e in client.log(lake.branch) if "ingest.batch-id" in e.properties]
    assert json.loads(entry.properties["ingest.contracts"]) == {
        "acme.raw.orders": "urn:contract:test:orders@1.0.0"
    }


def test_new_tables_are_partitioned_and_sorted_as_the_contract_says(lake: Lake, tmp_path: Path) -> None:
    document = yaml.safe_load(CONTRACT.read_text())
    props = document["schema"][0]["properties"]
    props.append(
        {
            "name": "created",
            "logicalType": "date",
            "partitioned": True,
            "partitionKeyPosition": 1,
            "customProperties": [{"property": "partitionTransform", "value": "day"}],
        }
    )
    status = next(p for p in props if p["name"] == "status")
    status.update(partitioned=True, partitionKeyPosition=2)  # identity
    contract = tmp_path / "orders.yaml"
    contract.write_text(yaml.safe_dump(document), encoding="utf-8")
    schema = json.loads(json.dumps(SCHEMA))
    schema["schema"]["properties"]["created"] = {"type": ["string", "null"], "format": "date-time"}
    days = ["2024-05-01T10:00:00Z", "2024-05-01T23:59:59Z", "2024-05-02T00:00:00Z"]
    records = [
        {"id": n, **GOOD, "status": status_, "created": day}
        for n, (day, status_) in enumerate([(d, s) for d in days for s in ("open", "paid")], start=1)
    ]
    assert run_target(lake.config(contracts=[str(contract)]), good_lines(schema, *records)).error is None
    with lake.catalog() as catalog:
        table = catalog.load_table(("acme", "raw", "orders"))
    assert [(f.name, str(f.transform)) for f in table.spec().fields] == [
        ("created_day", "day"),
        ("status", "identity"),
    ]
    assert [table.schema().find_column_name(f.source_id) for f in table.sort_order().fields] == ["id"]
    files = list(table.scan().plan_files())
    partitions = sorted((t.file.partition[0], t.file.partition[1], t.file.record_count) for t in files)
    assert len(partitions) == 4, "one file per (day, status) in the checkpoint"
    assert sum(count for *_, count in partitions) == 6
    assert all("/created_day=2024-05-0" in t.file.file_path for t in files), "Hive-style partition folders"
    pruned = list(table.scan(row_filter="status = 'open'").plan_files())
    assert len(pruned) == 2, "readers prune by the partition"
    assert ids(read_duckdb(lake, "acme.raw.orders")) == list(range(1, 7))


def test_strict_mode_refuses_a_contract_of_another_source_and_starting_without_contracts(lake: Lake) -> None:
    text = good_lines(SCHEMA, {"id": 1, **GOOD})
    other = run_target(config(lake, contract_mode="strict", source_type="stripe"), text)
    assert isinstance(other.error, ContractError)
    assert "is for source type 'test', this job's source is 'stripe'" in str(other.error)
    same = run_target(
        config(lake, contract_mode="strict", source_type="test", contract_enforcement="drop"), text
    )
    assert same.error is None
    with pytest.raises(ContractError, match="contract_mode strict needs `contracts`"):
        run_target(lake.config(contract_mode="strict"), text)
