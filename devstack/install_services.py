"""Install the servers and tools the tests need: `python -m devstack.install_services`.

Debian packages only: PostgreSQL 15 with the wal2json logical decoding plugin (log-based replication
of tap-postgres), MariaDB (tap-mysql, binlog replication) and Chromium (the browser test of the
Dagster UI). Packages already installed are left
alone, so the command does nothing on a prepared machine. The test setup starts its own throwaway
servers (devstack/postgres.py, devstack/mariadb.py); a system server that a package starts on
install is stopped and disabled, so it neither holds the default ports nor runs unused.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Final

from devstack.nessie import ServiceError

# package -> the system service its install may start (stopped and disabled after a fresh install)
PACKAGES: Final = {
    "postgresql-15": "postgresql",
    "postgresql-15-wal2json": None,
    "mariadb-server": "mariadb",
    "chromium": None,  # the Dagster UI test drives it headless through Playwright
}


def installed(package: str) -> bool:
    done = subprocess.run(  # noqa: S603 - fixed command, the package name comes from PACKAGES
        ["dpkg-query", "-W", "-f=${Status}", package],  # noqa: S607 - dpkg is found on PATH
        capture_output=True,
        text=True,
        check=False,
    )
    return done.returncode == 0 and done.stdout.strip() == "install ok installed"


def missing_packages() -> list[str]:
    return [package for package in PACKAGES if not installed(package)]


def _apt(*args: str) -> None:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    done = subprocess.run(["apt-get", *args], env=env, check=False)  # noqa: S603, S607 - fixed command
    if done.returncode != 0:
        msg = f"`apt-get {' '.join(args)}` failed with exit code {done.returncode}"
        raise ServiceError(msg)


def _systemd_running() -> bool:
    return Path("/run/systemd/system").is_dir()


def stop_system_service(service: str) -> None:
    """Stop a service a package started, and keep it from starting at boot."""
    if _systemd_running():
        commands = [["systemctl", "disable", "--now", service]]
    else:  # a container or chroot: the sysv script, and systemd's links for a later boot
        commands = [
            ["invoke-rc.d", service, "stop"],
            ["update-rc.d", service, "disable"],
            ["systemctl", "disable", service],
        ]
    for command in commands:
        if shutil.which(command[0]) is not None:
            # A service that is not running, or not known to the init system, is fine here.
            subprocess.run(command, capture_output=True, check=False)  # noqa: S603 - fixed command


def install(packages: list[str]) -> None:
    if not packages:
        return
    if shutil.which("apt-get") is None:
        msg = f"apt-get not found: install {', '.join(packages)} with this system's package manager"
        raise ServiceError(msg)
    if os.geteuid() != 0:
        command = f"sudo {sys.executable} -m devstack.install_services"
        msg = f"installing {', '.join(packages)} needs root: {command}"
        raise ServiceError(msg)
    _apt("update", "-q")
    _apt("install", "-y", "-q", "--no-install-recommends", *packages)
    for package in packages:
        if (service := PACKAGES[package]) is not None:
            stop_system_service(service)


def main() -> None:
    packages = missing_packages()
    if not packages:
        print(f"database servers present: {', '.join(PACKAGES)}", flush=True)
        return
    print(f"installing {', '.join(packages)}", flush=True)
    try:
        install(packages)
    except ServiceError as error:
        if os.environ.get("CI", "").lower() == "true":
            sys.exit(str(error))
        # A developer machine without root: the database tests skip, saying what to install.
        print(f"warning: {error}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
