"""Microbatch backfills: `ingest run <job> --from DATE --to DATE --window 1d`.

The range is split into windows that run in order, each one a run of its own (committed on its own,
with its own run metadata). Each window reads its range through the extractor's start (and, where
the tap has one, end) setting, under a state id of its own, so the job's regular bookmark is neither
used nor moved. Progress is kept in `<state>/<tenant>/backfills/<job>/<from>--<to>.json`: a window is
recorded there once its run succeeded (exit 0 or 1), so a backfill stopped by a crash or a failed
window resumes at the first unfinished window when the same command runs again.

Taps without an end setting read from the window's start to now; later windows then re-read rows
the earlier ones loaded: use `write_mode: upsert` for backfills of such taps.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ingestion.jobs import JobSpec, PlatformPaths, RunnerConfig
from ingestion.runner import EXIT_PARTIAL, EXIT_SUCCESS, RunResult, run_job

_UNSAFE = re.compile(r"[^0-9A-Za-z]+")


def progress_file(paths: PlatformPaths, job: JobSpec, start: str, end: str) -> Path:
    name = f"{_UNSAFE.sub('', start)}--{_UNSAFE.sub('', end)}.json"
    return paths.tenant_dir("state", job.tenant) / "backfills" / job.name / name


def _read(file: Path) -> dict[str, Any]:
    try:
        loaded = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {"done": {}}
    return loaded if isinstance(loaded, dict) else {"done": {}}


def _write(file: Path, document: dict[str, Any]) -> None:
    file.parent.mkdir(parents=True, exist_ok=True)
    tmp = file.with_name(f".{file.name}.tmp")
    tmp.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    tmp.replace(file)


def run_backfill(
    job: JobSpec,
    paths: PlatformPaths,
    runner: RunnerConfig,
    windows: Sequence[tuple[str, str]],
    *,
    console: bool = False,
    checks: Sequence[Callable[[Any], None]] = (),
    run: Callable[..., RunResult] = run_job,
) -> list[RunResult]:
    """Run the windows not yet done, in order; stop at the first that fails (resume re-runs it)."""
    file = progress_file(paths, job, windows[0][0], windows[-1][1])
    progress = _read(file)
    done: dict[str, str] = progress.setdefault("done", {})
    results: list[RunResult] = []
    for start, end in windows:
        key = f"{start}/{end}"
        if key in done:
            continue
        suffix = _UNSAFE.sub("", start)
        result = run(
            job,
            paths,
            runner,
            console=console,
            window=(start, end),
            checks=checks,
            pipeline_id=f"{job.pipeline_id}.backfill-{suffix}",
        )
        results.append(result)
        if result.exit_code not in (EXIT_SUCCESS, EXIT_PARTIAL):
            break
        done[key] = result.run_id
        _write(file, progress)
    return results
