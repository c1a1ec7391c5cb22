"""A real S3-compatible server on loopback: the Versity S3 Gateway (versitygw), posix backend.

`S3Server(base_dir).start()` builds the pinned versitygw with `go install` from
the Go module proxy when it is not cached yet (~3 min on 2 cores from an empty Go cache, then
instant), starts it on a free 127.0.0.1 port with one access key, and waits for its health
endpoint. Buckets are folders of `base_dir/buckets` and objects are files, so a restart keeps them.
Clients use path-style addressing and SigV4; `S3Client` is a small signing client for the few
calls the dev stack and the tests make themselves (create a bucket, HEAD an object).
Why versitygw and not MinIO, SeaweedFS or moto: docs/devstack.md.
"""

from __future__ import annotations

import datetime as dt
import errno
import hashlib
import hmac
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final
from urllib.parse import quote

import httpx

from devstack.nessie import ServiceError, free_port
from devstack.tools import VERSITYGW, go_install

REGION: Final = "us-east-1"
HEALTH_PATH: Final = "/health"


def install() -> Path:
    """The pinned versitygw ($VERSITYGW_BIN, else built into the cache on first use)."""
    if override := os.environ.get("VERSITYGW_BIN"):
        return Path(override)
    return go_install(VERSITYGW)


def _supports_user_xattrs(folder: Path) -> bool:
    """The posix backend keeps object metadata in user xattrs unless it is given a sidecar folder."""
    try:
        os.setxattr(folder, "user.ingestion.probe", b"1")
        os.removexattr(folder, "user.ingestion.probe")
    except OSError as error:
        if error.errno in {errno.ENOTSUP, errno.EOPNOTSUPP, errno.EPERM}:
            return False
        raise
    return True


def _sign(key: bytes, message: str) -> bytes:
    return hmac.new(key, message.encode(), hashlib.sha256).digest()


@dataclass(frozen=True)
class S3Client:
    """Signs requests with AWS Signature Version 4 (path-style URLs) and sends them with httpx."""

    endpoint: str
    access_key: str
    secret_key: str
    region: str = REGION

    def request(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, str] | None = None,
        body: bytes = b"",
        headers: Mapping[str, str] | None = None,
        timeout: float = 30.0,
    ) -> httpx.Response:
        """`path` is `/bucket` or `/bucket/key` (unquoted); `query` values unquoted."""
        now = dt.datetime.now(dt.UTC)
        amz_date, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
        host = httpx.URL(self.endpoint).netloc.decode()
        payload_hash = hashlib.sha256(body).hexdigest()
        canonical_uri = quote(path, safe="/-_.~")
        canonical_query = "&".join(
            f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}" for k, v in sorted((query or {}).items())
        )
        signed = {
            **{k.lower(): v.strip() for k, v in (headers or {}).items()},
            "host": host,
            "x-amz-content-sha256": payload_hash,
            "x-amz-date": amz_date,
        }
        names = ";".join(sorted(signed))
        canonical_headers = "".join(f"{k}:{signed[k]}\n" for k in sorted(signed))
        canonical_request = "\n".join(
            (method, canonical_uri, canonical_query, canonical_headers, names, payload_hash)
        )
        scope = f"{day}/{self.region}/s3/aws4_request"
        to_sign = "\n".join(
            ("AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical_request.encode()).hexdigest())
        )
        key = _sign(f"AWS4{self.secret_key}".encode(), day)
        for part in (self.region, "s3", "aws4_request"):
            key = _sign(key, part)
        signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
        signed["authorization"] = (
            f"AWS4-HMAC-SHA256 Credential={self.access_key}/{scope}, "
            f"SignedHeaders={names}, Signature={signature}"
        )
        url = f"{self.endpoint}{canonical_uri}" + (f"?{canonical_query}" if canonical_query else "")
        return httpx.request(method, url, content=body, headers=signed, timeout=timeout)

    def create_bucket(self, name: str) -> None:
        """Create `name`; a bucket we already own is fine."""
        response = self.request("PUT", f"/{name}")
        if response.status_code == httpx.codes.OK or "BucketAlreadyOwnedByYou" in response.text:
            return
        msg = (
            f"could not create bucket {name!r} at {self.endpoint}: "
            f"HTTP {response.status_code} {response.text[:300]}"
        )
        raise ServiceError(msg)


@dataclass
class S3Server:
    """One versitygw process whose buckets live in `base_dir`/buckets (kept across restarts)."""

    base_dir: Path
    access_key: str = field(default_factory=lambda: f"ingest-{secrets.token_hex(4)}")
    secret_key: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    port: int = field(default_factory=free_port)
    region: str = REGION
    _process: subprocess.Popen[bytes] | None = None

    @property
    def data_dir(self) -> Path:
        """One folder per bucket, one file per object."""
        return self.base_dir / "buckets"

    @property
    def iam_dir(self) -> Path:
        # With an IAM store an unknown access key is a 403 InvalidAccessKeyId, as on AWS; the
        # single-account mode answers 404, which clients read as "no such object".
        return self.base_dir / "iam"

    @property
    def log_path(self) -> Path:
        return self.base_dir / "s3.log"

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    def client(self) -> S3Client:
        return S3Client(self.endpoint, self.access_key, self.secret_key, self.region)

    def create_bucket(self, name: str) -> None:
        self.client().create_bucket(name)

    def fileio_properties(self) -> dict[str, str]:
        """pyiceberg FileIO properties (PyArrowFileIO) that reach this server."""
        return {
            "s3.endpoint": self.endpoint,
            "s3.access-key-id": self.access_key,
            "s3.secret-access-key": self.secret_key,
            "s3.region": self.region,
            "s3.force-virtual-addressing": "false",
        }

    def aws_env(self) -> dict[str, str]:
        """The standard AWS SDK variables for clients that read the environment."""
        return {
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_REGION": self.region,
            "AWS_ENDPOINT_URL_S3": self.endpoint,
        }

    def command(self) -> list[str]:
        for folder in (self.data_dir, self.iam_dir):
            folder.mkdir(parents=True, exist_ok=True)
        backend = ["posix"]
        if not _supports_user_xattrs(self.data_dir):
            sidecar = self.base_dir / "metadata"
            sidecar.mkdir(exist_ok=True)
            backend += ["--sidecar", str(sidecar)]
        return [
            str(install()),
            "--port",
            f"127.0.0.1:{self.port}",
            "--region",
            self.region,
            "--health",
            HEALTH_PATH,
            "--iam-dir",
            str(self.iam_dir),
            *backend,
            str(self.data_dir),
        ]

    def start(self, timeout: float = 30.0) -> S3Server:
        command = self.command()
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "ROOT_ACCESS_KEY_ID": self.access_key,  # by env, so the secret is not in `ps` output
            "ROOT_SECRET_ACCESS_KEY": self.secret_key,
        }
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)  # noqa: S603
        self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process is not None and self._process.poll() is not None:
                msg = f"versitygw exited with code {self._process.returncode}; see {self.log_path}"
                self._process = None
                raise ServiceError(msg)
            try:
                if httpx.get(self.endpoint + HEALTH_PATH, timeout=2.0).status_code == httpx.codes.OK:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        self.stop()
        msg = f"versitygw was not ready within {timeout:.0f}s; see {self.log_path}"
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

    def restart(self, timeout: float = 30.0) -> None:
        """Stop and start on the same port, data folder and credentials."""
        self.stop()
        self.start(timeout)


def main() -> None:
    """`python -m devstack.s3`: build the server if needed, then run it in the foreground."""
    import argparse  # noqa: PLC0415 - only the command line needs it

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--install-only", action="store_true", help="build the pinned server and exit")
    parser.add_argument("--port", type=int, default=19000)
    parser.add_argument("--base-dir", type=Path, default=Path(".devstack/s3"), help="buckets, IAM, log")
    parser.add_argument("--bucket", action="append", default=[], help="create this bucket (repeatable)")
    args = parser.parse_args()
    if args.install_only:
        started = time.monotonic()
        try:
            binary = install()
        except ServiceError as error:
            if os.environ.get("CI", "").lower() == "true":
                raise SystemExit(str(error)) from None
            # A developer machine without Go: the S3 tests skip, saying what to install.
            print(f"warning: {error}", file=sys.stderr, flush=True)
            return
        print(f"versitygw {VERSITYGW.version}: {binary} ({time.monotonic() - started:.1f}s)", flush=True)
        return
    server = S3Server(
        base_dir=args.base_dir.resolve(),
        access_key=os.environ.get("AWS_ACCESS_KEY_ID", "ingest-dev"),
        secret_key=os.environ.get("AWS_SECRET_ACCESS_KEY", "ingest-dev-secret"),
        port=args.port,
    ).start()
    for bucket in args.bucket:
        server.create_bucket(bucket)
    print(f"S3 (versitygw {VERSITYGW.version}) ready at {server.endpoint}, log {server.log_path}", flush=True)
    for name, value in server.aws_env().items():
        print(f"export {name}={value}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        server.stop()


if __name__ == "__main__":
    main()
