"""Run the ingestion benchmarks on one generated Singer stream and print a table.

Pipelines (``--only``, comma-separated):

* ``sdk``: ``minimal_sdk_target.py``, the singer-sdk floor (no-op sink, validation on);
* ``sdk-novalidate``: the same with ``validate_records: false``;
* ``pyarrow``: ``pyarrow_reference.py``, Arrow JSON reader + pyiceberg ``append``;
* ``target``: ``target-iceberg-nessie`` with the embedded (SQLite) catalog, input on stdin;
* ``target-nessie``: the same target committing to a new branch of a Nessie server (started for the
  benchmark unless ``--nessie-uri`` names one);
* ``target-contract``: ``target`` with the ten checks of ``contracts/customers.yaml`` on the stream
  ``customers`` (the data passes them all: this measures checking, not rejecting).

Each pipeline runs as a child process; wall time, CPU time and the child's own peak
RSS (from ``os.wait4`` on its pid) are measured. Example::

    python bench/run_bench.py --records 1000000 --only sdk,pyarrow --json bench/out/results.json
    python bench/run_bench.py --streams 3 --only target,target-nessie --checkpoint-interval 0 --repeat 3
    python bench/run_bench.py --only target,target-contract --repeat 3
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from lakes import committed, nessie_service, new_run_id, process_cpu_s, process_rss_mb, target_config
from measures import final_state, machine_busy_s, rows_in_lake, scan_input
from rich.console import Console
from rich.table import Table

BENCH = Path(__file__).resolve().parent
OUT = BENCH / "out"
PIPELINES = ("sdk", "sdk-novalidate", "pyarrow", "target", "target-nessie", "target-contract",
             "target-mdkv-string", "target-mdkv-files")  # fmt: skip
TARGETS = {"target": "sql", "target-nessie": "nessie", "target-contract": "sql",
           "target-mdkv-string": "sql", "target-mdkv-files": "sql"}  # pipeline -> catalog  # fmt: skip
# target-mdkv-*: the loader's Markdown-KV patterns on every stream (docs/target.md)
MARKDOWN_KV = {
    "target-mdkv-string": {"default": {"string": True}},
    "target-mdkv-files": {"default": {"raw_file": {"per": "batch"}}},
}
CONTRACT = BENCH / "contracts" / "customers.yaml"  # target-contract: ten checks on `customers`
DEFAULT_ONLY = "sdk,pyarrow,target"
COLUMNS = ("pipeline", "ok", "wall s", "rec/s", "MB/s", "CPU s", "peak RSS MB", "rows", "commits",
           "commits/s", "state", "server CPU s", "other CPU s")  # fmt: skip
NOISY_SHARE = 0.1  # flag a run if other processes used more than 10% of a CPU during it
console = Console(stderr=True, soft_wrap=True)


@dataclass
class Result:
    pipeline: str
    run: int
    ok: bool
    returncode: int | None
    wall_s: float
    cpu_user_s: float
    cpu_sys_s: float
    peak_rss_mb: float
    records_per_s: float
    input_mb_per_s: float
    rows_in_lake: int | None = None
    commits: int | None = None  # checkpoints the run committed (read from the catalog's commit log)
    commits_per_s: float | None = None
    final_state_ok: bool | None = None
    server_cpu_s: float | None = None  # CPU the Nessie server used meanwhile (not in the child's)
    other_cpu_s: float | None = None  # CPU used by other processes meanwhile: noise
    command: list[str] = field(default_factory=list)
    error: str | None = None


def target_executable() -> str:
    beside = Path(sys.executable).parent / "target-iceberg-nessie"
    return str(beside) if beside.exists() else (shutil.which("target-iceberg-nessie") or str(beside))


def command_for(name: str, infile: Path, work: Path, args: argparse.Namespace) -> tuple[list[str], bool]:
    """The command line of a pipeline and whether it reads the input on stdin."""
    python = sys.executable
    if name in {"sdk", "sdk-novalidate"}:
        cmd = [python, str(BENCH / "minimal_sdk_target.py"), "--input", str(infile)]
        if name == "sdk-novalidate":
            (work / "config.json").write_text(json.dumps({"validate_records": False}))
            cmd += ["--config", str(work / "config.json")]
        return cmd, False
    if name == "pyarrow":
        return [
            *(python, str(BENCH / "pyarrow_reference.py"), "--input", str(infile)),
            *("--warehouse", str(work / "warehouse"), "--catalog-uri", f"sqlite:///{work / 'catalog.db'}"),
            *("--batch-rows", str(args.batch_rows)),
        ], False
    config = target_config(
        TARGETS[name],
        work,
        run_id=new_run_id(work.name),
        nessie_uri=args.nessie.uri if args.nessie else None,
        checkpoint_interval=args.checkpoint_interval,
    )
    if name == "target-contract":
        config["contracts"] = [str(CONTRACT)]
    if name in MARKDOWN_KV:
        config["markdown_kv"] = MARKDOWN_KV[name]
    (work / "config.json").write_text(json.dumps(config, indent=2))
    return [args.target_cmd, "--config", str(work / "config.json")], True


def warmup_input(infile: Path, lines: int = 2_000) -> Path:
    """The first ``lines`` lines of the input, for an untimed warm-up run of each pipeline."""
    path = OUT / "warmup.singer"
    with infile.open("rb") as src, path.open("wb") as dst:
        for _, line in zip(range(lines), src, strict=False):
            dst.write(line)
    return path


def child_env() -> dict[str, str]:
    # Cache bytecode under bench/out so every pipeline gets the same (warm) import cost.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = str(OUT / ".pycache")
    return env


def measure(
    cmd: list[str], stdin_path: Path | None, work: Path, timeout: float
) -> tuple[int, bool, dict[str, float]]:
    """Run ``cmd`` under ``rusage_wrapper.py``; return (exit code, timed out, its wall time and rusage)."""
    if shutil.which(cmd[0]) is None:
        raise FileNotFoundError(f"executable not found: {cmd[0]}")
    usage_file = work / "rusage.json"
    with (
        stdin_path.open("rb") if stdin_path else open(os.devnull, "rb") as stdin,
        (work / "stdout").open("wb") as stdout,
        (work / "stderr").open("wb") as stderr,
    ):
        started = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "-I", "-S", str(BENCH / "rusage_wrapper.py"), str(usage_file), *cmd],
            stdin=stdin, stdout=stdout, stderr=stderr, env=child_env(), start_new_session=True,
        )  # fmt: skip
        timed_out = False
        try:
            code = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            os.killpg(proc.pid, signal.SIGKILL)  # the wrapper and the pipeline share a process group
            code = proc.wait()
        except BaseException:  # e.g. Ctrl-C: the children have their own session, so stop them here
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise
        wall = time.perf_counter() - started
    usage = {"wall": wall, "user": 0.0, "sys": 0.0, "maxrss_kb": 0.0}
    if usage_file.exists():
        usage.update(json.loads(usage_file.read_text()))
    return code, timed_out, usage


def run_one(
    name: str, infile: Path, args: argparse.Namespace, *, run: int = 0, records: int, state: Any
) -> Result:
    """Run pipeline ``name`` once on ``infile``; ``state`` is the last STATE value it should emit."""
    work = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=OUT))
    try:
        return _run_in(work, name, infile, args, run=run, records=records, state=state)
    finally:
        if not args.keep_lake:
            shutil.rmtree(work, ignore_errors=True)


def _run_in(
    work: Path, name: str, infile: Path, args: argparse.Namespace, *, run: int, records: int, state: Any
) -> Result:
    cmd, on_stdin = command_for(name, infile, work, args)
    server_pid = args.nessie.pid if args.nessie and name == "target-nessie" else None
    busy_before, server_before = machine_busy_s(), process_cpu_s(server_pid)
    try:
        code, timed_out, usage = measure(cmd, infile if on_stdin else None, work, args.timeout)
    except OSError as exc:  # e.g. the target's executable does not exist
        return Result(name, run, False, None, 0, 0, 0, 0, 0, 0, command=cmd, error=str(exc))
    busy_after, server_after = machine_busy_s(), process_cpu_s(server_pid)
    wall, cpu = usage["wall"], usage["user"] + usage["sys"]
    size_mb = infile.stat().st_size / 1e6
    result = Result(
        name, run, code == 0, code, wall, usage["user"], usage["sys"], usage["maxrss_kb"] / 1024,
        records / wall, size_mb / wall, command=cmd,
    )  # fmt: skip
    if server_before is not None and server_after is not None:
        result.server_cpu_s = server_after - server_before
    if busy_before is not None and busy_after is not None:
        result.other_cpu_s = max(0.0, busy_after - busy_before - cpu - (result.server_cpu_s or 0.0))
    if code != 0:
        tail = (work / "stderr").read_text(errors="replace").strip().splitlines()[-15:]
        reason = f"killed after the {args.timeout:.0f}s timeout" if timed_out else f"exit {code}"
        result.error = reason + ("\n" + "\n".join(tail) if tail else "")
    lines = (work / "stdout").read_bytes().strip().splitlines()
    if result.ok and state is not None:  # the last state a target emits must be the input's last
        try:
            result.final_state_ok = bool(lines) and json.loads(lines[-1]) == state
        except ValueError:
            result.final_state_ok = False
    if name in {"pyarrow", *TARGETS} and result.ok:
        try:
            if name in TARGETS:
                config = json.loads((work / "config.json").read_text())
                result.rows_in_lake, result.commits = committed(config)
                result.commits_per_s = result.commits / wall
            else:
                result.rows_in_lake = rows_in_lake(work / "catalog.db")
        except Exception as exc:  # noqa: BLE001 - report, never crash the whole benchmark
            result.error = f"could not read what the run committed: {exc}"
    return result


def ensure_input(args: argparse.Namespace) -> Path:
    path = OUT / f"customers_{args.records}r_{args.streams}s_{args.state_every}e_seed{args.seed}.singer"
    if args.input is not None:
        return Path(args.input)
    if args.keep and path.exists():
        console.print(f"reusing {path}")
        return path
    cmd = [sys.executable, str(BENCH / "generate_stream.py"), "--records", str(args.records)]
    cmd += ["--streams", str(args.streams), "--state-every", str(args.state_every), "--seed", str(args.seed)]
    subprocess.run([*cmd, "--output", str(path)], check=True)
    return path


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def metadata(args: argparse.Namespace, infile: Path, digest: str, records: int) -> dict[str, Any]:
    versions = {dist: _version(dist) for dist in ("singer-sdk", "pyarrow", "pyiceberg", "orjson", "msgspec")}
    return {
        "input": str(infile), "input_bytes": infile.stat().st_size, "input_sha256": digest,
        "records": records, "generator": None if args.input else {
            "streams": args.streams, "state_every": args.state_every, "seed": args.seed,
        },
        "python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count(),
        "versions": versions, "checkpoint_interval_seconds": args.checkpoint_interval,
    }  # fmt: skip


def print_table(results: list[Result]) -> None:
    table = Table(title="Singer -> Iceberg benchmark")
    for column in COLUMNS:
        table.add_column(column, justify="left" if column in {"pipeline", "ok"} else "right")
    for r in results:
        ok = "[green]yes[/]" if r.ok else "[red]FAILED[/]"
        state = "-" if r.final_state_ok is None else ("ok" if r.final_state_ok else "[red]wrong[/]")
        rows = "-" if r.rows_in_lake is None else f"{r.rows_in_lake:,}"
        commits = ("-", "-") if r.commits is None else (f"{r.commits:,}", f"{r.commits_per_s or 0:.2f}")
        server = "-" if r.server_cpu_s is None else f"{r.server_cpu_s:.1f}"
        name = f"{r.pipeline}#{r.run}" if r.run else r.pipeline
        speed = (f"{r.wall_s:.1f}", f"{r.records_per_s:,.0f}", f"{r.input_mb_per_s:.1f}")
        if not r.ok:  # a failed run's speed means nothing
            speed = (f"{r.wall_s:.1f}" if r.returncode is not None else "-", "-", "-")
        resources = (f"{r.cpu_user_s + r.cpu_sys_s:.1f}", f"{r.peak_rss_mb:,.0f}")
        noise = "-" if r.other_cpu_s is None else f"{r.other_cpu_s:.1f}"
        if r.other_cpu_s is not None and r.other_cpu_s > NOISY_SHARE * r.wall_s:
            noise = f"[yellow]{noise} (noisy)[/]"
        table.add_row(name, ok, *speed, *resources, rows, *commits, state, server, noise)
    Console(width=None if sys.stdout.isatty() else 170).print(table)
    for r in results:
        if r.error:
            console.print(f"[red]{r.pipeline}: {r.error}[/]\n  command: {' '.join(r.command)}")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--records", type=int, default=1_000_000, help="total records (all streams)")
    p.add_argument("--streams", type=int, default=1)
    p.add_argument("--state-every", type=int, default=10_000)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--keep", action="store_true", help="reuse the generated input if it exists")
    p.add_argument("--input", help="benchmark this Singer file instead of generating one")
    p.add_argument("--only", default=DEFAULT_ONLY, help=f"comma-separated subset of {','.join(PIPELINES)}")
    p.add_argument("--repeat", type=int, default=1, help="runs of each pipeline")
    p.add_argument("--json", type=Path, help="also write the results to this JSON file")
    p.add_argument("--timeout", type=float, default=3600, help="seconds before a pipeline is killed")
    p.add_argument("--batch-rows", type=int, default=100_000, help="pyarrow: records per Iceberg commit")
    p.add_argument("--target-cmd", default=target_executable(), help="target-iceberg-nessie executable")
    p.add_argument("--keep-lake", action="store_true", help="keep each run's work dir under bench/out")
    p.add_argument(
        "--checkpoint-interval",
        type=float,
        help="targets: checkpoint_interval_seconds (0: every STATE commits)",
    )
    p.add_argument("--nessie-uri", help="target-nessie: this Nessie (API v2 URI) instead of starting one")
    args = p.parse_args(argv)
    args.pipelines = [name.strip() for name in args.only.split(",") if name.strip()]
    if unknown := set(args.pipelines) - set(PIPELINES):
        p.error(f"unknown pipeline(s) {sorted(unknown)}; choose from {', '.join(PIPELINES)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    OUT.mkdir(parents=True, exist_ok=True)
    infile = ensure_input(args)
    digest, records = scan_input(infile)
    meta = metadata(args, infile, digest, records)
    expected_state = final_state(infile)
    console.print(f"input: {infile} ({meta['input_bytes'] / 1e6:.1f} MB, {records:,} records)")
    results: list[Result] = []
    with ExitStack() as stack:
        args.nessie = None
        if "target-nessie" in args.pipelines:
            args.nessie = stack.enter_context(nessie_service(args.nessie_uri, OUT / "nessie-run-bench.log"))
            console.print(f"Nessie at {args.nessie.uri} (pid {args.nessie.pid})")
        warm = warmup_input(infile)
        for name in args.pipelines:  # untimed: compiles and caches bytecode, touches every code path once
            run_one(name, warm, args, records=0, state=None)
        for i in range(args.repeat):
            for name in args.pipelines:
                console.print(f"running {name} (run {i + 1}/{args.repeat}) ...")
                run = i + 1 if args.repeat > 1 else 0
                results.append(run_one(name, infile, args, run=run, records=records, state=expected_state))
        if args.nessie is not None:  # the server's memory is not in any pipeline's peak RSS
            meta["nessie_server_rss_mb"] = process_rss_mb(args.nessie.pid)
    print_table(results)
    if meta.get("nessie_server_rss_mb") is not None:
        console.print(f"Nessie server RSS after the runs: {meta['nessie_server_rss_mb']:,.0f} MB")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"meta": meta, "results": [asdict(r) for r in results]}, indent=2))
        console.print(f"wrote {args.json}")
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
