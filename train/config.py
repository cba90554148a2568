"""Pretraining configuration: a small dataclass tree, checked on construction, saved in checkpoints.

Defaults per model preset follow RoBERTa / XLM-R: AdamW(0.9, 0.98, eps 1e-6), weight decay 0.01,
8192 sequences of 512 tokens per step for base/large (XLM-R's batch), peak learning rates of
RoBERTa's Table 9 (6e-4 base, 4e-4 large), linear warmup (6% of the steps, at most 10k) then
linear decay to 0. `tiny` is for CPU tests and smoke runs.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from pipeline.contracts import MODEL_PRESETS
from pipeline.utils.cliflags import option, sub_config
from train.data import PACKINGS

# --help groups of the flags
OPTIMISATION = "optimisation"
LOGGING = "logging and checkpoints"

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
    shards: str = option("--shards", required=True, help="SHARDS dir written by `cc100 tokenize`")
    vocab: str = option("--vocab", required=True, help="VOCAB_DIR with sentencepiece.bpe.model")
    max_len: int = option(  # tokens per sequence, <s> and </s> included
        "--max-len", default=512, unset=True,
        help="tokens per sequence incl. <s> </s> (default 512; tiny 128)")
    batch_tokens: int = option(  # tokens per optimizer step, over all ranks
        "--batch-tokens", default=8192 * 512, unset=True,
        help="tokens per optimizer step over all ranks (default: tiny 2048, small 131072, base/large 8192 x 512)")
    alpha: float = option("--alpha", default=0.3, group=OPTIMISATION,
                          help="language sampling exponent (XLM-R 0.3)")
    mask_prob: float = option("--mask-prob", default=0.15, group=OPTIMISATION)
    seed: int = option("--seed", default=0)
    eval_seqs: int = option("--eval-seqs", default=64, group=LOGGING,
                            help="held-out sequences per language")  # per evaluation
    packing: str = option(  # "complete": whole paragraphs per row (RoBERTa FULL-SENTENCES); "blocks"
        "--packing", default="complete", choices=PACKINGS,
        help="rows of whole paragraphs across documents, only the rest padded (complete: RoBERTa "
        "FULL-SENTENCES, default), or fixed max_len - 2 token blocks (blocks)")

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
    lr: float = option("--lr", default=6e-4, unset=True, group=OPTIMISATION,
                       help="peak learning rate (default: tiny 1e-3, small/base 6e-4, large 4e-4)")
    warmup_steps: int = option("--warmup-steps", default=0, unset=True, group=OPTIMISATION,
                               help="linear warmup (default 6%% of --steps, at most 10000)")
    weight_decay: float = option(  # not applied to biases and LayerNorm weights
        "--weight-decay", default=0.01, group=OPTIMISATION)
    beta1: float = 0.9
    beta2: float = 0.98
    eps: float = 1e-6
    clip_grad: float = option(  # max global grad norm; 0 disables
        "--clip-grad", default=1.0, group=OPTIMISATION, help="max gradient norm (0: off)")

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
    output: str = option("--output", required=True, help="RUN_DIR for checkpoint.pt, log.jsonl, hf/")
    data: DataConfig = sub_config(DataConfig)
    model: str = option("--config", dest="config", default="base", choices=list(PRESETS),  # of model/xlmr.py
                        help="model size (default %(default)s)")
    steps: int = option("--steps", default=1000, required=True,
                        help="optimizer steps (fixes the LR schedule)")
    optim: OptimConfig = sub_config(OptimConfig)
    micro_batch: int = option(  # sequences per forward pass per rank (gradient accumulation fills the rest)
        "--micro-batch", default=32, unset=True, group=OPTIMISATION,
        help="sequences per forward pass per rank (gradient accumulation fills the batch; default: "
        "tiny 16, small/base 32, large 16)")
    log_every: int = option("--log-every", default=10, group=LOGGING)
    eval_every: int = option("--eval-every", default=500, group=LOGGING,  # 0: only at the end
                             help="validation every N steps (0: at the end)")
    checkpoint_every: int = option("--checkpoint-every", default=1000, group=LOGGING,  # 0: only at the end
                                   help="0: only at the end")
    dropout: float | None = option(  # None: the preset's (0.1); 0 for exact DDP comparisons
        "--dropout", default=None, group=OPTIMISATION, help="override the model's dropout (default 0.1)")
    compile: bool = option("--compile", default=False, group=OPTIMISATION, help="torch.compile the model")
    device: str = option("--device", default="auto", choices=["auto", "cpu", "cuda"], group=OPTIMISATION)
    stop_at_step: int | None = option(  # exit after this step as if killed (no checkpoint, no export)
        "--stop-at-step", default=None, hidden=True, group=LOGGING)  # fault injection for tests
    eval_tatoeba: str | None = option(  # Tatoeba dir (LASER layout): retrieval accuracy with each validation
        "--eval-tatoeba", default=None, metavar="DIR", group=LOGGING,
        help="Tatoeba test set (LASER layout, as `cc100 evaluate --tatoeba`): log the retrieval "
        "accuracy per language and averaged with each validation")

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
