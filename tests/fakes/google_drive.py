"""A Drive folder of CRM customer exports (CSV), served by the local Drive API of `fakes.google`.

Seeded deterministically: folder "CRM exports" holds `customers_<month>.csv` files in the layout of
demo/data/customers.csv (disjoint customer ids per file), plus what a reader must leave alone: a
README.txt, a trashed export and an `archive` subfolder with an older export. Tests change files
(`rewrite_customers`, `add_customers_file`) between runs and compare the lake with `customers()`.
"""

from __future__ import annotations

import csv
import io
import random
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from fakes.google import DriveFile, FakeGoogle, ServiceAccountKey

COLUMNS = (
    "customer_id", "first_name", "last_name", "email", "phone", "country", "segment", "signup_date",
    "is_active", "credit_limit", "notes",
)  # fmt: skip
FIRST_NAMES = ("Noah", "Hugo", "Jonas", "Priya", "Lena", "Mateo", "Aiko", "Zoe", "Omar", "Ines")
LAST_NAMES = ("Schmidt", "Novak", "Jensen", "Garcia", "Rossi", "Dubois", "Tanaka", "Silva", "Khan")
COUNTRIES = ("DE", "FR", "PL", "NO", "JP", "BR", "US", "ES")
SEGMENTS = ("consumer", "small_business", "enterprise")
NOTES = ("", "", "", 'Asked for "net 30" terms', "Prefers email, not phone", "Key account; renewal in Q3")


@dataclass(frozen=True)
class CsvExport:
    """One export file: its Drive id and the rows it holds (as CSV text cells)."""

    file_id: str
    name: str
    rows: tuple[dict[str, str], ...]


def _customer(rng: random.Random, customer_id: int) -> dict[str, str]:
    first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
    phone = (
        ""
        if rng.random() < 0.2
        else f"+{rng.randint(20, 49)} {rng.randint(100, 999)} {rng.randint(1000000, 9999999)}"
    )
    return {
        "customer_id": str(customer_id),
        "first_name": first,
        "last_name": last,
        "email": f"{first.lower()}.{last.lower()}{customer_id}@example.com",
        "phone": phone,
        "country": rng.choice(COUNTRIES),
        "segment": rng.choice(SEGMENTS),
        "signup_date": f"20{rng.randint(18, 25)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
        "is_active": rng.choice(("true", "false")),
        "credit_limit": f"{Decimal(rng.randint(0, 20000)) * 5:.2f}",
        "notes": rng.choice(NOTES),
    }


def render_csv(rows: list[dict[str, str]]) -> bytes:
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=COLUMNS, lineterminator="\r\n")  # as Sheets exports CSV
    writer.writeheader()
    writer.writerows(rows)
    return text.getvalue().encode()


class FakeGoogleDrive(FakeGoogle):
    def __init__(
        self, *, files: int = 3, rows_per_file: int = 25, page_size_cap: int = 2, seed: int = 7
    ) -> None:
        # page_size_cap 2: gdrive-fsspec asks for 1000 per page; Drive may answer fewer, which
        # makes the listing of the seeded folder take several pages.
        super().__init__(page_size_cap=page_size_cap)
        self.service_account = ServiceAccountKey.generate()
        self._rng = random.Random(seed)  # noqa: S311 - reproducible test data
        self._next_customer = 1
        self.rows_per_file = rows_per_file
        self.folder = self.add_folder("CRM exports")
        self.exports: dict[str, CsvExport] = {}
        for month in range(1, files + 1):
            self.add_customers_file(f"customers_2025-{month:02d}.csv")
        self.add_file("README.txt", self.folder.id, b"Exports land here nightly.\n", mime_type="text/plain")
        trashed = self.add_file("customers_2024-12.csv", self.folder.id, render_csv(self._customers(3)))
        trashed.trashed = True
        archive = self.add_folder("archive", self.folder.id)
        self.add_file("customers_2024-11.csv", archive.id, render_csv(self._customers(3)))

    def _customers(self, count: int) -> list[dict[str, str]]:
        rows = [_customer(self._rng, self._next_customer + i) for i in range(count)]
        self._next_customer += count
        return rows

    def add_customers_file(self, name: str) -> CsvExport:
        rows = self._customers(self.rows_per_file)
        created: DriveFile = self.add_file(name, self.folder.id, render_csv(rows))
        self.exports[created.id] = CsvExport(created.id, name, tuple(rows))
        return self.exports[created.id]

    def rewrite_customers(self, file_id: str, change: dict[str, dict[str, str]]) -> CsvExport:
        """A new revision of an export: rows by customer_id updated with `change` (new cells)."""
        old = self.exports[file_id]
        rows = [{**row, **change.get(row["customer_id"], {})} for row in old.rows]
        self.write(file_id, render_csv(rows))
        self.exports[file_id] = CsvExport(file_id, old.name, tuple(rows))
        return self.exports[file_id]

    def customers(self, file_ids: list[str] | None = None) -> list[tuple[str, dict[str, Any]]]:
        """(file name, row) of the named exports (all by default), as CSV text cells."""
        wanted = file_ids if file_ids is not None else list(self.exports)
        return [(self.exports[f].name, dict(row)) for f in wanted for row in self.exports[f].rows]
