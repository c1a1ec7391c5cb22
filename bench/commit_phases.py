"""Where the time of a checkpoint goes: the target in-process, with timers on the steps of a commit.

Same lake and input as ``commit_bench.py`` (a first run creates N tables, ``--warmup`` untimed runs
follow, then a run commits ``--checkpoints`` checkpoints that each touch all N). That run is timed
per checkpoint with wall-clock timers wrapped around public methods of the target's own classes
(sink, catalog, Nessie client, state store); a call made inside another timed call is reported under
it (``a > b``). Unlike cProfile this adds microseconds per call, so the proportions are those of a
normal run. Example::

    python bench/commit_phases.py --catalogs sql,nessie --tables 100 --checkpoints 5
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from commit_bench import write_input
from lakes import CATALOGS, nessie_service, new_run_id, process_cpu_s, target_config
from rich.console import Console
from rich.table import Table
from run_bench import OUT

from target_iceberg_nessie.catalogs.base import CheckpointCatalog
from target_iceberg_nessie.catalogs.nessie import NessieCatalog
from target_iceberg_nessie.catalogs.nessie_api import NessieClient
from target_iceberg_nessie.catalogs.sql import EmbeddedCatalog
from target_iceberg_nessie.coordinator import CommitCoordinator
from target_iceberg_nessie.sink import IcebergSink
from target_iceberg_nessie.state_store import StateStore
from target_iceberg_nessie.target import TargetIcebergNessie

console = Console(stderr=True, soft_wrap=True)
CHECKPOINT = "checkpoint"
# (owner, method, label): what is timed. A label nested in another timed call is reported as "outer > label".
TIMED: tuple[tuple[type, str, str], ...] = (
    (CommitCoordinator, "checkpoint", CHECKPOINT),
    (IcebergSink, "flush", "hand last records to staging"),
    (IcebergSink, "seal", "wait for staged Parquet files"),
    (IcebergSink, "table_change", "snapshot: manifest + manifest list"),
    (EmbeddedCatalog, "commit_checkpoint", "catalog commit"),
    (NessieCatalog, "commit_checkpoint", "catalog commit"),
    (CheckpointCatalog, "write_metadata", "metadata JSON write"),
    (NessieClient, "content", "Nessie GET content"),
    (NessieClient, "commit", "Nessie POST commit"),
    (NessieClient, "reference", "Nessie GET reference"),
    (IcebergSink, "committed", "reload committed table"),
    (EmbeddedCatalog, "load_table", "load table"),
    (NessieCatalog, "load_table", "load table"),
    (StateStore, "write", "state store write"),
)


class PhaseClock:
    """Wall time and calls per call path ("outer > inner"), collected per checkpoint."""

    def __init__(self) -> None:
        self.stack: list[str] = []
        self.current: dict[str, list[float]] = defaultdict(lambda: [0.0, 0])
        self.checkpoints: list[dict[str, list[float]]] = []

    def timed(self, label: str, function: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(function)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            path = f"{self.stack[-1]} > {label}" if self.stack and label != CHECKPOINT else label
            if label == CHECKPOINT:  # count only what happens inside checkpoints
                self.current.clear()
            self.stack.append(path)
            started, result = time.perf_counter(), None
            try:
                result = function(*args, **kwargs)
            finally:
                cell = self.current[path]
                cell[0] += time.perf_counter() - started
                cell[1] += 1
                self.stack.pop()
                if label == CHECKPOINT and result:  # False: the checkpoint had nothing to commit
                    self.checkpoints.append(dict(self.current))
            return result

        return wrapper

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        """Wrap the TIMED methods for the duration of the block (restored afterwards)."""
        originals = []
        for owner, name, label in TIMED:
            raw = owner.__dict__.get(name)
            if raw is None:  # not defined on this class (any more): nothing to time
                continue
            if isinstance(raw, staticmethod):
                replacement: Any = staticmethod(self.timed(label, raw.__func__))
            else:
                replacement = self.timed(label, raw)
            originals.append((owner, name, raw))
            setattr(owner, name, replacement)
        try:
            yield
        finally:
            for owner, name, raw in reversed(originals):
                setattr(owner, name, raw)


def run_in_process(config: dict[str, Any], infile: Path) -> None:
    with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull), infile.open("rb") as lines:
        target = TargetIcebergNessie(config=dict(config))
        try:
            target.process_lines(lines)
            target.process_endofpipe()
        finally:
            target.close()


def profile(args: argparse.Namespace, catalog: str, uri: str | None, pid: int | None) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix=f"phases-{catalog}-{args.tables}-", dir=OUT))
    try:
        config = target_config(
            catalog,
            work,
            run_id=new_run_id(f"{catalog}-{args.tables}t"),
            nessie_uri=uri,
            checkpoint_interval=0,
        )
        setup, timed = work / "setup.singer", work / "timed.singer"
        write_input(setup, args.tables, args.rows, 1, seed=0)
        run_in_process(config, setup)
        for run in range(args.warmup):  # untimed, like commit_bench.py's --warmup
            write_input(timed, args.tables, args.rows, args.checkpoints, seed=100 + run)
            run_in_process({**config, "run_id": f"{config['run_id']}-warmup{run}"}, timed)
        write_input(timed, args.tables, args.rows, args.checkpoints, seed=1)
        clock = PhaseClock()
        cpu_before = process_cpu_s(pid)
        with clock.installed():
            run_in_process({**config, "run_id": config["run_id"] + "-timed"}, timed)
        cpu_after = process_cpu_s(pid)
    finally:
        if not args.keep_lake:
            shutil.rmtree(work, ignore_errors=True)
    paths = sorted({path for checkpoint in clock.checkpoints for path in checkpoint})
    phases = {
        path: {
            "seconds": [c[path][0] if path in c else 0.0 for c in clock.checkpoints],
            "calls": [int(c[path][1]) if path in c else 0 for c in clock.checkpoints],
        }
        for path in paths
    }
    server_cpu = None if cpu_before is None or cpu_after is None else cpu_after - cpu_before
    return {"catalog": catalog, "tables": args.tables, "phases": phases, "server_cpu_s": server_cpu}


def print_profile(found: dict[str, Any]) -> None:
    title = f"{found['catalog']}: one checkpoint touching {found['tables']} existing table(s)"
    table = Table(title=title + " (median per checkpoint)")
    for column in ("step", "seconds", "share", "calls", "ms per call", "all checkpoints (s)"):
        table.add_column(column, justify="left" if column == "step" else "right")
    total = statistics.median(found["phases"][CHECKPOINT]["seconds"])
    for path, figures in found["phases"].items():
        seconds, calls = statistics.median(figures["seconds"]), statistics.median(figures["calls"])
        per_call = f"{1000 * seconds / calls:.1f}" if calls else "-"
        every = ", ".join(f"{s:.3f}" for s in figures["seconds"])
        share = f"{seconds / total:.0%}" if total else "-"
        table.add_row(path, f"{seconds:.3f}", share, f"{calls:g}", per_call, every)
    Console(width=None if sys.stdout.isatty() else 170).print(table)
    if found["server_cpu_s"] is not None:
        console.print(f"Nessie server CPU during the timed run: {found['server_cpu_s']:.2f} s")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--catalogs", default=",".join(CATALOGS), help="comma-separated subset of sql,nessie")
    p.add_argument("--tables", type=int, default=100)
    p.add_argument("--checkpoints", type=int, default=5)
    p.add_argument("--warmup", type=int, default=1, help="untimed runs before the timed one")
    p.add_argument("--rows", type=int, default=5, help="records per table and checkpoint")
    p.add_argument("--nessie-uri", help="use this Nessie (API v2 URI) instead of starting one")
    p.add_argument("--json", type=Path, help="also write the results to this JSON file")
    p.add_argument("--keep-lake", action="store_true", help="keep the work dirs under bench/out")
    args = p.parse_args(argv)
    args.catalogs = [name.strip() for name in args.catalogs.split(",") if name.strip()]
    if unknown := set(args.catalogs) - set(CATALOGS):
        p.error(f"unknown catalog(s) {sorted(unknown)}; choose from {', '.join(CATALOGS)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    OUT.mkdir(parents=True, exist_ok=True)
    results = []
    with contextlib.ExitStack() as stack:
        uri = pid = None
        if "nessie" in args.catalogs:
            service = stack.enter_context(nessie_service(args.nessie_uri, OUT / "nessie-phases.log"))
            uri, pid = service.uri, service.pid
        for catalog in args.catalogs:
            console.print(f"{catalog}: {args.tables} table(s), {args.checkpoints} checkpoint(s) ...")
            results.append(profile(args, catalog, uri, pid if catalog == "nessie" else None))
    for found in results:
        print_profile(found)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2))
        console.print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
