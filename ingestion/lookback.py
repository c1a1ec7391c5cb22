"""Lookback windows: rewind each stream's bookmark before a run, so late-arriving updates are re-read.

A source row updated with a timestamp earlier than the bookmark (clock skew, long transactions,
an API that indexes late) is never seen again by a key-based incremental run. A lookback of `2d`
makes the run start two days before each bookmark; with `write_mode: upsert` the rows read twice are
stored once.

Bookmarks are read where Singer taps keep them, `state["bookmarks"][<stream>]`:
- singer-sdk taps (and pipelinewise ones): `replication_key` + `replication_key_value` (also per
  partition under `partitions`, and `starting_replication_value`);
- singer-io taps: `{<key>: <value>}` pairs such as `{"created": 1700000000}` or `{"updated_at": "..."}`.

A value is rewound when it is an ISO-8601 date or date-time (any key), or an epoch number (seconds or
milliseconds) under a time-like key (`created`, `updated`, `*_at`, `*time*`, `*date*`, `modified`).
Anything else (integer ids, log positions, cursors) is left alone and reported, so a user sees which
streams the lookback does not apply to.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, Final

from ingestion.errors import ConfigError

ENV: Final = "INGEST_LOOKBACK"

_DURATION: Final = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)\s*$")
_ISO_DURATION: Final = re.compile(
    r"^P(?:(?P<w>\d+)W)?(?:(?P<d>\d+)D)?(?:T(?:(?P<h>\d+)H)?(?:(?P<m>\d+)M)?(?:(?P<s>\d+)S)?)?$"
)
_UNITS: Final = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_TIME_KEY: Final = re.compile(r"(^|_)(created|updated|modified)|_at$|time|date", re.IGNORECASE)
_DATE: Final = re.compile(r"^\d{4}-\d{2}-\d{2}$")
# Epoch values from 2001-09-09 to 2286-11-20, in seconds or milliseconds.
_EPOCH_SECONDS: Final = (1_000_000_000, 10_000_000_000)
_EPOCH_MILLIS: Final = (1_000_000_000_000, 10_000_000_000_000)
_SDK_VALUE_KEYS: Final = ("replication_key_value", "starting_replication_value")


def parse_lookback(text: str) -> timedelta:
    """`90s`, `15m`, `6h`, `2d`, `1w` or ISO-8601 `P2D`/`PT6H`."""
    match = _DURATION.match(text)
    if match:
        return timedelta(seconds=float(match.group(1)) * _UNITS[match.group(2)])
    iso = _ISO_DURATION.match(text.strip().upper())
    if iso and any(iso.groupdict().values()):
        parts = {k: int(v or 0) for k, v in iso.groupdict().items()}
        return timedelta(
            weeks=parts["w"], days=parts["d"], hours=parts["h"], minutes=parts["m"], seconds=parts["s"]
        )
    msg = (
        f"lookback {text!r} is not a duration; use a number and a unit (90s, 15m, 6h, 2d, 1w) "
        "or ISO-8601 (P2D)"
    )
    raise ConfigError(msg)


@dataclass(frozen=True)
class Rewound:
    stream: str
    key: str
    before: Any
    after: Any


@dataclass(frozen=True)
class Skipped:
    stream: str
    key: str
    value: Any
    reason: str


def _rewind_text(value: str, by: timedelta) -> str | None:
    if _DATE.match(value):
        return (date.fromisoformat(value) - timedelta(days=max(1, by.days))).isoformat()
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00") if value.endswith("Z") else value)
    except ValueError:
        return None
    rewound = parsed - by
    text = rewound.isoformat()
    if value.endswith("Z") and rewound.tzinfo is not None and rewound.utcoffset() == timedelta(0):
        text = rewound.replace(tzinfo=None).isoformat() + "Z"
    return text


def _rewind_number(value: float, by: timedelta) -> float | None:
    if _EPOCH_SECONDS[0] <= value < _EPOCH_SECONDS[1]:
        return value - by.total_seconds()
    if _EPOCH_MILLIS[0] <= value < _EPOCH_MILLIS[1]:
        return value - by.total_seconds() * 1000
    return None


def _rewind_value(value: Any, by: timedelta, *, time_like: bool) -> Any | None:
    """The value moved back by `by`, or None when it is not a point in time."""
    if isinstance(value, str):
        return _rewind_text(value, by)
    if isinstance(value, int | float) and not isinstance(value, bool) and time_like:
        rewound = _rewind_number(value, by)
        if rewound is None:
            return None
        return int(rewound) if isinstance(value, int) else rewound
    return None


class _Rewinder:
    def __init__(self, by: timedelta) -> None:
        self.by = by
        self.rewound: list[Rewound] = []
        self.skipped: list[Skipped] = []

    def bookmark(self, stream: str, bookmark: dict[str, Any]) -> None:
        key_name = str(bookmark.get("replication_key") or "")
        for value_key in _SDK_VALUE_KEYS:
            if value_key in bookmark:
                self.one(stream, bookmark, value_key, time_like=bool(_TIME_KEY.search(key_name)))
        for partition in bookmark.get("partitions") or []:
            if isinstance(partition, dict):
                self.bookmark(stream, partition)
        if "replication_key" in bookmark:
            return  # singer-sdk layout: the other keys are positions and versions, not times
        for key, value in list(bookmark.items()):
            if isinstance(value, dict):
                self.bookmark(f"{stream}.{key}", value)
            elif _TIME_KEY.search(key) or isinstance(value, str):
                self.one(stream, bookmark, key, time_like=bool(_TIME_KEY.search(key)))

    def one(self, stream: str, bookmark: dict[str, Any], key: str, *, time_like: bool) -> None:
        value = bookmark[key]
        if value is None:
            return
        rewound = _rewind_value(value, self.by, time_like=time_like)
        if rewound is None:
            self.skipped.append(Skipped(stream, key, value, "not a date, date-time or epoch time"))
            return
        bookmark[key] = rewound
        self.rewound.append(Rewound(stream, key, value, rewound))


def rewind(state: Mapping[str, Any], by: timedelta) -> tuple[dict[str, Any], list[Rewound], list[Skipped]]:
    """A copy of the Singer `state` with each stream's bookmark moved back by `by`."""
    rewound_state = copy.deepcopy(dict(state))
    rewinder = _Rewinder(by)
    bookmarks = rewound_state.get("bookmarks")
    if isinstance(bookmarks, dict):
        for stream, bookmark in bookmarks.items():
            if isinstance(bookmark, dict):
                rewinder.bookmark(str(stream), bookmark)
            elif bookmark is not None:  # a bare value per stream
                holder = {"value": bookmark}
                rewinder.one(str(stream), holder, "value", time_like=True)
                bookmarks[stream] = holder["value"]
    return rewound_state, rewinder.rewound, rewinder.skipped
