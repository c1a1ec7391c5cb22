"""The lakes a benchmarked target writes to: the embedded SQLite catalog, or a fresh branch of Nessie.

Used by ``run_bench.py`` and ``commit_bench.py``. Every run gets an empty lake of its own (a work dir,
and for Nessie also a new branch from ``main``), so the catalogs are compared from the same start.
What the run committed is read back through the target's own catalog API afterwards. The target's
modules are imported only when a target pipeline needs them, so the other pipelines of
``run_bench.py`` run even while the target does not import.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psutil

CATALOGS = ("sql", "nessie")
TENANT, NAMESPACE = "bench", "raw"
PIPELINE_ID = f"{TENANT}.{NAMESPACE}"


@dataclass(frozen=True)
class NessieService:
    """A Nessie server to benchmark against; `pid` when it runs on this machine (for its CPU time)."""

    uri: str
    pid: int | None


def _server_pid(uri: str) -> int | None:
    """The local Nessie (Quarkus) process listening on the URI's port, if there is one."""
    port = urlsplit(uri).port
    wanted = f"-Dquarkus.http.port={port}"
    for proc in psutil.process_iter(["cmdline"]):
        if wanted in (proc.info["cmdline"] or ()):
            return int(proc.pid)
    return None


@contextmanager
def nessie_service(uri: str | None, log_path: Path) -> Iterator[NessieService]:
    """The server at `uri`, or a fresh in-memory one (devstack) for the duration of the block."""
    if uri:
        yield NessieService(uri, _server_pid(uri))
        return
    from devstack.nessie import NessieServer  # noqa: PLC0415 - only Nessie benchmarks need it

    server = NessieServer(log_path=log_path).start()
    try:
        yield NessieService(server.uri, _server_pid(server.uri))
    finally:
        server.stop()


def process_cpu_s(pid: int | None) -> float | None:
    """User + system CPU seconds a process used so far (None: no such process)."""
    if pid is None:
        return None
    try:
        times = psutil.Process(pid).cpu_times()
    except psutil.Error:
        return None
    return float(times.user + times.system)


def process_rss_mb(pid: int | None) -> float | None:
    if pid is None:
        return None
    try:
        return float(psutil.Process(pid).memory_info().rss) / (1 << 20)
    except psutil.Error:
        return None


def new_run_id(label: str) -> str:
    return f"{label}-{secrets.token_hex(4)}"


def target_config(
    catalog: str,
    work: Path,
    *,
    run_id: str,
    nessie_uri: str | None = None,
    checkpoint_interval: float | None = None,
) -> dict[str, Any]:
    """The target's config for an empty lake in `work`; for Nessie a new branch is created first."""
    config: dict[str, Any] = {
        "warehouse": str(work / "warehouse"),
        "state_dir": str(work / "state"),
        "tenant": TENANT,
        "namespace": NAMESPACE,
        "run_id": run_id,
    }
    if catalog == "sql":
        config["catalog_uri"] = f"sqlite:///{work / 'catalog.db'}"
    elif catalog == "nessie":
        if not nessie_uri:
            msg = "the nessie catalog needs a server URI"
            raise ValueError(msg)
        from target_iceberg_nessie.catalogs.nessie_api import NessieClient  # noqa: PLC0415 - imported when needed (docstring)

        branch = f"bench-{run_id}"
        with NessieClient(nessie_uri) as client:
            client.create_branch(branch, client.reference("main"))
        config.update({"catalog_type": "nessie", "nessie_uri": nessie_uri, "branch": branch})
    else:
        msg = f"unknown catalog {catalog!r}; choose from {', '.join(CATALOGS)}"
        raise ValueError(msg)
    if checkpoint_interval is not None:
        # The SDK reads a config file's fractions as Decimal, which the target's settings refuse
        # (at 0601306 and e287099): write whole numbers as integers.
        whole = float(checkpoint_interval).is_integer()
        config["checkpoint_interval_seconds"] = int(checkpoint_interval) if whole else checkpoint_interval
    return config


def committed(config: dict[str, Any]) -> tuple[int, int]:
    """(rows in the current snapshots of all tables, checkpoints committed by the config's run)."""
    from target_iceberg_nessie.catalogs import open_catalog  # noqa: PLC0415 - imported when needed (docstring)

    nessie = config.get("catalog_type") == "nessie"
    with open_catalog(
        "nessie" if nessie else "sql",
        name="ingest",
        uri=config["nessie_uri"] if nessie else config["catalog_uri"],
        warehouse=config["warehouse"],
        branch=config.get("branch", "main"),
    ) as catalog:
        rows = 0
        for namespace in catalog.list_namespaces():
            for identifier in catalog.list_tables(namespace):
                table = catalog.load_table(identifier)
                snapshot = table.current_snapshot() if table is not None else None
                if snapshot is not None and snapshot.summary is not None:
                    rows += int(snapshot.summary.additional_properties.get("total-records", 0))
        log = catalog.commit_log(PIPELINE_ID, limit=1_000_000)
        commits = sum(1 for entry in log if entry["run_id"] == config["run_id"])
    return rows, commits
