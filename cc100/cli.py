"""The `cc100` command: one subcommand per stage, each a module with `main(argv) -> int`.

The dispatcher imports a stage only when it is called, so `cc100 corpus` never loads torch
and `cc100 pretrain` never loads Beam. Data flows one way:
WET -> corpus (Parquet) -> vocab -> tokenize (token shards) -> pretrain -> export.
"""

from __future__ import annotations

import importlib
import sys

# subcommand -> (module with main(argv), one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "corpus": ("pipeline.corpus", "WET files -> CCNet documents -> per-language Parquet (Beam)"),
    "lm": ("pipeline.quality.lm", "train per-language SentencePiece + KenLM 5-gram scoring models"),
    "report": ("pipeline.writers.report", "HTML + PNG report of a corpus output directory"),
    "vocab": ("train.vocab", "train the SentencePiece unigram vocabulary (alpha sampling)"),
    "tokenize": ("train.tokenize", "Parquet corpus -> per-language token shards"),
    "pretrain": ("train.pretrain", "masked-LM pretraining of the XLM-R encoder"),
    "export": ("model.export", "checkpoint -> Hugging Face XLMRobertaForMaskedLM directory"),
    "plot": ("train.plot", "training log.jsonl -> PNG loss curves"),
    "evaluate": ("train.evaluate", "Tatoeba retrieval + held-out masked-LM loss vs unigram baseline"),
    "finetune": ("train.finetune", "fine-tune an export with transformers' Trainer (XNLI)"),
    "prefetch": ("pipeline.readers.prefetch", "download WET segments of a snapshot (retries, resume)"),
}


def usage() -> str:
    lines = ["usage: cc100 <command> [options]   (cc100 <command> --help for its options)",
             "       cc100 --version", ""]
    for name, (_, help_text) in COMMANDS.items():
        lines.append(f"  {name:<10} {help_text}")
    return "\n".join(lines)


def version() -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        return dist_version("cc100")
    except PackageNotFoundError:  # a source checkout that was never pip-installed
        return "unknown (not installed)"


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return 0
    if argv[0] in ("-V", "--version", "version"):
        print(f"cc100 {version()}")
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"cc100: unknown command {name!r}\n\n{usage()}", file=sys.stderr)
        return 2
    module_name = COMMANDS[name][0]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name == module_name:
            print(f"cc100: command {name!r} is not available in this version", file=sys.stderr)
            return 2
        raise
    return int(module.main(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
