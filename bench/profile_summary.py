"""Summarise a py-spy profile (`--format raw`, collapsed stacks) of `cc100 corpus`.

    .venv/bin/py-spy record --format raw --rate 50 --subprocesses -o /tmp/cc100-bench/job.txt -- \
        .venv/bin/cc100 corpus --input ... --workers 1
    .venv/bin/python -m bench.profile_summary /tmp/cc100-bench/job.txt

Prints where the samples end (self time, by function) and, inclusive, the share of the main
cost centres of the job: fastText, SentencePiece, KenLM, normalisation, hashing, WET parsing,
Parquet writing and Beam's own per-element machinery (coders, bundle processing, shuffles).
"""

from __future__ import annotations

import argparse
import collections
import re
import sys

# cost centre -> regex on a frame ("function (file:line)"), first match from the leaf wins
CENTRES = [
    ("fastText predict", r"predict_language|fasttext"),
    ("SentencePiece encode", r"sentencepiece|tokenize \(.*perplexity"),
    ("KenLM score", r"kenlm|score \(.*perplexity|perplexity \(.*perplexity\.py"),
    ("paragraph hashing (normalize_for_dedup + SHA-1)", r"paragraph_hash|normalize_for_dedup|line_hashes"),
    ("cc_net normalize before SentencePiece", r"normalize\.py|fast_strip_accents"),
    ("WET parse (pipeline/readers/wet.py)", r"pipeline/wet\.py"),
    ("Parquet write", r"pyarrow|write_parquet"),
    ("dedup bookkeeping (pipeline/dedup/paragraphs.py)", r"pipeline/dedup\.py"),
    ("Beam coders / pickling", r"coder|pickle|dill|cloudpickle"),
    ("Beam runner and bundle machinery", r"apache_beam"),
]


def parse(path: str):
    stacks = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            line = line.rstrip("\n")
            if not line:
                continue
            stack, _, count = line.rpartition(" ")
            try:
                stacks.append((stack.split(";"), int(count)))
            except ValueError:
                continue
    return stacks


def summarize(stacks, top: int = 25) -> str:
    total = sum(c for _, c in stacks) or 1
    leaf = collections.Counter()
    centre = collections.Counter()
    compiled = [(name, re.compile(rx)) for name, rx in CENTRES]
    for frames, count in stacks:
        leaf[frames[-1]] += count
        for frame in reversed(frames):  # leaf first: the innermost matching centre owns the sample
            hit = next((name for name, rx in compiled if rx.search(frame)), None)
            if hit:
                centre[hit] += count
                break
        else:
            centre["other (interpreter, imports, idle threads)"] += count
    lines = [f"{total} samples", "", "by cost centre (innermost match):"]
    for name, count in centre.most_common():
        lines.append(f"  {count / total:6.1%}  {name}")
    lines += ["", f"top {top} leaf frames (self time):"]
    for frame, count in leaf.most_common(top):
        lines.append(f"  {count / total:6.1%}  {frame[:150]}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile_summary", description=__doc__.split("\n\n")[0])
    parser.add_argument("profile", help="py-spy --format raw output")
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args(argv)
    try:
        stacks = parse(args.profile)
    except OSError as e:
        print(f"profile_summary: {args.profile}: {e.strerror}", file=sys.stderr)
        return 2
    if not stacks:
        print(f"profile_summary: {args.profile}: no samples", file=sys.stderr)
        return 2
    print(summarize(stacks, args.top))
    return 0


if __name__ == "__main__":
    sys.exit(main())
