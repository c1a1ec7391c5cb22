"""`make devstack-up` / `make devstack-down`: the native dev stack, as a developer runs it.

Runs `python -m devstack.stack` on its own folder and ports: S3, PostgreSQL and MariaDB start, the
sample orders are loaded once, the printed env reaches them, a supervisor killed with SIGKILL does
not leave servers behind after `down`, and a second `up` finds the data and the passwords again.
Nessie is left out to keep this short: its module is tested on its own (tests/services.py).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pymysql
import pytest
from services import _unavailable

from devstack import mariadb, postgres
from devstack.nessie import ServiceError
from devstack.s3 import S3Client, install
from devstack.stack import PORTS, StackPaths

REPO_ROOT = Path(__file__).resolve().parents[2]


def free_offset() -> int:
    """A port offset under which every stack port is free."""
    for base in range(21000, 60000, 997):
        offset = base - min(PORTS.values())
        probes = []
        try:
            for port in PORTS.values():
                probe = socket.socket()
                probes.append(probe)
                probe.bind(("127.0.0.1", port + offset))
        except OSError:
            continue
        finally:
            for probe in probes:
                probe.close()
        return offset
    pytest.fail("no free range of ports for a second dev stack")


def stack(root: Path, offset: int, *args: str) -> subprocess.CompletedProcess[str]:
    command = [
        sys.executable,
        "-m",
        "devstack.stack",
        "--root",
        str(root),
        "--port-offset",
        str(offset),
        *args,
    ]
    return subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, check=False, timeout=1500)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def wait_gone(pids: list[int], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while any(alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not [pid for pid in pids if alive(pid)]


@pytest.fixture
def root() -> Iterator[Path]:
    # Under /tmp, not pytest's private folder: as root the databases run as their own users.
    folder = Path(tempfile.mkdtemp(prefix="ingest-devstack-"))
    yield folder
    stack(folder, 0, "down")
    shutil.rmtree(folder, ignore_errors=True)


def order_counts(ready: dict[str, dict[str, dict[str, str]]]) -> tuple[int, int]:
    pg = ready["postgres"]["env"]
    with psycopg.connect(
        host=pg["TAP_POSTGRES_HOST"],
        port=int(pg["TAP_POSTGRES_PORT"]),
        user=pg["TAP_POSTGRES_USER"],
        password=pg["TAP_POSTGRES_PASSWORD"],
        dbname=pg["TAP_POSTGRES_DATABASE"],
    ) as connection:
        row = connection.execute("select count(*) from public.orders").fetchone()
        postgres_rows = row[0] if row else -1
    if "mariadb" not in ready:
        return postgres_rows, -1
    my = ready["mariadb"]["env"]
    connection = pymysql.connect(
        host=my["TAP_MYSQL_HOST"],
        port=int(my["TAP_MYSQL_PORT"]),
        user=my["TAP_MYSQL_USER"],
        password=my["TAP_MYSQL_PASSWORD"],
        database=my["TAP_MYSQL_DATABASE"],
    )
    with connection, connection.cursor() as cursor:
        cursor.execute("select count(*) from orders")
        mysql_row = cursor.fetchone()
    return postgres_rows, mysql_row[0] if mysql_row else -1


def test_up_prints_what_to_use_and_down_stops_everything(root: Path) -> None:
    try:
        postgres.check_installed()
        mariadb._binary("mariadbd", "mysqld")  # its own "is it installed" check
        install()
    except ServiceError as error:
        _unavailable("the dev stack's servers", error)
    offset = free_offset()
    paths = StackPaths(root)

    started = stack(root, offset, "up", "s3", "postgres", "mariadb")

    assert started.returncode == 0, started.stdout + started.stderr + paths.log.read_text(errors="replace")
    ready = json.loads(paths.ready_file.read_text(encoding="utf-8"))
    assert set(ready) == {"s3", "postgres", "mariadb"}
    s3 = ready["s3"]["env"]
    assert (
        f"export TARGET_ICEBERG_NESSIE_S3_ENDPOINT={s3['TARGET_ICEBERG_NESSIE_S3_ENDPOINT']}"
        in started.stdout
    )
    assert s3["TARGET_ICEBERG_NESSIE_S3_ENDPOINT"] == f"http://127.0.0.1:{PORTS['s3'] + offset}"
    client = S3Client(
        s3["TARGET_ICEBERG_NESSIE_S3_ENDPOINT"],
        s3["TARGET_ICEBERG_NESSIE_S3_ACCESS_KEY_ID"],
        s3["TARGET_ICEBERG_NESSIE_S3_SECRET_ACCESS_KEY"],
    )
    assert client.request("HEAD", "/warehouse").status_code == 200
    assert order_counts(ready) == (6, 5)  # compose/initdb's sample orders
    assert (paths.credentials.stat().st_mode & 0o777) == 0o600
    env_lines = stack(root, offset, "env").stdout.splitlines()
    assert "export TAP_POSTGRES_DATABASE=shop" in env_lines

    # A supervisor killed outright leaves its servers running; `down` stops them from the pid files.
    service_pids = [int(paths.service_pid(n).read_text().split()[0]) for n in ("s3", "postgres", "mariadb")]
    os.kill(int(paths.pid_file.read_text()), signal.SIGKILL)
    stopped = stack(root, offset, "down")
    assert stopped.returncode == 0, stopped.stderr
    assert stopped.stdout.count("left by a supervisor that was killed") == 3
    wait_gone(service_pids)
    assert stack(root, offset, "status").returncode == 1

    again = stack(root, offset, "up", "s3", "postgres")

    assert again.returncode == 0, again.stdout + again.stderr
    ready_again = json.loads(paths.ready_file.read_text(encoding="utf-8"))
    assert ready_again["s3"]["env"] == s3  # the same credentials: they are kept with the data
    assert order_counts(ready_again)[0] == 6  # kept, and the sample was not loaded twice
    assert client.request("HEAD", "/warehouse").status_code == 200
    supervisor = int(paths.pid_file.read_text())
    assert stack(root, offset, "down").returncode == 0
    wait_gone([supervisor])
    assert not paths.pid_file.exists()
    assert not paths.ready_file.exists()
