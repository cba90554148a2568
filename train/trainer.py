"""The masked-LM pretraining loop: setup (all checks first), train_step, validate, checkpoint.

One process per device; under `torchrun` the processes form a DDP group (NCCL on GPU, gloo on
CPU). All ranks draw the same global batch plan and each materialises its own rows
(train/data.py); the loss of every micro-batch is its summed cross-entropy over the *global*
number of targets, times the world size (DDP averages gradients), so the update is exactly the
one a single process would make on the whole global batch, whatever the split into ranks and
micro-batches. Dropout is reseeded from (seed, step, rank) every step, so a resumed run draws
the same masks as an uninterrupted one. Rank 0 alone writes log.jsonl and checkpoints.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from pipeline.contracts import TRAINING_LOG as LOG
from pipeline.contracts import (RUN_EXPORT_DIR, VOCAB_MODEL, OwnershipError, atomic_write_text, check_claimable, claim,
                                clear_completion, fingerprint, mark_complete, read_marker, remove_owned_tree,
                                undecodable_name, write_marker)
from train.checkpoint import (CHECKPOINT, CheckpointError, load_checkpoint, rng_state,
                              save_checkpoint, set_rng_state)
from train.config import RESUME_KEYS, TrainConfig, lookup, resume_mismatches
from train.data import IGNORE_INDEX, MLMStream, Prefetcher, validation_sets
from train.shards import ShardError, file_sha256, load_manifest

# dense bf16 peak FLOP/s by device name (for MFU); unknown devices get no MFU
PEAK_FLOPS = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L40S": 362e12, "L4": 121e12,
              "A10": 125e12, "V100": 125e12}


STAGE = "pretrain"  # the stage name in RUN_DIR/.cc100/stage.json


class SetupError(ValueError):
    """Anything that must stop the run before the first step (message says what to fix)."""


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """Weight decay on matrices only: biases and LayerNorm weights (ndim < 2) are not decayed."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.ndim >= 2 else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0}]


def lr_lambda(warmup: int, total: int):
    """Linear warmup to the peak over `warmup` steps, then linear decay to 0 at `total`."""
    def f(step: int) -> float:  # step = optimizer steps already taken
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total - step) / max(1, total - warmup))
    return f


def step_seed(seed: int, step: int, rank: int) -> int:
    return int(np.random.SeedSequence([seed, 7, step, rank]).generate_state(1, np.uint64)[0] >> 1)


def flops_per_token(cfg, seq_len: int, mask_prob: float) -> float:
    """Training FLOPs per token (PaLM, appendix B): 6 N for the non-embedding weights, 12 L H T for
    attention scores, and 6 H V for the tied vocabulary projection on the masked share only."""
    n = cfg.num_hidden_layers * (4 * cfg.hidden_size ** 2 + 2 * cfg.hidden_size * cfg.intermediate_size)
    attn = 12 * cfg.num_hidden_layers * cfg.hidden_size * seq_len
    head = 6 * cfg.hidden_size * (cfg.hidden_size + cfg.vocab_size) * mask_prob
    return 6 * n + attn + head



def completion(cfg: TrainConfig) -> tuple[dict, dict]:
    """(config, inputs) of a finished run: the settings that change the loss curve (those a
    resume must share) and the shards and vocabulary it read (their completion records)."""
    settings = cfg.to_dict()
    config = {key: lookup(settings, key) for key in RESUME_KEYS}
    return config, {"shards": fingerprint(cfg.data.shards), "vocab": fingerprint(cfg.data.vocab)}

class Trainer:
    def __init__(self, cfg: TrainConfig, resume: bool = False, log=print, overwrite: bool = False):
        self.cfg, self.resume, self.overwrite, self._print = cfg, resume, overwrite, log
        self.run_dir = Path(cfg.output)
        self.distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
        self.rank = int(os.environ.get("RANK", "0"))
        self.world_size = int(os.environ.get("WORLD_SIZE", "1"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        self.step = 0
        self._log_file = None

    def log(self, msg: str) -> None:
        if self.rank == 0:
            self._print(msg, flush=True)

    # -- setup: every check before any training ------------------------------------------------
    def setup(self) -> None:
        from model.xlmr import XLMRForMaskedLM, config_for
        from train.tokenizer import XLMRTokenizer

        cfg = self.cfg
        dcfg = cfg.data
        if cfg.device == "cuda" and not torch.cuda.is_available():
            raise SetupError("--device cuda: no CUDA device available")
        use_cuda = cfg.device == "cuda" or (cfg.device == "auto" and torch.cuda.is_available())
        if self.distributed:
            if use_cuda:
                torch.cuda.set_device(self.local_rank)
            dist.init_process_group("nccl" if use_cuda else "gloo")
        self.device = torch.device(f"cuda:{self.local_rank}" if use_cuda else "cpu")

        # the paths (recorded as UTF-8 in the checkpoint and the export) and the run directory:
        # new, empty or this stage's own (pipeline/contracts.py), before any work
        for flag, path in (("--output", self.run_dir), ("--shards", dcfg.shards), ("--vocab", dcfg.vocab)):
            name = undecodable_name(path)
            if name:
                raise SetupError(f"{flag} {name}: the path is not valid UTF-8; rename it")
        try:
            check_claimable(self.run_dir, STAGE)
        except OwnershipError as e:
            raise SetupError(f"--output {e}") from None

        # shards and vocabulary
        try:
            manifest = load_manifest(dcfg.shards)
        except ShardError as e:
            raise SetupError(f"--shards: {e}") from None
        self.vocab_file = Path(dcfg.vocab) / VOCAB_MODEL
        if not self.vocab_file.is_file():
            raise SetupError(f"--vocab {dcfg.vocab}: no {VOCAB_MODEL} (run `cc100 vocab`)")
        try:
            tok = XLMRTokenizer(self.vocab_file)
        except (OSError, ValueError) as e:
            raise SetupError(f"--vocab: {e}") from None
        if file_sha256(self.vocab_file) != manifest.vocab_sha256 or tok.vocab_size != manifest.vocab_size:
            raise SetupError(f"--vocab {self.vocab_file} ({tok.vocab_size} ids) is not the vocabulary the "
                             f"shards in {dcfg.shards} were tokenized with ({manifest.vocab_size} ids, "
                             f"{manifest.raw['vocab'].get('file')}); re-run `cc100 tokenize`")

        # model
        overrides = {"vocab_size": tok.vocab_size}
        if cfg.dropout is not None:
            overrides.update(hidden_dropout_prob=cfg.dropout, attention_probs_dropout_prob=cfg.dropout)
        self.model_config = config_for(cfg.model, **overrides)
        if dcfg.max_len > self.model_config.max_seq_len:
            raise SetupError(f"--max-len {dcfg.max_len} exceeds the model's {self.model_config.max_seq_len} "
                             f"positions (max_position_embeddings {self.model_config.max_position_embeddings} - 2)")
        if dcfg.global_batch % self.world_size:
            raise SetupError(f"--batch-tokens {dcfg.batch_tokens} gives {dcfg.global_batch} sequences of "
                             f"{dcfg.max_len} tokens, not divisible by the {self.world_size} ranks")
        torch.manual_seed(dcfg.seed)  # identical initial weights on every rank
        self.raw_model = XLMRForMaskedLM(self.model_config, masked_only=True).to(self.device)
        emb_rows = self.raw_model.encoder.embeddings.word.weight.shape[0]
        if emb_rows != tok.vocab_size:
            raise SetupError(f"model embedding has {emb_rows} rows, the vocabulary {tok.vocab_size} ids")

        # data
        try:
            self.data = MLMStream(manifest, max_len=dcfg.max_len, global_batch=dcfg.global_batch,
                                  seed=dcfg.seed, alpha=dcfg.alpha, rank=self.rank,
                                  world_size=self.world_size, mask_prob=dcfg.mask_prob,
                                  packing=dcfg.packing)
        except ValueError as e:
            raise SetupError(f"--shards: {e}") from None
        self.valid = validation_sets(manifest, max_len=dcfg.max_len, max_seqs=dcfg.eval_seqs,
                                     seed=dcfg.seed, rank=self.rank, world_size=self.world_size,
                                     mask_prob=dcfg.mask_prob,
                                     packing=dcfg.packing) if dcfg.eval_seqs else {}
        self.manifest = manifest
        self.tatoeba = self._load_tatoeba(tok) if cfg.eval_tatoeba else []

        # optimizer and schedule
        o = cfg.optim
        fused = {"fused": True} if self.device.type == "cuda" else {}
        self.optimizer = torch.optim.AdamW(param_groups(self.raw_model, o.weight_decay), lr=o.lr,
                                           betas=(o.beta1, o.beta2), eps=o.eps, **fused)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lr_lambda(o.warmup_steps, cfg.steps))

        # resume, replace (--overwrite) or refuse to overwrite an earlier run
        ckpt_path = self.run_dir / CHECKPOINT
        bundle = self._read_for_overwrite(ckpt_path)
        replace = self.overwrite and ckpt_path.exists() and (
            bundle is None or self._incompatibilities(bundle, ckpt_path) is not None)
        if self.resume and not replace:
            self._load(ckpt_path, bundle)
        elif ckpt_path.exists() and not replace:
            raise SetupError(f"--output {self.run_dir} already holds {CHECKPOINT}: pass --resume to continue "
                             f"that run (--overwrite replaces it), or choose another --output")
        if replace and self.rank == 0:
            self.log(f"cc100 pretrain: --overwrite: replacing the run in {self.run_dir}")
            remove_owned_tree(self.run_dir, STAGE)

        model = self.raw_model
        if cfg.compile:
            model = torch.compile(model)
        if self.distributed:
            from torch.nn.parallel import DistributedDataParallel as DDP
            model = DDP(model, device_ids=[self.local_rank] if use_cuda else None)
        self.model = model
        # on GPU the next batch is drawn on a thread while the device computes; on CPU the
        # thread would only compete with the model for the cores
        self.batches = (Prefetcher(self.data, pin_memory=True) if self.device.type == "cuda"
                        else self.data)
        self.autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if self.device.type == "cuda"
                         else nullcontext())
        self.flops_per_token = flops_per_token(self.model_config, dcfg.max_len, dcfg.mask_prob)
        name = torch.cuda.get_device_name(self.device) if self.device.type == "cuda" else ""
        self.peak_flops = next((v for k, v in PEAK_FLOPS.items() if k in name), None)

        if self.rank == 0:
            claim(self.run_dir, STAGE)
            clear_completion(self.run_dir)  # complete again once it reaches its steps
            self._open_log()
        per_rank = dcfg.global_batch // self.world_size
        self.accum = math.ceil(per_rank / cfg.micro_batch)
        skipped = ", ".join(f"{k} ({v} tokens)" for k, v in self.data.skipped.items())
        self.log(f"cc100 pretrain: model {cfg.model} ({self.raw_model.get_num_params() / 1e6:.2f}M params), "
                 f"vocab {tok.vocab_size}, {len(self.data.languages)} languages"
                 + (f" (skipped, too few train tokens for one row: {skipped})" if skipped else ""))
        self.log(f"  {self.world_size} rank(s) on {self.device.type}, global batch {dcfg.global_batch} x "
                 f"{dcfg.max_len} tokens = {dcfg.global_batch * dcfg.max_len}, {self.accum} micro-batch(es) "
                 f"of <= {cfg.micro_batch} per rank, steps {self.step} -> {cfg.steps}, "
                 f"packing {dcfg.packing}")
        probs = " ".join(f"{lang}:{p:.3f}" for lang, p in zip(self.data.languages, self.data.probs))
        self.log(f"  sampling (alpha {dcfg.alpha}): {probs}")

    def _load_tatoeba(self, tok) -> list:
        """The Tatoeba pairs, tokenized once (rank 0 scores them with each validation)."""
        from train.evaluate import TATOEBA_MAX_LEN, EvalError, load_tatoeba

        try:
            return load_tatoeba(self.cfg.eval_tatoeba, tok, min(TATOEBA_MAX_LEN, self.model_config.max_seq_len))
        except EvalError as e:
            raise SetupError(f"--eval-tatoeba: {e}") from None

    def _read_for_overwrite(self, path: Path) -> dict | None:
        """--overwrite with --resume: the checkpoint, read once to decide whether --resume can
        continue it (then it is restored from this read); None otherwise, or when unreadable
        (a run --overwrite replaces, like one of other settings or another vocabulary)."""
        if not (self.overwrite and self.resume and path.exists()):
            return None
        try:
            return load_checkpoint(path)
        except CheckpointError:
            return None

    def _incompatibilities(self, bundle: dict, path: Path) -> str | None:
        """Why --resume cannot continue the checkpoint `bundle` with this command (None: it can)."""
        saved_model = bundle["model_config"]
        mine = dataclasses.asdict(self.model_config)
        if saved_model.get("vocab_size") != mine["vocab_size"]:
            return f"{path} has a vocabulary of {saved_model.get('vocab_size')} ids, --vocab has {mine['vocab_size']}"
        diffs = resume_mismatches(bundle["train_config"], self.cfg.to_dict())
        diffs += [f"model_config.{k}: checkpoint {saved_model.get(k)!r}, now {v!r}"
                  for k, v in mine.items() if saved_model.get(k) != v]
        if bundle.get("shards_vocab_sha256") != self.manifest.vocab_sha256:
            diffs.append("the shards' vocabulary differs")
        return f"{path} is incompatible with this command: " + "; ".join(diffs) if diffs else None

    def _load(self, path: Path, bundle: dict | None = None) -> None:
        """Restore the run from the checkpoint at `path` (`bundle`: already read from it)."""
        if bundle is None:
            try:
                bundle = load_checkpoint(path)
            except CheckpointError as e:
                raise SetupError(f"--resume: {e}") from None
        problem = self._incompatibilities(bundle, path)
        if problem:
            raise SetupError(f"--resume: {problem}")
        try:
            self.raw_model.load_state_dict(bundle["model"])
            self.optimizer.load_state_dict(bundle["optimizer"])
            self.scheduler.load_state_dict(bundle["scheduler"])
            self.data.load_state_dict(bundle["data"])
        except (RuntimeError, ValueError, KeyError) as e:
            raise SetupError(f"--resume: {path}: {e}") from None
        set_rng_state(bundle["rng"])
        self.step = int(bundle["step"])
        if self.data.step != self.step:
            raise SetupError(f"--resume: {path}: data cursor at step {self.data.step}, model at {self.step}")

    def _open_log(self) -> None:
        """Open log.jsonl for appending, first dropping lines past the resumed step (a killed run's tail)."""
        path = self.run_dir / LOG
        if path.exists():
            keep = []
            for line in path.read_text(encoding="utf-8").splitlines():
                try:
                    if json.loads(line)["step"] <= self.step:
                        keep.append(line)
                except (json.JSONDecodeError, KeyError, TypeError):
                    continue  # a line cut by the kill
            atomic_write_text(path, "".join(k + "\n" for k in keep))
        self._log_file = open(path, "a", encoding="utf-8")

    # -- one optimizer step ---------------------------------------------------------------------
    def _all_reduce(self, t: torch.Tensor) -> torch.Tensor:
        if self.distributed:
            dist.all_reduce(t)
        return t

    def train_step(self) -> dict:
        cfg = self.cfg
        batch = self.batches.next_batch()
        # padding per row, counted when the batch was drawn: a micro-batch without any runs
        # attention with no mask (the fastest SDPA kernels), and the log reports the share
        padding = batch["padding"]
        # numpy arrays, or pinned tensors from the Prefetcher (then the copies are asynchronous)
        x = torch.as_tensor(batch["input_ids"]).to(self.device, non_blocking=True)
        y = torch.as_tensor(batch["labels"]).to(self.device, non_blocking=True)
        torch.manual_seed(step_seed(cfg.data.seed, self.step, self.rank))
        n_global = self._all_reduce((y != IGNORE_INDEX).sum().to(torch.float64)).item()
        chunks = np.array_split(np.arange(len(x)), self.accum)
        # loss sum, correct, padding positions
        stats = torch.zeros(3, dtype=torch.float64, device=self.device)
        stats[2] = float(padding.sum())
        self.model.train()
        for i, idx in enumerate(chunks):
            xi, yi = x[idx], y[idx]
            targets = yi[yi != IGNORE_INDEX]
            sync = i == len(chunks) - 1 or not self.distributed
            with (nullcontext() if sync else self.model.no_sync()):
                with self.autocast:
                    out = self.model(xi, labels=yi, padded=bool(padding[idx].any()))
                if len(targets):
                    loss_sum = out.loss * len(targets)
                    loss = loss_sum * (self.world_size / n_global)
                else:  # keep the graph (and DDP's gradient hooks) alive on an empty micro-batch
                    loss_sum = loss = out.logits.sum() * 0.0
                loss.backward()
            stats[0] += loss_sum.detach().double()
            stats[1] += (out.logits.detach().argmax(-1) == targets).sum()
        lr = self.scheduler.get_last_lr()[0]
        grad_norm = torch.nn.utils.clip_grad_norm_(self.raw_model.parameters(),
                                                   cfg.optim.clip_grad if cfg.optim.clip_grad > 0 else float("inf"))
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self._all_reduce(stats)
        self.step += 1
        return {"loss": stats[0].item() / n_global, "mlm_accuracy": stats[1].item() / n_global,
                "lr": lr, "grad_norm": float(grad_norm),
                "pad_share": stats[2].item() / (cfg.data.global_batch * cfg.data.max_len)}

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """Mean masked-LM loss per language on the fixed held-out sequences."""
        self.raw_model.eval()
        out = {}
        for lang, v in self.valid.items():
            stats = torch.zeros(2, dtype=torch.float64, device=self.device)
            x = torch.from_numpy(v["input_ids"]).to(self.device)
            y = torch.from_numpy(v["labels"]).to(self.device)
            for start in range(0, len(x), self.cfg.micro_batch):
                yi = y[start:start + self.cfg.micro_batch]
                n = int((yi != IGNORE_INDEX).sum())
                if n == 0:
                    continue
                with self.autocast:
                    res = self.raw_model(x[start:start + self.cfg.micro_batch], labels=yi)
                stats += torch.tensor([res.loss.item() * n, n], dtype=torch.float64, device=self.device)
            self._all_reduce(stats)
            if stats[1] > 0:
                out[lang] = stats[0].item() / stats[1].item()
        return out

    def tatoeba_record(self) -> dict:
        """Retrieval accuracy (mean of xx->en and en->xx) per language and averaged, for log.jsonl."""
        from train.evaluate import average, default_layer, tatoeba_scores

        layer = default_layer(self.model_config.num_hidden_layers)  # bf16 on a GPU, as `cc100 evaluate`
        scores = tatoeba_scores(self.raw_model, self.tatoeba, layer, pad_id=self.model_config.pad_token_id)
        return {"tatoeba_accuracy": average(scores)["mean"],
                "tatoeba": {lang: s["mean"] for lang, s in scores.items()}}

    # -- checkpoints ------------------------------------------------------------------------------
    def state_bundle(self) -> dict:
        return {
            "model": self.raw_model.state_dict(),
            "model_config": dataclasses.asdict(self.model_config),
            "vocab_file": str(self.vocab_file.resolve()),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "data": self.batches.state_dict(),
            "rng": rng_state(),
            "step": self.step,
            "train_config": self.cfg.to_dict(),
            "world_size": self.world_size,
            "shards_vocab_sha256": self.manifest.vocab_sha256,
            "train_languages": self.train_languages(),
        }

    def train_languages(self) -> dict[str, int]:
        """Train tokens per language (recorded with the model, so evaluations can mark the others)."""
        return {lang: n for lang, n in self.manifest.tokens("train").items() if n}

    def save(self) -> None:
        if self.rank == 0:
            save_checkpoint(self.run_dir / CHECKPOINT, self.state_bundle())

    # -- the loop ---------------------------------------------------------------------------------
    def train(self) -> dict:
        cfg = self.cfg
        tokens_per_step = cfg.data.global_batch * cfg.data.max_len
        start_step, t_start = self.step, time.time()
        t_last, steps_since, last = time.time(), 0, {}
        val_history: dict[str, float] = {}
        if self.step >= cfg.steps:
            self.log(f"  already at step {self.step} of {cfg.steps}: nothing to train")
        while self.step < cfg.steps:
            rec = self.train_step()
            steps_since += 1
            step = self.step
            is_last = step == cfg.steps
            do_eval = bool(self.valid) and (is_last or (cfg.eval_every and step % cfg.eval_every == 0))
            if do_eval:
                t_eval = time.time()
                val_history = self.validate()
                tatoeba = self.tatoeba_record() if self.tatoeba and self.rank == 0 else {}
                t_last += time.time() - t_eval  # tokens/s counts training time only
            if step % cfg.log_every == 0 or is_last or do_eval or step == start_step + 1:
                if self.device.type == "cuda":
                    torch.cuda.synchronize(self.device)
                now = time.time()
                tps = steps_since * tokens_per_step / max(now - t_last, 1e-9)
                rec = {"step": step, **rec, "tokens": step * tokens_per_step, "tokens_per_s": tps,
                       "elapsed_s": now - t_start}
                if self.peak_flops:
                    rec["mfu"] = tps * self.flops_per_token / (self.peak_flops * self.world_size)
                if do_eval:
                    rec["val_loss"] = val_history
                    rec.update(tatoeba)
                self._write_log(rec)
                self._progress(rec, start_step, t_start)
                t_last, steps_since, last = now, 0, rec
            if cfg.stop_at_step is not None and step >= cfg.stop_at_step and not is_last:
                self.log(f"  stopping after step {step} (--stop-at-step, as if killed): no checkpoint "
                         f"written now; continue with --resume")
                return {"stopped_at": step, **last}
            if is_last or (cfg.checkpoint_every and step % cfg.checkpoint_every == 0):
                self.save()
        if self.rank == 0:
            from model.hf import save_pretrained

            hf = self.run_dir / RUN_EXPORT_DIR
            if read_marker(hf) is None:  # an export inside our own run dir: `cc100 export` may rewrite it
                write_marker(hf, "export")
            save_pretrained(self.raw_model, hf, vocab_file=self.vocab_file,
                            train_languages=self.train_languages())
            mark_complete(self.run_dir, STAGE, *completion(cfg))  # reached its steps
        elapsed = time.time() - t_start
        summary = {"steps": self.step, "trained_steps": self.step - start_step,
                   "tokens": (self.step - start_step) * tokens_per_step, "seconds": elapsed,
                   "final_loss": last.get("loss"), "val_loss": val_history}
        self.log(f"\ndone: {summary['trained_steps']} steps, {summary['tokens']:,} tokens in {elapsed:.1f}s"
                 + (f", final loss {summary['final_loss']:.4f}" if summary["final_loss"] is not None else ""))
        for lang, v in sorted(val_history.items()):
            self.log(f"  val_loss {lang:<6} {v:.4f} (ppl {math.exp(min(v, 50)):.1f})")
        self.log(f"  checkpoint {self.run_dir / CHECKPOINT}\n  log        {self.run_dir / LOG}\n"
                 f"  hf export  {self.run_dir / RUN_EXPORT_DIR}")
        return summary

    def _write_log(self, rec: dict) -> None:
        if self._log_file is not None:
            self._log_file.write(json.dumps(rec) + "\n")
            self._log_file.flush()

    def _progress(self, rec: dict, start_step: int, t_start: float) -> None:
        done = rec["step"] - start_step
        eta = (time.time() - t_start) / max(done, 1) * (self.cfg.steps - rec["step"])
        line = (f"step {rec['step']:>{len(str(self.cfg.steps))}}/{self.cfg.steps} | loss {rec['loss']:.4f} | "
                f"acc {rec['mlm_accuracy']:.3f} | lr {rec['lr']:.2e} | {rec['tokens_per_s'] / 1e3:.1f}k tok/s"
                + (f" | pad {rec['pad_share']:.1%}" if "pad_share" in rec else "")
                + (f" | mfu {rec['mfu']:.1%}" if "mfu" in rec else "") + f" | eta {eta:.0f}s")
        if "val_loss" in rec and rec["val_loss"]:
            mean = sum(rec["val_loss"].values()) / len(rec["val_loss"])
            line += f" | val {mean:.4f} ({len(rec['val_loss'])} langs)"
        if "tatoeba_accuracy" in rec:
            line += f" | tatoeba {100 * rec['tatoeba_accuracy']:.1f}% ({len(rec['tatoeba'])} langs)"
        self.log(line)

    def close(self) -> None:
        if isinstance(getattr(self, "batches", None), Prefetcher):
            self.batches.close()
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        if self.distributed and dist.is_initialized():
            dist.destroy_process_group()
