"""The whole pipeline on object storage: `meltano run` (tap -> target -> Nessie) with an s3://
warehouse on a real S3-compatible server; Nessie's commits point at s3:// metadata."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from _commands import copy_meltano_project
from conftest import Lake, new_nessie_branch, read_duckdb, read_pyiceberg

from target_iceberg_nessie.catalogs.nessie_api import NessieClient

SOURCE_ROWS = {"customers": ("customer_id", 50), "orders": ("order_id", 200), "products": ("sku", 10)}


def test_meltano_run_into_nessie_with_an_s3_warehouse(tmp_path: Path, nessie: Any, s3_server: Any) -> None:
    branch = new_nessie_branch(nessie.uri, "s3")
    lake = Lake(tmp_path / "lake", nessie_uri=nessie.uri, branch=branch, s3=s3_server)
    project = copy_meltano_project(tmp_path / "project", lake)
    done = project.meltano_run("tap-demo-csv", "target-iceberg-nessie")
    assert done.returncode == 0, done.explain()
    for table, (key, count) in SOURCE_ROWS.items():
        name = f"default.raw.{table}"
        for reader in (read_pyiceberg, read_duckdb):
            keys = [row[key] for row in reader(lake, name)]
            assert len(keys) == len(set(keys)) == count, f"{name} via {reader.__name__}"
    with NessieClient(nessie.uri) as client:
        for table in SOURCE_ROWS:
            content = client.content(branch, ("default", "raw", table))
            assert content is not None
            assert content["metadataLocation"].startswith(
                f"{lake.warehouse_uri}/default/raw/{table}/metadata/"
            )
    # Credentials reach the loader by its environment only: not the project, state or Meltano files.
    leaked = [
        p
        for root in (project.root, lake.root)
        for p in root.rglob("*")
        if p.is_file() and not p.is_symlink() and s3_server.secret_key.encode() in p.read_bytes()
    ]
    assert not leaked, leaked
    # A second run finds nothing new (the tap is incremental) and commits nothing more.
    again = project.meltano_run("tap-demo-csv", "target-iceberg-nessie")
    assert again.returncode == 0, again.explain()
    for table, (_key, count) in SOURCE_ROWS.items():
        assert len(read_pyiceberg(lake, f"default.raw.{table}")) == count
    lake.close()
