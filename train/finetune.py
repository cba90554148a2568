"""`cc100 finetune xnli`: zero-shot cross-lingual XNLI with Hugging Face `Trainer` on an export.

    cc100 finetune xnli --model out/run/hf --train multinli.train.tsv --eval xnli.dev.tsv \\
        [--test xnli.test.tsv] --output out/xnli [--epochs 2] [--lr 2e-5] [--batch-size 32]

As in the XLM-R paper and XTREME (scripts/train_xnli.sh): fine-tune on English only, then
report accuracy on every language of the evaluation set and their average. TSVs are read by
their header: XNLI 1.0 (`language`, `gold_label`, `sentence1`, `sentence2`), MultiNLI (the same
without `language`: every row is --train-lang) or XNLI-MT (`premise`, `hypo`, `label`).
Rows without a gold label (MultiNLI's `-`) are skipped and counted. The model is
`XLMRobertaForSequenceClassification` on the pair `<s> premise </s></s> hypothesis </s>`
(at most --max-len tokens); with --test, the checkpoint with the best average accuracy on
--eval is the one tested (model selection on the dev set). Needs the `finetune` extra
(transformers + accelerate). Writes OUTPUT/xnli.json, OUTPUT/model/ (the fine-tuned classifier and
its tokenizer) and prints a table.
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.contracts import FINETUNE_RESULT as RESULT_JSON
from pipeline.contracts import HF_CONFIG, RUN_EXPORT_DIR, OwnershipError, check_claimable, claim
from pipeline.utils.cliflags import add_config_flags, config_from_args, option

LABELS = ("entailment", "neutral", "contradiction")  # ids 0, 1, 2 (as the XNLI dataset on the Hub)
LABEL_ALIASES = {"contradictory": "contradiction"}  # XNLI-MT's spelling
COLUMNS = (("sentence1", "sentence2", "gold_label"), ("premise", "hypo", "label"))
FINETUNE_STAGE = "finetune"  # the marker of a fine-tuning directory


class FinetuneError(ValueError):
    """Bad input: one line naming the file or flag, exit status 2."""


@dataclass
class NLIData:
    premises: list[str] = field(default_factory=list)
    hypotheses: list[str] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    languages: list[str] = field(default_factory=list)
    skipped: int = 0  # rows without a usable gold label

    def __len__(self) -> int:
        return len(self.labels)


def read_nli_tsv(path: str | Path, default_language: str, only_language: str | None = None) -> NLIData:
    """An XNLI 1.0 / MultiNLI / XNLI-MT TSV -> NLIData (rows of `only_language` when given)."""
    path = Path(path)
    if not path.is_file():
        raise FinetuneError(f"{path}: no such file")
    csv.field_size_limit(1 << 24)
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = reader.fieldnames or []
        cols = next((c for c in COLUMNS if set(c) <= set(header)), None)
        if cols is None:
            raise FinetuneError(f"{path}: not an XNLI/MultiNLI TSV (needs columns sentence1, sentence2, gold_label "
                                f"or premise, hypo, label; has {', '.join(header[:8]) or 'none'})")
        data = NLIData()
        for row in reader:
            lang = row.get("language") or default_language
            if only_language and lang != only_language:
                continue
            label = LABEL_ALIASES.get(row[cols[2]], row[cols[2]])
            if label not in LABELS or row[cols[0]] is None or row[cols[1]] is None:
                data.skipped += 1
                continue
            data.premises.append(row[cols[0]])
            data.hypotheses.append(row[cols[1]])
            data.labels.append(LABELS.index(label))
            data.languages.append(lang)
    if not len(data):
        which = f" in language {only_language!r}" if only_language else ""
        raise FinetuneError(f"{path}: no labelled rows{which}")
    return data


class Encoded:
    """NLIData tokenized as sentence pairs: a torch-style dataset of dicts for `Trainer`."""

    def __init__(self, data: NLIData, tokenizer, max_len: int):
        self.enc = tokenizer(data.premises, data.hypotheses, truncation=True, max_length=max_len)
        self.labels = data.labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict:
        return {"input_ids": self.enc["input_ids"][i], "attention_mask": self.enc["attention_mask"][i],
                "labels": self.labels[i]}


def accuracy_by_language(predictions, labels, languages: list[str]) -> dict[str, float]:
    """{lang: accuracy} in first-seen order, plus `average` over the languages (the papers' "avg")."""
    import numpy as np

    correct = np.asarray(predictions) == np.asarray(labels)
    langs = np.asarray(languages)
    out = {lang: float(correct[langs == lang].mean()) for lang in dict.fromkeys(languages)}
    out["average"] = float(np.mean(list(out.values())))
    return out


def resolve_model_dir(path: str | Path) -> Path:
    """An exported directory, or a run directory's hf/ export."""
    path = Path(path)
    for candidate in (path, path / RUN_EXPORT_DIR):
        if (candidate / HF_CONFIG).is_file():
            return candidate
    raise FinetuneError(f"--model {path}: no config.json (pass an exported directory, e.g. RUN/hf)")


@dataclass(kw_only=True)  # flags in --help order, with and without defaults
class XnliConfig:
    model: str = option("--model", required=True, help="exported directory (cc100 export, RUN/hf, or any XLM-R)")
    train: str = option("--train", required=True, help="training TSV (XNLI 1.0 / MultiNLI / XNLI-MT format)")
    eval: str = option("--eval", required=True, help="evaluation TSV, all languages (e.g. xnli.dev.tsv)")
    test: str | None = option("--test", default=None,
                              help="test TSV, scored with the checkpoint best on --eval (e.g. xnli.test.tsv)")
    output: str = option("--output", required=True, help="directory for xnli.json and model/")
    train_lang: str = option("--train-lang", default="en", help="language of the training rows (default %(default)s)")
    epochs: float = option("--epochs", default=2.0, help="training epochs (default 2)")
    max_steps: int = option("--max-steps", default=-1, help="stop after N optimizer steps (overrides --epochs)")
    lr: float = option("--lr", default=2e-5, help="peak learning rate (default 2e-5, XTREME's for base)")
    batch_size: int = option("--batch-size", default=32, help="training sequences per step (default %(default)s)")
    max_len: int = option("--max-len", default=128, help="tokens per pair (default %(default)s, as XTREME)")
    seed: int = option("--seed", default=0)
    device: str = option("--device", default="auto", choices=["auto", "cpu", "cuda"])


def parse_args(argv) -> XnliConfig:
    p = argparse.ArgumentParser(prog="cc100 finetune", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="task", required=True, metavar="TASK")
    x = sub.add_parser("xnli", help="XNLI: train in English, evaluate every language",
                       description="Fine-tune on --train-lang rows, report accuracy per language.")
    add_config_flags(x, XnliConfig)
    return config_from_args(XnliConfig, p.parse_args(argv))


def finetune_xnli(args) -> dict:
    try:
        import accelerate  # noqa: F401  (Trainer needs it; say so before any work)
        import torch
        import transformers
    except ImportError as e:
        raise FinetuneError(f"{e.name} is not installed: pip install -e '.[finetune]'") from None

    output = Path(args.output)
    try:  # a new, empty or earlier fine-tuning directory only, checked before any work
        check_claimable(output, FINETUNE_STAGE)
    except OwnershipError as e:
        raise FinetuneError(f"--output {e}") from None
    model_dir = resolve_model_dir(args.model)
    train = read_nli_tsv(args.train, args.train_lang, only_language=args.train_lang)
    evaluation = read_nli_tsv(args.eval, args.train_lang)
    test = read_nli_tsv(args.test, args.train_lang) if args.test else None
    if args.device == "cuda" and not torch.cuda.is_available():
        raise FinetuneError("--device cuda: no CUDA device available")
    on_gpu = args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available())

    transformers.set_seed(args.seed)
    tokenizer = transformers.AutoTokenizer.from_pretrained(model_dir)
    model = transformers.XLMRobertaForSequenceClassification.from_pretrained(
        model_dir, num_labels=len(LABELS), id2label=dict(enumerate(LABELS)),
        label2id={label: i for i, label in enumerate(LABELS)})
    try:
        claim(output, FINETUNE_STAGE)
    except OSError as e:
        raise FinetuneError(f"--output {output}: {e.strerror}") from None

    def metrics_for(data: NLIData):
        def compute(pred) -> dict:
            return {f"accuracy_{k}": v for k, v in
                    accuracy_by_language(pred.predictions.argmax(-1), pred.label_ids, data.languages).items()}
        return compute

    training_args = transformers.TrainingArguments(
        output_dir=str(output / "checkpoints"), num_train_epochs=args.epochs, max_steps=args.max_steps,
        learning_rate=args.lr, per_device_train_batch_size=args.batch_size,
        per_device_eval_batch_size=2 * args.batch_size, weight_decay=0.0, seed=args.seed,
        eval_strategy="epoch", save_strategy="epoch" if test else "no", save_total_limit=1,
        load_best_model_at_end=bool(test), metric_for_best_model="accuracy_average",
        logging_steps=50, report_to="none", bf16=on_gpu, use_cpu=not on_gpu, disable_tqdm=not sys.stderr.isatty())
    trainer = transformers.Trainer(
        model=model, args=training_args, train_dataset=Encoded(train, tokenizer, args.max_len),
        eval_dataset=Encoded(evaluation, tokenizer, args.max_len), processing_class=tokenizer,
        data_collator=transformers.DataCollatorWithPadding(tokenizer), compute_metrics=metrics_for(evaluation))
    fit = trainer.train()
    result = {"model": str(model_dir), "train": {"file": str(args.train), "language": args.train_lang,
                                                 "rows": len(train), "skipped": train.skipped,
                                                 "steps": fit.global_step, "loss": fit.training_loss},
              "settings": {"epochs": args.epochs, "max_steps": args.max_steps, "lr": args.lr,
                           "batch_size": args.batch_size, "max_len": args.max_len, "seed": args.seed}}
    for name, data, path in (("eval", evaluation, args.eval), ("test", test, args.test)):
        if data is None:
            continue
        trainer.compute_metrics = metrics_for(data)
        scores = trainer.evaluate(Encoded(data, tokenizer, args.max_len), metric_key_prefix=name)
        prefix = f"{name}_accuracy_"
        result[name] = {"file": str(path), "rows": len(data), "skipped": data.skipped,
                        "accuracy": {k[len(prefix):]: v for k, v in scores.items() if k.startswith(prefix)}}
    trainer.save_model(str(output / "model"))
    shutil.rmtree(output / "checkpoints", ignore_errors=True)  # ours, and model/ holds the chosen weights
    (output / RESULT_JSON).write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    return result


def table(result: dict) -> str:
    splits = [s for s in ("eval", "test") if s in result]
    langs = list(dict.fromkeys(k for s in splits for k in result[s]["accuracy"]))
    t = result["train"]
    lines = [f"XNLI: fine-tuned {result['model']} on {t['rows']} {t['language']} pairs "
             f"({t['steps']} steps, final training loss {t['loss']:.4f}); accuracy %",
             "  " + f"{'':<9}" + "".join(f"{lang:>8}" for lang in langs)]
    for s in splits:
        acc = result[s]["accuracy"]
        lines.append("  " + f"{s:<9}" + "".join(f"{100 * acc[lang]:>8.1f}" if lang in acc else f"{'':>8}"
                                                 for lang in langs))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        result = finetune_xnli(args)
    except FinetuneError as e:
        print(f"cc100 finetune: error: {e}", file=sys.stderr)
        return 2
    print(table(result))
    print(f"\nwrote {Path(args.output) / RESULT_JSON} and {Path(args.output) / 'model'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
