"""The platform's state store: the committed Singer state of each pipeline, one JSON file each.

Layout: ``<state_dir>/<tenant>/<pipeline_id>/state.json``, replaced atomically (write a temporary
file in the same folder, fsync, rename), so a reader sees the old or the new file, never half.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

STATE_FILE = "state.json"


class StateStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, tenant: str, pipeline_id: str) -> Path:
        return self.root / tenant / pipeline_id / STATE_FILE

    def write(self, tenant: str, pipeline_id: str, document: Mapping[str, Any]) -> Path:
        target = self.path(tenant, pipeline_id)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".state-", suffix=".tmp", dir=target.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(document, handle, indent=2, sort_keys=True)
                handle.write("\n")
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return target

    def read(self, tenant: str, pipeline_id: str) -> dict[str, Any] | None:
        target = self.path(tenant, pipeline_id)
        if not target.exists():
            return None
        with target.open(encoding="utf-8") as handle:
            loaded: dict[str, Any] = json.load(handle)
        return loaded
