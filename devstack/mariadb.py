"""A throwaway MariaDB server on loopback, with a row-based binlog for log-based replication.

`MariaDBServer(base_dir).start()` creates the system tables in `base_dir/data` (mariadb-install-db)
and starts `mariadbd` on a free 127.0.0.1 port, its unix socket in `base_dir`, with log_bin,
binlog_format=ROW, binlog_row_image=FULL and a server_id (what binlog readers such as
pipelinewise-tap-mysql require). The account `ingest` (password, from any host) holds every
privilege, replication included. As root the server runs as the Debian `mysql` user, which then owns
`base_dir`. Debian package: mariadb-server (`python -m devstack.install_services`).
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from devstack._server import (
    INSTALL_COMMAND,
    hand_over,
    run_checked,
    running_as_root,
    serve_until_interrupted,
    stop,
    system_user,
    wait_until,
)
from devstack.nessie import ServiceError, free_port

SYSTEM_USER: Final = "mysql"
INSTALL_HINT: Final = f"{INSTALL_COMMAND} (or apt-get install mariadb-server)"
SERVER_ID: Final = 1


def _binary(*names: str) -> str:
    search = os.pathsep.join(("/usr/sbin", "/usr/bin", os.environ.get("PATH", "")))
    for name in names:
        if (found := shutil.which(name, path=search)) is not None:
            return found
    msg = f"{names[0]} not found: {INSTALL_HINT}"
    raise ServiceError(msg)


@dataclass
class MariaDBServer:
    """One mariadbd process whose data lives in `base_dir` (created if missing)."""

    base_dir: Path
    port: int = field(default_factory=free_port)
    user: str = "ingest"
    password: str = field(default_factory=lambda: secrets.token_urlsafe(16))
    _process: subprocess.Popen[bytes] | None = None

    @property
    def data_dir(self) -> Path:
        return self.base_dir / "data"

    @property
    def socket(self) -> Path:
        return self.base_dir / "mariadb.sock"

    @property
    def log_path(self) -> Path:
        return self.base_dir / "mariadb.log"

    @property
    def host(self) -> str:
        return "127.0.0.1"

    def _owner_option(self) -> list[str]:
        # mariadbd and mariadb-install-db drop root privileges themselves when given --user.
        return [f"--user={system_user(SYSTEM_USER).pw_name}"] if running_as_root() else []

    def install_db(self) -> None:
        self.base_dir.mkdir(parents=True, exist_ok=True)
        if running_as_root():
            hand_over(self.base_dir, system_user(SYSTEM_USER))
        command = [
            _binary("mariadb-install-db", "mysql_install_db"),
            "--no-defaults",
            f"--datadir={self.data_dir}",
            *self._owner_option(),
            "--auth-root-authentication-method=normal",  # root@localhost without a password, socket only
            "--skip-test-db",
        ]
        run_checked(command, f"mariadb-install-db in {self.data_dir}")

    def _init_file(self) -> Path:
        """SQL run at every start: the test account, with replication rights for binlog readers."""
        init = self.base_dir / "init.sql"
        quoted = self.password.replace("\\", "\\\\").replace("'", "\\'")
        init.write_text(
            f"CREATE USER IF NOT EXISTS '{self.user}'@'%' IDENTIFIED BY '{quoted}';\n"
            f"GRANT ALL PRIVILEGES ON *.* TO '{self.user}'@'%' WITH GRANT OPTION;\n",
            encoding="utf-8",
        )
        init.chmod(0o600)
        if running_as_root():
            owner = system_user(SYSTEM_USER)
            os.chown(init, owner.pw_uid, owner.pw_gid)
        return init

    def command(self) -> list[str]:
        return [
            _binary("mariadbd", "mysqld"),
            "--no-defaults",
            f"--datadir={self.data_dir}",
            *self._owner_option(),
            f"--port={self.port}",
            f"--bind-address={self.host}",
            f"--socket={self.socket}",
            f"--pid-file={self.base_dir / 'mariadb.pid'}",
            f"--log-error={self.log_path}",
            f"--init-file={self._init_file()}",
            "--skip-name-resolve",
            f"--log-bin={self.data_dir / 'binlog'}",
            "--binlog-format=ROW",
            "--binlog-row-image=FULL",
            f"--server-id={SERVER_ID}",
            "--default-time-zone=+00:00",
            "--character-set-server=utf8mb4",
            "--collation-server=utf8mb4_unicode_ci",
            # small and fast: a throwaway server, durability off
            "--innodb-buffer-pool-size=64M",
            "--innodb-log-file-size=48M",
            "--innodb-flush-log-at-trx-commit=0",
            "--sync-binlog=0",
        ]

    def start(self, timeout: float = 60.0) -> MariaDBServer:
        if not (self.data_dir / "mysql").is_dir():
            self.install_db()
        command = self.command()
        with (self.base_dir / "mariadbd.out").open("ab") as out:
            self._process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)  # noqa: S603
        try:
            wait_until(self._ready, self._process, what="MariaDB", log=self.log_path, timeout=timeout)
        except ServiceError:
            self.stop()
            raise
        return self

    def _ready(self) -> bool:
        probe = [
            _binary("mariadb-admin", "mysqladmin"),
            "--no-defaults",
            f"--socket={self.socket}",
            "--user=root",
            "--connect-timeout=2",
            "ping",
        ]
        return subprocess.run(probe, capture_output=True, check=False).returncode == 0  # noqa: S603

    def stop(self) -> None:
        stop(self._process, signal.SIGTERM)
        self._process = None


def main() -> None:
    """`python -m devstack.mariadb DIR`: run a local MariaDB in the foreground until interrupted."""
    import argparse  # noqa: PLC0415 - only the command line needs it

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("base_dir", type=Path, help="data folder (created; reused when it holds one)")
    parser.add_argument("--port", type=int, default=13306)
    args = parser.parse_args()
    server = MariaDBServer(args.base_dir.resolve(), port=args.port).start()
    serve_until_interrupted(
        server,
        f"MariaDB ready on {server.host}:{server.port}, user {server.user}",
        f"password {server.password}, log {server.log_path}; Ctrl-C stops it",
    )


if __name__ == "__main__":
    main()
