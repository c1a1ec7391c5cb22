"""A Meltano state backend that serves the state committed in the catalog (`ingest://<state dir>`).

The target commits each checkpoint's Singer state in the same atomic catalog commit as its rows, then
prints STATE, which Meltano saves. A crash between the two (the target killed after its commit, or
Meltano killed before it saved the line) leaves Meltano's saved state behind the catalog, and the next
run would extract the committed rows again. With this backend, Meltano asks the catalog: when the
pipeline bound to a state id (the target records the binding when it starts, under
`<state dir>/_meltano/bindings/`) has a committed state that differs from the saved one, the
committed state is served, and the log says so.

Meltano's own state files are kept as its `file` backend keeps them, under `<state dir>/_meltano/`.
Explicit changes are honoured: after `meltano state set|clear|edit` the saved state wins until the
pipeline commits again (a marker records the catalog's batch id at the time of the change).

Configure in meltano.yml: `state_backend: {uri: "ingest://${MELTANO_PROJECT_ROOT}/.state"}` (the
target's `state_dir`). Catalog secrets are not stored in bindings: for a database URL with a
password and for Nessie's token the backend reads the loader's variables
(TARGET_ICEBERG_NESSIE_CATALOG_URI, TARGET_ICEBERG_NESSIE_NESSIE_TOKEN) from its environment.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
from collections.abc import Generator, Iterable, Mapping
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

from meltano.core.state_store.base import MeltanoState, StateStoreManager
from meltano.core.state_store.filesystem import LocalFilesystemStateStoreManager

from ingestion.lookback import ENV as LOOKBACK_ENV
from ingestion.lookback import parse_lookback, rewind
from ingestion.paths import warehouse_io_properties
from target_iceberg_nessie.catalogs import CommittedState, open_catalog
from target_iceberg_nessie.errors import TargetError
from target_iceberg_nessie.state_store import MELTANO_DIR, StateStore

logger = logging.getLogger(__name__)

SCHEME: Final = "ingest"
_OVERRIDES: Final = "overrides"
_SINGER_STATE: Final = "singer_state"  # where Meltano keeps a job's Singer state


def _explicit_state_command(argv: list[str]) -> bool:
    """Whether this Meltano process runs `meltano state ...` (a person changing state on purpose)."""
    words = [a for a in argv[1:] if not a.startswith("-")]
    return bool(words) and words[0] == "state"


class CatalogStateStoreManager(StateStoreManager):
    """Meltano's file backend, reconciled with the catalog on every read."""

    def __init__(self, uri: str, lock_timeout_seconds: int = 10, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        parsed = urlsplit(uri)
        if parsed.scheme != SCHEME or not parsed.path:
            msg = f"state backend URI {uri!r}: expected {SCHEME}:///<absolute state dir>"
            raise ValueError(msg)
        self.root = Path(parsed.path)
        self.store = StateStore(self.root)
        self.files = LocalFilesystemStateStoreManager(
            uri=f"file://{self.root / MELTANO_DIR}", lock_timeout_seconds=lock_timeout_seconds, **kwargs
        )

    @property
    def label(self) -> str:
        return f"the ingest catalog-backed store at {self.root}"

    # -- Meltano's own files -----------------------------------------------------------------------

    def set(self, state: MeltanoState) -> None:
        self.files.set(state)
        if _explicit_state_command(sys.argv):
            self._mark_override(state.state_id)

    def delete(self, state_id: str) -> None:
        self.files.delete(state_id)
        if _explicit_state_command(sys.argv):
            self._mark_override(state_id)

    def get_state_ids(self, pattern: str | None = None) -> Iterable[str]:
        return self.files.get_state_ids(pattern)

    @contextlib.contextmanager
    def acquire_lock(self, state_id: str, *, retry_seconds: float) -> Generator[None]:
        with self.files.acquire_lock(state_id, retry_seconds=retry_seconds):
            yield

    # -- reconciled reads ------------------------------------------------------------------------

    def get(self, state_id: str) -> MeltanoState | None:
        served = self._reconciled(state_id)
        lookback = os.environ.get(LOOKBACK_ENV)
        if served is None or not lookback or _explicit_state_command(sys.argv):
            return served
        return _with_lookback(served, lookback)

    def _reconciled(self, state_id: str) -> MeltanoState | None:
        saved = self.files.get(state_id)
        binding = self.store.binding(state_id)
        if binding is None:
            return saved
        committed = self._committed(binding)
        if committed is None or committed.state is None:
            return saved
        override = self.store.binding(state_id, _OVERRIDES)
        if override is not None and override.get("batch_id") == committed.batch_id:
            return saved  # changed on purpose since the pipeline's last commit
        saved_state = json.loads(saved.json_merged()).get(_SINGER_STATE) if saved else None
        if saved_state == committed.state:
            return saved
        logger.warning(
            "state of %s: serving the state committed in the catalog (pipeline %s, batch %s, commit %s); "
            "Meltano's saved state was %s",
            state_id,
            committed.pipeline_id,
            committed.batch_id,
            committed.commit_id,
            "missing" if saved_state is None else "behind it",
        )
        return MeltanoState(
            state_id=state_id, completed_state={_SINGER_STATE: dict(committed.state)}, partial_state={}
        )

    def _committed(self, binding: Mapping[str, Any]) -> CommittedState | None:
        catalog_type = str(binding.get("catalog_type") or "sql")
        uri = binding.get("nessie_uri") if catalog_type == "nessie" else binding.get("catalog_uri")
        uri = uri or os.environ.get("TARGET_ICEBERG_NESSIE_CATALOG_URI")
        if not uri:
            logger.warning("binding of %s names no catalog URI; using Meltano's saved state", binding)
            return None
        try:
            with open_catalog(
                catalog_type,
                name=str(binding.get("catalog_name") or "ingest"),
                uri=str(uri),
                warehouse=str(binding.get("warehouse") or ""),
                branch=str(binding.get("branch") or "main"),
                token=os.environ.get("TARGET_ICEBERG_NESSIE_NESSIE_TOKEN"),
                io_properties=warehouse_io_properties(str(binding.get("warehouse") or "")),
            ) as catalog:
                return catalog.committed_state(str(binding["pipeline_id"]))
        except TargetError as error:
            # The run fails anyway when its catalog is unreachable; do not hide Meltano's state.
            logger.warning("could not read the committed state from the catalog (%s); using Meltano's", error)
            return None

    def _mark_override(self, state_id: str) -> None:
        binding = self.store.binding(state_id)
        if binding is None:
            return
        committed = self._committed(binding)
        document = {"state_id": state_id, "batch_id": committed.batch_id if committed else None}
        self.store.bind(state_id, document, _OVERRIDES)


def _with_lookback(served: MeltanoState, lookback: str) -> MeltanoState:
    """The served state with every bookmark moved back by the run's lookback (INGEST_LOOKBACK)."""
    merged = json.loads(served.json_merged())
    singer_state = merged.get(_SINGER_STATE)
    if not isinstance(singer_state, dict):
        return served
    rewound, changes, skipped = rewind(singer_state, parse_lookback(lookback))
    for change in changes:
        logger.warning(
            "lookback %s: stream %s bookmark %s rewound from %s to %s",
            lookback,
            change.stream,
            change.key,
            change.before,
            change.after,
        )
    for skip in skipped:
        logger.warning(
            "lookback %s does not apply to stream %s bookmark %s=%r (%s)",
            lookback,
            skip.stream,
            skip.key,
            skip.value,
            skip.reason,
        )
    return MeltanoState(state_id=served.state_id, completed_state={_SINGER_STATE: rewound}, partial_state={})
