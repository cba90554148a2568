"""XLM-RoBERTa encoder with its masked-LM head, in one file, in reading order.

Semantics are fairseq's RoBERTa (and so Hugging Face's `XLMRobertaForMaskedLM`, which is tested
equal to this to 1e-5): learned positions that start at `pad_token_id + 1` with padding keeping
`pad_token_id`, one token-type embedding, LayerNorm on the embeddings, post-LayerNorm blocks, exact
(erf) GELU, and an LM head dense -> GELU -> LayerNorm -> decoder tied to the word embeddings plus
its own bias. Attention goes through `F.scaled_dot_product_attention` so GPUs get the fused kernels.

Parameter names are short (nanoGPT style); model/hf.py maps them to and from Hugging Face's.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from pipeline.contracts import MODEL_PRESETS  # standard library only

IGNORE_INDEX = -100  # label value for "not a prediction target" (HF and PyTorch convention)


@dataclass
class XLMRConfig:
    """Hyperparameters, named as in Hugging Face's config.json so the two map 1:1."""

    vocab_size: int = 250002
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    max_position_embeddings: int = 514  # 512 tokens + pad_token_id + 1 (positions start there)
    pad_token_id: int = 1
    bos_token_id: int = 0
    eos_token_id: int = 2
    layer_norm_eps: float = 1e-5
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    type_vocab_size: int = 1
    initializer_range: float = 0.02

    def __post_init__(self) -> None:
        positive = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                    "intermediate_size", "max_position_embeddings", "type_vocab_size")
        for name in positive:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"XLMRConfig.{name} must be a positive integer, got {value!r}")
        for name in ("pad_token_id", "bos_token_id", "eos_token_id"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < self.vocab_size:
                raise ValueError(f"XLMRConfig.{name} must be an id in [0, vocab_size={self.vocab_size}), "
                                 f"got {value!r}")
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(f"XLMRConfig.hidden_size ({self.hidden_size}) must be divisible by "
                             f"num_attention_heads ({self.num_attention_heads})")
        if self.max_position_embeddings <= self.pad_token_id + 1:
            raise ValueError(f"XLMRConfig.max_position_embeddings ({self.max_position_embeddings}) must "
                             f"exceed pad_token_id + 1 ({self.pad_token_id + 1}): positions start there")
        for name in ("hidden_dropout_prob", "attention_probs_dropout_prob"):
            value = getattr(self, name)
            if not 0.0 <= value < 1.0:
                raise ValueError(f"XLMRConfig.{name} must be in [0, 1), got {value!r}")
        if not self.layer_norm_eps > 0:
            raise ValueError(f"XLMRConfig.layer_norm_eps must be > 0, got {self.layer_norm_eps!r}")
        if not self.initializer_range > 0:
            raise ValueError(f"XLMRConfig.initializer_range must be > 0, got {self.initializer_range!r}")

    @property
    def max_seq_len(self) -> int:
        """Longest input: the positions pad_token_id+1 .. max_position_embeddings-1."""
        return self.max_position_embeddings - self.pad_token_id - 1

    @classmethod
    def from_dict(cls, d: dict) -> "XLMRConfig":
        """Rebuild from `dataclasses.asdict(cfg)` (a checkpoint's model_config); unknown keys are an error."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"XLMRConfig: unknown field(s) {', '.join(unknown)}")
        return cls(**d)


# Named presets: the sizes of pipeline/contracts.py MODEL_PRESETS (one list for the model, the
# trainer and the DAGs). base/large are XLM-R's (Conneau et al. 2020); tiny trains on a CPU in seconds.
PRESETS: dict[str, dict] = {name: preset["model"] for name, preset in MODEL_PRESETS.items()}


def config_for(preset: str, **overrides) -> XLMRConfig:
    """A preset's config, with any field overridden (typically vocab_size from the vocab stage)."""
    if preset not in PRESETS:
        raise ValueError(f"preset must be one of {', '.join(PRESETS)}, got {preset!r}")
    return XLMRConfig(**{**PRESETS[preset], **overrides})


def position_ids_from(input_ids: torch.Tensor, pad_token_id: int) -> torch.Tensor:
    """fairseq's make_positions: pad_token_id+1, +2, ... over real tokens; padding keeps pad_token_id."""
    not_pad = input_ids.ne(pad_token_id).long()
    return torch.cumsum(not_pad, dim=1) * not_pad + pad_token_id


def key_padding_mask(input_ids: torch.Tensor, attention_mask: torch.Tensor | None,
                     pad_token_id: int, padded: bool | None = None) -> torch.Tensor | None:
    """(B, 1, 1, T) bool, True = the key may be attended; None when every key may be.

    fairseq never attends to padding (attention_mask defaults to input_ids != pad). A batch
    without padding gets no mask at all, so SDPA can pick its fastest (flash) kernels.
    `padded` is what the caller knows: False = no padding (no mask, no check), True = build the
    mask, None = find out (one device sync; under torch.compile the mask is always built, since
    a branch on tensor values would break the graph).
    """
    if padded is False:
        return None
    keep = input_ids.ne(pad_token_id) if attention_mask is None else attention_mask.bool()
    if padded is None and not torch.compiler.is_compiling() and bool(keep.all()):
        return None
    keep = keep[:, None, None, :]
    # A row with no key to attend (an all-padding sequence) would softmax over nothing -> NaN;
    # let such rows attend everywhere instead. Their outputs are padding and unused.
    return keep | ~keep.any(dim=-1, keepdim=True)


class Embeddings(nn.Module):
    def __init__(self, config: XLMRConfig):
        super().__init__()
        self.pad_token_id = config.pad_token_id
        self.word = nn.Embedding(config.vocab_size, config.hidden_size, padding_idx=config.pad_token_id)
        self.position = nn.Embedding(config.max_position_embeddings, config.hidden_size,
                                     padding_idx=config.pad_token_id)
        self.token_type = nn.Embedding(config.type_vocab_size, config.hidden_size)
        self.ln = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.drop = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        positions = position_ids_from(input_ids, self.pad_token_id)  # (B, T)
        # every token is segment 0 (XLM-R has one token type); added as a broadcast row
        x = self.word(input_ids) + self.position(positions) + self.token_type.weight[0]  # (B, T, C)
        return self.drop(self.ln(x))


class SelfAttention(nn.Module):
    def __init__(self, config: XLMRConfig):
        super().__init__()
        self.n_head = config.num_attention_heads
        self.qkv = nn.Linear(config.hidden_size, 3 * config.hidden_size)  # HF's query, key, value fused
        self.proj = nn.Linear(config.hidden_size, config.hidden_size)
        self.attn_dropout = config.attention_probs_dropout_prob

    def forward(self, x: torch.Tensor, keep: torch.Tensor | None) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.qkv(x).split(C, dim=2)
        q = q.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        k = k.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        v = v.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=keep, dropout_p=self.attn_dropout if self.training else 0.0)
        y = y.transpose(1, 2).reshape(B, T, C)
        return self.proj(y)


class MLP(nn.Module):
    def __init__(self, config: XLMRConfig):
        super().__init__()
        self.fc = nn.Linear(config.hidden_size, config.intermediate_size)
        self.proj = nn.Linear(config.intermediate_size, config.hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(F.gelu(self.fc(x)))


class Block(nn.Module):
    """Post-LayerNorm transformer block (BERT/RoBERTa): x = LN(x + f(x)) twice."""

    def __init__(self, config: XLMRConfig):
        super().__init__()
        self.attn = SelfAttention(config)
        self.ln_attn = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.mlp = MLP(config)
        self.ln_mlp = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.drop = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, x: torch.Tensor, keep: torch.Tensor | None) -> torch.Tensor:
        x = self.ln_attn(x + self.drop(self.attn(x, keep)))
        x = self.ln_mlp(x + self.drop(self.mlp(x)))
        return x


class Encoder(nn.Module):
    """Embeddings and the stack of blocks: token ids -> contextual hidden states."""

    def __init__(self, config: XLMRConfig):
        super().__init__()
        self.config = config
        self.embeddings = Embeddings(config)
        self.layers = nn.ModuleList([Block(config) for _ in range(config.num_hidden_layers)])

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                padded: bool | None = None) -> torch.Tensor:
        T = input_ids.size(1)
        if T > self.config.max_seq_len:
            raise ValueError(f"input length {T} exceeds the model's maximum of {self.config.max_seq_len} "
                             f"tokens (max_position_embeddings={self.config.max_position_embeddings})")
        keep = key_padding_mask(input_ids, attention_mask, self.config.pad_token_id, padded)
        x = self.embeddings(input_ids)  # (B, T, C)
        for block in self.layers:
            x = block(x, keep)
        return x


class MLMHead(nn.Module):
    """dense -> GELU -> LayerNorm -> decoder; the decoder weight is the word embedding matrix."""

    def __init__(self, config: XLMRConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.ln = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.bias = nn.Parameter(torch.zeros(config.vocab_size))

    def forward(self, x: torch.Tensor, decoder_weight: torch.Tensor) -> torch.Tensor:
        x = self.ln(F.gelu(self.dense(x)))
        return F.linear(x, decoder_weight, self.bias)  # (..., V)


class MLMOutput(NamedTuple):
    logits: torch.Tensor  # (B, T, V), or (N_targets, V) when only target positions are projected
    loss: torch.Tensor | None  # mean cross-entropy over targets when labels were given


class XLMRForMaskedLM(nn.Module):
    """The encoder plus the masked-LM head.

    `masked_only=True` projects only the positions whose label is not -100 onto the vocabulary
    (as fairseq does): with a 250K vocabulary the head is a large share of the compute, and only
    ~15% of positions are targets. It applies only when labels are given; a forward call may
    override it with `masked_only=`. The loss is the same either way.
    """

    def __init__(self, config: XLMRConfig, masked_only: bool = False):
        super().__init__()
        self.config = config
        self.masked_only = masked_only
        self.encoder = Encoder(config)
        self.lm_head = MLMHead(config)
        self.apply(self._init_weights)

    def _init_weights(self, module: nn.Module) -> None:
        """BERT initialisation: normal(0, initializer_range), zero biases and padding rows, LayerNorm 1/0."""
        std = self.config.initializer_range
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=std)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=std)
            if module.padding_idx is not None:
                with torch.no_grad():
                    module.weight[module.padding_idx].zero_()
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, MLMHead):
            nn.init.zeros_(module.bias)

    def get_num_params(self, non_embedding: bool = False) -> int:
        """Number of parameters, the tied decoder counted once (as Hugging Face counts them).

        non_embedding=True leaves out the word, position and token-type tables (for FLOPs estimates).
        """
        n = sum(p.numel() for p in self.parameters())
        if non_embedding:
            emb = self.encoder.embeddings
            n -= emb.word.weight.numel() + emb.position.weight.numel() + emb.token_type.weight.numel()
        return n

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                labels: torch.Tensor | None = None, masked_only: bool | None = None,
                padded: bool | None = None) -> MLMOutput:
        """input_ids (B, T); attention_mask (B, T), 1 = real token (default: input_ids != pad);
        labels (B, T), IGNORE_INDEX (-100) where there is nothing to predict; padded: whether the
        batch has padding, if the caller knows (see `key_padding_mask`)."""
        h = self.encoder(input_ids, attention_mask, padded)  # (B, T, C)
        decoder_weight = self.encoder.embeddings.word.weight
        if labels is None:
            return MLMOutput(self.lm_head(h, decoder_weight), None)
        if masked_only is None:
            masked_only = self.masked_only
        if masked_only:
            targets = labels.ne(IGNORE_INDEX)
            logits = self.lm_head(h[targets], decoder_weight)  # (N_targets, V)
            labels = labels[targets]
        else:
            logits = self.lm_head(h, decoder_weight)  # (B, T, V)
        loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), labels.reshape(-1),
                               ignore_index=IGNORE_INDEX)
        return MLMOutput(logits, loss)


def unwrap_state_dict(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Strip the key prefixes torch.compile (`_orig_mod.`) and DDP/FSDP (`module.`) add, in any nesting."""
    out = {}
    for key, value in state_dict.items():
        while True:
            for prefix in ("_orig_mod.", "module."):
                if key.startswith(prefix):
                    key = key[len(prefix):]
                    break
            else:
                break
        out[key] = value
    return out


__all__ = ["IGNORE_INDEX", "PRESETS", "XLMRConfig", "XLMRForMaskedLM", "MLMOutput", "config_for",
           "position_ids_from", "unwrap_state_dict"]
