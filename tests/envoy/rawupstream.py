"""A raw-socket HTTP/1.1 test upstream, for what the stdlib server in harness.py cannot do.

`harness.Upstream` answers well-formed responses. The fault tests (test_faults.py) and the soak
(test_soak.py) need an origin that can misbehave on the wire and answer from the request:

- send the status line and headers, half the body, then close the socket (FIN) or reset it
  (RST, SO_LINGER 0);
- drip a body one byte at a time;
- send a chunked body followed by HTTP/1.1 trailers;
- compute each response from the request (path, query, headers), e.g. canary values that
  carry the request's own number.

Each path (query ignored) has a handler `handler(request, conn)`: it reads the `RawRequest`
and writes whatever it wants with `conn.send()`, `conn.respond()`, `conn.close()`,
`conn.reset()`. After the handler returns, the connection is kept alive for the next request
unless the handler closed it or the request said `connection: close`. A path without a handler
gets a JSON 404. Exceptions raised by handlers are recorded (`errors`), so that a test can
assert the upstream itself did not fail. Loopback only; one thread per connection.
"""

from __future__ import annotations

import json
import socket
import struct
import threading
import time
from dataclasses import dataclass
from typing import Callable, Iterable
from urllib.parse import parse_qs, urlsplit

MAX_HEAD = 64 * 1024


@dataclass
class RawRequest:
    method: str
    target: str  # as sent: path and query
    headers: list[tuple[str, str]]
    body: bytes

    @property
    def path(self) -> str:
        return urlsplit(self.target).path

    @property
    def query(self) -> dict[str, str]:
        return {k: v[-1] for k, v in parse_qs(urlsplit(self.target).query).items()}

    def header(self, name: str) -> str | None:
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None


class ConnectionClosed(Exception):
    """The handler closed or reset the connection: no further request on it."""


class RawConn:
    """The upstream side of one connection, as a handler sees it."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.closed = False

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def respond(self, status: int, headers: Iterable[tuple[str, str]] = (), body: bytes = b"",
                *, reason: str = "", chunked: bool = False, head: bool = False) -> None:
        """A well-formed response: content-length (added unless given) or chunked; `head`:
        headers only (the answer to a HEAD, content-length still that of `body`)."""
        hdrs = list(headers)
        names = {k.lower() for k, _ in hdrs}
        if chunked:
            hdrs.append(("transfer-encoding", "chunked"))
        elif "content-length" not in names and status not in (204, 304) and status >= 200:
            hdrs.append(("content-length", str(len(body))))
        out = status_line(status, reason) + encode_headers(hdrs)
        if not head and status not in (204, 304):
            if chunked:
                out += (chunk(body) if body else b"") + b"0\r\n\r\n"
            else:
                out += body
        self.sock.sendall(out)

    def close(self) -> None:
        """Close the connection (FIN) now."""
        if not self.closed:
            self.closed = True
            try:
                self.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self.sock.close()

    def reset(self) -> None:
        """Abort the connection (RST): SO_LINGER with a zero timeout, then close."""
        if not self.closed:
            self.closed = True
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.sock.close()


def status_line(status: int, reason: str = "") -> bytes:
    return f"HTTP/1.1 {status} {reason or 'Status'}\r\n".encode()


def encode_headers(headers: Iterable[tuple[str, str]]) -> bytes:
    return b"".join(f"{k}: {v}\r\n".encode() for k, v in headers) + b"\r\n"


def chunk(data: bytes) -> bytes:
    """One chunk of a chunked body (an empty `data` would end the body: not allowed here)."""
    assert data, "an empty chunk ends a chunked body"
    return b"%x\r\n%s\r\n" % (len(data), data)


Handler = Callable[[RawRequest, RawConn], None]


class RawUpstream:
    """A scriptable origin on 127.0.0.1: `set(path, handler)`, `received`, `errors`."""

    def __init__(self, default: Handler | None = None) -> None:
        self._lock = threading.Lock()
        self._handlers: dict[str, Handler] = {}
        self._default = default
        self.received: list[RawRequest] = []
        self.errors: list[str] = []
        self.record = True  # keep every request in `received` (the soak turns this off)
        self._conns: set[socket.socket] = set()
        self._listener = socket.socket()
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(128)
        self.port = self._listener.getsockname()[1]
        self._stopping = False
        self._thread = threading.Thread(target=self._accept_loop, daemon=True)
        self._thread.start()

    # configuration

    def set(self, path: str, handler: Handler) -> None:
        with self._lock:
            self._handlers[path] = handler

    def set_json(self, path: str, body: bytes | str | dict | list, *, status: int = 200,
                 headers: Iterable[tuple[str, str]] = ()) -> None:
        """A plain JSON answer on `path`."""
        if isinstance(body, (dict, list)):
            body = json.dumps(body)
        data = body.encode() if isinstance(body, str) else body
        hdrs = [("content-type", "application/json"), *headers]
        self.set(path, lambda req, conn: conn.respond(status, hdrs, data,
                                                      head=req.method == "HEAD"))

    def reset_state(self) -> None:
        with self._lock:
            self._handlers.clear()
            self.received.clear()
            self.errors.clear()

    def requests_to(self, path: str) -> list[RawRequest]:
        with self._lock:
            return [r for r in self.received if r.path == path]

    # serving

    def _accept_loop(self) -> None:
        while not self._stopping:
            try:
                sock, _ = self._listener.accept()
            except OSError:
                return
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                self._conns.add(sock)
            threading.Thread(target=self._serve, args=(sock,), daemon=True).start()

    def _serve(self, sock: socket.socket) -> None:
        conn = RawConn(sock)
        buf = b""
        try:
            while not conn.closed:
                req, buf = read_request(sock, buf)
                if req is None:
                    return
                with self._lock:
                    if self.record:
                        self.received.append(req)
                    handler = self._handlers.get(req.path, self._default)
                if handler is None:
                    msg = json.dumps({"test-upstream": f"no handler for {req.path}"}).encode()
                    conn.respond(404, [("content-type", "application/json")], msg)
                else:
                    handler(req, conn)
                if (req.header("connection") or "").lower() == "close":
                    return
        except (ConnectionError, ConnectionClosed, TimeoutError):
            pass
        except OSError as e:
            if not conn.closed:
                self._error(f"{type(e).__name__}: {e}")
        except Exception as e:  # a handler bug: the test must see it
            self._error(f"{type(e).__name__}: {e}")
        finally:
            conn.close()
            with self._lock:
                self._conns.discard(sock)

    def _error(self, text: str) -> None:
        with self._lock:
            self.errors.append(text)

    def close(self) -> None:
        self._stopping = True
        self._listener.close()
        with self._lock:
            conns = list(self._conns)
        for s in conns:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def read_request(sock: socket.socket, buf: bytes) -> tuple[RawRequest | None, bytes]:
    """The next request on `sock` (None at a clean end of the connection), and what follows it.

    Enough HTTP/1.1 for Envoy's upstream requests: content-length bodies (Envoy sends GETs
    without a body, and anything else here with a content-length)."""
    while b"\r\n\r\n" not in buf:
        if len(buf) > MAX_HEAD:
            raise ValueError("request head too large")
        data = sock.recv(65536)
        if not data:
            return None, b""
        buf += data
    head, _, rest = buf.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    method, target, _version = lines[0].split(" ", 2)
    headers = []
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers.append((name.strip(), value.strip()))
    length = 0
    for name, value in headers:
        if name.lower() == "content-length":
            length = int(value)
        if name.lower() == "transfer-encoding":
            raise ValueError("chunked request bodies are not supported by this test upstream")
    while len(rest) < length:
        data = sock.recv(65536)
        if not data:
            return None, b""
        rest += data
    return RawRequest(method, target, headers, rest[:length]), rest[length:]


# --- Misbehaving answers ------------------------------------------------------------------


def cut_after(status: int, headers: list[tuple[str, str]], body: bytes, keep: int, *,
              rst: bool, chunked: bool = False) -> Handler:
    """Announce `body` (content-length, or chunked), send its first `keep` bytes, then close
    (FIN) or reset (RST) the connection."""

    def handler(req: RawRequest, conn: RawConn) -> None:
        hdrs = list(headers)
        if chunked:
            hdrs.append(("transfer-encoding", "chunked"))
            part = chunk(body[:keep])
        else:
            hdrs.append(("content-length", str(len(body))))
            part = body[:keep]
        conn.send(status_line(status) + encode_headers(hdrs))
        time.sleep(0.05)  # the headers reach Envoy (and the filter) on their own
        conn.send(part)
        time.sleep(0.05)
        conn.reset() if rst else conn.close()

    return handler


def drip(status: int, headers: list[tuple[str, str]], body: bytes, delay: float, *,
         chunked: bool = False) -> Handler:
    """Send `body` one byte per write, `delay` seconds apart (as 1-byte chunks if chunked)."""

    def handler(req: RawRequest, conn: RawConn) -> None:
        hdrs = list(headers)
        hdrs.append(("transfer-encoding", "chunked") if chunked
                    else ("content-length", str(len(body))))
        conn.send(status_line(status) + encode_headers(hdrs))
        for i in range(len(body)):
            byte = body[i:i + 1]
            conn.send(chunk(byte) if chunked else byte)
            time.sleep(delay)
        if chunked:
            conn.send(b"0\r\n\r\n")

    return handler


def with_trailers(status: int, headers: list[tuple[str, str]], body: bytes,
                  trailers: list[tuple[str, str]], chunk_size: int = 64) -> Handler:
    """A chunked body followed by trailer fields (announced in a `trailer` header)."""

    def handler(req: RawRequest, conn: RawConn) -> None:
        hdrs = list(headers) + [("transfer-encoding", "chunked"),
                                ("trailer", ", ".join(k for k, _ in trailers))]
        out = status_line(status) + encode_headers(hdrs)
        for i in range(0, len(body), chunk_size):
            out += chunk(body[i:i + chunk_size])
        out += b"0\r\n" + encode_headers(trailers)
        conn.send(out)

    return handler
