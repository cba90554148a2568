"""`cc100 export`: a pretraining checkpoint -> a Hugging Face XLMRobertaForMaskedLM directory.

    cc100 export --checkpoint out/pretrain/checkpoint.pt --output out/hf [--vocab out/vocab]

The checkpoint is the training loop's `torch.save`d dict with at least `model` (a state dict, possibly
from a torch.compile'd or DDP-wrapped model) and `model_config` (`dataclasses.asdict(XLMRConfig)`);
`vocab_file`, when present, says where the SentencePiece model is. The output directory gets
config.json, model.safetensors and, when the vocabulary is known, sentencepiece.bpe.model,
tokenizer_config.json and tokenizer.json (model/hf.py `write_tokenizer`), so
`XLMRobertaForMaskedLM.from_pretrained(dir)` and AutoTokenizer / XLMRobertaTokenizer(Fast)
`.from_pretrained(dir)` load it, the tokenizers with the ids of training. The output must be new,
empty or an earlier export (its .cc100/stage.json); re-running overwrites the same files. A --vocab
whose piece count does not give the model's vocabulary size is refused.
"""

from __future__ import annotations

import argparse
import dataclasses
import pickle
import sys
from pathlib import Path

from dataclasses import dataclass

import torch

from model.hf import VOCAB_NAME, save_state_pretrained
from pipeline.contracts import (CHECKPOINT, OwnershipError, check_claimable, claim, clear_completion,
                                describe_os_error, fingerprint, mark_complete, pop_force, read_completion,
                                skip_if_up_to_date, stat_fingerprint)
from pipeline.utils.cliflags import add_config_flags, add_force_flag, config_from_args, option
from model.xlmr import XLMRConfig, XLMRForMaskedLM, unwrap_state_dict

# looked for, in order, when --checkpoint is a directory
CHECKPOINT_NAMES = (CHECKPOINT, "latest.pt", "ckpt.pt", "latest")
STAGE = "export"  # the stage name in OUTPUT/.cc100/stage.json


class ExportError(Exception):
    """Bad input: reported as one line naming the file, exit status 2."""


def find_checkpoint(path: Path) -> Path:
    """A checkpoint file, or the one a run directory (or its `latest` pointer) names."""
    if path.is_file():
        return path
    if not path.exists():
        raise ExportError(f"{path}: checkpoint not found")
    for name in CHECKPOINT_NAMES:
        candidate = path / name
        if candidate.is_dir():
            return find_checkpoint(candidate)
        if candidate.is_file():
            if name == "latest" and candidate.stat().st_size < 4096:
                # a small text pointer: the name of the newest checkpoint, relative to the directory
                try:
                    target = candidate.read_text().strip()
                except UnicodeDecodeError:
                    return candidate  # not text: a checkpoint that happens to be called `latest`
                if target:
                    return find_checkpoint(path / target)
            return candidate
    raise ExportError(f"{path}: no checkpoint in this directory (looked for {', '.join(CHECKPOINT_NAMES)})")


def load_checkpoint(path: Path) -> dict:
    """torch.load on the CPU, memory-mapped so optimizer state is never read into RAM."""
    try:
        try:
            ckpt = torch.load(path, map_location="cpu", mmap=True, weights_only=True)
        except pickle.UnpicklingError:
            # a checkpoint that also pickled non-tensor state (numpy RNG, ...): the user's own file
            print(f"note: {path} holds non-tensor objects; loading it with weights_only=False "
                  "(only do this for checkpoints you trust)", file=sys.stderr)
            ckpt = torch.load(path, map_location="cpu", mmap=True, weights_only=False)
    except (RuntimeError, OSError, EOFError, pickle.UnpicklingError, ValueError) as e:
        raise ExportError(f"{path}: not a readable torch checkpoint ({type(e).__name__}: {e})") from None
    if not isinstance(ckpt, dict):
        raise ExportError(f"{path}: expected a checkpoint dict, got {type(ckpt).__name__}")
    for key in ("model", "model_config"):
        if key not in ckpt:
            raise ExportError(f"{path}: not a cc100 checkpoint (no {key!r} key; has {', '.join(map(str, ckpt))})")
    return ckpt


def model_from_checkpoint(ckpt: dict, path: Path) -> XLMRForMaskedLM:
    """Rebuild the model and load its weights strictly (every key, every shape)."""
    try:
        raw = ckpt["model_config"]
        config = XLMRConfig.from_dict(dataclasses.asdict(raw) if dataclasses.is_dataclass(raw) else dict(raw))
    except (TypeError, ValueError) as e:
        raise ExportError(f"{path}: bad model_config: {e}") from None
    state = unwrap_state_dict(ckpt["model"])
    with torch.device("meta"):  # no random init: the weights come from the checkpoint
        model = XLMRForMaskedLM(config)
    try:
        model.load_state_dict(state, strict=True, assign=True)
    except RuntimeError as e:
        first = str(e).strip().splitlines()
        raise ExportError(f"{path}: weights do not match model_config: {' '.join(first[:3])}") from None
    return model


def resolve_vocab(arg: str | None, recorded: str | None) -> Path | None:
    """The SentencePiece model from --vocab (a file, or a directory holding one), else the checkpoint's."""
    if arg is not None:
        path = Path(arg)
        if path.is_dir():
            candidates = [path / VOCAB_NAME] if (path / VOCAB_NAME).is_file() else sorted(path.glob("*.model"))
            if len(candidates) != 1:
                raise ExportError(f"{path}: expected {VOCAB_NAME} or exactly one *.model file, found "
                                  f"{len(candidates)}")
            return candidates[0]
        if not path.is_file():
            raise ExportError(f"{path}: --vocab not found")
        return path
    if recorded:
        path = Path(recorded)
        if path.is_file():
            return path
        print(f"warning: the checkpoint's vocab_file {path} does not exist; exporting the weights "
              "without a tokenizer (pass --vocab)", file=sys.stderr)
    return None


def check_vocab(vocab: Path, config: XLMRConfig) -> None:
    """ExportError unless the SentencePiece model gives the model's number of ids: its pieces
    shifted by one (<s> <pad> </s> <unk> first, as fairseq) plus <mask>, as train/tokenizer.py."""
    import sentencepiece as spm

    try:
        pieces = spm.SentencePieceProcessor(model_file=str(vocab)).get_piece_size()
    except (OSError, RuntimeError) as e:
        raise ExportError(f"{vocab}: not a SentencePiece model ({' '.join(str(e).split())[:200]})") from None
    ids = pieces + 2
    if ids != config.vocab_size:
        raise ExportError(f"--vocab {vocab}: {pieces} pieces give {ids} ids, but the checkpoint's model "
                          f"has {config.vocab_size}: give the vocabulary the model was trained with")


def _size(path: Path) -> str:
    n = path.stat().st_size
    return f"{n / 2**20:.1f} MiB" if n >= 2**20 else f"{n / 2**10:.1f} KiB"


def completion(checkpoint: Path, vocab: str | None) -> tuple[dict, dict]:
    """(config, inputs) that decide an export: the checkpoint (its run's completion record when
    the run finished, else the file's size and time) and the --vocab given."""
    run = checkpoint.parent
    source = fingerprint(run) if read_completion(run) else stat_fingerprint([checkpoint])
    return {}, {"checkpoint": source, "vocab": fingerprint(vocab) if vocab else None}


@dataclass
class ExportConfig:
    checkpoint: str = option("--checkpoint", required=True,
                             help="checkpoint file, or a run directory holding checkpoint.pt / latest.pt / latest")
    output: str = option("--output", required=True,
                         help="directory to write: new, empty or an earlier export (its files are overwritten)")
    vocab: str | None = option("--vocab", default=None,
                               help="SentencePiece model file, or the vocab stage's directory holding "
                               f"{VOCAB_NAME} (default: the checkpoint's vocab_file)")


def main(argv: list[str] | None = None) -> int:
    force, argv = pop_force(argv)
    parser = argparse.ArgumentParser(
        prog="cc100 export",
        description="Convert a pretraining checkpoint into a Hugging Face XLMRobertaForMaskedLM directory.")
    add_config_flags(parser, ExportConfig)
    add_force_flag(parser)
    args = config_from_args(ExportConfig, parser.parse_args(argv))

    try:
        path = find_checkpoint(Path(args.checkpoint))
        check_claimable(args.output, STAGE)
        decided = completion(path, args.vocab)
        if skip_if_up_to_date(args.output, STAGE, *decided, force=force):
            return 0
        print(f"loading {path}")
        ckpt = load_checkpoint(path)
        model = model_from_checkpoint(ckpt, path)
        vocab = resolve_vocab(args.vocab, ckpt.get("vocab_file"))
        if vocab is not None:
            check_vocab(vocab, model.config)
        print(f"writing {args.output}")
        claim(args.output, STAGE)
        clear_completion(args.output)  # rewritten in place: complete again once every file is
        written = save_state_pretrained(model.state_dict(), model.config, args.output, vocab,
                                        ckpt.get("train_languages"))
        mark_complete(args.output, STAGE, *decided)
    except ExportError as e:
        print(f"cc100 export: {e}", file=sys.stderr)
        return 2
    except OwnershipError as e:
        print(f"cc100 export: --output {e}", file=sys.stderr)
        return 2
    except OSError as e:  # unwritable output, a vanished vocab file, a full disk ...
        print(f"cc100 export: {describe_os_error(e)}", file=sys.stderr)
        return 2

    cfg = model.config
    step = next((ckpt[k] for k in ("step", "iter_num", "global_step") if k in ckpt), None)
    print("exported XLMRobertaForMaskedLM")
    print(f"  checkpoint   {path}" + (f" (step {step})" if step is not None else ""))
    print(f"  model        {cfg.num_hidden_layers} layers, hidden {cfg.hidden_size}, "
          f"{cfg.num_attention_heads} heads, vocab {cfg.vocab_size}, "
          f"{model.get_num_params() / 1e6:.1f}M parameters")
    for f in written:
        print(f"  wrote        {f} ({_size(f)})")
    if vocab is None:
        print("  tokenizer    none (no --vocab and no vocab_file in the checkpoint): "
              "XLMRobertaTokenizer will not load from this directory")
    return 0


if __name__ == "__main__":
    sys.exit(main())
