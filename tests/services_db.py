"""Fixtures for the real database servers the extractor tests read (a plugin of tests/conftest.py).

One PostgreSQL 15 and one MariaDB per session, started on loopback from the Debian packages
(`make services` installs them). Tests create their own databases, so they never see each other's
tables. A missing server fails the test under CI=true and skips it elsewhere, naming the install.
Their folders are made with tempfile.mkdtemp() under /tmp, not under pytest's private tmp folder:
as root the servers run as the unprivileged `postgres` / `mysql` user, which must reach them.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Protocol, TypeVar

import pytest
from services import _unavailable

from devstack.mariadb import MariaDBServer
from devstack.nessie import ServiceError
from devstack.postgres import PostgresServer


class _Server(Protocol):
    def start(self) -> object: ...
    def stop(self) -> None: ...


S = TypeVar("S", bound=_Server)


def _served(server_type: Callable[[Path], S], what: str) -> Iterator[S]:
    """A server of `server_type` in a temporary folder for the session; removed afterwards."""
    base = Path(tempfile.mkdtemp(prefix=f"ingest-{what.lower()}-"))
    server = server_type(base)
    try:
        server.start()
    except ServiceError as error:
        shutil.rmtree(base, ignore_errors=True)
        _unavailable(what, error)
    yield server
    server.stop()
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """PostgreSQL 15 with wal_level=logical and wal2json; superuser `ingest` over TCP."""
    yield from _served(PostgresServer, "PostgreSQL")


@pytest.fixture(scope="session")
def mariadb() -> Iterator[MariaDBServer]:
    """MariaDB with a row-based binlog; account `ingest` with every privilege, replication included."""
    yield from _served(MariaDBServer, "MariaDB")
