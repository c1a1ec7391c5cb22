"""The platform's state store: the committed Singer state of each pipeline, one JSON file each.

Layout: ``<state_dir>/<tenant>/<pipeline_id>/state.json``, replaced atomically (write a temporary
file in the same folder, fsync, rename), so a reader sees the old or the new file, never half.

Bindings, ``<state_dir>/_meltano/bindings/<state id>.json``: which pipeline and catalog a Meltano
state id (``<environment>:<extractor>-to-<loader>``) writes to, so that the `ingest` Meltano state
backend can serve the state committed in the catalog (ingestion/meltano_state.py).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote

STATE_FILE = "state.json"
MELTANO_DIR = "_meltano"


def meltano_state_id(environ: Mapping[str, str]) -> str | None:
    """The state id Meltano gives this extract-load pair, from the variables it sets for plugins
    (a `--state-id-suffix` is not visible to plugins; runs that use one are not bound)."""
    parts = [environ.get(k) for k in ("MELTANO_ENVIRONMENT", "MELTANO_EXTRACTOR_NAME", "MELTANO_LOADER_NAME")]
    if not all(parts):
        return None
    environment, extractor, loader = parts
    return f"{environment}:{extractor}-to-{loader}"


def _file_name(state_id: str) -> str:
    return quote(state_id, safe="") + ".json"


class StateStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, tenant: str, pipeline_id: str) -> Path:
        return self.root / tenant / pipeline_id / STATE_FILE

    def write(self, tenant: str, pipeline_id: str, document: Mapping[str, Any]) -> Path:
        return self._replace(self.path(tenant, pipeline_id), document)

    def binding_path(self, state_id: str, kind: str = "bindings") -> Path:
        return self.root / MELTANO_DIR / kind / _file_name(state_id)

    def bind(self, state_id: str, document: Mapping[str, Any], kind: str = "bindings") -> Path:
        """Record where the pipeline of Meltano's `state_id` commits (no secrets in `document`);
        other `kind`s keep other per-state-id notes (the state backend's overrides)."""
        return self._replace(self.binding_path(state_id, kind), document)

    def binding(self, state_id: str, kind: str = "bindings") -> dict[str, Any] | None:
        return self._read(self.binding_path(state_id, kind))

    def _replace(self, target: Path, document: Mapping[str, Any]) -> Path:
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
        return self._read(self.path(tenant, pipeline_id))

    @staticmethod
    def _read(target: Path) -> dict[str, Any] | None:
        if not target.exists():
            return None
        with target.open(encoding="utf-8") as handle:
            loaded: dict[str, Any] = json.load(handle)
        return loaded
