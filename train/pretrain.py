"""`cc100 pretrain`: masked-LM pretraining of the XLM-R encoder on token shards.

    cc100 pretrain --shards SHARDS --vocab VOCAB_DIR --output RUN_DIR --config tiny|small|base|large
                   --steps N [--batch-tokens N] [--max-len N] [--packing complete|blocks]
                   [--seed N] [--resume]

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
from train.config import PRESETS, DataConfig, OptimConfig, TrainConfig, default_warmup
from train.data import PACKINGS


def parse_args(argv: list[str] | None) -> tuple[TrainConfig, bool]:
    p = argparse.ArgumentParser(prog="cc100 pretrain", description=__doc__.split("\n\n")[0])
    p.add_argument("--shards", required=True, help="SHARDS dir written by `cc100 tokenize`")
    p.add_argument("--vocab", required=True, help="VOCAB_DIR with sentencepiece.bpe.model")
    p.add_argument("--output", required=True, help="RUN_DIR for checkpoint.pt, log.jsonl, hf/")
    p.add_argument("--config", default="base", choices=list(PRESETS), help="model size (default base)")
    p.add_argument("--steps", type=int, required=True, help="optimizer steps (fixes the LR schedule)")
    p.add_argument("--batch-tokens", type=int, help="tokens per optimizer step over all ranks "
                   "(default: tiny 2048, small 131072, base/large 8192 x 512)")
    p.add_argument("--max-len", type=int, help="tokens per sequence incl. <s> </s> (default 512; tiny 128)")
    p.add_argument("--packing", choices=PACKINGS, default="complete",
                   help="rows of whole paragraphs across documents, only the rest padded (complete: "
                        "RoBERTa FULL-SENTENCES, default), or fixed max_len - 2 token blocks (blocks)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume", action="store_true", help="continue RUN_DIR/checkpoint.pt exactly")
    g = p.add_argument_group("optimisation")
    g.add_argument("--lr", type=float, help="peak learning rate (default: tiny 1e-3, small/base 6e-4, large 4e-4)")
    g.add_argument("--warmup-steps", type=int, help="linear warmup (default 6%% of --steps, at most 10000)")
    g.add_argument("--weight-decay", type=float, default=0.01)
    g.add_argument("--clip-grad", type=float, default=1.0, help="max gradient norm (0: off)")
    g.add_argument("--micro-batch", type=int, help="sequences per forward pass per rank "
                   "(gradient accumulation fills the batch; default: tiny 16, small/base 32, large 16)")
    g.add_argument("--alpha", type=float, default=0.3, help="language sampling exponent (XLM-R 0.3)")
    g.add_argument("--mask-prob", type=float, default=0.15)
    g.add_argument("--dropout", type=float, help="override the model's dropout (default 0.1)")
    g.add_argument("--compile", action="store_true", help="torch.compile the model")
    g.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    g = p.add_argument_group("logging and checkpoints")
    g.add_argument("--log-every", type=int, default=10)
    g.add_argument("--eval-every", type=int, default=500, help="validation every N steps (0: at the end)")
    g.add_argument("--eval-seqs", type=int, default=64, help="held-out sequences per language")
    g.add_argument("--eval-tatoeba", metavar="DIR", help="Tatoeba test set (LASER layout, as `cc100 evaluate "
                   "--tatoeba`): log the retrieval accuracy per language and averaged with each validation")
    g.add_argument("--checkpoint-every", type=int, default=1000, help="0: only at the end")
    g.add_argument("--stop-at-step", type=int, help=argparse.SUPPRESS)  # fault injection for tests
    a = p.parse_args(argv)

    preset = PRESETS[a.config]

    def given(name: str):  # the flag's value, or the preset's when not given (0 is a value: refused)
        value = getattr(a, name)
        return preset[name] if value is None else value

    data = DataConfig(shards=a.shards, vocab=a.vocab, max_len=given("max_len"),
                      batch_tokens=given("batch_tokens"), alpha=a.alpha,
                      mask_prob=a.mask_prob, seed=a.seed, eval_seqs=a.eval_seqs, packing=a.packing)
    warmup = a.warmup_steps if a.warmup_steps is not None else default_warmup(max(a.steps, 0))
    optim = OptimConfig(lr=given("lr"), warmup_steps=warmup, weight_decay=a.weight_decay,
                        clip_grad=a.clip_grad)
    cfg = TrainConfig(output=a.output, data=data, model=a.config, steps=a.steps, optim=optim,
                      micro_batch=given("micro_batch"), log_every=a.log_every,
                      eval_every=a.eval_every, checkpoint_every=a.checkpoint_every, dropout=a.dropout,
                      compile=a.compile, device=a.device, stop_at_step=a.stop_at_step,
                      eval_tatoeba=a.eval_tatoeba)
    return cfg, a.resume


def main(argv: list[str] | None = None) -> int:
    from pipeline.contracts import pop_force, skip_if_up_to_date
    from train.checkpoint import CHECKPOINT, CheckpointError
    from train.trainer import STAGE, SetupError, Trainer, completion

    force, argv = pop_force(argv)
    try:
        cfg, resume = parse_args(argv)
    except ValueError as e:
        print(f"cc100 pretrain: error: {e}", file=sys.stderr)
        return 2
    first_rank = os.environ.get("RANK", "0") == "0"  # under torchrun every rank checks, one says so
    if (Path(cfg.output) / CHECKPOINT).is_file() and skip_if_up_to_date(
            cfg.output, STAGE, *completion(cfg), force=force, log=print if first_rank else lambda line: None):
        return 0
    trainer = Trainer(cfg, resume=resume)
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
