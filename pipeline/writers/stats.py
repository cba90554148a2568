"""The run's accounting: Beam counters -> stats.json and the summary printed at the end.

Every counter lives in the "cc100" namespace; stats.json keeps all of them (including those a
later stage adds), and the summary explains the ones this stage knows, grouped as
what went in / what was dropped and why / what came out.
"""

from __future__ import annotations

import json
from collections import defaultdict

from pipeline.quality.buckets import LANGUAGE_COUNTER_HELP
from pipeline.contracts import STATS_TOP_LINES

NAMESPACE = "cc100"
MAX_LISTED_PROBLEM_FILES = 20
MAX_LISTED_PARTITIONS = 20

# Counters of this stage, with their meaning (documented in stats.json under "counter_help").
COUNTER_HELP = {
    "files_read": "input files processed",
    "files_failed": "input files that could not be opened or read",
    "files_truncated": "gzip inputs that end inside a gzip member (records before the cut kept)",
    "files_empty": "input files with no WARC record",
    "files_without_conversion_records": "input files with records but no WET conversion record",
    "records_read": "WARC records read (all types)",
    "conversion_records": "WET conversion records (one per page)",
    "non_conversion_records": "records of other types (warcinfo, response, ...), skipped",
    "bad_wet_record": "records or byte ranges skipped as malformed (sum of bad_wet_record_*)",
    "bad_wet_record_garbage": "ranges of bytes between records (or gzip members) that are not one",
    "bad_wet_record_corrupt_gzip": "gzip members that fail to decompress (bad data or checksum): "
                                   "their record is lost, reading resumes at the next member",
    "bad_wet_record_bad_header": "records whose header block is not WARC headers",
    "bad_wet_record_truncated_record": "records cut off by the end of the input",
    "bad_wet_record_record_too_large": "records whose body is larger than --max-record-bytes",
    "bad_wet_record_missing_url": "conversion records without WARC-Target-URI",
    "garbage_bytes_skipped": "bytes skipped between records",
    "content_length_mismatch": "records whose Content-Length was wrong, re-delimited and kept",
    "invalid_utf8_records": "records with invalid UTF-8, decoded with U+FFFD and kept",
    "docs_too_short": "documents shorter than --min-len, dropped",
    "documents_read": "documents entering deduplication",
    "lines_in": "paragraphs (lines) entering deduplication",
    "duplicate_lines_removed": "paragraphs removed as duplicates",
    "duplicated_paragraph_hashes": "distinct paragraphs found in two or more documents",
    "chars_in": "characters of raw_content entering deduplication",
    "chars_after_dedup": "characters of raw_content after deduplication",
    "documents_emptied": "documents left without any line by deduplication, dropped",
    "documents_after_dedup": "documents leaving deduplication",
    "documents_out": "documents written to Parquet",
    "parquet_files_written": "Parquet files written",
    "date_download_unparsed": "documents whose WARC-Date could not be parsed (date_download is null)",
    "segments_parsed": "segments (WET files) parsed in this run",
    "segments_from_spool": "segments read back from the work dir's spools (finished by an earlier run)",
    "segments_spooled": "segments whose documents were written to a spool in this run",
    "segments_downloaded": "snapshot segments downloaded in this run",
    "segments_failed": "segments that failed for good: download, or a read that broke off (see failed_segments)",
    "dedup_documents_in": "documents entering deduplication (checked: = documents_read)",
    "dedup_occurrences_out": "(document, distinct paragraph) rows sent to the hash shards",
    "dedup_occurrences_in": "(document, distinct paragraph) rows the hash shards received",
    "dedup_loss_rows_out": "(document, paragraph) removals the hash shards sent to the documents",
    "dedup_loss_rows_applied": "(document, paragraph) removals that reached their documents",
    "spools_unreadable": "spools that could not be read back; their segments were processed again",
    "download_retries": "failed download attempts that were retried (429, 5xx, resets, truncation)",
    "download_bytes": "bytes of the WET files downloaded in this run",
    "downloads_resumed": "downloads that continued a broken transfer with an HTTP Range request",
    "near_dup_docs_in": "documents entering near-duplicate removal (--near-dedup)",
    "near_dup_docs_without_shingles": "documents with no word or character to shingle, kept unchecked",
    "near_dup_buckets_shared": "LSH band buckets holding two or more documents",
    "near_dup_candidates": "distinct candidate pairs (document, smaller anchor) from shared buckets",
    "near_dup_pairs_verified": "candidate pairs with estimated Jaccard >= threshold",
    "near_dup_docs_removed": "documents removed: a near-duplicate with a smaller key exists",
    "documents_after_near_dedup": "documents leaving near-duplicate removal",
}
COUNTER_HELP.update(LANGUAGE_COUNTER_HELP)


def counters_from_result(result) -> dict[str, int]:
    """All committed counters of the "cc100" namespace, summed over steps."""
    from apache_beam.metrics.metric import MetricsFilter

    totals: dict[str, int] = defaultdict(int)
    query = result.metrics().query(MetricsFilter().with_namespace(NAMESPACE))
    for counter in query["counters"]:
        value = counter.committed if counter.committed is not None else counter.attempted
        totals[counter.key.metric.name] += int(value or 0)
    return dict(sorted(totals.items()))


def partitions(parts: list[dict]) -> dict[str, dict]:
    """{"language/bucket": {documents, files, bytes}} from `io.list_parts` output."""
    out: dict[str, dict] = {}
    for p in parts:
        entry = out.setdefault(f"{p['language']}/{p['bucket']}", {"documents": 0, "files": 0, "bytes": 0})
        entry["documents"] += p["documents"]
        entry["files"] += 1
        entry["bytes"] += p["bytes"]
    return dict(sorted(out.items()))


def read_file_reports(lines: list[str]) -> list[dict]:
    """files.jsonl lines -> reports sorted by path."""
    reports = [json.loads(line) for line in lines if line.strip()]
    return sorted(reports, key=lambda r: r["path"])


def _n(x: int | float) -> str:
    return f"{x:,}"


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}{'' if n == 1 else 's'}"


def _pct(part: int, whole: int) -> str:
    return f"{100.0 * part / whole:.1f}%" if whole else "0%"


def _size(n_bytes: int) -> str:
    size = float(n_bytes)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if size < 1024 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n_bytes} B"


def format_summary(stats: dict) -> str:
    """stats.json -> the readable report printed at the end of `cc100 corpus`."""
    c = defaultdict(int, stats["counters"])
    cfg = stats["config"]
    inputs = stats["inputs"]
    failed = stats.get("failed_segments") or []
    lines = [
        f"cc100 corpus: {'finished' if not failed else 'ran'} in {stats['seconds']:.1f} s "
        f"({stats['runner']}, {cfg['workers']} worker{'s' if cfg['workers'] != 1 else ''})",
        "",
        "in",
    ]
    if "snapshot" in inputs:
        lines.append(f"  segments       {_n(len(inputs['files']))} of {inputs['snapshot']} "
                     f"(--segments {inputs['segments']}) from {inputs['cc_base_url']}")
    else:
        lines.append(f"  files          {_n(c['files_read'])} read of {_n(len(inputs['files']))} matched by "
                     + ", ".join(repr(p) for p in inputs["patterns"]))
    sources = stats.get("segments") or {}
    if sources.get("spool") or sources.get("download") or sources.get("failed"):
        lines.append(
            f"  sources        {sources.get('spool', 0)} from the work dir's spools (resumed), "
            f"{sources.get('download', 0)} downloaded ({_n(c['download_retries'])} retries, "
            f"{c['downloads_resumed']} resumed with Range, {_size(c['download_bytes'])}), "
            f"{sources.get('file', 0)} read, {len(failed)} FAILED")
    lines += [
        f"  WARC records   {_n(c['records_read'])}: {_n(c['conversion_records'])} conversion, "
        f"{_n(c['non_conversion_records'])} other types (warcinfo, ...) skipped",
        "",
        "dropped / repaired",
        f"  bad records    {_n(c['bad_wet_record'])} skipped: "
        + ", ".join(
            f"{c['bad_wet_record_' + r]} {label}"
            for r, label in (
                ("garbage", "garbage ranges"),
                ("corrupt_gzip", "corrupt gzip members"),
                ("bad_header", "bad headers"),
                ("truncated_record", "truncated"),
                ("record_too_large", "too large"),
                ("missing_url", "without URL"),
            )
        ),
        f"  repaired       {_n(c['content_length_mismatch'])} wrong Content-Length, "
        f"{_n(c['invalid_utf8_records'])} invalid UTF-8 (replaced by U+FFFD); kept",
        f"  bad files      {c['files_failed']} unreadable, {c['files_truncated']} truncated gzip, "
        f"{c['files_empty']} empty, {c['files_without_conversion_records']} without conversion records",
        f"  too short      {_n(c['docs_too_short'])} documents under {cfg['min_len']} characters",
        f"  dedup          {cfg['dedup']} over {stats['dedup_groups']} group"
        f"{'s' if stats['dedup_groups'] != 1 else ''}: {_n(c['lines_in'])} lines in, "
        f"{_n(c['duplicate_lines_removed'])} duplicate lines removed "
        f"({_pct(c['duplicate_lines_removed'], c['lines_in'])}); "
        f"{_n(c['documents_emptied'])} documents emptied",
    ]
    if cfg.get("near_dedup"):
        lines.append(
            f"  near-dups      {_n(c['near_dup_docs_removed'])} of {_n(c['near_dup_docs_in'])} documents "
            f"removed (MinHash Jaccard >= {cfg['near_dedup_threshold']}; {_n(c['near_dup_candidates'])} "
            f"candidate pairs, {_n(c['near_dup_pairs_verified'])} verified)")
    top = stats.get(STATS_TOP_LINES) or []
    if top:
        shown = ", ".join(f"{line[:40]!r} x{n}" for line, n in top[:3])
        lines.append(f"  boilerplate    most removed: {shown}")
    extra = sorted(k for k in set(c) - set(COUNTER_HELP) if ":" not in k)  # not per-language ones
    if extra:  # counters of later stages (language identification, perplexity, ...)
        lines.append("  other          " + ", ".join(f"{k} {_n(c[k])}" for k in extra))
    parts = stats["partitions"]
    total_bytes = sum(p["bytes"] for p in parts.values())
    lines += [
        "",
        "out",
        f"  documents      {_n(c['documents_out'])} of {_n(c['documents_read'])} read, "
        f"in {_plural(c['parquet_files_written'], 'Parquet file')} ({_size(total_bytes)})",
    ]
    largest = sorted(parts.items(), key=lambda kv: (-kv[1]["documents"], kv[0]))
    for name, p in largest[:MAX_LISTED_PARTITIONS]:
        lines.append(f"    {name:<16} {_plural(p['documents'], 'document'):>18}  {_plural(p['files'], 'file')}  {_size(p['bytes'])}")
    if len(largest) > MAX_LISTED_PARTITIONS:
        rest = largest[MAX_LISTED_PARTITIONS:]
        lines.append(f"    ... and {len(rest)} smaller partitions ({_n(sum(p['documents'] for _, p in rest))} "
                     "documents; all in stats.json)")
    if stats.get("committed", True):
        lines.append(f"  written to     {stats['output']}  (README.md; .cc100/: stats.json, files.jsonl, cutoffs.csv)")
    else:
        lines.append(f"  NOT written    {stats['output']} (segments failed; this run's stats.json is in "
                     f"{stats['work_dir']})")
    if failed:
        lines += ["", f"FAILED segments ({len(failed)}; listed in stats.json under failed_segments):"]
        for f in failed:
            lines.append(f"  {f['segment']}: {f['reason']} (after {f['attempts']} attempts)")
    problems = stats["problem_files"]
    if problems:
        lines += ["", f"files with problems ({len(problems)}; all listed in stats.json):"]
        for r in problems[:MAX_LISTED_PROBLEM_FILES]:
            lines.append(f"  {r['path']}: {'; '.join(r['problems'])}")
        if len(problems) > MAX_LISTED_PROBLEM_FILES:
            lines.append(f"  ... and {len(problems) - MAX_LISTED_PROBLEM_FILES} more")
    if not c["documents_out"]:
        lines += ["", "warning: no document was written"]
    return "\n".join(lines)
