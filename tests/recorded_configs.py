"""The config each stage records in its output, for a few command lines (tests/golden/recorded_configs.json).

A stage compares the config recorded in an output with its own to decide whether the output is
up to date, so deriving the flags from the configs must not change what is recorded: the corpus
config (Parquet metadata, stats.json), vocab_config.json's config, the pretraining config in
checkpoint.pt, and the settings of the token shards' manifest. Regenerate only for a deliberate
change of a recorded config:

    PYTHONPATH=$PWD .venv/bin/python -m tests.recorded_configs --write
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from pathlib import Path
from unittest import mock

GOLDEN = Path(__file__).parent / "golden" / "recorded_configs.json"
CPU_COUNT = 2  # defaults that follow the machine (--threads, --workers) are recorded for this many cores

CASES: dict[str, list[list[str]]] = {
    "corpus": [
        ["--input", "in/*.wet.gz", "--output", "out"],
        ["--input", "a.wet", "--input", "b.wet", "--output", "out", "--workers", "3", "--min-len", "100",
         "--max-record-bytes", "1000", "--dedup", "keep-first", "--dedup-group-size", "2",
         "--docs-per-file", "10", "--overwrite", "--lid-model", "lid.bin", "--lang-threshold", "0",
         "--lid", "per-paragraph", "--langs", "en, fr,en", "--lm-dir", "lm", "--cutoffs", "c.csv",
         "--perplexity-per-line", "--near-dedup", "--near-dedup-threshold", "0.7",
         "--near-dedup-num-perm", "128", "--near-dedup-bands", "0", "--near-dedup-ngram", "3",
         "--near-dedup-unit", "char", "--work-dir", "w", "--keep-work"],
        ["--snapshot", "CC-MAIN-2019-30", "--segments", "0-9,12", "--output", "out",
         "--cc-base-url", "http://user:secret@mirror:8080/cc", "--download-cache", "cache",
         "--max-downloads", "2", "--max-attempts", "3", "--download-backoff", "0.01",
         "--download-deadline", "60", "--max-retry-after", "5", "--max-segment-bytes", "300MB",
         "--allow-failed-segments", "--direct_num_workers", "1"],
    ],
    "vocab": [
        ["--corpus", "corpus", "--output", "vocab"],
        ["--corpus", "corpus", "--output", "vocab", "--vocab-size", "1000", "--alpha", "0.5",
         "--sentences", "500", "--buckets", "head,tail", "--langs", "en,fr", "--seed", "3",
         "--threads", "1", "--character-coverage", "1.0", "--share-by", "chars",
         "--allow-smaller-vocab", "--byte-fallback", "--quiet"],
    ],
    "pretrain": [
        ["--shards", "shards", "--vocab", "vocab", "--output", "run", "--steps", "100"],
        ["--shards", "shards", "--vocab", "vocab", "--output", "run", "--config", "tiny", "--steps", "50",
         "--batch-tokens", "4096", "--max-len", "64", "--packing", "blocks", "--seed", "7", "--resume",
         "--lr", "0.002", "--warmup-steps", "5", "--weight-decay", "0.1", "--clip-grad", "0",
         "--micro-batch", "8", "--alpha", "0.7", "--mask-prob", "0.2", "--dropout", "0",
         "--compile", "--device", "cpu", "--log-every", "2", "--eval-every", "0", "--eval-seqs", "4",
         "--eval-tatoeba", "tatoeba", "--checkpoint-every", "0", "--stop-at-step", "3"],
        ["--shards", "shards", "--vocab", "vocab", "--output", "run", "--config", "small", "--steps", "200000"],
    ],
    "tokenize": [
        ["--corpus", "corpus", "--vocab", "vocab", "--output", "shards"],
        ["--corpus", "corpus", "--vocab", "vocab", "--output", "shards", "--buckets", "head,middle",
         "--langs", "en,fr", "--workers", "1", "--valid-fraction", "0.1", "--batch-size", "64"],
    ],
}


def _json(value):
    return json.loads(json.dumps(value, default=str))  # tuples as lists, paths as strings


def recorded(name: str, argv: list[str]):
    """What `cc100 NAME argv` records of its config (JSON values, as an output holds them)."""
    if name == "corpus":
        from pipeline.options import parse_args

        return _json(list(parse_args(argv)[0].to_dict().items()))  # in order: stats.json keeps it
    if name == "vocab":
        from train.vocab import parse_args

        return _json(dataclasses.asdict(parse_args(argv)))
    if name == "pretrain":
        from train.pretrain import parse_args

        cfg, resume, _overwrite = parse_args(argv)
        return _json({"train_config": cfg.to_dict(), "resume": resume})
    if name == "tokenize":
        import train.tokenize

        seen = {}

        def run(corpus, vocab_dir, output, **kwargs):
            seen.update(corpus=corpus, vocab_dir=vocab_dir, output=output, **kwargs)
            return 0

        with mock.patch.object(train.tokenize, "run", run):
            train.tokenize.main(argv)
        return _json(seen)
    raise KeyError(name)


def recorded_table(names=None) -> dict:
    with mock.patch.object(os, "cpu_count", lambda: CPU_COUNT):
        return {name: [{"argv": argv, "recorded": recorded(name, argv)} for argv in CASES[name]]
                for name in names or CASES}


def main(argv: list[str]) -> int:
    text = json.dumps(recorded_table(), indent=1, sort_keys=True) + "\n"
    if "--write" in argv:
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(text)
        print(f"wrote {GOLDEN}")
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
