"""head / middle / tail buckets from per-language perplexity percentiles (cc_net's buckets).

A document is `head` when its perplexity is below the language's 30th percentile, `middle` below
the 60th, `tail` otherwise; `all` when its language has no cutoffs or it has no perplexity.

Cutoffs come from a cc_net-format table (CSV: first column the percentile 0..99, one column of
perplexities per language; cc_net's own is data/cutoff.csv) or are computed from the data in the
same job. The quantile pass is Beam's `ApproximateQuantiles.PerKey` (101 quantiles per
language): it keeps a bounded buffer per key (a few thousand values, whatever the data size), is
exact while a language has fewer documents than the buffer and within 1% of rank beyond.
The table is written back in the same format, so a later run can reuse it with --cutoffs.
"""

from __future__ import annotations

import csv
import io
import math
import uuid
from typing import Mapping

import apache_beam as beam
from apache_beam.metrics import Metrics

from pipeline.schema import Document
from pipeline.utils.tools import ModelFileError, require_file

METRICS_NAMESPACE = "cc100"
PERCENTILE_HEAD = 30  # cc_net's PerplexityBucket(percentile_head=30)
PERCENTILE_TAIL = 60  # cc_net's PerplexityBucket(percentile_tail=60)
PERCENTILES = range(100)  # rows of a cutoff table
BUCKETS = ("head", "middle", "tail")
NO_BUCKET = "all"

# Counters of the language stages ("cc100" namespace), for stats.json's counter_help.
# Dynamic ones: "documents:{language}:{bucket}", "perplexity_no_model:{language}".
LANGUAGE_COUNTER_HELP = {
    "lid_documents_in": "documents entering language identification",
    "lid_dropped_empty": "documents with no text to identify, dropped",
    "lid_dropped_bad_label": "documents whose predicted label is not a language code (a custom "
                             "LID model's label such as '..'), dropped: never used as a path",
    "lid_dropped_threshold": "documents whose top language score is below --lang-threshold, dropped",
    "lid_dropped_language_filter": "documents in a language not listed in --langs, dropped",
    "lid_documents_out": "documents leaving language identification",
    "perplexity_scored": "documents given a perplexity",
    "perplexity_no_model": "documents in a language without a model in --lm-dir (bucket all)",
    "perplexity_empty_text": "documents with nothing left to score after normalisation (bucket all)",
}

# {language: {percentile: perplexity}}
CutoffTable = dict[str, dict[int, float]]


# -- the table -----------------------------------------------------------------------------


def parse_cutoffs(text: str, source: str = "<cutoffs>") -> CutoffTable:
    """Parse a cc_net cutoff CSV; ModelFileError naming `source` and the line when malformed."""
    rows = list(csv.reader(io.StringIO(text)))
    rows = [row for row in rows if any(cell.strip() for cell in row)]
    if not rows:
        raise ModelFileError(f"{source}: empty cutoff table")
    langs = [cell.strip() for cell in rows[0][1:]]
    if len(set(langs)) != len(langs) or any(not lang for lang in langs):
        raise ModelFileError(
            f"{source}: line 1: header needs distinct language names, got {rows[0]}"
        )
    table: CutoffTable = {lang: {} for lang in langs}
    for lineno, row in enumerate(rows[1:], start=2):
        if len(row) != len(langs) + 1:
            raise ModelFileError(
                f"{source}: line {lineno}: {len(row)} columns, expected {len(langs) + 1}"
            )
        try:
            percentile = float(row[0])
        except ValueError:
            percentile = math.nan
        if not percentile.is_integer() or not 0 <= percentile <= 100:
            raise ModelFileError(
                f"{source}: line {lineno}: first column must be a percentile 0..99, got {row[0]!r}"
            )
        for lang, cell in zip(langs, row[1:]):
            if not cell.strip():
                continue  # pandas writes NaN as empty: that language lacks this percentile
            try:
                value = float(cell)
            except ValueError:
                value = math.nan
            if math.isnan(value):
                if cell.strip().lower() == "nan":
                    continue
                raise ModelFileError(
                    f"{source}: line {lineno}, column {lang!r}: not a number: {cell!r}"
                )
            table[lang][int(percentile)] = value
    for lang, values in table.items():
        ordered = [values[p] for p in sorted(values)]
        if any(b < a for a, b in zip(ordered, ordered[1:])):
            raise ModelFileError(f"{source}: column {lang!r}: percentiles are not increasing")
    return table


def read_cutoffs(path: str) -> CutoffTable:
    """Read a cutoff table from any Beam filesystem."""
    from apache_beam.io.filesystem import CompressionTypes
    from apache_beam.io.filesystems import FileSystems

    require_file(path, "perplexity cutoff table")
    try:
        with FileSystems.open(path, compression_type=CompressionTypes.AUTO) as f:
            text = f.read().decode("utf-8")
    except Exception as e:
        raise ModelFileError(f"{path}: cannot read cutoff table ({e})") from e
    return parse_cutoffs(text, path)


def require_percentiles(table: CutoffTable, source: str, head: int = PERCENTILE_HEAD,
                        tail: int = PERCENTILE_TAIL) -> None:
    """ModelFileError unless the table (given with --cutoffs) can bucket something: at least one
    language, each with the head and tail percentiles. (A run without models writes a table with
    no language; it reads back fine, but as --cutoffs it would silently bucket nothing.)"""
    if not table:
        raise ModelFileError(
            f"{source}: not a cutoff table: line 1 names no language column (cc_net's format: "
            "',en,fr,...' then one row per percentile 0-99)"
        )
    missing = [lang for lang, v in table.items() if head not in v or tail not in v]
    if missing:
        raise ModelFileError(f"{source}: percentiles {head} and {tail} missing for {', '.join(missing)}")


def _format_number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def format_cutoffs(table: Mapping[str, Mapping[int, float]]) -> str:
    """The cc_net CSV: header ",lang1,lang2", then one row per percentile."""
    langs = sorted(table)
    percentiles = sorted({p for values in table.values() for p in values}) or list(PERCENTILES)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([""] + langs)
    for p in percentiles:
        cells = [_format_number(table[lang][p]) if p in table[lang] else "" for lang in langs]
        writer.writerow([p] + cells)
    return out.getvalue()


def write_cutoffs(table: Mapping[str, Mapping[int, float]], path: str) -> None:
    """Write the table atomically (temp name, then rename) on any Beam filesystem."""
    from apache_beam.io.filesystems import FileSystems

    tmp = f"{path}.tmp-{uuid.uuid4().hex[:8]}"
    with FileSystems.create(tmp) as f:
        f.write(format_cutoffs(table).encode("utf-8"))
    FileSystems.rename([tmp], [path])  # os.rename locally: replaces an older table atomically


def head_tail(
    table: Mapping[str, Mapping[int, float]],
    head: int = PERCENTILE_HEAD,
    tail: int = PERCENTILE_TAIL,
) -> dict[str, tuple[float, float]]:
    """{lang: (head cutoff, tail cutoff)} for the languages that have both percentiles."""
    return {
        lang: (values[head], values[tail])
        for lang, values in table.items()
        if head in values and tail in values
    }


def bucket_of(
    perplexity: float | None, language: str | None, cutoffs: Mapping[str, tuple[float, float]]
) -> str:
    """cc_net's PerplexityBucket.get_bucket."""
    if perplexity is None or perplexity < 0 or language not in cutoffs:
        return NO_BUCKET
    pp_head, pp_tail = cutoffs[language]
    if perplexity < pp_head:
        return "head"
    if perplexity < pp_tail:
        return "middle"
    return "tail"


def percentiles_from_quantiles(quantiles: list[float]) -> dict[int, float]:
    """ApproximateQuantiles' 101 values (min, 1%, ..., max) -> the table's rows 0..99."""
    if len(quantiles) != 101:
        raise ValueError(f"expected 101 quantiles, got {len(quantiles)}")
    return {p: float(quantiles[p]) for p in PERCENTILES}


# -- Beam ----------------------------------------------------------------------------------


class ComputeCutoffs(beam.PTransform):
    """Documents -> (language, {percentile: perplexity}) for every language with perplexities."""

    def expand(self, docs):
        from apache_beam.transforms.stats import ApproximateQuantiles

        return (
            docs
            | "Scored" >> beam.Filter(lambda d: d.perplexity is not None and d.language)
            | "KeyByLanguage" >> beam.Map(lambda d: (d.language, float(d.perplexity)))
            | "Quantiles" >> ApproximateQuantiles.PerKey(101)
            | "Percentiles" >> beam.MapTuple(lambda lang, q: (lang, percentiles_from_quantiles(q)))
        )


class WriteCutoffs(beam.PTransform):
    """(language, percentiles) pairs -> one cc_net-format CSV at `path` (written atomically)."""

    def __init__(self, path: str, label: str | None = None):
        super().__init__(label)
        self.path = path

    def expand(self, cutoffs):
        path = self.path
        return (
            cutoffs
            | "Gather" >> beam.combiners.ToList()
            | "Write" >> beam.Map(lambda pairs: write_cutoffs(dict(pairs), path) or path)
        )


def _assign(doc: Document, cutoffs: Mapping[str, tuple[float, float]]) -> Document:
    bucket = bucket_of(doc.perplexity, doc.language, cutoffs)
    Metrics.counter(METRICS_NAMESPACE, f"documents:{doc.language}:{bucket}").inc()
    return doc.replace(bucket=bucket)


class AssignBuckets(beam.PTransform):
    """Documents with perplexity -> documents with `bucket` (head | middle | tail | all).

    cutoffs: a cc_net-format table (--cutoffs FILE, read and checked here, before the job runs);
    None computes the percentiles per language from the documents themselves. When
    cutoffs_output is given the table used is written there (same format). Counters:
    "documents:{language}:{bucket}" for every document.
    """

    def __init__(
        self,
        cutoffs: str | None = None,
        cutoffs_output: str | None = None,
        head: int = PERCENTILE_HEAD,
        tail: int = PERCENTILE_TAIL,
        label: str | None = None,
    ):
        super().__init__(label)
        if not 0 <= head <= tail <= 99:
            raise ValueError(
                f"head/tail percentiles must satisfy 0 <= head <= tail <= 99, got {head}, {tail}"
            )
        self.cutoffs_path = cutoffs
        self.cutoffs_output = cutoffs_output
        self.head, self.tail = head, tail
        self.table = read_cutoffs(cutoffs) if cutoffs else None
        if self.table is not None:
            require_percentiles(self.table, cutoffs, head, tail)

    def expand(self, docs):
        head, tail = self.head, self.tail
        if self.table is not None:
            limits = head_tail(self.table, head, tail)
            bucketed = docs | "Bucket" >> beam.Map(_assign, cutoffs=limits)
            table_pairs = docs.pipeline | "UsedCutoffs" >> beam.Create(sorted(self.table.items()))
        else:
            table_pairs = docs | "ComputeCutoffs" >> ComputeCutoffs()
            limits = table_pairs | "HeadTail" >> beam.MapTuple(
                lambda lang, values: (lang, (values[head], values[tail]))
            )
            bucketed = docs | "Bucket" >> beam.Map(_assign, cutoffs=beam.pvalue.AsDict(limits))
        if self.cutoffs_output:
            _ = table_pairs | "WriteCutoffs" >> WriteCutoffs(self.cutoffs_output)
        return bucketed


# -- statistics ----------------------------------------------------------------------------


def summarize_counters(counters: Mapping[str, int]) -> dict:
    """The language part of stats.json, from the "cc100" counters of LID, perplexity, buckets."""
    by_language: dict[str, dict[str, int]] = {}
    no_model: dict[str, int] = {}
    for name, value in counters.items():
        if name.startswith("documents:"):
            lang, bucket = name[len("documents:") :].rsplit(":", 1)
            by_language.setdefault(lang, {})[bucket] = int(value)
        elif name.startswith("perplexity_no_model:"):
            no_model[name[len("perplexity_no_model:") :]] = int(value)
    for buckets in by_language.values():
        buckets["total"] = sum(buckets.values())
    by_bucket: dict[str, int] = {}
    for buckets in by_language.values():
        for bucket, n in buckets.items():
            if bucket != "total":
                by_bucket[bucket] = by_bucket.get(bucket, 0) + n
    return {
        "documents_by_language": dict(sorted(by_language.items())),
        "documents_by_bucket": dict(sorted(by_bucket.items())),
        "lid_documents_in": int(counters.get("lid_documents_in", 0)),
        "dropped_lang_empty": int(counters.get("lid_dropped_empty", 0)),
        "dropped_lang_threshold": int(counters.get("lid_dropped_threshold", 0)),
        "dropped_language_filter": int(counters.get("lid_dropped_language_filter", 0)),
        "dropped_bad_label": int(counters.get("lid_dropped_bad_label", 0)),
        "perplexity_scored": int(counters.get("perplexity_scored", 0)),
        "documents_without_model": int(counters.get("perplexity_no_model", 0)),
        "documents_without_model_by_language": dict(sorted(no_model.items())),
    }


def format_language_table(summary: Mapping) -> str:
    """The printed per-language table: documents per bucket, most documents first."""
    by_language = summary.get("documents_by_language", {})
    columns = [*BUCKETS, NO_BUCKET, "total"]
    lines = [f"{'language':<10}" + "".join(f"{c:>9}" for c in columns)]
    ordered = sorted(by_language.items(), key=lambda kv: (-kv[1].get("total", 0), kv[0]))
    for lang, buckets in ordered:
        lines.append(f"{lang:<10}" + "".join(f"{buckets.get(c, 0):>9}" for c in columns))
    lines.append(
        f"dropped: {summary.get('dropped_lang_threshold', 0)} below the LID threshold, "
        f"{summary.get('dropped_language_filter', 0)} by --langs, "
        f"{summary.get('dropped_lang_empty', 0)} empty, "
        f"{summary.get('dropped_bad_label', 0)} with a label that is not a language code; "
        f"{summary.get('documents_without_model', 0)} documents without a language model "
        "(bucket all)"
    )
    return "\n".join(lines)
