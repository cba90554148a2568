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

from pipeline.utils import logs
from pipeline.utils.cliflags import add_deprecated_alias
from pipeline.readers.download import (
    DEFAULT_MAX_CONCURRENT,
    DownloadError,
    RetryPolicy,
    add_policy_flags,
    policy_from_args,
    redact_url,
)
from pipeline.readers.snapshot import (
    DEFAULT_BASE_URL,
    SegmentFetcher,
    listing_problem,
    segment_url,
    select_segments,
    wet_paths,
)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="cc100 prefetch",
        description="List or download (with retries and resume) the WET files of a Common Crawl "
                    "snapshot into a local cache, e.g. to prefetch before `cc100 corpus`.")
    p.add_argument("--snapshot", required=True, help="crawl id, e.g. CC-MAIN-2019-30")
    p.add_argument("--segments", default="0",
                   help="indices into wet.paths: '0-99', '3,5,10-12', 'all'")
    p.add_argument("--download-cache", default=".cache/commoncrawl", metavar="DIR",
                   help="local download cache (the corpus job's --download-cache reuses it)")
    p.add_argument("--cc-base-url", default=DEFAULT_BASE_URL, help="Common Crawl host or mirror")
    p.add_argument("--list", action="store_true",
                   help="print the selected URLs (credentials shown as ***), download nothing")
    add_policy_flags(p)
    p.add_argument("--timeout", type=float, default=RetryPolicy.timeout, help="seconds per read")
    p.add_argument("--max-downloads", type=int, default=DEFAULT_MAX_CONCURRENT, metavar="N",
                   help="parallel downloads (politeness cap)")
    p.add_argument("--allow-failed-segments", action="store_true",
                   help="exit 0 even if some segments could not be downloaded (or were refused: "
                   "listing lines that are not relative Common Crawl paths)")
    add_deprecated_alias(p, "--cache-dir", "--download-cache")
    add_deprecated_alias(p, "--max-concurrent", "--max-downloads")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logs.setup()
    try:
        policy = policy_from_args(args, timeout=args.timeout)
        fetcher = SegmentFetcher(args.download_cache, args.cc_base_url, policy=policy,
                                 max_concurrent=args.max_downloads)
        paths = wet_paths(args.snapshot, fetcher.base_url, args.download_cache, policy=policy)
        selected = select_segments(paths, args.segments, allow_invalid=args.allow_failed_segments)
    except (ValueError, DownloadError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.list:
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

    with ThreadPoolExecutor(max_workers=args.max_downloads) as pool:
        list(pool.map(work, selected))
    s = fetcher.summary()
    print(f"{args.snapshot}: {len(selected)} segments, {s['downloaded']} downloaded "
          f"({s['download_bytes'] / 1e6:.1f} MB, {s['download_retries']} retries, "
          f"{s['resumed']} resumed), {s['cached']} already cached, "
          f"{len(s['failed_segments'])} failed")
    for path, reason in s["failure_reasons"].items():
        print(f"  failed: {reason}")
    if s["failed_segments"] and not args.allow_failed_segments:
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
