"""A throwaway PostgreSQL 15 server on loopback, ready for logical (wal2json) replication.

`PostgresServer(base_dir).start()` runs initdb in `base_dir/data` and starts `postgres` on a free
127.0.0.1 port, its unix socket in `base_dir`, with wal_level=logical and room for replication slots
and WAL senders. The superuser `ingest` logs in with a password over TCP. initdb and postgres refuse
to run as root: as root they run as the Debian `postgres` user, which then owns `base_dir` (so pick a
folder it can reach, e.g. tempfile.mkdtemp() under /tmp). Debian packages: postgresql-15 and
postgresql-15-wal2json (`python -m devstack.install_services`).
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from devstack._server import (
    INSTALL_COMMAND,
    as_user,
    hand_over,
    run_checked,
    running_as_root,
    serve_until_interrupted,
    stop,
    system_user,
    wait_until,
)
from devstack.nessie import ServiceError, free_port

PG_VERSION: Final = 15
PG_BIN: Final = Path(f"/usr/lib/postgresql/{PG_VERSION}/bin")
PG_LIB: Final = Path(f"/usr/lib/postgresql/{PG_VERSION}/lib")
SYSTEM_USER: Final = "postgres"
INSTALL_HINT: Final = f"{INSTALL_COMMAND} (or apt-get install postgresql-15 postgresql-15-wal2json)"

# Settings for a throwaway server: logical decoding on, durability off (tests never survive a crash).
SERVER_SETTINGS: Final = {
    "wal_level": "logical",
    "max_replication_slots": "10",
    "max_wal_senders": "10",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "shared_buffers": "32MB",
    "timezone": "UTC",
    "log_timezone": "UTC",
}


def check_installed() -> None:
    missing = [str(p) for p in (PG_BIN / "initdb", PG_BIN / "postgres") if not p.is_file()]
    if not (PG_LIB / "wal2json.so").is_file():
        missing.append(str(PG_LIB / "wal2json.so"))
    if missing:
        msg = f"PostgreSQL {PG_VERSION} is not fully installed ({', '.join(missing)} missing): {INSTALL_HINT}"
        raise ServiceError(msg)


@dataclass
class PostgresServer:
    """One postgres process whose cluster lives in `base_dir` (created if missing)."""

    base_dir: Path
    port: int = field(default_factory=free_port)
    user: str = "ingest"
    password: str = field(default_factory=lambda: secrets.token_urlsafe(16))
    database: str = "postgres"
    _process: subprocess.Popen[bytes] | None = None

    @property
    def data_dir(self) -> Path:
        return self.base_dir / "data"

    @property
    def log_path(self) -> Path:
        return self.base_dir / "postgres.log"

    @property
    def host(self) -> str:
        return "127.0.0.1"

    def conninfo(self, database: str | None = None) -> str:
        """A libpq connection string (psycopg, psycopg2)."""
        return (
            f"host={self.host} port={self.port} user={self.user} password={self.password} "
            f"dbname={database or self.database}"
        )

    def _prefix(self) -> list[str]:
        return as_user(system_user(SYSTEM_USER)) if running_as_root() else []

    def _env(self) -> dict[str, str]:
        return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C.UTF-8", "TZ": "UTC"}

    def initdb(self) -> None:
        self.base_dir.mkdir(parents=True, exist_ok=True)
        password_file = self.base_dir / "password"
        password_file.write_text(self.password + "\n", encoding="utf-8")
        password_file.chmod(0o600)
        if running_as_root():
            hand_over(self.base_dir, system_user(SYSTEM_USER))
        command = [
            *self._prefix(),
            str(PG_BIN / "initdb"),
            f"--pgdata={self.data_dir}",
            f"--username={self.user}",
            f"--pwfile={password_file}",
            "--auth-local=trust",  # the socket is in base_dir, reachable only by its owner
            "--auth-host=scram-sha-256",
            "--encoding=UTF8",
            "--locale=C.UTF-8",
            "--no-sync",
        ]
        try:
            run_checked(command, f"initdb in {self.data_dir}", env=self._env())
        finally:
            password_file.unlink()

    def command(self) -> list[str]:
        settings = {
            **SERVER_SETTINGS,
            "port": str(self.port),
            "listen_addresses": self.host,
            "unix_socket_directories": str(self.base_dir),
        }
        options = [f"--{name.replace('_', '-')}={value}" for name, value in settings.items()]
        return [*self._prefix(), str(PG_BIN / "postgres"), "-D", str(self.data_dir), *options]

    def start(self, timeout: float = 60.0) -> PostgresServer:
        check_installed()
        if not (self.data_dir / "PG_VERSION").is_file():
            self.initdb()
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(  # noqa: S603 - fixed arguments
                self.command(), stdout=log, stderr=subprocess.STDOUT, env=self._env()
            )
        try:
            wait_until(self._ready, self._process, what="PostgreSQL", log=self.log_path, timeout=timeout)
        except ServiceError:
            self.stop()
            raise
        return self

    def _ready(self) -> bool:
        probe = [str(PG_BIN / "pg_isready"), "-q", "-h", self.host, "-p", str(self.port), "-U", self.user]
        return subprocess.run(probe, check=False, env=self._env()).returncode == 0  # noqa: S603

    def stop(self) -> None:
        """Fast shutdown (SIGINT): open sessions and replication connections are cut, not waited for."""
        stop(self._process, signal.SIGINT)
        self._process = None


def main() -> None:
    """`python -m devstack.postgres DIR`: run a local PostgreSQL in the foreground until interrupted."""
    import argparse  # noqa: PLC0415 - only the command line needs it

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("base_dir", type=Path, help="cluster folder (created; reused when it holds one)")
    parser.add_argument("--port", type=int, default=15432)
    args = parser.parse_args()
    server = PostgresServer(args.base_dir.resolve(), port=args.port).start()
    serve_until_interrupted(
        server, f"PostgreSQL ready: {server.conninfo()} (log: {server.log_path}); Ctrl-C stops it"
    )


if __name__ == "__main__":
    main()
