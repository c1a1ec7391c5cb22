"""What the throwaway database servers share: a private folder, readiness polling and a clean stop."""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

from devstack.nessie import ServiceError

INSTALL_COMMAND = "python -m devstack.install_services"


def running_as_root() -> bool:
    return os.geteuid() == 0


def system_user(name: str) -> pwd.struct_passwd:
    """The unprivileged account a server runs as when we are root (created by its Debian package)."""
    try:
        return pwd.getpwnam(name)
    except KeyError:
        msg = f"user {name!r} does not exist; it comes with the server's package: {INSTALL_COMMAND}"
        raise ServiceError(msg) from None


def hand_over(folder: Path, owner: pwd.struct_passwd) -> None:
    """Give `folder` (and what is in it) to `owner`, and check that `owner` can reach it."""
    for path in (folder, *folder.rglob("*")):
        os.chown(path, owner.pw_uid, owner.pw_gid)
    reachable = subprocess.run(  # noqa: S603 - fixed command
        [*as_user(owner), "test", "-w", str(folder)], capture_output=True, check=False
    )
    if reachable.returncode != 0:
        msg = (
            f"user {owner.pw_name!r} cannot reach {folder} (a parent folder is private): "
            "use a folder under /tmp made with tempfile.mkdtemp()"
        )
        raise ServiceError(msg)


def as_user(owner: pwd.struct_passwd) -> list[str]:
    """Prefix that runs a command as `owner`; setpriv execs, so the process id stays the server's."""
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        msg = "setpriv (util-linux) is needed to run a database server as an unprivileged user"
        raise ServiceError(msg)
    return [setpriv, f"--reuid={owner.pw_uid}", f"--regid={owner.pw_gid}", "--init-groups", "--"]


def run_checked(command: Sequence[str], what: str, *, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(command, capture_output=True, text=True, check=False, env=env)  # noqa: S603
    if done.returncode != 0:
        tail = (done.stdout + done.stderr).strip().splitlines()[-8:]
        msg = f"{what} failed (exit {done.returncode}): {' | '.join(tail)}"
        raise ServiceError(msg)
    return done.stdout


def wait_until(
    ready: Callable[[], bool], process: subprocess.Popen[bytes], *, what: str, log: Path, timeout: float
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            msg = f"{what} exited with code {process.returncode}; see {log}"
            raise ServiceError(msg)
        if ready():
            return
        time.sleep(0.2)
    msg = f"{what} was not ready within {timeout:.0f}s; see {log}"
    raise ServiceError(msg)


def stop(process: subprocess.Popen[bytes] | None, stop_signal: signal.Signals) -> None:
    if process is None or process.poll() is not None:
        return
    process.send_signal(stop_signal)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=30)


class Stoppable(Protocol):
    def stop(self) -> None: ...


def serve_until_interrupted(server: Stoppable, *lines: str) -> None:
    """`python -m devstack.<service>`: print where the started `server` is, keep it until Ctrl-C."""
    for line in lines:
        print(line, flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        server.stop()
