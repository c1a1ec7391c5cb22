"""`meltano run tap-mysql target-iceberg-nessie` against a real MariaDB on loopback.

The table is the one of the contract assets/mysql/v1.0/orders.yaml, in the database `shop` (the
extractor's filter_dbs and selection), recreated for each test. Every row read back (pyiceberg and
DuckDB) is compared with the source table.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import pymysql
import pytest
from _commands import copy_meltano_project
from _databases import (
    Row,
    appended,
    by_key,
    canonical_row,
    check_second_key_based_run,
    committed_bookmark,
    meltano_state,
    records_read,
    upsert_available,
)
from conftest import Lake, read_duckdb, read_pyiceberg
from pymysql.cursors import DictCursor

from devstack.mariadb import MariaDBServer

STREAM = "shop-orders"  # the tap sends the tap_stream_id <database>-<table> as the stream name
TABLE = "default.raw.shop_orders"
KEY = "id"
COLUMNS = (
    "id", "customer_id", "customer_email", "status", "currency", "total", "quantity", "is_gift",
    "created_at", "updated_at", "shipped_on",
)  # fmt: skip
READERS = {"pyiceberg": read_pyiceberg, "duckdb": read_duckdb}
T0 = datetime(2026, 3, 1, 8, 0)  # DATETIME and TIMESTAMP values, in the server's time zone (+00:00)
SEEDED = 10

# The DDL the contract was written against (assets/mysql/v1.0/orders.yaml).
DDL = """
CREATE TABLE shop.orders (
  id             INT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
  customer_id    INT UNSIGNED NOT NULL,
  customer_email VARCHAR(254) NOT NULL,
  status         ENUM('pending','paid','shipped','cancelled','refunded') NOT NULL,
  currency       CHAR(3) NOT NULL,
  total          DECIMAL(12,2) NOT NULL,
  quantity       SMALLINT UNSIGNED NOT NULL,
  is_gift        TINYINT(1) NOT NULL DEFAULT 0,
  created_at     DATETIME NOT NULL,
  updated_at     TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP,
  shipped_on     DATE NULL,
  KEY (customer_id)
)
"""
INSERT = """
INSERT INTO shop.orders (customer_id, customer_email, status, currency, total, quantity, is_gift,
  created_at, updated_at, shipped_on)
VALUES (%(customer_id)s, %(customer_email)s, %(status)s, %(currency)s, %(total)s, %(quantity)s,
  %(is_gift)s, %(created_at)s, %(updated_at)s, %(shipped_on)s)
"""
STATUSES = ("pending", "paid", "shipped", "cancelled", "refunded")


def order(n: int, updated_at: datetime) -> dict[str, Any]:
    return {
        "customer_id": 4_000_000_000 + n,  # above INT's signed range: INT UNSIGNED
        "customer_email": f"kunde{n}@example.de",
        "status": STATUSES[n % len(STATUSES)],
        "currency": ("EUR", "USD")[n % 2],
        "total": f"{n * 100 + 0.05:.2f}",
        "quantity": 1 + n * 1000,  # up to SMALLINT UNSIGNED's range
        "is_gift": n % 3 == 0,
        "created_at": T0 - timedelta(days=40 - n),
        "updated_at": updated_at,
        "shipped_on": None if n % 2 == 0 else (T0 - timedelta(days=30 - n)).date(),
    }


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC)  # the session and server time zone is +00:00


def _midnight(value: date | None) -> datetime | None:
    """The tap sends a DATE as that day's midnight UTC, date-time typed."""
    return None if value is None else datetime.combine(value, time(), tzinfo=UTC)


@dataclass(frozen=True)
class ShopDatabase:
    server: MariaDBServer

    @property
    def env(self) -> dict[str, str]:
        """The extractor's settings, as `meltano run` reads them (inherited by tap-mysql-log)."""
        return {
            "TAP_MYSQL_HOST": self.server.host,
            "TAP_MYSQL_PORT": str(self.server.port),
            "TAP_MYSQL_USER": self.server.user,
            "TAP_MYSQL_PASSWORD": self.server.password,
            "TAP_MYSQL_ENGINE": "mariadb",
            # The binlog reader converts TIMESTAMP values with the tap's local time zone.
            "TZ": "UTC",
        }

    def execute(self, sql: str, params: Any = None) -> list[Row]:
        connection = pymysql.connect(
            host=self.server.host,
            port=self.server.port,
            user=self.server.user,
            password=self.server.password,
            autocommit=True,
            cursorclass=DictCursor,
        )
        with connection, connection.cursor() as cursor:
            cursor.execute("SET time_zone = '+00:00'")
            cursor.execute(sql, params)
            return list(cursor.fetchall())

    def insert(self, n: int, updated_at: datetime) -> int:
        connection_rows = self.execute(INSERT.strip() + " RETURNING id", order(n, updated_at))
        key: int = connection_rows[0]["id"]
        return key

    def rows(self) -> dict[int, Row]:
        """The source table as the tap types it, canonical, by key."""
        found = self.execute("SELECT * FROM shop.orders")
        return {
            r[KEY]: canonical_row(
                r, COLUMNS, is_gift=bool, created_at=_utc, updated_at=_utc, shipped_on=_midnight
            )
            for r in found
        }


@pytest.fixture
def shop(mariadb: MariaDBServer) -> Iterator[ShopDatabase]:
    """The database `shop` holding orders, SEEDED orders with updated_at one hour apart."""
    database = ShopDatabase(mariadb)
    database.execute("DROP DATABASE IF EXISTS shop")
    database.execute("CREATE DATABASE shop")
    database.execute(DDL)
    for n in range(1, SEEDED + 1):
        database.insert(n, T0 + timedelta(hours=n))
    yield database
    database.execute("DROP DATABASE shop")


def lake_rows(lake: Lake, read: Any) -> list[Row]:
    return [canonical_row(r, COLUMNS) for r in read(lake, TABLE)]


def test_full_then_incremental_load_reads_only_changed_rows(
    embedded_lake: Lake, shop: ShopDatabase, tmp_path: Path
) -> None:
    """INCREMENTAL on updated_at: the second run reads the changed orders and the boundary order."""
    lake = embedded_lake
    project = copy_meltano_project(tmp_path / "project", lake, extractors=("tap-mysql",))
    upsert = upsert_available(project)
    env = {**shop.env, **({"TARGET_ICEBERG_NESSIE_WRITE_MODE": "upsert"} if upsert else {})}

    first = project.meltano_run("tap-mysql", "target-iceberg-nessie", env=env)
    assert first.returncode == 0, first.explain()
    assert records_read(first, STREAM) == SEEDED
    source = shop.rows()
    for reader, read in READERS.items():
        assert by_key(lake_rows(lake, read), KEY) == source, f"{reader}: every row as in the source"
    first_mark = committed_bookmark(lake, STREAM)
    assert first_mark["replication_key"] == "updated_at"
    assert datetime.fromisoformat(first_mark["replication_key_value"]) == _utc(T0 + timedelta(hours=SEEDED))
    loaded_first = lake_rows(lake, read_pyiceberg)

    boundary = max(source, key=lambda k: source[k]["updated_at"])
    later = T0 + timedelta(days=1)
    inserted = [shop.insert(SEEDED + 1, later), shop.insert(SEEDED + 2, later + timedelta(minutes=1))]
    changed = [2, 5]
    for minutes, key in enumerate(changed, start=2):
        shop.execute(
            "UPDATE shop.orders SET status = 'refunded', total = 0, updated_at = %s WHERE id = %s",
            (later + timedelta(minutes=minutes), key),
        )

    second = project.meltano_run("tap-mysql", "target-iceberg-nessie", env=env)
    assert second.returncode == 0, second.explain()
    assert records_read(second, STREAM) == len(inserted) + len(changed) + 1, "changed rows + the boundary row"
    source = shop.rows()
    check_second_key_based_run(
        {reader: lake_rows(lake, read) for reader, read in READERS.items()},
        key=KEY,
        source=source,
        loaded_first=loaded_first,
        changed_keys=(*inserted, *changed),
        boundary=boundary,
        upsert=upsert,
    )

    second_mark = committed_bookmark(lake, STREAM)
    assert datetime.fromisoformat(second_mark["replication_key_value"]) == _utc(later + timedelta(minutes=3))
    state_id = "dev:tap-mysql-to-target-iceberg-nessie"
    assert meltano_state(project, state_id)["bookmarks"][STREAM] == second_mark, (
        "Meltano saved the committed state"
    )


def test_log_based_snapshots_then_reads_changes_from_the_binlog(
    embedded_lake: Lake, shop: ShopDatabase, tmp_path: Path
) -> None:
    """tap-mysql-log: the first run snapshots the table, the second reads the binlog since then.

    What reaches the table today: inserts and updates as the new row, and a DELETE as the deleted
    row's last values. The tap adds `_sdc_deleted_at` to the records of deletes but its SCHEMA
    message (written before it adds the column) does not declare it, and the loader keeps declared
    columns only: a delete cannot be told from a re-read of the row.
    """
    lake = embedded_lake
    project = copy_meltano_project(tmp_path / "project", lake, extractors=("tap-mysql",))

    first = project.meltano_run("tap-mysql-log", "target-iceberg-nessie", env=shop.env)
    assert first.returncode == 0, first.explain()
    assert records_read(first, STREAM) == SEEDED
    source = shop.rows()
    for reader, read in READERS.items():
        assert by_key(lake_rows(lake, read), KEY) == source, f"{reader}: the snapshot is the table"
    first_mark = committed_bookmark(lake, STREAM)
    assert set(first_mark) >= {"log_file", "log_pos", "version"}
    [status] = shop.execute("SHOW MASTER STATUS")
    assert (first_mark["log_file"], first_mark["log_pos"]) <= (status["File"], status["Position"])
    loaded_first = lake_rows(lake, read_pyiceberg)

    inserted = shop.insert(SEEDED + 1, T0 + timedelta(days=2))
    shop.execute(
        "UPDATE shop.orders SET status = 'shipped', updated_at = %s WHERE id = 4",
        (T0 + timedelta(days=2, hours=1),),
    )
    deleted = source[7]
    shop.execute("DELETE FROM shop.orders WHERE id = 7")

    second = project.meltano_run("tap-mysql-log", "target-iceberg-nessie", env=shop.env)
    assert second.returncode == 0, second.explain()
    assert records_read(second, STREAM) == 3, "one record per changed row"
    after = shop.rows()
    for reader, read in READERS.items():
        rows = lake_rows(lake, read)
        expected = [after[inserted], after[4], deleted]
        assert appended(rows, loaded_first) == appended(expected, []), f"{reader}: exactly the three changes"
        assert len(rows) == SEEDED + 3
    table = lake.catalog().load_table(tuple(TABLE.split(".")))
    assert "_sdc_deleted_at" not in {f.name for f in table.schema().fields}, "see the docstring"
    second_mark = committed_bookmark(lake, STREAM)
    assert second_mark["log_file"] == first_mark["log_file"]
    assert second_mark["log_pos"] > first_mark["log_pos"], "the binlog bookmark moved past the changes"
    assert second_mark["version"] == first_mark["version"]
