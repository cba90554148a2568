"""CCNet paragraph deduplication: pure hashing helpers and the `DedupParagraphs` transform.

Semantics (`--dedup ccnet`, the default, as cc_net's `FlatHashSet.add` + `finalize_doc`): a
paragraph (line of `raw_content`) whose hash occurs in two or more *different documents* of a
dedup group is removed from every one of them, first copy included - this strips boilerplate.
A line repeated only inside one document keeps its first copy. `--dedup keep-first` (datatrove /
dolma) keeps exactly one copy of each paragraph: the first by (segment, record, line).
Documents left without a line are dropped.

How it scales (no set of all hashes anywhere):
  1. each document's lines are hashed once; the document travels on with its hash list, and
     emits one occurrence (hash -> where) per *distinct* hash it holds;
  2. one `GroupByKey` per hash gives the number of documents holding it, the first location and
     the holders; for a duplicated hash it emits (document, hash) for each document that must
     lose it - only duplicated hashes produce output;
  3. a `CoGroupByKey` joins each document with its set of lost hashes.
A worker holds one document with its lost hashes, or one hash with its occurrence list
(iterated lazily by runners that page large groups); the occurrence shuffle carries 8-byte
hashes and integer locations, not text. (An earlier version counted with a combiner and then
joined the occurrences again: two shuffles of every occurrence and every line hashed twice;
bench/bench_dedup.py measured this version at half the CPU, docs/benchmarks.md.)
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

import apache_beam as beam
from apache_beam.metrics import Metrics

from pipeline.io import write_json
from pipeline.normalize import paragraph_hash
from pipeline.schema import Document

NAMESPACE = "cc100"
DEDUP_MODES = ("ccnet", "keep-first")

# (segment index, record offset): a document's identity inside one run, small to shuffle.
DocId = tuple[int, int]
# (segment index, record offset, line index): where a paragraph first occurs in a document.
Location = tuple[int, int, int]


# -- pure helpers -----------------------------------------------------------------------------


def line_hashes(raw_content: str) -> list[int]:
    """cc_net's hash (uint64) of every line of `raw_content`, in order."""
    return [paragraph_hash(line) for line in raw_content.split("\n")]


def to_int64(h: int) -> int:
    """uint64 -> the int64 with the same bits: Beam's deterministic int coder is 64-bit signed."""
    return h - (1 << 64) if h >= 1 << 63 else h


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


def losers(mode: str, n_docs: int, first: Location, holders: Iterable[DocId]) -> Iterator[DocId]:
    """Documents that must drop a paragraph held by `n_docs` documents (`holders`).

    ccnet: all of them when n_docs >= 2. keep-first: all but the document of the first copy.
    """
    if n_docs < 2:
        return
    keep = first[:2] if mode == "keep-first" else None
    for doc_id in holders:
        if doc_id != keep:
            yield doc_id


def hash_stats(locations: Iterable[Location]) -> tuple[int, Location | None]:
    """(number of documents holding a hash, its first location) from its occurrences (one per
    document)."""
    n_docs, first = 0, None
    for loc in locations:
        n_docs += 1
        if first is None or loc < first:
            first = loc
    return n_docs, first


# -- Beam wiring --------------------------------------------------------------------------------


class _Segments:
    """Segment name -> index and dedup group; the list is the sorted input file list."""

    def __init__(self, segments: Sequence[str], group_size: int | None):
        self.index = {s: i for i, s in enumerate(segments)}
        self.group_size = group_size

    def doc_id(self, doc: Document) -> DocId:
        try:
            return (self.index[doc.cc_segment], doc.record_offset)
        except KeyError:
            raise ValueError(
                f"document from segment {doc.cc_segment!r}, which is not in the segment list "
                "given to DedupParagraphs"
            ) from None

    def group(self, doc_id: DocId) -> int:
        return doc_id[0] // self.group_size if self.group_size else 0


class _HashParagraphsFn(beam.DoFn):
    """Document -> (document id, (document, line hashes)); occurrences as a tagged output."""

    OCCURRENCES = "occurrences"

    def __init__(self, segments: _Segments):
        self.segments = segments

    def process(self, doc: Document):
        doc_id = self.segments.doc_id(doc)
        group = self.segments.group(doc_id)
        hashes = line_hashes(doc.raw_content)
        yield doc_id, (doc, hashes)
        for h, line in first_occurrences(hashes).items():
            yield beam.pvalue.TaggedOutput(
                self.OCCURRENCES, ((group, to_int64(h)), (doc_id[0], doc_id[1], line)))


class _LosersFn(beam.DoFn):
    """One hash with its occurrences -> (document, hash) for each document that must drop it;
    the duplicated hashes' (count, first location) as a tagged output (for the top lines)."""

    DUPLICATED = "duplicated"

    def __init__(self, mode: str):
        self.mode = mode
        self.duplicated = Metrics.counter(NAMESPACE, "duplicated_paragraph_hashes")

    def process(self, element):
        key, locations = element
        n_docs, first = hash_stats(locations)
        if n_docs < 2:
            return
        self.duplicated.inc()
        yield beam.pvalue.TaggedOutput(self.DUPLICATED, (key, (n_docs, first)))
        holders = ((loc[0], loc[1]) for loc in locations)
        for doc_id in losers(self.mode, n_docs, first, holders):
            yield doc_id, key[1]


class _DropLinesFn(beam.DoFn):
    """Join result (document, lost hashes) -> deduplicated document; counts lines and drops."""

    def __init__(self):
        self.lines_in = Metrics.counter(NAMESPACE, "lines_in")
        self.lines_removed = Metrics.counter(NAMESPACE, "duplicate_lines_removed")
        self.chars_in = Metrics.counter(NAMESPACE, "chars_in")
        self.chars_kept = Metrics.counter(NAMESPACE, "chars_after_dedup")
        self.emptied = Metrics.counter(NAMESPACE, "documents_emptied")
        self.docs_out = Metrics.counter(NAMESPACE, "documents_after_dedup")

    def process(self, element):
        _, joined = element
        removed = frozenset(h if h >= 0 else h + (1 << 64) for h in joined["lost"])
        for doc, hashes in joined["doc"]:
            kept = kept_line_ids(hashes, removed)
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


def _top_key(item) -> tuple[int, int]:
    """Order of the most duplicated paragraphs: more documents first, ties by hash (stable)."""
    (_, h), (n_docs, _) = item
    return (n_docs, -h)


class _TopLineTextFn(beam.DoFn):
    """For the few top hashes, emit the text of their first copy (from the document holding it)."""

    def __init__(self, segments: _Segments):
        self.segments = segments

    def process(self, doc: Document, top):
        doc_id = self.segments.doc_id(doc)
        lines = None
        for (_, h), (n_docs, first) in top:
            if (first[0], first[1]) == doc_id:
                lines = lines or doc.raw_content.split("\n")
                yield {"line": lines[first[2]], "documents": n_docs, "hash": h}


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
        self.top_lines = top_lines
        if mode not in DEDUP_MODES:
            raise ValueError(f"dedup mode must be one of {DEDUP_MODES}, got {mode!r}")
        if group_size is not None and group_size < 1:
            raise ValueError(f"dedup group_size must be >= 1, got {group_size}")
        self.segments = _Segments(list(segments), group_size)
        self.mode = mode

    def expand(self, docs):
        segments = self.segments
        hashed = docs | "HashParagraphs" >> beam.ParDo(_HashParagraphsFn(segments)).with_outputs(
            _HashParagraphsFn.OCCURRENCES, main="keyed")
        judged = (
            hashed[_HashParagraphsFn.OCCURRENCES]
            | "GroupOccurrencesByHash" >> beam.GroupByKey()
            | "DocumentsLosingHash" >> beam.ParDo(_LosersFn(self.mode)).with_outputs(
                _LosersFn.DUPLICATED, main="lost")
        )
        if self.top_lines_path:
            top = judged[_LosersFn.DUPLICATED] | "TopDuplicated" >> beam.combiners.Top.Of(
                self.top_lines, key=_top_key)
            _ = (
                docs
                | "TopLineText" >> beam.ParDo(_TopLineTextFn(segments), beam.pvalue.AsSingleton(top))
                | "CollectTopLines" >> beam.combiners.ToList()
                | "WriteTopLines" >> beam.Map(_write_top_lines, self.top_lines_path)
            )
        return (
            {"doc": hashed.keyed, "lost": judged.lost}
            | "JoinDocumentsWithLostHashes" >> beam.CoGroupByKey()
            | "DropDuplicateLines" >> beam.ParDo(_DropLinesFn())
        )
