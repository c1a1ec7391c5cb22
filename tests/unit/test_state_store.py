from __future__ import annotations

from pathlib import Path

import pytest

from target_iceberg_nessie.state_store import StateStore


def test_write_is_atomic_and_readable(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    path = store.write("acme", "acme.raw", {"state": {"a": 1}})
    assert path == tmp_path / "acme" / "acme.raw" / "state.json"
    assert store.read("acme", "acme.raw") == {"state": {"a": 1}}
    store.write("acme", "acme.raw", {"state": {"a": 2}})
    assert store.read("acme", "acme.raw") == {"state": {"a": 2}}
    assert sorted(p.name for p in path.parent.iterdir()) == ["state.json"], "no temporary file is left"


def test_a_failed_write_keeps_the_previous_document(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    store.write("acme", "p", {"state": 1})
    with pytest.raises(TypeError):
        store.write("acme", "p", {"state": object()})
    assert store.read("acme", "p") == {"state": 1}
    assert sorted(p.name for p in (tmp_path / "acme" / "p").iterdir()) == ["state.json"]


def test_missing_document_reads_as_none(tmp_path: Path) -> None:
    assert StateStore(tmp_path).read("acme", "nothing") is None
