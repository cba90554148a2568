"""Common Crawl snapshots: name -> wet.paths.gz -> selected WET files -> local cached copies.

A snapshot (crawl) such as CC-MAIN-2019-30 lists its WET files, one relative path a line, in
crawl-data/{snapshot}/wet.paths.gz. A "segment" here is one line of that list (one WET file,
~150 MB, ~40k documents) numbered from 0, as in cc_net; `--segments 0-99` selects the first 100.

A listing cannot steer downloads: every segment is fetched from `--cc-base-url`, and a line
that is not a relative Common Crawl path (`listing_problem`: an absolute URL, `..`, a backslash,
a NUL, an empty line, ...) is never fetched - `select_segments` refuses the selection naming the
line, or (allow_invalid) the fetcher reports that segment failed without a request.

`SegmentFetcher.fetch(path)` returns a verified local copy under the cache directory, at
CACHE/HOST[_PORT]/[PREFIX/]<the Common Crawl path> (`cache_root`: two hosts never share a cache
path). A file in the cache is complete by construction (fetch_to_file renames only verified
files, and the fetcher also checks that the body is WARC), so its existence is the "downloaded"
marker and re-runs skip it.
"""

from __future__ import annotations

import argparse
import gzip
import logging
import random
import re
import sys
import threading
import time
import urllib.parse
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from pipeline.contracts import parse_segments, validate_snapshot  # the parsers every command shares
from pipeline.utils import logs
from pipeline.utils.cliflags import add_config_flags, config_from_args, option, sub_config
from pipeline.readers.download import (
    DEFAULT_MAX_CONCURRENT,
    DownloadError,
    DownloadResult,
    RetryPolicy,
    fetch_to_file,
    process_slots,
    redact_url,
)

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://data.commoncrawl.org/"
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")
_UNSAFE_NAME_RE = re.compile(r"[^A-Za-z0-9_.-]")
LISTING_ROOT = "crawl-data"  # every line of a wet.paths listing starts with it


def validate_base_url(base_url: str) -> str:
    """Return the URL with a trailing '/', or ValueError for anything but http(s)://host/[prefix/].

    Credentials (user:password@) are allowed and never shown (`redact_url`)."""
    parts = urllib.parse.urlsplit(base_url)
    problem = None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        problem = "expected http(s)://host/[prefix/]"
    elif _CONTROL_RE.search(base_url) or "\\" in base_url:
        problem = "it contains a control character or a backslash"
    elif parts.query or parts.fragment:
        problem = "a query or fragment is not allowed"
    elif any(p in (".", "..") for p in parts.path.split("/")):
        problem = "'.' or '..' in its path"
    else:
        try:
            parts.port
        except ValueError:
            problem = "invalid port"
    if problem:
        raise ValueError(f"invalid --cc-base-url {redact_url(base_url)!r}: {problem}")
    return base_url if base_url.endswith("/") else base_url + "/"


def cache_root(cache_dir: str | Path, base_url: str) -> Path:
    """Where files of `base_url` are cached: CACHE/HOST[_PORT]/[PREFIX/], so that the same
    Common Crawl path from two hosts (or two mirrors on one host) never lands on one file."""
    parts = urllib.parse.urlsplit(validate_base_url(base_url))
    host = parts.hostname if parts.port is None else f"{parts.hostname}_{parts.port}"
    prefix = [_UNSAFE_NAME_RE.sub("_", p) for p in parts.path.split("/") if p]
    return Path(cache_dir, _UNSAFE_NAME_RE.sub("_", host), *prefix)


def listing_problem(line: str) -> str | None:
    """Why a wet.paths line must never be fetched, or None for a relative Common Crawl path
    (crawl-data/..., fetched from --cc-base-url and cached under that host)."""
    if not line.strip():
        return "an empty line"
    if "\0" in line:
        return "it contains a NUL byte"
    if _CONTROL_RE.search(line):
        return "it contains a control character"
    if "\\" in line:
        return "it contains a backslash"
    if "://" in line or line.startswith("//") or urllib.parse.urlsplit(line).scheme:
        return "an absolute URL (segments are fetched only from --cc-base-url)"
    if line.startswith("/"):
        return "an absolute path"
    parts = line.split("/")
    if ".." in parts:
        return "it contains '..'"
    if "" in parts or "." in parts:
        return "not a normalised path (an empty or '.' part)"
    if parts[0] != LISTING_ROOT:
        return f"not a Common Crawl path (they start with {LISTING_ROOT}/)"
    return None


def paths_url(snapshot: str, base_url: str = DEFAULT_BASE_URL) -> str:
    return validate_base_url(base_url) + f"{LISTING_ROOT}/{validate_snapshot(snapshot)}/wet.paths.gz"


def segment_url(base_url: str, path: str) -> str:
    """URL of one line of wet.paths.gz (a relative path) on the host or mirror `base_url`."""
    return validate_base_url(base_url) + urllib.parse.quote(_checked_line(path))


def _checked_line(path: str) -> str:
    problem = listing_problem(path)
    if problem:
        raise ValueError(f"unsafe segment path {path!r}: {problem}")
    return path


def warc_problem(path: str | Path) -> str | None:
    """None if the file starts like a WARC/WET file ('WARC/' after gunzip), else what it is."""
    try:
        with open(path, "rb") as raw:
            gzipped = raw.read(2) == b"\x1f\x8b"
        with (gzip.open if gzipped else open)(path, "rb") as f:
            head = f.read(64)
    except (OSError, EOFError, zlib.error) as e:
        return f"not a WARC/WET file: cannot read it ({type(e).__name__}: {e})"
    if head.startswith(b"WARC/"):
        return None
    return f"not a WARC/WET file: it starts with {head[:40]!r}" if head else "not a WARC/WET file: it is empty"


def select_segments(paths: list[str], spec: str, *, allow_invalid: bool = False) -> list[str]:
    """The lines of wet.paths picked by `spec` (see parse_segments), in listing order.

    A picked line that is not a relative Common Crawl path (listing_problem) is a ValueError
    naming its line number and the reason, unless `allow_invalid`: then it is returned, and the
    fetcher reports that segment failed without fetching it."""
    indices = parse_segments(spec) or range(len(paths))
    out_of_range = [i for i in indices if i >= len(paths)]
    if out_of_range:
        raise ValueError(f"--segments {spec!r}: segment {out_of_range[0]} does not exist, "
                         f"the snapshot lists {len(paths)} WET files (0-{len(paths) - 1})")
    bad = [(i, problem) for i in indices if (problem := listing_problem(paths[i]))]
    if bad and not allow_invalid:
        i, problem = bad[0]
        more = f" (and {len(bad) - 1} more bad line{'s' if len(bad) > 2 else ''})" if len(bad) > 1 else ""
        raise ValueError(f"wet.paths.gz line {i + 1} (segment {i}) is not a relative Common Crawl "
                         f"path: {problem}: {paths[i]!r}{more}; nothing was downloaded "
                         "(--allow-failed-segments reports such segments as failed instead)")
    return [paths[i] for i in indices]


def read_paths(path: str | Path) -> list[str]:
    """Lines of a (gzipped) wet.paths file, whitespace-stripped, every line kept in its place
    (so segment N is line N+1; select_segments checks the lines it picks)."""
    path = Path(path)
    opener = gzip.open if path.name.endswith(".gz") else open
    try:
        with opener(path, "rt", encoding="utf-8", newline="") as f:
            lines = [line.strip() for line in f.read().split("\n")]
    except (OSError, EOFError, UnicodeDecodeError) as e:
        raise ValueError(f"cannot read WET path listing {path}: {e}") from None
    if lines and not lines[-1]:
        lines.pop()  # the newline that ends the last line
    if not any(lines):
        raise ValueError(f"WET path listing {path} is empty")
    return lines


def wet_paths(snapshot: str, base_url: str = DEFAULT_BASE_URL,
              cache_dir: str | Path = ".cache/commoncrawl", **fetch_kwargs) -> list[str]:
    """The WET file list of `snapshot`, downloaded once into cache_dir (same layout as the host)."""
    snapshot = validate_snapshot(snapshot)
    local = cache_root(cache_dir, base_url) / f"{LISTING_ROOT}/{snapshot}/wet.paths.gz"
    if not local.exists():
        fetch_to_file(paths_url(snapshot, base_url), local, **fetch_kwargs)
    return read_paths(local)


@dataclass
class SegmentFetcher:
    """Fetch WET files of wet.paths into `cache_dir`, remembering what succeeded and failed.

    Plain picklable config (no open sockets or locks) so a Beam DoFn can hold one; the
    concurrency cap is the process-wide one from pipeline.readers.download.
    """

    cache_dir: str
    base_url: str = DEFAULT_BASE_URL
    policy: RetryPolicy = field(default_factory=RetryPolicy)
    max_concurrent: int = DEFAULT_MAX_CONCURRENT
    sleep: Callable[[float], None] = time.sleep
    opener_factory: Callable | None = None  # () -> urllib OpenerDirector; tests bypass proxies
    rng_seed: int | None = None
    downloaded: dict[str, DownloadResult] = field(default_factory=dict)
    cached: list[str] = field(default_factory=list)
    failures: dict[str, DownloadError] = field(default_factory=dict)

    def __post_init__(self):
        if "://" in str(self.cache_dir):
            raise ValueError(f"cache_dir must be a local directory, got {self.cache_dir!r}")
        self.cache_dir = str(self.cache_dir)
        self.base_url = validate_base_url(self.base_url)
        if self.max_concurrent < 1:
            raise ValueError(f"max_concurrent must be >= 1, got {self.max_concurrent}")

    def local_path(self, path: str) -> Path:
        """Where `path` (a listing line) is cached: cache_root(cache_dir, base_url) / path."""
        return cache_root(self.cache_dir, self.base_url) / _checked_line(path)

    def is_cached(self, path: str) -> bool:
        return self.local_path(path).exists()

    def fetch(self, path: str) -> Path:
        """A verified local copy of `path`; DownloadError (also recorded in .failures) if not.

        A line that is not a relative Common Crawl path fails at once, without a request. A copy
        that another download (another run sharing the cache) completed meanwhile counts as
        cached: that run owns it and removes it when done."""
        problem = listing_problem(path)
        if problem:
            error = DownloadError(repr(path), f"not a relative Common Crawl path: {problem}", 0,
                                  permanent=True)
            self.failures[path] = error
            raise error
        local = self.local_path(path)
        if local.exists():
            self.cached.append(path)
            return local
        rng = random.Random(None if self.rng_seed is None else f"{self.rng_seed}:{path}")
        try:
            result = fetch_to_file(
                segment_url(self.base_url, path), local, policy=self.policy,
                slots=process_slots(self.max_concurrent), sleep=self.sleep, rng=rng,
                opener=self.opener_factory() if self.opener_factory else None,
                check_content=warc_problem)
        except DownloadError as e:
            self.failures[path] = e
            raise
        self.failures.pop(path, None)
        if result.completed_elsewhere:
            self.cached.append(path)
        else:
            self.downloaded[path] = result
        return local

    def try_fetch(self, path: str) -> Path | None:
        """Like fetch, but a failure returns None (it stays recorded in .failures)."""
        try:
            return self.fetch(path)
        except DownloadError:
            return None

    def discard(self, path: str) -> None:
        """Delete the cached copy (after processing, to bound disk use)."""
        self.local_path(path).unlink(missing_ok=True)

    def summary(self) -> dict:
        """Counts for stats.json: what was downloaded, reused from cache, and what failed."""
        results = list(self.downloaded.values())
        return {
            "downloaded": len(results),
            "cached": len(self.cached),
            "download_bytes": sum(r.bytes for r in results),
            "download_seconds": round(sum(r.seconds for r in results), 3),
            "download_retries": sum(r.attempts - 1 for r in results),
            "resumed": sum(r.resumed for r in results),
            "failed_segments": sorted(self.failures),
            "failure_reasons": {p: str(e) for p, e in sorted(self.failures.items())},
        }


# -- CLI: list or prefetch the segments of a snapshot -----------------------------------------


@dataclass
class PrefetchConfig:
    snapshot: str = option("--snapshot", required=True, help="crawl id, e.g. CC-MAIN-2019-30")
    segments: str = option("--segments", default="0",
                           help="indices into wet.paths: '0-99', '3,5,10-12', 'all'")
    download_cache: str = option(
        "--download-cache", default=".cache/commoncrawl", metavar="DIR", aliases=("--cache-dir",),
        help="local download cache (the corpus job's --download-cache reuses it)")
    cc_base_url: str = option("--cc-base-url", default=DEFAULT_BASE_URL, help="Common Crawl host or mirror")
    list_only: bool = option("--list", dest="list", default=False,
                             help="print the selected URLs (credentials shown as ***), download nothing")
    policy: RetryPolicy = sub_config(RetryPolicy)  # attempts, deadline, size limit, per-read timeout
    max_downloads: int = option("--max-downloads", default=DEFAULT_MAX_CONCURRENT, metavar="N",
                                aliases=("--max-concurrent",), help="parallel downloads (politeness cap)")
    allow_failed_segments: bool = option(
        "--allow-failed-segments", default=False,
        help="exit 0 even if some segments could not be downloaded (or were refused: listing lines "
        "that are not relative Common Crawl paths)")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="cc100 prefetch",
        description="List or download (with retries and resume) the WET files of a Common Crawl "
                    "snapshot into a local cache, e.g. to prefetch before `cc100 corpus`.")
    add_config_flags(p, PrefetchConfig)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logs.setup()
    try:
        config = config_from_args(PrefetchConfig, args)
        fetcher = SegmentFetcher(config.download_cache, config.cc_base_url, policy=config.policy,
                                 max_concurrent=config.max_downloads)
        paths = wet_paths(config.snapshot, fetcher.base_url, config.download_cache, policy=config.policy)
        selected = select_segments(paths, config.segments, allow_invalid=config.allow_failed_segments)
    except (ValueError, DownloadError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if config.list_only:
        for path in selected:
            problem = listing_problem(path)
            print(f"# not fetched ({problem}): {path!r}" if problem
                  else redact_url(segment_url(fetcher.base_url, path)))
        return 0

    done = 0
    lock = threading.Lock()

    def work(path: str) -> None:
        nonlocal done
        local = fetcher.try_fetch(path)
        with lock:
            done += 1
            state = f"ok {local}" if local else f"FAILED {fetcher.failures[path]}"
            print(f"[{done}/{len(selected)}] {state}", flush=True)

    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=config.max_downloads) as pool:
        list(pool.map(work, selected))
    s = fetcher.summary()
    print(f"{config.snapshot}: {len(selected)} segments, {s['downloaded']} downloaded "
          f"({s['download_bytes'] / 1e6:.1f} MB, {s['download_retries']} retries, "
          f"{s['resumed']} resumed), {s['cached']} already cached, "
          f"{len(s['failed_segments'])} failed")
    for path, reason in s["failure_reasons"].items():
        print(f"  failed: {reason}")
    if s["failed_segments"] and not config.allow_failed_segments:
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
