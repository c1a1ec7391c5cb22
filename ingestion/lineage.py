"""Run metadata as an OpenLineage RunEvent, POSTed to the endpoint runner.yaml names (optional).

The event carries the run (a UUID derived from the run id), the job (`<tenant>/<job>` in the
configured namespace), the source objects read as inputs and the Iceberg tables written, at their
snapshot, as outputs. A failed POST is logged and never fails the run: lineage is a side channel.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any, Final

import httpx

from ingestion.jobs import OpenLineageSpec

PRODUCER: Final = "https://github.com/ingestion-platform/ingestion"
SCHEMA_URL: Final = "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent"
_RUN_NAMESPACE: Final = uuid.UUID("6f1c1a0e-5b7e-4c55-9f2d-3f9b1c2d4e5a")


def run_event(metadata: Mapping[str, Any], namespace: str) -> dict[str, Any]:
    """The RunEvent of a finished run (COMPLETE, or FAIL for a failed run)."""
    lineage = metadata["lineage"]
    return {
        "eventType": "FAIL" if metadata["status"] == "failed" else "COMPLETE",
        "eventTime": metadata["ended_at"],
        "producer": PRODUCER,
        "schemaURL": SCHEMA_URL,
        "run": {
            "runId": str(uuid.uuid5(_RUN_NAMESPACE, metadata["run_id"])),
            "facets": {
                "ingestion": {
                    "_producer": PRODUCER,
                    "_schemaURL": f"{PRODUCER}/schemas/run-metadata.schema.json",
                    "runId": metadata["run_id"],
                    "status": metadata["status"],
                    "exitCode": metadata["exit_code"],
                    "rowsWritten": metadata["totals"]["rows_written"],
                    "cpuTimeSec": metadata["cpu_time_sec"],
                    "apiCalls": sum(v["requests"] for v in metadata["api_calls"].values()),
                    "tags": metadata["tags"],
                }
            },
        },
        "job": {"namespace": namespace, "name": metadata["job_id"]},
        "inputs": [{"namespace": d["namespace"], "name": d["name"]} for d in lineage["inputs"]],
        "outputs": [
            {"namespace": d["namespace"], "name": d["name"], "facets": d.get("facets") or {}}
            for d in lineage["outputs"]
        ],
    }


def post(metadata: Mapping[str, Any], spec: OpenLineageSpec, api_key: str | None) -> str | None:
    """POST the run's event to `spec.url`; returns the problem, or None when it was accepted."""
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    try:
        response = httpx.post(
            spec.url, json=run_event(metadata, spec.namespace), headers=headers, timeout=spec.timeout_seconds
        )
    except httpx.HTTPError as error:
        return f"OpenLineage endpoint {spec.url} unreachable: {error}"
    if response.status_code >= httpx.codes.BAD_REQUEST:
        return f"OpenLineage endpoint {spec.url} answered {response.status_code}: {response.text[:300]}"
    return None
