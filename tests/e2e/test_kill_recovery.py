"""kill -9 at the three points of a checkpoint, through `meltano run`; the re-run loads exactly the source.

(a) while a checkpoint's files are written (before its commit), (b) right after the commit and before
STATE is printed, (c) after STATE is printed but before Meltano saved it. The kill is injected into
the real loader process by a `sitecustomize` module that only this test writes: the copied project's
loader runs through a wrapper script that puts it on PYTHONPATH (Meltano drops an inherited
PYTHONPATH), so the production plugin environment never has it. Recovery relies on the `ingest`
Meltano state backend serving the state committed in the catalog (ingestion/meltano_state.py).
"""

from __future__ import annotations

import json
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from _commands import Finished, MeltanoProject, copy_meltano_project, loader_with_sitecustomize
from conftest import Lake, new_nessie_branch, read_duckdb, read_pyiceberg

LOADER = "target-iceberg-nessie"
NAMESPACE = ("default", "raw")
SOURCE_ROWS = {"customers": ("customer_id", 50), "orders": ("order_id", 200), "products": ("sku", 10)}
KILLED = -9

# Loaded by every Python process of the run; acts only in the loader, at the point INGEST_TEST_KILL names.
SITECUSTOMIZE = textwrap.dedent(
    """
    import os, signal, sys

    POINT = os.environ.get("INGEST_TEST_KILL", "")

    def _die(parent_too=False):
        if parent_too:  # Meltano: stopped first so it cannot read what was just printed, then killed
            os.kill(os.getppid(), signal.SIGSTOP)
        sys.stdout.flush()
        if parent_too:
            os.kill(os.getppid(), signal.SIGKILL)
        os.kill(os.getpid(), signal.SIGKILL)

    if POINT and os.path.basename(sys.argv[0]) == "target-iceberg-nessie":
        from target_iceberg_nessie import coordinator, sink, target

        calls = {"write": 0}
        if POINT == "writing":  # a batch of the 2nd checkpoint is in an unclosed file; nothing committed
            from target_iceberg_nessie import staging

            original_write = staging.DataFileWriter.write
            def write(self, *args, **kwargs):
                original_write(self, *args, **kwargs)
                calls["write"] += 1
                if calls["write"] == 2:
                    _die()
            staging.DataFileWriter.write = write
        elif POINT == "after-commit":  # the 1st checkpoint committed; its STATE never printed
            original_commit = coordinator.CommitCoordinator._commit_with_retries
            def commit(self, *args, **kwargs):
                result = original_commit(self, *args, **kwargs)
                _die()
                return result
            coordinator.CommitCoordinator._commit_with_retries = commit
        elif POINT == "after-state":  # the 1st STATE printed; Meltano killed before saving it
            original_emit = target.TargetIcebergNessie._emit_state
            def emit(self, state):
                original_emit(self, state)
                _die(parent_too=True)
            target.TargetIcebergNessie._emit_state = emit
    """
)


@pytest.fixture(params=["embedded", "nessie"])
def project(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[MeltanoProject]:
    lake = Lake(tmp_path / "lake")
    if request.param == "nessie":
        server = request.getfixturevalue("nessie")
        lake = Lake(tmp_path / "lake", nessie_uri=server.uri, branch=new_nessie_branch(server.uri, "kill"))
    yield copy_meltano_project(tmp_path / "project", lake)
    lake.close()


def run_killed(project: MeltanoProject, point: str, tmp_path: Path) -> Finished:
    """One `meltano run` whose loader dies at `point`; the project is left as it was."""
    env = {
        "INGEST_TEST_KILL": point,
        "TARGET_ICEBERG_NESSIE_CHECKPOINT_INTERVAL_SECONDS": "0",  # one checkpoint per STATE
    }
    with loader_with_sitecustomize(project, tmp_path / "inject", SITECUSTOMIZE):
        return project.meltano_run("tap-demo-csv", LOADER, env=env)


def saved_meltano_state(project: MeltanoProject) -> dict | None:
    path = project.lake.state_dir / "_meltano" / "dev:tap-demo-csv-to-target-iceberg-nessie" / "state.json"
    return json.loads(path.read_text()) if path.exists() else None


def assert_exactly_the_source(project: MeltanoProject) -> None:
    for table, (key, count) in SOURCE_ROWS.items():
        name = ".".join((*NAMESPACE, table))
        for reader in (read_pyiceberg, read_duckdb):
            keys = [row[key] for row in reader(project.lake, name)]
            assert len(keys) == count, f"{name} via {reader.__name__}: {len(keys)} rows, source has {count}"
            assert len(set(keys)) == count, f"{name} via {reader.__name__}: duplicated keys"


def committed_singer_state(project: MeltanoProject) -> dict | None:
    committed = project.lake.catalog().committed_state("default.raw")
    return dict(committed.state) if committed is not None and committed.state is not None else None


@pytest.mark.parametrize("point", ["writing", "after-commit", "after-state"])
def test_a_run_killed_at_any_point_is_rerun_to_exactly_the_source_rows(
    project: MeltanoProject, point: str, tmp_path: Path
) -> None:
    killed = run_killed(project, point, tmp_path)
    assert killed.returncode != 0, f"the run was killed\n{killed.explain()}"
    committed = committed_singer_state(project)
    saved = saved_meltano_state(project)
    saved_singer = (saved or {}).get("completed", {}).get("singer_state") or (saved or {}).get(
        "partial", {}
    ).get("singer_state")
    if point in {"after-commit", "after-state"}:
        assert committed is not None, "the first checkpoint was committed before the kill"
        assert saved_singer != committed, "Meltano's saved state is behind the catalog: the case to recover"
    # Meltano killed mid-run leaves its run marked as running; the operator's re-run forces it.
    force = ("--force",) if point == "after-state" else ()
    rerun = project.meltano_run(*force, "tap-demo-csv", LOADER)
    assert rerun.returncode == 0, rerun.explain()
    if point in {"after-commit", "after-state"}:
        assert "serving the state committed in the catalog" in rerun.stderr, rerun.explain()
    assert_exactly_the_source(project)
    final = committed_singer_state(project)
    assert final is not None
    saved_after = saved_meltano_state(project)
    assert saved_after is not None
    assert saved_after["completed"]["singer_state"] == final, "Meltano and the catalog agree again"


def test_meltano_state_clear_is_honoured_until_the_next_commit(project: MeltanoProject) -> None:
    first = project.meltano_run("tap-demo-csv", LOADER)
    assert first.returncode == 0, first.explain()
    cleared = project.meltano("state", "clear", "--force", "dev:tap-demo-csv-to-target-iceberg-nessie")
    assert cleared.returncode == 0, cleared.explain()
    shown = project.meltano("state", "get", "dev:tap-demo-csv-to-target-iceberg-nessie")
    assert "bookmarks" not in shown.stdout, "a cleared state is not resurrected from the catalog"
    again = project.meltano_run("tap-demo-csv", LOADER)
    assert again.returncode == 0, again.explain()
    counts = {t: len(read_pyiceberg(project.lake, ".".join((*NAMESPACE, t)))) for t in SOURCE_ROWS}
    assert counts == {t: 2 * n for t, (_, n) in SOURCE_ROWS.items()}, "cleared: the source was read again"
