"""A real TCP proxy for tests: relays HTTP/1.1 to a server and breaks one exchange on purpose.

`FaultyProxy(upstream_uri)` listens on an ephemeral loopback port. Each client connection gets its
own server connection; requests and responses are relayed byte for byte, one whole message at a
time (bodies framed by Content-Length or chunked encoding), so keep-alive connections carrying many
requests work and every request can be seen. `arm(fault, matches)` makes the next request that
`matches` fail the way networks fail (see `Fault`); other requests pass through untouched.

What crossed the wire is recorded: `forwarded` (requests the server received, in order) and
`faulted` (each injected fault, its request, whether the client hung up first). Use it as a context
manager; leaving it closes every socket and joins every thread.
"""

from __future__ import annotations

import contextlib
import enum
import socket
import socketserver
import struct
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import BinaryIO
from urllib.parse import urlsplit, urlunsplit

_MAX_LINE = 65_536


class Fault(enum.Enum):
    DROP_REQUEST = "read the request, never forward it, reset the client"
    DROP_RESPONSE = "forward the request, read and discard the server's answer, reset the client"
    HOLD_RESPONSE = "forward the request, keep the answer until the client hangs up, reset it"
    DELIVER_LATE = (
        "hold the request until the client hangs up and a request matching `after` was answered, "
        "then forward it (its answer is discarded)"
    )


@dataclass(frozen=True)
class Request:
    method: str
    target: str  # path and query, as sent
    body: bytes

    @property
    def path(self) -> str:
        return self.target.partition("?")[0]


@dataclass(frozen=True)
class Faulted:
    fault: Fault
    request: Request
    client_hung_up: bool  # the client closed the connection before the proxy reset it


Matcher = Callable[[Request], bool]


@dataclass
class _Armed:
    fault: Fault
    matches: Matcher
    after: Matcher | None


@dataclass(frozen=True)
class _Message:
    raw: bytes
    start_line: str
    body: bytes
    closes: bool  # the connection ends after this message


def _header_values(lines: list[bytes]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for line in lines:
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    return headers


def _read_exactly(stream: BinaryIO, size: int) -> bytes:
    data = stream.read(size)
    if len(data) != size:
        msg = f"connection closed after {len(data)} of {size} body bytes"
        raise ConnectionError(msg)
    return data


def _read_chunked(stream: BinaryIO) -> tuple[bytes, bytes]:
    """Raw chunked body (to relay) and its decoded payload (to inspect)."""
    raw, payload = [], []
    while True:
        size_line = stream.readline(_MAX_LINE)
        raw.append(size_line)
        size = int(size_line.split(b";")[0].strip(), 16)
        if size == 0:
            break
        chunk = _read_exactly(stream, size + 2)  # the data and its CRLF
        raw.append(chunk)
        payload.append(chunk[:-2])
    while (trailer := stream.readline(_MAX_LINE)) not in (b"\r\n", b"\n", b""):
        raw.append(trailer)
    raw.append(trailer)
    return b"".join(raw), b"".join(payload)


def _read_message(stream: BinaryIO, *, response_to: str | None = None) -> _Message | None:
    """One HTTP/1.1 message from `stream` (a response when `response_to` names the request's
    method); None when the peer closed the connection between messages."""
    start = stream.readline(_MAX_LINE)
    if not start:
        return None
    lines = []
    while (line := stream.readline(_MAX_LINE)) not in (b"\r\n", b"\n"):
        if not line:
            msg = "connection closed inside a message header"
            raise ConnectionError(msg)
        lines.append(line)
    headers = _header_values(lines)
    head = start + b"".join(lines) + line
    closes = headers.get("connection", "").lower() == "close"
    status = int(start.split()[1]) if response_to is not None else 0
    if response_to == "HEAD" or 100 <= status < 200 or status in (204, 304):
        raw_body = body = b""
    elif "chunked" in headers.get("transfer-encoding", "").lower():
        raw_body, body = _read_chunked(stream)
    elif "content-length" in headers:
        raw_body = body = _read_exactly(stream, int(headers["content-length"]))
    elif response_to is not None:  # a response without framing ends with the connection
        raw_body = body = stream.read()
        closes = True
    else:
        raw_body = body = b""
    return _Message(head + raw_body, start.decode("latin-1").strip(), body, closes)


def _reset(connection: socket.socket) -> None:
    """Close with an RST (linger 0), the way a crashed peer or a middlebox drops a connection."""
    with contextlib.suppress(OSError):
        connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    connection.close()


def _waits_for_hang_up(connection: socket.socket, seconds: float) -> bool:
    """Whether the client closes its end within `seconds` (it gave up waiting for an answer)."""
    connection.settimeout(seconds)
    try:
        return connection.recv(1) == b""
    except TimeoutError:
        return False
    except OSError:  # reset by the client: it hung up too
        return True
    finally:
        with contextlib.suppress(OSError):
            connection.settimeout(None)


class _Listener(socketserver.ThreadingTCPServer):
    daemon_threads = False
    block_on_close = True  # server_close() joins every connection's thread

    def __init__(self, proxy: FaultyProxy) -> None:
        self.proxy = proxy
        super().__init__(("127.0.0.1", 0), _Connection)

    def handle_error(self, request: object, client_address: object) -> None:
        self.proxy.record_error()


class _Connection(socketserver.BaseRequestHandler):
    server: _Listener

    def handle(self) -> None:
        with contextlib.suppress(OSError):  # a peer went away: the connection is over
            self.server.proxy.relay(self.request)


class FaultyProxy:
    """A loopback TCP proxy in front of the HTTP server at `upstream_uri`; see the module doc."""

    def __init__(self, upstream_uri: str, *, hold_seconds: float = 5.0) -> None:
        self._upstream_uri = urlsplit(upstream_uri)
        host, port = self._upstream_uri.hostname, self._upstream_uri.port
        if host is None or port is None:
            msg = f"{upstream_uri} needs a host and a port"
            raise ValueError(msg)
        self._upstream = (host, port)
        self.hold_seconds = hold_seconds  # bound of every wait for the client, so a test never hangs
        self.forwarded: list[Request] = []
        self.faulted: list[Faulted] = []
        self.errors: list[BaseException] = []
        self._armed: list[_Armed] = []
        self._answered: list[Request] = []
        self._clients: set[socket.socket] = set()
        self._closing = False
        self._changed = threading.Condition()
        self._listener: _Listener | None = None
        self._thread: threading.Thread | None = None

    @property
    def uri(self) -> str:
        """The upstream URI with the proxy's address in place of the server's."""
        assert self._listener is not None, "start the proxy first"
        port = self._listener.server_address[1]
        return urlunsplit(self._upstream_uri._replace(netloc=f"127.0.0.1:{port}"))

    def arm(self, fault: Fault, matches: Matcher, *, after: Matcher | None = None) -> None:
        """Inject `fault` into the next request that `matches` (once)."""
        assert (after is not None) == (fault is Fault.DELIVER_LATE), "`after` is for DELIVER_LATE only"
        with self._changed:
            self._armed.append(_Armed(fault, matches, after))

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> FaultyProxy:
        self._listener = _Listener(self)
        self._thread = threading.Thread(
            target=self._listener.serve_forever, kwargs={"poll_interval": 0.05}, name="tcp-proxy"
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._listener is None or self._thread is None:
            return
        self._listener.shutdown()  # no new connections
        with self._changed:
            self._closing = True
            for client in self._clients:  # unblock threads reading idle keep-alive connections
                with contextlib.suppress(OSError):
                    client.shutdown(socket.SHUT_RDWR)
            self._changed.notify_all()
        self._listener.server_close()  # joins the connections' threads
        self._thread.join()
        self._listener = self._thread = None

    def __enter__(self) -> FaultyProxy:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
        if kind is None and self.errors:
            msg = f"the proxy failed: {self.errors[0]!r}"
            raise RuntimeError(msg) from self.errors[0]

    def record_error(self) -> None:
        """A connection's thread raised something other than a closed connection: a proxy bug."""
        error = sys.exc_info()[1]
        if error is not None:
            self.errors.append(error)

    # -- relaying -------------------------------------------------------------------------------

    def _take_fault(self, request: Request) -> _Armed | None:
        with self._changed:
            for armed in self._armed:
                if armed.matches(request):
                    self._armed.remove(armed)
                    return armed
        return None

    def _note(self, into: list[Request], request: Request) -> None:
        with self._changed:
            into.append(request)
            self._changed.notify_all()

    def relay(self, client: socket.socket) -> None:
        """Serve one client connection until either side closes it or a fault ends it."""
        with self._changed:
            if self._closing:
                return
            self._clients.add(client)
        try:
            with (
                socket.create_connection(self._upstream) as server,
                client.makefile("rb") as from_client,
                server.makefile("rb") as from_server,
            ):
                while (message := _read_message(from_client)) is not None:
                    method, target, _ = message.start_line.split(" ", 2)
                    request = Request(method, target, message.body)
                    armed = self._take_fault(request)
                    if armed is not None:
                        self._fault(armed, request, message.raw, client, server, from_server)
                        return
                    self._note(self.forwarded, request)
                    server.sendall(message.raw)
                    response = _read_message(from_server, response_to=method)
                    if response is None:
                        return  # the server closed the connection: so does the client's
                    client.sendall(response.raw)
                    self._note(self._answered, request)
                    if message.closes or response.closes:
                        return
        finally:
            with self._changed:
                self._clients.discard(client)

    def _fault(
        self,
        armed: _Armed,
        request: Request,
        raw: bytes,
        client: socket.socket,
        server: socket.socket,
        from_server: BinaryIO,
    ) -> None:
        hung_up = False
        if armed.fault is Fault.DELIVER_LATE:
            with self._changed:
                answered_before = len(self._answered)
            hung_up = _waits_for_hang_up(client, self.hold_seconds)
            assert armed.after is not None
            after = armed.after
            with self._changed:
                self._changed.wait_for(
                    lambda: self._closing or any(after(r) for r in self._answered[answered_before:]),
                    timeout=self.hold_seconds,
                )
        if armed.fault is not Fault.DROP_REQUEST:
            self._note(self.forwarded, request)
            server.sendall(raw)
            _read_message(from_server, response_to=request.method)  # the server has acted on it
        if armed.fault is Fault.HOLD_RESPONSE:
            hung_up = _waits_for_hang_up(client, self.hold_seconds)
        with self._changed:
            self.faulted.append(Faulted(armed.fault, request, hung_up))
        _reset(client)
