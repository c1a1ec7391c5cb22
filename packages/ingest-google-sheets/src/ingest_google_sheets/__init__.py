"""tap-google-sheets 3.1.2 with two things the platform needs, as a console script next to the tap.

1. An unchanged spreadsheet is not read again. tap-google-sheets 3.x reads every selected sheet in
   full on every run (FULL_TABLE; its 1.x `file_metadata` check was removed), which costs two
   values requests per 200 rows per sheet. Before syncing, this asks Drive for the spreadsheet's
   `modifiedTime` (GET drive/v3/files/<id>?fields=...; needs a Drive metadata scope on the token)
   and skips the sync when it is not newer than the one recorded in the state after the last
   complete sync. The granularity is the spreadsheet: Drive has no modification time per sheet,
   so a change to one sheet re-reads every selected sheet. The recorded time is written only after
   the sync completed, so an interrupted run is read again in full.
2. Refused credentials end the run with one line that names the extractor and the settings to fix,
   instead of the tap's traceback.

Everything else is the tap's own code (`GoogleClient`, `discover`, `sync`), called through its
module-level functions; nothing of the tap is patched.
"""

from __future__ import annotations

import json
import os
import sys
from datetime import datetime
from typing import Any, NoReturn

import singer
from singer import utils
from tap_google_sheets import REQUIRED_CONFIG_KEYS
from tap_google_sheets.client import (
    GoogleBadRequestError,
    GoogleClient,
    GoogleError,
    GoogleForbiddenError,
    GoogleNotFoundError,
    GoogleUnauthorizedError,
)
from tap_google_sheets.discover import discover
from tap_google_sheets.sync import sync

LOGGER = singer.get_logger()

# Top-level key of the Singer state: {spreadsheet id: Drive modifiedTime of the last complete sync}.
# Not under `bookmarks`, whose keys are the tap's sheet titles.
STATE_KEY = "ingest_spreadsheet_modified_time"
# Setting (config key) that turns the check off, e.g. for a token without a Drive scope.
SKIP_UNCHANGED = "skip_unchanged"
CREDENTIAL_SETTINGS = "client_id, client_secret and refresh_token"
DRIVE_FIELDS = "id,name,modifiedTime"


def _extractor() -> str:
    """The Meltano plugin name (Meltano exports it to the plugin's environment)."""
    return os.environ.get("MELTANO_EXTRACTOR_NAME") or "tap-google-sheets"


def _fail(message: str) -> NoReturn:
    LOGGER.critical(message)
    sys.exit(1)


def _parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def drive_modified_time(client: GoogleClient, spreadsheet_id: str) -> str | None:
    """The spreadsheet's Drive modifiedTime, or None when the token may not read Drive metadata."""
    try:
        found = client.get(
            path=f"files/{spreadsheet_id}",
            api="files",
            params=f"fields={DRIVE_FIELDS}&supportsAllDrives=true",
            endpoint="file_metadata",
        )
    except (GoogleForbiddenError, GoogleNotFoundError) as error:
        LOGGER.warning(
            "%s: Drive does not give the modification time of spreadsheet %s (%s): every selected "
            "sheet is read. Grant the scope drive.metadata.readonly to the refresh token, or set "
            "`%s: false` to silence this.",
            _extractor(),
            spreadsheet_id,
            error,
            SKIP_UNCHANGED,
        )
        return None
    modified = found.get("modifiedTime")
    return str(modified) if modified else None


def sync_if_modified(
    client: GoogleClient, config: dict[str, Any], catalog: Any, state: dict[str, Any]
) -> None:
    spreadsheet_id = str(config["spreadsheet_id"])
    check = str(config.get(SKIP_UNCHANGED, True)).lower() not in {"false", "0", "no"}
    modified = drive_modified_time(client, spreadsheet_id) if check else None
    recorded = (state.get(STATE_KEY) or {}).get(spreadsheet_id)
    if modified and recorded and _parse_time(modified) <= _parse_time(recorded):
        LOGGER.info(
            "Spreadsheet %s is unchanged since %s (Drive modifiedTime): not read", spreadsheet_id, recorded
        )
        singer.write_state(state)
        return
    sync(client=client, config=config, catalog=catalog or discover(client, spreadsheet_id), state=state)
    if modified:
        state.setdefault(STATE_KEY, {})[spreadsheet_id] = modified
        singer.write_state(state)


def main() -> None:
    args = utils.parse_args(REQUIRED_CONFIG_KEYS)
    config: dict[str, Any] = args.config
    spreadsheet_id = config.get("spreadsheet_id")
    client = GoogleClient(
        config["client_id"],
        config["client_secret"],
        config["refresh_token"],
        config.get("request_timeout"),
        config["user_agent"],
    )
    refused = (
        f"{_extractor()}: Google refused the OAuth credentials ({{error}}). Fix the extractor "
        f"settings {CREDENTIAL_SETTINGS} (a refresh token of a user who can read the spreadsheet)."
    )
    try:
        client.get_access_token()
    except GoogleError as error:
        _fail(refused.format(error=error))
    try:
        with client:
            if args.discover:
                json.dump(discover(client, spreadsheet_id).to_dict(), sys.stdout, indent=2)
            else:
                sync_if_modified(client, config, args.catalog, args.state or {})
    except (GoogleUnauthorizedError, GoogleBadRequestError) as error:
        if isinstance(error, GoogleBadRequestError) and "invalid_grant" not in str(error):
            raise
        _fail(refused.format(error=error))
    except GoogleForbiddenError as error:
        _fail(
            f"{_extractor()}: the account of the refresh token may not read spreadsheet "
            f"{spreadsheet_id} ({error}). Share the spreadsheet with it, or fix the extractor "
            f"setting spreadsheet_id."
        )
    except GoogleNotFoundError as error:
        _fail(
            f"{_extractor()}: spreadsheet {spreadsheet_id} was not found ({error}). Fix the extractor "
            f"setting spreadsheet_id (the id in the spreadsheet's URL)."
        )
