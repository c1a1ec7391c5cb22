"""The real Project Nessie server: the runner jar from Maven Central, on Java 21+, on loopback.

`NessieServer(...).start()` fetches the pinned jar with Maven (cached in ~/.m2), starts it with its
API and management (health) ports on 127.0.0.1, and waits until it is ready. The version store is
in memory or RocksDB (a folder), so a restart can keep the repository.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Literal

import httpx

NESSIE_VERSION: Final = "0.99.0"  # the newest nessie-quarkus runner jar on Maven Central
ARTIFACT: Final = f"org.projectnessie.nessie:nessie-quarkus:{NESSIE_VERSION}:jar:runner"
MIN_JAVA: Final = 21


class ServiceError(RuntimeError):
    """A service could not be fetched or started; the message says what to install or check."""


def runner_jar() -> Path:
    """The cached runner jar, fetched with Maven when missing."""
    m2 = Path(os.environ.get("MAVEN_REPOSITORY", Path.home() / ".m2" / "repository"))
    jar = (
        m2
        / "org/projectnessie/nessie/nessie-quarkus"
        / NESSIE_VERSION
        / (f"nessie-quarkus-{NESSIE_VERSION}-runner.jar")
    )
    if jar.is_file():
        return jar
    mvn = shutil.which("mvn")
    if mvn is None:
        msg = "Maven (mvn) is needed to fetch the Nessie server jar: apt-get install maven"
        raise ServiceError(msg)
    done = subprocess.run(  # noqa: S603 - fixed arguments
        [mvn, "-q", "-B", "dependency:get", f"-Dartifact={ARTIFACT}", "-Dtransitive=false"],
        capture_output=True,
        text=True,
        check=False,
        timeout=900,
    )
    if done.returncode != 0 or not jar.is_file():
        tail = (done.stdout + done.stderr).strip().splitlines()[-5:]
        msg = f"could not fetch {ARTIFACT} from Maven Central: {' | '.join(tail)}"
        raise ServiceError(msg)
    return jar


def _java_version(java: Path) -> int:
    done = subprocess.run([str(java), "-version"], capture_output=True, text=True, check=False)  # noqa: S603
    found = re.search(r'version "(\d+)', done.stderr)
    return int(found.group(1)) if found else 0


def find_java() -> Path:
    """A Java >= 21: $JAVA_HOME first, then the JDKs under /usr/lib/jvm (newest first)."""
    candidates: list[Path] = []
    if home := os.environ.get("JAVA_HOME"):
        candidates.append(Path(home) / "bin" / "java")
    candidates.extend(sorted(Path("/usr/lib/jvm").glob("*/bin/java"), reverse=True))
    if which := shutil.which("java"):
        candidates.append(Path(which))
    for java in candidates:
        if java.is_file() and _java_version(java) >= MIN_JAVA:
            return java
    msg = f"Nessie needs Java {MIN_JAVA}+, none in JAVA_HOME or /usr/lib/jvm: apt-get install openjdk-21-jre"
    raise ServiceError(msg)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class NessieServer:
    """One Nessie process. `store`: IN_MEMORY, or ROCKSDB in `data_dir` (survives restarts)."""

    log_path: Path
    store: Literal["IN_MEMORY", "ROCKSDB"] = "IN_MEMORY"
    data_dir: Path | None = None
    port: int = field(default_factory=free_port)
    management_port: int = field(default_factory=free_port)
    _process: subprocess.Popen[bytes] | None = None

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/v2"

    def command(self) -> list[str]:
        options = {
            "quarkus.http.host": "127.0.0.1",
            "quarkus.http.port": str(self.port),
            "quarkus.management.host": "127.0.0.1",
            "quarkus.management.port": str(self.management_port),  # off its default 9000
            "nessie.version.store.type": self.store,
        }
        if self.store == "ROCKSDB":
            if self.data_dir is None:
                msg = "a ROCKSDB Nessie needs a data_dir"
                raise ServiceError(msg)
            options["nessie.version.store.persist.rocks.database-path"] = str(self.data_dir)
        return [str(find_java()), *(f"-D{k}={v}" for k, v in options.items()), "-jar", str(runner_jar())]

    def start(self, timeout: float = 120.0) -> NessieServer:
        command = self.command()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)  # noqa: S603
        self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        health = f"http://127.0.0.1:{self.management_port}/q/health/ready"
        while time.monotonic() < deadline:
            if self._process is not None and self._process.poll() is not None:
                msg = f"Nessie exited with code {self._process.returncode}; see {self.log_path}"
                raise ServiceError(msg)
            try:
                if httpx.get(health, timeout=2.0).status_code == httpx.codes.OK:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        self.stop()
        msg = f"Nessie was not ready within {timeout:.0f}s; see {self.log_path}"
        raise ServiceError(msg)

    def stop(self) -> None:
        if self._process is None:
            return
        self._process.terminate()
        try:
            self._process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait(timeout=30)
        self._process = None

    def restart(self, timeout: float = 120.0) -> None:
        """Stop and start on the same ports (and, with RocksDB, the same repository)."""
        self.stop()
        self.start(timeout)


def main() -> None:
    """`python -m devstack.nessie`: run a local Nessie in the foreground until interrupted."""
    import argparse  # noqa: PLC0415 - only the command line needs it

    from devstack._server import serve_until_interrupted  # noqa: PLC0415 - it imports this module

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=19120)
    parser.add_argument("--management-port", type=int, default=19121)
    parser.add_argument("--rocksdb", type=Path, help="keep the repository in this folder (else in memory)")
    parser.add_argument("--log", type=Path, default=Path("nessie.log"))
    args = parser.parse_args()
    server = NessieServer(
        log_path=args.log,
        store="ROCKSDB" if args.rocksdb else "IN_MEMORY",
        data_dir=args.rocksdb,
        port=args.port,
        management_port=args.management_port,
    ).start()
    serve_until_interrupted(
        server, f"Nessie {NESSIE_VERSION} ready at {server.uri} (log: {args.log}); Ctrl-C stops it"
    )


if __name__ == "__main__":
    main()
