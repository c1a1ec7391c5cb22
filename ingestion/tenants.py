"""Tenant and pipeline ids: validated before they become part of any path (no path tricks)."""

from __future__ import annotations

import re
from typing import Final

from ingestion.errors import ConfigError

# The target sanitises tenants to this alphabet (target_iceberg_nessie/naming.py).
TENANT_ID: Final = re.compile(r"^[a-z0-9_]{1,128}$")
# The target refuses '/' and '..' in pipeline ids; a backslash or NUL has no business there either.
_PIPELINE_FORBIDDEN: Final = re.compile(r"/|\\|\.\.|\x00")


def check_tenant_id(tenant: str) -> str:
    if not TENANT_ID.match(tenant):
        msg = (
            f"tenant {tenant!r} is not a tenant id; use lower-case letters, digits and underscores "
            "(at most 128), as the target names it"
        )
        raise ConfigError(msg)
    return tenant


def check_pipeline_id(pipeline_id: str) -> str:
    if not pipeline_id.strip() or _PIPELINE_FORBIDDEN.search(pipeline_id):
        msg = f"pipeline {pipeline_id!r} is not a pipeline id; it must be non-empty without '/', '\\' or '..'"
        raise ConfigError(msg)
    return pipeline_id
