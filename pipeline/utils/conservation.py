"""Conservation checks: what one stage of the corpus job sends, the next one receives.

A runner that drops data between stages does not fail: the job ends, the counters of what each
side saw disagree, and nothing else tells. (It happened: issue #14, Beam's local runner lost
chunks of a stage's input under CPU load; docs/beam_data_plane_race.md.) So before the commit,
`check_conservation` compares the counters across every boundary where data leaves one stage
and enters another (shuffles and re-read PCollections), and the run fails, committing nothing,
when one disagrees:

    read segments        documents_read          = dedup_documents_in
    dedup: hash shuffle  dedup_occurrences_out   = dedup_occurrences_in
    dedup: losses        dedup_loss_rows_out     = dedup_loss_rows_applied
    dedup: join          dedup_documents_in      = documents_after_dedup + documents_emptied
    near dedup           documents_after_dedup   = near_dup_docs_in
                         near_dup_docs_in        = documents_after_near_dedup + near_dup_docs_removed
    language ID          (documents after dedup) = lid_documents_in
                         lid_documents_in        = lid_documents_out + lid_dropped_*
    perplexity           lid_documents_out       = perplexity_scored + _no_model + _empty_text
    buckets              lid_documents_out       = sum of documents:{language}:{bucket}
    writer               documents_to_write:{language}:{bucket} = Parquet rows of that partition
                         parquet_files_written   = Parquet files found
    segment reports      one files.jsonl line per segment

Counters are Beam's committed values (on Dataflow a retried bundle counts once).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from pipeline.writers.parquet import WRITE_COUNTER_PREFIX

LID_DROPS = ("lid_dropped_empty", "lid_dropped_threshold", "lid_dropped_language_filter")
PERPLEXITY_OUTCOMES = ("perplexity_scored", "perplexity_no_model", "perplexity_empty_text")
BUCKET_COUNTER_PREFIX = "documents:"  # pipeline/quality/buckets.py: documents:{language}:{bucket}


@dataclass(frozen=True)
class Imbalance:
    """One boundary where the two sides disagree."""

    stage: str
    sent: str  # what the upstream side counted, e.g. "dedup_documents_in 10000"
    received: str  # what the downstream side counted

    def line(self) -> str:
        return f"{self.stage}: {self.sent} != {self.received}"

    def to_dict(self) -> dict:
        return {"stage": self.stage, "sent": self.sent, "received": self.received}


def _sum(counters: Mapping[str, int], names: Sequence[str]) -> int:
    return sum(int(counters.get(n, 0)) for n in names)


def _side(counters: Mapping[str, int], names: Sequence[str]) -> tuple[int, str]:
    total = _sum(counters, names)
    return total, f"{' + '.join(names)} {total:,}"


def _balance(stage: str, counters: Mapping[str, int], sent: Sequence[str], received: Sequence[str]):
    (a, a_text), (b, b_text) = _side(counters, sent), _side(counters, received)
    return [] if a == b else [Imbalance(stage, a_text, b_text)]


def _prefixed(counters: Mapping[str, int], prefix: str) -> dict[str, int]:
    return {name[len(prefix):]: int(v) for name, v in counters.items() if name.startswith(prefix)}


def writer_imbalances(counters: Mapping[str, int], parts: Sequence[dict]) -> list[Imbalance]:
    """Documents that entered WriteByLanguage per {language}/{bucket} = Parquet rows found there."""
    sent = {tuple(key.rsplit(":", 1)): n for key, n in _prefixed(counters, WRITE_COUNTER_PREFIX).items()}
    rows: dict[tuple[str, str], int] = {}
    for part in parts:
        key = (part["language"], part["bucket"])
        rows[key] = rows.get(key, 0) + int(part["documents"])
    out = [Imbalance(f"WriteByLanguage {lang}/{bucket}", f"documents_to_write {sent.get((lang, bucket), 0):,}",
                     f"Parquet rows {rows.get((lang, bucket), 0):,}")
           for lang, bucket in sorted(set(sent) | set(rows)) if sent.get((lang, bucket), 0) != rows.get((lang, bucket), 0)]
    written = int(counters.get("parquet_files_written", 0))
    if written != len(parts):
        out.append(Imbalance("WriteByLanguage files", f"parquet_files_written {written:,}",
                             f"Parquet files found {len(parts):,}"))
    return out


def check_conservation(counters: Mapping[str, int], parts: Sequence[dict], segment_reports: int,
                       segments: int, near_dedup: bool) -> list[Imbalance]:
    """Every disagreement between the two sides of a stage boundary (see the module docstring).

    `parts` are the Parquet parts found in the staging directory (io.list_parts), and
    `segment_reports` the files.jsonl lines (one per segment, read or failed).
    """
    c = counters
    out = _balance("ReadSegments -> DedupParagraphs", c, ["documents_read"], ["dedup_documents_in"])
    out += _balance("DedupParagraphs hash shuffle", c, ["dedup_occurrences_out"], ["dedup_occurrences_in"])
    out += _balance("DedupParagraphs losses", c, ["dedup_loss_rows_out"], ["dedup_loss_rows_applied"])
    out += _balance("DedupParagraphs join", c, ["dedup_documents_in"],
                    ["documents_after_dedup", "documents_emptied"])
    after_dedup = "documents_after_dedup"
    if near_dedup:
        out += _balance("DedupParagraphs -> NearDedup", c, [after_dedup], ["near_dup_docs_in"])
        out += _balance("NearDedup", c, ["near_dup_docs_in"], ["documents_after_near_dedup", "near_dup_docs_removed"])
        after_dedup = "documents_after_near_dedup"
    out += _balance("-> IdentifyLanguage", c, [after_dedup], ["lid_documents_in"])
    out += _balance("IdentifyLanguage", c, ["lid_documents_in"], ["lid_documents_out", *LID_DROPS])
    out += _balance("IdentifyLanguage -> ScorePerplexity", c, ["lid_documents_out"], list(PERPLEXITY_OUTCOMES))
    bucketed = sorted(name for name in c if name.startswith(BUCKET_COUNTER_PREFIX))
    out += _balance("ScorePerplexity -> AssignBuckets", c, ["lid_documents_out"], bucketed or [f"{BUCKET_COUNTER_PREFIX}*"])
    out += writer_imbalances(c, parts)
    if segment_reports != segments:
        out.append(Imbalance("ReadSegments reports", f"segments {segments:,}", f"files.jsonl lines {segment_reports:,}"))
    return out
