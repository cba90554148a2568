"""RUN_DIR/log.jsonl -> PNG: training and per-language validation loss, MLM accuracy, LR, tokens/s,
and, for runs with `--eval-tatoeba`, the Tatoeba retrieval accuracy beside the loss.

    cc100 plot RUN_DIR/log.jsonl [more runs' log.jsonl ...] [--output curves.png]

Several logs are drawn on the same axes (one colour per run) to compare runs.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

from pipeline.contracts import TRAINING_LOG
from pipeline.utils.cliflags import add_config_flags, config_from_args, option


def read_log(path: Path) -> list[dict]:
    """The records of a log.jsonl; a line cut by a killed run is skipped."""
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(rec, dict) and "step" in rec:
            records.append(rec)
    return records


def plot(logs: dict[str, list[dict]], output: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with_tatoeba = any("tatoeba_accuracy" in r for recs in logs.values() for r in recs)
    if with_tatoeba:
        fig, axes = plt.subplots(2, 3, figsize=(18, 8))
        (ax_loss, ax_tatoeba, ax_acc), (ax_lr, ax_tps, spare) = axes
        spare.axis("off")
    else:
        fig, axes = plt.subplots(2, 2, figsize=(12, 8))
        (ax_loss, ax_acc), (ax_lr, ax_tps) = axes
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (name, recs) in enumerate(logs.items()):
        c = colours[i % len(colours)]
        steps = [r["step"] for r in recs]
        label = name if len(logs) > 1 else "train"
        ax_loss.plot(steps, [r["loss"] for r in recs], color=c, label=label)
        val = [r for r in recs if r.get("val_loss")]
        langs = sorted({lang for r in val for lang in r["val_loss"]})
        for lang in langs:
            pts = [(r["step"], r["val_loss"][lang]) for r in val if lang in r["val_loss"]]
            ax_loss.plot(*zip(*pts), color=c, alpha=0.35, linewidth=0.8)
        if val:
            mean = [(r["step"], sum(r["val_loss"].values()) / len(r["val_loss"])) for r in val]
            ax_loss.plot(*zip(*mean), color=c, linestyle="--", marker="o", markersize=3,
                         label=f"{label} val (mean of {len(langs)} languages; thin: each)")
        if with_tatoeba:
            plot_tatoeba(ax_tatoeba, recs, c, label)
        ax_acc.plot(steps, [r.get("mlm_accuracy", float("nan")) for r in recs], color=c, label=label)
        ax_lr.plot(steps, [r["lr"] for r in recs], color=c, label=label)
        ax_tps.plot(steps, [r["tokens_per_s"] for r in recs], color=c, label=label)
        if any("mfu" in r for r in recs):
            ax_mfu = ax_tps.twinx()
            ax_mfu.plot(steps, [100 * r.get("mfu", float("nan")) for r in recs], color=c, linestyle=":")
            ax_mfu.set_ylabel("MFU % (dotted)")
    for ax, title in ((ax_loss, "masked-LM loss (nats)"), (ax_acc, "MLM accuracy"),
                      (ax_lr, "learning rate"), (ax_tps, "tokens / s")):
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    ax_loss.legend(fontsize=8)
    if with_tatoeba:
        ax_tatoeba.set_title("Tatoeba retrieval accuracy % (XTREME)")
        ax_tatoeba.set_xlabel("step")
        ax_tatoeba.grid(alpha=0.3)
        ax_tatoeba.legend(fontsize=8)
    fig.tight_layout()
    output.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(output, dpi=110)
    plt.close(fig)


def plot_tatoeba(ax, recs: list[dict], colour, label: str) -> None:
    """The average (thick) and each language (thin) of the runs' `tatoeba` records."""
    recs = [r for r in recs if "tatoeba_accuracy" in r]
    if not recs:
        return
    for lang in sorted({lang for r in recs for lang in r["tatoeba"]}):
        pts = [(r["step"], 100 * r["tatoeba"][lang]) for r in recs if lang in r["tatoeba"]]
        ax.plot(*zip(*pts), color=colour, alpha=0.25, linewidth=0.7)
    ax.plot([r["step"] for r in recs], [100 * r["tatoeba_accuracy"] for r in recs], color=colour, marker="o",
            markersize=3, linewidth=2, label=f"{label} average of {len(recs[-1]['tatoeba'])} (thin: each)")


@dataclass
class PlotConfig:
    logs: list[Path] = option("logs", nargs="+", type=Path, help="log.jsonl files (or RUN_DIRs)")
    output: Path | None = option("--output", default=None,
                                 help="PNG to write (default: beside the first log, curves.png)")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="cc100 plot", description=__doc__.split("\n\n")[0])
    add_config_flags(p, PlotConfig)
    a = config_from_args(PlotConfig, p.parse_args(argv))
    logs = {}
    for path in a.logs:
        path = path / TRAINING_LOG if path.is_dir() else path
        if not path.is_file():
            print(f"cc100 plot: error: {path}: no such log", file=sys.stderr)
            return 2
        recs = read_log(path)
        if not recs:
            print(f"cc100 plot: error: {path}: no log records", file=sys.stderr)
            return 2
        logs[str(path.parent.name or path)] = recs
    first = a.logs[0]
    output = a.output or (first if first.is_dir() else first.parent) / "curves.png"
    plot(logs, output)
    print(f"wrote {output} ({sum(len(r) for r in logs.values())} records from {len(logs)} run(s))")
    return 0


if __name__ == "__main__":
    sys.exit(main())
