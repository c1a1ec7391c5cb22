"""Errors of the warehouse's object store, turned into messages that name the store and the fix.

pyarrow reports S3 failures as OSError with the AWS SDK's text ("AWS Error NETWORK_CONNECTION
during CreateMultipartUpload ..."). Those reach the target from the staging thread, the manifest
writer or the metadata writer; the target raises them as `StorageError` (retriable when the store
was unreachable, fatal when the bucket or the credentials are wrong), so nothing is committed and
the user reads what to change.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Final

from target_iceberg_nessie.errors import FatalError, RetriableError, TargetError

_UNREACHABLE: Final = re.compile(
    r"NETWORK_CONNECTION|Could not connect|Connection refused|curlCode: (6|7|28|52|56)|timed out|"
    r"SERVICE_UNAVAILABLE|SLOW_DOWN|InternalError|503",
    re.IGNORECASE,
)
_NO_BUCKET: Final = re.compile(
    r"NoSuchBucket|NO_SUCH_BUCKET|Bucket '[^']*' not found|bucket does not exist", re.I
)
_DENIED: Final = re.compile(
    r"ACCESS_DENIED|AccessDenied|InvalidAccessKeyId|SignatureDoesNotMatch|INVALID_ACCESS_KEY_ID|"
    r"SIGNATURE_DOES_NOT_MATCH|Forbidden|HTTP response code: 403|UNKNOWN \(HTTP status 403\)",
    re.IGNORECASE,
)
_BUCKET: Final = re.compile(r"bucket '([^']+)'", re.IGNORECASE)


class StorageError(RetriableError):
    """The object store could not be reached; re-run when it is back (nothing was committed)."""


class StorageConfigError(FatalError):
    """The object store refused the request: a missing bucket or wrong credentials."""


def _is_storage(error: OSError) -> bool:
    text = str(error)
    return "AWS Error" in text or "bucket" in text.lower() or "s3://" in text


def storage_error(error: OSError, warehouse: str, io_properties: Mapping[str, str]) -> TargetError | None:
    """The target error for an OSError of the warehouse's store, or None when it is not one."""
    if not _is_storage(error):
        return None
    endpoint = io_properties.get("s3.endpoint") or "AWS S3"
    cause = " ".join(str(error).split())
    where = f"the warehouse {warehouse} (S3 endpoint {endpoint})"
    if _NO_BUCKET.search(cause):
        bucket = _BUCKET.search(cause)
        name = bucket.group(1) if bucket else warehouse.removeprefix("s3://").split("/", 1)[0]
        return StorageConfigError(
            f"{where}: bucket {name!r} does not exist. Create it, or point `warehouse` at an existing "
            f"bucket ({cause})"
        )
    if _DENIED.search(cause):
        return StorageConfigError(
            f"{where} refused the credentials. Check s3_access_key_id and s3_secret_access_key "
            f"(TARGET_ICEBERG_NESSIE_S3_ACCESS_KEY_ID / _SECRET_ACCESS_KEY) and the key's access to the "
            f"bucket ({cause})"
        )
    if _UNREACHABLE.search(cause):
        return StorageError(
            f"{where} could not be reached; nothing of this checkpoint was committed. Check that the "
            f"object store is up and s3_endpoint is right, then re-run ({cause})"
        )
    return StorageError(f"{where} failed: {cause}")


@contextmanager
def storage_errors(warehouse: str, io_properties: Mapping[str, str]) -> Iterator[None]:
    """Raise an OSError of the warehouse's store as a StorageError that names the fix."""
    try:
        yield
    except OSError as error:
        translated = storage_error(error, warehouse, io_properties)
        if translated is None:
            raise
        raise translated from error
