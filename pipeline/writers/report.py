"""`cc100 report OUTPUT`: one self-contained HTML page (and PNGs) describing a corpus run.

    cc100 report OUTPUT [--output DIR] [--top-lines N] [--max-languages N] [--samples N]
                        [--sentencepiece MODEL]

Reads `OUTPUT/.cc100/stats.json` (written last by `cc100 corpus`), the Parquet tree
`OUTPUT/{language}/{bucket}/part-*.parquet` (one row group at a time) and
`OUTPUT/.cc100/cutoffs.csv` when present (cc_net format); outputs of older versions kept both
at the top level, where they are still read (pipeline/contracts.py). Writes
`OUTPUT/.cc100/report/index.html` (templates/report.html.j2, PNGs embedded as base64 and also
written next to it), plus `report.json` with every number shown, for tools and tests:

* documents and characters per language (log scale);
* the funnel: pages read -> long enough -> after paragraph dedup -> language kept -> written,
  then documents per perplexity bucket; lines and characters in and after dedup;
* deduplication per language: paragraphs (lines) removed from kept documents, and their bytes
  against the records' (original_length, the WARC Content-Length);
* characters and whitespace tokens (and, with --sentencepiece MODEL, pieces) per language and bucket;
* document-length distributions per language (percentiles and a plot);
* top domains and TLDs per language; a few sample documents per language and bucket
  (truncated; every text is HTML-escaped by the template engine);
* perplexity histograms per language, the head/middle/tail cutoffs drawn;
* the language-ID score distribution, with the threshold;
* the most frequent removed boilerplate lines, when stats.json records them.

Long per-language tables scroll inside a box with a fixed header, and per-language details
(domains, samples) are collapsed, so the page stays readable for 100 languages.

stats.json is read defensively: its keys belong to `cc100 corpus` and grow stage by stage, so
every key this module reads is named in the tables just below (adapting is one edit there), and
a missing key shows as "n/a" instead of failing. Per-language and per-bucket numbers come from
the Parquet files themselves; where stats.json also has them, a disagreement is reported.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import io
import json
import math
import re
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from pipeline.utils.cliflags import add_config_flags, config_from_args, option
from pipeline.contracts import (
    CUTOFFS_FILE,
    META_DIR,
    REPORT_DIR,
    REPORT_INDEX,
    REPORT_JSON,
    STATS_FILE,
    STATS_LANG_THRESHOLD,
    STATS_TOP_LINES,
    OwnershipError,
    atomic_write_bytes,
    check_claimable,
    claim,
    find_meta,
    meta_path,
    part_files,
)


REPORT_STAGE = "report"  # the stage name in the report directory's .cc100/stage.json

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
LANG_THRESHOLD_KEYS = (STATS_LANG_THRESHOLD,)  # in config
MIN_LEN_KEYS = ("min_len",)  # in config
# Counters for the line/character rows of the funnel: (label, lines expression, chars expression).
TEXT_FUNNEL = (
    ("into paragraph dedup", "lines_in", "chars_in"),
    ("after paragraph dedup", "lines_in - duplicate_lines_removed", "chars_after_dedup"),
)

COLUMNS = ("language", "language_score", "perplexity", "bucket", "length")
DETAIL_COLUMNS = ("url", "raw_content", "nlines", "original_nlines", "original_length")
SAMPLE_CHARS = 600  # characters of a sample document shown
TOP_DOMAINS = 10
LENGTH_PERCENTILES = (10, 25, 50, 75, 90, 99)
BUCKET_ORDER = ("head", "middle", "tail", "all")
REPORT_TEMPLATE = "report.html.j2"
BUCKET_COLORS = {"head": "#2b8a3e", "middle": "#e8a33d", "tail": "#c92a2a", "all": "#868e96"}


class ReportError(Exception):
    """Bad input for the report: the message names the file or argument."""


# -- reading ---------------------------------------------------------------------------------


@dataclass
class Details:
    """What the report needs of the text itself, gathered while streaming the Parquet files."""

    chars: Counter = field(default_factory=Counter)  # (language, bucket) -> characters of raw_content
    tokens: Counter = field(default_factory=Counter)  # (language, bucket) -> whitespace tokens
    pieces: Counter = field(default_factory=Counter)  # (language, bucket) -> SentencePiece pieces
    lines_kept: Counter = field(default_factory=Counter)  # language -> nlines
    lines_original: Counter = field(default_factory=Counter)  # language -> original_nlines
    bytes_original: Counter = field(default_factory=Counter)  # language -> original_length (record bytes)
    bytes_kept: Counter = field(default_factory=Counter)  # language -> UTF-8 bytes of raw_content
    domains: dict = field(default_factory=dict)  # language -> Counter of URL hosts
    tlds: dict = field(default_factory=dict)  # language -> Counter of the hosts' last label
    samples: dict = field(default_factory=dict)  # (language, bucket) -> [(rank, url, text)]


@dataclass
class Corpus:
    """What the report is built from: stats.json, the small Parquet columns, text details."""

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
    details: Details = field(default_factory=Details)
    sentencepiece: str | None = None  # the model the pieces were counted with


def read_stats(output: Path) -> dict:
    found = find_meta(output, STATS_FILE)
    path = Path(found) if found else Path(meta_path(output, STATS_FILE))
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
    """OUTPUT/{language}/{bucket}/*.parquet, without hidden/staging dirs (pipeline/contracts.py)."""
    return part_files(output)


def _floats(values) -> list[float]:
    return [float("nan") if v is None else float(v) for v in values]


def host_of(url: str | None) -> str:
    try:
        host = (urlsplit(url or "").hostname or "").lower()
    except ValueError:
        return ""
    return host[4:] if host.startswith("www.") else host


def tld_of(host: str) -> str:
    return host.rsplit(".", 1)[-1] if "." in host else (host or "(none)")


def sample_rank(url: str | None) -> str:
    """Samples are the documents with the smallest hash of their URL: stable across runs."""
    return hashlib.sha1((url or "").encode("utf-8", "surrogatepass")).hexdigest()


def add_details(details: Details, rows: dict[str, list], samples: int, tokenizer=None) -> None:
    """Fold one row group (language, bucket and DETAIL_COLUMNS as lists) into `details`; with a
    SentencePiece `tokenizer`, count its pieces too (one batch per row group)."""
    n = len(rows["language"])
    if tokenizer is not None:
        encoded = tokenizer.encode([text or "" for text in rows["raw_content"]])
        for lang, bucket, ids in zip(rows["language"], rows["bucket"], encoded):
            details.pieces[(lang, bucket)] += len(ids)
    for i in range(n):
        lang, bucket = rows["language"][i], rows["bucket"][i]
        text = rows["raw_content"][i] or ""
        details.chars[(lang, bucket)] += len(text)
        details.tokens[(lang, bucket)] += len(text.split())
        details.lines_kept[lang] += rows["nlines"][i] or 0
        details.lines_original[lang] += rows["original_nlines"][i] or 0
        details.bytes_original[lang] += rows["original_length"][i] or 0
        details.bytes_kept[lang] += len(text.encode("utf-8", "surrogatepass"))
        host = host_of(rows["url"][i])
        details.domains.setdefault(lang, Counter())[host or "(none)"] += 1
        details.tlds.setdefault(lang, Counter())[tld_of(host)] += 1
        if samples:
            chosen = details.samples.setdefault((lang, bucket), [])
            chosen.append((sample_rank(rows["url"][i]), rows["url"][i] or "", text[:SAMPLE_CHARS + 1]))
            if len(chosen) > samples:
                chosen.sort()
                del chosen[samples:]


def _row_groups(path: Path, columns: tuple[str, ...]):
    """The file's row groups one at a time (only the `columns` it has); ReportError if unreadable."""
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
        present = [c for c in columns if c in pf.schema_arrow.names]
        for i in range(pf.num_row_groups):
            yield pf.read_row_group(i, columns=present)
    except Exception as e:  # noqa: BLE001 - pyarrow raises several types for a bad file
        raise ReportError(f"{path}: not a readable Parquet file ({type(e).__name__}: {e})") from e


def load_tokenizer(path: Path):
    """A SentencePiece model for `--sentencepiece` (e.g. `cc100 vocab`'s sentencepiece.bpe.model)."""
    import sentencepiece as spm

    if not path.is_file():
        raise ReportError(f"--sentencepiece {path}: no such file")
    try:
        return spm.SentencePieceProcessor(model_file=str(path))
    except (OSError, RuntimeError) as e:
        raise ReportError(f"--sentencepiece {path}: not a SentencePiece model ({e})") from None


def read_parquet_columns(files: list[Path], samples: int = 3, tokenizer=None) -> tuple[dict[str, list], Details]:
    """The small columns of every part (the directory names stand in for a null language or
    bucket), and the text details, read one row group at a time."""
    out: dict[str, list] = {c: [] for c in COLUMNS}
    details = Details()
    for path in files:
        lang_dir, bucket_dir = path.parent.parent.name, path.parent.name
        for table in _row_groups(path, COLUMNS + DETAIL_COLUMNS):
            n = table.num_rows
            cols = {c: table.column(c).to_pylist() for c in table.column_names}
            language = [v or lang_dir for v in cols.get("language", [None] * n)]
            bucket = [v or bucket_dir for v in cols.get("bucket", [None] * n)]
            out["language"] += language
            out["bucket"] += bucket
            out["perplexity"] += _floats(cols.get("perplexity", [None] * n))
            out["language_score"] += _floats(cols.get("language_score", [None] * n))
            out["length"] += [int(v or 0) for v in cols.get("length", [0] * n)]
            add_details(details, {"language": language, "bucket": bucket,
                                  **{c: cols.get(c, [None] * n) for c in DETAIL_COLUMNS}}, samples, tokenizer)
    for chosen in details.samples.values():
        chosen.sort()
    return out, details


def read_cutoff_file(path: Path) -> dict[str, tuple[float, float]]:
    """{lang: (head, tail)} from a cc_net cutoff CSV (pipeline.quality.buckets parses it)."""
    from pipeline.quality.buckets import head_tail, parse_cutoffs
    from pipeline.utils.tools import ModelFileError

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


def load_corpus(output: Path, samples: int = 3, sentencepiece: Path | None = None) -> Corpus:
    if not output.is_dir():
        raise ReportError(f"{output}: no such directory")
    stats = read_stats(output)
    tokenizer = load_tokenizer(sentencepiece) if sentencepiece else None
    files = parquet_files(output)
    cols, details = read_parquet_columns(files, samples, tokenizer)
    corpus = Corpus(output=output, stats=stats, files=len(files), details=details,
                    sentencepiece=str(sentencepiece) if sentencepiece else None, **cols)
    cutoff_path = find_meta(output, CUTOFFS_FILE)
    if cutoff_path:
        corpus.cutoffs, corpus.cutoffs_source = read_cutoff_file(Path(cutoff_path)), CUTOFFS_FILE
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
    value = stats.get(STATS_TOP_LINES)
    if not isinstance(value, list):
        return None
    rows = []
    for item in value:
        if isinstance(item, (list, tuple)) and len(item) == 2:
            rows.append((str(item[0]), int(item[1])))
        elif isinstance(item, dict) and "line" in item and "count" in item:
            rows.append((str(item["line"]), int(item["count"])))
    return sorted(rows, key=lambda r: (-r[1], r[0]))[:top]


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
    bucket_counters = {}  # "documents:{lang}:{bucket}" counters of pipeline/quality/buckets.py
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
        warnings.append("the funnel grows between two stages: check the FUNNEL table in pipeline/writers/report.py")
    if not rows:
        warnings.append("no document in the Parquet files")
    return warnings


def percentile(ordered: list, q: float):
    """Nearest-rank percentile of an already sorted list (None when empty)."""
    if not ordered:
        return None
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))]


def text_funnel(stats: dict) -> list[dict]:
    """Paragraph lines and characters into and after paragraph dedup (from the counters): the
    documents funnel alone hides dedup, which removes lines, rarely whole documents."""
    counters = counters_of(stats)
    rows = []
    for label, lines, chars in TEXT_FUNNEL:
        n_lines, n_chars = evaluate(lines, counters), evaluate(chars, counters)
        rows.append({"stage": label, "lines": None if n_lines is None else int(n_lines),
                     "characters": None if n_chars is None else int(n_chars)})
    return rows


def dedup_by_language(corpus: Corpus, languages: list[str]) -> list[dict]:
    """Per language, over its kept documents: paragraphs before and after dedup, and the text's
    UTF-8 bytes against the records' (`original_length` is the WARC Content-Length, in bytes:
    the difference is what dedup removed plus the title line and stripped whitespace)."""
    d = corpus.details
    rows = []
    for lang in languages:
        kept_chars = sum(v for (l, _), v in d.chars.items() if l == lang)
        original, kept = d.lines_original[lang], d.lines_kept[lang]
        rows.append({
            "language": lang, "lines_original": original, "lines_kept": kept,
            "lines_removed": max(0, original - kept),
            "lines_removed_pct": 100 * (original - kept) / original if original else None,
            "chars_kept": kept_chars,
            "bytes_original": d.bytes_original[lang], "bytes_kept": d.bytes_kept[lang],
            "bytes_removed": max(0, d.bytes_original[lang] - d.bytes_kept[lang]),
        })
    return rows


def text_by_bucket(corpus: Corpus, languages: list[str]) -> list[dict]:
    """Per language and bucket: documents, characters, whitespace tokens (and SentencePiece
    pieces when the report was given a model)."""
    docs = Counter(zip(corpus.language, corpus.bucket))
    rows = []
    for lang in languages:
        for bucket in sorted({b for l, b in docs if l == lang}, key=lambda b: (_bucket_rank(b), b)):
            rows.append({"language": lang, "bucket": bucket, "documents": docs[(lang, bucket)],
                         "characters": corpus.details.chars[(lang, bucket)],
                         "tokens": corpus.details.tokens[(lang, bucket)],
                         "pieces": corpus.details.pieces[(lang, bucket)] if corpus.details.pieces else None})
    return rows


def length_distribution(corpus: Corpus, languages: list[str]) -> list[dict]:
    """Percentiles of document length (characters) per language."""
    by: dict[str, list[int]] = {}
    for lang, n in zip(corpus.language, corpus.length):
        by.setdefault(lang, []).append(n)
    rows = []
    for lang in languages:
        ordered = sorted(by.get(lang, []))
        rows.append({"language": lang, "documents": len(ordered),
                     "percentiles": {f"p{q}": percentile(ordered, q) for q in LENGTH_PERCENTILES},
                     "mean": sum(ordered) / len(ordered) if ordered else None})
    return rows


def top_sources(corpus: Corpus, languages: list[str], top: int = TOP_DOMAINS) -> list[dict]:
    """Per language: the most frequent URL hosts and top-level domains, with document counts."""
    d = corpus.details
    return [{"language": lang,
             "domains": sorted(d.domains.get(lang, Counter()).items(), key=lambda kv: (-kv[1], kv[0]))[:top],
             "tlds": sorted(d.tlds.get(lang, Counter()).items(), key=lambda kv: (-kv[1], kv[0]))[:top],
             "distinct_domains": len(d.domains.get(lang, ()))}
            for lang in languages]


def samples(corpus: Corpus, languages: list[str]) -> list[dict]:
    """A few documents per language and bucket (smallest URL hash first), text truncated."""
    out = []
    for lang in languages:
        buckets = sorted({b for l, b in corpus.details.samples if l == lang}, key=lambda b: (_bucket_rank(b), b))
        out.append({"language": lang, "buckets": [
            {"bucket": b, "documents": [
                {"url": url, "text": text[:SAMPLE_CHARS], "truncated": len(text) > SAMPLE_CHARS}
                for _, url, text in corpus.details.samples[(lang, b)]]}
            for b in buckets]})
    return out


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


def plot_lengths(corpus: Corpus, langs: list[str]) -> bytes | None:
    """Document length (characters, log scale) per language: one box per language."""
    by = {lang: [] for lang in langs}
    for lang, n in zip(corpus.language, corpus.length):
        if lang in by and n > 0:
            by[lang].append(n)
    langs = [lang for lang in langs if by[lang]]
    if not langs:
        return None
    plt = _pyplot()
    import matplotlib

    horizontal = ({"orientation": "horizontal"} if tuple(map(int, matplotlib.__version__.split(".")[:2])) >= (3, 10)
                  else {"vert": False})
    fig, ax = plt.subplots(figsize=(9, max(2.0, 0.28 * len(langs) + 1.0)))
    ax.boxplot([by[lang] for lang in langs[::-1]], widths=0.6, **horizontal)
    ax.set_yticks(range(1, len(langs) + 1), [f"{lang} ({len(by[lang]):,})" for lang in langs[::-1]])
    from matplotlib import ticker

    ax.set_xscale("log")
    lo, hi = min(min(v) for v in by.values()), max(max(v) for v in by.values())
    if hi > lo:
        ax.xaxis.set_major_locator(ticker.FixedLocator(log_ticks(lo * 0.9, hi * 1.1)))
    ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:,.0f}"))
    ax.xaxis.set_minor_formatter(ticker.NullFormatter())
    ax.set_xlabel("characters per document (log scale)")
    ax.set_title("document length per language (box: p25-p75, line: median)")
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

def _fmt(value) -> str:
    """A number for the page: thousands separators, 2 decimals, "n/a" for None."""
    if value is None:
        return "n/a"
    if isinstance(value, float):
        if math.isnan(value):
            return "n/a"
        return f"{value:,.2f}" if not value.is_integer() else f"{int(value):,}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _data_uri(png: bytes | None) -> str | None:
    return None if png is None else "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def render_html(corpus: Corpus, numbers: dict, images: dict[str, bytes | None]) -> str:
    """index.html from templates/report.html.j2 (autoescaped: every text from the data is
    escaped by Jinja2, not by hand)."""
    from pipeline.writers.templates import environment

    env = environment(autoescape=True)
    template = env.get_template(REPORT_TEMPLATE)
    stats = corpus.stats
    counters = counters_of(stats)
    help_text = stats.get("counter_help") if isinstance(stats.get("counter_help"), dict) else {}
    config = stats.get(CONFIG_KEY)
    cutoffs = [{"language": lang, "head": None if math.isnan(h) else h, "tail": None if math.isnan(t) else t}
               for lang, (h, t) in sorted(corpus.cutoffs.items())]
    return template.render(
        output=str(corpus.output), files=corpus.files, stats=stats, numbers=numbers, n=_fmt,
        images={name: _data_uri(png) for name, png in images.items()},
        cutoffs=cutoffs, cutoffs_source=corpus.cutoffs_source,
        counters=[(name, counters[name], str(help_text.get(name, ""))) for name in sorted(counters)],
        config_json=json.dumps(config, indent=2, ensure_ascii=False) if isinstance(config, dict) else None,
        duplicate_key=STATS_TOP_LINES, meta_dir=META_DIR,
    )


# -- the command -----------------------------------------------------------------------------


def build_numbers(corpus: Corpus, top_lines: int, max_languages: int) -> dict:
    languages = per_language(corpus)
    stages = funnel(corpus.stats)
    counters = counters_of(corpus.stats)
    threshold = config_value(corpus.stats, LANG_THRESHOLD_KEYS)
    order = [r["language"] for r in languages]
    plotted = order[:max_languages]
    return {
        "output": str(corpus.output),
        "sentencepiece": corpus.sentencepiece,
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
        "text_funnel": text_funnel(corpus.stats),
        "dedup_by_language": dedup_by_language(corpus, order),
        "text_by_bucket": text_by_bucket(corpus, order),
        "length_distribution": length_distribution(corpus, order),
        "top_sources": top_sources(corpus, order),
        "samples": samples(corpus, order),
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
        "lengths.png": plot_lengths(corpus, numbers["perplexity_languages"]),
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, png in images.items():
        path = out_dir / name
        if png is None:
            path.unlink(missing_ok=True)  # a stale plot from an earlier run would mislead
        else:
            atomic_write_bytes(path, png)
    numbers["images"] = sorted(name for name, png in images.items() if png is not None)
    atomic_write_bytes(out_dir / REPORT_JSON, (json.dumps(numbers, indent=1, ensure_ascii=False) + "\n").encode())
    atomic_write_bytes(out_dir / REPORT_INDEX, render_html(corpus, numbers, images).encode("utf-8"))
    return numbers


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
    lines.append(f"  written to {out_dir / REPORT_INDEX} (+ {', '.join(numbers['images'])}, {REPORT_JSON})")
    return "\n".join(lines)


DEPRECATED_OUT = "--out"  # before `--output` (one spelling across the CLI); still accepted


@dataclass
class ReportConfig:
    output: Path = option("output", metavar="OUTPUT",
                          help=f"the corpus OUTPUT directory (with {META_DIR}/{STATS_FILE})")
    report_dir: Path | None = option(
        "--output", DEPRECATED_OUT, dest="report_dir", default=None, metavar="DIR",
        help=f"where to write the report (default: OUTPUT/{META_DIR}/{REPORT_DIR}; "
        f"{DEPRECATED_OUT} is the deprecated spelling)")
    top_lines: int = option("--top-lines", default=30, help="removed lines to list (default %(default)s)")
    max_languages: int = option(
        "--max-languages", default=24,
        help="languages with a perplexity histogram and a length box, largest first (default %(default)s)")
    sentencepiece: Path | None = option(
        "--sentencepiece", default=None, metavar="MODEL",
        help="also count SentencePiece pieces per language and bucket with this model "
        "(e.g. cc100 vocab's sentencepiece.bpe.model)")
    samples: int = option("--samples", default=3,
                          help="sample documents shown per language and bucket (default %(default)s; 0: none)")

    def __post_init__(self):
        for name, least in (("top_lines", 1), ("max_languages", 1), ("samples", 0)):
            if getattr(self, name) < least:
                raise ValueError(f"--{name.replace('_', '-')} must be at least {least}")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(
        prog="cc100 report",
        description="HTML + PNG report of a `cc100 corpus` output directory.",
        allow_abbrev=False,
    )
    add_config_flags(p, ReportConfig)
    try:
        parsed = p.parse_args(argv)
    except SystemExit as e:
        return int(e.code or 0)
    if any(a == DEPRECATED_OUT or a.startswith(DEPRECATED_OUT + "=") for a in argv):
        print(f"cc100 report: {DEPRECATED_OUT} is deprecated; use --output", file=sys.stderr)
    try:
        args = config_from_args(ReportConfig, parsed)
    except ValueError as e:
        print(f"cc100 report: {e}", file=sys.stderr)
        return 2
    out_dir = args.report_dir or Path(meta_path(args.output, REPORT_DIR))
    t0 = time.perf_counter()
    try:
        check_claimable(out_dir, REPORT_STAGE)  # only a new, empty or earlier report directory is written
        print(f"cc100 report: reading {args.output}", file=sys.stderr)
        corpus = load_corpus(args.output, args.samples, args.sentencepiece)
        print(f"cc100 report: {corpus.files} Parquet files, {len(corpus.language):,} documents; plotting",
              file=sys.stderr)
        claim(out_dir, REPORT_STAGE)
        numbers = write_report(corpus, out_dir, args.top_lines, args.max_languages)
    except OwnershipError as e:
        print(f"cc100 report: --output {e}", file=sys.stderr)
        return 2
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
