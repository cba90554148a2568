"""A fault-injecting stand-in for data.commoncrawl.org, on 127.0.0.1, for tests.

`CCServer(root)` serves the files under `root` (laid out like the real host:
crawl-data/{snapshot}/wet.paths.gz and the WET files) on a random port. Each path has a
programmable fault plan: `plan(path, *faults)` queues one-shot faults used by the next requests
in order, `always(path, fault)` applies to every request. Every request is recorded
(`requests`, `requests_for(path)`) with its method, Range header, status and body bytes sent, so
tests can assert that a resume used Range or that a finished file was not fetched again. HEAD is
answered like GET without a body (faults apply to it too). Every loop that sends or waits is
bounded (by the body, a byte cap or a time limit) and stops when the client hangs up.

    with CCServer(tmp_path) as server:
        server.plan("crawl-data/X/a.wet.gz", throttle(retry_after="7"), reset(after=65536))
        fetch_to_file(server.url("crawl-data/X/a.wet.gz"), dest, opener=server.opener())
"""

from __future__ import annotations

import gzip
import http.server
import select
import shutil
import socket
import struct
import threading
import urllib.parse
import urllib.request
from collections import defaultdict, deque
from dataclasses import dataclass, field
from pathlib import Path

# -- faults -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Fault:
    kind: str  # status | reset | truncate | stall | slow | ignore_range | bad_content_range | body
    #            | no_length | chunked | zeros | trickle | pause
    status: int = 0
    retry_after: str | None = None
    after: int | None = 0  # body bytes sent before a reset / truncation / cut / pause
    seconds: float = 0.0
    body: bytes | None = None
    hide_size: bool = False  # no_length: no size anywhere (no HEAD length, Range ignored)
    length: int | None = None  # zeros: the declared Content-Length (None: none)
    interval: float = 0.0  # trickle: seconds between sends


def throttle(retry_after: str | None = "1") -> Fault:
    """429 Too Many Requests, with a Retry-After (seconds or an HTTP-date) unless None."""
    return Fault("status", status=429, retry_after=retry_after)


def unavailable(status: int = 503, retry_after: str | None = None) -> Fault:
    """A 5xx answer (503 by default)."""
    return Fault("status", status=status, retry_after=retry_after)


def missing() -> Fault:
    """404 Not Found; use with `always` for a permanently missing file."""
    return Fault("status", status=404)


def reset(after: int = 65536) -> Fault:
    """Send the headers and `after` body bytes, then abort the connection with a TCP RST."""
    return Fault("reset", after=after)


def truncate(after: int = 65536) -> Fault:
    """Announce the full Content-Length, send only `after` body bytes, close cleanly."""
    return Fault("truncate", after=after)


def stall(seconds: float = 5.0) -> Fault:
    """Accept the connection but send nothing for `seconds` (a client read timeout)."""
    return Fault("stall", seconds=seconds)


def slow(seconds: float = 0.1) -> Fault:
    """Wait `seconds` before answering normally (keeps requests in flight together)."""
    return Fault("slow", seconds=seconds)


def ignore_range() -> Fault:
    """Answer a Range request with 200 and the whole file."""
    return Fault("ignore_range")


def bad_content_range() -> Fault:
    """Answer a Range request with 206 but a Content-Range that starts at byte 0."""
    return Fault("bad_content_range")


def serve_body(body: bytes) -> Fault:
    """Serve `body` (with a matching Content-Length) instead of the file, e.g. a cut gzip."""
    return Fault("body", body=body)


def no_length(after: int | None = None, hide_size: bool = False) -> Fault:
    """No Content-Length: send `after` body bytes (None: all), then close (a close-delimited
    body). Range is honoured (206 + Content-Range) unless `hide_size`; with `hide_size` a HEAD
    and a Range request do not tell the size either."""
    return Fault("no_length", after=after, hide_size=hide_size)


def chunked(after: int | None = None) -> Fault:
    """Transfer-Encoding: chunked; with `after`, close after that many body bytes without the
    terminating chunk."""
    return Fault("chunked", after=after)


def zeros(length: int | None, cap: int = 64 << 20) -> Fault:
    """Declare Content-Length `length` (None: none, close-delimited) and stream zero bytes until
    the client hangs up, `length` or `cap` bytes are sent."""
    return Fault("zeros", length=length, after=cap)


def trickle(nbytes: int = 1, interval: float = 0.2, seconds: float = 10.0) -> Fault:
    """Announce the full length, then send `nbytes` every `interval` s for at most `seconds`."""
    return Fault("trickle", after=nbytes, interval=interval, seconds=seconds)


def pause(after: int, seconds: float) -> Fault:
    """Send `after` body bytes, wait `seconds`, then send the rest."""
    return Fault("pause", after=after, seconds=seconds)


# -- request log ------------------------------------------------------------------------------


@dataclass
class Request:
    path: str
    range: str | None
    method: str = "GET"
    status: int = 0
    sent: int = 0  # body bytes written
    fault: str | None = None
    headers: dict[str, str] = field(default_factory=dict)


class _Hangup(Exception):
    """Raised by the handler after it aborted the connection on purpose."""


# -- server -----------------------------------------------------------------------------------


class _Handler(http.server.BaseHTTPRequestHandler):
    server: "_Server"

    def log_message(self, format, *args):  # keep pytest output clean
        pass

    def do_HEAD(self):
        self.do_GET()

    def do_GET(self):
        owner = self.server.owner
        rel = urllib.parse.unquote(urllib.parse.urlsplit(self.path).path).lstrip("/")
        record = Request(path=rel, range=self.headers.get("Range"), method=self.command,
                         headers=dict(self.headers))
        fault = owner._take_fault(rel)
        record.fault = fault.kind if fault else None
        owner._begin(record)
        self._counted = True
        try:
            self._serve(owner, rel, record, fault)
        finally:
            self._leave()

    def _leave(self):
        """End of this request's in-flight window, called before the response starts: the
        window lies inside the client's, so peak_concurrency never overstates client concurrency."""
        if self._counted:
            self._counted = False
            self.server.owner._end()

    def _serve(self, owner: "CCServer", rel: str, record: Request, fault: Fault | None):
        kind = fault.kind if fault else None
        if kind == "stall":
            self._stall(owner, fault.seconds)
            return self._abort()
        if kind == "slow":
            owner._stopping.wait(fault.seconds)
        if kind == "status":
            return self._status(record, fault.status, fault.retry_after)
        file = (owner.root / rel).resolve()
        if owner.root not in file.parents or not file.is_file():
            return self._status(record, 404)
        data = fault.body if kind == "body" else file.read_bytes()

        if kind == "zeros":
            return self._zeros(owner, record, fault)
        start, status, headers = 0, 200, {}
        wanted = _parse_range(record.range, len(data))
        hide_size = kind == "no_length" and fault.hide_size
        if record.range and kind != "ignore_range" and not hide_size:
            if wanted is None:
                headers["Content-Range"] = f"bytes */{len(data)}"
                return self._status(record, 416, headers=headers)
            start, end = wanted
            status = 206
            headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
            data = data[start:end + 1]
            if kind == "bad_content_range":
                headers["Content-Range"] = f"bytes 0-{len(data) - 1}/{len(data)}"
        record.status = status
        self._leave()
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        if kind not in ("no_length", "chunked"):
            self.send_header("Content-Length", str(len(data)))
        if kind == "chunked":
            self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Accept-Ranges", "bytes")
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        if kind == "no_length":
            self._write(record, data if fault.after is None else data[:fault.after])
            return None
        if kind == "chunked":
            return self._chunked(record, data if fault.after is None else data[:fault.after],
                                 terminate=fault.after is None)
        if kind == "trickle":
            return self._trickle(owner, record, data, fault)
        if kind == "pause":
            self._write(record, data[:fault.after])
            owner._stopping.wait(fault.seconds)
            self._write(record, data[fault.after:])
            return None
        if kind in ("reset", "truncate"):
            self._write(record, data[:fault.after])
            if kind == "reset":
                owner._stopping.wait(0.05)  # let the bytes reach the client before the RST
                self._abort()
            return None
        self._write(record, data)
        return None

    def _chunked(self, record: Request, data: bytes, terminate: bool):
        for i in range(0, len(data), 16384):
            piece = data[i:i + 16384]
            self._write(record, f"{len(piece):x}\r\n".encode() + piece + b"\r\n", body=len(piece))
        if terminate:
            self._write(record, b"0\r\n\r\n", body=0)

    def _trickle(self, owner: "CCServer", record: Request, data: bytes, fault: Fault):
        """`fault.after` bytes every `fault.interval` s, for at most `fault.seconds`."""
        for i in range(0, min(len(data), int(fault.seconds / fault.interval) * fault.after), fault.after):
            if not self._write(record, data[i:i + fault.after]) or owner._stopping.wait(fault.interval):
                return

    def _zeros(self, owner: "CCServer", record: Request, fault: Fault):
        record.status = 200
        self._leave()
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        if fault.length is not None:
            self.send_header("Content-Length", str(fault.length))
        self.end_headers()
        limit = min(fault.after, fault.length if fault.length is not None else fault.after)
        block = bytes(65536)
        while record.sent < limit and not owner._stopping.is_set():
            if not self._write(record, block[:limit - record.sent]):
                return

    def _stall(self, owner: "CCServer", seconds: float):
        """Send nothing for `seconds`, or until the client hangs up or the server stops."""
        for _ in range(max(1, int(seconds / 0.05))):
            if owner._stopping.wait(0.05):
                return
            ready, _, _ = select.select([self.connection], [], [], 0)
            if ready and not self.connection.recv(1, socket.MSG_PEEK):
                return  # the client gave up (its read timeout) and closed the connection

    def _status(self, record: Request, code: int, retry_after: str | None = None,
                headers: dict[str, str] | None = None):
        record.status = code
        body = f"{code} {http.HTTPStatus(code).phrase}\n".encode()
        self._leave()
        self.send_response(code)
        if retry_after is not None:
            self.send_header("Retry-After", retry_after)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self._write(record, body)

    def _write(self, record: Request, data: bytes, body: int | None = None) -> bool:
        """Send `data` (no body for HEAD); `body` counts body bytes when framing is added.
        False if the client has gone."""
        if self.command == "HEAD":
            return True
        try:
            self.wfile.write(data)
            self.wfile.flush()
            record.sent += len(data) if body is None else body
            return True
        except OSError:  # the client gave up (e.g. its timeout): nothing to do
            return False

    def _abort(self):
        """Close with SO_LINGER 0: the peer sees a connection reset, not an orderly end."""
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.connection.close()
        self.wfile.close()
        self.rfile.close()
        raise _Hangup()


def _parse_range(value: str | None, size: int) -> tuple[int, int] | None:
    """'bytes=N-' or 'bytes=N-M' -> (first, last) within a file of `size`; None if unsatisfiable."""
    if not value or not value.startswith("bytes="):
        return None
    first, _, last = value[len("bytes="):].partition("-")
    if not first.isdigit() or int(first) >= size:
        return None
    end = min(int(last), size - 1) if last.isdigit() else size - 1
    return int(first), end


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    owner: "CCServer"

    def handle_error(self, request, client_address):
        pass  # _Hangup and client disconnects are part of the plan


class CCServer:
    """Serve `root` like data.commoncrawl.org, with programmable faults and a request log."""

    def __init__(self, root: str | Path):
        self.root = Path(root).resolve()
        self._lock = threading.Lock()
        self._once: dict[str, deque[Fault]] = defaultdict(deque)
        self._always: dict[str, Fault] = {}
        self._requests: list[Request] = []
        self._inflight = 0
        self.peak_concurrency = 0
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # lifecycle
    def start(self) -> "CCServer":
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.owner = self
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,),
                                        daemon=True, name="ccserver")
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(timeout=10)
            self._server = None

    def __enter__(self) -> "CCServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # addresses
    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/"

    def url(self, path: str) -> str:
        return self.base_url + path.lstrip("/")

    @staticmethod
    def opener() -> urllib.request.OpenerDirector:
        """An opener that ignores *_proxy environment variables (the server is on loopback)."""
        return urllib.request.build_opener(urllib.request.ProxyHandler({}))

    # fault plan
    def plan(self, path: str, *faults: Fault) -> None:
        """Queue one-shot faults for the next requests of `path`, in order."""
        with self._lock:
            self._once[path.lstrip("/")].extend(faults)

    def always(self, path: str, fault: Fault | None) -> None:
        """Apply `fault` to every request of `path` (None clears it)."""
        with self._lock:
            if fault is None:
                self._always.pop(path.lstrip("/"), None)
            else:
                self._always[path.lstrip("/")] = fault

    def reset_faults(self) -> None:
        """Forget every planned and permanent fault."""
        with self._lock:
            self._once.clear()
            self._always.clear()

    def _take_fault(self, path: str) -> Fault | None:
        with self._lock:
            if self._once.get(path):
                return self._once[path].popleft()
            return self._always.get(path)

    # request log
    def _begin(self, record: Request) -> None:
        with self._lock:
            self._requests.append(record)
            self._inflight += 1
            self.peak_concurrency = max(self.peak_concurrency, self._inflight)

    def _end(self) -> None:
        with self._lock:
            self._inflight -= 1

    @property
    def requests(self) -> list[Request]:
        with self._lock:
            return list(self._requests)

    def requests_for(self, path: str) -> list[Request]:
        return [r for r in self.requests if r.path == path.lstrip("/")]

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Wait until no request is in flight (e.g. a stalled one whose client gave up)."""
        for _ in range(int(timeout / 0.01)):
            with self._lock:
                if self._inflight == 0:
                    return True
            self._stopping.wait(0.01)
        return False

    def clear_log(self) -> None:
        with self._lock:
            self._requests.clear()
            self.peak_concurrency = 0


# -- building a served tree -------------------------------------------------------------------


def build_crawl_tree(root: str | Path, snapshot: str, wet_files: list[Path]) -> list[str]:
    """Lay out `wet_files` under root like a Common Crawl snapshot; return the wet.paths lines.

    Each file becomes crawl-data/{snapshot}/segments/<segment id>/wet/<name>, one segment
    directory per file, and crawl-data/{snapshot}/wet.paths.gz lists them in order.
    """
    root = Path(root)
    paths = []
    for i, src in enumerate(wet_files):
        rel = f"crawl-data/{snapshot}/segments/1563195523840.{i:02d}/wet/{src.name}"
        target = root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, target)
        paths.append(rel)
    listing = root / f"crawl-data/{snapshot}/wet.paths.gz"
    listing.parent.mkdir(parents=True, exist_ok=True)
    listing.write_bytes(gzip.compress(("\n".join(paths) + "\n").encode()))
    return paths
