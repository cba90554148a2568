"""CCNet paragraph deduplication: pure hashing helpers and the `DedupParagraphs` transform.

Semantics (`--dedup ccnet`, the default, as cc_net's `FlatHashSet.add` + `finalize_doc`): a
paragraph (line of `raw_content`) whose hash occurs in two or more *different documents* of a
dedup group is removed from every one of them, first copy included - this strips boilerplate.
A line repeated only inside one document keeps its first copy. `--dedup keep-first` (datatrove /
dolma) keeps exactly one copy of each paragraph: the first by (segment, record, line).
Documents left without a line are dropped.

How it scales (no set of all hashes anywhere; everything goes through Beam's shuffle, in
batches, so the number of shuffled elements does not grow with the number of paragraphs):
  1. each document's lines are hashed once. Per bundle, every document's distinct hashes are
     appended to an `OCCURRENCE` array (hash, segment, record, line) per *hash shard* (hash mod
     the group's shard count), and the documents to a batch per *block* (segment, record //
     BLOCK_RECORDS); both are emitted at the end of the bundle (or when full);
  2. one `GroupByKey` per hash shard: the shard's occurrences are sorted by (hash, location);
     a run of equal hashes gives the number of documents holding the hash and its first
     location, and every occurrence that must go becomes a `LOSS` row (record, hash), emitted
     as one array per block;
  3. a `GroupByKey` per block joins its documents with their loss rows.
A worker holds one hash shard's occurrences (24 bytes each, no text) or one block's documents.
Each shuffle is counted on both sides (dedup_documents_in / _occurrences_out / _occurrences_in /
_loss_rows_out / _loss_rows_applied), and pipeline/utils/conservation.py fails a run where they differ.
Documents cross the shuffle as bytes (`documents_to_bytes`: pickled once per batch). An earlier
version shuffled one element per (document, distinct paragraph), one per loss and one per
document: Beam's per-element cost was the largest item of the job's profile (docs/benchmarks.md).
"""

from __future__ import annotations

import pickle
from collections import defaultdict
from collections.abc import Iterator, Sequence

import apache_beam as beam
import numpy as np
from apache_beam.metrics import Metrics
from apache_beam.transforms.window import GlobalWindows

from pipeline.writers.parquet import write_json
from pipeline.normalize import paragraph_hash
from pipeline.schema import Document, documents_from_bytes, documents_to_bytes

NAMESPACE = "cc100"
DEDUP_MODES = ("ccnet", "keep-first")

# One distinct paragraph of one document: its hash and where its first copy is.
OCCURRENCE = np.dtype([("hash", "<u8"), ("segment", "<i4"), ("record", "<i8"), ("line", "<i4")])
# A duplicated paragraph's first occurrence and the number of documents holding it.
OCCURRENCE_COUNT = np.dtype(OCCURRENCE.descr + [("documents", "<i8")])
# A paragraph a document must drop (the block key gives the segment).
LOSS = np.dtype([("record", "<i8"), ("hash", "<u8")])
DOCS, LOSSES = 0, 1  # what a value of the join carries: a batch of documents, or a LOSS array
BLOCK_RECORDS = 250  # records of one segment joined with their losses together
MIN_HASH_SHARDS = 8  # per dedup group: parallelism of the hash stage on small runs
MAX_HASH_SHARDS = 16384  # per dedup group: a shard then holds ~1/16384 of the group's hashes
FLUSH_OCCURRENCES = 1 << 20  # buffered occurrences (24 MB) that make a bundle emit early
FLUSH_CHARS = 64 << 20  # buffered document text that makes a bundle emit early

# -- pure helpers -----------------------------------------------------------------------------


def line_hashes(raw_content: str) -> list[int]:
    """cc_net's hash (uint64) of every line of `raw_content`, in order."""
    return [paragraph_hash(line) for line in raw_content.split("\n")]


def first_occurrences(hashes: Sequence[int]) -> dict[int, int]:
    """Each distinct hash of one document -> index of its first line."""
    first: dict[int, int] = {}
    for i, h in enumerate(hashes):
        first.setdefault(h, i)
    return first


def kept_line_ids(hashes: Sequence[int], removed: set[int] | frozenset[int]) -> list[int]:
    """Lines that survive: hash not removed and not already seen in this document (cc_net)."""
    seen: set[int] = set()
    kept = []
    for i, h in enumerate(hashes):
        if h not in removed and h not in seen:
            kept.append(i)
        seen.add(h)
    return kept


def apply_kept_lines(doc: Document, line_ids: list[int]) -> Document | None:
    """The document reduced to `line_ids` (cc_net's `finalize_doc`); None when nothing is left.

    `original_*` and `line_ids` keep referring to the text as read, even if deduplicated twice.
    """
    if not line_ids:
        return None
    lines = doc.raw_content.split("\n")
    content = "\n".join(lines[i] for i in line_ids)
    previous = doc.line_ids or range(len(lines))
    return doc.replace(
        raw_content=content,
        length=len(content),
        nlines=len(line_ids),
        original_nlines=doc.original_nlines or len(lines),
        original_length=doc.original_length or doc.length,
        line_ids=[previous[i] for i in line_ids],
    )


def judge_occurrences(occurrences: np.ndarray, mode: str) -> tuple[np.ndarray, np.ndarray]:
    """The verdict on every hash of `occurrences` (an OCCURRENCE array, at most one row per
    document and hash; all hashes of one dedup group).

    Returns (losses, duplicated): `losses` are the rows (OCCURRENCE) of documents that must drop
    their paragraph - every holder of a hash held by >= 2 documents (ccnet), or every holder
    but the first by (segment, record, line) (keep-first); `duplicated` has one row per such
    hash: its first occurrence, with `documents` = how many documents hold it.
    """
    if mode not in DEDUP_MODES:
        raise ValueError(f"dedup mode must be one of {DEDUP_MODES}, got {mode!r}")
    occ = occurrences[np.lexsort((occurrences["line"], occurrences["record"],
                                  occurrences["segment"], occurrences["hash"]))]
    h = occ["hash"]
    is_first = np.ones(len(occ), dtype=bool)
    is_first[1:] = h[1:] != h[:-1]
    starts = np.flatnonzero(is_first)
    counts = np.diff(np.append(starts, len(occ)))
    shared = np.repeat(counts >= 2, counts)  # the row's hash is held by >= 2 documents
    lose = shared & ~is_first if mode == "keep-first" else shared
    duplicated = np.empty(int((counts >= 2).sum()), dtype=OCCURRENCE_COUNT)
    firsts = occ[starts[counts >= 2]]
    for name in OCCURRENCE.names:
        duplicated[name] = firsts[name]
    duplicated["documents"] = counts[counts >= 2]
    return occ[lose], duplicated


def top_duplicated(duplicated: np.ndarray, k: int) -> list[tuple[int, int, tuple[int, int, int]]]:
    """The `k` most duplicated hashes as (documents, hash, first location (segment, record,
    line)): more documents first, ties by smaller hash (a fixed order)."""
    if k <= 0 or not len(duplicated):
        return []
    order = np.lexsort((duplicated["hash"], -duplicated["documents"]))[:k]
    return [(int(r["documents"]), int(r["hash"]), (int(r["segment"]), int(r["record"]), int(r["line"])))
            for r in duplicated[order]]


def split_by_key(rows: np.ndarray, *keys: np.ndarray) -> Iterator[tuple[tuple[int, ...], np.ndarray]]:
    """`rows` grouped by equal values of the integer arrays `keys` (aligned with the rows):
    (key values, rows) per distinct key, in key order; the rows keep their order within a key."""
    order = np.lexsort(keys[::-1])
    rows, keys = rows[order], [key[order] for key in keys]
    changed = np.zeros(len(rows), dtype=bool)
    changed[:1] = True
    for key in keys:
        changed[1:] |= key[1:] != key[:-1]
    starts = np.flatnonzero(changed)
    for start, part in zip(starts, np.split(rows, starts[1:])):
        yield tuple(int(key[start]) for key in keys), part


def hash_shards(segments_in_group: int) -> int:
    """Hash shards of a dedup group: one per segment, within [MIN_HASH_SHARDS, MAX_HASH_SHARDS]
    (a Common Crawl segment holds ~1.5M distinct (document, paragraph) pairs: ~36 MB)."""
    return min(MAX_HASH_SHARDS, max(MIN_HASH_SHARDS, segments_in_group))


# -- Beam wiring --------------------------------------------------------------------------------


class _Segments:
    """Segment name -> index and dedup group; the list is the sorted input file list."""

    def __init__(self, segments: Sequence[str], group_size: int | None):
        self.index = {s: i for i, s in enumerate(segments)}
        self.group_size = group_size

    def segment_of(self, doc: Document) -> int:
        try:
            return self.index[doc.cc_segment]
        except KeyError:
            raise ValueError(
                f"document from segment {doc.cc_segment!r}, which is not in the segment list "
                "given to DedupParagraphs"
            ) from None

    def group(self, segment: int) -> int:
        return segment // self.group_size if self.group_size else 0

    def shards(self, group: int) -> int:
        """Hash shards of a dedup group (from the number of segments in it)."""
        n = len(self.index)
        return hash_shards(min(self.group_size, n - group * self.group_size) if self.group_size else n)


def _in_global_window(value):
    return GlobalWindows.windowed_value_at_end_of_window(value)


class _HashParagraphsFn(beam.DoFn):
    """Documents -> (block, (DOCS, the block's documents and line hashes, as bytes)); each
    document's distinct hashes go to OCCURRENCE arrays keyed by (group, hash shard), a tagged
    output. Both are buffered for the bundle and emitted at its end (or when full)."""

    OCCURRENCES = "occurrences"

    def __init__(self, segments: _Segments):
        self.segments = segments
        self.docs_in = Metrics.counter(NAMESPACE, "dedup_documents_in")
        self.occurrences_out = Metrics.counter(NAMESPACE, "dedup_occurrences_out")

    def start_bundle(self):
        self.blocks: dict[tuple[int, int], list] = defaultdict(list)
        self.occurrences: dict[int, list[tuple[int, int, int, int]]] = defaultdict(list)
        self.n_occurrences = self.chars = 0

    def process(self, doc: Document):
        self.docs_in.inc()
        segment = self.segments.segment_of(doc)
        hashes = line_hashes(doc.raw_content)
        self.blocks[(segment, doc.record_offset // BLOCK_RECORDS)].append((doc, hashes))
        first = first_occurrences(hashes)
        self.occurrences[self.segments.group(segment)].extend(
            (h, segment, doc.record_offset, line) for h, line in first.items())
        self.n_occurrences += len(first)
        self.chars += doc.length
        if self.n_occurrences >= FLUSH_OCCURRENCES or self.chars >= FLUSH_CHARS:
            yield from self._flush(lambda value: value)

    def finish_bundle(self):
        yield from self._flush(_in_global_window)

    def _flush(self, wrap):
        for block, batch in self.blocks.items():
            docs, hashes = zip(*batch)
            value = (documents_to_bytes(docs), pickle.dumps(hashes, protocol=pickle.HIGHEST_PROTOCOL))
            yield wrap((block, (DOCS, value)))
        for group, rows in self.occurrences.items():
            occ = np.array(rows, dtype=OCCURRENCE)
            self.occurrences_out.inc(len(occ))
            for (shard,), part in split_by_key(occ, occ["hash"] % np.uint64(self.segments.shards(group))):
                yield beam.pvalue.TaggedOutput(self.OCCURRENCES, wrap(((group, shard), part)))
        self.start_bundle()


class _JudgeShardFn(beam.DoFn):
    """One hash shard's occurrences -> LOSS arrays keyed by block; its `top` most duplicated
    hashes (documents, hash, first location) as a tagged output, for the report."""

    DUPLICATED = "duplicated"

    def __init__(self, mode: str, top: int):
        self.mode = mode
        self.top = top
        self.duplicated = Metrics.counter(NAMESPACE, "duplicated_paragraph_hashes")
        self.occurrences_in = Metrics.counter(NAMESPACE, "dedup_occurrences_in")
        self.losses_out = Metrics.counter(NAMESPACE, "dedup_loss_rows_out")

    def process(self, element):
        _, parts = element
        occurrences = np.concatenate(list(parts))
        self.occurrences_in.inc(len(occurrences))
        losses, duplicated = judge_occurrences(occurrences, self.mode)
        self.duplicated.inc(len(duplicated))
        self.losses_out.inc(len(losses))
        for item in top_duplicated(duplicated, self.top):
            yield beam.pvalue.TaggedOutput(self.DUPLICATED, item)
        for block, part in split_by_key(losses, losses["segment"], losses["record"] // BLOCK_RECORDS):
            out = np.empty(len(part), dtype=LOSS)
            out["record"], out["hash"] = part["record"], part["hash"]
            yield block, (LOSSES, out)


class _DropLinesFn(beam.DoFn):
    """One block: its documents and loss rows -> deduplicated documents; counts lines and drops.
    The text of the top duplicated paragraphs whose first copy is in the block goes to a tagged
    output."""

    TOP_TEXT = "top_text"

    def __init__(self):
        self.lines_in = Metrics.counter(NAMESPACE, "lines_in")
        self.lines_removed = Metrics.counter(NAMESPACE, "duplicate_lines_removed")
        self.chars_in = Metrics.counter(NAMESPACE, "chars_in")
        self.chars_kept = Metrics.counter(NAMESPACE, "chars_after_dedup")
        self.emptied = Metrics.counter(NAMESPACE, "documents_emptied")
        self.docs_out = Metrics.counter(NAMESPACE, "documents_after_dedup")
        self.losses_in = Metrics.counter(NAMESPACE, "dedup_loss_rows_applied")

    def process(self, element, top=()):
        (segment, _), values = element
        batches, lost = [], defaultdict(set)
        for kind, value in values:
            if kind == DOCS:
                docs, hashes = value
                batches.append(zip(documents_from_bytes(docs), pickle.loads(hashes)))
                continue
            self.losses_in.inc(len(value))
            for record, h in zip(value["record"].tolist(), value["hash"].tolist()):
                lost[record].add(h)
        top_here = {(loc[1], loc[2]): (n_docs, h) for n_docs, h, loc in top if loc[0] == segment}
        for batch in batches:
            for doc, hashes in batch:
                for (record, line), (n_docs, h) in top_here.items():
                    if record == doc.record_offset:
                        text = doc.raw_content.split("\n")[line]
                        yield beam.pvalue.TaggedOutput(
                            self.TOP_TEXT, {"line": text, "documents": n_docs, "hash": h})
                kept = kept_line_ids(hashes, lost.get(doc.record_offset, ()))
                self.lines_in.inc(len(hashes))
                self.lines_removed.inc(len(hashes) - len(kept))
                self.chars_in.inc(doc.length)
                out = apply_kept_lines(doc, kept)
                if out is None:
                    self.emptied.inc()
                    continue
                self.chars_kept.inc(out.length)
                self.docs_out.inc()
                yield out


def _write_top_lines(rows: list[dict], path: str) -> None:
    rows = sorted(rows, key=lambda r: (-r["documents"], r["hash"]))
    write_json(path, [[r["line"], r["documents"]] for r in rows])


class DedupParagraphs(beam.PTransform):
    """Documents -> documents without duplicated paragraphs (see the module docstring).

    `segments` is the sorted list of all input segments (WET files): it fixes the order used by
    keep-first and the dedup groups (`group_size` consecutive segments; None = one group).
    With `top_lines_path`, the `top_lines` most duplicated paragraphs (the boilerplate removed)
    are written there as JSON `[[line, documents], ...]`, most frequent first.
    """

    def __init__(self, segments: Sequence[str], mode: str = "ccnet", group_size: int | None = None,
                 top_lines_path: str | None = None, top_lines: int = 30):
        super().__init__()
        self.top_lines_path = top_lines_path
        self.top_lines = top_lines if top_lines_path else 0
        if mode not in DEDUP_MODES:
            raise ValueError(f"dedup mode must be one of {DEDUP_MODES}, got {mode!r}")
        if group_size is not None and group_size < 1:
            raise ValueError(f"dedup group_size must be >= 1, got {group_size}")
        self.segments = _Segments(list(segments), group_size)
        self.mode = mode

    def expand(self, docs):
        hashed = docs | "HashParagraphs" >> beam.ParDo(_HashParagraphsFn(self.segments)).with_outputs(
            _HashParagraphsFn.OCCURRENCES, main="blocks")
        judged = (
            hashed[_HashParagraphsFn.OCCURRENCES]
            | "GroupOccurrencesByShard" >> beam.GroupByKey()
            | "JudgeHashes" >> beam.ParDo(_JudgeShardFn(self.mode, self.top_lines)).with_outputs(
                _JudgeShardFn.DUPLICATED, main="losses")
        )
        top = []
        if self.top_lines_path:
            top = beam.pvalue.AsSingleton(
                judged[_JudgeShardFn.DUPLICATED]
                | "TopDuplicated" >> beam.combiners.Top.Of(self.top_lines, key=lambda t: (t[0], -t[1])))
        # A block's documents meet its losses in one GroupByKey: both outputs are already
        # (block, (kind, value)), so a Flatten does what CoGroupByKey would do with an extra
        # tagging pass over every element.
        deduped = (
            (hashed.blocks, judged.losses)
            | "BlocksAndLosses" >> beam.Flatten()
            | "JoinBlocksWithLosses" >> beam.GroupByKey()
            | "DropDuplicateLines" >> beam.ParDo(_DropLinesFn(), top).with_outputs(
                _DropLinesFn.TOP_TEXT, main="docs")
        )
        if self.top_lines_path:
            _ = (
                deduped[_DropLinesFn.TOP_TEXT]
                | "CollectTopLines" >> beam.combiners.ToList()
                | "WriteTopLines" >> beam.Map(_write_top_lines, self.top_lines_path)
            )
        return deduped.docs
