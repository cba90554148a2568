"""HTTP download of Common Crawl files that survives throttling, resets and truncation.

Common Crawl's HTTPS endpoint throttles hard (429/503) and drops long transfers; cc_net gave up
on the first error. `fetch_to_file` retries what is worth retrying (connection errors, timeouts,
429, 5xx) with exponential backoff and full jitter, honours `Retry-After`, resumes a broken
transfer with `Range: bytes=N-` instead of starting over, and only renames `dest.part` to `dest`
once the file is verified complete (length, and for `.gz` a gzip stream that decompresses to its
end). So the existence of `dest` means "downloaded and verified" - callers use it as the marker.

Standard library only (urllib / http.client): the Beam workers need nothing extra, and every
response header and byte count stays in view. `sleep`, `clock` and `rng` are injectable so tests
run without real waits.
"""

from __future__ import annotations

import dataclasses
import email.utils
import http.client
import logging
import os
import random
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

log = logging.getLogger(__name__)

USER_AGENT = "cc100-corpus/0.1 (CCNet-style corpus builder; Python urllib)"
DEFAULT_MAX_CONCURRENT = 4  # per process; Common Crawl asks for modest parallelism


class DownloadError(Exception):
    """A download that failed for good: `reason` says why, `attempts` how often it was tried."""

    def __init__(self, url: str, reason: str, attempts: int, *, status: int | None = None,
                 permanent: bool = False):
        self.url = url
        self.reason = reason
        self.attempts = attempts
        self.status = status  # last HTTP status, None for network errors
        self.permanent = permanent  # True: a 4xx that retrying cannot fix (404 = missing)
        plural = "" if attempts == 1 else "s"
        super().__init__(f"{url}: {reason} (after {attempts} attempt{plural})")

    def __reduce__(self):  # picklable (Beam moves exceptions between processes)
        return (_rebuild_error, (self.url, self.reason, self.attempts, self.status, self.permanent))


def _rebuild_error(url, reason, attempts, status, permanent) -> DownloadError:
    return DownloadError(url, reason, attempts, status=status, permanent=permanent)


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try. Waits grow as backoff * 2**(attempt-1), capped; drawn uniformly below."""

    max_attempts: int = 8
    backoff: float = 1.0  # seconds before the first retry (upper bound of the jittered wait)
    backoff_max: float = 120.0  # cap of the exponential growth
    retry_after_max: float = 600.0  # a server's Retry-After is honoured up to this many seconds
    timeout: float = 60.0  # seconds per connect and per socket read
    chunk_size: int = 1 << 20
    verify_gzip: bool = True  # for .gz files: every gzip member must decompress to its end

    def __post_init__(self):
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {self.max_attempts}")
        for name in ("backoff", "backoff_max", "retry_after_max"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.timeout <= 0:
            raise ValueError(f"timeout must be > 0, got {self.timeout}")
        if self.chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {self.chunk_size}")

    def backoff_wait(self, attempt: int, rng: random.Random) -> float:
        """Full jitter (AWS architecture blog): uniform in [0, min(cap, base * 2**(attempt-1))]."""
        return rng.uniform(0.0, min(self.backoff_max, self.backoff * 2 ** (attempt - 1)))


@dataclass
class DownloadResult:
    url: str
    path: str
    bytes: int  # size of the verified file
    attempts: int
    resumed: bool  # some attempt continued a partial file with a Range request
    seconds: float
    bytes_transferred: int = 0  # body bytes received over the network, wasted ones included
    retries: list[str] = field(default_factory=list)  # why each failed attempt failed

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


# -- one attempt ------------------------------------------------------------------------------


class _AttemptFailed(Exception):
    """One attempt failed; the loop in fetch_to_file decides whether to retry."""

    def __init__(self, reason: str, *, retry: bool = True, keep_part: bool = True,
                 retry_after: float | None = None, status: int | None = None):
        super().__init__(reason)
        self.reason = reason
        self.retry = retry
        self.keep_part = keep_part  # the bytes in .part are a valid prefix: resume from them
        self.retry_after = retry_after
        self.status = status


@dataclass
class _Attempt:
    expected_total: int | None = None  # full file size announced by the server
    received: int = 0
    resumed: bool = False


def _open(opener, url: str, offset: int, timeout: float, now: float):
    headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
    if offset > 0:
        headers["Range"] = f"bytes={offset}-"
    request = urllib.request.Request(url, headers=headers)
    try:
        return opener.open(request, timeout=timeout)
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
        raise _AttemptFailed(reason, retry=False, status=status) from None
    except urllib.error.URLError as e:
        raise _AttemptFailed(f"connection error: {e.reason}") from None
    except (OSError, http.client.HTTPException) as e:
        raise _AttemptFailed(f"connection error: {type(e).__name__}: {e}") from None


def _attempt(url: str, part: Path, policy: RetryPolicy, opener, now: float,
             result: _Attempt) -> _Attempt:
    """Stream one response into `part`, appending when the server honours our Range."""
    offset = part.stat().st_size if part.exists() else 0
    response = _open(opener, url, offset, policy.timeout, now)
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
            result.resumed = offset > 0
            mode = "ab"
        elif status == 200:
            if offset > 0:
                log.info("%s: server ignored Range bytes=%d-, restarting from byte 0", url, offset)
            result.expected_total = length
            mode = "wb"  # a full body: start the file over
        else:
            raise _AttemptFailed(f"unexpected HTTP {status}", keep_part=False, status=status)

        try:
            out = open(part, mode)
        except OSError as e:
            raise _AttemptFailed(f"cannot write {part}: {e}", retry=False) from None
        with out:
            while True:
                try:
                    chunk = response.read1(policy.chunk_size)
                except (OSError, http.client.HTTPException) as e:
                    raise _AttemptFailed(f"connection lost after {result.received} body bytes: "
                                         f"{type(e).__name__}: {e}") from None
                if not chunk:
                    break
                try:
                    out.write(chunk)
                except OSError as e:
                    raise _AttemptFailed(f"cannot write {part}: {e}", retry=False) from None
                result.received += len(chunk)
    return result


def _verify(part: Path, expected_total: int | None, policy: RetryPolicy, is_gzip: bool) -> None:
    size = part.stat().st_size
    if expected_total is not None and size != expected_total:
        if size < expected_total:
            raise _AttemptFailed(f"truncated body: have {size} of {expected_total} bytes")
        raise _AttemptFailed(f"body longer than announced: {size} > {expected_total} bytes",
                             keep_part=False)
    if is_gzip and policy.verify_gzip:
        problem = gzip_problem(part)
        if problem:
            raise _AttemptFailed(f"bad gzip: {problem}", keep_part=False)


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
) -> DownloadResult:
    """Download `url` to `dest` (via `dest.part`), retrying and resuming; raise DownloadError.

    An existing `dest.part` (from a killed run) is resumed. On giving up, a `.part` holding a
    valid prefix is left for the next run; one known to be bad is deleted.
    """
    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        raise ValueError(f"not an http(s) URL: {url!r}")
    policy = policy or RetryPolicy()
    if max_attempts is not None:
        policy = dataclasses.replace(policy, max_attempts=max_attempts)
    if timeout is not None:
        policy = dataclasses.replace(policy, timeout=timeout)
    slots = slots or process_slots()
    opener = opener or urllib.request.build_opener()
    rng = rng or random.Random()
    dest = Path(dest)
    part = dest.with_name(dest.name + ".part")
    dest.parent.mkdir(parents=True, exist_ok=True)
    is_gzip = dest.name.endswith(".gz")

    start = clock()
    retries: list[str] = []
    transferred = 0
    resumed = False
    for attempt in range(1, policy.max_attempts + 1):
        outcome = _Attempt()
        try:
            try:
                with slots:
                    _attempt(url, part, policy, opener, wall_clock(), outcome)
            finally:
                transferred += outcome.received
                resumed = resumed or outcome.resumed
            _verify(part, outcome.expected_total, policy, is_gzip)
        except _AttemptFailed as failure:
            if not failure.keep_part:
                _unlink(part)
            retries.append(failure.reason)
            if not failure.retry:
                _unlink(part)
                raise DownloadError(url, failure.reason, attempt, status=failure.status,
                                    permanent=True) from None
            if attempt == policy.max_attempts:
                raise DownloadError(url, failure.reason, attempt, status=failure.status) from None
            if failure.retry_after is not None:
                wait = min(failure.retry_after, policy.retry_after_max)
                why = f"{failure.reason}, Retry-After {failure.retry_after:g} s"
            else:
                wait = policy.backoff_wait(attempt, rng)
                why = failure.reason
            log.warning("retry %d/%d of %s in %.1f s: %s", attempt + 1, policy.max_attempts,
                        url, wait, why)
            sleep(wait)
            continue
        os.replace(part, dest)
        seconds = clock() - start
        result = DownloadResult(url=url, path=str(dest), bytes=dest.stat().st_size,
                                attempts=attempt, resumed=resumed, seconds=seconds,
                                bytes_transferred=transferred, retries=retries)
        log.info("downloaded %s: %.1f MB in %.1f s (%.1f MB/s), %d attempt%s%s", url,
                 result.bytes / 1e6, seconds, result.mb_per_s, attempt,
                 "" if attempt == 1 else "s", ", resumed" if resumed else "")
        return result
    raise AssertionError("unreachable")  # the loop returns or raises
