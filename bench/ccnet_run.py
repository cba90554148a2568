"""Run facebookresearch/cc_net's own code on local WET files (one shard), as `mine.py` does.

Runs in a SEPARATE virtualenv that has the `cc-net` 1.0.0 sdist installed (see bench/README.md);
it imports nothing from this repository. The two passes of cc_net's `mine` for one shard:

1. `_hashes_shard`: parse_warc_file -> dedup.HashesCollector (SHA-1 of every normalised line
   into a FlatHashSet, dumped to a .bin file);
2. `_mine_shard` with DEFAULT_PIPELINE: parse_warc_file again -> DuplicatesRemover -> LID
   Classifier (top 1, threshold) -> MultiSentencePiece (normalize=True) -> DocLM ->
   PerplexityBucket -> DropKeys("tokenized") -> split by {language}_{bucket}.json.gz.

`jsonql.run_pipes(..., processes=N)` is cc_net's own parallelism (a multiprocessing.Pool over the
parallelisable transformers); N=1 runs everything in this process. Prints one JSON line with the
timings and counts.

    /tmp/ccnet-venv/bin/python bench/ccnet_run.py --input F.warc.wet.gz [G ...] --lm-dir LM \
        --lid-model lid.176.ftz --cutoffs cutoff.csv --output DIR [--processes 1]
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import time
from pathlib import Path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="ccnet_run.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--input", required=True, type=Path, nargs="+", help="the shard's WET files")
    parser.add_argument("--lm-dir", required=True, type=Path)
    parser.add_argument("--lid-model", required=True, type=Path)
    parser.add_argument("--cutoffs", required=True, type=Path)
    parser.add_argument("--output", required=True, type=Path)
    parser.add_argument("--processes", type=int, default=1)
    parser.add_argument("--min-len", type=int, default=300)
    parser.add_argument("--lang-threshold", type=float, default=0.5)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    from cc_net import dedup, jsonql, perplexity, process_wet_file, split_by_lang

    langs = sorted(p.name[: -len(".arpa.bin")] for p in args.lm_dir.glob("*.arpa.bin"))
    if args.output.exists():
        shutil.rmtree(args.output)
    args.output.mkdir(parents=True)
    hashes = args.output / "hashes.bin"

    def documents():
        # CCSegmentsReader.__iter__ over the shard's segments, read from local (cached) files
        for segment in args.input:
            for doc in process_wet_file.parse_warc_file(jsonql.open_read(segment), args.min_len):
                doc["cc_segment"] = str(segment)
                yield doc

    t0 = time.perf_counter()
    collector = dedup.HashesCollector(field="raw_content", output=hashes)
    jsonql.run_pipes(collector, inputs=documents())
    t1 = time.perf_counter()

    steps = [
        dedup.DuplicatesRemover(field="raw_content", hashes_files=[hashes]),
        split_by_lang.Classifier(model=args.lid_model, field="raw_content", out_field="language",
                                 top=1, threshold=args.lang_threshold),
        perplexity.MultiSentencePiece({lang: args.lm_dir / f"{lang}.sp.model" for lang in langs},
                                      field="raw_content", output_field="tokenized", normalize=True),
        perplexity.DocLM({lang: args.lm_dir / f"{lang}.arpa.bin" for lang in langs},
                         field="tokenized", output_field="perplexity", normalize=False),
        perplexity.PerplexityBucket(args.cutoffs),
        perplexity.DropKeys("tokenized"),
        jsonql.split(pattern=str(args.output / "{language}_{bucket}.json.gz"), mkdir=True),
    ]
    jsonql.run_pipes(*steps, inputs=documents(), processes=args.processes, chunksize=100)
    t2 = time.perf_counter()

    written = 0
    for path in args.output.glob("*.json.gz"):
        written += sum(1 for _ in jsonql.open_read(path))
    print(json.dumps({"hash_pass_s": t1 - t0, "mine_pass_s": t2 - t1, "total_s": t2 - t0,
                      "documents_written": written, "languages_with_lm": len(langs),
                      "processes": args.processes}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
