"""`tap-google-drive`: tap-spreadsheets' tap and stream for files in one Google Drive folder."""

from __future__ import annotations

import copy
import json
import os
import sys
from collections.abc import Iterable
from typing import Any, NoReturn

from google.auth.exceptions import RefreshError
from googleapiclient.errors import HttpError
from singer_sdk import typing as th
from tap_spreadsheets.stream import SpreadsheetStream, parse_bookmark
from tap_spreadsheets.tap import TapSpreadsheets

from ingest_google_drive.drive import PREFIX, Downloads, DriveStorage, configure

SERVICE_ACCOUNT_INFO = "service_account_info"
FOLDER_ID = "folder_id"


class DriveSpreadsheetStream(SpreadsheetStream):  # type: ignore[misc] - tap-spreadsheets is untyped
    """One `files` entry: its gdrive:// glob, read per file by Drive modification time."""

    def __init__(self, tap: TapGoogleDrive, file_cfg: dict[str, Any], downloads: Downloads) -> None:
        super().__init__(tap, file_cfg)
        self.storage = DriveStorage(file_cfg["path"], downloads)

    @property
    def schema(self) -> dict[str, Any]:
        # With a catalog (Meltano passes the discovered one) the schema is known: inferring it again
        # would download the stream's first file on every run, changed or not.
        if self._input_schema is not None:
            input_schema: dict[str, Any] = self._input_schema
            return input_schema
        inferred: dict[str, Any] = super().schema
        return inferred

    def _file_headers(self, filepath: str) -> list[str]:
        """The header row of this file (not of the stream's first file, as the tap does)."""
        if self.column_headers:
            return [self._stem_header(h, i) for i, h in enumerate(self.column_headers)]
        if self.format == "excel":
            headers: list[str] = self._extract_headers_excel(filepath)
        else:
            headers = self._extract_headers_csv(filepath)
        return headers

    def get_records(self, context: dict[str, Any] | None) -> Iterable[dict[str, Any]]:
        state_context = context or {}
        expected_types = {
            name: definition.get("type", ["string"]) for name, definition in self.schema["properties"].items()
        }
        bookmark = parse_bookmark(self.get_starting_replication_key_value(state_context))
        for filepath in sorted(self.get_files()):
            modified = self.storage.describe(filepath).mtime
            if bookmark is not None and modified <= bookmark:
                self.logger.info(
                    "Skipping %s: not modified since %s (Drive modifiedTime)", filepath, bookmark
                )
                continue
            yield from self.process_file(
                filepath, self._file_headers(filepath), expected_types, state_context
            )


def _config_schema() -> dict[str, Any]:
    schema: dict[str, Any] = copy.deepcopy(TapSpreadsheets.config_jsonschema)
    schema["properties"].update(
        th.PropertiesList(
            th.Property(
                SERVICE_ACCOUNT_INFO,
                th.StringType,
                required=True,
                secret=True,
                description=(
                    "The JSON key of a Google Cloud service account (the whole file's text). Share "
                    "the Drive folder with the account's client_email (Viewer)."
                ),
            ),
            th.Property(
                FOLDER_ID,
                th.StringType,
                required=True,
                description="Id of the Drive folder that gdrive:// paths are relative to (from its URL).",
            ),
        ).to_dict()["properties"]
    )
    schema["required"] = sorted({*schema.get("required", []), SERVICE_ACCOUNT_INFO, FOLDER_ID})
    return schema


class TapGoogleDrive(TapSpreadsheets):  # type: ignore[misc] - tap-spreadsheets is untyped
    """CSV and Excel files of one Drive folder, one stream per `files` entry."""

    name = "tap-google-drive"
    config_jsonschema = _config_schema()

    def discover_streams(self) -> list[DriveSpreadsheetStream]:
        try:
            key = json.loads(self.config[SERVICE_ACCOUNT_INFO])
        except json.JSONDecodeError as error:
            msg = f"setting {SERVICE_ACCOUNT_INFO} is not JSON ({error}); paste the key file's whole text"
            raise ValueError(msg) from None
        if not isinstance(key, dict) or key.get("type") != "service_account":
            msg = (
                f'setting {SERVICE_ACCOUNT_INFO} is not a service account key (no "type": "service_account")'
            )
            raise ValueError(msg)
        configure(key, self.config[FOLDER_ID])
        downloads = Downloads()
        streams = []
        for index, entry in enumerate(self.config["files"]):
            if not str(entry.get("path", "")).startswith(PREFIX):
                msg = (
                    f"files[{index}] ({entry.get('table_name')}): path {entry.get('path')!r} is not a "
                    f"{PREFIX} path; write it relative to folder_id, e.g. {PREFIX}exports/*.csv"
                )
                raise ValueError(msg)
            streams.append(DriveSpreadsheetStream(self, entry, downloads))
        return streams


def _extractor() -> str:
    """The Meltano plugin name (Meltano exports it to the plugin's environment)."""
    return os.environ.get("MELTANO_EXTRACTOR_NAME") or TapGoogleDrive.name


def _fail(message: str) -> NoReturn:
    print(f"CRITICAL {message}", file=sys.stderr)
    sys.exit(1)


def main() -> None:
    """The tap's command line, with refused credentials explained by the setting to fix."""
    try:
        TapGoogleDrive.cli()
    except RefreshError as error:
        answer = error.args[0] if error.args else error  # the token endpoint's error and description
        _fail(
            f"{_extractor()}: Google refused the service account key ({answer}). Fix the extractor "
            f"setting {SERVICE_ACCOUNT_INFO} (a current key of an enabled service account)."
        )
    except HttpError as error:
        if error.status_code == 401:  # noqa: PLR2004 - HTTP status
            _fail(
                f"{_extractor()}: Google Drive refused the service account's token ({error.reason}). "
                f"Fix the extractor setting {SERVICE_ACCOUNT_INFO}."
            )
        if error.status_code in {403, 404}:
            _fail(
                f"{_extractor()}: the service account may not read the Drive folder or file "
                f"({error.status_code} {error.reason}). Share the folder with the key's client_email, "
                f"or fix the extractor setting {FOLDER_ID}."
            )
        raise
