"""`cc100 evaluate MODEL`: what an XLM-R encoder learned beyond token frequencies.

    cc100 evaluate MODEL [--tatoeba DIR] [--shards DIR] [--output DIR] [--layer L] [--langs deu,fra]

MODEL is a pretraining run directory (its checkpoint.pt, shards and settings are used), a
directory written by `cc100 export` (or RUN/hf), or any Hugging Face XLM-R masked-LM directory
with its sentencepiece.bpe.model (e.g. a local copy of `xlm-roberta-base`), so two models are
compared with the same command and numbers.

1. Tatoeba retrieval as XTREME runs it (third_party/evaluate_retrieval.py, scripts/run_tatoeba.sh):
   each sentence is `<s> pieces </s>` (at most 512 tokens), its embedding the mean of the hidden
   states of block L over every non-padding position (<s> and </s> included); L counts the blocks
   from 0 like XTREME's --specific_layer (7 of 12; 13 of 24; round(7 n / 12) otherwise), so it is
   transformers' `hidden_states[L + 1]`. Cosine nearest neighbour; accuracy is the share of
   sentences whose neighbour is their translation, xx->en and en->xx (XTREME reports en->xx:
   English queries against the other side), per language and averaged. Languages missing from
   the model's training corpus are marked.
2. Masked-LM loss per language on the held-out split of the token shards: the same fixed
   sequences and masks as the pretraining validation (train/data.py `validation_sets`), next to
   the unigram entropy of the same held-out tokens -- the loss of a model that knows only token
   frequencies (and knows them exactly for this sample: an optimistic baseline).

Writes OUTPUT/eval.json, OUTPUT/eval.png and OUTPUT/mlm_heldout.npz (the masked sequences, so
anyone can recompute the losses with transformers alone), and prints a table.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from pipeline.contracts import (EVAL_JSON, EVAL_PLOT, OwnershipError, claim, clear_completion, decisive,
                                fingerprint, mark_complete, pop_force, skip_if_up_to_date)
from pipeline.contracts import EVAL_MLM_BATCHES as MLM_BATCHES
from pipeline.utils.cliflags import add_force_flag, option

EVALUATE_STAGE = "evaluate"  # the marker of an evaluation directory
TATOEBA_MAX_LEN = 512  # XTREME's MAXL

# The 36 XTREME Tatoeba languages (LASER codes, ISO 639-3) -> the corpus's LID-176 codes.
TATOEBA_LANGUAGES = {
    "afr": "af", "ara": "ar", "ben": "bn", "bul": "bg", "cmn": "zh", "deu": "de", "ell": "el",
    "est": "et", "eus": "eu", "fin": "fi", "fra": "fr", "heb": "he", "hin": "hi", "hun": "hu",
    "ind": "id", "ita": "it", "jav": "jv", "jpn": "ja", "kat": "ka", "kaz": "kk", "kor": "ko",
    "mal": "ml", "mar": "mr", "nld": "nl", "pes": "fa", "por": "pt", "rus": "ru", "spa": "es",
    "swh": "sw", "tam": "ta", "tel": "te", "tgl": "tl", "tha": "th", "tur": "tr", "urd": "ur",
    "vie": "vi",
}
# XTREME's --specific_layer per depth (scripts/run_tatoeba.sh); other depths are scaled from 7/12.
XTREME_LAYER = {12: 7, 24: 13}


class EvalError(ValueError):
    """Bad input: one line naming the file or flag, exit status 2."""


def default_layer(num_layers: int) -> int:
    """The block whose output is pooled: XTREME's choice, scaled to the model's depth."""
    return XTREME_LAYER.get(num_layers, min(num_layers - 1, round(7 * num_layers / 12)))


# ---------------------------------------------------------------- Tatoeba


@dataclass
class TatoebaPair:
    """One language's test set, tokenized: line i of `xx` translates line i of `en`."""

    lang: str  # LASER code, e.g. "deu"
    iso: str  # corpus code, e.g. "de"
    xx: list[list[int]]
    en: list[list[int]]


def read_lines(path: Path) -> list[str]:
    with open(path, encoding="utf-8") as f:  # universal newlines; strip() as XTREME does
        return [line.strip() for line in f]


def find_tatoeba(directory: str | Path, langs: list[str] | None = None) -> dict[str, tuple[Path, Path]]:
    """LANG -> (tatoeba.LANG-eng.LANG, tatoeba.LANG-eng.eng) for every complete pair in DIR."""
    d = Path(directory)
    if not d.is_dir():
        raise EvalError(f"--tatoeba {d}: not a directory")
    pairs = {}
    for xx in sorted(d.glob("tatoeba.*-eng.*")):
        lang = xx.name.split(".")[1].removesuffix("-eng")
        en = d / f"tatoeba.{lang}-eng.eng"
        if xx.suffix != ".eng" and xx.name == f"tatoeba.{lang}-eng.{lang}" and en.is_file():
            pairs[lang] = (xx, en)
    if langs:
        missing = [lang for lang in langs if lang not in pairs]
        if missing:
            raise EvalError(f"--tatoeba {d}: no tatoeba.{{xxx}}-eng.{{xxx,eng}} pair for {', '.join(missing)}")
        pairs = {lang: pairs[lang] for lang in langs}
    if not pairs:
        raise EvalError(f"--tatoeba {d}: no tatoeba.xxx-eng.xxx / tatoeba.xxx-eng.eng pairs (LASER layout)")
    return pairs


def load_tatoeba(directory: str | Path, tokenizer, max_len: int = TATOEBA_MAX_LEN,
                 langs: list[str] | None = None) -> list[TatoebaPair]:
    """Read and tokenize every pair: `<s> pieces </s>`, pieces cut to max_len - 2 (XTREME)."""
    out = []
    for lang, (xx_path, en_path) in find_tatoeba(directory, langs).items():
        xx, en = read_lines(xx_path), read_lines(en_path)
        if len(xx) != len(en):
            raise EvalError(f"{xx_path}: {len(xx)} lines, {en_path.name} has {len(en)}: not line-aligned")
        if not xx:
            raise EvalError(f"{xx_path}: empty")
        out.append(TatoebaPair(lang, TATOEBA_LANGUAGES.get(lang, lang), frame_all(tokenizer, xx, max_len),
                               frame_all(tokenizer, en, max_len)))
    return out


def frame_all(tokenizer, sentences: list[str], max_len: int) -> list[list[int]]:
    body = max_len - 2
    return [[tokenizer.bos_id, *ids[:body], tokenizer.eos_id] for ids in tokenizer.encode_batch(sentences)]


def length_batches(lengths: list[int], max_tokens: int) -> list[np.ndarray]:
    """Indices grouped by length (shortest first) so that rows x longest <= max_tokens."""
    order = np.argsort(np.asarray(lengths), kind="stable")
    batches, start = [], 0
    while start < len(order):
        stop = start + 1
        while stop < len(order) and (stop + 1 - start) * lengths[order[stop]] <= max_tokens:
            stop += 1
        batches.append(order[start:stop])
        start = stop
    return batches


def autocast_for(device: torch.device):
    """bf16 on a GPU (as pretraining), exact fp32 on the CPU."""
    return torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else nullcontext()


@torch.no_grad()
def embed(model, sequences: list[list[int]], layer: int, *, pad_id: int, max_tokens: int = 16384) -> np.ndarray:
    """Mean over the non-padding positions of block `layer`'s output -> float32 (N, hidden)."""
    device = next(model.parameters()).device
    captured = {}
    hook = model.encoder.layers[layer].register_forward_hook(lambda m, i, o: captured.__setitem__("h", o))
    out = np.zeros((len(sequences), model.config.hidden_size), dtype=np.float32)
    try:
        for idx in length_batches([len(s) for s in sequences], max_tokens):
            width = max(len(sequences[i]) for i in idx)
            ids = torch.full((len(idx), width), pad_id, dtype=torch.long)
            for row, i in enumerate(idx):
                ids[row, :len(sequences[i])] = torch.tensor(sequences[i])
            ids = ids.to(device)
            mask = ids.ne(pad_id)
            with autocast_for(device):
                model.encoder(ids, mask)
            h = captured["h"].float()
            m = mask.unsqueeze(-1).float()
            out[idx] = ((h * m).sum(1) / m.sum(1)).cpu().numpy()
    finally:
        hook.remove()
    return out


def retrieval_accuracy(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(xx->en, en->xx): share of rows whose cosine nearest neighbour on the other side is row i."""
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    y = y / np.maximum(np.linalg.norm(y, axis=1, keepdims=True), 1e-12)
    sim = x @ y.T
    gold = np.arange(len(x))
    return float(np.mean(sim.argmax(axis=1) == gold)), float(np.mean(sim.argmax(axis=0) == gold))


def tatoeba_scores(model, pairs: list[TatoebaPair], layer: int, *, pad_id: int,
                   max_tokens: int = 16384) -> dict[str, dict]:
    """LANG -> {iso, sentences, xx_en, en_xx, mean} for the model as it is now (eval mode kept)."""
    was_training = model.training
    model.eval()
    try:
        out = {}
        for p in pairs:
            xx_en, en_xx = retrieval_accuracy(embed(model, p.xx, layer, pad_id=pad_id, max_tokens=max_tokens),
                                              embed(model, p.en, layer, pad_id=pad_id, max_tokens=max_tokens))
            out[p.lang] = {"iso": p.iso, "sentences": len(p.xx), "xx_en": xx_en, "en_xx": en_xx,
                           "mean": (xx_en + en_xx) / 2}
        return out
    finally:
        model.train(was_training)


def average(scores: dict[str, dict], keys=("xx_en", "en_xx", "mean")) -> dict[str, float] | None:
    if not scores:
        return None
    return {k: float(np.mean([s[k] for s in scores.values()])) for k in keys}


# ---------------------------------------------------------------- masked LM vs unigram


def unigram_entropy(tokens: np.ndarray) -> float:
    """Entropy (nats) of the empirical token distribution: a frequency-only model's loss."""
    _, counts = np.unique(tokens, return_counts=True)
    p = counts / counts.sum()
    return float(-(p * np.log(p)).sum())


def heldout_tokens(batch: dict, is_special: np.ndarray) -> np.ndarray:
    """The original (unmasked) non-special tokens of a validation batch."""
    from train.data import IGNORE_INDEX

    original = np.where(batch["labels"] != IGNORE_INDEX, batch["labels"], batch["input_ids"])
    return original[~is_special[original]]


@torch.no_grad()
def mlm_scores(model, sets: dict[str, dict], is_special: np.ndarray, micro_batch: int = 16) -> dict[str, dict]:
    """LANG -> masked-LM loss (nats) on the fixed held-out batches, and the unigram entropy."""
    from train.data import IGNORE_INDEX

    device = next(model.parameters()).device
    model.eval()
    out = {}
    for lang, v in sets.items():
        loss_sum, n_targets = 0.0, 0
        for start in range(0, len(v["input_ids"]), micro_batch):
            x = torch.from_numpy(v["input_ids"][start:start + micro_batch]).to(device)
            y = torch.from_numpy(v["labels"][start:start + micro_batch]).to(device)
            mask = v.get("attention_mask")
            mask = None if mask is None else torch.from_numpy(mask[start:start + micro_batch]).to(device)
            n = int((y != IGNORE_INDEX).sum())
            if n == 0:
                continue
            with autocast_for(device):
                res = model(x, mask, labels=y, masked_only=True)
            loss_sum += res.loss.item() * n
            n_targets += n
        tokens = heldout_tokens(v, is_special)
        if n_targets:
            loss, entropy = loss_sum / n_targets, unigram_entropy(tokens)
            out[lang] = {"loss": loss, "unigram_entropy": entropy, "below_unigram": loss < entropy,
                         "targets": n_targets, "tokens": int(tokens.size), "sequences": len(v["input_ids"])}
    return out


# ---------------------------------------------------------------- the model to evaluate


@dataclass
class Subject:
    """A model to evaluate and what is known about how it was trained."""

    model: object  # model.xlmr.XLMRForMaskedLM
    path: Path
    kind: str  # "run" or "hf"
    vocab_file: Path | None
    step: int | None = None
    train_config: dict | None = None
    training_languages: dict[str, int] | None = None  # lang -> train tokens, when known
    notes: list[str] = field(default_factory=list)


def load_subject(path: str | Path, device: torch.device) -> Subject:
    """A run directory (checkpoint.pt), RUN/hf, an export, or any HF XLM-R masked-LM directory."""
    from model.export import ExportError, find_checkpoint, load_checkpoint, model_from_checkpoint
    from model.hf import CONFIG_NAME, VOCAB_NAME, load_pretrained
    from train.checkpoint import CHECKPOINT

    path = Path(path)
    if not path.exists():
        raise EvalError(f"{path}: no such model directory")
    if (path / CHECKPOINT).is_file() or path.is_file():
        try:
            ckpt_path = find_checkpoint(path)
            ckpt = load_checkpoint(ckpt_path)
            model = model_from_checkpoint(ckpt, ckpt_path)
        except ExportError as e:
            raise EvalError(str(e)) from None
        vocab = Path(ckpt["vocab_file"]) if ckpt.get("vocab_file") else None
        run_dir = ckpt_path.parent
        subject = Subject(model.to(device).eval(), run_dir, "run", vocab, ckpt.get("step"),
                          ckpt.get("train_config"))
    elif (path / CONFIG_NAME).is_file():
        try:
            model = load_pretrained(path, device=device)
        except (OSError, ValueError) as e:
            raise EvalError(str(e).splitlines()[0]) from None
        subject = Subject(model, path, "hf", path / VOCAB_NAME if (path / VOCAB_NAME).is_file() else None)
        parent_ckpt = path.parent / CHECKPOINT  # RUN/hf: the run beside it knows the shards
        if parent_ckpt.is_file():
            ckpt = load_checkpoint(parent_ckpt)
            subject.train_config, subject.step = ckpt.get("train_config"), ckpt.get("step")
    else:
        raise EvalError(f"{path}: neither a run directory ({CHECKPOINT}) nor a model directory ({CONFIG_NAME})")
    subject.training_languages = recorded_training_languages(subject)
    return subject


def recorded_training_languages(subject: Subject) -> dict[str, int] | None:
    """From the export's cc100_training.json, else the run's shards manifest; None if unknown."""
    from model.hf import TRAINING_LANGUAGES_NAME
    from train.shards import ShardError, load_manifest

    meta = subject.path / TRAINING_LANGUAGES_NAME
    if meta.is_file():
        try:
            return {k: int(v) for k, v in json.loads(meta.read_text())["languages"].items()}
        except (ValueError, KeyError, TypeError, AttributeError):
            subject.notes.append(f"{meta}: unreadable, training languages unknown")
            return None
    shards = (subject.train_config or {}).get("data", {}).get("shards")
    if shards:
        try:
            return {k: v for k, v in load_manifest(shards, check_files=False).tokens("train").items() if v}
        except ShardError:
            subject.notes.append(f"the run's shards {shards} are gone: training languages unknown")
    return None


# ---------------------------------------------------------------- the command


@dataclass
class EvaluateConfig:
    """`cc100 evaluate`; a None setting is resolved from the run (or the export) being evaluated."""

    model: str = option("model", help="run directory, exported directory, or any HF XLM-R masked-LM directory")
    tatoeba: str | None = option("--tatoeba", default=None,
                                 help="Tatoeba test set in LASER layout (tatoeba.xxx-eng.{xxx,eng}), "
                                 "e.g. ../shared/data/eval/tatoeba_laser_xtreme36")
    langs: tuple[str, ...] | None = option("--langs", default=None, comma_list=True, metavar="LANG,LANG",
                                           help="Tatoeba languages (LASER codes, default: all found)")
    layer: int | None = option("--layer", default=None,
                               help="block whose output is mean-pooled, counted from 0 as in XTREME (default 7 "
                               "of 12 layers, 13 of 24, round(7 n / 12) otherwise) = hidden_states[L + 1]")
    shards: str | None = option("--shards", default=None,
                                help="token shards whose held-out split gives the masked-LM losses "
                                "(default: the run's; must use the model's vocabulary)")
    mlm_seqs: int | None = option("--mlm-seqs", default=None,
                                  help="held-out sequences per language (default: the run's --eval-seqs, else 64)")
    max_len: int | None = option("--max-len", default=None,
                                 help="tokens per held-out sequence (default: the run's, else 512)")
    seed: int | None = option("--seed", default=None, help="masking seed (default: the run's, else 0)")
    train_langs: tuple[str, ...] | None = option(
        "--train-langs", default=None, comma_list=True, metavar="LANG,LANG",
        help="corpus languages the model was trained on (default: recorded by the run or the export; "
        "unknown otherwise)")
    output: str | None = option("--output", default=None,
                                help="directory for eval.json, eval.png, mlm_heldout.npz "
                                "(default: RUN/eval for a run, else ./eval-MODELNAME)")
    batch_tokens: int = option("--batch-tokens", default=16384,
                               help="padded tokens per forward pass (default %(default)s)")
    device: str = option("--device", default="auto", choices=["auto", "cpu", "cuda"])
    threads: int | None = option("--threads", default=None,
                                 help="CPU threads for torch (default: torch's; 1 is fastest on a busy machine)")
    no_plot: bool = option("--no-plot", default=False, help="skip eval.png")


def parse_args(argv) -> EvaluateConfig:
    from pipeline.utils.cliflags import add_config_flags, config_from_args

    p = argparse.ArgumentParser(prog="cc100 evaluate", description=__doc__.split("\n\n")[0])
    add_config_flags(p, EvaluateConfig)
    add_force_flag(p)
    return config_from_args(EvaluateConfig, p.parse_args(argv))


def pick_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise EvalError("--device cuda: no CUDA device available")
    return torch.device("cuda" if name == "cuda" or (name == "auto" and torch.cuda.is_available()) else "cpu")


def run_tatoeba(subject: Subject, tokenizer, args, trained: set[str] | None) -> dict:
    n_layers = subject.model.config.num_hidden_layers
    layer = default_layer(n_layers) if args.layer is None else args.layer
    if not 0 <= layer < n_layers:
        raise EvalError(f"--layer {layer}: the model has blocks 0..{n_layers - 1}")
    max_len = min(TATOEBA_MAX_LEN, subject.model.config.max_seq_len)
    pairs = load_tatoeba(args.tatoeba, tokenizer, max_len, list(args.langs) if args.langs else None)
    scores = tatoeba_scores(subject.model, pairs, layer, pad_id=tokenizer.pad_id, max_tokens=args.batch_tokens)
    for s in scores.values():
        s["in_training"] = None if trained is None else s["iso"] in trained
    in_training = {k: s for k, s in scores.items() if s["in_training"]}
    return {"dir": str(args.tatoeba), "layer": layer, "hidden_states_index": layer + 1, "max_len": max_len,
            "languages": scores, "average": average(scores),
            "average_in_training": average(in_training) if trained is not None else None}


def mlm_settings(subject: Subject, args) -> dict:
    data = (subject.train_config or {}).get("data", {})
    return {"shards": args.shards or data.get("shards"),
            "max_len": args.max_len or data.get("max_len") or min(512, subject.model.config.max_seq_len),
            "sequences": args.mlm_seqs or data.get("eval_seqs") or 64,
            "seed": args.seed if args.seed is not None else data.get("seed", 0),
            "mask_prob": data.get("mask_prob", 0.15),
            # the run's row packing (runs from before packing existed cut blocks); else the default
            "packing": data.get("packing", "blocks") if data else "complete"}


def run_mlm(subject: Subject, tokenizer, args, output: Path) -> dict:
    """Held-out masked-LM loss per language, or {"skipped": why} when there are no usable shards."""
    from train.data import Specials, validation_sets
    from train.shards import ShardError, file_sha256, load_manifest

    s = mlm_settings(subject, args)
    if not s["shards"]:
        return {"skipped": "no shards (pass --shards SHARDS tokenized with this model's vocabulary)"}
    try:
        manifest = load_manifest(s["shards"])
    except ShardError as e:
        if args.shards:
            raise EvalError(f"--shards: {e}") from None
        return {"skipped": f"the run's shards are unusable: {e}"}
    same_vocab = manifest.vocab_size == subject.model.config.vocab_size and (
        subject.vocab_file is None or file_sha256(subject.vocab_file) == manifest.vocab_sha256)
    if not same_vocab:
        msg = (f"the shards in {s['shards']} were tokenized with another vocabulary "
               f"({manifest.vocab_size} ids) than the model's ({subject.model.config.vocab_size} ids)")
        if args.shards:
            raise EvalError(f"--shards: {msg}")
        return {"skipped": msg}
    if s["max_len"] > subject.model.config.max_seq_len:
        raise EvalError(f"--max-len {s['max_len']} exceeds the model's {subject.model.config.max_seq_len} tokens")
    sets = validation_sets(manifest, max_len=s["max_len"], max_seqs=s["sequences"], seed=s["seed"],
                           mask_prob=s["mask_prob"], packing=s["packing"])
    if not sets:
        return {"skipped": f"no language in {s['shards']} has a held-out sequence of {s['max_len']} tokens"}
    np.savez_compressed(output / MLM_BATCHES, **{f"{lang}.{k}": v[k].astype(np.int32) for lang, v in sets.items()
                                                 for k in ("input_ids", "labels", "attention_mask") if k in v})
    scores = mlm_scores(subject.model, sets, Specials.from_manifest(manifest).table())
    return {**s, "shards": str(s["shards"]), "batches": MLM_BATCHES, "languages": scores}


def completion(args) -> tuple[dict, dict]:
    """(config, inputs) that decide an evaluation (not the device or the threads)."""
    config = decisive(vars(args), ("model", "tatoeba", "shards", "output", "device", "threads", "force"))
    inputs = {name: fingerprint(path) for name, path in
              (("model", args.model), ("tatoeba", args.tatoeba), ("shards", args.shards)) if path}
    return config, inputs


def evaluate(args) -> dict | None:
    """Score the model into its output directory; None when that is already up to date."""
    from train.tokenizer import XLMRTokenizer

    t0 = time.time()
    device = pick_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    subject = load_subject(args.model, device)
    output = Path(args.output) if args.output else (
        subject.path / "eval" if subject.kind == "run" else Path(f"eval-{subject.path.resolve().name}"))
    if subject.vocab_file is None or not subject.vocab_file.is_file():
        raise EvalError(f"{args.model}: no sentencepiece.bpe.model (the vocabulary) to tokenize with")
    try:
        tokenizer = XLMRTokenizer(subject.vocab_file)
    except (OSError, ValueError) as e:
        raise EvalError(str(e)) from None
    if tokenizer.vocab_size != subject.model.config.vocab_size:
        raise EvalError(f"{subject.vocab_file}: {tokenizer.vocab_size} ids, the model has "
                        f"{subject.model.config.vocab_size}")
    if args.train_langs:
        subject.training_languages = {lang: 0 for lang in args.train_langs}
    trained = set(subject.training_languages) if subject.training_languages is not None else None
    if not args.tatoeba and not (args.shards or (subject.train_config or {}).get("data", {}).get("shards")):
        raise EvalError("nothing to evaluate: pass --tatoeba DIR and/or --shards DIR")
    if skip_if_up_to_date(output, EVALUATE_STAGE, *completion(args), force=getattr(args, "force", False)):
        return None
    try:  # a new, empty or earlier evaluation directory only (pipeline/contracts.py)
        claim(output, EVALUATE_STAGE)
        clear_completion(output)  # rewritten in place: complete again at the end
    except OwnershipError as e:
        raise EvalError(f"--output {e}") from None
    except OSError as e:
        raise EvalError(f"--output {output}: {e.strerror}") from None

    cfg = subject.model.config
    result = {"model": {"path": str(subject.path), "kind": subject.kind, "step": subject.step,
                        "layers": cfg.num_hidden_layers, "hidden_size": cfg.hidden_size,
                        "vocab_size": cfg.vocab_size, "device": device.type,
                        "dtype": "bfloat16" if device.type == "cuda" else "float32"},
              "training_languages": sorted(trained) if trained is not None else None,
              "notes": subject.notes}
    if args.tatoeba:
        result["tatoeba"] = run_tatoeba(subject, tokenizer, args, trained)
    result["mlm"] = run_mlm(subject, tokenizer, args, output)
    result["seconds"] = time.time() - t0
    (output / EVAL_JSON).write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    if not args.no_plot:
        plot(result, output / EVAL_PLOT)
    mark_complete(output, EVALUATE_STAGE, *completion(args))
    result["output"] = str(output)
    return result


# ---------------------------------------------------------------- report


def table(result: dict) -> str:
    lines = []
    m = result["model"]
    lines.append(f"cc100 evaluate: {m['path']} ({m['kind']}, {m['layers']} layers, hidden {m['hidden_size']}, "
                 f"vocab {m['vocab_size']}" + (f", step {m['step']}" if m["step"] is not None else "")
                 + f", {m['device']} {m['dtype']})")
    for note in result.get("notes", []):
        lines.append(f"  note: {note}")
    t = result.get("tatoeba")
    if t:
        lines.append(f"\nTatoeba retrieval (XTREME; block {t['layer']} = hidden_states[{t['hidden_states_index']}], "
                     "mean pooling, cosine), accuracy %")
        lines.append(f"  {'lang':<6}{'iso':<5}{'n':>6}{'xx->en':>9}{'en->xx':>9}{'mean':>8}  trained")
        for lang, s in t["languages"].items():
            mark = {True: "yes", False: "NO", None: "?"}[s["in_training"]]
            lines.append(f"  {lang:<6}{s['iso']:<5}{s['sentences']:>6}{100 * s['xx_en']:>9.1f}"
                         f"{100 * s['en_xx']:>9.1f}{100 * s['mean']:>8.1f}  {mark}")
        for key, name in (("average", f"average of {len(t['languages'])}"),
                          ("average_in_training", "average, trained languages")):
            a = t.get(key)
            if a:
                lines.append(f"  {name:<17}{100 * a['xx_en']:>9.1f}{100 * a['en_xx']:>9.1f}{100 * a['mean']:>8.1f}")
        if result["training_languages"] is None:
            lines.append("  (training languages unknown: pass --train-langs to mark them)")
    mlm = result.get("mlm") or {}
    if "skipped" in mlm:
        lines.append(f"\nmasked-LM loss: skipped ({mlm['skipped']})")
    elif mlm:
        lines.append(f"\nmasked-LM loss on held-out shards ({mlm['sequences']} x {mlm['max_len']} tokens per "
                     f"language, seed {mlm['seed']}), nats; unigram = entropy of the same held-out tokens")
        lines.append(f"  {'lang':<6}{'targets':>8}{'loss':>9}{'unigram':>9}{'diff':>8}")
        for lang, s in sorted(mlm["languages"].items()):
            lines.append(f"  {lang:<6}{s['targets']:>8}{s['loss']:>9.3f}{s['unigram_entropy']:>9.3f}"
                         f"{s['loss'] - s['unigram_entropy']:>+8.3f}" + ("  below" if s["below_unigram"] else ""))
        below = sum(s["below_unigram"] for s in mlm["languages"].values())
        lines.append(f"  below the unigram baseline: {below} of {len(mlm['languages'])} languages")
    return "\n".join(lines)


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t, mlm = result.get("tatoeba"), (result.get("mlm") or {}).get("languages")
    panels = [p for p in (t, mlm) if p]
    if not panels:
        return
    fig, axes = plt.subplots(len(panels), 1, figsize=(max(8, 0.32 * max(len(p) for p in panels) + 3),
                                                      3.6 * len(panels)), squeeze=False)
    axes = list(axes[:, 0])
    if t:
        ax = axes.pop(0)
        langs = list(t["languages"])
        x = np.arange(len(langs))
        for k, (key, label) in enumerate((("xx_en", "xx->en"), ("en_xx", "en->xx"))):
            vals = [100 * t["languages"][lang][key] for lang in langs]
            bars = ax.bar(x + (k - 0.5) * 0.4, vals, 0.4, label=label)
            for lang, bar in zip(langs, bars):
                if t["languages"][lang]["in_training"] is False:
                    bar.set_hatch("//")
                    bar.set_alpha(0.5)
        ax.set_xticks(x, langs, rotation=90, fontsize=8)
        ax.set_ylabel("accuracy %")
        avg = t["average"]["mean"] * 100
        ax.axhline(avg, color="k", linewidth=0.8, linestyle="--", label=f"average {avg:.1f}")
        ax.set_title(f"Tatoeba retrieval (block {t['layer']}); hatched: not in the training corpus")
        ax.legend(fontsize=8)
    if mlm:
        ax = axes.pop(0)
        langs = sorted(mlm)
        x = np.arange(len(langs))
        ax.bar(x - 0.2, [mlm[lang]["loss"] for lang in langs], 0.4, label="masked-LM loss")
        ax.bar(x + 0.2, [mlm[lang]["unigram_entropy"] for lang in langs], 0.4, label="unigram entropy")
        ax.set_xticks(x, langs, rotation=90, fontsize=8)
        ax.set_ylabel("nats per token")
        ax.set_title("held-out masked-LM loss vs the unigram baseline")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    force, argv = pop_force(argv)
    args = parse_args(argv)
    args.force = force
    try:
        result = evaluate(args)
    except EvalError as e:
        print(f"cc100 evaluate: error: {e}", file=sys.stderr)
        return 2
    if result is None:  # up to date
        return 0
    print(table(result))
    out = Path(result["output"])
    print(f"\nwrote {out / EVAL_JSON}" + ("" if args.no_plot else f", {out / EVAL_PLOT}")
          + (f", {out / MLM_BATCHES}" if "languages" in result["mlm"] else "")
          + f" in {result['seconds']:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
