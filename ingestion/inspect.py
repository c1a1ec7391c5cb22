"""`ingest check <job>` and `ingest discover <job>`: what a job would reach and read, without loading.

check: the catalog answers (Nessie's reference exists; the embedded database opens), the warehouse
takes a write (a probe object written and deleted), and the source accepts the job's credentials
(`meltano config <extractor> test`, which runs the tap until its first record and stops). Each
failure says whether retrying later may help (unreachable, rate limited) or something must change.

discover: the streams the extractor offers with the job's settings (`meltano invoke --dump=catalog`)
and their schemas, and an ODCS v3.0.2 contract skeleton for one stream to start a contract from.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

from ingestion.errors import PlatformError
from ingestion.runner import RETRYABLE_OUTPUT, JobRun, project_dir


@dataclass(frozen=True)
class CheckResult:
    component: str  # catalog | object_store | source
    ok: bool
    retryable: bool
    message: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _catalog(run: JobRun) -> CheckResult:
    from ingestion.lake import open_lake  # noqa: PLC0415 - pyiceberg loads only here
    from ingestion.paths import sqlite_file  # noqa: PLC0415

    lake = run.lake
    database = None if lake.is_nessie else sqlite_file(lake.catalog_uri)
    if database is not None and not database.exists():
        return CheckResult(
            "catalog", True, False, f"embedded catalog {database} will be created by the first run"
        )
    try:
        with open_lake(lake) as catalog:
            catalog.list_namespaces()
    except Exception as error:  # noqa: BLE001 - every failure becomes a line of the report
        text = str(error)
        retryable = bool(RETRYABLE_OUTPUT.search(text)) or "unreachable" in text.lower()
        return CheckResult("catalog", False, retryable, f"{lake.describe()}: {text}")
    return CheckResult("catalog", True, False, f"{lake.describe()} answers")


def _object_store(run: JobRun) -> CheckResult:
    from pyiceberg.io import load_file_io  # noqa: PLC0415

    lake = run.lake
    location = f"{lake.warehouse.rstrip('/')}/_ingest/check/{uuid.uuid4().hex}.probe"
    if "://" not in lake.warehouse:
        Path(lake.warehouse).mkdir(parents=True, exist_ok=True)
    try:
        io = load_file_io(dict(lake.io_properties), location)
        with io.new_output(location).create(overwrite=True) as handle:
            handle.write(b"ingest check")
        io.delete(location)
    except Exception as error:  # noqa: BLE001
        text = " ".join(str(error).split())
        retryable = bool(RETRYABLE_OUTPUT.search(text)) or "NETWORK_CONNECTION" in text
        return CheckResult("object_store", False, retryable, f"warehouse {lake.warehouse}: {text}")
    return CheckResult("object_store", True, False, f"warehouse {lake.warehouse} takes writes")


def _meltano(run: JobRun, args: list[str]) -> subprocess.CompletedProcess[str]:
    lake = run.lake
    env = run.environment(lake, Path("/nonexistent/meter"), Path("/nonexistent/report.json"))
    env.pop("INGEST_HTTP_METER_DIR", None)
    env.pop("INGEST_RUN_REPORT", None)
    return subprocess.run(  # noqa: S603 - our own meltano
        [str(Path(sys.executable).parent / "meltano"), *args],
        cwd=project_dir(run.environ),
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def _source(run: JobRun) -> CheckResult:
    done = _meltano(run, ["config", "test", "--plugin-type", "extractor", "--no-install", run.plugin])
    output = run.redactor.text((done.stdout + "\n" + done.stderr).strip())
    if done.returncode == 0:
        return CheckResult("source", True, False, f"{run.plugin} connected and read a record")
    lines = [line for line in output.splitlines() if line.strip()]
    reason = next((line for line in reversed(lines) if "error" in line.lower()), lines[-1] if lines else "")
    return CheckResult(
        "source", False, bool(RETRYABLE_OUTPUT.search(output)), f"{run.plugin}: {reason[-800:]}"
    )


class InfrastructureError(PlatformError):
    """The catalog or the warehouse is not usable: nothing was run."""

    def __init__(self, failures: list[CheckResult]) -> None:
        super().__init__("; ".join(f"{f.component}: {f.message}" for f in failures))
        self.exit_code = 75 if all(f.retryable for f in failures) else 2


def infrastructure(run: JobRun) -> None:
    """Before a run: the catalog answers and the warehouse takes a write, or the run stops."""
    failures = [r for r in (_catalog(run), _object_store(run)) if not r.ok]
    if failures:
        raise InfrastructureError(failures)


def check(run: JobRun) -> list[CheckResult]:
    """Catalog, object store and source, each checked even when another failed."""
    return [_catalog(run), _object_store(run), _source(run)]


def discover(run: JobRun) -> dict[str, Any]:
    """The extractor's catalog with the job's settings: {stream: JSON schema}."""
    done = _meltano(run, ["invoke", "--no-install", "--dump=catalog", run.plugin])
    if done.returncode != 0:
        tail = run.redactor.text(done.stderr.strip())[-1500:]
        msg = f"{run.plugin} could not discover its streams: {tail}"
        raise PlatformError(msg)
    catalog = json.loads(done.stdout)
    return {
        str(entry.get("tap_stream_id") or entry.get("stream")): entry.get("schema") or {}
        for entry in catalog.get("streams", [])
    }


_LOGICAL = {
    "integer": "integer",
    "number": "number",
    "boolean": "boolean",
    "object": "object",
    "array": "array",
}


def _property(name: str, schema: Mapping[str, Any], key: tuple[str, ...]) -> dict[str, Any]:
    types = schema.get("type") or ["string"]
    types = [types] if isinstance(types, str) else list(types)
    kind = next((t for t in types if t != "null"), "string")
    found: dict[str, Any] = {"name": name, "logicalType": _LOGICAL.get(kind, "string"), "physicalType": kind}
    if schema.get("format") in {"date-time", "date"}:
        found["logicalType"] = "date"
        found["logicalTypeOptions"] = {"format": schema["format"]}
    if "null" not in types or name in key:
        found["required"] = True
    if name in key:
        found["primaryKey"] = True
        found["primaryKeyPosition"] = key.index(name) + 1
    if kind == "object" and isinstance(schema.get("properties"), Mapping):
        found["properties"] = [_property(n, s, ()) for n, s in schema["properties"].items()]
    if kind == "array" and isinstance(schema.get("items"), Mapping):
        found["items"] = _property("items", schema["items"], ())
        found["items"].pop("name")
    return found


def contract_skeleton(
    stream: str, schema: Mapping[str, Any], *, source: str, tenant: str, key: tuple[str, ...] = ()
) -> str:
    """An ODCS v3.0.2 contract for `stream` from its JSON schema, to review and complete."""
    properties = schema.get("properties") or {}
    document = {
        "apiVersion": "v3.0.2",
        "kind": "DataContract",
        "id": f"urn:contract:{source}:{stream}",
        "version": "0.1.0",
        "status": "draft",
        "name": f"{source} {stream}",
        "tenant": tenant,
        "description": {"purpose": f"Describe what {stream} holds and who uses it."},
        "schema": [
            {
                "name": stream,
                "physicalType": "table",
                "logicalType": "object",
                "properties": [_property(n, s, key) for n, s in properties.items()],
            }
        ],
        "customProperties": [
            {"property": "source", "value": {"type": source, "object": stream}},
            {"property": "enforcement", "value": "quarantine"},
        ],
    }
    header = (
        f"# Generated by `ingest discover` from the {source} extractor's schema of `{stream}`; review it.\n"
    )
    return header + yaml.safe_dump(document, sort_keys=False, allow_unicode=True)
