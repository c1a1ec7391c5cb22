"""How often a job runs: `interval`s and cron nicknames as the five-field cron expressions Dagster
schedules with (ingestion/orchestration) and `ingest validate` checks."""

from __future__ import annotations

from datetime import timedelta
from typing import Final

from ingestion.errors import ConfigError
from ingestion.lookback import parse_lookback

# Meltano's (and cron's) nicknames, spelled out: Dagster's cron parser wants five fields.
CRON_NICKNAMES: Final = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
}
_MINUTE: Final = 60
_HOUR: Final = 3600
_DAY: Final = 86400


def interval_cron(interval: str) -> str:
    """An `interval` (15m, 1h, 6h, 1d, 1w) as the cron expression that runs at that pace: a number of
    minutes that divides an hour, hours that divide a day, one day or one week."""
    seconds = int(parse_lookback(interval) / timedelta(seconds=1))
    minutes, hours = seconds // _MINUTE, seconds // _HOUR
    if seconds % _MINUTE == 0 and 0 < minutes < _MINUTE and _MINUTE % minutes == 0:
        return "* * * * *" if minutes == 1 else f"*/{minutes} * * * *"
    if seconds % _HOUR == 0 and 0 < hours < 24 and 24 % hours == 0:  # noqa: PLR2004 - hours a day
        return "0 * * * *" if hours == 1 else f"0 */{hours} * * *"
    if seconds == _DAY:
        return "0 0 * * *"
    if seconds == 7 * _DAY:
        return "0 0 * * 0"
    msg = (
        f"interval {interval!r} does not divide an hour or a day evenly; use a cron expression "
        "(`cron: ...`) or an interval such as 15m, 1h, 6h, 1d or 1w"
    )
    raise ConfigError(msg)


def cron_of(cron: str | None, interval: str | None) -> str:
    if cron:
        return CRON_NICKNAMES.get(cron.strip(), cron.strip())
    if interval:
        return interval_cron(interval)
    msg = "a schedule needs `cron` or `interval`"
    raise ConfigError(msg)
