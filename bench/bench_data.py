"""The pretraining data path alone: shard reader + language sampler + packing + masking.

Times `train.data.MLMStream.next_batch()` (what the trainer's prefetch thread runs) in one process
on real token shards, and sets it against what the GPU consumes: a model step needs
`flops_per_token` FLOPs per token, so at a given MFU on a device with a given dense bf16 peak it
eats peak * MFU / flops_per_token tokens/s. The data path must stay `--margin` times (default 3)
ahead of that, or the GPU waits for batches.

    python -m bench.bench_data --shards out/demo/shards --config base --device-peak 989e12 --mfu 0.45
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from bench.measure import machine, median, spread

H200_BF16_PEAK = 989e12  # dense bf16 FLOP/s (the H100/H200 SXM datasheet figure; train.trainer.PEAK_FLOPS)


def required_tokens_per_s(config: str, max_len: int, mask_prob: float, peak: float, mfu: float) -> dict:
    from model.xlmr import config_for
    from train.trainer import flops_per_token

    fpt = flops_per_token(config_for(config), max_len, mask_prob)
    consumed = peak * mfu / fpt
    return {"flops_per_token": fpt, "gpu_tokens_per_s": consumed}


def time_stream(shards: str, max_len: int, batch: int, batches: int, repeats: int, seed: int) -> list[float]:
    """tokens/s of next_batch() per round (a fresh stream each round, first batch untimed)."""
    from train.data import MLMStream
    from train.shards import load_manifest

    manifest = load_manifest(shards)
    rates = []
    for r in range(repeats):
        stream = MLMStream(manifest, max_len=max_len, global_batch=batch, seed=seed + r)
        stream.next_batch()  # opens the memmaps
        t0 = time.perf_counter()
        for _ in range(batches):
            stream.next_batch()
        rates.append(batches * batch * max_len / (time.perf_counter() - t0))
        print(f"  round {r + 1}/{repeats}: {rates[-1]:,.0f} tokens/s", flush=True)
    return rates


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_data", description=__doc__.split("\n\n")[0])
    parser.add_argument("--shards", required=True, help="a SHARDS dir written by `cc100 tokenize`")
    parser.add_argument("--config", default="base", help="model preset whose consumption is the target")
    parser.add_argument("--max-len", type=int, default=512)
    parser.add_argument("--batch", type=int, default=256, help="sequences per next_batch() call (one rank's share)")
    parser.add_argument("--batches", type=int, default=20, help="timed batches per round")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--mask-prob", type=float, default=0.15)
    parser.add_argument("--device-peak", type=float, default=H200_BF16_PEAK, help="dense bf16 FLOP/s of the GPU")
    parser.add_argument("--mfu", type=float, default=0.45, help="model FLOPs utilisation assumed for the GPU")
    parser.add_argument("--margin", type=float, default=3.0, help="how far ahead the data path must stay")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    if min(args.batch, args.batches, args.repeats, args.max_len) < 1:
        print("bench_data: --batch, --batches, --repeats and --max-len must be >= 1", file=sys.stderr)
        return 2
    from train.shards import ShardError

    info = machine()
    print(f"machine: {info}", flush=True)
    try:
        rates = time_stream(args.shards, args.max_len, args.batch, args.batches, args.repeats, args.seed)
    except (ShardError, ValueError) as e:
        print(f"bench_data: --shards {args.shards}: {e}", file=sys.stderr)
        return 2
    need = required_tokens_per_s(args.config, args.max_len, args.mask_prob, args.device_peak, args.mfu)
    target = args.margin * need["gpu_tokens_per_s"]
    got = median(rates)
    result = {"machine": info, "args": vars(args), "rounds_tokens_per_s": rates, "tokens_per_s": got,
              "spread": spread(rates), **need, "target_tokens_per_s": target, "ahead_of_gpu": got / need["gpu_tokens_per_s"],
              "meets_target": got >= target}
    print(f"\ndata path: {got:,.0f} tokens/s ({spread(rates)}), one process, batch {args.batch} x {args.max_len}")
    print(f"{args.config} at {args.mfu:.0%} MFU of {args.device_peak / 1e12:.0f} TFLOP/s consumes "
          f"{need['gpu_tokens_per_s']:,.0f} tokens/s ({need['flops_per_token'] / 1e9:.2f} GFLOP/token); "
          f"x{args.margin:g} = {target:,.0f} tokens/s needed")
    print(f"-> {result['ahead_of_gpu']:.1f}x ahead of the GPU: {'OK' if result['meets_target'] else 'TOO SLOW'}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())
