"""What one record at --max-record-bytes costs in memory (#15 §4): peak RSS of `cc100 corpus
--lm-dir` on the two shared sample WET files, with and without one extra record whose body is
exactly the limit (4 MiB by default) of real, unique English text (reference sentences, each
line made unique with a letter tag, so dedup keeps it whole and LID says English).

Target: the extra record costs < 300 MB of peak RSS. Runs alternate (without, with) per
repeat; the figure is the median difference of peak tree RSS.

    make lm LM_DIR=out/lm
    python -m bench.bench_record_limit --lm-dir out/lm [--repeats 2] [--code DIR]
        [--size BYTES --max-record-bytes BYTES]

--code runs another checkout's `pipeline` (PYTHONPATH=DIR), e.g. the code before the limit.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import sys
import tempfile
from pathlib import Path

from bench.measure import machine, median, run_measured, spread
from pipeline.contracts import STATS_FILE, find_meta

REPO = Path(__file__).resolve().parents[1]


def _letters(i: int) -> str:
    """0 -> 'a', 25 -> 'z', 26 -> 'ba': a tag that digit normalisation does not erase."""
    out = ""
    while True:
        out = chr(ord("a") + i % 26) + out
        i //= 26
        if i == 0:
            return out


def large_page(reference: Path, size: int) -> bytes:
    """A WET conversion body of exactly `size` bytes of unique English lines."""
    sentences = [s for s in reference.read_text(encoding="utf-8").splitlines() if len(s) > 40]
    lines, total, i = ["A very long page"], 17, 0
    while total < size:
        line = f"{sentences[i % len(sentences)]} {_letters(i)}"
        lines.append(line)
        total += len(line.encode()) + 1
        i += 1
    return ("\n".join(lines).encode()[:size]).rstrip(b"\n").ljust(size, b".")


def write_large_record(path: Path, reference: Path, size: int) -> None:
    """One gzip member holding one conversion record, as Common Crawl writes them."""
    from pipeline.writers.wet import block_digest

    body = large_page(reference, size)
    head = ("WARC/1.0\r\nWARC-Type: conversion\r\nWARC-Target-URI: http://large.example/page\r\n"
            "WARC-Date: 2019-07-17T12:15:59Z\r\nWARC-Record-ID: <urn:uuid:00000000-0000-0000-0000-000000000001>\r\n"
            f"WARC-Block-Digest: {block_digest(body)}\r\nContent-Type: text/plain\r\n"
            f"Content-Length: {len(body)}\r\n\r\n")
    path.write_bytes(gzip.compress(head.encode() + body + b"\r\n\r\n", mtime=0))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lm-dir", required=True)
    parser.add_argument("--shared", default=str(REPO.parent / "shared" / "data"))
    parser.add_argument("--size", type=int, default=None, help="record body bytes (default: the limit)")
    parser.add_argument("--max-record-bytes", type=int, default=None,
                        help="pass --max-record-bytes N to cc100 corpus (to measure records over the default)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--code", default=str(REPO), help="checkout whose pipeline runs (PYTHONPATH)")
    parser.add_argument("--json", help="write the measurements here")
    args = parser.parse_args(argv)

    from pipeline.readers.wet import MAX_RECORD_BYTES

    size = args.size or MAX_RECORD_BYTES
    shared = Path(args.shared)
    samples = sorted(str(p) for p in (shared / "wet").glob("CC-MAIN-2019-30-sample-*.warc.wet.gz"))
    env = {**os.environ, "PYTHONPATH": args.code}
    cc100 = str(Path(sys.executable).with_name("cc100"))
    runs: dict[str, list] = {"without": [], "with": []}
    with tempfile.TemporaryDirectory(prefix="cc100-bench-limit-") as tmp:
        large = Path(tmp) / "large.warc.wet.gz"
        write_large_record(large, shared / "reference" / "en.txt", size)
        for repeat in range(args.repeats):
            for name, extra in (("without", []), ("with", ["--input", str(large)])):
                out = Path(tmp) / f"out-{name}-{repeat}"
                command = [cc100, "corpus", "--input", samples[0], "--input", samples[1], *extra,
                           "--output", str(out), "--lm-dir", args.lm_dir, "--workers", "1"]
                if args.max_record_bytes:
                    command += ["--max-record-bytes", str(args.max_record_bytes)]
                run = run_measured(command, env=env)
                if run.returncode != 0:
                    print(run.output_tail, file=sys.stderr)
                    return 1
                stats = json.loads(Path(find_meta(out, STATS_FILE)).read_text())
                runs[name].append({**run.to_dict(), "documents_out": stats["counters"]["documents_out"],
                                   "record_too_large": stats["counters"].get("bad_wet_record_record_too_large", 0)})
                print(f"{name:8} peak tree RSS {run.peak_tree_rss_mb:7.0f} MB  wall {run.wall_s:5.1f} s  "
                      f"documents {stats['counters']['documents_out']}", flush=True)
    peak = {name: median(r["peak_tree_rss_mb"] for r in rs) for name, rs in runs.items()}
    extra = [w["peak_tree_rss_mb"] - o["peak_tree_rss_mb"] for o, w in zip(runs["without"], runs["with"])]
    summary = {"machine": machine(), "size": size, "code": args.code, "peak_tree_rss_mb": peak,
               "extra_mb_median": median(extra), "extra_mb_spread": spread(extra), "runs": runs}
    print(f"record of {size} bytes: +{median(extra):.0f} MB peak RSS (spread {spread(extra)}); "
          f"without {peak['without']:.0f} MB, with {peak['with']:.0f} MB")
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
