"""Fixtures for the real services some tests need (loaded by tests/conftest.py as a plugin).

A missing service fails the test under CI=true and skips it only on a developer machine that lacks
Java or Maven; the skip message says what to install.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from devstack.nessie import NessieServer, ServiceError


def _unavailable(what: str, error: Exception) -> None:
    from conftest import service_required  # noqa: PLC0415 - the root conftest, already imported

    message = f"{what} could not be started: {error}"
    if service_required():
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def nessie(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NessieServer]:
    """One in-memory Nessie for the session (tests use their own branches)."""
    logs = tmp_path_factory.mktemp("nessie")
    server = NessieServer(log_path=logs / "nessie.log")
    try:
        server.start()
    except ServiceError as error:
        _unavailable("Nessie", error)
    yield server
    server.stop()


@pytest.fixture
def nessie_rocksdb(tmp_path: Path) -> Iterator[NessieServer]:
    """A Nessie with a persistent RocksDB store in a temporary folder (restartable)."""
    server = NessieServer(log_path=tmp_path / "nessie.log", store="ROCKSDB", data_dir=tmp_path / "rocks")
    try:
        server.start()
    except ServiceError as error:
        _unavailable("Nessie (RocksDB)", error)
    yield server
    server.stop()
