"""`cc100 pretrain`: masked-LM pretraining of the XLM-R encoder on token shards.

    cc100 pretrain --shards SHARDS --vocab VOCAB_DIR --output RUN_DIR --config tiny|small|base|large
                   --steps N [--batch-tokens N] [--max-len N] [--packing complete|blocks]
                   [--seed N] [--resume] [--overwrite]

Multi-GPU / multi-node: launch the same command with torchrun, e.g.
    torchrun --nproc_per_node 8 -m train.pretrain --shards ... (every rank gets the same arguments).
RUN_DIR receives checkpoint.pt (every --checkpoint-every steps and at the end), log.jsonl
(plot it with `python -m train.plot RUN_DIR/log.jsonl`) and, at the end, hf/ (transformers format).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from pipeline.contracts import describe_os_error, find_os_error
from pipeline.utils.cliflags import add_config_flags, add_force_flag, config_from_args
from train.config import PRESETS, TrainConfig, default_warmup


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="cc100 pretrain", description=__doc__.split("\n\n")[0])
    add_config_flags(p, TrainConfig)
    add_force_flag(p)
    p.add_argument("--resume", action="store_true", help="continue RUN_DIR/checkpoint.pt exactly")
    p.add_argument("--overwrite", action="store_true",
                   help="replace RUN_DIR's run when it cannot be continued (with --resume: only when its "
                   "settings or inputs differ)")
    return p


def parse_args(argv: list[str] | None) -> tuple[TrainConfig, bool, bool]:
    args = build_parser().parse_args(argv)
    for name, value in PRESETS[args.config].items():  # a flag not given: the model preset's value
        if getattr(args, name) is None:  # (0 is a value: refused by the config's checks)
            setattr(args, name, value)
    if args.warmup_steps is None:
        args.warmup_steps = default_warmup(max(args.steps, 0))
    return config_from_args(TrainConfig, args), args.resume, args.overwrite


def main(argv: list[str] | None = None) -> int:
    from pipeline.contracts import pop_force, skip_if_up_to_date
    from train.checkpoint import CHECKPOINT, CheckpointError
    from train.trainer import STAGE, SetupError, Trainer, completion

    force, argv = pop_force(argv)
    try:
        cfg, resume, overwrite = parse_args(argv)
    except ValueError as e:
        print(f"cc100 pretrain: error: {e}", file=sys.stderr)
        return 2
    first_rank = os.environ.get("RANK", "0") == "0"  # under torchrun every rank checks, one says so
    if (Path(cfg.output) / CHECKPOINT).is_file() and skip_if_up_to_date(
            cfg.output, STAGE, *completion(cfg), force=force, log=print if first_rank else lambda line: None):
        return 0
    trainer = Trainer(cfg, resume=resume, overwrite=overwrite)
    try:
        trainer.setup()
        trainer.train()
    except SetupError as e:
        if trainer.rank == 0:  # every rank hits the same check; one message is enough
            print(f"cc100 pretrain: error: {e}", file=sys.stderr)
        return 2
    except (CheckpointError, OSError, RuntimeError) as e:  # a full disk, an unwritable RUN_DIR
        message = str(e) if isinstance(e, CheckpointError) else _os_failure(e)
        if message is None:
            raise
        print(f"cc100 pretrain: error: {message}", file=sys.stderr)
        return 1
    finally:
        trainer.close()
    return 0


def _os_failure(e: BaseException) -> str | None:
    """One line for a failure caused by the file system (None: not one, let it raise)."""
    os_error = find_os_error(e)
    if os_error is None:
        return None
    return f"{describe_os_error(os_error)} (the last checkpoint, if any, is kept: continue with --resume)"


if __name__ == "__main__":
    sys.exit(main())
