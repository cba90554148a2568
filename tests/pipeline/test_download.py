"""fetch_to_file against a local fault-injecting server: every fault survived or reported."""

from __future__ import annotations

import base64
import email.utils
import fcntl
import gzip
import logging
import pickle
import random
import socket
import threading
import time
import zlib

import pytest

from pipeline.readers.download import (
    DownloadError,
    DownloadSlots,
    RetryPolicy,
    fetch_to_file,
    gzip_problem,
    parse_content_range,
    parse_retry_after,
    parse_size,
    redact_url,
    split_credentials,
)
from tests.pipeline.ccserver import (
    CCServer,
    bad_content_range,
    build_crawl_tree,
    chunked,
    ignore_range,
    missing,
    no_length,
    pause,
    reset,
    serve_body,
    slow,
    stall,
    throttle,
    trickle,
    truncate,
    unavailable,
    zeros,
)

SNAPSHOT = "CC-MAIN-2019-30"
WET_NAMES = [
    "CC-MAIN-2019-30-sample-00000.warc.wet.gz",
    "CC-MAIN-2019-30-sample-00001.warc.wet.gz",
    "cc_whirlwind_whirlwind.warc.wet.gz",
]
FAST = RetryPolicy(max_attempts=4, backoff=0.5, timeout=5.0, chunk_size=16384)


class Sleeps(list):
    """Injected sleep: records the waits instead of waiting."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


class FakeTime(Sleeps):
    """Injected sleep and clock: a wait moves the clock instead of taking time."""

    def clock(self) -> float:
        return sum(self)


@pytest.fixture(scope="module")
def crawl(shared_data, tmp_path_factory):
    root = tmp_path_factory.mktemp("cc")
    paths = build_crawl_tree(root, SNAPSHOT, [shared_data / "wet" / n for n in WET_NAMES])
    with CCServer(root) as server:
        yield server, root, paths


@pytest.fixture
def server(crawl):
    server, _, _ = crawl
    server.clear_log()
    yield server
    assert server.wait_idle(), "a request of this test is still in flight"
    server.reset_faults()


@pytest.fixture
def big(crawl):
    """(path, bytes) of the ~700 kB sample WET."""
    _, root, paths = crawl
    return paths[0], (root / paths[0]).read_bytes()


def fetch(server, path, dest, sleeps=None, **kw):
    kw.setdefault("policy", FAST)
    return fetch_to_file(server.url(path), dest, opener=server.opener(),
                         sleep=sleeps if sleeps is not None else Sleeps(),
                         rng=random.Random(0), **kw)


def test_clean_download_is_byte_identical(server, big, tmp_path):
    path, data = big
    dest = tmp_path / "a.warc.wet.gz"
    result = fetch(server, path, dest)
    assert dest.read_bytes() == data
    assert (result.bytes, result.attempts, result.resumed) == (len(data), 1, False)
    assert not (tmp_path / "a.warc.wet.gz.part").exists()
    assert [r.range for r in server.requests_for(path)] == [None]


def test_reset_mid_body_resumes_with_range(server, big, tmp_path):
    path, data = big
    server.plan(path, reset(after=100_000))
    dest = tmp_path / "a.warc.wet.gz"
    result = fetch(server, path, dest)
    assert dest.read_bytes() == data
    first, second = server.requests_for(path)
    assert first.range is None and first.fault == "reset"
    offset = int(second.range.removeprefix("bytes=").removesuffix("-"))
    assert 0 < offset <= 100_000 and second.status == 206
    assert second.sent == len(data) - offset  # only the missing tail travelled again
    assert result.resumed and result.attempts == 2
    assert "connection lost" in result.retries[0]


def test_truncated_body_resumes_with_range(server, big, tmp_path):
    path, data = big
    server.plan(path, truncate(after=50_000))
    dest = tmp_path / "a.warc.wet.gz"
    result = fetch(server, path, dest)
    assert dest.read_bytes() == data
    assert [r.range for r in server.requests_for(path)] == [None, "bytes=50000-"]
    assert result.retries == [f"truncated body: have 50000 of {len(data)} bytes"]
    assert result.bytes_transferred == len(data)


def test_truncated_gzip_with_matching_length_is_refetched_whole(server, big, tmp_path):
    path, data = big
    server.plan(path, serve_body(data[: len(data) // 2]))
    dest = tmp_path / "a.warc.wet.gz"
    result = fetch(server, path, dest)
    assert dest.read_bytes() == data
    assert [r.range for r in server.requests_for(path)] == [None, None]  # deleted, not resumed
    assert result.retries[0].startswith("bad gzip: gzip stream ends inside member")
    assert not result.resumed


def test_retry_after_seconds_is_honoured_and_capped(server, big, tmp_path):
    path, data = big
    server.plan(path, throttle(retry_after="7"), unavailable(503, retry_after="100000"))
    sleeps = Sleeps()
    result = fetch(server, path, tmp_path / "a.gz", sleeps,
                   policy=RetryPolicy(max_attempts=3, retry_after_max=60.0))
    assert sleeps == [7.0, 60.0]
    assert [r.status for r in server.requests_for(path)] == [429, 503, 200]
    assert result.attempts == 3 and result.retries[0] == "HTTP 429 Too Many Requests"


def test_retry_after_http_date(server, big, tmp_path):
    path, _ = big
    now = 1_700_000_000.0
    server.plan(path, throttle(retry_after=email.utils.formatdate(now + 42, usegmt=True)))
    sleeps = Sleeps()
    fetch(server, path, tmp_path / "a.gz", sleeps, wall_clock=lambda: now)
    assert sleeps == [42.0]


def test_503_without_retry_after_backs_off_with_full_jitter(server, big, tmp_path):
    path, data = big
    server.plan(path, unavailable(503), unavailable(500), unavailable(502))
    sleeps = Sleeps()
    result = fetch(server, path, tmp_path / "a.gz", sleeps)
    expected_rng = random.Random(0)
    assert sleeps == [expected_rng.uniform(0, 0.5), expected_rng.uniform(0, 1.0),
                      expected_rng.uniform(0, 2.0)]
    assert result.attempts == 4 and (tmp_path / "a.gz").read_bytes() == data


def test_404_is_reported_at_once_without_retries(server, tmp_path):
    path = f"crawl-data/{SNAPSHOT}/segments/x/wet/gone.warc.wet.gz"
    server.always(path, missing())
    sleeps = Sleeps()
    with pytest.raises(DownloadError) as info:
        fetch(server, path, tmp_path / "gone.gz", sleeps)
    err = info.value
    assert (err.attempts, err.status, err.permanent) == (1, 404, True)
    assert "HTTP 404" in str(err) and path in str(err)
    assert sleeps == [] and len(server.requests_for(path)) == 1
    assert list(tmp_path.iterdir()) == []
    assert pickle.loads(pickle.dumps(err)).reason == err.reason


def test_gives_up_after_max_attempts_and_keeps_valid_prefix(server, big, tmp_path):
    path, data = big
    server.plan(path, truncate(after=30_000))
    server.always(path, unavailable(503))
    sleeps = Sleeps()
    with pytest.raises(DownloadError) as info:
        fetch(server, path, tmp_path / "a.gz", sleeps)
    assert info.value.attempts == 4 and not info.value.permanent
    assert "HTTP 503" in info.value.reason
    assert len(server.requests_for(path)) == 4 and len(sleeps) == 3
    assert not (tmp_path / "a.gz").exists()
    # the next run (server healthy again) resumes the 30 000 bytes kept in the partial file
    (part,) = tmp_path.glob("a.gz.part-*")
    assert part.read_bytes() == data[:30_000]
    server.always(path, None)
    server.clear_log()
    result = fetch(server, path, tmp_path / "a.gz")
    assert [r.range for r in server.requests_for(path)] == ["bytes=30000-"]
    assert result.resumed and (tmp_path / "a.gz").read_bytes() == data


def test_server_ignoring_range_restarts_cleanly(server, big, tmp_path):
    path, data = big
    (tmp_path / "a.gz.part").write_bytes(data[:40_000])
    server.plan(path, ignore_range())
    result = fetch(server, path, tmp_path / "a.gz")
    assert (tmp_path / "a.gz").read_bytes() == data
    (request,) = server.requests_for(path)
    assert request.range == "bytes=40000-" and request.status == 200
    assert result.attempts == 1 and not result.resumed


def test_wrong_content_range_restarts_from_zero(server, big, tmp_path):
    path, data = big
    (tmp_path / "a.gz.part").write_bytes(data[:40_000])
    server.plan(path, bad_content_range())
    result = fetch(server, path, tmp_path / "a.gz")
    assert (tmp_path / "a.gz").read_bytes() == data
    assert [r.range for r in server.requests_for(path)] == ["bytes=40000-", None]
    assert "Content-Range" in result.retries[0]


def test_complete_part_is_verified_and_renamed_after_416(server, big, tmp_path):
    path, data = big
    (tmp_path / "a.gz.part").write_bytes(data)  # a crash between download and rename
    result = fetch(server, path, tmp_path / "a.gz")
    (request,) = server.requests_for(path)
    assert request.status == 416 and request.range == f"bytes={len(data)}-"
    assert (tmp_path / "a.gz").read_bytes() == data and result.bytes_transferred == 0


def test_read_timeout_is_retried(server, big, tmp_path):
    path, data = big
    server.plan(path, stall(seconds=5.0))
    result = fetch(server, path, tmp_path / "a.gz", policy=RetryPolicy(timeout=0.3))
    assert (tmp_path / "a.gz").read_bytes() == data
    assert result.attempts == 2 and "timed out" in result.retries[0]


def test_connection_refused_is_retried_then_reported(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    sleeps = Sleeps()
    with pytest.raises(DownloadError) as info:
        fetch_to_file(f"http://127.0.0.1:{port}/x.gz", tmp_path / "x.gz", sleep=sleeps,
                      policy=FAST, opener=CCServer.opener())
    assert info.value.attempts == 4 and len(sleeps) == 3
    assert "connection error" in info.value.reason


def test_not_gzip_named_files_skip_gzip_check(server, crawl, tmp_path):
    _, root, _ = crawl
    (root / "plain.txt").write_bytes(b"not gzip at all\n")
    result = fetch(server, "plain.txt", tmp_path / "plain.txt")
    assert result.attempts == 1 and (tmp_path / "plain.txt").read_bytes() == b"not gzip at all\n"


def test_concurrent_downloads_respect_the_cap(server, crawl, tmp_path):
    _, root, paths = crawl
    slots = DownloadSlots(2)
    for p in paths:
        server.plan(p, slow(0.2))
    errors = []

    def run(i, p):
        try:
            fetch(server, p, tmp_path / f"{i}.gz", slots=slots)
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=run, args=(i, p)) for i, p in enumerate(paths * 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert server.peak_concurrency <= 2 and slots.peak == 2
    assert len(server.requests) == 6


def test_slots_block_beyond_limit():
    slots = DownloadSlots(2)
    entered = threading.Semaphore(0)
    gate = threading.Event()

    def hold():
        with slots:
            entered.release()
            gate.wait()

    threads = [threading.Thread(target=hold) for _ in range(3)]
    for t in threads:
        t.start()
    assert entered.acquire(timeout=10) and entered.acquire(timeout=10)
    assert not entered.acquire(timeout=0.2)  # the third waits for a free slot
    assert slots.active == 2
    gate.set()
    assert entered.acquire(timeout=10)
    for t in threads:
        t.join()
    assert slots.peak == 2 and slots.active == 0
    with pytest.raises(ValueError, match="max_concurrent"):
        slots.set_limit(0)


# -- pure helpers -----------------------------------------------------------------------------


def test_gzip_problem_on_real_multi_member_wet(shared_data, tmp_path):
    data = (shared_data / "wet" / WET_NAMES[2]).read_bytes()
    cases = {
        "ok.gz": data,
        "padded.gz": data + b"\0" * 10 + data,
        "cut.gz": data[:-5],
        "cut_header.gz": data + data[:6],
        "garbage.gz": data + b"garbage",
        "empty.gz": b"",
        "text.gz": b"plain text, not gzip",
    }
    crc = bytearray(data)
    first_member_end = len(data) - len(_rest(data))
    crc[first_member_end - 8] ^= 0xFF  # flip a CRC32 byte of the first member's trailer
    cases["crc.gz"] = bytes(crc)
    problems = {}
    for name, content in cases.items():
        (tmp_path / name).write_bytes(content)
        problems[name] = gzip_problem(tmp_path / name, chunk_size=512)
    assert problems["ok.gz"] is None and problems["padded.gz"] is None
    assert "ends inside member 2" in problems["cut.gz"]  # the file has 2 members
    assert "ends inside member 3" in problems["cut_header.gz"]
    assert "corrupt gzip member 3" in problems["garbage.gz"]
    assert problems["empty.gz"] == "empty file, no gzip member"
    assert "corrupt gzip member 1" in problems["text.gz"]
    assert "corrupt gzip member 1" in problems["crc.gz"]
    assert gzip.decompress(data)  # sanity: the source itself is valid


def _rest(data: bytes) -> bytes:
    """The bytes after the first gzip member."""
    d = zlib.decompressobj(31)
    d.decompress(data)
    return d.unused_data


def test_parse_retry_after():
    now = 1_000_000.0
    assert parse_retry_after("120", now) == 120.0
    assert parse_retry_after(email.utils.formatdate(now + 30, usegmt=True), now) == 30.0
    assert parse_retry_after(email.utils.formatdate(now - 30, usegmt=True), now) == 0.0
    assert parse_retry_after("soon", now) is None and parse_retry_after(None, now) is None


def test_parse_content_range():
    assert parse_content_range("bytes 100-199/1000") == (100, 199, 1000)
    assert parse_content_range("bytes 0-9/*") == (0, 9, None)
    for bad in ("bytes 10-5/100", "bytes 0-100/100", "items 0-1/2", "bytes */100", "", None):
        assert parse_content_range(bad) is None


def test_policy_validation_names_the_field():
    with pytest.raises(ValueError, match="max_attempts"):
        RetryPolicy(max_attempts=0)
    with pytest.raises(ValueError, match="timeout"):
        RetryPolicy(timeout=0)
    with pytest.raises(ValueError, match="backoff_max"):
        RetryPolicy(backoff_max=-1)
    policy = RetryPolicy(backoff=1.0, backoff_max=4.0)
    waits = [policy.backoff_wait(n, random.Random(n)) for n in range(1, 10)]
    assert all(0 <= w <= min(4.0, 2 ** (n - 1)) for n, w in enumerate(waits, start=1))


def test_non_http_url_is_rejected_before_any_attempt(tmp_path):
    with pytest.raises(ValueError, match="not an http"):
        fetch_to_file("gs://bucket/a.gz", tmp_path / "a.gz", sleep=Sleeps())


# -- complete means: the stated length was reached (#14 §2) -------------------------------------


def _member_ends(data: bytes) -> list[int]:
    """Byte offsets where the gzip members of `data` end."""
    ends, pos = [], 0
    while pos < len(data):
        d = zlib.decompressobj(31)
        d.decompress(data[pos:])
        pos = len(data) - len(d.unused_data)
        ends.append(pos)
    return ends


def _parts(directory) -> list:
    return sorted(p.name for p in directory.iterdir() if ".part" in p.name)


def test_close_delimited_body_cut_at_a_gzip_member_boundary_is_resumed(server, big, tmp_path):
    """No Content-Length and the connection closes at a member boundary: valid gzip, 2/3 of the
    records. The length is asked for (HEAD), the cut is seen, the rest is fetched with Range."""
    path, data = big
    cut = [end for end in _member_ends(data) if end < len(data) * 2 // 3][-1]
    server.plan(path, no_length(after=cut))
    result = fetch(server, path, tmp_path / "a.gz")
    assert (tmp_path / "a.gz").read_bytes() == data
    assert [(r.method, r.range) for r in server.requests_for(path)] == [
        ("GET", None), ("HEAD", None), ("GET", f"bytes={cut}-")]
    assert result.retries == [f"truncated body: have {cut} of {len(data)} bytes (from HEAD)"]
    assert result.resumed and _parts(tmp_path) == []


def test_close_delimited_body_is_verified_by_a_range_probe_when_head_says_nothing(server, big, tmp_path):
    path, data = big
    server.always(path, no_length())  # no Content-Length anywhere, but Range answers carry the total
    result = fetch(server, path, tmp_path / "a.gz")
    assert (tmp_path / "a.gz").read_bytes() == data and result.attempts == 1
    assert [(r.method, r.range) for r in server.requests_for(path)] == [
        ("GET", None), ("HEAD", None), ("GET", "bytes=0-0")]


def test_close_delimited_body_of_unknowable_length_is_a_failed_download(server, big, tmp_path):
    path, _ = big
    server.always(path, no_length(hide_size=True))
    with pytest.raises(DownloadError) as info:
        fetch(server, path, tmp_path / "a.gz")
    assert info.value.attempts == FAST.max_attempts and "unverifiable" in info.value.reason
    assert not (tmp_path / "a.gz").exists()


def test_chunked_body_is_complete_only_with_its_terminating_chunk(server, big, tmp_path):
    path, data = big
    server.plan(path, chunked())
    result = fetch(server, path, tmp_path / "a.gz")
    assert (tmp_path / "a.gz").read_bytes() == data and result.attempts == 1
    assert [r.method for r in server.requests_for(path)] == ["GET"]  # no length probe needed

    server.clear_log()
    cut = [end for end in _member_ends(data) if end < len(data) // 2][-1]
    server.plan(path, chunked(after=cut))  # closes at a member boundary, no terminating chunk
    result = fetch(server, path, tmp_path / "b.gz")
    assert (tmp_path / "b.gz").read_bytes() == data
    assert "connection lost" in result.retries[0] and result.resumed


# -- bounds: size, deadline, Retry-After, slow transfers (#14 §2, #15 §3) ---------------------


def test_declared_length_above_the_limit_is_refused_before_the_body(server, big, tmp_path):
    path, _ = big
    server.always(path, zeros(length=10 << 30))  # "10 GiB" of zeros
    policy = RetryPolicy(max_attempts=4, backoff=0.0, max_bytes=1 << 20)
    with pytest.raises(DownloadError) as info:
        fetch(server, path, tmp_path / "a.gz", policy=policy)
    err = info.value
    assert (err.attempts, err.permanent) == (1, True)  # a refused size is not retried
    assert err.reason.startswith(f"Content-Length {10 << 30} bytes exceeds the size limit of 1048576 bytes")
    assert "--max-segment-bytes" in err.reason
    assert server.wait_idle()
    (request,) = server.requests_for(path)
    assert request.sent < 16 << 20  # what sat in socket buffers, not the body
    assert list(tmp_path.iterdir()) == []


def test_body_growing_past_the_limit_ends_the_attempt_and_is_removed(server, big, tmp_path):
    path, _ = big
    server.always(path, zeros(length=None))  # close-delimited, endless
    with pytest.raises(DownloadError) as info:
        fetch(server, path, tmp_path / "a.gz", policy=RetryPolicy(max_attempts=4, max_bytes=300_000,
                                                                  chunk_size=16384))
    assert (info.value.attempts, info.value.permanent) == (1, True)
    assert info.value.reason == "body grew past the size limit of 300000 bytes (--max-segment-bytes)"
    assert len(server.requests_for(path)) == 1 and list(tmp_path.iterdir()) == []


def test_trickling_server_hits_the_deadline_and_is_logged_as_slow(server, big, tmp_path, caplog):
    path, data = big
    server.plan(path, trickle(nbytes=100, interval=0.05, seconds=20))
    policy = RetryPolicy(max_attempts=4, deadline=1.0, slow_window=0.3, slow_rate=10_000)
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="pipeline.readers.download"):
        with pytest.raises(DownloadError) as info:
            fetch(server, path, tmp_path / "a.gz", policy=policy)
    assert time.monotonic() - started < 10  # not the 20 s the trickle would take, nor hours
    err = info.value
    assert err.attempts == 1 and err.reason.startswith("past the download deadline of 1 s (--download-deadline)")
    assert "slow download" in caplog.text and "below 10.0 kB/s" in caplog.text
    (part,) = tmp_path.glob("a.gz.part-*")  # a valid prefix, kept for the next run to resume
    assert 0 < part.stat().st_size < len(data) and data.startswith(part.read_bytes())


def test_retry_after_is_capped_and_the_deadline_bounds_all_waits(server, big, tmp_path):
    path, _ = big
    server.always(path, throttle(retry_after="3600"))
    t = FakeTime()
    with pytest.raises(DownloadError) as info:
        fetch(server, path, tmp_path / "a.gz", t, clock=t.clock, policy=RetryPolicy())
    assert t == [120.0] * 7  # capped (not 3600 nor 600), and only max_attempts - 1 waits
    t = FakeTime()
    with pytest.raises(DownloadError) as info:
        fetch(server, path, tmp_path / "a.gz", t, clock=t.clock, policy=RetryPolicy(deadline=300))
    assert t == [120.0, 120.0] and info.value.attempts == 3  # a third wait would pass the deadline
    assert info.value.reason.startswith("past the download deadline of 300 s")
    assert "Retry-After 3600 s" in info.value.reason


# -- concurrent downloads share a cache (#15 §5) ------------------------------------------------


def test_two_downloads_of_one_file_into_one_cache_both_succeed(server, big, tmp_path):
    """A starts, B starts while A is mid-body and finishes first; A then uses B's file."""
    path, data = big
    server.plan(path, pause(after=200_000, seconds=1.0))
    dest = tmp_path / "a.gz"
    results, errors = {}, []

    def run(name):
        try:
            results[name] = fetch(server, path, dest)
        except Exception as e:  # reported below
            errors.append(e)

    a = threading.Thread(target=run, args=("a",))
    a.start()
    for _ in range(500):  # until A is inside its pause
        if any(r.sent >= 200_000 for r in server.requests_for(path)):
            break
        time.sleep(0.01)
    b = threading.Thread(target=run, args=("b",))
    b.start()
    a.join()
    b.join()
    assert errors == []
    assert dest.read_bytes() == data and _parts(tmp_path) == []
    assert [r.range for r in server.requests_for(path)] == [None, None]  # B never touched A's partial
    assert results["a"].completed_elsewhere and not results["b"].completed_elsewhere


def test_abandoned_partials_are_adopted_and_live_ones_left_alone(server, big, tmp_path):
    path, data = big
    (tmp_path / "a.gz.part-dead").write_bytes(data[:50_000])  # a killed run's
    (tmp_path / "a.gz.part-older").write_bytes(data[:10_000])  # a shorter leftover
    (tmp_path / "a.gz.part-live").write_bytes(data[:80_000])  # a running download's
    outside = tmp_path / "outside"
    outside.write_bytes(b"not ours")
    (tmp_path / "a.gz.part-link").symlink_to(outside)
    with open(tmp_path / "a.gz.part-live", "rb") as live:
        fcntl.flock(live, fcntl.LOCK_EX)  # what a live download holds
        result = fetch(server, path, tmp_path / "a.gz")
        assert (tmp_path / "a.gz").read_bytes() == data and result.resumed
        assert [r.range for r in server.requests_for(path)] == ["bytes=50000-"]
        assert _parts(tmp_path) == ["a.gz.part-link", "a.gz.part-live"]
        assert (tmp_path / "a.gz.part-live").read_bytes() == data[:80_000]
    assert outside.read_bytes() == b"not ours"


# -- credentials in the URL (#15 §2) -----------------------------------------------------------


def test_credentials_are_sent_as_a_header_and_never_shown(server, big, tmp_path, caplog):
    path, data = big
    url = server.url(path).replace("http://", "http://alice:s3cr%40t@")
    server.plan(path, unavailable(503))
    with caplog.at_level(logging.INFO, logger="pipeline.readers.download"):
        result = fetch_to_file(url, tmp_path / "a.gz", opener=server.opener(), sleep=Sleeps(), policy=FAST)
    assert (tmp_path / "a.gz").read_bytes() == data and result.url == server.url(path)
    for request in server.requests_for(path):  # the path arrived clean, the credentials as Basic auth
        assert request.headers["Authorization"] == "Basic " + base64.b64encode(b"alice:s3cr@t").decode()
    server.always(path, missing())
    with pytest.raises(DownloadError) as info:
        fetch_to_file(url, tmp_path / "b.gz", opener=server.opener(), sleep=Sleeps(), policy=FAST)
    shown = caplog.text + str(info.value) + info.value.url + repr(result)
    assert "s3cr" not in shown and "alice" not in shown
    assert redact_url("https://u:p@h:1/x") == "https://***@h:1/x" and redact_url("http://h/") == "http://h/"
    assert split_credentials("http://h/x") == ("http://h/x", None)
    with pytest.raises(ValueError) as bad:
        fetch_to_file("ftp://alice:s3cret@h/x", tmp_path / "c.gz")
    assert "s3cret" not in str(bad.value)


def test_parse_size_and_new_policy_fields():
    assert parse_size("1073741824") == parse_size("1GiB") == parse_size("1 gib") == 1 << 30
    assert parse_size("300MB") == 300_000_000 and parse_size("64KiB") == 65536
    for bad in ("", "1.5G", "-1", "10 parsecs"):
        with pytest.raises(ValueError, match="invalid size"):
            parse_size(bad)
    with pytest.raises(ValueError, match="deadline: --download-deadline must be > 0"):
        RetryPolicy(deadline=0)
    with pytest.raises(ValueError, match="max_bytes: --max-segment-bytes must be >= 1"):
        RetryPolicy(max_bytes=0)
    assert RetryPolicy().max_bytes == 1 << 30 and RetryPolicy().retry_after_max <= RetryPolicy().backoff_max


def test_an_unwritable_cache_is_a_download_error_not_a_traceback(server, big, tmp_path):
    path, _ = big
    (tmp_path / "file").write_text("a file where the cache directory should be")
    with pytest.raises(DownloadError) as info:
        fetch(server, path, tmp_path / "file" / "a.gz")
    assert info.value.reason.startswith(f"cannot write into {tmp_path / 'file'}") and info.value.permanent
    assert server.requests_for(path) == []
