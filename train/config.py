"""Pretraining configuration: a small dataclass tree, checked on construction, saved in checkpoints.

Defaults per model preset follow RoBERTa / XLM-R: AdamW(0.9, 0.98, eps 1e-6), weight decay 0.01,
8192 sequences of 512 tokens per step for base/large (XLM-R's batch), peak learning rates of
RoBERTa's Table 9 (6e-4 base, 4e-4 large), linear warmup (6% of the steps, at most 10k) then
linear decay to 0. `tiny` is for CPU tests and smoke runs.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

from pipeline.contracts import MODEL_PRESETS
from train.data import PACKINGS

# model preset -> training defaults (pipeline/contracts.py; any of them can be overridden on the
# command line)
PRESETS: dict[str, dict] = {name: preset["train"] for name, preset in MODEL_PRESETS.items()}


def _positive_int(obj, name: str, allow_zero: bool = False) -> None:
    value = getattr(obj, name)
    low = 0 if allow_zero else 1
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{type(obj).__name__}.{name} must be an integer >= {low}, got {value!r}")


def _in_range(obj, name: str, low: float, high: float, closed_high: bool = False) -> None:
    value = getattr(obj, name)
    ok = isinstance(value, (int, float)) and not math.isnan(value) and low <= value \
        and (value <= high if closed_high else value < high)
    if not ok:
        bracket = "]" if closed_high else ")"
        raise ValueError(f"{type(obj).__name__}.{name} must be in [{low}, {high}{bracket}, got {value!r}")


@dataclass
class DataConfig:
    shards: str
    vocab: str
    max_len: int = 512  # tokens per sequence, <s> and </s> included
    batch_tokens: int = 8192 * 512  # tokens per optimizer step, over all ranks
    alpha: float = 0.3  # language sampling exponent
    mask_prob: float = 0.15
    seed: int = 0
    eval_seqs: int = 64  # held-out sequences per language per evaluation
    packing: str = "complete"  # "complete": whole paragraphs per row (RoBERTa FULL-SENTENCES); "blocks"

    def __post_init__(self) -> None:
        _positive_int(self, "max_len")
        if self.max_len < 8:
            raise ValueError(f"DataConfig.max_len must be >= 8, got {self.max_len}")
        _positive_int(self, "batch_tokens")
        if self.batch_tokens < self.max_len:
            raise ValueError(f"DataConfig.batch_tokens ({self.batch_tokens}) cannot fit one sequence "
                             f"of max_len {self.max_len}")
        _in_range(self, "alpha", 0.0, 1.0, closed_high=True)
        _in_range(self, "mask_prob", 0.0, 1.0)
        if self.mask_prob == 0:
            raise ValueError("DataConfig.mask_prob must be > 0 (nothing to predict)")
        _positive_int(self, "seed", allow_zero=True)
        _positive_int(self, "eval_seqs", allow_zero=True)
        if self.packing not in PACKINGS:
            raise ValueError(f"DataConfig.packing must be one of {', '.join(PACKINGS)}, got {self.packing!r}")

    @property
    def global_batch(self) -> int:
        """Sequences per optimizer step (over all ranks)."""
        return self.batch_tokens // self.max_len


@dataclass
class OptimConfig:
    lr: float = 6e-4
    warmup_steps: int = 0
    weight_decay: float = 0.01  # not applied to biases and LayerNorm weights
    beta1: float = 0.9
    beta2: float = 0.98
    eps: float = 1e-6
    clip_grad: float = 1.0  # max global grad norm; 0 disables

    def __post_init__(self) -> None:
        if not (isinstance(self.lr, (int, float)) and 0 < self.lr < 1):
            raise ValueError(f"OptimConfig.lr must be in (0, 1), got {self.lr!r}")
        _positive_int(self, "warmup_steps", allow_zero=True)
        _in_range(self, "weight_decay", 0.0, 1.0)
        _in_range(self, "beta1", 0.0, 1.0)
        _in_range(self, "beta2", 0.0, 1.0)
        if not (isinstance(self.eps, (int, float)) and self.eps > 0):
            raise ValueError(f"OptimConfig.eps must be > 0, got {self.eps!r}")
        if not (isinstance(self.clip_grad, (int, float)) and self.clip_grad >= 0):
            raise ValueError(f"OptimConfig.clip_grad must be >= 0, got {self.clip_grad!r}")


@dataclass
class TrainConfig:
    output: str
    data: DataConfig
    model: str = "base"  # preset of model/xlmr.py
    steps: int = 1000
    optim: OptimConfig = field(default_factory=OptimConfig)
    micro_batch: int = 32  # sequences per forward pass per rank (gradient accumulation fills the rest)
    log_every: int = 10
    eval_every: int = 500  # 0: only at the end
    checkpoint_every: int = 1000  # 0: only at the end
    dropout: float | None = None  # None: the preset's (0.1); 0 for exact DDP comparisons
    compile: bool = False
    device: str = "auto"  # auto | cpu | cuda
    stop_at_step: int | None = None  # exit after this step as if killed (no checkpoint, no export)
    eval_tatoeba: str | None = None  # Tatoeba dir (LASER layout): retrieval accuracy with each validation

    def __post_init__(self) -> None:
        if self.model not in MODEL_PRESETS:
            raise ValueError(f"TrainConfig.model must be one of {', '.join(MODEL_PRESETS)}, "
                             f"got {self.model!r}")
        for name in ("steps", "micro_batch", "log_every"):
            _positive_int(self, name)
        for name in ("eval_every", "checkpoint_every"):
            _positive_int(self, name, allow_zero=True)
        if self.optim.warmup_steps > self.steps:
            raise ValueError(f"OptimConfig.warmup_steps ({self.optim.warmup_steps}) exceeds "
                             f"TrainConfig.steps ({self.steps})")
        if self.dropout is not None:
            _in_range(self, "dropout", 0.0, 1.0)
        if self.device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"TrainConfig.device must be auto, cpu or cuda, got {self.device!r}")
        if self.stop_at_step is not None and not (isinstance(self.stop_at_step, int)
                                                  and 1 <= self.stop_at_step <= self.steps):
            raise ValueError(f"TrainConfig.stop_at_step must be in [1, steps={self.steps}], "
                             f"got {self.stop_at_step!r}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def default_warmup(steps: int) -> int:
    """6% of the run, at most 10k steps (RoBERTa: 24k of 500k; XLM-R: 10k)."""
    return min(10_000, round(0.06 * steps))


# Settings a resumed run must share with its checkpoint: they change what the loss curve is.
RESUME_KEYS = ("model", "data.max_len", "data.batch_tokens", "data.alpha", "data.mask_prob",
               "data.seed", "data.packing", "optim.lr", "optim.warmup_steps", "optim.weight_decay", "optim.beta1",
               "optim.beta2", "optim.eps", "optim.clip_grad", "dropout", "steps")


def lookup(d: dict, dotted: str):
    for part in dotted.split("."):
        d = d.get(part) if isinstance(d, dict) else None
    return d


# What a checkpoint written before a key existed ran with.
LEGACY_VALUES = {"data.packing": "blocks"}


def resume_mismatches(saved: dict, current: dict) -> list[str]:
    """Human-readable differences between a checkpoint's train config and this run's."""
    out = []
    for key in RESUME_KEYS:
        a, b = lookup(saved, key), lookup(current, key)
        if a is None:
            a = LEGACY_VALUES.get(key)
        if a != b:
            out.append(f"{key}: checkpoint {a!r}, now {b!r}")
    return out
