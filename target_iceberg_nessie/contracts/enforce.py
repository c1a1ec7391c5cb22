"""A stream's contract in the target: schema policy at SCHEMA time, checks per batch, the report.

Per batch (on the staging thread): the checks run on the conformed Arrow table; by level,
`fail` raises ContractViolation (the checkpoint is not committed), `quarantine` keeps the good rows
and turns the bad ones into rows of `<table>__rejected` (the raw record, the checks it failed, the
contract id and version, the batch id, the input line), `drop` keeps the good rows. Every level
counts per check and names the first offending rows by primary key.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

import msgspec
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from target_iceberg_nessie.contracts.checks import BatchChecker, describe_rows
from target_iceberg_nessie.contracts.model import ObjectContract
from target_iceberg_nessie.errors import ContractViolation

REJECTED_SUFFIX: Final = "__rejected"
REJECTED_SCHEMA: Final = {
    "type": "object",
    "properties": {
        "record": {"type": ["string", "null"], "description": "the record as the tap sent it (JSON)"},
        "failed_checks": {"type": ["array", "null"], "items": {"type": "string"}},
        "contract_id": {"type": ["string", "null"]},
        "contract_version": {"type": ["string", "null"]},
        "batch_id": {"type": ["string", "null"]},
        "stream": {"type": ["string", "null"]},
        "line": {"type": ["integer", "null"]},
        "rejected_at": {"type": ["string", "null"], "format": "date-time"},
    },
}


class _Envelope(msgspec.Struct):
    record: msgspec.Raw = msgspec.Raw(b"null")


_ENVELOPE = msgspec.json.Decoder(_Envelope)


class SchemaPolicyError(ContractViolation):
    """The tap's schema has properties the contract does not declare, and the policy is freeze."""


@dataclass
class ViolationReport:
    """What a stream's checks found in this run: per check a count and the first offending rows."""

    samples_per_check: int
    counts: dict[str, int] = field(default_factory=dict)
    samples: dict[str, list[str]] = field(default_factory=dict)
    quarantined: int = 0
    dropped: int = 0
    run_level: list[str] = field(default_factory=list)  # failed run-level rules (rowCount)

    def add(self, counts: Mapping[str, int], samples: Mapping[str, list[str]]) -> None:
        for check, count in counts.items():
            self.counts[check] = self.counts.get(check, 0) + count
            kept = self.samples.setdefault(check, [])
            kept.extend(samples.get(check, [])[: max(0, self.samples_per_check - len(kept))])

    def to_json(self) -> dict[str, Any]:
        return {
            "checks": {c: {"rows": n, "first": self.samples.get(c, [])} for c, n in self.counts.items()},
            "quarantined": self.quarantined,
            "dropped": self.dropped,
            "run_level": self.run_level,
        }


def describe(
    stream: str, contract: ObjectContract, counts: Mapping[str, int], samples: Mapping[str, list[str]]
) -> str:
    lines = [f"stream '{stream}' breaks contract {contract.ref} ({contract.file}):"]
    for check, count in sorted(counts.items()):
        named = "; ".join(samples.get(check, []))
        lines.append(f"  - {check}: {count} row(s), e.g. {named}")
    return "\n".join(lines)


@dataclass
class Outcome:
    """What one staged batch yields for the main thread: its counts and samples, rejected rows."""

    counts: dict[str, int] = field(default_factory=dict)
    samples: dict[str, list[str]] = field(default_factory=dict)
    rejected: list[dict[str, Any]] = field(default_factory=list)  # rows of <stream>__rejected
    dropped: int = 0


class StreamContract:
    """One stream's contract, its effective level and schema policy, and its checker."""

    def __init__(self, stream: str, contract: ObjectContract, *, level: str, evolution: str) -> None:
        self.stream = stream
        self.contract = contract
        self.level = level
        self.evolution = evolution
        self.checker = BatchChecker(contract)
        self.report = ViolationReport(contract.violation_samples)
        self._lock = threading.Lock()

    @property
    def rejected_stream(self) -> str:
        return f"{self.stream}{REJECTED_SUFFIX}"

    # -- SCHEMA --------------------------------------------------------------------------------

    def apply_policy(self, schema: Mapping[str, Any]) -> tuple[Mapping[str, Any], list[str]]:
        """The Singer schema to load under the contract's schema-evolution policy, and the
        properties it discards."""
        properties = schema.get("properties") or {}
        unknown = [name for name in properties if name not in self.contract.columns]
        if not unknown or self.evolution == "evolve":
            return schema, []
        if self.evolution == "freeze":
            msg = (
                f"stream '{self.stream}' has properties {unknown} that contract {self.contract.ref} "
                f"({self.contract.file}) does not declare, and its schemaEvolution is freeze: add them "
                "to a new version of the contract, or set schemaEvolution evolve or discard"
            )
            raise SchemaPolicyError(msg)
        kept = {name: prop for name, prop in properties.items() if name in self.contract.columns}
        return {**schema, "properties": kept}, unknown

    # -- a batch (staging thread) ----------------------------------------------------------------

    def enforce(
        self, table: pa.Table, lines: Sequence[bytes], numbers: Sequence[int]
    ) -> tuple[pa.Table, Outcome]:
        """Check `table` (the conformed batch); returns the rows to write and what was found."""
        with self._lock:  # the checker's per-checkpoint key sets
            found = self.checker.check(table)
        outcome = Outcome()
        if not found.any:
            return table, outcome
        counts = found.counts()
        key = self.contract.primary_key
        samples = {}
        for check, mask in found.masks.items():
            first = pc.indices_nonzero(mask).slice(0, self.report.samples_per_check).to_pylist()
            samples[check] = describe_rows(table, first, key, numbers)
        outcome.counts, outcome.samples = counts, samples
        if self.level == "fail":
            with self._lock:  # the run report says which checks stopped the run
                self.report.add(counts, samples)
            raise ContractViolation(describe(self.stream, self.contract, counts, samples))
        bad = found.bad_mask()
        bad_rows = pc.indices_nonzero(bad)
        good = table.filter(pc.invert(bad))
        if self.level == "drop":
            outcome.dropped = len(bad_rows)
            return good, outcome
        failed = found.checks_per_row(bad_rows)
        now = datetime.now(UTC).isoformat(timespec="milliseconds")
        for row, checks in zip(bad_rows.to_pylist(), failed, strict=True):
            outcome.rejected.append(
                {
                    "record": bytes(_ENVELOPE.decode(lines[row]).record).decode("utf-8"),
                    "failed_checks": checks,
                    "contract_id": self.contract.contract_id,
                    "contract_version": self.contract.version,
                    "stream": self.stream,
                    "line": numbers[row],
                    "rejected_at": now,
                }
            )
        return good, outcome

    def rejected_lines(self, outcome: Outcome, batch_id: str) -> list[bytes]:
        """RECORD lines for `<stream>__rejected`, stamped with the checkpoint's batch id."""
        stream = self.rejected_stream
        return [
            orjson.dumps({"type": "RECORD", "stream": stream, "record": {**row, "batch_id": batch_id}})
            + b"\n"
            for row in outcome.rejected
        ]

    def reset_checkpoint(self) -> None:
        with self._lock:
            self.checker.reset_checkpoint()

    # -- the run -------------------------------------------------------------------------------

    def run_level_failures(self, rows: int) -> list[str]:
        """Row-count rules on the rows this run received for the stream."""
        failures = []
        for rule in self.contract.quality:
            if rule.rule == "rowCount" and not rule.passes(rows, rows):
                bounds = ", ".join(f"{k} {v}" for k, v in rule.thresholds.items())
                failures.append(f"{rule.name}: {rows} row(s) in this run, expected {bounds}")
        return failures
