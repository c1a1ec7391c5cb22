"""`meltano run tap-postgres target-iceberg-nessie` against a real PostgreSQL 15 on loopback.

The table is the one of the contract assets/postgres/v1.0/orders.yaml (the first load runs in strict
contract mode with that contract enforced). Each test gets its own database; the project is a copy
whose loader writes into the test's lake. Every row read back (pyiceberg and DuckDB) is compared
with the source table.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from _commands import copy_meltano_project
from _databases import (
    Row,
    by_key,
    canonical,
    canonical_row,
    check_second_key_based_run,
    committed_bookmark,
    json_text,
    meltano_state,
    records_read,
    upsert_available,
)
from conftest import REPO_ROOT, Lake, read_duckdb, read_pyiceberg
from psycopg.rows import dict_row

from devstack.postgres import PostgresServer

STREAM = "public-orders"  # <schema>-<table>
TABLE = "default.raw.public_orders"
KEY = "order_id"
COLUMNS = (
    "order_id", "order_uuid", "customer_id", "customer_email", "status", "currency", "amount",
    "tax_amount", "item_count", "shipping_address", "notes", "ordered_at", "updated_at", "shipped_on",
    "is_gift",
)  # fmt: skip
READERS = {"pyiceberg": read_pyiceberg, "duckdb": read_duckdb}
T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
SEEDED = 12

# The DDL the contract was written against (assets/postgres/v1.0/orders.yaml).
DDL = """
create table public.orders (
  order_id         bigint generated always as identity primary key,
  order_uuid       uuid not null unique default gen_random_uuid(),
  customer_id      bigint not null,
  customer_email   varchar(254) not null,
  status           varchar(16) not null
                   check (status in ('pending','paid','shipped','cancelled','refunded')),
  currency         char(3) not null,
  amount           numeric(12,2) not null check (amount >= 0),
  tax_amount       numeric(12,2),
  item_count       integer not null check (item_count > 0),
  shipping_address jsonb,
  notes            text,
  ordered_at       timestamptz not null,
  updated_at       timestamptz not null default now(),
  shipped_on       date,
  is_gift          boolean not null default false
)
"""
INSERT = """
insert into public.orders (customer_id, customer_email, status, currency, amount, tax_amount,
  item_count, shipping_address, notes, ordered_at, updated_at, shipped_on, is_gift)
values (%(customer_id)s, %(customer_email)s, %(status)s, %(currency)s, %(amount)s, %(tax_amount)s,
  %(item_count)s, %(shipping_address)s, %(notes)s, %(ordered_at)s, %(updated_at)s, %(shipped_on)s,
  %(is_gift)s)
"""
STATUSES = ("pending", "paid", "shipped", "cancelled", "refunded")


def order(n: int, updated_at: datetime) -> dict[str, Any]:
    """Order number n: every column type used, nulls and unicode included, valid under the contract."""
    address = {
        "city": "Zürich" if n % 2 else "Lyon",
        "country": "CH" if n % 2 else "FR",
        "lines": [f"{n} Main St"],
    }
    return {
        "customer_id": 100 + n % 5,
        "customer_email": f"customer{n}@example.com",
        "status": STATUSES[n % len(STATUSES)],
        "currency": ("EUR", "USD", "CHF")[n % 3],
        "amount": f"{n * 10 + 0.99:.2f}",
        "tax_amount": None if n % 4 == 0 else f"{n * 1.5:.2f}",
        "item_count": 1 + n % 3,
        "shipping_address": None if n % 5 == 0 else json.dumps(address, ensure_ascii=False),
        "notes": None if n % 3 == 0 else f"note {n}: «fragile» ✓",
        "ordered_at": T0 - timedelta(days=40 - n),  # spans two months (the table's partitions)
        "updated_at": updated_at,
        "shipped_on": None if n % 2 == 0 else (T0 - timedelta(days=30 - n)).date(),
        "is_gift": n % 4 == 1,
    }


@dataclass(frozen=True)
class ShopDatabase:
    server: PostgresServer
    name: str

    @property
    def env(self) -> dict[str, str]:
        """The extractor's settings, as `meltano run` reads them (inherited by tap-postgres-log)."""
        return {
            "TAP_POSTGRES_HOST": self.server.host,
            "TAP_POSTGRES_PORT": str(self.server.port),
            "TAP_POSTGRES_USER": self.server.user,
            "TAP_POSTGRES_PASSWORD": self.server.password,
            "TAP_POSTGRES_DATABASE": self.name,
        }

    def execute(self, sql: str, params: Any = None) -> list[Row]:
        with psycopg.connect(self.server.conninfo(self.name), autocommit=True, row_factory=dict_row) as conn:
            cursor = conn.execute(sql, params)
            return cursor.fetchall() if cursor.description else []

    def insert(self, n: int, updated_at: datetime) -> int:
        [row] = self.execute(INSERT.strip() + " returning order_id", order(n, updated_at))
        key: int = row["order_id"]
        return key

    def rows(self) -> dict[int, Row]:
        """The source table, canonical, by key."""
        found = self.execute("select * from public.orders")
        return {r[KEY]: canonical_row(r, COLUMNS) for r in found}


@pytest.fixture
def shop(postgres: PostgresServer) -> Iterator[ShopDatabase]:
    """A fresh database holding public.orders with SEEDED orders, updated_at one hour apart."""
    name = f"shop_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(postgres.conninfo(), autocommit=True) as conn:
        conn.execute(f'create database "{name}"')
    database = ShopDatabase(postgres, name)
    database.execute(DDL)
    for n in range(1, SEEDED + 1):
        database.insert(n, T0 + timedelta(hours=n))
    yield database
    with psycopg.connect(postgres.conninfo(), autocommit=True) as conn:
        conn.execute(f'drop database "{name}" with (force)')


def lake_rows(lake: Lake, read: Any, columns: tuple[str, ...] = COLUMNS) -> list[Row]:
    return [canonical_row(r, columns, shipping_address=json_text) for r in read(lake, TABLE)]


def incremental_env(shop: ShopDatabase, *, upsert: bool) -> dict[str, str]:
    env = {
        **shop.env,
        # The contract this table was written for, enforced (its level is `fail`), in strict mode.
        "TARGET_ICEBERG_NESSIE_CONTRACTS": json.dumps([str(REPO_ROOT / "assets" / "postgres")]),
        "TARGET_ICEBERG_NESSIE_CONTRACT_MODE": "strict",
        "TARGET_ICEBERG_NESSIE_SOURCE_TYPE": "postgres",
    }
    if upsert:
        env["TARGET_ICEBERG_NESSIE_WRITE_MODE"] = "upsert"
    return env


def test_full_then_incremental_load_reads_only_changed_rows(
    lake: Lake, shop: ShopDatabase, tmp_path: Path
) -> None:
    """INCREMENTAL on updated_at, on the embedded catalog and on a Nessie branch.

    The second run reads the inserted and updated orders, and the order holding the bookmark again
    (the tap reads `updated_at >= bookmark`). Appended, that order is stored twice, identical; with
    the loader's upsert write mode it is stored once.
    """
    project = copy_meltano_project(tmp_path / "project", lake, extractors=("tap-postgres",))
    upsert = upsert_available(project)
    env = incremental_env(shop, upsert=upsert)

    first = project.meltano_run("tap-postgres", "target-iceberg-nessie", env=env)
    assert first.returncode == 0, first.explain()
    assert records_read(first, STREAM) == SEEDED
    source = shop.rows()
    for reader, read in READERS.items():
        assert by_key(lake_rows(lake, read), KEY) == source, f"{reader}: every row as in the source"
    first_mark = committed_bookmark(lake, STREAM)
    assert first_mark["replication_key"] == "updated_at"
    assert datetime.fromisoformat(first_mark["replication_key_value"]) == T0 + timedelta(hours=SEEDED)
    loaded_first = lake_rows(lake, read_pyiceberg)

    # Two new orders, two changed ones; the newest order of the first load (the bookmark) is untouched.
    boundary = max(source, key=lambda k: source[k]["updated_at"])
    later = T0 + timedelta(days=1)
    inserted = [shop.insert(SEEDED + 1, later), shop.insert(SEEDED + 2, later + timedelta(minutes=1))]
    changed = [3, 7]
    for minutes, key in enumerate(changed, start=2):
        shop.execute(
            "update public.orders set status = 'refunded', notes = null, updated_at = %s where order_id = %s",
            (later + timedelta(minutes=minutes), key),
        )

    second = project.meltano_run("tap-postgres", "target-iceberg-nessie", env=env)
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
    assert datetime.fromisoformat(second_mark["replication_key_value"]) == later + timedelta(minutes=3)
    state_id = "dev:tap-postgres-to-target-iceberg-nessie"
    assert meltano_state(project, state_id)["bookmarks"][STREAM] == second_mark, (
        "Meltano saved the committed state"
    )


def test_log_based_snapshots_then_reads_inserts_updates_and_deletes_from_the_wal(
    embedded_lake: Lake, shop: ShopDatabase, tmp_path: Path
) -> None:
    """tap-postgres-log: the first run reads the table whole, later runs read the WAL (wal2json)."""
    lake = embedded_lake
    slot = f"ingest_{shop.name}"  # slots are per server: one per test
    shop.execute("select pg_create_logical_replication_slot(%s, 'wal2json')", (slot,))
    project = copy_meltano_project(tmp_path / "project", lake, extractors=("tap-postgres",))
    env = {
        **shop.env,
        "TAP_POSTGRES_LOG_REPLICATION_SLOT_NAME": slot,
        "TAP_POSTGRES_LOG_REPLICATION_IDLE_EXIT_SECONDS": "2",  # the WAL is drained within a second here
    }
    columns = (*COLUMNS, "_sdc_deleted_at", "_sdc_lsn")
    try:
        first = project.meltano_run("tap-postgres-log", "target-iceberg-nessie", env=env)
        assert first.returncode == 0, first.explain()
        assert records_read(first, STREAM) == SEEDED
        source = shop.rows()
        snapshot = {k: {**r, "_sdc_deleted_at": None, "_sdc_lsn": None} for k, r in source.items()}
        for reader, read in READERS.items():
            assert by_key(lake_rows(lake, read, columns), KEY) == snapshot, (
                f"{reader}: the snapshot is the table"
            )
        first_mark = committed_bookmark(lake, STREAM)
        assert first_mark["replication_key"] == "_sdc_lsn"
        assert isinstance(first_mark["replication_key_value"], int)
        assert first_mark["replication_key_value"] > 0

        inserted = shop.insert(SEEDED + 1, T0 + timedelta(days=2))
        shop.execute(
            "update public.orders set status = 'shipped', amount = 1234.50, updated_at = %s"
            " where order_id = 5",
            (T0 + timedelta(days=2, minutes=1),),
        )
        shop.execute("delete from public.orders where order_id = 2")
        deleted_before = datetime.now(UTC).replace(microsecond=0)

        second = project.meltano_run("tap-postgres-log", "target-iceberg-nessie", env=env)
        assert second.returncode == 0, second.explain()
        assert records_read(second, STREAM) == 3, "one record per change"
        after = shop.rows()
        for reader, read in READERS.items():
            rows = lake_rows(lake, read, columns)
            changes = sorted((r for r in rows if r["_sdc_lsn"] is not None), key=lambda r: r["_sdc_lsn"])
            assert [r[KEY] for r in changes] == [inserted, 5, 2], f"{reader}: the changes, in WAL order"
            # The first change starts where the WAL stood when the first run ended: at its bookmark.
            assert all(r["_sdc_lsn"] >= first_mark["replication_key_value"] for r in changes)
            insert_row, update_row, delete_row = changes
            for row in (insert_row, update_row):
                values = {c: row[c] for c in COLUMNS}
                # wal2json sends jsonb as its text and the tap passes that string on: the table holds
                # a JSON string whose content is the document (the snapshot rows hold the document).
                if values["shipping_address"] is not None:
                    values["shipping_address"] = canonical(json.loads(values["shipping_address"]))
                assert values == after[row[KEY]], f"{reader}: inserts and updates carry the new row"
                assert row["_sdc_deleted_at"] is None
            # A delete carries the replica identity (the primary key) and the time the tap read it.
            assert {c: delete_row[c] for c in COLUMNS if c != KEY} == dict.fromkeys(set(COLUMNS) - {KEY})
            assert datetime.fromisoformat(delete_row["_sdc_deleted_at"]) >= deleted_before
            assert len(rows) == SEEDED + 3, f"{reader}: the snapshot rows stay, the changes are appended"
        second_mark = committed_bookmark(lake, STREAM)
        assert second_mark["replication_key"] == "_sdc_lsn"
        assert second_mark["replication_key_value"] >= max(r["_sdc_lsn"] for r in changes)
        [slot_row] = shop.execute(
            "select confirmed_flush_lsn - '0/0'::pg_lsn as lsn from pg_replication_slots"
            " where slot_name = %s",
            (slot,),
        )
        # The slot is confirmed up to where this run started at least: its last feedback is not
        # forced, so the server may keep the WAL of the last run until the next one starts.
        confirmed = int(slot_row["lsn"])
        assert first_mark["replication_key_value"] <= confirmed <= second_mark["replication_key_value"]
    finally:
        shop.execute("select pg_drop_replication_slot(%s)", (slot,))


def test_postgres_lookback_rereads_a_late_update_and_upsert_keeps_one_row(
    shop: ShopDatabase, tmp_path: Path
) -> None:
    lake = Lake(tmp_path / "lake")
    project = copy_meltano_project(tmp_path / "project", lake, extractors=("tap-postgres",))
    env = incremental_env(shop, upsert=True)
    first = project.meltano_run("tap-postgres", "target-iceberg-nessie", env=env)
    assert first.returncode == 0, first.explain()
    mark = T0 + timedelta(hours=SEEDED)  # the newest updated_at of the first load

    # A transaction that committed late: its updated_at is 30 minutes behind the bookmark. And a
    # regular update after the bookmark.
    shop.execute(
        "update public.orders set status = 'refunded', updated_at = %s where order_id = 5",
        (mark - timedelta(minutes=30),),
    )
    shop.execute(
        "update public.orders set status = 'shipped', updated_at = %s where order_id = 6",
        (mark + timedelta(minutes=10),),
    )

    plain = project.meltano_run("tap-postgres", "target-iceberg-nessie", env=env)
    assert plain.returncode == 0, plain.explain()
    source = shop.rows()
    loaded = by_key(lake_rows(lake, read_pyiceberg), KEY)
    assert loaded[6] == source[6]
    assert loaded[5] != source[5], "without a lookback the late update is never read"

    rewound = project.meltano_run(
        "tap-postgres", "target-iceberg-nessie", env={**env, "INGEST_LOOKBACK": "2h"}
    )
    assert rewound.returncode == 0, rewound.explain()
    assert "lookback 2h: stream public-orders bookmark replication_key_value rewound" in rewound.stderr
    for reader, read in READERS.items():
        assert by_key(lake_rows(lake, read), KEY) == shop.rows(), f"{reader}: the late update is in, once"
    assert committed_bookmark(lake, STREAM)["replication_key_value"].startswith(
        (mark + timedelta(minutes=10)).strftime("%Y-%m-%d")
    ), "the bookmark moves on from where the run read to, not from the rewound value"
    lake.close()
