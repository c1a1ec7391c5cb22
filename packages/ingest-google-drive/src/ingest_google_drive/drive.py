"""gdrive-fsspec with what the tap needs: the modification time as `mtime`, retries, local copies."""

from __future__ import annotations

import random
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar

import fsspec
from gdrive_fsspec import GoogleDriveFileSystem
from google.oauth2 import service_account
from googleapiclient.discovery import build
from googleapiclient.errors import HttpError
from googleapiclient.http import HttpRequest
from tap_spreadsheets.storage import Storage

PROTOCOL = "gdrive"
PREFIX = f"{PROTOCOL}://"
RETRIES = 5
MAX_RETRY_AFTER_SECONDS = 60.0
RATE_LIMIT_REASONS = frozenset({"rateLimitExceeded", "userRateLimitExceeded"})


def _retryable(error: HttpError) -> bool:
    """Drive's documented transient errors: 429, 5xx, and 403 with a rate-limit reason."""
    if error.status_code == 429 or error.status_code >= 500:  # noqa: PLR2004 - HTTP status
        return True
    details = error.error_details if isinstance(error.error_details, list) else []
    return error.status_code == 403 and any(  # noqa: PLR2004 - HTTP status
        isinstance(d, dict) and d.get("reason") in RATE_LIMIT_REASONS for d in details
    )


def _delay(error: HttpError, attempt: int) -> float:
    retry_after = error.resp.get("retry-after") if error.resp is not None else None
    if retry_after is not None and str(retry_after).isdigit():
        return min(float(retry_after), MAX_RETRY_AFTER_SECONDS)
    return float(2**attempt) * (0.5 + random.random() / 2)  # noqa: S311 - jitter, not crypto


class RetryingHttpRequest(HttpRequest):  # type: ignore[misc] - googleapiclient is untyped
    """Every Drive request (listing and media download alike) retried on transient errors."""

    def execute(self, http: Any = None, num_retries: int = 0) -> Any:
        for attempt in range(RETRIES + 1):
            try:
                return super().execute(http=http, num_retries=num_retries)
            except HttpError as error:
                if attempt == RETRIES or not _retryable(error):
                    raise
                time.sleep(_delay(error, attempt))
        raise AssertionError("unreachable: the last attempt returns or raises")


def _modified(entry: dict[str, Any]) -> datetime | None:
    value = entry.get("modifiedTime")
    return datetime.fromisoformat(str(value).replace("Z", "+00:00")) if value else None


class DriveFileSystem(GoogleDriveFileSystem):  # type: ignore[misc] - gdrive-fsspec is untyped
    """gdrive-fsspec authenticated by a service account key, with `mtime` on every entry."""

    protocol = PROTOCOL

    def connect(self, method: str | None = None) -> None:
        if method != "service_account":
            msg = f"only service account keys are supported on a server, not token={method!r}"
            raise ValueError(msg)
        credentials = service_account.Credentials.from_service_account_info(self.creds, scopes=self.scopes)
        self.srv = build(
            "drive", "v3", credentials=credentials, requestBuilder=RetryingHttpRequest, cache_discovery=False
        )
        self.files = self.srv.files()

    def ls(self, path: str, detail: bool = False, trashed: bool = False) -> list[Any]:
        # tap-spreadsheets reads `mtime`; Drive answers `modifiedTime` (the listing asks for it).
        entries: list[dict[str, Any]] = super().ls(path, detail=True, trashed=trashed)
        for entry in entries:
            modified = _modified(entry)
            if modified is not None:
                entry["mtime"] = modified
        return entries if detail else sorted(entry["name"] for entry in entries)


def configure(service_account_info: dict[str, Any], folder_id: str) -> None:
    """Make every gdrive:// URL of this process open `DriveFileSystem` rooted at `folder_id`.

    tap-spreadsheets builds its file systems with `fsspec.core.url_to_fs(path)` and no options,
    so the options go through fsspec's configuration (`fsspec.config.conf`), which fills in the
    keyword arguments of every file system of the protocol.
    """
    fsspec.register_implementation(PROTOCOL, DriveFileSystem, clobber=True)
    fsspec.config.conf[PROTOCOL] = {
        "token": "service_account",
        "creds": service_account_info,
        "root_file_id": folder_id,
        "access": "read_only",
    }


class Downloads:
    """Local copies of Drive files for one run: each (file id, modifiedTime) is downloaded once."""

    def __init__(self) -> None:
        self._folder = tempfile.TemporaryDirectory(prefix="tap-google-drive-")
        self._copies: dict[tuple[str, str], Path] = {}

    def local_copy(self, fs: DriveFileSystem, path: str) -> Path:
        info = fs.info(path)
        key = (str(info["id"]), str(info.get("modifiedTime")))
        if key not in self._copies:
            target = Path(self._folder.name) / f"{len(self._copies)}-{info['id']}"
            fs.get_file(path, str(target))
            self._copies[key] = target
        return self._copies[key]


class DriveStorage(Storage):  # type: ignore[misc] - tap-spreadsheets is untyped
    """The tap's storage for gdrive:// globs: full gdrive:// names, downloads shared per run."""

    fs: DriveFileSystem
    text_encoding: ClassVar[str] = "utf-8-sig"  # Drive exports often start with a byte order mark

    def __init__(self, path_glob: str, downloads: Downloads) -> None:
        super().__init__(path_glob)
        self.downloads = downloads

    def glob(self) -> list[str]:
        return [self.normalize_path(path) for path in self.fs.glob(self.path_glob)]

    def normalize_path(self, path: str) -> str:
        return path if path.startswith(PREFIX) else f"{PREFIX}{path}"

    def open(self, path: str, mode: str = "rb") -> Any:
        local = self.downloads.local_copy(self.fs, path)
        if "b" in mode:
            return local.open("rb")
        return local.open("r", encoding=self.text_encoding, newline="")
