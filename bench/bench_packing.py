"""Padding share and tokens/s of `--packing complete` (FULL-SENTENCES) against `--packing blocks`.

For each shards directory (written by `cc100 tokenize`) and each packing, on the train split:

* rows: sequences one epoch of every language makes, and their padding share (padding
  positions / all positions), from the row table `train.data.row_bounds` builds;
* data: `MLMStream.next_batch` (alpha sampling, packing, masking) for `--batches` global batches:
  the padding share actually drawn, and positions/s and real (non-padding) tokens/s;
* train: `Trainer.train_step`'s model work (forward + backward + AdamW) on those batches with a
  `--model` preset, `padded` passed as the trainer does: positions/s and real tokens/s; for
  blocks (no padding) also with an all-True attention mask forced, the cost of a mask.

Modes alternate per repeat (complete, blocks, complete, ...); medians over `--repeats`.

    python -m bench.bench_packing --shards /tmp/cc100-bench/pack/samples-shards \
        /tmp/cc100-bench/pack/synth-shards --max-len 512 --batch 16 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

from bench.measure import machine, median
from train.data import PACKINGS, MLMStream
from train.shards import load_manifest


def row_stats(stream: MLMStream) -> dict:
    """Rows of one epoch over every language, and the share of their positions that is padding."""
    rows = sum(stream.num_rows.values())
    content = sum(int(b[-1]) for b in stream.bounds.values())  # tokens the rows hold
    framing = 2 if stream.packing == "blocks" else 1  # <s> block </s>; <s> paragraphs
    return {"rows": rows, "train_tokens": sum(stream.tokens.values()),
            "pad_share": 1 - (content + framing * rows) / (rows * stream.max_len)}


def time_data(stream: MLMStream, batches: int) -> tuple[float, list[dict]]:
    t0 = time.perf_counter()
    out = [stream.next_batch() for _ in range(batches)]
    return time.perf_counter() - t0, out


def time_train(model, optimizer, batches: list[dict], pad: int, force_mask: bool = False) -> float:
    import torch

    t0 = time.perf_counter()
    for b in batches:
        x, y = torch.from_numpy(b["input_ids"]), torch.from_numpy(b["labels"])
        padded = True if force_mask else bool((b["input_ids"] == pad).any())
        out = model(x, labels=y, padded=padded)
        out.loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return time.perf_counter() - t0


def bench_one(shards: str, args) -> dict:
    import torch

    from model.xlmr import XLMRForMaskedLM, config_for

    manifest = load_manifest(shards)
    result = {"shards": shards, "train_tokens": sum(manifest.tokens("train").values()),
              "languages": len(manifest.languages), "modes": {}}
    streams = {}
    for packing in PACKINGS:
        t0 = time.perf_counter()
        streams[packing] = MLMStream(manifest, max_len=args.max_len, global_batch=args.batch,
                                     seed=0, packing=packing)
        result["modes"][packing] = {"setup_s": time.perf_counter() - t0, **row_stats(streams[packing]),
                                    "data_pos_s": [], "data_tok_s": [], "train_pos_s": [],
                                    "train_tok_s": [], "drawn_pad_share": [], "train_masked_pos_s": []}
    torch.manual_seed(0)
    cfg = config_for(args.model, vocab_size=manifest.vocab_size)
    model = XLMRForMaskedLM(cfg, masked_only=True).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    pad = manifest.special_ids["pad"]
    for rep in range(args.repeats):
        for packing in PACKINGS:
            r = result["modes"][packing]
            seconds, batches = time_data(streams[packing], args.batches)
            positions = sum(b["input_ids"].size for b in batches)
            real = sum(int((b["input_ids"] != pad).sum()) for b in batches)
            r["drawn_pad_share"].append(1 - real / positions)
            r["data_pos_s"].append(positions / seconds)
            r["data_tok_s"].append(real / seconds)
            seconds = time_train(model, optimizer, batches[:args.train_batches], pad)
            positions = sum(b["input_ids"].size for b in batches[:args.train_batches])
            real = sum(int((b["input_ids"] != pad).sum()) for b in batches[:args.train_batches])
            r["train_pos_s"].append(positions / seconds)
            r["train_tok_s"].append(real / seconds)
            if packing == "blocks":  # the same padding-free batches, attention given an all-True mask
                seconds = time_train(model, optimizer, batches[:args.train_batches], pad, force_mask=True)
                r["train_masked_pos_s"].append(positions / seconds)
            print(f"  {shards} {packing} round {rep + 1}: pad {r['drawn_pad_share'][-1]:.3f}, "
                  f"data {r['data_tok_s'][-1]:,.0f} tok/s, train {r['train_tok_s'][-1]:,.0f} tok/s",
                  file=sys.stderr, flush=True)
    for r in result["modes"].values():
        for key in ("data_pos_s", "data_tok_s", "train_pos_s", "train_tok_s", "drawn_pad_share",
                    "train_masked_pos_s"):
            r[key + "_median"] = median(r[key]) if r[key] else None
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--shards", nargs="+", required=True, help="SHARDS dirs written by `cc100 tokenize`")
    p.add_argument("--max-len", type=int, default=512)
    p.add_argument("--batch", type=int, default=16, help="sequences per batch")
    p.add_argument("--batches", type=int, default=50, help="batches drawn per round")
    p.add_argument("--train-batches", type=int, default=5, help="of those, trained on per round")
    p.add_argument("--model", default="tiny", help="model preset for the train timing")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", help="write the results here")
    args = p.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    results = {"machine": machine(), "args": vars(args), "load_before": os.getloadavg(),
               "runs": [bench_one(s, args) for s in args.shards]}
    results["load_after"] = os.getloadavg()
    print(f"{'shards':<48}{'packing':<10}{'rows':>8}{'pad share':>10}{'drawn pad':>10}"
          f"{'data tok/s':>12}{'train pos/s':>12}{'train tok/s':>12}")
    for run in results["runs"]:
        for packing, r in run["modes"].items():
            print(f"{run['shards'][-48:]:<48}{packing:<10}{r['rows']:>8}{r['pad_share']:>10.3f}"
                  f"{r['drawn_pad_share_median']:>10.3f}{r['data_tok_s_median']:>12,.0f}"
                  f"{r['train_pos_s_median']:>12,.0f}{r['train_tok_s_median']:>12,.0f}"
                  + (f"  (with a mask: {r['train_masked_pos_s_median']:,.0f} pos/s)"
                     if r["train_masked_pos_s_median"] else ""))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
