"""`cc100 prefetch`: list or download the WET files of a Common Crawl snapshot into a local cache.

    cc100 prefetch --snapshot CC-MAIN-YYYY-WW [--segments 0-99] [--download-cache DIR] [--list]

The same fetcher as the corpus job's (pipeline/readers/snapshot.py `SegmentFetcher`: retries, Range
resume, a verified copy per file), run ahead of it: `cc100 corpus --download-cache DIR` then
reads the cached files instead of downloading them.
"""

from __future__ import annotations

import argparse
import sys
import threading
from dataclasses import dataclass

from pipeline.readers.download import DEFAULT_MAX_CONCURRENT, DownloadError, RetryPolicy, redact_url
from pipeline.readers.snapshot import (
    DEFAULT_BASE_URL,
    SegmentFetcher,
    listing_problem,
    segment_url,
    select_segments,
    wet_paths,
)
from pipeline.utils import logs
from pipeline.utils.cliflags import add_config_flags, config_from_args, option, sub_config


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
