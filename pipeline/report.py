"""`cc100 report OUTPUT`: one self-contained HTML page (and PNGs) describing a corpus run.

    cc100 report OUTPUT [--out DIR] [--top-lines N] [--max-languages N]

Reads `OUTPUT/stats.json` (written last by `cc100 corpus`), the Parquet tree
`OUTPUT/{language}/{bucket}/part-*.parquet` (only the small columns: language, language_score,
perplexity, bucket, length) and `OUTPUT/cutoffs.csv` when present (cc_net format). Writes
`OUTPUT/report/index.html` with the PNGs embedded (base64) and also next to it, plus
`report.json` with every number shown, for tools and tests:

* documents and characters per language (log scale);
* the funnel: pages read -> long enough -> after paragraph dedup -> language kept -> written,
  then documents per perplexity bucket;
* perplexity histograms per language, the head/middle/tail cutoffs drawn;
* the language-ID score distribution, with the threshold;
* the most frequent removed boilerplate lines, when stats.json records them.

stats.json is read defensively: its keys belong to `cc100 corpus` and grow stage by stage, so
every key this module reads is named in the tables just below (adapting is one edit there), and
a missing key shows as "n/a" instead of failing. Per-language and per-bucket numbers come from
the Parquet files themselves; where stats.json also has them, a disagreement is reported.
"""

from __future__ import annotations

import argparse
import base64
import html
import io
import json
import math
import os
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

# -- what this module reads from stats.json (one place to adapt) ----------------------------

# Funnel stages, in order: (label, candidate expressions, optional). The first candidate whose
# counters all exist gives the number; an expression is counter names joined by + and -. An
# optional stage (one a run may not have, like --near-dedup) is left out when absent; the others
# show "n/a".
FUNNEL: tuple[tuple[str, tuple[str, ...], bool], ...] = (
    ("WET pages read", ("conversion_records", "records_read - non_conversion_records"), False),
    ("long enough", ("documents_read", "conversion_records - docs_too_short"), False),
    ("after paragraph dedup", ("documents_after_dedup", "documents_read - documents_emptied"), False),
    ("after near-duplicate removal", ("documents_after_near_dedup",), True),
    ("language kept", ("lid_documents_out",), False),
    ("written to Parquet", ("documents_out",), False),
)
# Counters explaining the drops between funnel stages, shown under the funnel.
DROP_COUNTERS = (
    "bad_wet_record", "docs_too_short", "documents_emptied", "duplicate_lines_removed",
    "near_dup_docs_removed", "lid_dropped_empty", "lid_dropped_bad_label", "lid_dropped_threshold",
    "lid_dropped_language_filter", "perplexity_no_model",
)
COUNTERS_KEY = "counters"  # stats["counters"]: {name: int}; top-level numbers are used too
BUCKET_COUNTER = re.compile(r"^documents:([^:]+):([^:]+)$")  # documents per language and bucket
PARTITIONS_KEY = "partitions"  # stats["partitions"]: {"lang/bucket": {"documents": n, ...}}
CONFIG_KEY = "config"  # stats["config"]: the run's options
LANG_THRESHOLD_KEYS = ("lang_threshold", "lid_threshold", "language_threshold")  # in config
MIN_LEN_KEYS = ("min_len",)  # in config
# Proposed: stats["top_duplicate_lines"] = [[line, count], ...], most frequent first.
DUPLICATE_LINES_KEYS = ("top_duplicate_lines", "duplicate_lines")
CUTOFFS_FILE = "cutoffs.csv"
STATS_FILE = "stats.json"

COLUMNS = ("language", "language_score", "perplexity", "bucket", "length")
BUCKET_ORDER = ("head", "middle", "tail", "all")
BUCKET_COLORS = {"head": "#2b8a3e", "middle": "#e8a33d", "tail": "#c92a2a", "all": "#868e96"}


class ReportError(Exception):
    """Bad input for the report: the message names the file or argument."""


# -- reading ---------------------------------------------------------------------------------


@dataclass
class Corpus:
    """What the report is built from: stats.json and the small Parquet columns."""

    output: Path
    stats: dict
    language: list[str]
    bucket: list[str]
    perplexity: list[float]  # nan when absent
    language_score: list[float]  # nan when absent
    length: list[int]
    files: int
    cutoffs: dict[str, tuple[float, float]] = field(default_factory=dict)
    cutoffs_source: str = "none"


def read_stats(output: Path) -> dict:
    path = output / STATS_FILE
    if not path.is_file():
        raise ReportError(f"{path}: not found (an unfinished run, or not a `cc100 corpus` output)")
    try:
        stats = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ReportError(f"{path}: not readable JSON ({e})") from e
    if not isinstance(stats, dict):
        raise ReportError(f"{path}: expected a JSON object, got {type(stats).__name__}")
    return stats


def parquet_files(output: Path) -> list[Path]:
    """OUTPUT/{language}/{bucket}/part-*.parquet, skipping hidden/staging and report dirs."""
    found = []
    for path in sorted(output.glob("*/*/part-*.parquet")):
        lang_dir, bucket_dir = path.parent.parent.name, path.parent.name
        if lang_dir.startswith((".", "_")) or bucket_dir.startswith((".", "_")) or lang_dir == "report":
            continue
        found.append(path)
    return found


def _floats(values) -> list[float]:
    return [float("nan") if v is None else float(v) for v in values]


def read_parquet_columns(files: list[Path]) -> dict[str, list]:
    """The small columns of every part; the directory names stand in for null language/bucket."""
    import pyarrow.parquet as pq

    out: dict[str, list] = {c: [] for c in COLUMNS}
    for path in files:
        try:
            pf = pq.ParquetFile(path)
            present = [c for c in COLUMNS if c in pf.schema_arrow.names]
            table = pf.read(columns=present)
        except Exception as e:  # noqa: BLE001 - pyarrow raises several types for a bad file
            raise ReportError(f"{path}: not a readable Parquet file ({type(e).__name__}: {e})") from e
        n = table.num_rows
        cols = {c: table.column(c).to_pylist() for c in present}
        lang_dir, bucket_dir = path.parent.parent.name, path.parent.name
        out["language"] += [v or lang_dir for v in cols.get("language", [None] * n)]
        out["bucket"] += [v or bucket_dir for v in cols.get("bucket", [None] * n)]
        out["perplexity"] += _floats(cols.get("perplexity", [None] * n))
        out["language_score"] += _floats(cols.get("language_score", [None] * n))
        out["length"] += [int(v or 0) for v in cols.get("length", [0] * n)]
    return out


def read_cutoff_file(path: Path) -> dict[str, tuple[float, float]]:
    """{lang: (head, tail)} from a cc_net cutoff CSV (pipeline.buckets parses it)."""
    from pipeline.buckets import head_tail, parse_cutoffs
    from pipeline.tools import ModelFileError

    try:
        return head_tail(parse_cutoffs(path.read_text(encoding="utf-8"), str(path)))
    except (OSError, UnicodeDecodeError, ModelFileError) as e:
        raise ReportError(f"{path}: not a cc_net cutoff table ({e})") from e


def cutoffs_from_buckets(
    language: list[str], bucket: list[str], perplexity: list[float]
) -> dict[str, tuple[float, float]]:
    """Without cutoffs.csv: each boundary halfway between the buckets on either side of it.

    A boundary with no document on one side is unknown (nan, not drawn).
    """
    by: dict[tuple[str, str], list[float]] = {}
    for lang, b, pp in zip(language, bucket, perplexity):
        if not math.isnan(pp):
            by.setdefault((lang, b), []).append(pp)

    def boundary(below: list[float], above: list[float]) -> float:
        return (max(below) + min(above)) / 2 if below and above else float("nan")

    out = {}
    for lang in sorted({lang for lang, b in by if b in ("head", "middle", "tail")}):
        head, middle, tail = (by.get((lang, b), []) for b in ("head", "middle", "tail"))
        cuts = (boundary(head, middle + tail), boundary(head + middle, tail))
        if not all(math.isnan(c) for c in cuts):
            out[lang] = cuts
    return out


def load_corpus(output: Path) -> Corpus:
    if not output.is_dir():
        raise ReportError(f"{output}: no such directory")
    stats = read_stats(output)
    files = parquet_files(output)
    cols = read_parquet_columns(files)
    corpus = Corpus(output=output, stats=stats, files=len(files), **cols)
    cutoff_path = output / CUTOFFS_FILE
    if cutoff_path.is_file():
        corpus.cutoffs, corpus.cutoffs_source = read_cutoff_file(cutoff_path), CUTOFFS_FILE
    else:
        corpus.cutoffs = cutoffs_from_buckets(corpus.language, corpus.bucket, corpus.perplexity)
        corpus.cutoffs_source = "bucket boundaries" if corpus.cutoffs else "none"
    return corpus


# -- numbers ---------------------------------------------------------------------------------


def counters_of(stats: dict) -> dict[str, float]:
    """stats["counters"]; without it, the numeric top-level keys (another layout)."""
    nested = stats.get(COUNTERS_KEY)
    source = nested if isinstance(nested, dict) else stats
    return {k: v for k, v in source.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def evaluate(expression: str, counters: dict[str, float]) -> float | None:
    """'a - b + c' over counter names; None when a name is missing."""
    total, sign = 0.0, 1
    for token in re.findall(r"[+-]|[^\s+-]+", expression):
        if token in "+-":
            sign = 1 if token == "+" else -1
            continue
        if token not in counters:
            return None
        total += sign * counters[token]
    return total


def funnel(stats: dict) -> list[dict]:
    counters = counters_of(stats)
    rows = []
    for label, candidates, optional in FUNNEL:
        value, source = None, None
        for expression in candidates:
            value = evaluate(expression, counters)
            if value is not None:
                source = expression
                break
        if value is None and optional:
            continue
        rows.append({"stage": label, "documents": None if value is None else int(value), "source": source})
    return rows


def config_value(stats: dict, keys: tuple[str, ...]):
    config = stats.get(CONFIG_KEY) if isinstance(stats.get(CONFIG_KEY), dict) else {}
    for key in keys:
        if key in config:
            return config[key]
        if key in stats:
            return stats[key]
    return None


def duplicate_lines(stats: dict, top: int) -> list[tuple[str, int]] | None:
    for key in DUPLICATE_LINES_KEYS:
        value = stats.get(key)
        if isinstance(value, list):
            rows = []
            for item in value:
                if isinstance(item, (list, tuple)) and len(item) == 2:
                    rows.append((str(item[0]), int(item[1])))
                elif isinstance(item, dict) and "line" in item and "count" in item:
                    rows.append((str(item["line"]), int(item["count"])))
            return sorted(rows, key=lambda r: (-r[1], r[0]))[:top]
    return None


def per_language(corpus: Corpus) -> list[dict]:
    """Rows sorted by documents (desc): documents, characters, per-bucket documents, medians."""
    rows: dict[str, dict] = {}
    for lang, b, n, pp, score in zip(
        corpus.language, corpus.bucket, corpus.length, corpus.perplexity, corpus.language_score
    ):
        row = rows.setdefault(lang, {"language": lang, "documents": 0, "characters": 0,
                                     "buckets": {}, "_pp": [], "_score": []})
        row["documents"] += 1
        row["characters"] += n
        row["buckets"][b] = row["buckets"].get(b, 0) + 1
        if not math.isnan(pp):
            row["_pp"].append(pp)
        if not math.isnan(score):
            row["_score"].append(score)
    out = []
    for row in rows.values():
        pp, score = sorted(row.pop("_pp")), sorted(row.pop("_score"))
        row["median_perplexity"] = pp[len(pp) // 2] if pp else None
        row["median_language_score"] = score[len(score) // 2] if score else None
        out.append(row)
    return sorted(out, key=lambda r: (-r["documents"], r["language"]))


def bucket_totals(corpus: Corpus) -> dict[str, int]:
    totals: dict[str, int] = {}
    for b in corpus.bucket:
        totals[b] = totals.get(b, 0) + 1
    return dict(sorted(totals.items(), key=lambda kv: (_bucket_rank(kv[0]), kv[0])))


def _bucket_rank(bucket: str) -> int:
    return BUCKET_ORDER.index(bucket) if bucket in BUCKET_ORDER else len(BUCKET_ORDER)


def consistency_warnings(corpus: Corpus, stages: list[dict]) -> list[str]:
    """Where stats.json and the Parquet files disagree (they should not)."""
    warnings = []
    counters = counters_of(corpus.stats)
    rows = len(corpus.language)
    if "documents_out" in counters and int(counters["documents_out"]) != rows:
        warnings.append(
            f"stats.json documents_out = {int(counters['documents_out'])}, "
            f"but the Parquet files hold {rows} rows"
        )
    partitions = corpus.stats.get(PARTITIONS_KEY)
    if isinstance(partitions, dict):
        counted: dict[str, int] = {}
        for lang, b in zip(corpus.language, corpus.bucket):
            counted[f"{lang}/{b}"] = counted.get(f"{lang}/{b}", 0) + 1
        for key in sorted(set(partitions) | set(counted)):
            entry = partitions.get(key)
            said = entry.get("documents") if isinstance(entry, dict) else entry
            if said is not None and int(said) != counted.get(key, 0):
                warnings.append(
                    f"stats.json partition {key}: {int(said)} documents, Parquet: {counted.get(key, 0)}"
                )
    bucket_counters = {}  # "documents:{lang}:{bucket}" counters of pipeline/buckets.py
    for name, value in counters.items():
        m = BUCKET_COUNTER.match(name)
        if m:
            bucket_counters[f"{m.group(1)}/{m.group(2)}"] = int(value)
    if bucket_counters:
        counted = {}
        for lang, b in zip(corpus.language, corpus.bucket):
            counted[f"{lang}/{b}"] = counted.get(f"{lang}/{b}", 0) + 1
        for key in sorted(set(bucket_counters) | set(counted)):
            if bucket_counters.get(key, 0) != counted.get(key, 0):
                warnings.append(f"stats.json counter documents:{key.replace('/', ':')} = "
                                f"{bucket_counters.get(key, 0)}, Parquet: {counted.get(key, 0)}")
    numbers = [s["documents"] for s in stages if s["documents"] is not None]
    if any(b > a for a, b in zip(numbers, numbers[1:])):
        warnings.append("the funnel grows between two stages: check the FUNNEL table in pipeline/report.py")
    if not rows:
        warnings.append("no document in the Parquet files")
    return warnings


# -- plots -----------------------------------------------------------------------------------


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"font.size": 9, "axes.spines.top": False, "axes.spines.right": False})
    return plt


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return buf.getvalue()


def plot_languages(rows: list[dict]) -> bytes:
    plt = _pyplot()
    langs = [r["language"] for r in rows][::-1]
    height = max(2.0, 0.28 * len(langs) + 1.0)
    fig, axes = plt.subplots(1, 2, figsize=(10, height), sharey=True)
    for ax, key, title, color in (
        (axes[0], "documents", "documents", "#1971c2"),
        (axes[1], "characters", "characters", "#5f3dc4"),
    ):
        values = [r[key] for r in rows][::-1]
        bars = ax.barh(langs, values, color=color)
        ax.set_xscale("log")
        ax.set_title(f"{title} per language (log scale)")
        for bar, v in zip(bars, values):
            ax.text(bar.get_width(), bar.get_y() + bar.get_height() / 2, f" {v:,}", va="center", fontsize=7)
        if values:
            ax.set_xlim(0.8, max(values) * 8)
    fig.tight_layout()
    data = _png(fig)
    plt.close(fig)
    return data


def plot_funnel(stages: list[dict], buckets: dict[str, int]) -> bytes:
    plt = _pyplot()
    known = [s for s in stages if s["documents"] is not None]
    labels = [s["stage"] for s in known] + [f"bucket {b}" for b in buckets]
    values = [s["documents"] for s in known] + list(buckets.values())
    colors = ["#1971c2"] * len(known) + [BUCKET_COLORS.get(b, "#495057") for b in buckets]
    fig, ax = plt.subplots(figsize=(9, max(2.0, 0.4 * len(labels) + 0.8)))
    bars = ax.barh(labels[::-1], values[::-1], color=colors[::-1])
    first = known[0]["documents"] if known and known[0]["documents"] else None
    for bar, v in zip(bars, values[::-1]):
        pct = f" ({100 * v / first:.1f}%)" if first else ""
        ax.text(bar.get_width(), bar.get_y() + bar.get_height() / 2, f" {v:,}{pct}", va="center", fontsize=8)
    ax.set_xlim(0, max(values + [1]) * 1.25)
    ax.set_title("documents through the stages, then per perplexity bucket")
    fig.tight_layout()
    data = _png(fig)
    plt.close(fig)
    return data


def log_ticks(lo: float, hi: float, most: int = 6) -> list[float]:
    """Round tick values for a log axis from lo to hi: as fine as fits, at most `most` of them."""
    for mantissas in ((1, 2, 5), (1, 1.5, 2, 3, 5, 7), (1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 7, 8, 9)):
        ticks = [m * 10.0**k for k in range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1)
                 for m in mantissas if lo <= m * 10.0**k <= hi]
        if len(ticks) >= 3:
            break
    while len(ticks) > most:
        ticks = ticks[::2]
    return ticks


def plot_perplexity(corpus: Corpus, langs: list[str]) -> bytes | None:
    """One small histogram per language (log-x), stacked by bucket, cutoffs as dashed lines."""
    plt = _pyplot()
    import numpy as np
    from matplotlib import ticker

    langs = [lang for lang in langs if any(
        l == lang and not math.isnan(pp) for l, pp in zip(corpus.language, corpus.perplexity))]
    if not langs:
        return None
    ncols = min(4, len(langs))
    nrows = math.ceil(len(langs) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.2 * ncols, 2.4 * nrows), squeeze=False)
    for ax in axes.flat[len(langs):]:
        ax.set_visible(False)
    for ax, lang in zip(axes.flat, langs):
        values = {b: [] for b in BUCKET_ORDER}
        for l, b, pp in zip(corpus.language, corpus.bucket, corpus.perplexity):
            if l == lang and not math.isnan(pp) and pp > 0:
                values.setdefault(b, []).append(pp)
        everything = [v for vs in values.values() for v in vs]
        lo, hi = min(everything), max(everything)
        cuts = [c for c in corpus.cutoffs.get(lang, ()) if math.isfinite(c) and c > 0]
        if cuts:
            lo, hi = min(lo, *cuts), max(hi, *cuts)
        bins = np.geomspace(lo * 0.9, hi * 1.1, 30) if hi > lo else 10
        present = [b for b in values if values[b]]
        ax.hist([values[b] for b in present], bins=bins, stacked=True,
                color=[BUCKET_COLORS.get(b, "#495057") for b in present], label=present)
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(ticker.FixedLocator(log_ticks(lo * 0.9, hi * 1.1)))
        ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(ticker.NullFormatter())
        for cut, name, height in zip(corpus.cutoffs.get(lang, ()), ("p30", "p60"), (0.97, 0.84)):
            if math.isfinite(cut) and cut > 0:
                ax.axvline(cut, color="black", linestyle="--", linewidth=1)
                ax.text(cut, ax.get_ylim()[1] * height, f" {name}", fontsize=7, va="top")
        ax.set_title(f"{lang} ({len(everything)} docs)")
        ax.set_xlabel("perplexity")
    handles = [plt.Rectangle((0, 0), 1, 1, color=BUCKET_COLORS[b]) for b in ("head", "middle", "tail")]
    height = fig.get_figheight()
    fig.suptitle(f"perplexity per language; dashed: bucket cutoffs ({corpus.cutoffs_source})",
                 y=1 - 0.05 / height, va="top")
    fig.legend(handles, ["head", "middle", "tail"], loc="upper center", ncol=3, fontsize=8,
               bbox_to_anchor=(0.5, 1 - 0.28 / height), frameon=False)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.5 / height))
    data = _png(fig)
    plt.close(fig)
    return data


def plot_language_scores(corpus: Corpus, langs: list[str], threshold: float | None) -> bytes | None:
    plt = _pyplot()
    scores = {lang: [] for lang in langs}
    for l, s in zip(corpus.language, corpus.language_score):
        if l in scores and not math.isnan(s):
            scores[l].append(s)
    langs = [lang for lang in langs if scores[lang]]
    if not langs:
        return None
    fig, (left, right) = plt.subplots(
        1, 2, figsize=(10, max(2.5, 0.28 * len(langs) + 1.0)), gridspec_kw={"width_ratios": [1, 1.3]}
    )
    everything = [s for lang in langs for s in scores[lang]]
    left.hist(everything, bins=[i / 50 for i in range(51)], color="#1971c2")
    left.set_title(f"language-ID score, all {len(everything):,} documents")
    left.set_xlabel("score of the top language")
    import matplotlib

    horizontal = ({"orientation": "horizontal"} if tuple(map(int, matplotlib.__version__.split(".")[:2])) >= (3, 10)
                  else {"vert": False})  # `vert` is deprecated from 3.10 on
    right.boxplot([scores[lang] for lang in langs[::-1]], widths=0.6, **horizontal)
    right.set_yticks(range(1, len(langs) + 1), langs[::-1])
    right.set_title("per language")
    right.set_xlim(-0.02, 1.02)
    for ax in (left, right):
        if threshold is not None:
            ax.axvline(threshold, color="#c92a2a", linestyle="--", linewidth=1)
    if threshold is not None:
        left.text(threshold, left.get_ylim()[1] * 0.95, f" threshold {threshold}", color="#c92a2a",
                  fontsize=8, va="top")
    fig.tight_layout()
    data = _png(fig)
    plt.close(fig)
    return data


def _renderable(text: str) -> bool:
    """Whether matplotlib's default font has every glyph (CJK, Devanagari... are not there)."""
    from matplotlib.font_manager import FontProperties, findfont, get_font

    charmap = get_font(findfont(FontProperties())).get_charmap()
    return all(ord(c) in charmap or c.isspace() for c in text)


def plot_duplicate_lines(lines: list[tuple[str, int]]) -> bytes | None:
    """The top removed lines; a line the plot font cannot draw is shown by its rank only."""
    if not lines:
        return None
    plt = _pyplot()
    shown = list(enumerate(lines[:20], 1))[::-1]
    labels = []
    for rank, (text, _) in shown:
        short = text if len(text) <= 60 else text[:57] + "..."
        labels.append(f"#{rank} {short}" if _renderable(short) else f"#{rank} (see the table)")
    fig, ax = plt.subplots(figsize=(9, 0.3 * len(shown) + 1.0))
    ax.barh(range(len(shown)), [c for _, (_, c) in shown], color="#868e96")
    ax.set_yticks(range(len(shown)), labels, fontsize=7)
    ax.set_title("most frequent removed lines (copies)")
    fig.tight_layout()
    data = _png(fig)
    plt.close(fig)
    return data


# -- HTML ------------------------------------------------------------------------------------

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #212529; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
th, td { border-bottom: 1px solid #dee2e6; padding: 3px 10px; text-align: right; }
th:first-child, td:first-child { text-align: left; }
td.text { text-align: left; max-width: 700px; overflow-wrap: anywhere; }
.warn { background: #fff3bf; padding: 0.5em 1em; border-left: 4px solid #f59f00; }
img { max-width: 100%; }
code { background: #f1f3f5; padding: 0 3px; }
"""


def _fmt(value) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:,.2f}" if not value.is_integer() else f"{int(value):,}"
    if isinstance(value, int):
        return f"{value:,}"
    return html.escape(str(value))


def _img(name: str, png: bytes | None, alt: str) -> str:
    if png is None:
        return f"<p><em>{html.escape(alt)}: no data.</em></p>"
    b64 = base64.b64encode(png).decode("ascii")
    return f'<p><img alt="{html.escape(alt)}" title="{name}" src="data:image/png;base64,{b64}"></p>'


def render_html(corpus: Corpus, numbers: dict, images: dict[str, bytes | None]) -> str:
    e = html.escape
    stats = corpus.stats
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>cc100 corpus report: {e(str(corpus.output))}</title>",
        f"<style>{STYLE}</style></head><body>",
        f"<h1>Corpus report</h1><p>Output <code>{e(str(corpus.output))}</code>: "
        f"{numbers['documents']:,} documents, {numbers['characters']:,} characters in "
        f"{corpus.files} Parquet files, {len(numbers['languages'])} languages.",
    ]
    if "started" in stats or "seconds" in stats:
        out.append(f" Run started {_fmt(stats.get('started'))}, took {_fmt(stats.get('seconds'))} s.")
    out.append("</p>")
    for w in numbers["warnings"]:
        out.append(f'<p class="warn" data-warning="1">{e(w)}</p>')

    out.append("<h2>Funnel</h2><table><tr><th>stage</th><th>documents</th><th>from stats.json</th></tr>")
    for s in numbers["funnel"]:
        out.append(
            f'<tr><td>{e(s["stage"])}</td><td data-funnel="{e(s["stage"])}">{_fmt(s["documents"])}</td>'
            f'<td class="text"><code>{e(s["source"] or "absent")}</code></td></tr>'
        )
    for b, n in numbers["buckets"].items():
        out.append(f'<tr><td>bucket {e(b)}</td><td data-bucket="{e(b)}">{n:,}</td>'
                   f'<td class="text">Parquet rows</td></tr>')
    out.append("</table>")
    drops = numbers["drops"]
    if drops:
        out.append("<table><tr><th>dropped / removed</th><th>count</th></tr>")
        for name, value in drops.items():
            out.append(f'<tr><td><code>{e(name)}</code></td><td data-counter="{e(name)}">{_fmt(value)}</td></tr>')
        out.append("</table>")
    out.append(_img("funnel.png", images.get("funnel.png"), "funnel"))

    out.append("<h2>Languages</h2><table><tr><th>language</th><th>documents</th><th>characters</th>")
    bucket_names = list(numbers["buckets"])
    out += [f"<th>{e(b)}</th>" for b in bucket_names]
    out.append("<th>median perplexity</th><th>median LID score</th></tr>")
    for r in numbers["languages"]:
        lang = e(r["language"])
        cells = [
            f'<td>{lang}</td><td data-lang="{lang}" data-field="documents">{r["documents"]:,}</td>',
            f'<td data-lang="{lang}" data-field="characters">{r["characters"]:,}</td>',
        ]
        cells += [f'<td data-lang="{lang}" data-field="bucket-{e(b)}">{r["buckets"].get(b, 0):,}</td>'
                  for b in bucket_names]
        cells.append(f"<td>{_fmt(r['median_perplexity'])}</td><td>{_fmt(r['median_language_score'])}</td>")
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</table>")
    out.append(_img("languages.png", images.get("languages.png"), "documents and characters per language"))

    out.append("<h2>Perplexity</h2>")
    if corpus.cutoffs:
        out.append(f"<p>Bucket cutoffs (p30 / p60) from {e(corpus.cutoffs_source)}:</p>"
                   "<table><tr><th>language</th><th>head &lt;</th><th>tail &ge;</th></tr>")
        for lang in sorted(corpus.cutoffs):
            head, tail = corpus.cutoffs[lang]
            cells = "".join(
                f'<td data-cutoff="{e(lang)}-{name}">{"n/a" if math.isnan(v) else f"{v:,.1f}"}</td>'
                for name, v in (("head", head), ("tail", tail))
            )
            out.append(f"<tr><td>{e(lang)}</td>{cells}</tr>")
        out.append("</table>")
    if numbers["perplexity_languages_omitted"]:
        out.append(f"<p>Plotted: the {len(numbers['perplexity_languages'])} largest languages; "
                   f"omitted: {e(', '.join(numbers['perplexity_languages_omitted']))}.</p>")
    out.append(_img("perplexity.png", images.get("perplexity.png"), "perplexity histograms"))

    out.append("<h2>Language identification</h2>")
    threshold = numbers["lang_threshold"]
    out.append(f"<p>Threshold: {_fmt(threshold)} (documents below it were dropped).</p>")
    out.append(_img("language_score.png", images.get("language_score.png"), "language-ID scores"))

    out.append("<h2>Removed boilerplate</h2>")
    dup = numbers["duplicate_lines"]
    if dup is None:
        out.append(f"<p>Not recorded by this run (stats.json has no <code>{DUPLICATE_LINES_KEYS[0]}</code>). "
                   f"Lines removed as duplicates: {_fmt(numbers['drops'].get('duplicate_lines_removed'))}.</p>")
    else:
        out.append("<table><tr><th>#</th><th>line</th><th>copies</th></tr>")
        for rank, (text, count) in enumerate(dup, 1):
            out.append(f'<tr><td>{rank}</td><td class="text">{e(text)}</td>'
                       f'<td data-duplicate-count="1">{count:,}</td></tr>')
        out.append("</table>")
        out.append(_img("duplicate_lines.png", images.get("duplicate_lines.png"), "removed lines"))

    counters = counters_of(stats)
    help_text = stats.get("counter_help") if isinstance(stats.get("counter_help"), dict) else {}
    out.append("<h2>All counters</h2><details><summary>stats.json counters</summary><table>")
    for name in sorted(counters):
        out.append(f"<tr><td><code>{e(name)}</code></td><td>{_fmt(counters[name])}</td>"
                   f'<td class="text">{e(str(help_text.get(name, "")))}</td></tr>')
    out.append("</table></details>")
    config = stats.get(CONFIG_KEY)
    if isinstance(config, dict):
        out.append("<details><summary>run configuration</summary><pre>"
                   + e(json.dumps(config, indent=2, ensure_ascii=False)) + "</pre></details>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"


# -- the command -----------------------------------------------------------------------------


def build_numbers(corpus: Corpus, top_lines: int, max_languages: int) -> dict:
    languages = per_language(corpus)
    stages = funnel(corpus.stats)
    counters = counters_of(corpus.stats)
    threshold = config_value(corpus.stats, LANG_THRESHOLD_KEYS)
    plotted = [r["language"] for r in languages][:max_languages]
    return {
        "output": str(corpus.output),
        "parquet_files": corpus.files,
        "documents": len(corpus.language),
        "characters": sum(corpus.length),
        "funnel": stages,
        "buckets": bucket_totals(corpus),
        "drops": {k: counters[k] for k in DROP_COUNTERS if k in counters},
        "languages": languages,
        "cutoffs": {k: [None if math.isnan(c) else c for c in v] for k, v in corpus.cutoffs.items()},
        "cutoffs_source": corpus.cutoffs_source,
        "lang_threshold": threshold,
        "min_len": config_value(corpus.stats, MIN_LEN_KEYS),
        "duplicate_lines": duplicate_lines(corpus.stats, top_lines),
        "perplexity_languages": plotted,
        "perplexity_languages_omitted": [r["language"] for r in languages][max_languages:],
        "warnings": consistency_warnings(corpus, stages),
    }


def write_report(corpus: Corpus, out_dir: Path, top_lines: int = 30, max_languages: int = 24) -> dict:
    """Write index.html, the PNGs and report.json into out_dir; return the numbers shown."""
    numbers = build_numbers(corpus, top_lines, max_languages)
    threshold = numbers["lang_threshold"]
    images = {
        "funnel.png": plot_funnel(numbers["funnel"], numbers["buckets"]),
        "languages.png": plot_languages(numbers["languages"]) if numbers["languages"] else None,
        "perplexity.png": plot_perplexity(corpus, numbers["perplexity_languages"]),
        "language_score.png": plot_language_scores(
            corpus, [r["language"] for r in numbers["languages"]],
            float(threshold) if isinstance(threshold, (int, float)) else None,
        ),
        "duplicate_lines.png": plot_duplicate_lines(numbers["duplicate_lines"] or []),
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, png in images.items():
        path = out_dir / name
        if png is None:
            path.unlink(missing_ok=True)  # a stale plot from an earlier run would mislead
        else:
            _write(path, png)
    numbers["images"] = sorted(name for name, png in images.items() if png is not None)
    _write(out_dir / "report.json", (json.dumps(numbers, indent=1, ensure_ascii=False) + "\n").encode())
    _write(out_dir / "index.html", render_html(corpus, numbers, images).encode("utf-8"))
    return numbers


def _write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def format_summary(numbers: dict, out_dir: Path, seconds: float) -> str:
    lines = [f"cc100 report: {numbers['documents']:,} documents, {numbers['characters']:,} characters, "
             f"{len(numbers['languages'])} languages ({seconds:.1f} s)"]
    for s in numbers["funnel"]:
        if s["documents"] is not None:
            lines.append(f"  {s['stage']:<30} {s['documents']:>10,}")
    for b, n in numbers["buckets"].items():
        lines.append(f"  {'bucket ' + b:<30} {n:>10,}")
    top = ", ".join(f"{r['language']} {r['documents']:,}" for r in numbers["languages"][:8])
    if top:
        lines.append(f"  languages: {top}{' ...' if len(numbers['languages']) > 8 else ''}")
    for w in numbers["warnings"]:
        lines.append(f"  warning: {w}")
    lines.append(f"  written to {out_dir / 'index.html'} (+ {', '.join(numbers['images'])}, report.json)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="cc100 report",
        description="HTML + PNG report of a `cc100 corpus` output directory.",
    )
    p.add_argument("output", type=Path, help="the corpus OUTPUT directory (with stats.json)")
    p.add_argument("--out", type=Path, help="where to write (default: OUTPUT/report)")
    p.add_argument("--top-lines", type=int, default=30, help="removed lines to list (default 30)")
    p.add_argument("--max-languages", type=int, default=24,
                   help="languages with a perplexity histogram, largest first (default 24)")
    args = p.parse_args(argv)
    for name in ("top_lines", "max_languages"):
        if getattr(args, name) < 1:
            print(f"cc100 report: --{name.replace('_', '-')} must be at least 1", file=sys.stderr)
            return 2
    out_dir = args.out or args.output / "report"
    t0 = time.perf_counter()
    try:
        print(f"cc100 report: reading {args.output}", file=sys.stderr)
        corpus = load_corpus(args.output)
        print(f"cc100 report: {corpus.files} Parquet files, {len(corpus.language):,} documents; plotting",
              file=sys.stderr)
        numbers = write_report(corpus, out_dir, args.top_lines, args.max_languages)
    except ReportError as e:
        print(f"cc100 report: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"cc100 report: cannot write {out_dir}: {e.strerror or e}", file=sys.stderr)
        return 1
    print(format_summary(numbers, out_dir, time.perf_counter() - t0))
    return 0


if __name__ == "__main__":
    sys.exit(main())
