"""Lookback windows (INGEST_LOOKBACK, a job's `incremental.lookback`): an update that arrives with a
timestamp behind the bookmark is missed by a plain incremental run and re-read by one with a
lookback; with `write_mode: upsert` the rows read twice are stored once. Here on the Stripe fake
(the PostgreSQL case is in test_tap_postgres.py), through `meltano run` and the `ingest://` state
backend that rewinds the state.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from _saas import saas_project
from conftest import Lake, read_duckdb, read_pyiceberg
from fakes.stripe import ACCOUNT_ID, SECRET_KEY, FakeStripe


def test_stripe_lookback_rereads_a_late_event_and_upsert_keeps_one_row(tmp_path: Path) -> None:
    env = {
        "TAP_STRIPE_CLIENT_SECRET": SECRET_KEY,
        "TAP_STRIPE_ACCOUNT_ID": ACCOUNT_ID,
        "TAP_STRIPE_START_DATE": "2025-01-01T00:00:00Z",
        "TAP_STRIPE__SELECT": '["customers.*"]',
        "TARGET_ICEBERG_NESSIE_WRITE_MODE": "upsert",
    }
    lake = Lake(tmp_path / "lake")
    with FakeStripe(customers=20, charges=5, invoices=1) as fake:
        project = saas_project(tmp_path / "project", lake, "tap-stripe", fake)
        first = project.meltano_run("tap-stripe", "target-iceberg-nessie", env=env)
        assert first.returncode == 0, first.explain()
        customers = fake.objects("customer")
        # A regular update, read by the next run: the events bookmark is now its time.
        fake.update_customer(customers[1]["id"], email="regular@example.com")
        regular = project.meltano_run("tap-stripe", "target-iceberg-nessie", env=env)
        assert regular.returncode == 0, regular.explain()
        # Stripe indexed this update late: its event is dated an hour before the events bookmark.
        now = fake._now()
        real_now = fake._now
        fake._now = lambda: now - 3600  # type: ignore[method-assign]
        late = fake.update_customer(customers[0]["id"], email="late@example.com")
        fake._now = real_now  # type: ignore[method-assign]

        plain = project.meltano_run("tap-stripe", "target-iceberg-nessie", env=env)
        assert plain.returncode == 0, plain.explain()
        emails = {r["id"]: r["email"] for r in read_pyiceberg(lake, "default.raw.customers")}
        assert emails[late["id"]] != "late@example.com", "without a lookback the late event is never read"

        rewound = project.meltano_run(
            "tap-stripe", "target-iceberg-nessie", env={**env, "INGEST_LOOKBACK": "2h"}
        )
        assert rewound.returncode == 0, rewound.explain()
        assert "lookback 2h: stream customers_events bookmark updates_created rewound" in rewound.stderr
    for read in (read_pyiceberg, read_duckdb):
        rows: list[dict[str, Any]] = read(lake, "default.raw.customers")
        ids = [r["id"] for r in rows]
        assert len(ids) == len(set(ids)) == len(customers), f"{read.__name__}: one row per customer"
        assert {r["id"]: r["email"] for r in rows}[late["id"]] == "late@example.com"
    lake.close()
