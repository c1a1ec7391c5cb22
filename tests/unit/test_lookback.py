"""Lookback windows rewind the bookmarks of the Singer state layouts our taps write."""

from __future__ import annotations

from datetime import timedelta

import pytest

from ingestion.errors import ConfigError
from ingestion.lookback import parse_lookback, rewind

TWO_DAYS = timedelta(days=2)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2d", TWO_DAYS),
        ("36h", timedelta(hours=36)),
        ("15m", timedelta(minutes=15)),
        ("90s", timedelta(seconds=90)),
        ("1w", timedelta(weeks=1)),
        ("1.5d", timedelta(hours=36)),
        ("P2D", TWO_DAYS),
        ("PT6H", timedelta(hours=6)),
        ("p1dt12h", timedelta(hours=36)),
    ],
)
def test_durations(text: str, expected: timedelta) -> None:
    assert parse_lookback(text) == expected


@pytest.mark.parametrize("text", ["", "2", "two days", "2y", "P", "-2d"])
def test_a_bad_duration_names_the_accepted_forms(text: str) -> None:
    with pytest.raises(ConfigError, match=r"2d.*P2D"):
        parse_lookback(text)


def test_singer_sdk_bookmarks_are_rewound_keeping_their_format() -> None:
    state = {
        "bookmarks": {
            "public-orders": {
                "replication_key": "updated_at",
                "replication_key_value": "2026-03-10T12:00:00+00:00",
                "version": 1700000000000,
            },
            "contacts": {
                "partitions": [
                    {
                        "context": {"id": 1},
                        "replication_key": "updatedAt",
                        "replication_key_value": "2026-03-10T12:00:00Z",
                    }
                ]
            },
            "days": {"replication_key": "day", "replication_key_value": "2026-03-10"},
        }
    }
    rewound, changes, skipped = rewind(state, TWO_DAYS)
    orders = rewound["bookmarks"]["public-orders"]
    assert orders["replication_key_value"] == "2026-03-08T12:00:00+00:00"
    assert orders["version"] == 1700000000000, "a table version is not a bookmark time"
    partition = rewound["bookmarks"]["contacts"]["partitions"][0]
    assert partition["replication_key_value"] == "2026-03-08T12:00:00Z"
    assert rewound["bookmarks"]["days"]["replication_key_value"] == "2026-03-08"
    assert len(changes) == 3
    assert not skipped
    assert state["bookmarks"]["public-orders"]["replication_key_value"] == "2026-03-10T12:00:00+00:00", (
        "the input is not changed"
    )


def test_singer_io_epoch_bookmarks_under_time_keys_are_rewound() -> None:
    state = {
        "bookmarks": {
            "charges": {"created": 1_773_144_000},
            "events": {"updated_ms": 1_773_144_000_000, "offset": 1_773_144_000},
        }
    }
    rewound, changes, _ = rewind(state, TWO_DAYS)
    assert rewound["bookmarks"]["charges"]["created"] == 1_773_144_000 - 172_800
    assert rewound["bookmarks"]["events"]["updated_ms"] == 1_773_144_000_000 - 172_800_000
    assert rewound["bookmarks"]["events"]["offset"] == 1_773_144_000, "not a time-like key"
    assert [(c.stream, c.key) for c in changes] == [("charges", "created"), ("events", "updated_ms")]


def test_integer_ids_and_log_positions_are_left_alone_and_reported() -> None:
    state = {
        "bookmarks": {
            "shop-orders": {"replication_key": "id", "replication_key_value": 1234},
            "shop-events": {"log_file": "mysql-bin.000003", "log_pos": 1200, "version": 5},
        }
    }
    rewound, changes, skipped = rewind(state, TWO_DAYS)
    assert rewound == state
    assert not changes
    assert {(s.stream, s.key) for s in skipped} == {
        ("shop-orders", "replication_key_value"),
        ("shop-events", "log_file"),
    }
