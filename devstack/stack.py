"""The native dev stack: the compose stack's services as local processes, without Docker.

    python -m devstack.stack up      # start in the background, wait until ready, print endpoints + env
    python -m devstack.stack env     # the `export ...` lines again (eval "$(... env)")
    python -m devstack.stack status
    python -m devstack.stack down

`up` starts a small supervisor (`run`, in its own session) that starts each service with its devstack
module (S3: versitygw, Nessie on RocksDB, PostgreSQL, MariaDB), loads the compose stack's sample SQL
into a new database server, writes `.devstack/stack.json` once everything is ready, and stops the
services when it gets SIGTERM. Everything lives under `.devstack/`: the supervisor's pid file and log,
one pid file and one folder (data + log) per service, and `credentials.json` (generated once, 0600,
because the data outlives a restart and so must the passwords).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from devstack.nessie import NessieServer, ServiceError

REPO_ROOT: Final = Path(__file__).resolve().parent.parent
DEFAULT_ROOT: Final = REPO_ROOT / ".devstack"
SAMPLE_SQL: Final = REPO_ROOT / "compose" / "initdb"
SERVICES: Final = ("s3", "nessie", "postgres", "mariadb")
# Fixed ports, so the printed env stays valid across restarts (--port-offset moves them all).
PORTS: Final = {"s3": 19000, "nessie": 19120, "nessie-management": 19121, "postgres": 15432, "mariadb": 13306}
WAREHOUSE_BUCKET: Final = "warehouse"
SAMPLE_DATABASE: Final = "shop"
READY_TIMEOUT: Final = 1500.0  # the first `up` builds versitygw and fetches the Nessie jar


@dataclass
class Running:
    """A started service: how to stop it, what to print, and the env a client needs."""

    name: str
    stop: Callable[[], None]
    endpoint: str
    env: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class StackPaths:
    root: Path

    @property
    def pid_file(self) -> Path:
        return self.root / "stack.pid"

    @property
    def log(self) -> Path:
        return self.root / "stack.log"

    @property
    def ready_file(self) -> Path:
        return self.root / "stack.json"

    @property
    def credentials(self) -> Path:
        return self.root / "credentials.json"

    def service_pid(self, name: str) -> Path:
        return self.root / f"{name}.pid"


def load_credentials(paths: StackPaths) -> dict[str, str]:
    """The stack's generated passwords; made once, then reused (the data folders keep them)."""
    if paths.credentials.is_file():
        stored: dict[str, str] = json.loads(paths.credentials.read_text(encoding="utf-8"))
        return stored
    credentials = {
        "s3_access_key": f"ingest-{secrets.token_hex(4)}",
        "s3_secret_key": secrets.token_urlsafe(24),
        "postgres_password": secrets.token_urlsafe(16),
        "mariadb_password": secrets.token_urlsafe(16),
    }
    paths.root.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(paths.credentials, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as out:
        json.dump(credentials, out, indent=2)
    return credentials


def _children(parent: int) -> set[int]:
    """Process ids whose parent is `parent` (Linux /proc)."""
    found: set[int] = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # Fields after the command name, which is in parentheses and may hold spaces.
        if int(stat.rsplit(")", 1)[1].split()[1]) == parent:
            found.add(int(entry.name))
    return found


def _cmdline(pid: int) -> str:
    try:
        return (Path("/proc") / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        return ""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _run_sql(command: list[str], sql_file: Path, env: dict[str, str]) -> None:
    with sql_file.open("rb") as sql:
        done = subprocess.run(command, stdin=sql, capture_output=True, env=env, check=False)  # noqa: S603
    if done.returncode != 0:
        tail = (done.stdout + done.stderr).decode(errors="replace").strip().splitlines()[-5:]
        msg = f"loading {sql_file} failed: {' | '.join(tail)}"
        raise ServiceError(msg)


def start_s3(root: Path, credentials: dict[str, str], ports: dict[str, int]) -> Running:
    from devstack.s3 import S3Server  # noqa: PLC0415 - each service module loads only when used

    server = S3Server(
        root / "s3",
        access_key=credentials["s3_access_key"],
        secret_key=credentials["s3_secret_key"],
        port=ports["s3"],
    ).start()
    server.create_bucket(WAREHOUSE_BUCKET)
    env = {
        "TARGET_ICEBERG_NESSIE_WAREHOUSE": f"s3://{WAREHOUSE_BUCKET}/lake",
        "TARGET_ICEBERG_NESSIE_S3_ENDPOINT": server.endpoint,
        "TARGET_ICEBERG_NESSIE_S3_REGION": server.region,
        "TARGET_ICEBERG_NESSIE_S3_ACCESS_KEY_ID": server.access_key,
        "TARGET_ICEBERG_NESSIE_S3_SECRET_ACCESS_KEY": server.secret_key,
        "TARGET_ICEBERG_NESSIE_S3_PATH_STYLE": "true",
    }
    return Running("s3", server.stop, f"{server.endpoint} (bucket {WAREHOUSE_BUCKET})", env)


def start_nessie(root: Path, _credentials: dict[str, str], ports: dict[str, int]) -> Running:
    server = NessieServer(
        log_path=root / "nessie" / "nessie.log",
        store="ROCKSDB",
        data_dir=root / "nessie" / "rocks",
        port=ports["nessie"],
        management_port=ports["nessie-management"],
    ).start()
    env = {"TARGET_ICEBERG_NESSIE_CATALOG_TYPE": "nessie", "TARGET_ICEBERG_NESSIE_NESSIE_URI": server.uri}
    return Running("nessie", server.stop, server.uri, env)


def start_postgres(root: Path, credentials: dict[str, str], ports: dict[str, int]) -> Running:
    from devstack.postgres import PG_BIN, PostgresServer  # noqa: PLC0415

    base = root / "postgres"
    fresh = not (base / "data" / "PG_VERSION").is_file()
    server = PostgresServer(base, port=ports["postgres"], password=credentials["postgres_password"]).start()
    if fresh:
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PGPASSWORD": server.password}
        psql = [str(PG_BIN / "psql"), "-q", "-v", "ON_ERROR_STOP=1", "-h", server.host]
        psql += ["-p", str(server.port), "-U", server.user, "-d", "postgres"]
        for sql_file in sorted((SAMPLE_SQL / "postgres").glob("*.sql")):
            _run_sql(psql, sql_file, env)
    env = {
        "TAP_POSTGRES_HOST": server.host,
        "TAP_POSTGRES_PORT": str(server.port),
        "TAP_POSTGRES_USER": server.user,
        "TAP_POSTGRES_PASSWORD": server.password,
        "TAP_POSTGRES_DATABASE": SAMPLE_DATABASE,
    }
    return Running(
        "postgres", server.stop, f"postgresql://{server.user}@{server.host}:{server.port}/shop", env
    )


def start_mariadb(root: Path, credentials: dict[str, str], ports: dict[str, int]) -> Running:
    from devstack.mariadb import MariaDBServer  # noqa: PLC0415

    base = root / "mariadb"
    fresh = not (base / "data" / "mysql").is_dir()
    server = MariaDBServer(base, port=ports["mariadb"], password=credentials["mariadb_password"]).start()
    if fresh:
        client = shutil.which("mariadb") or shutil.which("mysql")
        if client is None:
            msg = "the mariadb client is needed to load the sample data: apt-get install mariadb-client"
            raise ServiceError(msg)
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "MYSQL_PWD": server.password}
        command = [client, "--no-defaults", "-h", server.host, "-P", str(server.port), "-u", server.user]
        for sql_file in sorted((SAMPLE_SQL / "mysql").glob("*.sql")):
            _run_sql(command, sql_file, env)
    env = {
        "TAP_MYSQL_HOST": server.host,
        "TAP_MYSQL_PORT": str(server.port),
        "TAP_MYSQL_USER": server.user,
        "TAP_MYSQL_PASSWORD": server.password,
        "TAP_MYSQL_DATABASE": SAMPLE_DATABASE,
    }
    return Running("mariadb", server.stop, f"mysql://{server.user}@{server.host}:{server.port}/shop", env)


STARTERS: Final[dict[str, Callable[[Path, dict[str, str], dict[str, int]], Running]]] = {
    "s3": start_s3,
    "nessie": start_nessie,
    "postgres": start_postgres,
    "mariadb": start_mariadb,
}


def supervise(paths: StackPaths, names: list[str], port_offset: int = 0) -> int:
    """`run`: start the services, write the ready file, and stop them all on SIGTERM/SIGINT."""
    paths.root.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        # The databases run as their own system users, which must be able to pass through.
        paths.root.chmod(paths.root.stat().st_mode | 0o011)
    paths.pid_file.write_text(f"{os.getpid()}\n", encoding="utf-8")
    stopping: list[int] = []
    signal.signal(signal.SIGTERM, lambda signum, _frame: stopping.append(signum))
    signal.signal(signal.SIGINT, lambda signum, _frame: stopping.append(signum))
    credentials = load_credentials(paths)
    ports = {name: port + port_offset for name, port in PORTS.items()}
    running: list[Running] = []
    status = 0
    try:
        for name in names:
            before = _children(os.getpid())
            print(f"starting {name}", flush=True)
            service = STARTERS[name](paths.root, credentials, ports)
            running.append(service)
            for pid in _children(os.getpid()) - before:
                paths.service_pid(name).write_text(f"{pid}\n{_cmdline(pid)}\n", encoding="utf-8")
            if stopping:
                break
        if not stopping:
            ready = {s.name: {"endpoint": s.endpoint, "env": s.env} for s in running}
            staged = paths.ready_file.with_suffix(".tmp")
            staged.write_text(json.dumps(ready, indent=2), encoding="utf-8")
            staged.chmod(0o600)  # it holds the passwords, as credentials.json does
            staged.replace(paths.ready_file)
            print(f"ready: {', '.join(names)}", flush=True)
        while not stopping:
            signal.pause()
    except ServiceError as error:
        print(f"error: {error}", flush=True)
        status = 1
    finally:
        paths.ready_file.unlink(missing_ok=True)
        for service in reversed(running):
            print(f"stopping {service.name}", flush=True)
            service.stop()
            paths.service_pid(service.name).unlink(missing_ok=True)
        paths.pid_file.unlink(missing_ok=True)
    return status


def _supervisor_pid(paths: StackPaths) -> int | None:
    try:
        pid = int(paths.pid_file.read_text(encoding="utf-8").split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return pid if _alive(pid) else None


def print_ready(ready: dict[str, Any]) -> None:
    for name, service in ready.items():
        print(f"{name:<9} {service['endpoint']}")
    print('\n# the env to use (eval "$(python -m devstack.stack env)"):')
    print_env(ready)


def print_env(ready: dict[str, Any]) -> None:
    for service in ready.values():
        for key, value in service["env"].items():
            print(f"export {key}={shlex.quote(value)}")


def up(paths: StackPaths, names: list[str], port_offset: int = 0) -> int:
    if _supervisor_pid(paths) is not None and paths.ready_file.is_file():
        print(f"the dev stack is already running (pid file {paths.pid_file}):")
        print_ready(json.loads(paths.ready_file.read_text(encoding="utf-8")))
        return 0
    paths.root.mkdir(parents=True, exist_ok=True)
    paths.ready_file.unlink(missing_ok=True)
    command = [sys.executable, "-m", "devstack.stack", "--root", str(paths.root)]
    command += ["--port-offset", str(port_offset), "run", *names]
    with paths.log.open("ab") as log:
        supervisor = subprocess.Popen(  # noqa: S603 - this module, with our own arguments
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            cwd=REPO_ROOT,
        )
    print(f"starting {', '.join(names)} (log: {paths.log}; the first start builds and fetches servers)")
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if paths.ready_file.is_file():
            print_ready(json.loads(paths.ready_file.read_text(encoding="utf-8")))
            return 0
        if supervisor.poll() is not None:
            tail = paths.log.read_text(encoding="utf-8", errors="replace").splitlines()[-8:]
            print("the dev stack did not start:\n  " + "\n  ".join(tail), file=sys.stderr)
            print("start a part of it with e.g. `python -m devstack.stack up s3 nessie`", file=sys.stderr)
            return 1
        time.sleep(0.5)
    supervisor.terminate()
    print(f"the dev stack was not ready within {READY_TIMEOUT:.0f}s; see {paths.log}", file=sys.stderr)
    return 1


def down(paths: StackPaths) -> int:
    pid = _supervisor_pid(paths)
    if pid is not None:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 90
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.3)
    # A supervisor that was killed leaves its services running: stop those its pid files name,
    # if the process under that id is still the one started (ids are reused).
    for name in SERVICES:
        pid_file = paths.service_pid(name)
        if not pid_file.is_file():
            continue
        recorded = pid_file.read_text(encoding="utf-8").splitlines()
        service_pid = int(recorded[0])
        if len(recorded) > 1 and _alive(service_pid) and _cmdline(service_pid) == recorded[1]:
            print(f"stopping {name} (pid {service_pid}), left by a supervisor that was killed")
            os.kill(service_pid, signal.SIGTERM)
        pid_file.unlink()
    paths.ready_file.unlink(missing_ok=True)
    paths.pid_file.unlink(missing_ok=True)
    print(f"the dev stack is stopped; its data stays in {paths.root} (delete it to start over)")
    return 0


def _show(paths: StackPaths, printer: Callable[[dict[str, Any]], None]) -> int:
    if _supervisor_pid(paths) is None or not paths.ready_file.is_file():
        print("the dev stack is not running: make devstack-up", file=sys.stderr)
        return 1
    printer(json.loads(paths.ready_file.read_text(encoding="utf-8")))
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT, help="data, logs and pid files")
    parser.add_argument("--port-offset", type=int, default=0, help="added to every port (a second stack)")
    commands = parser.add_subparsers(dest="command", required=True)
    for name in ("up", "run"):
        command = commands.add_parser(name)
        command.add_argument("services", nargs="*", help=f"some of {', '.join(SERVICES)} (default: all)")
    for name in ("down", "status", "env"):
        commands.add_parser(name)
    args = parser.parse_args()
    paths = StackPaths(args.root.resolve())
    chosen = getattr(args, "services", None) or list(SERVICES)
    if unknown := sorted(set(chosen) - set(SERVICES)):
        parser.error(f"unknown service {', '.join(unknown)}; choose from {', '.join(SERVICES)}")
    names = [name for name in SERVICES if name in chosen]
    actions: dict[str, Callable[[], int]] = {
        "up": lambda: up(paths, names, args.port_offset),
        "run": lambda: supervise(paths, names, args.port_offset),
        "down": lambda: down(paths),
        "status": lambda: _show(paths, print_ready),
        "env": lambda: _show(paths, print_env),
    }
    sys.exit(actions[args.command]())


if __name__ == "__main__":
    main()
