"""Shared fixtures: a throwaway embedded lake, the target run in-process, and independent readers."""

from __future__ import annotations

import contextlib
import io
import os
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

pytest_plugins = ["services", "services_db", "services_s3"]  # real services (tests/services*.py)

REPO_ROOT = Path(__file__).resolve().parent.parent
SINGER_FIXTURES = REPO_ROOT / "tests" / "fixtures" / "singer"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests are marked by their directory (tests/unit, tests/integration, tests/e2e)."""
    for item in items:
        parts = Path(str(item.fspath)).relative_to(REPO_ROOT / "tests").parts
        if parts and parts[0] in {"unit", "integration", "e2e"}:
            item.add_marker(getattr(pytest.mark, parts[0]))


@dataclass
class Lake:
    """A lake in a temporary folder: the embedded catalog (the target's default), or a branch of a
    real Nessie server when `nessie_uri` is set. The warehouse is a local folder either way."""

    root: Path
    nessie_uri: str | None = None
    branch: str = "main"
    opened: list[Any] = field(default_factory=list)  # catalogs the test opened; closed after it
    s3: Any = None  # a devstack.s3.S3Server: the warehouse is s3://<s3_bucket>/<root's name> on it
    s3_bucket: str = "warehouse"

    @property
    def catalog_type(self) -> str:
        return "sql" if self.nessie_uri is None else "nessie"

    @property
    def warehouse(self) -> Path:
        return self.root / "warehouse"

    @property
    def warehouse_uri(self) -> str:
        """What the target is configured with: the local folder, or the s3:// location."""
        if self.s3 is None:
            return str(self.warehouse)
        return f"s3://{self.s3_bucket}/{self.root.parent.name}-{self.root.name}"

    @property
    def io_properties(self) -> dict[str, str]:
        return {} if self.s3 is None else dict(self.s3.fileio_properties())

    @property
    def s3_settings(self) -> dict[str, str]:
        if self.s3 is None:
            return {}
        return {
            "s3_endpoint": self.s3.endpoint,
            "s3_region": self.s3.region,
            "s3_access_key_id": self.s3.access_key,
            "s3_secret_access_key": self.s3.secret_key,
        }

    @property
    def catalog_uri(self) -> str:
        return f"sqlite:///{self.root / 'catalog.db'}"

    @property
    def state_dir(self) -> Path:
        return self.root / "state"

    def config(self, **overrides: Any) -> dict[str, Any]:
        catalog: dict[str, Any] = {"catalog_uri": self.catalog_uri}
        if self.nessie_uri is not None:
            catalog = {"catalog_type": "nessie", "nessie_uri": self.nessie_uri, "branch": self.branch}
        return {
            "warehouse": self.warehouse_uri,
            **self.s3_settings,
            **catalog,
            "state_dir": str(self.state_dir),
            "tenant": "acme",
            "namespace": "raw",
            "run_id": "run-1",
            "checkpoint_interval_seconds": 0,  # every STATE commits: tests count checkpoints
            **overrides,
        }

    def catalog(self, *, create: bool = False, branch: str | None = None) -> Any:
        """The lake's catalog (a reader unless `create`); `branch` reads another Nessie reference."""
        from target_iceberg_nessie.catalogs import open_catalog  # noqa: PLC0415

        catalog = open_catalog(
            self.catalog_type,
            name="ingest",
            uri=self.catalog_uri if self.nessie_uri is None else self.nessie_uri,
            warehouse=self.warehouse_uri,
            create=create,
            branch=branch or self.branch,
            io_properties=self.io_properties,
        )
        self.opened.append(catalog)
        return catalog

    def close(self) -> None:
        while self.opened:
            self.opened.pop().close()


def new_nessie_branch(uri: str, prefix: str = "t") -> str:
    """A fresh branch from main, so that tests sharing one Nessie server never see each other."""
    from target_iceberg_nessie.catalogs.nessie_api import NessieClient  # noqa: PLC0415

    name = f"{prefix}-{uuid.uuid4().hex[:10]}"
    with NessieClient(uri) as client:
        client.create_branch(name, client.reference("main"))
    return name


@pytest.fixture(params=["embedded", "nessie"])
def lake(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Lake]:
    """Catalog-agnostic tests take this: they run once on the embedded catalog, once on Nessie."""
    if request.param == "embedded":
        opened = Lake(tmp_path / "lake")
    else:
        server = request.getfixturevalue("nessie")
        opened = Lake(tmp_path / "lake", nessie_uri=server.uri, branch=new_nessie_branch(server.uri))
    yield opened
    opened.close()


@pytest.fixture
def embedded_lake(tmp_path: Path) -> Iterator[Lake]:
    """For tests of the embedded catalog itself (or of tools that read only it)."""
    opened = Lake(tmp_path / "lake")
    yield opened
    opened.close()


@dataclass
class TargetRun:
    stdout: str
    error: BaseException | None

    @property
    def states(self) -> list[str]:
        return [line for line in self.stdout.splitlines() if line.strip()]


def run_target(config: Mapping[str, Any], singer: str | bytes) -> TargetRun:
    """Run the target in-process on `singer` lines; returns what it printed and what it raised."""
    from target_iceberg_nessie.target import TargetIcebergNessie  # noqa: PLC0415

    text = singer.decode() if isinstance(singer, bytes) else singer
    stdout = io.StringIO()
    error: BaseException | None = None
    with contextlib.redirect_stdout(stdout):
        target = TargetIcebergNessie(config=dict(config))
        try:
            target.process_lines(io.StringIO(text))
            target.process_endofpipe()
        except Exception as raised:  # noqa: BLE001 - handed to the test to assert on its type
            error = raised
        finally:
            target.close()
    return TargetRun(stdout=stdout.getvalue(), error=error)


def read_pyiceberg(lake: Lake, table: str) -> list[dict[str, Any]]:
    loaded = lake.catalog().load_table(tuple(table.split(".")))
    assert loaded is not None, f"table {table} does not exist"
    rows: list[dict[str, Any]] = loaded.scan().to_arrow().to_pylist()
    return rows


def duckdb_connection(s3: Any = None) -> Any:
    """DuckDB with the iceberg extension loaded from the PyPI packages (no downloads here); with
    `s3` (a devstack.s3.S3Server) also httpfs and a secret that reaches that server."""
    import duckdb  # noqa: PLC0415
    import duckdb_extension_avro  # noqa: PLC0415
    import duckdb_extension_httpfs  # noqa: PLC0415
    import duckdb_extension_iceberg  # noqa: PLC0415

    con = duckdb.connect()
    packages = [(duckdb_extension_avro, "avro"), (duckdb_extension_iceberg, "iceberg")]
    if s3 is not None:
        packages.insert(0, (duckdb_extension_httpfs, "httpfs"))
    for package, name in packages:
        found = list(Path(package.__file__).parent.rglob(f"{name}.duckdb_extension"))
        assert found, f"{name}.duckdb_extension not found in {package.__name__}"
        con.execute(f"LOAD '{found[0]}'")
    if s3 is not None:
        con.execute(
            "CREATE SECRET warehouse (TYPE s3, KEY_ID ?, SECRET ?, REGION ?, ENDPOINT ?, URL_STYLE 'path', "
            "USE_SSL false)",
            [s3.access_key, s3.secret_key, s3.region, s3.endpoint.removeprefix("http://")],
        )
    return con


def read_duckdb(lake: Lake, table: str) -> list[dict[str, Any]]:
    """Read a table's current snapshot through DuckDB's own Iceberg reader."""
    loaded = lake.catalog().load_table(tuple(table.split(".")))
    assert loaded is not None, f"table {table} does not exist"
    con = duckdb_connection(lake.s3)
    cursor = con.execute(f"SELECT * FROM iceberg_scan('{loaded.metadata_location}')")  # noqa: S608 - test path
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


@pytest.fixture
def singer_fixture() -> Iterator[Any]:
    def load(name: str) -> str:
        return (SINGER_FIXTURES / name).read_text(encoding="utf-8")

    return load


def service_required() -> bool:
    """With CI=true a test that needs a service fails when it is missing; it never skips."""
    return os.environ.get("CI", "").lower() == "true"
