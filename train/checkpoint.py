"""Atomic save / checked load of the training state bundle (one torch.save dict, nanoGPT style).

The bundle (keys agreed with `cc100 export`, model/export.py):
    model          state_dict of the unwrapped model (no `module.` / `_orig_mod.` prefixes)
    model_config   dataclasses.asdict(XLMRConfig)
    vocab_file     path of sentencepiece.bpe.model
    optimizer, scheduler, data (the stream cursor), rng, step, train_config, world_size,
    shards_vocab_sha256, format
A crash while saving leaves the previous checkpoint intact: the bundle is written to a
temporary file in the same directory (`.checkpoint.pt.tmp{PID}`), fsynced, then renamed over the
old one. The next save removes the temporary files of writers that are gone (a killed run's).
"""

from __future__ import annotations

import os
import random
import re
from pathlib import Path

import torch

from pipeline.contracts import CHECKPOINT, atomic_path, describe_os_error, find_os_error  # noqa: F401 (CHECKPOINT: re-exported)
from pipeline.utils.leftovers import pid_alive  # standard library only

FORMAT = "cc100-pretrain-checkpoint-v1"


class CheckpointError(ValueError):
    """Missing, unreadable or incompatible checkpoint (message names the file)."""


def remove_dead_temporaries(path: str | os.PathLike) -> list[Path]:
    """Delete `.{name}.tmp{PID}` files (contracts.temporary_path) beside `path` whose writer is
    gone (a killed save leaves one, gigabytes for base/large); a live PID keeps its file. Returns
    what was deleted."""
    path = Path(path)
    pattern = re.compile(rf"\.{re.escape(path.name)}\.tmp([0-9]+)")
    removed = []
    for tmp in path.parent.glob(f".{path.name}.tmp*"):
        match = pattern.fullmatch(tmp.name)
        if match and not tmp.is_symlink() and tmp.is_file() and not pid_alive(int(match.group(1))):
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


def save_checkpoint(path: str | os.PathLike, bundle: dict) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_dead_temporaries(path)
    try:
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            torch.save({**bundle, "format": FORMAT}, f)
    except (OSError, RuntimeError) as e:  # torch reports a failed write (full disk) as RuntimeError
        os_error = find_os_error(e)
        if os_error is None:
            raise
        raise CheckpointError(f"cannot save the checkpoint: {describe_os_error(os_error, path)} "
                              f"(the previous {path.name}, if any, is kept)") from None


def load_checkpoint(path: str | os.PathLike) -> dict:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no checkpoint to resume from")
    try:
        bundle = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for a truncated or foreign file
        raise CheckpointError(f"{path}: unreadable checkpoint ({type(e).__name__}: {e})") from None
    if not isinstance(bundle, dict) or bundle.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a cc100 pretraining checkpoint ({FORMAT})")
    missing = [k for k in ("model", "model_config", "optimizer", "scheduler", "data", "step",
                           "train_config") if k not in bundle]
    if missing:
        raise CheckpointError(f"{path}: checkpoint lacks {', '.join(missing)}")
    return bundle


def rng_state() -> dict:
    state = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])
