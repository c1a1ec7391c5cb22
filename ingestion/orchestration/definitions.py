"""The platform's Dagster definitions, loaded from the folders `ingest run` uses (INGEST_*_DIR, the
image's volumes, or the checkout): `dagster dev -m ingestion.orchestration.definitions`, and the code
location `ingest serve` runs."""

from __future__ import annotations

from ingestion.orchestration import build_definitions

defs = build_definitions()
