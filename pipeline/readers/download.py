"""HTTP download of Common Crawl files that survives throttling, resets and truncation.

Common Crawl's HTTPS endpoint throttles hard (429/503) and drops long transfers; cc_net gave up
on the first error. `fetch_to_file` retries what is worth retrying (connection errors, timeouts,
429, 5xx) with exponential backoff and full jitter, honours `Retry-After` up to a cap, resumes a
broken transfer with `Range: bytes=N-` instead of starting over, and only renames its partial
file to `dest` once the file is verified complete. So the existence of `dest` means "downloaded
and verified" - callers use it as the marker.

Complete means: the body reached a length the server stated (Content-Length, the total of a
Content-Range, or a chunked body's terminating chunk). A gzip stream is valid at every member
boundary, so a body that simply ends when the connection closes proves nothing: its length is
asked for again (HEAD, then a one-byte Range request) and the download fails as unverifiable
if no length comes back. Then, for `.gz` names, every gzip member must decompress to its end,
and an optional content check (the caller's: e.g. "is it WARC?") must pass.

Bounds: one file may take at most `RetryPolicy.deadline` seconds (all attempts and waits), may
not be larger than `max_bytes` (a larger declared length is refused before the body is read; a
body growing past it ends the attempt), and a slow transfer is logged every `slow_window`
seconds. Each download writes its own partial file, `dest.part-<random>`, locked (flock) while
in use: downloads that share a cache never write into each other's bytes, a partial left by a
killed or failed run is adopted and resumed, and a verified `dest` that appeared meanwhile is
used as is. Credentials in the URL (user:password@) are sent as an Authorization header that
redirects do not carry, and never appear in logs or errors (`redact_url`).

Standard library only (urllib / http.client): the Beam workers need nothing extra, and every
response header and byte count stays in view. `sleep`, `clock` and `rng` are injectable so tests
run without real waits.
"""

from __future__ import annotations

import base64
import dataclasses
import email.utils
import fcntl
import http.client
import logging
import os
import random
import re
import stat
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from pipeline.utils.cliflags import flag_names, option

log = logging.getLogger(__name__)

USER_AGENT = "cc100-corpus/0.1 (CCNet-style corpus builder; Python urllib)"
DEFAULT_MAX_CONCURRENT = 4  # per process; Common Crawl asks for modest parallelism
PART_SUFFIX = ".part"  # dest.part-<random>: a download in progress (or abandoned: resumable)


class DownloadError(Exception):
    """A download that failed for good: `reason` says why, `attempts` how often it was tried.

    `url` never holds credentials. `attempts` is 0 for a file that was refused without a request
    (e.g. an unsafe listing line)."""

    def __init__(self, url: str, reason: str, attempts: int, *, status: int | None = None,
                 permanent: bool = False):
        self.url = url
        self.reason = reason
        self.attempts = attempts
        self.status = status  # last HTTP status, None for network errors
        self.permanent = permanent  # True: retrying cannot fix it (404, size limit, bad listing line)
        if attempts == 0:
            super().__init__(f"{url}: {reason} (not fetched)")
        else:
            plural = "" if attempts == 1 else "s"
            super().__init__(f"{url}: {reason} (after {attempts} attempt{plural})")

    def __reduce__(self):  # picklable (Beam moves exceptions between processes)
        return (_rebuild_error, (self.url, self.reason, self.attempts, self.status, self.permanent))


def _rebuild_error(url, reason, attempts, status, permanent) -> DownloadError:
    return DownloadError(url, reason, attempts, status=status, permanent=permanent)


def _flag(name: str) -> str:
    """'max_attempts: --max-attempts' (CorpusConfig's style of naming a bad value)."""
    return f"{name}: {POLICY_FLAGS[name]}" if name in POLICY_FLAGS else name


def size(text: str) -> int:
    """The argparse type of a size flag: parse_size, its error as a usage error."""
    import argparse

    try:
        return parse_size(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try, and the bounds of one file. Waits grow as backoff * 2**(attempt-1),
    capped; drawn uniformly below."""

    # the user-facing fields first, in the order of their flags in --help
    max_attempts: int = option("--max-attempts", default=8, metavar="N", help=(
        "attempts per download before the file counts as failed (default %(default)s)"))
    # seconds for one file from its first attempt: transfers and waits
    deadline: float = option("--download-deadline", default=3600.0, metavar="SECONDS", help=(
        "give up on one file after this long, all attempts and waits included "
        "(default %(default)g: a trickling server cannot hang the run)"))
    # a server's Retry-After is honoured up to this many seconds
    retry_after_max: float = option("--max-retry-after", default=120.0, metavar="SECONDS", help=(
        "honour a server's Retry-After up to this long (default %(default)g)"))
    # a larger file is refused (real WET files are ~100-300 MB)
    max_bytes: int = option("--max-segment-bytes", default=1 << 30, type=size, metavar="SIZE", help=(
        "refuse a file larger than this, e.g. 1GiB or 300MB (default 1GiB; "
        "real WET files are 100-300 MB)"))
    # seconds before the first retry (upper bound of the jittered wait); hidden: tests make it tiny
    backoff: float = option("--download-backoff", default=1.0, hidden=True)
    # seconds per connect and per socket read (a flag of `cc100 prefetch` only)
    timeout: float = option("--timeout", default=60.0, help="seconds per read")
    backoff_max: float = 120.0  # cap of the exponential growth
    slow_rate: float = 100_000.0  # bytes/s: a transfer slower than this over slow_window is logged
    slow_window: float = 60.0  # seconds
    chunk_size: int = 1 << 20
    verify_gzip: bool = True  # for .gz files: every gzip member must decompress to its end

    def __post_init__(self):
        if self.max_attempts < 1:
            raise ValueError(f"{_flag('max_attempts')} must be >= 1, got {self.max_attempts}")
        for name in ("backoff", "backoff_max", "retry_after_max", "slow_rate"):
            if getattr(self, name) < 0:
                raise ValueError(f"{_flag(name)} must be >= 0, got {getattr(self, name)}")
        for name in ("timeout", "deadline", "slow_window"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{_flag(name)} must be > 0, got {getattr(self, name)}")
        for name in ("max_bytes", "chunk_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{_flag(name)} must be >= 1, got {getattr(self, name)}")

    def backoff_wait(self, attempt: int, rng: random.Random) -> float:
        """Full jitter (AWS architecture blog): uniform in [0, min(cap, base * 2**(attempt-1))]."""
        return rng.uniform(0.0, min(self.backoff_max, self.backoff * 2 ** (attempt - 1)))


_SIZE_RE = re.compile(r"^\s*(\d+)\s*(|b|kb|mb|gb|tb|kib|mib|gib|tib)\s*$", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
               "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


def parse_size(text: str) -> int:
    """'1073741824', '1GiB', '300MB' -> bytes (KiB/MiB/GiB binary, KB/MB/GB decimal)."""
    match = _SIZE_RE.match(str(text))
    if not match:
        raise ValueError(f"invalid size {text!r}: expected bytes, optionally with a unit "
                         "(e.g. 1073741824, 1GiB, 300MB)")
    return int(match[1]) * _SIZE_UNITS[match[2].lower()]


# The flag of each user-facing RetryPolicy field (`cc100 corpus`, `cc100 prefetch`): the name the
# policy's errors and reasons use.
POLICY_FLAGS = flag_names(RetryPolicy)


# -- credentials in URLs ----------------------------------------------------------------------


def redact_url(url: str) -> str:
    """`url` with any user:password@ replaced by ***@, for logs, errors and stats."""
    parts = urllib.parse.urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urllib.parse.urlunsplit(parts._replace(netloc="***@" + parts.netloc.rsplit("@", 1)[1]))


def split_credentials(url: str) -> tuple[str, str | None]:
    """(url without user:password@, the Basic Authorization header value or None)."""
    parts = urllib.parse.urlsplit(url)
    if "@" not in parts.netloc:
        return url, None
    userinfo, host = parts.netloc.rsplit("@", 1)
    user, _, password = userinfo.partition(":")
    token = f"{urllib.parse.unquote(user)}:{urllib.parse.unquote(password)}".encode()
    clean = urllib.parse.urlunsplit(parts._replace(netloc=host))
    return clean, "Basic " + base64.b64encode(token).decode("ascii")


@dataclass
class DownloadResult:
    url: str  # without credentials
    path: str
    bytes: int  # size of the verified file
    attempts: int
    resumed: bool  # some attempt continued a partial file with a Range request
    seconds: float
    bytes_transferred: int = 0  # body bytes received over the network, wasted ones included
    retries: list[str] = field(default_factory=list)  # why each failed attempt failed
    completed_elsewhere: bool = False  # another download (e.g. another run) finished dest first

    @property
    def mb_per_s(self) -> float:
        return self.bytes_transferred / 1e6 / self.seconds if self.seconds > 0 else 0.0


# -- politeness: a per-process cap on concurrent downloads ------------------------------------


class DownloadSlots:
    """A resizable counting semaphore shared by every download in the process.

    Beam runs several DoFn instances (threads) per worker process; they all share one cap so a
    worker never opens more than `limit` connections to the crawl host at once.
    """

    def __init__(self, limit: int = DEFAULT_MAX_CONCURRENT):
        self._cond = threading.Condition()
        self._limit = 0
        self.active = 0
        self.peak = 0
        self.set_limit(limit)

    @property
    def limit(self) -> int:
        return self._limit

    def set_limit(self, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"max_concurrent must be >= 1, got {limit}")
        with self._cond:
            self._limit = limit
            self._cond.notify_all()

    def __enter__(self) -> "DownloadSlots":
        with self._cond:
            while self.active >= self._limit:
                self._cond.wait()
            self.active += 1
            self.peak = max(self.peak, self.active)
        return self

    def __exit__(self, *exc) -> None:
        with self._cond:
            self.active -= 1
            self._cond.notify()


_PROCESS_SLOTS = DownloadSlots()


def process_slots(max_concurrent: int | None = None) -> DownloadSlots:
    """The process-wide download cap; `max_concurrent` (if given) resets its limit."""
    if max_concurrent is not None:
        _PROCESS_SLOTS.set_limit(max_concurrent)
    return _PROCESS_SLOTS


# -- pure helpers -----------------------------------------------------------------------------


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP-date); None if unusable."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - now)


def parse_content_range(value: str | None) -> tuple[int, int, int | None] | None:
    """'bytes 100-199/1000' -> (100, 199, 1000); total None for '*'; None if malformed."""
    if not value:
        return None
    unit, _, spec = value.strip().partition(" ")
    rng, _, total = spec.partition("/")
    start, _, end = rng.partition("-")
    if unit.lower() != "bytes" or not start.isdigit() or not end.isdigit():
        return None
    if total != "*" and not total.isdigit():
        return None
    first, last = int(start), int(end)
    size = None if total == "*" else int(total)
    if last < first or (size is not None and last >= size):
        return None
    return first, last, size


def unsatisfied_range_total(value: str | None) -> int | None:
    """The total length from a 416 answer's 'bytes */1000'; None if absent or malformed."""
    if value and value.strip().startswith("bytes */"):
        total = value.strip()[len("bytes */"):]
        if total.isdigit():
            return int(total)
    return None


def gzip_problem(path: str | os.PathLike, chunk_size: int = 1 << 16) -> str | None:
    """None if every gzip member in the file decompresses to its end (CRC and size checked).

    Common Crawl files are many concatenated members (one per record). Zero padding between
    members is tolerated, like Python's gzip module does. A file cut exactly at a member
    boundary is still valid gzip; only the Content-Length check can catch that. Reads are
    small on purpose: every member end copies the rest of the buffer (`unused_data`), and WET
    files have ~500 members per MB (64 KiB reads verify about twice as fast as 1 MiB ones).
    """
    members = 0
    d = zlib.decompressobj(wbits=31)
    fresh = True  # `d` has not been fed any byte of a member yet
    with open(path, "rb") as f:
        while data := f.read(chunk_size):
            buf = data
            while buf:
                if fresh:
                    buf = buf.lstrip(b"\0")
                    if not buf:
                        break
                    fresh = False
                try:
                    d.decompress(buf, chunk_size)
                except zlib.error as e:
                    return f"corrupt gzip member {members + 1}: {e}"
                if d.eof:
                    members += 1
                    buf = d.unused_data
                    d = zlib.decompressobj(wbits=31)
                    fresh = True
                else:
                    buf = d.unconsumed_tail
    if not fresh:
        return f"gzip stream ends inside member {members + 1} (truncated)"
    if members == 0:
        return "empty file, no gzip member"
    return None


# -- the partial file -------------------------------------------------------------------------


class PartialFile:
    """This download's partial copy of `dest`: `dest.part-<random>`, flock'ed while it is open.

    On creation it adopts the largest partial of `dest` that no live download holds (left by a
    killed or failed run, or the `dest.part` of older versions) and deletes the other abandoned
    ones; a partial that another download holds is never touched. Every write goes through the
    locked inode, so a concurrent download can neither adopt nor overwrite these bytes.
    """

    def __init__(self, dest: Path):
        self.dest = dest
        self.path = dest.with_name(f"{dest.name}{PART_SUFFIX}-{uuid.uuid4().hex[:12]}")
        fresh = dest.with_name(f".{self.path.name}.new")  # invisible to adopters until locked
        fd = os.open(fresh, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:  # a filesystem without locks: the name is still ours alone, and
                pass  # no partial there is ever adopted (its owner cannot be told apart)
            leftovers = sorted(_abandoned_partials(dest), reverse=True)  # largest first
        except BaseException:
            os.close(fd)
            _unlink(fresh)
            raise
        if leftovers:
            self.adopted, adopted_path, self._fd = leftovers[0]
            os.rename(adopted_path, self.path)
            for _, path, other in leftovers[1:]:  # shorter prefixes of the same file
                _unlink(Path(path))
                os.close(other)
            os.close(fd)
            _unlink(fresh)
        else:
            self.adopted, self._fd = 0, fd
            os.rename(fresh, self.path)

    def size(self) -> int:
        return os.fstat(self._fd).st_size

    def restart(self) -> None:
        """Drop the bytes (they are not a valid prefix), keep the locked file."""
        os.ftruncate(self._fd, 0)

    def writer(self):
        """A binary file object appending to the locked file."""
        return os.fdopen(os.dup(self._fd), "ab")

    def commit(self) -> None:
        """The verified file becomes `dest` (atomic; a copy that appeared meanwhile is replaced)."""
        os.replace(self.path, self.dest)
        os.close(self._fd)

    def discard(self) -> None:
        _unlink(self.path)
        os.close(self._fd)

    def release(self) -> None:
        """Unlock, leaving a valid prefix for a later download to adopt (an empty file is removed)."""
        if self.size() == 0:
            self.discard()
        else:
            os.close(self._fd)


def _abandoned_partials(dest: Path) -> list[tuple[int, str, int]]:
    """(size, path, fd) of each partial of `dest` that no live download holds; each is now
    locked by the caller through `fd`. Symlinks and files of other users are skipped."""
    prefix = dest.name + PART_SUFFIX
    try:
        entries = list(os.scandir(dest.parent))
    except OSError:
        return []
    found = []
    for entry in entries:
        if entry.name != prefix and not entry.name.startswith(prefix + "-"):
            continue
        try:
            if not entry.is_file(follow_symlinks=False):  # a symlink, a FIFO, a directory
                continue
            fd = os.open(entry.path, os.O_RDWR | os.O_NOFOLLOW)
        except OSError:  # gone meanwhile, not ours
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # fails while its download is alive
            st = os.fstat(fd)
            # still under that name (its owner may have renamed it to dest just before dying)
            if stat.S_ISREG(st.st_mode) and os.stat(entry.path, follow_symlinks=False).st_ino == st.st_ino:
                found.append((st.st_size, entry.path, fd))
                continue
        except OSError:
            pass
        os.close(fd)
    return found


# -- one attempt ------------------------------------------------------------------------------


class _AttemptFailed(Exception):
    """One attempt failed; the loop in fetch_to_file decides whether to retry."""

    def __init__(self, reason: str, *, retry: bool = True, keep_part: bool = True,
                 permanent: bool = False, retry_after: float | None = None,
                 status: int | None = None):
        super().__init__(reason)
        self.reason = reason
        self.retry = retry  # False: this call gives up now
        self.keep_part = keep_part  # the bytes in the partial file are a valid prefix: resume
        self.permanent = permanent  # no later run can fix it either (404, size limit)
        self.retry_after = retry_after
        self.status = status


@dataclass
class _Transfer:
    """What every attempt of one fetch_to_file call shares."""

    url: str  # without credentials: safe to log
    auth: str | None  # Authorization header value from the URL's user:password@
    policy: RetryPolicy
    opener: urllib.request.OpenerDirector
    clock: Callable[[], float]
    deadline_at: float = float("inf")  # clock() value; set when the first attempt starts

    def request(self, *, method: str = "GET", byte_range: str | None = None) -> urllib.request.Request:
        headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
        if byte_range:
            headers["Range"] = byte_range
        request = urllib.request.Request(self.url, headers=headers, method=method)
        if self.auth:  # not copied to a redirect's request: credentials stay with this host
            request.add_unredirected_header("Authorization", self.auth)
        return request

    def read_timeout(self) -> float:
        """Per-read timeout, never past the deadline."""
        return max(0.001, min(self.policy.timeout, self.deadline_at - self.clock()))


@dataclass
class _Attempt:
    expected_total: int | None = None  # full file size announced by the server
    chunked_complete: bool = False  # a chunked body ended with its terminating chunk
    received: int = 0
    resumed: bool = False


def _past_deadline(policy: RetryPolicy, detail: str) -> str:
    return f"past the download deadline of {policy.deadline:g} s ({POLICY_FLAGS['deadline']}): {detail}"


def _check_declared_size(policy: RetryPolicy, size: int | None, source: str) -> None:
    if size is not None and size > policy.max_bytes:
        raise _AttemptFailed(
            f"{source} {size} bytes exceeds the size limit of {policy.max_bytes} bytes "
            f"({POLICY_FLAGS['max_bytes']}); the body was not read", retry=False, keep_part=False,
            permanent=True)


def _open(t: _Transfer, offset: int, now: float):
    try:
        return t.opener.open(t.request(byte_range=f"bytes={offset}-" if offset else None),
                             timeout=t.read_timeout())
    except urllib.error.HTTPError as e:
        status, headers_ = e.code, e.headers
        e.close()
        if status == 416 and offset > 0:
            total = unsatisfied_range_total(headers_.get("Content-Range"))
            if total == offset:  # the partial file is already complete (crash before rename)
                return None
            raise _AttemptFailed(f"HTTP 416 for Range bytes={offset}- (server size {total})",
                                 keep_part=False, status=416) from None
        reason = f"HTTP {status} {e.reason}".strip()
        if status == 429 or status >= 500:
            wait = parse_retry_after(headers_.get("Retry-After"), now)
            raise _AttemptFailed(reason, retry_after=wait, status=status) from None
        raise _AttemptFailed(reason, retry=False, keep_part=False, permanent=True,
                             status=status) from None
    except urllib.error.URLError as e:
        raise _AttemptFailed(f"connection error: {e.reason}") from None
    except (OSError, http.client.HTTPException) as e:
        raise _AttemptFailed(f"connection error: {type(e).__name__}: {e}") from None


def _attempt(t: _Transfer, part: PartialFile, now: float, result: _Attempt) -> _Attempt:
    """Stream one response into `part`, appending when the server honours our Range."""
    offset = part.size()
    response = _open(t, offset, now)
    if response is None:
        result.expected_total = offset
        return result
    with response:
        status = response.status
        length = response.headers.get("Content-Length")
        length = int(length) if length and length.isdigit() else None
        if status == 206:
            content_range = response.headers.get("Content-Range")
            parsed = parse_content_range(content_range)
            if parsed is None or parsed[0] != offset or (
                    length is not None and length != parsed[1] - parsed[0] + 1):
                raise _AttemptFailed(
                    f"HTTP 206 with Content-Range {content_range!r} for Range bytes={offset}-, "
                    "restarting from byte 0", keep_part=False, status=206)
            result.expected_total = parsed[2]
            _check_declared_size(t.policy, parsed[2], "Content-Range total")
            result.resumed = offset > 0
        elif status == 200:
            if offset > 0:
                log.info("%s: server ignored Range bytes=%d-, restarting from byte 0", t.url, offset)
            result.expected_total = length
            _check_declared_size(t.policy, length, "Content-Length")
            part.restart()  # a full body: start the file over
            offset = 0
        else:
            raise _AttemptFailed(f"unexpected HTTP {status}", keep_part=False, status=status)
        try:
            out = part.writer()
        except OSError as e:
            raise _AttemptFailed(f"cannot write {part.path}: {e}", retry=False) from None
        with out:
            _copy_body(t, response, out, offset, result)
        result.chunked_complete = bool(response.chunked)  # read to its terminating chunk
    return result


def _copy_body(t: _Transfer, response, out, offset: int, result: _Attempt) -> None:
    """Body -> `out` until it ends, within the size limit and the deadline; log slow spells."""
    policy = t.policy
    window_start, window_bytes = t.clock(), 0
    while True:
        try:
            chunk = response.read1(policy.chunk_size)
        except (OSError, http.client.HTTPException) as e:
            raise _AttemptFailed(f"connection lost after {result.received} body bytes: "
                                 f"{type(e).__name__}: {e}") from None
        if not chunk:
            return
        if offset + result.received + len(chunk) > policy.max_bytes:
            raise _AttemptFailed(
                f"body grew past the size limit of {policy.max_bytes} bytes "
                f"({POLICY_FLAGS['max_bytes']})", retry=False, keep_part=False, permanent=True)
        try:
            out.write(chunk)
        except OSError as e:
            raise _AttemptFailed(f"cannot write {out.name}: {e}", retry=False) from None
        result.received += len(chunk)
        window_bytes += len(chunk)
        now = t.clock()
        if now >= t.deadline_at:
            raise _AttemptFailed(_past_deadline(policy, f"{offset + result.received} bytes of "
                                                f"{result.expected_total or '?'} received"),
                                 retry=False)
        if now - window_start >= policy.slow_window:
            rate = window_bytes / (now - window_start)
            if rate < policy.slow_rate:
                log.warning("slow download %s: %d bytes in the last %.0f s (%.1f kB/s, below %.1f kB/s); "
                            "%d of %s bytes so far, %.0f s left before the deadline", t.url,
                            window_bytes, now - window_start, rate / 1e3, policy.slow_rate / 1e3,
                            offset + result.received, result.expected_total or "?",
                            t.deadline_at - now)
            window_start, window_bytes = now, 0


def _probe_length(t: _Transfer) -> tuple[int | None, str]:
    """The file's length from a HEAD request, else from a one-byte Range request's Content-Range
    total: (length, how it was learnt), or (None, "") if the server states neither."""
    for method, byte_range in (("HEAD", None), ("GET", "bytes=0-0")):
        try:
            with t.opener.open(t.request(method=method, byte_range=byte_range),
                               timeout=t.read_timeout()) as response:  # a body is never read
                if method == "HEAD":
                    length = response.headers.get("Content-Length")
                    if response.status == 200 and length and length.isdigit():
                        return int(length), "HEAD"
                elif response.status == 206:
                    parsed = parse_content_range(response.headers.get("Content-Range"))
                    if parsed is not None and parsed[2] is not None:
                        return parsed[2], "Range bytes=0-0"
        except urllib.error.HTTPError as e:
            e.close()
        except (urllib.error.URLError, OSError, http.client.HTTPException):
            pass
    return None, ""


def _verify(t: _Transfer, part: PartialFile, outcome: _Attempt, is_gzip: bool,
            check_content: Callable[[Path], str | None] | None, slots: DownloadSlots) -> None:
    size = part.size()
    expected, source = outcome.expected_total, "announced"
    if expected is None and not outcome.chunked_complete:
        # Close-delimited: the connection ended, which a cut transfer does too.
        with slots:
            expected, source = _probe_length(t)
        if expected is None:
            raise _AttemptFailed(
                f"unverifiable: the body ({size} bytes) had no Content-Length and ended when the "
                "connection closed, and the server states no length (HEAD, Range bytes=0-0)")
        _check_declared_size(t.policy, expected, f"length from {source}")
        source = f"from {source}"
    if expected is not None and size != expected:
        if size < expected:
            raise _AttemptFailed(f"truncated body: have {size} of {expected} bytes"
                                 + ("" if source == "announced" else f" ({source})"))
        raise _AttemptFailed(f"body longer than announced: {size} > {expected} bytes",
                             keep_part=False)
    if is_gzip and t.policy.verify_gzip:
        problem = gzip_problem(part.path)
        if problem:
            raise _AttemptFailed(f"bad gzip: {problem}", keep_part=False)
    if check_content is not None:
        problem = check_content(part.path)
        if problem:
            raise _AttemptFailed(problem, keep_part=False)


def _unlink(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass


def fetch_to_file(
    url: str,
    dest: str | os.PathLike,
    *,
    policy: RetryPolicy | None = None,
    max_attempts: int | None = None,
    timeout: float | None = None,
    slots: DownloadSlots | None = None,
    opener: urllib.request.OpenerDirector | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    wall_clock: Callable[[], float] = time.time,
    rng: random.Random | None = None,
    check_content: Callable[[Path], str | None] | None = None,
) -> DownloadResult:
    """Download `url` to `dest` (via a partial file), retrying and resuming; raise DownloadError.

    `check_content(path)` returns why a complete body is not the expected kind of file (a
    failed attempt) or None. An abandoned partial file of `dest` is resumed. On giving up, a
    partial file holding a valid prefix is left for the next run; one known to be bad is deleted.
    If `dest` exists when an attempt would start or finish, another download completed it: it
    is used (`completed_elsewhere`).
    """
    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        raise ValueError(f"not an http(s) URL: {redact_url(url)!r}")
    policy = policy or RetryPolicy()
    if max_attempts is not None:
        policy = dataclasses.replace(policy, max_attempts=max_attempts)
    if timeout is not None:
        policy = dataclasses.replace(policy, timeout=timeout)
    slots = slots or process_slots()
    clean_url, auth = split_credentials(url)
    t = _Transfer(clean_url, auth, policy, opener or urllib.request.build_opener(), clock)
    rng = rng or random.Random()
    dest = Path(dest)
    is_gzip = dest.name.endswith(".gz")

    start = clock()
    retries: list[str] = []
    transferred = 0
    resumed = False
    part: PartialFile | None = None

    def done(attempts: int, elsewhere: bool) -> DownloadResult:
        result = DownloadResult(url=t.url, path=str(dest), bytes=dest.stat().st_size,
                                attempts=attempts, resumed=resumed, seconds=clock() - start,
                                bytes_transferred=transferred, retries=retries,
                                completed_elsewhere=elsewhere)
        if elsewhere:
            log.info("%s: using the copy another download completed meanwhile", t.url)
        else:
            log.info("downloaded %s: %.1f MB in %.1f s (%.1f MB/s), %d attempt%s%s", t.url,
                     result.bytes / 1e6, result.seconds, result.mb_per_s, attempts,
                     "" if attempts == 1 else "s", ", resumed" if resumed else "")
        return result

    try:
        for attempt in range(1, policy.max_attempts + 1):
            if dest.exists():
                return done(attempt - 1, elsewhere=True)
            if clock() >= t.deadline_at:
                raise DownloadError(t.url, _past_deadline(policy, f"last problem: {retries[-1]}"),
                                    attempt - 1)
            if part is None:
                try:
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    part = PartialFile(dest)
                except OSError as e:
                    raise DownloadError(t.url, f"cannot write into {dest.parent}: {e}", attempt - 1,
                                        permanent=True) from None
            outcome = _Attempt()
            try:
                try:
                    with slots:
                        if t.deadline_at == float("inf"):  # the clock starts with the first transfer
                            t.deadline_at = clock() + policy.deadline
                        _attempt(t, part, wall_clock(), outcome)
                finally:
                    transferred += outcome.received
                    resumed = resumed or outcome.resumed
                _verify(t, part, outcome, is_gzip, check_content, slots)
            except _AttemptFailed as failure:
                if not failure.keep_part:
                    part.restart()
                retries.append(failure.reason)
                if not failure.retry:
                    raise DownloadError(t.url, failure.reason, attempt, status=failure.status,
                                        permanent=failure.permanent) from None
                if attempt == policy.max_attempts:
                    raise DownloadError(t.url, failure.reason, attempt, status=failure.status) from None
                if failure.retry_after is not None:
                    wait = min(failure.retry_after, policy.retry_after_max)
                    why = f"{failure.reason}, Retry-After {failure.retry_after:g} s"
                else:
                    wait = policy.backoff_wait(attempt, rng)
                    why = failure.reason
                if clock() + wait >= t.deadline_at:
                    raise DownloadError(t.url, _past_deadline(
                        policy, f"no time left to wait {wait:.1f} s for retry {attempt + 1} after: "
                        f"{why}"), attempt, status=failure.status) from None
                log.warning("retry %d/%d of %s in %.1f s: %s", attempt + 1, policy.max_attempts,
                            t.url, wait, why)
                sleep(wait)
                continue
            if dest.exists():
                part.discard()
                part = None
                return done(attempt, elsewhere=True)
            part.commit()
            part = None
            return done(attempt, elsewhere=False)
        raise AssertionError("unreachable")  # the loop returns or raises
    finally:
        if part is not None:
            part.release()
