"""The shared machinery of the fake APIs: a threaded HTTP server on loopback that counts what it
served and can be told to fail the next requests (429 with Retry-After, 5xx, 401).

A fake subclasses `FakeApi`, names the real host(s) it stands for in `hosts` and routes requests in
`handle`. Tests start it as a context manager and point the tap at it with `redirect_extractor`
(tests/e2e/_commands.py), passing `fake.redirects`.
"""

from __future__ import annotations

import json
import threading
import urllib.parse
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar, Self


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: Mapping[str, str]
    body: bytes

    def arg(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name)
        return values[-1] if values else default

    def json(self) -> Any:
        return json.loads(self.body or b"null")

    def form(self) -> dict[str, str]:
        return {k: v[-1] for k, v in urllib.parse.parse_qs(self.body.decode()).items()}


@dataclass
class Response:
    status: int = 200
    body: Any = None  # JSON-serialisable, or bytes sent as they are
    headers: dict[str, str] = field(default_factory=dict)

    def encoded(self) -> bytes:
        if isinstance(self.body, bytes):
            return self.body
        self.headers.setdefault("Content-Type", "application/json")
        return json.dumps(self.body).encode() if self.body is not None else b""


@dataclass
class Fault:
    """Answer the next `times` requests whose path starts with `path_prefix` with `status`."""

    status: int
    times: int = 1
    path_prefix: str = "/"
    retry_after: int | None = None
    body: Any = None


@dataclass(frozen=True)
class Served:
    method: str
    path: str
    query: dict[str, list[str]]
    status: int


class ApiError(Exception):
    """Raised by a route to answer with an error document."""

    def __init__(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        super().__init__(f"{status}: {body}")
        self.response = Response(status, body, headers or {})


class FakeApi:
    """Base of every fake: a loopback server, a request log and injectable faults."""

    hosts: ClassVar[tuple[str, ...]] = ()  # the real hosts this fake stands for

    def __init__(self) -> None:
        self.served: list[Served] = []
        self._faults: list[Fault] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- what a subclass provides -----------------------------------------------------------
    def handle(self, request: Request) -> Response:
        raise NotImplementedError

    def fault_body(self, fault: Fault) -> Any:
        """The error document of an injected fault, in the API's own error format."""
        return fault.body if fault.body is not None else {"error": HTTPStatus(fault.status).phrase}

    # --- what tests use ---------------------------------------------------------------------
    @property
    def url(self) -> str:
        assert self._server is not None, "start the fake first"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def redirects(self) -> dict[str, str]:
        """For `redirect_extractor`: every real host of this API -> this server."""
        return dict.fromkeys(self.hosts, self.url)

    @property
    def request_count(self) -> int:
        with self._lock:
            return len(self.served)

    def requests_to(self, path_prefix: str) -> list[Served]:
        with self._lock:
            return [s for s in self.served if s.path.startswith(path_prefix)]

    def inject(self, fault: Fault) -> None:
        with self._lock:
            self._faults.append(fault)

    def pending_faults(self) -> int:
        with self._lock:
            return sum(f.times for f in self._faults)

    def __enter__(self) -> Self:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _serve(self) -> None:
                fake._dispatch(self)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve  # noqa: N815

            def log_message(self, format: str, *args: Any) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name=type(self).__name__, daemon=True
        )
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        self._server = None

    # --- internals --------------------------------------------------------------------------
    def _next_fault(self, path: str) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if path.startswith(fault.path_prefix):
                    fault.times -= 1
                    if fault.times <= 0:
                        self._faults.remove(fault)
                    return fault
        return None

    def _dispatch(self, handler: BaseHTTPRequestHandler) -> None:
        parts = urllib.parse.urlsplit(handler.path)
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        request = Request(
            method=handler.command,
            path=parts.path,
            query=urllib.parse.parse_qs(parts.query, keep_blank_values=True),
            headers={k.lower(): v for k, v in handler.headers.items()},
            body=body,
        )
        fault = self._next_fault(request.path)
        if fault is not None:
            headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else {}
            response = Response(fault.status, self.fault_body(fault), headers)
        else:
            try:
                response = self.handle(request)
            except ApiError as error:
                response = error.response
        with self._lock:
            self.served.append(Served(request.method, request.path, request.query, response.status))
        payload = response.encoded()
        handler.send_response(response.status)
        for name, value in response.headers.items():
            handler.send_header(name, value)
        handler.send_header("Content-Length", str(len(payload)))
        handler.end_headers()
        handler.wfile.write(payload)


def paginate(items: list[Any], start: int, limit: int) -> Iterator[Any]:
    """Items `start`..`start+limit` (a helper for offset/cursor pagination)."""
    yield from items[start : start + limit]
