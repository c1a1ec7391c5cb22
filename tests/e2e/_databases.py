"""E2E support for the database extractors: comparable rows, run summaries, the copied project's loader."""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

import yaml
from _commands import Finished, MeltanoProject

PIPELINE_ID = "default.raw"  # the loader's default: <tenant>.<namespace>
Row = dict[str, Any]


def canonical(value: Any) -> Any:
    """One comparable form for what a database driver, pyiceberg and DuckDB hand back."""
    if isinstance(value, datetime):
        return (value if value.tzinfo is not None else value.replace(tzinfo=UTC)).astimezone(UTC)
    if isinstance(value, float | Decimal):
        return Decimal(str(value)).normalize()
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, date | bool | int | str) or value is None:
        return value
    if isinstance(value, dict | list):
        return json.dumps(value, sort_keys=True)
    msg = f"no canonical form for {type(value).__name__}: {value!r}"
    raise TypeError(msg)


def canonical_row(row: Mapping[str, Any], columns: Iterable[str], **convert: Callable[[Any], Any]) -> Row:
    """`row` limited to `columns`, each value in its canonical form (after `convert[column]`)."""
    return {c: canonical(convert[c](row[c]) if c in convert else row[c]) for c in columns}


def json_text(value: Any) -> Any:
    """A JSON column: the loader keeps JSON text, the driver gives objects; compare the values."""
    return json.loads(value) if isinstance(value, str) else value


def frozen(row: Row) -> tuple[tuple[str, Any], ...]:
    return tuple(sorted(row.items()))


def appended(after: list[Row], before: list[Row]) -> Counter[tuple[tuple[str, Any], ...]]:
    """The rows a run added to an append-only table (a multiset: duplicates count)."""
    return Counter(map(frozen, after)) - Counter(map(frozen, before))


def by_key(rows: list[Row], key: str) -> dict[Any, Row]:
    found = {r[key]: r for r in rows}
    assert len(found) == len(rows), "one row per key"
    return found


def latest_by_key(rows: list[Row], key: str) -> dict[Any, Row]:
    """The newest version of each key (an append-only table keeps every version read)."""
    latest: dict[Any, Row] = {}
    for row in rows:
        if row[key] not in latest or row["updated_at"] > latest[row[key]]["updated_at"]:
            latest[row[key]] = row
    return latest


def committed_bookmark(lake: Any, stream: str) -> dict[str, Any]:
    committed = lake.catalog().committed_state(PIPELINE_ID)
    assert committed is not None, "the run committed its state with the rows"
    found: dict[str, Any] = committed.state["bookmarks"][stream]
    return found


def check_second_key_based_run(
    rows_by_reader: Mapping[str, list[Row]],
    *,
    key: str,
    source: Mapping[Any, Row],
    loaded_first: list[Row],
    changed_keys: Iterable[Any],
    boundary: Any,
    upsert: bool,
) -> None:
    """After a key-based incremental run: with upsert, the table is the source, one row per key;
    appending, the run added exactly the changed rows and the re-sent boundary row (the tap's `>=`),
    which is then the only exact duplicate."""
    changed = list(changed_keys)
    for reader, rows in rows_by_reader.items():
        if upsert:
            assert by_key(rows, key) == source, f"{reader}: upsert stores each key once"
            continue
        assert latest_by_key(rows, key) == source, (
            f"{reader}: the newest version of every order is the source's"
        )
        expected = [source[k] for k in (*changed, boundary)]
        assert appended(rows, loaded_first) == appended(expected, []), f"{reader}: only the changed rows"
        assert sorted(k for k, n in appended(rows, []).items() if n > 1) == [frozen(source[boundary])], (
            "append mode: the boundary row is the only exact duplicate"
        )
        assert len(rows) == len(loaded_first) + len(changed) + 1


def ingest_summary(finished: Finished) -> dict[str, Any]:
    found = re.findall(r"INGEST_SUMMARY (\{.*\})\s*$", finished.stderr, flags=re.MULTILINE)
    assert len(found) == 1, f"one INGEST_SUMMARY line from the loader\n{finished.explain()}"
    summary: dict[str, Any] = json.loads(found[0])
    return summary


def records_read(finished: Finished, stream: str) -> int:
    records: int = ingest_summary(finished)["streams"][stream]["records"]
    return records


def loader_settings(project: MeltanoProject) -> set[str]:
    """The settings the project declares for the loader (write_mode arrives with upsert)."""
    document = yaml.safe_load((project.root / "meltano.yml").read_text(encoding="utf-8"))
    [loader] = [p for p in document["plugins"]["loaders"] if p["name"] == "target-iceberg-nessie"]
    return {s["name"] for s in loader.get("settings", [])}


def upsert_available(project: MeltanoProject) -> bool:
    return "write_mode" in loader_settings(project)


def meltano_state(project: MeltanoProject, state_id: str) -> dict[str, Any]:
    shown = project.meltano("state", "get", state_id)
    assert shown.returncode == 0, shown.explain()
    state: dict[str, Any] = json.loads(shown.stdout)["singer_state"]
    return state
