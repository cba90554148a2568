"""Hugging Face `XLMRobertaForMaskedLM` format: state-dict names, config.json, directories.

A directory written by `save_pretrained` loads with `XLMRobertaForMaskedLM.from_pretrained(dir)`
(and, with the vocabulary copied in, `XLMRobertaTokenizer.from_pretrained(dir)`); `load_pretrained`
reads such a directory, ours or one published by Hugging Face / fairseq conversions, into our model.
Only torch, safetensors and the standard library are used: `transformers` is never imported here.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import warnings
from pathlib import Path

import torch
import torch.nn as nn

from model.xlmr import XLMRConfig, XLMRForMaskedLM, unwrap_state_dict
from pipeline.contracts import HF_CONFIG as CONFIG_NAME
from pipeline.contracts import HF_TOKENIZER as TOKENIZER_NAME  # the fast (Rust) tokenizer
from pipeline.contracts import HF_TOKENIZER_CONFIG as TOKENIZER_CONFIG_NAME
from pipeline.contracts import HF_TRAINING_LANGUAGES as TRAINING_LANGUAGES_NAME
from pipeline.contracts import HF_WEIGHTS as WEIGHTS_NAME
from pipeline.contracts import VOCAB_MODEL as VOCAB_NAME  # the file name XLMRobertaTokenizer looks for
from pipeline.contracts import atomic_path, atomic_write_json

# Pieces SentencePiece never matches in text, and the tokenizer.json score that keeps the Unigram
# Viterbi of `tokenizers` off them (scores of real pieces are > -100; a line is < 10^4 pieces).
CONTROL_PIECES = frozenset({"<s>", "</s>", "<unk>", "<pad>", "<mask>"})
BYTE_PIECE = re.compile(r"<0x[0-9A-F]{2}>")
NEVER_MATCHED_SCORE = -1e7
# cc100's own note beside the weights (TRAINING_LANGUAGES_NAME): {"languages": {lang: train
# tokens}}, read by `cc100 evaluate`

# XLMRobertaConfig's own defaults, used for keys a config.json leaves out (they differ from ours:
# a bare XLMRobertaConfig() is BERT-sized with 512 positions, two token types and eps 1e-12).
HF_DEFAULTS = dict(vocab_size=30522, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                   intermediate_size=3072, max_position_embeddings=512, pad_token_id=1, bos_token_id=0,
                   eos_token_id=2, layer_norm_eps=1e-12, hidden_dropout_prob=0.1,
                   attention_probs_dropout_prob=0.1, type_vocab_size=2, initializer_range=0.02)

# ours -> HF, outside the blocks
_TOP = {
    "encoder.embeddings.word.weight": "roberta.embeddings.word_embeddings.weight",
    "encoder.embeddings.position.weight": "roberta.embeddings.position_embeddings.weight",
    "encoder.embeddings.token_type.weight": "roberta.embeddings.token_type_embeddings.weight",
    "encoder.embeddings.ln.weight": "roberta.embeddings.LayerNorm.weight",
    "encoder.embeddings.ln.bias": "roberta.embeddings.LayerNorm.bias",
    "lm_head.dense.weight": "lm_head.dense.weight",
    "lm_head.dense.bias": "lm_head.dense.bias",
    "lm_head.ln.weight": "lm_head.layer_norm.weight",
    "lm_head.ln.bias": "lm_head.layer_norm.bias",
    "lm_head.bias": "lm_head.bias",
}
# ours -> HF inside block i (the fused qkv is handled separately)
_BLOCK = {
    "attn.proj": "attention.output.dense",
    "ln_attn": "attention.output.LayerNorm",
    "mlp.fc": "intermediate.dense",
    "mlp.proj": "output.dense",
    "ln_mlp": "output.LayerNorm",
}
# HF buffers some exports carry: derived from the config, nothing to load
_HARMLESS = ("roberta.embeddings.position_ids", "roberta.embeddings.token_type_ids")


# ---------------------------------------------------------------- config


def config_to_hf(config: XLMRConfig, dtype: torch.dtype = torch.float32) -> dict:
    """config.json contents for XLMRobertaForMaskedLM."""
    return {
        "architectures": ["XLMRobertaForMaskedLM"],
        "model_type": "xlm-roberta",
        **dataclasses.asdict(config),
        "hidden_act": "gelu",
        "position_embedding_type": "absolute",
        "is_decoder": False,
        "add_cross_attention": False,
        "tie_word_embeddings": True,
        "classifier_dropout": None,
        "use_cache": True,
        "dtype": str(dtype).removeprefix("torch."),
    }


def config_from_hf(d: dict, source: str = CONFIG_NAME) -> XLMRConfig:
    """XLMRConfig from config.json contents (xlm-roberta, or roberta: the same network); anything
    our encoder cannot reproduce is an error naming the key."""
    model_type = d.get("model_type")
    if model_type not in ("xlm-roberta", "roberta"):
        raise ValueError(f"{source}: model_type {model_type!r} is not xlm-roberta")
    checks = {"hidden_act": "gelu", "position_embedding_type": "absolute", "is_decoder": False,
              "add_cross_attention": False, "tie_word_embeddings": True}
    for key, supported in checks.items():
        if d.get(key, supported) != supported:
            raise ValueError(f"{source}: {key}={d[key]!r} is not supported (only {supported!r})")
    fields = {f.name for f in dataclasses.fields(XLMRConfig)}
    return XLMRConfig(**{name: d.get(name, HF_DEFAULTS[name]) for name in fields})


# ---------------------------------------------------------------- state dicts


def to_hf_state_dict(state_dict: dict[str, torch.Tensor], config: XLMRConfig) -> dict[str, torch.Tensor]:
    """Our names -> XLMRobertaForMaskedLM's. The tied decoder (weight and bias) is left out, as
    Hugging Face's own save_pretrained does; from_pretrained re-ties it."""
    sd = unwrap_state_dict(state_dict)
    out = {hf: sd[ours] for ours, hf in _TOP.items()}
    C = config.hidden_size
    for i in range(config.num_hidden_layers):
        ours, hf = f"encoder.layers.{i}.", f"roberta.encoder.layer.{i}."
        for kind in ("weight", "bias"):
            q, k, v = sd[f"{ours}attn.qkv.{kind}"].split(C, dim=0)
            out[f"{hf}attention.self.query.{kind}"] = q
            out[f"{hf}attention.self.key.{kind}"] = k
            out[f"{hf}attention.self.value.{kind}"] = v
            for o, h in _BLOCK.items():
                out[f"{hf}{h}.{kind}"] = sd[f"{ours}{o}.{kind}"]
    # detached, contiguous and unshared: safetensors refuses views into one storage
    return {k: v.detach().contiguous().clone() for k, v in out.items()}


def from_hf_state_dict(hf_sd: dict[str, torch.Tensor], config: XLMRConfig,
                       source: str = "checkpoint") -> dict[str, torch.Tensor]:
    """XLMRobertaForMaskedLM names -> ours. Accepts the tied decoder keys older exports carry,
    the pooler and buffers (ignored); a missing or unknown key is a ValueError naming it."""
    sd = {_modern_name(k): v for k, v in hf_sd.items()}
    if not any(k.startswith("roberta.") for k in sd) and any(k.startswith("embeddings.") for k in sd):
        sd = {("roberta." + k if not k.startswith("lm_head.") else k): v for k, v in sd.items()}
    if "lm_head.bias" not in sd and "lm_head.decoder.bias" in sd:
        sd["lm_head.bias"] = sd.pop("lm_head.decoder.bias")
    used: set[str] = set()
    missing: list[str] = []

    def take(key: str) -> torch.Tensor | None:
        if key not in sd:
            missing.append(key)
            return None
        used.add(key)
        return sd[key]

    out = {ours: take(hf) for ours, hf in _TOP.items()}
    for i in range(config.num_hidden_layers):
        ours, hf = f"encoder.layers.{i}.", f"roberta.encoder.layer.{i}."
        for kind in ("weight", "bias"):
            parts = [take(f"{hf}attention.self.{p}.{kind}") for p in ("query", "key", "value")]
            out[f"{ours}attn.qkv.{kind}"] = None if any(p is None for p in parts) else torch.cat(parts, 0)
            for o, h in _BLOCK.items():
                out[f"{ours}{o}.{kind}"] = take(f"{hf}{h}.{kind}")
    if missing:
        hint = " (a headless XLMRobertaModel has no lm_head)" if any("lm_head" in m for m in missing) else ""
        raise ValueError(f"{source}: missing {len(missing)} weight(s){hint}: {', '.join(missing[:5])}"
                         + (" ..." if len(missing) > 5 else ""))

    ignored = []
    for key in sorted(set(sd) - used):
        if key in _HARMLESS:
            continue
        if key == "lm_head.decoder.weight":
            if not torch.equal(sd[key], sd["roberta.embeddings.word_embeddings.weight"]):
                ignored.append(key + " (differs from the word embeddings; tied, as Hugging Face does)")
            continue
        if key == "lm_head.decoder.bias":
            if not torch.equal(sd[key], sd["lm_head.bias"]):
                ignored.append(key + " (differs from lm_head.bias; tied, as Hugging Face does)")
            continue
        if key.startswith("roberta.pooler."):
            ignored.append(key)
            continue
        raise ValueError(f"{source}: unexpected weight {key!r} (not an XLMRobertaForMaskedLM?)")
    if ignored:
        warnings.warn(f"{source}: ignored {len(ignored)} weight(s) the MLM model does not use: "
                      + ", ".join(ignored), stacklevel=2)
    return out


def _modern_name(key: str) -> str:
    """Very old BERT-style exports name LayerNorm parameters gamma/beta."""
    if key.endswith(".gamma"):
        return key[: -len("gamma")] + "weight"
    if key.endswith(".beta"):
        return key[: -len("beta")] + "bias"
    return key


# ---------------------------------------------------------------- directories


def _unwrap_module(model: nn.Module) -> XLMRForMaskedLM:
    """The XLMRForMaskedLM inside a torch.compile / DDP wrapper."""
    while not isinstance(model, XLMRForMaskedLM):
        inner = getattr(model, "_orig_mod", None)
        if inner is None:
            inner = getattr(model, "module", None)
        if inner is None:
            raise TypeError(f"expected an XLMRForMaskedLM, got {type(model).__name__}")
        model = inner
    return model


def save_state_pretrained(state_dict: dict[str, torch.Tensor], config: XLMRConfig, out_dir: str | os.PathLike,
                          vocab_file: str | os.PathLike | None = None,
                          train_languages: dict[str, int] | None = None) -> list[Path]:
    """Write config.json + model.safetensors (+ the vocabulary, + the training languages) into out_dir;
    returns the files written."""
    from safetensors.torch import save_file

    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"{out}: exists and is not a directory")
    out.mkdir(parents=True, exist_ok=True)
    tensors = to_hf_state_dict(state_dict, config)
    dtype = tensors["roberta.embeddings.word_embeddings.weight"].dtype
    written = []
    with atomic_path(out / WEIGHTS_NAME) as tmp:
        save_file(tensors, str(tmp), metadata={"format": "pt"})
        os.chmod(tmp, 0o666 & ~_umask())  # safetensors creates 0600; make it as readable as any other file
    written.append(out / WEIGHTS_NAME)
    _write_json(out / CONFIG_NAME, config_to_hf(config, dtype))
    written.append(out / CONFIG_NAME)
    if vocab_file is not None:
        written += write_tokenizer(out, vocab_file, config.max_seq_len)
    if train_languages:
        _write_json(out / TRAINING_LANGUAGES_NAME, {"languages": dict(train_languages)})
        written.append(out / TRAINING_LANGUAGES_NAME)
    return written


def spm_byte_fallback(vocab_file: str | os.PathLike) -> bool:
    """Whether a SentencePiece model encodes uncovered characters as UTF-8 byte pieces."""
    from sentencepiece import sentencepiece_model_pb2 as model_pb2

    proto = model_pb2.ModelProto()
    proto.ParseFromString(Path(vocab_file).read_bytes())
    return bool(proto.trainer_spec.byte_fallback)


def tokenizer_config(max_len: int, byte_fallback: bool) -> dict:
    """tokenizer_config.json: the classes that read it give the ids the model was trained on.

    - `split_special_tokens`: text is text. "<s>" or "<mask>" written in a sentence is encoded as
      characters, as SentencePiece did for the training data (pass `split_special_tokens=False`
      to put a mask into a sentence by writing "<mask>", e.g. for the fill-mask pipeline).
    - With byte fallback, XLMRobertaTokenizer's constructor rebuilds the Unigram model without
      it (transformers 5.x) unless the tokenizer is loaded from tokenizer.json as written;
      transformers does that for a config that sets `trust_remote_code` (no code is involved:
      the directory has no auto_map and no .py file).
    """
    config = {
        "tokenizer_class": "XLMRobertaTokenizer",
        "model_max_length": max_len,
        "bos_token": "<s>", "eos_token": "</s>", "sep_token": "</s>", "cls_token": "<s>",
        "unk_token": "<unk>", "pad_token": "<pad>", "mask_token": "<mask>",
        "split_special_tokens": True,
    }
    if byte_fallback:
        config["trust_remote_code"] = True
    return config


def write_tokenizer(out_dir: Path, vocab_file: str | os.PathLike, max_len: int) -> list[Path]:
    """Copy the SentencePiece model and write tokenizer_config.json and tokenizer.json.

    tokenizer.json is transformers' own conversion of the model (XLMRobertaTokenizer), with byte
    fallback switched on when the model has it (the converter leaves it off). SentencePiece
    never matches a control piece (<s>, </s>, <unk>, <pad>, <mask>) or a byte piece (<0x41>)
    against text, but `tokenizers`' Unigram matches every piece of its vocabulary; their scores
    are set so low that a Viterbi path through them never wins, so "<s>" or "<0x41>" written in
    a sentence are encoded as characters, as training saw them. Without
    `transformers` only the first two files are written; XLMRobertaTokenizer still loads them.
    """
    vocab = Path(vocab_file)
    if not vocab.is_file():
        raise FileNotFoundError(f"{vocab}: vocabulary file not found")
    shutil.copyfile(vocab, out_dir / VOCAB_NAME)
    byte_fallback = spm_byte_fallback(vocab)
    (out_dir / TOKENIZER_NAME).unlink(missing_ok=True)  # a stale one would be read back below
    _write_json(out_dir / TOKENIZER_CONFIG_NAME, tokenizer_config(max_len, False))
    written = [out_dir / VOCAB_NAME, out_dir / TOKENIZER_CONFIG_NAME]
    try:
        from tokenizers import Tokenizer, decoders
        from transformers import XLMRobertaTokenizer
    except ImportError:
        return written
    spec = json.loads(XLMRobertaTokenizer.from_pretrained(str(out_dir)).backend_tokenizer.to_str())
    spec["model"]["byte_fallback"] = byte_fallback
    for entry in spec["model"]["vocab"]:
        if entry[0] in CONTROL_PIECES or (byte_fallback and BYTE_PIECE.fullmatch(entry[0])):
            entry[1] = NEVER_MATCHED_SCORE
    backend = Tokenizer.from_str(json.dumps(spec))
    if byte_fallback:
        # pieces -> text: "▁" is a space, byte pieces (<0xE2><0x82><0xAC>) become their
        # character, and the space the encoder prepended to the first word goes away
        backend.decoder = decoders.Sequence([
            decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(),
            decoders.Strip(" ", 1, 0),
        ])
        _write_json(out_dir / TOKENIZER_CONFIG_NAME, tokenizer_config(max_len, True))
    backend.save(str(out_dir / TOKENIZER_NAME))
    return written + [out_dir / TOKENIZER_NAME]


def save_pretrained(model: nn.Module, out_dir: str | os.PathLike,
                    vocab_file: str | os.PathLike | None = None,
                    train_languages: dict[str, int] | None = None) -> list[Path]:
    """Our model (plain, compiled or DDP-wrapped) -> a Hugging Face XLMRobertaForMaskedLM directory."""
    model = _unwrap_module(model)
    return save_state_pretrained(model.state_dict(), model.config, out_dir, vocab_file, train_languages)


def load_hf_state_dict(directory: str | os.PathLike) -> dict[str, torch.Tensor]:
    """All weights of an HF directory: model.safetensors, pytorch_model.bin, or a sharded index of either."""
    from safetensors.torch import load_file

    d = Path(directory)
    for name in (WEIGHTS_NAME, "pytorch_model.bin"):
        index = d / f"{name}.index.json"
        files = [d / name] if (d / name).is_file() else []
        if not files and index.is_file():
            weight_map = json.loads(index.read_text())["weight_map"]
            files = [d / f for f in sorted(set(weight_map.values()))]
        if files:
            sd: dict[str, torch.Tensor] = {}
            for f in files:
                if not f.is_file():
                    raise FileNotFoundError(f"{f}: listed in {index.name} but missing")
                if f.suffix == ".safetensors":
                    sd.update(load_file(str(f)))
                else:
                    sd.update(torch.load(f, map_location="cpu", weights_only=True))
            return sd
    raise FileNotFoundError(f"{d}: no model.safetensors or pytorch_model.bin (an HF model directory?)")


def load_pretrained(directory: str | os.PathLike, dtype: torch.dtype = torch.float32,
                    device: str | torch.device = "cpu", masked_only: bool = False) -> XLMRForMaskedLM:
    """An HF-format directory (ours or Hugging Face's) -> our model, in eval mode like from_pretrained."""
    d = Path(directory)
    if not (d / CONFIG_NAME).is_file():
        raise FileNotFoundError(f"{d}: no {CONFIG_NAME} (not a Hugging Face model directory)")
    config = config_from_hf(json.loads((d / CONFIG_NAME).read_text()), source=str(d / CONFIG_NAME))
    state = from_hf_state_dict(load_hf_state_dict(d), config, source=str(d))
    with torch.device("meta"):  # no random init: every tensor comes from the checkpoint
        model = XLMRForMaskedLM(config, masked_only=masked_only)
    try:
        model.load_state_dict(state, strict=True, assign=True)
    except RuntimeError as e:  # shape mismatch between config.json and the weights
        raise ValueError(f"{d}: weights do not match {CONFIG_NAME}: {e}") from None
    return model.to(device=device, dtype=dtype).eval()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _write_json(path: Path, obj: dict) -> None:
    atomic_write_json(path, obj, indent=2, sort_keys=True)
