"""A local Google Sheets API v4 (https://developers.google.com/sheets/api/reference/rest), as far
as tap-google-sheets 3.1.2 calls it, on top of the token endpoint and Drive of `fakes.google`.

Served (host sheets.googleapis.com, under /v4):
- `spreadsheets.get` (GET /v4/spreadsheets/<id>): properties and `sheets[].properties` (sheetId,
  title, index, sheetType, gridProperties); with `includeGridData=true` and `ranges` (A1 notation,
  e.g. `'sales_targets'!1:2`) each sheet's `data[].rowData[].values[]` CellData: formattedValue,
  effectiveValue (stringValue | numberValue | boolValue), effectiveFormat.numberFormat;
- `spreadsheets.values.get` (GET /v4/spreadsheets/<id>/values/<range>) and `values:batchGet`:
  `valueRenderOption` FORMATTED_VALUE (default) | UNFORMATTED_VALUE, `dateTimeRenderOption`
  SERIAL_NUMBER (default) | FORMATTED_STRING, `majorDimension` ROWS; as Google does, trailing empty
  cells and rows are left out, and an empty cell inside a row is "";
- a spreadsheet is a Drive file (mimeType application/vnd.google-apps.spreadsheet), so
  GET /drive/v3/files/<id>?fields=modifiedTime answers its last modification; every change made
  through this class moves it.
Scopes: spreadsheets(.readonly) or drive(.readonly); otherwise 403 insufficientPermissions.
"""

from __future__ import annotations

import random
import re
import urllib.parse
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, ClassVar

from fakes.google import SCOPE, SPREADSHEET_MIME, FakeGoogle, Request, Response, google_error

SHEETS_HOST = "sheets.googleapis.com"
SHEETS_SCOPES = frozenset(
    f"{SCOPE}{name}" for name in ("spreadsheets", "spreadsheets.readonly", "drive", "drive.readonly")
)
SERIAL_EPOCH = datetime(1899, 12, 30, tzinfo=UTC)  # Sheets' day 0 (Lotus 1-2-3 compatible)
GRID_ROWS = 1000  # a new sheet's grid: 1000 rows x 26 columns
REGIONS = ("EMEA", "NA", "LATAM", "APAC")
QUARTERS = ("2025-Q1", "2025-Q2", "2025-Q3", "2025-Q4")
OWNERS = {"EMEA": "Lena Rossi", "NA": "Omar Khan", "LATAM": "Mateo Silva", "APAC": "Aiko Tanaka"}
Value = str | int | Decimal | bool | datetime | None


@dataclass(frozen=True)
class Column:
    name: str
    kind: str  # text | number | bool | datetime | date

    def number_format(self) -> dict[str, str] | None:
        return {
            "number": {"type": "NUMBER", "pattern": "#,##0.00"},
            "datetime": {"type": "DATE_TIME", "pattern": "yyyy-mm-dd hh:mm:ss"},
            "date": {"type": "DATE", "pattern": "yyyy-mm-dd"},
        }.get(self.kind)


def serial(moment: datetime) -> float | int:
    days = (moment - SERIAL_EPOCH) / timedelta(days=1)
    return int(days) if days == int(days) else days


def formatted(column: Column, value: Value) -> str:
    """What the cell shows (FORMATTED_VALUE), per the column's number format."""
    if value is None:
        return ""
    if column.kind == "bool":
        return "TRUE" if value else "FALSE"
    if column.kind == "number":
        assert isinstance(value, int | Decimal)
        return f"{Decimal(value):,.2f}"
    if column.kind == "datetime":
        assert isinstance(value, datetime)
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if column.kind == "date":
        assert isinstance(value, datetime)
        return value.strftime("%Y-%m-%d")
    return str(value)


def unformatted(column: Column, value: Value, *, serial_dates: bool = True) -> Any:
    """The cell's value (UNFORMATTED_VALUE): numbers as JSON numbers, dates as serial numbers."""
    if value is None:
        return ""
    if column.kind in {"datetime", "date"} and isinstance(value, datetime):
        return serial(value) if serial_dates else formatted(column, value)
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    return value


def effective(column: Column, value: Value) -> dict[str, Any]:
    raw = unformatted(column, value)
    if isinstance(raw, bool):
        return {"boolValue": raw}
    if isinstance(raw, int | float):
        return {"numberValue": raw}
    return {"stringValue": raw}


@dataclass
class Sheet:
    sheet_id: int
    title: str
    columns: list[Column]
    rows: list[list[Value]] = field(default_factory=list)

    def cells(self, row: int) -> list[Value]:
        """Row `row` of the grid (1-based; row 1 is the header), padded to the columns."""
        if row == 1:
            return [c.name for c in self.columns]
        values = self.rows[row - 2] if 0 <= row - 2 < len(self.rows) else []
        return [*values, *[None] * (len(self.columns) - len(values))]

    def render(
        self, row: int, first_col: int, last_col: int, *, formatted_values: bool, serial_dates: bool
    ) -> list[Any]:
        cells = self.cells(row)[first_col : last_col + 1]
        columns = self.columns[first_col : last_col + 1]
        if row == 1:
            rendered = list(cells)
        elif formatted_values:
            rendered = [formatted(c, v) for c, v in zip(columns, cells, strict=True)]
        else:
            rendered = [
                unformatted(c, v, serial_dates=serial_dates) for c, v in zip(columns, cells, strict=True)
            ]
        while rendered and rendered[-1] == "":
            rendered.pop()  # Google leaves trailing empty cells out
        return rendered


_A1 = re.compile(r"^(?:(?P<quoted>'(?:[^']|'')+')|(?P<plain>[^!]+))(?:!(?P<cells>.+))?$")
_CELLS = re.compile(r"^(?P<c1>[A-Z]*)(?P<r1>\d*)(?::(?P<c2>[A-Z]*)(?P<r2>\d*))?$")


def column_index(letters: str) -> int:
    index = 0
    for char in letters:
        index = index * 26 + ord(char) - 64
    return index - 1


class FakeGoogleSheets(FakeGoogle):
    hosts: ClassVar[tuple[str, ...]] = (*FakeGoogle.hosts, SHEETS_HOST)

    def __init__(self, *, seed: int = 11) -> None:
        super().__init__()
        self._rng = random.Random(seed)  # noqa: S311 - reproducible test data
        self.spreadsheet_id = "1SalesPlanningFakeSheet_2025-xYz"
        self.title = "Sales planning"
        self.sheets: list[Sheet] = [
            self._sales_targets(),
            self._accounts(),
            Sheet(2, "scratch", [Column("todo", "text")]),
        ]
        self.add_file(self.title, "root", mime_type=SPREADSHEET_MIME, file_id=self.spreadsheet_id)

    # --- seed data --------------------------------------------------------------------------
    def _sales_targets(self) -> Sheet:
        columns = [
            Column("region", "text"), Column("quarter", "text"), Column("owner_email", "text"),
            Column("owner_name", "text"), Column("target_eur", "number"), Column("approved", "bool"),
            Column("updated_at", "datetime"), Column("comment", "text"),
        ]  # fmt: skip
        rows: list[list[Value]] = []
        for region in REGIONS:
            for number, quarter in enumerate(QUARTERS):
                owner = OWNERS[region]
                target = Decimal(self._rng.randint(40, 400) * 2500) + (Decimal("0.50") if number == 2 else 0)
                updated = datetime(
                    2025, 1 + number * 3, self._rng.randint(1, 28), self._rng.randint(8, 18), 30, tzinfo=UTC
                )
                comment = self._rng.choice((None, None, "stretch goal", "includes renewals"))
                row: list[Value] = [
                    region,
                    quarter,
                    f"{owner.split()[0].lower()}@example.com",
                    owner,
                    target,
                    number < 2,
                    updated,
                    comment,
                ]
                if region == "LATAM" and number == 3:
                    row[3] = None  # an empty cell inside the row
                rows.append(row)
        return Sheet(0, "sales_targets", columns, rows)

    def _accounts(self) -> Sheet:
        columns = [
            Column("account_id", "number"),
            Column("account_name", "text"),
            Column("since", "date"),
            Column("active", "bool"),
        ]
        rows: list[list[Value]] = [
            [
                Decimal(1000 + i),
                f"Account {i:02d}",
                datetime(2020 + i % 5, 1 + i % 12, 1 + i, tzinfo=UTC),
                i % 3 != 0,
            ]
            for i in range(1, 13)
        ]
        return Sheet(1, "accounts", columns, rows)

    # --- changing the data ------------------------------------------------------------------
    def sheet(self, title: str) -> Sheet:
        return next(s for s in self.sheets if s.title == title)

    def set_cell(self, title: str, row: int, column: str, value: Value) -> None:
        """Edit one cell (row is the sheet's row number, 2 = the first data row)."""
        with self._data_lock:
            found = self.sheet(title)
            index = [c.name for c in found.columns].index(column)
            found.rows[row - 2][index] = value
            self.touch(self.spreadsheet_id)

    def append_row(self, title: str, row: list[Value]) -> None:
        with self._data_lock:
            self.sheet(title).rows.append(row)
            self.touch(self.spreadsheet_id)

    # --- serving ----------------------------------------------------------------------------
    def handle_api(self, request: Request, scopes: frozenset[str]) -> Response:
        match = re.fullmatch(r"/v4/spreadsheets/(?P<id>[^/:]+)(?P<rest>.*)", request.path)
        if match is None:
            return super().handle_api(request, scopes)
        if not scopes & SHEETS_SCOPES:
            raise google_error(
                403, "Request had insufficient authentication scopes.", "insufficientPermissions"
            )
        if match["id"] != self.spreadsheet_id:
            raise google_error(404, "Requested entity was not found.")
        rest = match["rest"]
        with self._data_lock:
            if rest == "":
                return Response(200, self._spreadsheet(request))
            if rest == "/values:batchGet":
                ranges = request.query.get("ranges", [])
                body = {
                    "spreadsheetId": self.spreadsheet_id,
                    "valueRanges": [self._values(request, r) for r in ranges],
                }
                return Response(200, body)
            if rest.startswith("/values/"):
                return Response(
                    200, self._values(request, urllib.parse.unquote(rest.removeprefix("/values/")))
                )
        return super().handle_api(request, scopes)

    def _range(self, a1: str) -> tuple[Sheet, int, int, int, int]:
        """(sheet, first row, last row, first column, last column) of an A1 range; rows 1-based."""
        match = _A1.match(a1)
        title = (
            (match["quoted"][1:-1].replace("''", "'") if match["quoted"] else match["plain"])
            if match
            else None
        )
        found = next((s for s in self.sheets if s.title == title), None)
        cells = _CELLS.match(match["cells"] or "") if match else None
        if found is None or cells is None:
            raise google_error(400, f"Unable to parse range: {a1}")
        last_col = len(found.columns) - 1
        c1, c2 = cells["c1"], cells["c2"] if cells["c2"] is not None else cells["c1"]
        r1, r2 = cells["r1"], cells["r2"] if cells["r2"] is not None else cells["r1"]
        return (
            found,
            int(r1) if r1 else 1,
            int(r2) if r2 else GRID_ROWS,
            column_index(c1) if c1 else 0,
            min(column_index(c2), last_col) if c2 else last_col,
        )

    def _properties(self, sheet: Sheet) -> dict[str, Any]:
        return {
            "sheetId": sheet.sheet_id,
            "title": sheet.title,
            "index": self.sheets.index(sheet),
            "sheetType": "GRID",
            "gridProperties": {"rowCount": max(GRID_ROWS, len(sheet.rows) + 1), "columnCount": 26},
        }

    def _spreadsheet(self, request: Request) -> dict[str, Any]:
        grid = request.arg("includeGridData", "false") == "true"
        wanted = [self._range(r) for r in request.query.get("ranges", [])]
        sheets = []
        for sheet in self.sheets:
            entry: dict[str, Any] = {"properties": self._properties(sheet)}
            if grid:
                entry["data"] = (
                    [self._grid(*r) for r in wanted if r[0] is sheet]
                    if wanted
                    else [self._grid(sheet, 1, len(sheet.rows) + 1, 0, len(sheet.columns) - 1)]
                )
            if not wanted or any(r[0] is sheet for r in wanted):
                sheets.append(entry)
        return {
            "spreadsheetId": self.spreadsheet_id,
            "properties": {
                "title": self.title,
                "locale": "en_US",
                "autoRecalc": "ON_CHANGE",
                "timeZone": "Etc/GMT",
            },
            "sheets": sheets,
            "spreadsheetUrl": f"https://docs.google.com/spreadsheets/d/{self.spreadsheet_id}/edit",
        }

    def _grid(
        self, sheet: Sheet, first_row: int, last_row: int, first_col: int, last_col: int
    ) -> dict[str, Any]:
        row_data = []
        for row in range(first_row, min(last_row, len(sheet.rows) + 1) + 1):
            values = []
            for column, value in zip(
                sheet.columns[first_col : last_col + 1],
                sheet.cells(row)[first_col : last_col + 1],
                strict=True,
            ):
                if value is None:
                    values.append({})
                    continue
                cell: dict[str, Any] = {"formattedValue": formatted(column, value) if row > 1 else str(value)}
                cell["effectiveValue"] = effective(column, value) if row > 1 else {"stringValue": str(value)}
                number_format = column.number_format()
                if row > 1 and number_format is not None:
                    cell["effectiveFormat"] = {"numberFormat": number_format}
                values.append(cell)
            row_data.append({"values": values})
        return {"startRow": first_row - 1, "startColumn": first_col, "rowData": row_data}

    def _values(self, request: Request, a1: str) -> dict[str, Any]:
        render = request.arg("valueRenderOption", "FORMATTED_VALUE")
        dates = request.arg("dateTimeRenderOption", "SERIAL_NUMBER")
        if render not in {"FORMATTED_VALUE", "UNFORMATTED_VALUE"} or dates not in {
            "SERIAL_NUMBER",
            "FORMATTED_STRING",
        }:
            raise google_error(400, f"Invalid value render option {render} / {dates}")
        if request.arg("majorDimension", "ROWS") != "ROWS":
            raise google_error(400, "Only ROWS is served by this fake")
        sheet, first_row, last_row, first_col, last_col = self._range(a1)
        rows = [
            sheet.render(
                r,
                first_col,
                last_col,
                formatted_values=render == "FORMATTED_VALUE",
                serial_dates=dates == "SERIAL_NUMBER",
            )
            for r in range(first_row, min(last_row, len(sheet.rows) + 1) + 1)
        ]
        while rows and not rows[-1]:
            rows.pop()  # and trailing empty rows
        body: dict[str, Any] = {"range": a1, "majorDimension": "ROWS"}
        if rows:
            body["values"] = rows
        return body
