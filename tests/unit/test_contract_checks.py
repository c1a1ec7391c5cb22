"""The vectorised contract checks on Arrow batches: nested fields, array items, thresholds, keys."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from target_iceberg_nessie.contracts.checks import BatchChecker
from target_iceberg_nessie.contracts.model import (
    ContractError,
    compile_contract,
    read_contract,
    validate_document,
)

BASE: dict[str, Any] = {
    "apiVersion": "v3.0.2",
    "kind": "DataContract",
    "id": "urn:test",
    "version": "1",
    "status": "active",
    "name": "t",
}


def checker(properties: list[dict[str, Any]], quality: list[dict[str, Any]] | None = None) -> BatchChecker:
    document = {**BASE, "schema": [{"name": "s", "properties": properties, "quality": quality or []}]}
    (contract,) = compile_contract(document, "test.yaml")
    return BatchChecker(contract)


def failing(found: Any) -> dict[str, list[int]]:
    return {
        check: [i for i, bad in enumerate(mask.to_pylist()) if bad] for check, mask in found.masks.items()
    }


def test_nested_object_fields_are_checked_where_the_parent_exists() -> None:
    check = checker(
        [
            {
                "name": "address",
                "logicalType": "object",
                "properties": [
                    {
                        "name": "country",
                        "logicalType": "string",
                        "required": True,
                        "logicalTypeOptions": {"pattern": "^[A-Z]{2}$"},
                    },
                    {"name": "zip", "logicalType": "string", "logicalTypeOptions": {"maxLength": 5}},
                ],
            }
        ]
    )
    address = pa.array(
        [
            {"country": "DE", "zip": "10115"},
            {"country": "Germany", "zip": "10115"},
            {"country": None, "zip": "123456"},
            None,  # no address at all: its fields are not required
        ],
        pa.struct([("country", pa.string()), ("zip", pa.string())]),
    )
    assert failing(check.check(pa.table({"address": address}))) == {
        "address.country: pattern": [1],
        "address.country: required": [2],
        "address.zip: maxLength 5": [2],
    }


def test_array_items_fail_the_row_that_holds_them() -> None:
    check = checker(
        [
            {
                "name": "tags",
                "logicalType": "array",
                "items": {"logicalType": "string", "logicalTypeOptions": {"minLength": 2}},
            }
        ]
    )
    tags = pa.array([["ok", "fine"], ["x"], [], None, ["good", "y", "z"]], pa.list_(pa.string()))
    assert failing(check.check(pa.table({"tags": tags}))) == {"tags[]: minLength 2": [1, 4]}


def test_a_threshold_in_percent_lets_a_few_offending_rows_pass() -> None:
    rule = {"type": "library", "rule": "nullCheck", "unit": "percent", "mustBeLessThan": 30}
    check = checker([{"name": "email", "logicalType": "string", "quality": [rule]}])
    few = pa.table({"email": ["a@x.io", None, "b@x.io", "c@x.io"]})  # 25% null
    assert failing(check.check(few)) == {}
    many = pa.table({"email": [None, None, "b@x.io", "c@x.io"]})  # 50% null
    assert failing(check.check(many)) == {"email: nullCheck": [0, 1]}


def test_keys_are_unique_across_the_batches_of_a_checkpoint_and_reset_after_it() -> None:
    check = checker(
        [
            {"name": "a", "logicalType": "integer", "primaryKey": True, "primaryKeyPosition": 1},
            {"name": "b", "logicalType": "string", "primaryKey": True, "primaryKeyPosition": 2},
        ]
    )
    assert check.primary_key == ("a", "b")
    first = pa.table({"a": [1, 1, 2], "b": ["x", "y", "x"]})
    assert failing(check.check(first)) == {}
    second = pa.table({"a": [1, 3, 3], "b": ["y", "z", "z"]})
    key = "primary key (a, b): unique within the checkpoint"
    assert failing(check.check(second)) == {key: [0, 2]}, "seen in the first batch; twice in this one"
    check.reset_checkpoint()
    assert failing(check.check(second)) == {key: [2]}, "a new checkpoint remembers nothing"


def test_valid_values_compare_in_the_column_type() -> None:
    rule = {"type": "library", "rule": "validValues", "validValues": [1, 2, 3]}
    check = checker([{"name": "level", "logicalType": "integer", "quality": [rule]}])
    assert failing(check.check(pa.table({"level": pa.array([1, 4, None, 3], pa.int64())}))) == {
        "level: validValues": [1]
    }


def test_duplicate_count_rule_with_a_threshold() -> None:
    rule = {"type": "library", "rule": "duplicateCount", "mustBeLessOrEqualTo": 1}
    check = checker([{"name": "email", "logicalType": "string", "quality": [rule]}])
    assert failing(check.check(pa.table({"email": ["a", "b", "a"]}))) == {}, "one duplicate is allowed"
    # Thresholds apply per batch: here two rows repeat keys seen earlier in the checkpoint.
    assert failing(check.check(pa.table({"email": ["b", "c", "a"]}))) == {"email: duplicateCount": [0, 2]}


def test_integer_checks_on_floats_and_widths() -> None:
    check = checker(
        [{"name": "n", "logicalType": "integer", "logicalTypeOptions": {"format": "u8", "multipleOf": 2}}]
    )
    found = check.check(pa.table({"n": pa.array([2.0, 2.5, 300.0, -2.0, 3.0])}))
    assert failing(found) == {
        "n: logicalType integer (a fraction would be truncated)": [1],
        "n: format u8": [2, 3],
        "n: multipleOf 2": [1, 4],
    }


def test_an_unsupported_quality_rule_names_where_it_is() -> None:
    with pytest.raises(ContractError, match=r"schema\[0\]\.properties\[0\]\.quality\[0\]"):
        checker(
            [{"name": "n", "logicalType": "integer", "quality": [{"type": "library", "rule": "freshness"}]}]
        )


def test_key_uniqueness_none_allows_versions_of_a_row_but_not_missing_keys() -> None:
    document = {
        **BASE,
        "schema": [
            {"name": "s", "properties": [{"name": "id", "logicalType": "integer", "primaryKey": True}]}
        ],
        "customProperties": [{"property": "keyUniqueness", "value": "none"}],
    }
    (contract,) = compile_contract(document, "test.yaml")
    found = BatchChecker(contract).check(pa.table({"id": pa.array([1, 1, None], pa.int64())}))
    assert failing(found) == {"id: required": [2]}


def test_quality_rules_of_nested_properties_are_evaluated() -> None:
    rule = {"type": "library", "rule": "validValues", "validValues": ["DE", "FR"]}
    check = checker(
        [
            {
                "name": "address",
                "logicalType": "object",
                "properties": [{"name": "country", "logicalType": "string", "quality": [rule]}],
            }
        ]
    )
    address = pa.array([{"country": "DE"}, {"country": "XX"}], pa.struct([("country", pa.string())]))
    assert failing(check.check(pa.table({"address": address}))) == {"address.country: validValues": [1]}


def test_validation_reports_rules_the_target_cannot_evaluate_and_no_echoes_of_child_errors() -> None:
    document = {
        **BASE,
        "apiVersion": "v3.0.2",
        "schema": [
            {
                "name": "s",
                "properties": [
                    {
                        "name": "a",
                        "logicalType": "integer",
                        "quality": [{"type": "library", "rule": "freshness"}],
                    },
                ],
            }
        ],
    }
    (issue,) = validate_document(document, "t.yaml")
    assert issue.path == "schema[0].properties[0].quality[0]"
    assert issue.message.startswith("quality rule 'freshness' is not one the target evaluates")
    document["schema"][0]["properties"][0]["required"] = "yes"
    messages = [i.message for i in validate_document(document, "t.yaml")]
    assert messages == ["'yes' is not of type 'boolean' (in s → a)"], "no 'unevaluated properties' echo"


def test_a_key_given_twice_in_a_contract_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("apiVersion: v3.0.2\nkind: DataContract\nid: a\nid: b\n", encoding="utf-8")
    with pytest.raises(ContractError, match=r"key 'id' is given twice"):
        read_contract(path)
