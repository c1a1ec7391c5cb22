"""Fixtures for the real S3-compatible server (versitygw; loaded by tests/conftest.py as a plugin).

The server binary is built on first use when `make s3-server` has not built it yet. A server that
cannot be built or started fails the test under CI=true and skips it elsewhere (no Go here).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from services import _unavailable

from devstack.s3 import S3Server, ServiceError

WAREHOUSE_BUCKET = "warehouse"


def _started(server: S3Server, what: str) -> S3Server:
    try:
        server.start()
        server.create_bucket(WAREHOUSE_BUCKET)
    except ServiceError as error:
        server.stop()
        _unavailable(what, error)
    return server


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """One S3 server for the session, with the bucket `warehouse`; tests use their own prefixes."""
    root = tmp_path_factory.mktemp("s3")
    server = _started(S3Server(root), "S3 server")
    yield server
    server.stop()


@pytest.fixture
def s3_server_restartable(tmp_path: Path) -> Iterator[S3Server]:
    """A server of the test's own, which the test may stop, restart or break without harming others."""
    server = _started(S3Server(tmp_path / "s3"), "S3 server (restartable)")
    yield server
    server.stop()
