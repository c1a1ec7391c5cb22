"""E2E support for the SaaS extractors: a project copy whose tap talks to a local fake, metered runs,
and a comparison of lake rows with the fake's objects."""

from __future__ import annotations

import json
import re
import shutil
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from _commands import Finished, MeltanoProject, copy_meltano_project, redirect_extractor
from conftest import REPO_ROOT, Lake, new_nessie_branch
from fakes.base import FakeApi, Served
from fakes.stripe import ACCOUNT_ID, SECRET_KEY

LOADER = "target-iceberg-nessie"
NAMESPACE = ("default", "raw")
PIPELINE_ID = "default.raw"  # the loader's default: <tenant>.<namespace>

sys.path.insert(0, str(REPO_ROOT / "packages" / "ingest-http-meter" / "src"))
from ingest_http_meter import read_counts  # noqa: E402 - the meter package is not a project dependency


def write_stripe_job(write: Callable[[str, str], Any], *, extra: str = "") -> None:
    """The platform job acme/stripe_billing (customers and charges of the fake's account) and its key,
    written with the platform's `write(relative path, text)`."""
    write("secrets/acme/stripe.env", f"STRIPE_API_KEY={SECRET_KEY}\n")
    write(
        "configs/jobs/acme/stripe_billing.yaml",
        f"""
        schema_version: 1
        tenant: acme
        extractor: stripe
        streams: [customers, charges]
        config: {{account_id: {ACCOUNT_ID}, start_date: "2025-01-01T00:00:00Z"}}
        secrets: {{client_secret: STRIPE_API_KEY}}
        target: {{namespace: stripe, write_mode: upsert}}
        {extra}
        """,
    )


def make_lake(kind: str, root: Path, request: Any) -> Lake:
    """A lake on the embedded catalog, or on a fresh branch of the session's Nessie."""
    if kind == "embedded":
        return Lake(root)
    server = request.getfixturevalue("nessie")
    return Lake(root, nessie_uri=server.uri, branch=new_nessie_branch(server.uri))


def saas_project(root: Path, lake: Lake, extractor: str, fake: FakeApi) -> MeltanoProject:
    """A copy of the project with `extractor`'s API hosts sent to `fake`, and the contracts under
    assets/ (so that TARGET_ICEBERG_NESSIE_CONTRACTS='["assets/<source>"]' works as in the repo)."""
    project = copy_meltano_project(root, lake, extractors=(extractor,))
    shutil.copytree(REPO_ROOT / "assets", project.root / "assets")
    redirect_extractor(project, extractor, fake.redirects)
    return project


@dataclass(frozen=True)
class MeteredRun:
    """One `meltano run`, the requests the fake served during it and what the tap's meter counted."""

    finished: Finished
    served: list[Served]
    metered: dict[str, int]

    @property
    def api_calls(self) -> int:
        return sum(self.metered.values())

    def queries(self, path: str) -> list[dict[str, str]]:
        """The query parameters of every request to `path` (last value of each)."""
        return [{k: v[-1] for k, v in s.query.items()} for s in self.served if s.path == path]


def metered_run(
    project: MeltanoProject, fake: FakeApi, extractor: str, meter_dir: Path, env: Mapping[str, str]
) -> MeteredRun:
    before = fake.request_count
    finished = project.meltano_run(extractor, LOADER, env={**env, "INGEST_HTTP_METER_DIR": str(meter_dir)})
    served = fake.served[before:]
    metered = read_counts(meter_dir) if meter_dir.exists() else {}
    return MeteredRun(finished, served, metered)


def ingest_summary(finished: Finished) -> dict[str, Any]:
    """The loader's INGEST_SUMMARY line (per stream: records, rows committed, contract results)."""
    found = re.findall(r"INGEST_SUMMARY (\{.*\})\s*$", finished.stderr, flags=re.MULTILINE)
    assert len(found) == 1, f"one INGEST_SUMMARY line from the loader\n{finished.explain()}"
    summary: dict[str, Any] = json.loads(found[0])
    return summary


def committed_state(lake: Lake) -> dict[str, Any]:
    """The Singer state committed with the rows (the state store's copy of the catalog's)."""
    path = lake.state_dir / "default" / PIPELINE_ID / "state.json"
    document: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return dict(document["state"])


def table_names(lake: Lake) -> set[str]:
    return {ident[-1] for ident in lake.catalog().list_tables(NAMESPACE)}


def epoch(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, tz=UTC)


def differences(actual: Any, expected: Any, path: str = "") -> list[str]:
    """Where `actual` (a lake row) differs from `expected` (what the source holds).

    Only what `expected` names is compared: the tap's schema adds columns the source did not send,
    and those are null. Untyped objects reach the lake as JSON text, so text is parsed when an
    object or list is expected; a null list is read as [] by pyiceberg and as NULL by DuckDB.
    """
    if isinstance(expected, dict | list) and isinstance(actual, str):
        actual = json.loads(actual)
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            return [f"{path or '<row>'}: {actual!r} != {expected!r}"]
        found: list[str] = []
        for key, value in expected.items():
            found += differences(actual.get(key), value, f"{path}.{key}" if path else key)
        return found
    if isinstance(expected, list):
        actual = [] if actual is None else actual
        if not isinstance(actual, list) or len(actual) != len(expected):
            return [f"{path}: {actual!r} != {expected!r}"]
        return [
            d
            for i, (a, e) in enumerate(zip(actual, expected, strict=True))
            for d in differences(a, e, f"{path}[{i}]")
        ]
    if actual != expected:
        return [f"{path}: {actual!r} != {expected!r}"]
    return []
