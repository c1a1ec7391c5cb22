"""Time one checkpoint commit touching N tables, on the embedded catalog and on Nessie.

For every table count N and catalog, a fresh lake is prepared by one run of the target that creates
N tables (N streams, one checkpoint). Then the target runs ``--repeat`` more times on that lake, each
run on an input of N streams with ``--rows`` records per stream and checkpoint, and ``--checkpoints``
STATE messages (``checkpoint_interval_seconds: 0``, so each STATE is one checkpoint touching all N
tables). Every commit of these runs updates existing tables. ``--warmup`` untimed runs come first
(a freshly started Nessie answers several times slower until its JIT has compiled the hot paths).
Runs of the two catalogs alternate, so machine noise hits both alike.

The commit time is the one the target itself logs per checkpoint ("checkpoint <id> committed (...):
N table(s), R row(s) in X.XXXs"): from the staged files being sealed to the state being ready to
emit, i.e. manifests and manifest list per table, metadata JSON per table, the catalog commit, and
the reload of each committed table for the next checkpoint. Example::

    python bench/commit_bench.py --tables 1,10,100 --repeat 3 --json bench/out/commit_bench.json
"""

from __future__ import annotations

import argparse
import json
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from generate_stream import write_stream
from lakes import CATALOGS, NessieService, nessie_service, new_run_id, process_cpu_s, target_config
from measures import machine_busy_s
from rich.console import Console
from rich.table import Table
from run_bench import OUT, child_env, target_executable

COMMIT_LINE = re.compile(
    rb"checkpoint (?P<batch>\S+) committed \((?P<reason>[^)]*)\): (?P<tables>\d+) table\(s\), "
    rb"(?P<rows>\d+) row\(s\) in (?P<seconds>[\d.]+)s"
)
SETUP_SEED = 10_000  # runs use seeds 1 - warmup .. repeat: every run appends new ids
console = Console(stderr=True, soft_wrap=True)


@dataclass
class CommitRuns:
    """Commit times of one catalog at one table count: `runs[i]` holds the checkpoints of run i."""

    catalog: str
    tables: int
    setup_s: list[float] = field(default_factory=list)  # the checkpoint that created the tables
    runs: list[list[float]] = field(default_factory=list)
    run_wall_s: list[float] = field(default_factory=list)
    server_cpu_s: list[float] = field(default_factory=list)  # Nessie's CPU during each timed run
    other_cpu_s: list[float] = field(default_factory=list)  # everything else's CPU meanwhile: noise
    error: str | None = None

    @property
    def commits(self) -> list[float]:
        return [t for run in self.runs for t in run]


def write_input(path: Path, tables: int, rows: int, checkpoints: int, seed: int) -> None:
    per_checkpoint = tables * rows
    with path.open("wb", buffering=1 << 20) as out:
        write_stream(out, per_checkpoint * checkpoints, tables, per_checkpoint, seed)


def run_target(
    cmd: list[str], config: dict[str, Any], work: Path, infile: Path, *, tag: str, timeout: float
) -> tuple[list[tuple[int, float]], float, str | None]:
    """Run the target once; return ((tables, seconds) per logged checkpoint, wall s, error or None)."""
    config_path = work / f"config-{tag}.json"
    config_path.write_text(json.dumps(config, indent=2))
    stderr_path = work / f"stderr-{tag}"
    with infile.open("rb") as stdin, stderr_path.open("wb") as stderr:
        started = time.perf_counter()
        done = subprocess.run(
            [*cmd, "--config", str(config_path)],
            stdin=stdin, stdout=subprocess.DEVNULL, stderr=stderr, env=child_env(), timeout=timeout,
            check=False,
        )  # fmt: skip
        wall = time.perf_counter() - started
    log = stderr_path.read_bytes()
    commits = [(int(m["tables"]), float(m["seconds"])) for m in COMMIT_LINE.finditer(log)]
    if done.returncode != 0:
        tail = log.decode(errors="replace").strip().splitlines()[-10:]
        return commits, wall, f"exit {done.returncode}: " + "\n".join(tail)
    return commits, wall, None


def bench_catalog_runs(
    args: argparse.Namespace, catalog: str, tables: int, service: NessieService | None
) -> tuple[CommitRuns, dict[str, Any], Path]:
    """Prepare a lake with `tables` tables for `catalog`; return its results holder, config and dir."""
    work = Path(tempfile.mkdtemp(prefix=f"commit-{catalog}-{tables}-", dir=OUT))
    result = CommitRuns(catalog, tables)
    config = target_config(
        catalog,
        work,
        run_id=new_run_id(f"{catalog}-{tables}t"),
        nessie_uri=service.uri if service else None,
        checkpoint_interval=0,
    )
    setup_input = work / "setup.singer"
    write_input(setup_input, tables, args.rows, 1, seed=SETUP_SEED)
    commits, _, error = run_target(args.cmd, config, work, setup_input, tag="setup", timeout=args.timeout)
    result.setup_s = [seconds for _, seconds in commits]
    result.error = error
    return result, config, work


def timed_run(
    args: argparse.Namespace,
    result: CommitRuns,
    config: dict[str, Any],
    work: Path,
    *,
    run: int,
    service: NessieService | None,
) -> None:
    infile = work / f"run{run}.singer"
    write_input(infile, result.tables, args.rows, args.checkpoints, seed=run)
    config = {**config, "run_id": f"{config['run_id']}-{run}"}
    cmd = args.cmd
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)
        profile = args.profile / f"{result.catalog}-{result.tables}t-run{run}.prof"
        cmd = [sys.executable, "-m", "cProfile", "-o", str(profile), *args.cmd]
    server_pid = service.pid if service and result.catalog == "nessie" else None
    cpu_before, busy_before, own_before = process_cpu_s(server_pid), machine_busy_s(), _children_cpu_s()
    commits, wall, error = run_target(cmd, config, work, infile, tag=f"run{run}", timeout=args.timeout)
    if run < 1:  # an untimed warm-up run (also of the Nessie server's JIT): only its failure counts
        result.error = result.error or error
        return
    cpu_after, busy_after, own_after = process_cpu_s(server_pid), machine_busy_s(), _children_cpu_s()
    server = 0.0
    if cpu_before is not None and cpu_after is not None:
        server = cpu_after - cpu_before
        result.server_cpu_s.append(server)
    if busy_before is not None and busy_after is not None:
        other = busy_after - busy_before - (own_after - own_before) - server
        result.other_cpu_s.append(max(0.0, other))
    wrong = [n for n, _ in commits if n != result.tables]
    if error is None and (wrong or len(commits) != args.checkpoints):
        error = f"expected {args.checkpoints} checkpoints of {result.tables} tables, got {commits}"
    result.error = result.error or error
    result.runs.append([seconds for _, seconds in commits])
    result.run_wall_s.append(wall)


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)  # of the reaped target runs
    return usage.ru_utime + usage.ru_stime


def bench(args: argparse.Namespace, service: NessieService | None) -> list[CommitRuns]:
    results: list[CommitRuns] = []
    for tables in args.tables:
        lakes = []
        for catalog in args.catalogs:
            console.print(f"{catalog}: creating {tables} table(s) ...")
            lakes.append(bench_catalog_runs(args, catalog, tables, service))
        for run in range(1 - args.warmup, args.repeat + 1):
            for result, config, work in lakes:
                if result.error:
                    continue
                what = f"run {run}/{args.repeat}" if run > 0 else "warm-up run"
                console.print(f"{result.catalog}: {tables} table(s), {what} ...")
                timed_run(args, result, config, work, run=run, service=service)
        for result, _, work in lakes:
            results.append(result)
            if not args.keep_lake:
                shutil.rmtree(work, ignore_errors=True)
    return results


def _seconds(values: list[float]) -> str:
    return ", ".join(f"{v:.3f}" for v in values) if values else "-"


def print_table(results: list[CommitRuns]) -> None:
    table = Table(title="one checkpoint commit touching N existing tables (seconds)")
    for column in ("catalog", "tables", "commits", "median", "min", "max", "first of each run",
                   "creating the tables", "server CPU s per run", "other CPU s per run"):  # fmt: skip
        table.add_column(column, justify="left" if column == "catalog" else "right")
    for r in results:
        times = r.commits
        stats = (
            [f"{statistics.median(times):.3f}", f"{min(times):.3f}", f"{max(times):.3f}"]
            if times
            else ["-"] * 3
        )
        firsts = [run[0] for run in r.runs if run]
        table.add_row(
            r.catalog, str(r.tables), str(len(times)), *stats, _seconds(firsts), _seconds(r.setup_s),
            _seconds(r.server_cpu_s), _seconds(r.other_cpu_s),
        )  # fmt: skip
    Console(width=None if sys.stdout.isatty() else 160).print(table)
    for r in results:
        if r.error:
            console.print(f"[red]{r.catalog}, {r.tables} table(s): {r.error}[/]")


def _int_list(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part.strip()]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tables", type=_int_list, default=[1, 10, 100], help="table counts, e.g. 1,10,100")
    p.add_argument("--catalogs", default=",".join(CATALOGS), help="comma-separated subset of sql,nessie")
    p.add_argument("--repeat", type=int, default=3, help="timed runs per catalog and table count")
    p.add_argument("--warmup", type=int, default=1, help="untimed runs per catalog and table count first")
    p.add_argument("--checkpoints", type=int, default=5, help="checkpoints per timed run")
    p.add_argument("--rows", type=int, default=5, help="records per table and checkpoint")
    p.add_argument("--nessie-uri", help="use this Nessie (API v2 URI) instead of starting one")
    p.add_argument("--target-cmd", default=target_executable(), help="target-iceberg-nessie executable")
    p.add_argument("--profile", type=Path, help="run the timed runs under cProfile, .prof files here")
    p.add_argument("--json", type=Path, help="also write the results to this JSON file")
    p.add_argument("--timeout", type=float, default=600, help="seconds before a run is killed")
    p.add_argument("--keep-lake", action="store_true", help="keep the work dirs under bench/out")
    args = p.parse_args(argv)
    args.catalogs = [name.strip() for name in args.catalogs.split(",") if name.strip()]
    if unknown := set(args.catalogs) - set(CATALOGS):
        p.error(f"unknown catalog(s) {sorted(unknown)}; choose from {', '.join(CATALOGS)}")
    if args.repeat < 1 or args.checkpoints < 1 or args.rows < 1 or args.warmup < 0 or not args.tables:
        p.error("--repeat, --checkpoints and --rows must be >= 1, --warmup >= 0, --tables not empty")
    args.cmd = [args.target_cmd]
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    OUT.mkdir(parents=True, exist_ok=True)
    if "nessie" in args.catalogs:
        with nessie_service(args.nessie_uri, OUT / "nessie-commit-bench.log") as service:
            console.print(f"Nessie at {service.uri} (pid {service.pid})")
            results = bench(args, service)
    else:
        results = bench(args, None)
    print_table(results)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        settings = {k: v for k, v in vars(args).items() if k not in {"json", "profile", "cmd"}}
        payload = {"settings": settings, "results": [{**asdict(r), "commits": r.commits} for r in results]}
        args.json.write_text(json.dumps(payload, indent=2, default=str))
        console.print(f"wrote {args.json}")
    return 0 if not any(r.error for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
