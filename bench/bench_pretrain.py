"""Pretraining throughput: our trainer step against Hugging Face XLMRobertaForMaskedLM, same run.

Both sides get the same config (built from one `XLMRConfig`; HF's from `model.hf.config_to_hf`,
no hub), the same packed full sequences (no padding: `<s>` + tokens + `</s>`, RoBERTa-masked by
`train.data.mask_batch`, 15% targets), and the same optimizer (AdamW over `param_groups`,
betas (0.9, 0.98), eps 1e-6, weight decay 0.01 on matrices, grad clip 1.0). A step is forward +
backward + clip + optimizer step + zero_grad.

* ours: `train.trainer.Trainer.train_step` itself (the code `cc100 pretrain` runs), on a Trainer
  whose data stream is the fixed batch; XLMRForMaskedLM(masked_only=True), SDPA attention;
  optionally `torch.compile` (--compile).
* HF: `XLMRobertaForMaskedLM(XLMRobertaConfig(...), attn_implementation="sdpa")`, labels given
  (logits over every position, as HF computes them), then the same optimizer step.
* ours full head (--full-head): our trainer with masked_only=False, to split the gain between the
  masked-only LM head and the rest of the model.

Steps of every model are interleaved (ours, HF, ours, HF, ...), `--steps` timed steps per round
after `--warmup` untimed ones; medians over `--repeats` rounds; the ratio is taken per round.

    python -m bench.bench_pretrain --configs tiny,small-base --repeats 5
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass

from bench.measure import machine, median, spread
from pipeline.contracts import MODEL_PRESETS



def _preset(name: str, vocab_size: int) -> dict:
    """A model preset's fields (pipeline/contracts.py MODEL_PRESETS) with this vocabulary size."""
    return {**MODEL_PRESETS[name]["model"], "vocab_size": vocab_size}


# name -> (model fields, batch sequences, sequence length)
CONFIGS = {
    "tiny": (_preset("tiny", 32000), 16, 128),
    "small-base": (_preset("small", 64000), 8, 256),
    "base": (_preset("base", 250002), 32, 512),
    "large": (_preset("large", 250002), 32, 512),
}


@dataclass
class FixedBatches:
    """The trainer's data stream, reduced to one batch handed out again and again."""

    batch: dict

    def next_batch(self) -> dict:
        return self.batch


def make_batch(vocab_size: int, batch: int, seq_len: int, seed: int = 0) -> dict:
    """Packed full sequences `<s> x </s>` with RoBERTa masking (train.data.mask_batch)."""
    import numpy as np

    from train.data import Specials, mask_batch, replacement_ids, row_uniforms, uniforms_per_row

    rng = np.random.default_rng(seed)
    specials = Specials(bos=0, pad=1, eos=2, unk=3, mask=vocab_size - 1, vocab_size=vocab_size)  # XLM-R ids
    body = rng.integers(4, vocab_size - 1, size=(batch, seq_len - 2))
    seqs = np.concatenate([np.full((batch, 1), specials.bos), body, np.full((batch, 1), specials.eos)], axis=1)
    is_special = specials.table()
    u = row_uniforms([seed], 0, batch, seq_len)
    assert u.shape[1] == uniforms_per_row(seq_len)
    input_ids, labels = mask_batch(seqs, u, specials, is_special, replacement_ids(specials))
    return {"input_ids": input_ids, "labels": labels, "padding": np.zeros(batch, dtype=np.int64)}


def our_trainer(model_fields: dict, batch: dict, device, compile_model: bool):
    """A Trainer ready for `train_step`, without shards or a vocabulary on disk."""
    import torch

    from model.xlmr import XLMRConfig, XLMRForMaskedLM
    from train.config import DataConfig, TrainConfig
    from train.trainer import Trainer, lr_lambda, param_groups

    n, seq_len = batch["input_ids"].shape
    cfg = TrainConfig(output="/nonexistent", data=DataConfig(shards="-", vocab="-", max_len=seq_len,
                                                              batch_tokens=n * seq_len), model="tiny",
                      micro_batch=n, compile=compile_model, steps=10**9)
    t = Trainer.__new__(Trainer)
    t.cfg, t.resume, t._print, t.step, t._log_file = cfg, False, print, 0, None
    t.distributed, t.rank, t.world_size, t.local_rank = False, 0, 1, 0
    t.device = device
    torch.manual_seed(0)
    t.model_config = XLMRConfig(**model_fields)
    t.raw_model = XLMRForMaskedLM(t.model_config, masked_only=True).to(device)
    o = cfg.optim
    fused = {"fused": True} if device.type == "cuda" else {}
    t.optimizer = torch.optim.AdamW(param_groups(t.raw_model, o.weight_decay), lr=o.lr,
                                    betas=(o.beta1, o.beta2), eps=o.eps, **fused)
    t.scheduler = torch.optim.lr_scheduler.LambdaLR(t.optimizer, lr_lambda(o.warmup_steps, cfg.steps))
    t.model = torch.compile(t.raw_model) if compile_model else t.raw_model
    t.batches = FixedBatches(batch)
    t.accum = 1
    t.autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else nullcontext()
    return t


def full_head_step(trainer, batch: dict, device):
    """Trainer.train_step's work with masked_only=False (its accuracy statistic assumes the
    masked-only logits, so the step is spelled out: forward, loss, backward, clip, AdamW)."""
    import torch

    x = torch.from_numpy(batch["input_ids"]).to(device)
    y = torch.from_numpy(batch["labels"]).to(device)
    model = trainer.raw_model

    def step() -> dict:
        model.train()
        with trainer.autocast:
            out = model(x, labels=y, masked_only=False)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), trainer.cfg.optim.clip_grad)
        trainer.optimizer.step()
        trainer.scheduler.step()
        trainer.optimizer.zero_grad(set_to_none=True)
        return {"loss": out.loss.item()}

    return step


class HFStep:
    """Hugging Face's model with the same optimizer and step as ours."""

    def __init__(self, model_fields: dict, batch: dict, device):
        import torch
        import transformers

        from model.hf import config_to_hf
        from model.xlmr import XLMRConfig
        from train.config import OptimConfig
        from train.trainer import param_groups

        torch.manual_seed(0)
        d = config_to_hf(XLMRConfig(**model_fields))
        for key in ("architectures", "model_type", "dtype"):
            d.pop(key, None)
        config = transformers.XLMRobertaConfig(**d)
        config._attn_implementation = "sdpa"
        self.model = transformers.XLMRobertaForMaskedLM(config).to(device)
        self.attn = getattr(self.model.config, "_attn_implementation", "?")
        o = OptimConfig()
        fused = {"fused": True} if device.type == "cuda" else {}
        self.optimizer = torch.optim.AdamW(param_groups(self.model, o.weight_decay), lr=o.lr,
                                           betas=(o.beta1, o.beta2), eps=o.eps, **fused)
        self.clip = o.clip_grad
        self.x = torch.from_numpy(batch["input_ids"]).to(device)
        self.y = torch.from_numpy(batch["labels"]).to(device)
        self.autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else nullcontext()

    def train_step(self) -> dict:
        import torch

        self.model.train()
        with self.autocast:
            out = self.model(input_ids=self.x, labels=self.y)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.clip)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return {"loss": out.loss.item()}


def timed_steps(step_fn, n: int, device) -> float:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t0 = time.perf_counter()
    for _ in range(n):
        step_fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - t0


def bench_config(name: str, args, device) -> dict:
    import torch

    from model.xlmr import XLMRConfig
    from train.trainer import PEAK_FLOPS, flops_per_token

    fields, batch_size, seq_len = CONFIGS[name]
    batch_size = args.batch or batch_size
    seq_len = args.seq_len or seq_len
    batch = make_batch(fields["vocab_size"], batch_size, seq_len)
    tokens = batch_size * seq_len
    hf = HFStep(fields, batch, device) if not args.no_hf else None
    runners = {"ours": our_trainer(fields, batch, device, False).train_step}
    if hf is not None:
        runners["hf"] = hf.train_step
    if args.compile:
        runners["ours compiled"] = our_trainer(fields, batch, device, True).train_step
    if args.full_head:  # ablation: our model projecting every position, as HF does
        runners["ours full head"] = full_head_step(our_trainer(fields, batch, device, False), batch, device)
    losses = {k: fn()["loss"] for k, fn in runners.items()}  # first step (compiles, allocates)
    for _ in range(args.warmup):
        for fn in runners.values():
            fn()
    peak_memory = {}
    if device.type == "cuda":  # each model's own step, alone: its peak allocated memory
        for k, fn in runners.items():
            torch.cuda.synchronize(device)
            torch.cuda.reset_peak_memory_stats(device)
            fn()
            torch.cuda.synchronize(device)
            peak_memory[k] = torch.cuda.max_memory_allocated(device)
    rounds = []
    for r in range(args.repeats):
        rnd = {"load": os.getloadavg()[0]}
        for k, fn in runners.items():
            rnd[k] = tokens * args.steps / timed_steps(fn, args.steps, device)
        rounds.append(rnd)
        print(f"  {name} round {r + 1}/{args.repeats} (load {rnd['load']:.2f}): " + ", ".join(
            f"{k} {rnd[k]:,.0f} tok/s" for k in runners), flush=True)
    cfg = XLMRConfig(**fields)
    out = {"config": name, "model": fields, "batch": batch_size, "seq_len": seq_len, "tokens_per_step": tokens,
           "threads": torch.get_num_threads(), "device": str(device), "first_loss": losses,
           "rounds": rounds, "flops_per_token": flops_per_token(cfg, seq_len, 0.15),
           "hf_attn_implementation": hf.attn if hf else None,
           "peak_memory_bytes": peak_memory}
    if args.profile:
        out["profile"] = profile_summary(runners["ours compiled" if args.compile else "ours"], device)
        print(out["profile"], flush=True)
    for k in runners:
        out[f"{k}_tokens_per_s"] = median([r[k] for r in rounds])
        out[f"{k}_spread"] = spread([r[k] for r in rounds])
    for k in runners:
        if k != "hf" and "hf" in runners:
            out[f"{k}_x_hf"] = median([r[k] / r["hf"] for r in rounds])
    if device.type == "cuda":
        dev = torch.cuda.get_device_name(device)
        peak = next((v for key, v in PEAK_FLOPS.items() if key in dev), None)
        if peak:
            for k in runners:
                out[f"{k}_mfu"] = out[f"{k}_tokens_per_s"] * out["flops_per_token"] / peak
    return out


def profile_summary(step_fn, device, steps: int = 3, rows: int = 25) -> str:
    """torch.profiler over a few steps: the operators that take the most device (or CPU) time."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        for _ in range(steps):
            step_fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    key = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    return prof.key_averages().table(sort_by=key, row_limit=rows)


def format_table(results: list[dict]) -> str:
    lines = [f"{'config':<11} {'B x T':>9} {'model':<14} {'tokens/s':>10} {'spread':>16} {'x HF':>6}"]
    for r in results:
        for k in ("ours", "ours compiled", "ours full head", "hf"):
            if f"{k}_tokens_per_s" not in r:
                continue
            ratio = r.get(f"{k}_x_hf")
            mfu = f"  MFU {r[k + '_mfu']:.1%}" if f"{k}_mfu" in r else ""
            if k in r.get("peak_memory_bytes", {}):
                mfu += f"  peak {r['peak_memory_bytes'][k] / 2**30:.1f} GiB"
            lines.append(f"{r['config']:<11} {r['batch']:>4}x{r['seq_len']:<4} {k:<14} "
                         f"{r[f'{k}_tokens_per_s']:>10,.0f} {r[f'{k}_spread']:>16} "
                         f"{'-' if ratio is None else format(ratio, '.2f'):>6}{mfu}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_pretrain", description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", default="tiny,small-base", help=f"of {', '.join(CONFIGS)}")
    parser.add_argument("--batch", type=int, default=None, help="sequences per step (default: per config)")
    parser.add_argument("--seq-len", type=int, default=None, help="tokens per sequence (default: per config)")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per model per round")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps per model first")
    parser.add_argument("--repeats", type=int, default=5, help="rounds (medians over them)")
    parser.add_argument("--compile", action="store_true", help="also time ours under torch.compile")
    parser.add_argument("--full-head", action="store_true",
                        help="ablation: also time ours with masked_only=False (logits at every position)")
    parser.add_argument("--no-hf", action="store_true", help="skip the Hugging Face model (ours only)")
    parser.add_argument("--profile", action="store_true",
                        help="print a torch.profiler table of our step (the top operators by device time)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--json", default=None, help="write all measurements here")
    args = parser.parse_args(argv)
    names = [c.strip() for c in args.configs.split(",") if c.strip()]
    unknown = [c for c in names if c not in CONFIGS]
    if unknown:
        print(f"bench_pretrain: --configs: unknown {unknown}; known: {', '.join(CONFIGS)}", file=sys.stderr)
        return 2
    if min(args.steps, args.repeats) < 1 or args.warmup < 0:
        print("bench_pretrain: --steps and --repeats must be >= 1, --warmup >= 0", file=sys.stderr)
        return 2
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        print("bench_pretrain: --device cuda: no CUDA device", file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    info = machine()
    print(f"machine: {info}", flush=True)
    results = [bench_config(name, args, device) for name in names]
    print()
    print(format_table(results))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": info, "machine_end": machine(), "args": vars(args), "results": results}, f,
                      indent=1, default=str)
        print(f"\nall measurements: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
