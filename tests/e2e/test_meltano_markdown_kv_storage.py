"""`meltano run tap-markdown-kv target-iceberg-nessie` with the loader's three Markdown-KV patterns on,
on the embedded catalog and on Nessie.

The records of a folder of Markdown-KV files carry a `body` that is itself a Markdown-KV document. The
loader stores each row as a Markdown-KV `string` column, writes one `raw_file` document per record, and
parses `body` into `orders__kv` and `orders__doc` (`structured`, hybrid). The first run fails after its
documents are written (a failure injected into the real loader process): nothing is visible and no
document is left. The re-run meets a commit conflict once (injected), re-applies the checkpoint and
lands every pattern once: the documents its commit lists are exactly the files in the warehouse.
"""

from __future__ import annotations

import json
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _commands import Finished, MeltanoProject, copy_meltano_project, loader_with_sitecustomize
from conftest import Lake, new_nessie_branch, read_duckdb, read_pyiceberg

from target_iceberg_nessie.markdown_kv import parse_document, render_document, rows_per_kv
from target_iceberg_nessie.markdown_store import documents_of

EXTRACTOR = "tap-markdown-kv"
LOADER = "target-iceberg-nessie"
TABLE = "default.raw.orders"
RUN_ID = "mdkv-e2e"
BODIES = {
    1: render_document(
        [{"sku": "A-1", "qty": 2}, {"sku": "B-2", "qty": 1, "dims": {"w": 10}}], title_key="sku"
    ),
    2: render_document(
        [{"sku": "C-3", "note": "two\nlines", "tags": ["x", "42"]}], front_matter={"title": "Gift"}
    ),
    3: "# Empty order\n",
}
ORDERS = [{"id": n, "customer": f"Customer {n}", "total": n + 0.25, "body": BODIES[n]} for n in (1, 2, 3)]
MARKDOWN_KV = {
    "streams": {
        "orders": {
            "string": True,
            "raw_file": {"path": "markdown_kv/{tenant}/{stream}/{batch}/{key}.md"},
            "structured": {"column": "body", "shape": "hybrid"},
        }
    }
}
# Loaded by every Python process of the run; acts only in the loader, as INGEST_TEST_MDKV says:
# `fail`: the first checkpoint fails after its files and documents are written;
# `conflict`: the first commit attempt reports a conflict (another writer), so it is re-applied.
SITECUSTOMIZE = textwrap.dedent(
    """
    import os, sys

    MODE = os.environ.get("INGEST_TEST_MDKV", "")
    if MODE and os.path.basename(sys.argv[0]) == "target-iceberg-nessie":
        from target_iceberg_nessie import coordinator, errors

        original = coordinator.CommitCoordinator._commit_with_retries
        calls = {"n": 0}

        def commit(self, touched, checkpoint, properties):
            calls["n"] += 1
            if MODE == "fail":
                written = [p for s in touched if s._documents for p in s._documents.written]
                written = [p for p in written if os.path.exists(p)]
                raise errors.FatalError(f"injected: the loader fails after writing {len(written)} documents")
            if MODE == "conflict" and calls["n"] == 1:
                catalog = self.catalog
                real = type(catalog).commit_checkpoint

                def once(changes, checkpoint):
                    catalog.commit_checkpoint = lambda c, k: real(catalog, c, k)
                    raise errors.CommitConflictError("injected: another writer moved a table")

                catalog.commit_checkpoint = once
            return original(self, touched, checkpoint, properties)

        coordinator.CommitCoordinator._commit_with_retries = commit
    """
)


class Runs:
    def __init__(
        self, project: MeltanoProject, failed: Finished, rerun: Finished, after_failure: set[str]
    ) -> None:
        self.project = project
        self.failed = failed
        self.rerun = rerun
        self.after_failure = after_failure


def markdown_files(lake: Lake) -> set[str]:
    return {str(p) for p in (lake.warehouse / "markdown_kv").rglob("*.md*")}


def run_injected(project: MeltanoProject, mode: str, inject: Path, env: dict[str, str]) -> Finished:
    with loader_with_sitecustomize(project, inject, SITECUSTOMIZE):
        return project.meltano_run(EXTRACTOR, LOADER, env={**env, "INGEST_TEST_MDKV": mode})


@pytest.fixture(scope="module", params=["embedded", "nessie"])
def runs(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runs]:
    root = tmp_path_factory.mktemp(f"mdkv-storage-{request.param}")
    lake = Lake(root / "lake")
    if request.param == "nessie":
        server = request.getfixturevalue("nessie")
        lake = Lake(root / "lake", nessie_uri=server.uri, branch=new_nessie_branch(server.uri, "mdkv"))
    project = copy_meltano_project(root / "project", lake, extractors=(EXTRACTOR,))
    data = root / "data"
    data.mkdir()
    (data / "orders.md").write_text(render_document(ORDERS, title_key="id"), encoding="utf-8")
    env = {
        "TAP_MARKDOWN_KV_STREAMS": json.dumps(
            [{"name": "orders", "path": str(data), "key_properties": ["id"]}]
        ),
        "TARGET_ICEBERG_NESSIE_MARKDOWN_KV": json.dumps(MARKDOWN_KV),
        "TARGET_ICEBERG_NESSIE_RUN_ID": RUN_ID,  # the re-run's checkpoint has the failed one's batch id
    }
    failed = run_injected(project, "fail", root / "inject", env)
    catalog = lake.catalog()
    after_failure = {
        "documents": markdown_files(lake),
        "tables": [
            t for t in ("orders", "orders__kv", "orders__doc") if catalog.load_table(("default", "raw", t))
        ],
    }
    rerun = run_injected(project, "conflict", root / "inject", env)
    yield Runs(project, failed, rerun, after_failure)
    lake.close()


def test_a_failed_run_leaves_no_document_and_no_table(runs: Runs) -> None:
    assert runs.failed.returncode != 0, runs.failed.explain()
    assert "injected: the loader fails after writing 3 documents" in runs.failed.stderr
    assert runs.after_failure["documents"] == set(), "the failed checkpoint's documents were deleted"
    assert runs.after_failure["tables"] == [], "no table was committed"


def test_the_rerun_retries_its_conflict_and_commits_every_pattern_once(runs: Runs) -> None:
    assert runs.rerun.returncode == 0, runs.rerun.explain()
    assert "commit conflict" in runs.rerun.stderr, "the injected conflict was re-applied"
    catalog = runs.project.lake.catalog()
    for name in ("orders", "orders__kv", "orders__doc"):
        table = catalog.load_table(("default", "raw", name))
        assert table is not None, name
        assert [s.summary["ingest.batch-id"] for s in table.metadata.snapshots] == [f"{RUN_ID}:1"], name


@pytest.mark.parametrize("reader", [read_pyiceberg, read_duckdb])
def test_string_column_reads_back_as_each_record(runs: Runs, reader: Any) -> None:
    rows = sorted(reader(runs.project.lake, TABLE), key=lambda r: r["id"])
    assert [r["id"] for r in rows] == [1, 2, 3]
    for row, order in zip(rows, ORDERS, strict=True):
        (parsed,) = parse_document(row["_markdown_kv"]).records
        assert parsed.title == str(order["id"])
        assert {k: parsed.data[k] for k in order} == order
        assert parsed.data["_sdc_source_file"] == row["_sdc_source_file"]


def test_raw_files_are_exactly_the_documents_the_commit_lists(runs: Runs) -> None:
    lake = runs.project.lake
    catalog = lake.catalog()
    table = catalog.load_table(("default", "raw", "orders"))
    assert table is not None
    (snapshot,) = table.metadata.snapshots
    listed = documents_of(snapshot.summary.additional_properties, catalog.file_io)
    assert sorted(listed) == sorted(markdown_files(lake)), "no duplicate, no orphan"
    assert sorted(Path(p).name for p in listed) == ["1.md", "2.md", "3.md"]
    assert all(f"/markdown_kv/default/orders/{RUN_ID}-1/" in p for p in listed)
    for path in listed:
        document = parse_document(Path(path).read_text(encoding="utf-8"))
        assert document.front_matter == {"stream": "orders", "table": "orders", "batch_id": f"{RUN_ID}:1"}
        (parsed,) = document.records
        assert parsed.data["body"] == BODIES[parsed.data["id"]]


@pytest.mark.parametrize("reader", [read_pyiceberg, read_duckdb])
def test_structured_tables_hold_the_parsed_bodies(runs: Runs, reader: Any) -> None:
    lake = runs.project.lake
    kv = sorted(reader(lake, f"{TABLE}__kv"), key=lambda r: (r["doc_id"], r["ord"]))
    expected = [
        (r.doc_id, list(r.section_path), r.key, r.value_json)
        for n in (1, 2, 3)
        for r in rows_per_kv(parse_document(BODIES[n]), doc_id=str(n))
    ]
    assert [(r["doc_id"], list(r["section"]), r["key"], r["value_json"]) for r in kv] == expected
    docs = {r["doc_id"]: r for r in reader(lake, f"{TABLE}__doc")}
    assert sorted(docs) == ["1", "2", "3"]
    assert docs["2"]["title"] == "Gift"
    assert docs["3"]["records"] == 1
    assert list(docs["3"]["sections"][0]["fields"]) == [], "a heading without lines is an empty record"
    assert [s["heading"] for s in docs["1"]["sections"]] == ["A-1", "B-2", "dims"]
