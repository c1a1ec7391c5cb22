"""`ingest serve`: the Dagster webserver and daemon for the platform's jobs (the image's default).

It prepares DAGSTER_HOME (default `<state>/dagster`): `dagster.yaml` from runner.yaml (per-tenant
concurrency, SQLite storage in DAGSTER_HOME, no telemetry) and `workspace.yaml` (the code location
`ingestion.orchestration.definitions`), then runs `dagster-webserver` and `dagster-daemon run` as
child processes with the platform's folders in their environment. It stops both when either stops or
on SIGTERM/SIGINT, and exits with the first one's code.

A `dagster.yaml` that `ingest serve` did not write (a deployment's own, with PostgreSQL storage, for
example) is left alone; `ingest serve --print-instance` prints the settings to merge into it.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Final

import yaml

from ingestion.errors import ConfigError
from ingestion.jobs import PlatformPaths, RunnerConfig
from ingestion.runner import PROJECT_ENV, project_dir

MARKER: Final = "# Written by `ingest serve` from configs/runner.yaml"
TENANT_TAG: Final = "ingest/tenant"  # as ingestion.orchestration.assets (not imported: no Dagster here)
CODE_LOCATION: Final = "ingestion"
DEFINITIONS_MODULE: Final = "ingestion.orchestration.definitions"
MAX_CONCURRENT_RUNS: Final = 10
_STOP_GRACE_SECONDS: Final = 20


def instance_settings(runner: RunnerConfig) -> dict[str, object]:
    """The Dagster instance settings the platform needs: runs of one tenant queue behind each other
    (the `ingest/tenant` run tag), and every tenant's concurrency pool (one per tenant, used by each
    of its jobs' steps, including materializations started from the asset graph) has the same limit,
    held at run level: a run waits in the queue, not in a worker."""
    limit = runner.concurrency_per_tenant
    return {
        "telemetry": {"enabled": False},
        "concurrency": {
            "runs": {
                "max_concurrent_runs": MAX_CONCURRENT_RUNS,
                "tag_concurrency_limits": [
                    {"key": TENANT_TAG, "value": {"applyLimitPerUniqueValue": True}, "limit": limit}
                ],
            },
            "pools": {"default_limit": limit, "granularity": "run"},
        },
        "run_monitoring": {"enabled": True, "start_timeout_seconds": 180, "max_resume_run_attempts": 0},
    }


def instance_yaml(runner: RunnerConfig) -> str:
    body = yaml.safe_dump(instance_settings(runner), sort_keys=False)
    return f"{MARKER}; edits are replaced at the next start.\n{body}"


def workspace_yaml(working_directory: Path) -> str:
    return yaml.safe_dump(
        {
            "load_from": [
                {
                    "python_module": {
                        "module_name": DEFINITIONS_MODULE,
                        "location_name": CODE_LOCATION,
                        "working_directory": str(working_directory),
                    }
                }
            ]
        },
        sort_keys=False,
    )


def dagster_home(paths: PlatformPaths, environ: Mapping[str, str]) -> Path:
    given = environ.get("DAGSTER_HOME")
    return Path(given).expanduser().resolve() if given else paths.state / "dagster"


def prepare(runner: RunnerConfig, home: Path, project: Path) -> list[str]:
    """Write dagster.yaml (unless a deployment's own is there) and workspace.yaml; what was done."""
    home.mkdir(parents=True, exist_ok=True)
    done = []
    instance = home / "dagster.yaml"
    if not instance.exists() or instance.read_text(encoding="utf-8").startswith(MARKER):
        instance.write_text(instance_yaml(runner), encoding="utf-8")
        done.append(f"wrote {instance}")
    else:
        done.append(
            f"kept {instance} (not written by ingest serve): per-tenant concurrency needs the settings "
            "of `ingest serve --print-instance` in it"
        )
    workspace = home / "workspace.yaml"
    workspace.write_text(workspace_yaml(project), encoding="utf-8")
    done.append(f"wrote {workspace}")
    return done


def child_environment(
    paths: PlatformPaths, home: Path, project: Path, environ: Mapping[str, str]
) -> dict[str, str]:
    """The children load the definitions from the same folders as this command was given."""
    return {
        **environ,
        "DAGSTER_HOME": str(home),
        "INGEST_CONFIGS_DIR": str(paths.configs),
        "INGEST_SPECS_DIR": str(paths.specs),
        "INGEST_SECRETS_DIR": str(paths.secrets),
        "INGEST_STATE_DIR": str(paths.state),
        "INGEST_LOGS_DIR": str(paths.logs),
        PROJECT_ENV: str(project),
        "MELTANO_CLI_DISABLE_VERSION_CHECK": "true",
    }


def _program(name: str) -> str:
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.exists() else shutil.which(name)
    if found is None:
        msg = f"{name} not found: install the platform extra (`pip install 'ingestion[platform]'`)"
        raise ConfigError(msg)
    return found


@dataclass
class Server:
    """The webserver and the daemon; stops both when one stops."""

    commands: Sequence[Sequence[str]]
    env: Mapping[str, str]
    processes: list[subprocess.Popen[bytes]] | None = None
    stopping: bool = False

    def run(self) -> int:
        self.processes = [
            subprocess.Popen(list(command), env=dict(self.env))  # noqa: S603 - our own programs
            for command in self.commands
        ]
        previous = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            while True:
                for process in self.processes:
                    code = process.poll()
                    if code is not None:
                        self.stop()
                        return 0 if self.stopping else code or 1
                time.sleep(0.5)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            self.stop()

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.stopping = True
        self.stop()

    def stop(self) -> None:
        for process in self.processes or []:
            if process.poll() is None:
                process.terminate()
        deadline = time.monotonic() + _STOP_GRACE_SECONDS
        for process in self.processes or []:
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def serve(
    paths: PlatformPaths,
    runner: RunnerConfig,
    *,
    host: str,
    port: int,
    environ: Mapping[str, str] | None = None,
) -> int:
    env = dict(os.environ if environ is None else environ)
    if runner.mode != "orchestrated":
        msg = (
            f"{paths.runner_file} sets `mode: {runner.mode}`: run one job with `ingest run <job>`, "
            "or set `mode: orchestrated` to serve the orchestrator"
        )
        raise ConfigError(msg)
    home = dagster_home(paths, env)
    project = project_dir(env)
    for line in prepare(runner, home, project):
        print(line, file=sys.stderr)
    workspace = str(home / "workspace.yaml")
    server = Server(
        commands=[
            [_program("dagster-webserver"), "-h", host, "-p", str(port), "-w", workspace],
            [_program("dagster-daemon"), "run", "-w", workspace],
        ],
        env=child_environment(paths, home, project, env),
    )
    print(f"Dagster UI: http://{host}:{port} (DAGSTER_HOME={home})", file=sys.stderr)
    return server.run()
