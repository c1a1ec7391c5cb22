"""ODCS v3.0.2 data contracts: loaded and validated (model.py), enforced on batches (checks.py)."""

from __future__ import annotations

from target_iceberg_nessie.contracts.model import (
    ColumnRule,
    ContractError,
    ContractIssue,
    ContractSet,
    ObjectContract,
    QualityRule,
    read_contract,
    validate_document,
)

__all__ = [
    "ColumnRule",
    "ContractError",
    "ContractIssue",
    "ContractSet",
    "ObjectContract",
    "QualityRule",
    "read_contract",
    "validate_document",
]
