"""Count the HTTP requests of this process, for the platform's `api_calls` run metadata.

Installed next to a Singer tap in its Meltano plugin venv (`pip_url: tap-x==1.2 <this package>`); a
`.pth` file calls `install()` when the interpreter starts. Nothing happens unless the environment
names a directory in INGEST_HTTP_METER_DIR: then every request sent through `http.client` (which
requests, urllib3, httplib2 and urllib all use) or httpx is counted per host, and the process writes
`<dir>/<pid>.json` when it exits: {"requests": N, "by_host": {"api.stripe.com": N}, "argv0": "..."}.
`read_counts(dir)` sums the files of every process of a run.

Counting happens where a request is put on the wire, so a retried request counts again: that is
what the API provider bills and rate-limits.
"""

from __future__ import annotations

import atexit
import json
import os
import sys
import threading
from collections import Counter
from pathlib import Path
from typing import Any

ENV_DIR = "INGEST_HTTP_METER_DIR"

_lock = threading.Lock()
_counts: Counter[str] = Counter()
_installed = False


def _count(host: str) -> None:
    with _lock:
        _counts[host] += 1


def _write(directory: Path) -> None:
    with _lock:
        counts = dict(_counts)
    if not counts:
        return
    document = {"requests": sum(counts.values()), "by_host": counts, "argv0": os.path.basename(sys.argv[0])}
    directory.mkdir(parents=True, exist_ok=True)
    tmp = directory / f".{os.getpid()}.json.tmp"
    tmp.write_text(json.dumps(document), encoding="utf-8")
    tmp.replace(directory / f"{os.getpid()}.json")


def _patch_http_client() -> None:
    import http.client  # noqa: PLC0415 - only when metering

    original = http.client.HTTPConnection.putrequest

    def putrequest(self: http.client.HTTPConnection, method: str, url: str, *args: Any, **kw: Any) -> None:
        _count(f"{self.host}:{self.port}" if self.port not in (80, 443, None) else str(self.host))
        original(self, method, url, *args, **kw)

    http.client.HTTPConnection.putrequest = putrequest  # type: ignore[method-assign]


class _HttpxFinder:
    """Patches httpx's transports if the tap imports httpx (it uses httpcore, not http.client)."""

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        if name != "httpx":
            return None
        sys.meta_path.remove(self)
        import importlib.util  # noqa: PLC0415

        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None:
            return spec
        loader = spec.loader
        original_exec = loader.exec_module  # type: ignore[attr-defined]

        def exec_module(module: Any) -> None:
            original_exec(module)
            _patch_httpx(module)

        loader.exec_module = exec_module  # type: ignore[attr-defined]
        return spec


def _patch_httpx(httpx: Any) -> None:
    sync_send = httpx.HTTPTransport.handle_request
    async_send = httpx.AsyncHTTPTransport.handle_async_request

    def handle_request(self: Any, request: Any) -> Any:
        _count(request.url.netloc.decode())
        return sync_send(self, request)

    async def handle_async_request(self: Any, request: Any) -> Any:
        _count(request.url.netloc.decode())
        return await async_send(self, request)

    httpx.HTTPTransport.handle_request = handle_request
    httpx.AsyncHTTPTransport.handle_async_request = handle_async_request


def install() -> None:
    """Start counting if INGEST_HTTP_METER_DIR is set (called by the .pth file; idempotent)."""
    global _installed  # noqa: PLW0603 - one meter per process
    directory = os.environ.get(ENV_DIR)
    if _installed or not directory:
        return
    _installed = True
    _patch_http_client()
    if "httpx" in sys.modules:
        _patch_httpx(sys.modules["httpx"])
    else:
        sys.meta_path.insert(0, _HttpxFinder())
    atexit.register(_write, Path(directory))


def read_counts(directory: Path) -> dict[str, int]:
    """The requests of every metered process that wrote into `directory`, summed per host."""
    total: Counter[str] = Counter()
    for file in sorted(directory.glob("*.json")):
        document = json.loads(file.read_text(encoding="utf-8"))
        total.update({str(host): int(n) for host, n in document.get("by_host", {}).items()})
    return dict(total)
