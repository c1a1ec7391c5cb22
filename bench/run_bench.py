"""Run the ingestion benchmarks on one generated Singer stream and print a table.

Pipelines (``--only``, comma-separated):

* ``sdk``: ``minimal_sdk_target.py``, the singer-sdk floor (no-op sink, validation on);
* ``sdk-novalidate``: the same with ``validate_records: false``;
* ``pyarrow``: ``pyarrow_reference.py``, Arrow JSON reader + pyiceberg ``append``;
* ``target``: ``target-iceberg-nessie`` with a SQLite catalog, input on stdin.

Each pipeline runs as a child process; wall time, CPU time and the child's own peak
RSS (from ``os.wait4`` on its pid) are measured. Example::

    python bench/run_bench.py --records 1000000 --only sdk,pyarrow --json bench/out/results.json
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
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from measures import final_state, machine_busy_s, rows_in_lake, scan_input
from rich.console import Console
from rich.table import Table

BENCH = Path(__file__).resolve().parent
OUT = BENCH / "out"
PIPELINES = ("sdk", "sdk-novalidate", "pyarrow", "target")
DEFAULT_ONLY = "sdk,pyarrow,target"
COLUMNS = ("pipeline", "ok", "wall s", "rec/s", "MB/s", "CPU s", "peak RSS MB", "rows", "state",
           "other CPU s")  # fmt: skip
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
    final_state_ok: bool | None = None
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
    config = {
        "warehouse": str(work / "warehouse"),
        "catalog_uri": f"sqlite:///{work / 'catalog.db'}",
        "state_dir": str(work / "state"),
        "tenant": "bench",
        "namespace": "raw",
    }
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
    busy_before = machine_busy_s()
    try:
        code, timed_out, usage = measure(cmd, infile if on_stdin else None, work, args.timeout)
    except OSError as exc:  # e.g. the target's executable does not exist
        return Result(name, run, False, None, 0, 0, 0, 0, 0, 0, command=cmd, error=str(exc))
    busy_after = machine_busy_s()
    wall, cpu = usage["wall"], usage["user"] + usage["sys"]
    size_mb = infile.stat().st_size / 1e6
    result = Result(
        name, run, code == 0, code, wall, usage["user"], usage["sys"], usage["maxrss_kb"] / 1024,
        records / wall, size_mb / wall, command=cmd,
    )  # fmt: skip
    if busy_before is not None and busy_after is not None:
        result.other_cpu_s = max(0.0, busy_after - busy_before - cpu)
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
    if name in {"pyarrow", "target"} and result.ok:
        try:
            result.rows_in_lake = rows_in_lake(work / "catalog.db")
        except Exception as exc:  # noqa: BLE001 - report, never crash the whole benchmark
            result.error = f"could not count rows in the lake: {exc}"
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
        "versions": versions,
    }  # fmt: skip


def print_table(results: list[Result]) -> None:
    table = Table(title="Singer -> Iceberg benchmark")
    for column in COLUMNS:
        table.add_column(column, justify="left" if column in {"pipeline", "ok"} else "right")
    for r in results:
        ok = "[green]yes[/]" if r.ok else "[red]FAILED[/]"
        state = "-" if r.final_state_ok is None else ("ok" if r.final_state_ok else "[red]wrong[/]")
        rows = "-" if r.rows_in_lake is None else f"{r.rows_in_lake:,}"
        name = f"{r.pipeline}#{r.run}" if r.run else r.pipeline
        speed = (f"{r.wall_s:.1f}", f"{r.records_per_s:,.0f}", f"{r.input_mb_per_s:.1f}")
        if not r.ok:  # a failed run's speed means nothing
            speed = (f"{r.wall_s:.1f}" if r.returncode is not None else "-", "-", "-")
        resources = (f"{r.cpu_user_s + r.cpu_sys_s:.1f}", f"{r.peak_rss_mb:,.0f}")
        noise = "-" if r.other_cpu_s is None else f"{r.other_cpu_s:.1f}"
        if r.other_cpu_s is not None and r.other_cpu_s > NOISY_SHARE * r.wall_s:
            noise = f"[yellow]{noise} (noisy)[/]"
        table.add_row(name, ok, *speed, *resources, rows, state, noise)
    Console(width=None if sys.stdout.isatty() else 140).print(table)
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
    warm = warmup_input(infile)
    for name in args.pipelines:  # untimed: compiles and caches bytecode, touches every code path once
        run_one(name, warm, args, records=0, state=None)
    results: list[Result] = []
    for i in range(args.repeat):
        for name in args.pipelines:
            console.print(f"running {name} (run {i + 1}/{args.repeat}) ...")
            run = i + 1 if args.repeat > 1 else 0
            results.append(run_one(name, infile, args, run=run, records=records, state=expected_state))
    print_table(results)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"meta": meta, "results": [asdict(r) for r in results]}, indent=2))
        console.print(f"wrote {args.json}")
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
