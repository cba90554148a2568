"""Candidate fixes for what the corpus profile showed, applied by monkeypatching (before/after).

These are proposals for files the benchmark does not own (pipeline/normalize.py,
pipeline/dedup.py); bench_corpus.py times the job with and without them, side by side. Each
patch gives exactly the same output as the code it replaces: bench_corpus checks
`fast_strip_accents` against cc_net's definition on every input document (`check()`) before
timing, and compares the corpus each patched run writes with the unpatched one (SHA-1 of the
sorted rows), stopping if they differ.

* `normalize`: `strip_accents` without a Python loop over characters. cc_net's version (kept in
  pipeline/normalize.py) calls `unicodedata.category` for every character of every document
  before SentencePiece - about 6% of the job's CPU, 60% of `normalize`. Here: NFD, then drop the
  Mn (non-spacing mark) code points with a numpy lookup table over the UTF-32 code units.
* `dedup`: DedupParagraphs hashes every line twice (once to emit occurrences, once again when
  dropping lines) and shuffles every occurrence twice (CombinePerKey for the counts, then
  CoGroupByKey with the occurrences again). Here: one hash pass, the hashes travel with the
  document, and one GroupByKey per hash yields count, first location and holders at once.

Workers of the multi-process local runner are fresh interpreters; `bench/patched_site/` holds a
sitecustomize.py that applies the patches named in $CC100_BENCH_PATCHES in every process.
"""

from __future__ import annotations

import os
import sys
import unicodedata

import numpy as np

PATCHES = ("normalize", "dedup")
ENV = "CC100_BENCH_PATCHES"

_KEEP: np.ndarray | None = None


def _keep_table() -> np.ndarray:
    """Boolean table over all code points: False for the Mn (non-spacing mark) category."""
    global _KEEP
    if _KEEP is None:
        keep = np.ones(sys.maxunicode + 1, dtype=bool)
        for cp in range(sys.maxunicode + 1):
            if unicodedata.category(chr(cp)) == "Mn":
                keep[cp] = False
        _KEEP = keep
    return _KEEP


def fast_strip_accents(text: str) -> str:
    """Same result as pipeline.normalize.strip_accents (NFD, drop category Mn), vectorised."""
    nfd = unicodedata.normalize("NFD", text)
    if nfd.isascii():
        return nfd
    try:
        codes = np.frombuffer(nfd.encode("utf-32-le"), dtype=np.uint32)
    except UnicodeEncodeError:  # lone surrogates: the slow, exact path
        return "".join(c for c in nfd if unicodedata.category(c) != "Mn")
    keep = _keep_table()[codes]
    if keep.all():
        return nfd
    return codes[keep].tobytes().decode("utf-32-le")


# -- dedup: hash once, one shuffle of the occurrences ------------------------------------------


def _dedup_transform():
    """A DedupParagraphs with the same constructor and output, built on first use."""
    import apache_beam as beam
    from apache_beam.metrics import Metrics

    from pipeline import dedup as d

    class _HashFn(beam.DoFn):
        OCCURRENCES = "occurrences"

        def __init__(self, segments):
            self.segments = segments

        def process(self, doc):
            doc_id = self.segments.doc_id(doc)
            group = self.segments.group(doc_id)
            hashes = d.line_hashes(doc.raw_content)
            yield doc_id, (doc, hashes)
            for h, line in d.first_occurrences(hashes).items():
                yield beam.pvalue.TaggedOutput(self.OCCURRENCES, ((group, d.to_int64(h)), (doc_id[0], doc_id[1], line)))

    class _LosersFn(beam.DoFn):
        def __init__(self, mode):
            self.mode = mode
            self.duplicated = Metrics.counter(d.NAMESPACE, "duplicated_paragraph_hashes")

        def process(self, element):
            (_, h), locations = element
            n_docs, first = 0, None
            for loc in locations:
                n_docs += 1
                if first is None or loc < first:
                    first = loc
            if n_docs < 2:
                return
            self.duplicated.inc()
            holders = ((loc[0], loc[1]) for loc in locations)
            for doc_id in d.losers(self.mode, n_docs, first, holders):
                yield doc_id, h

    class _DropLinesFn(d._DropLinesFn):
        def process(self, element):
            _, joined = element
            removed = frozenset(h if h >= 0 else h + (1 << 64) for h in joined["lost"])
            for doc, hashes in joined["doc"]:
                kept = d.kept_line_ids(hashes, removed)
                self.lines_in.inc(len(hashes))
                self.lines_removed.inc(len(hashes) - len(kept))
                self.chars_in.inc(doc.length)
                out = d.apply_kept_lines(doc, kept)
                if out is None:
                    self.emptied.inc()
                    continue
                self.chars_kept.inc(out.length)
                self.docs_out.inc()
                yield out

    class DedupParagraphsOnce(d.DedupParagraphs):
        def expand(self, docs):
            hashed = docs | "HashParagraphs" >> beam.ParDo(_HashFn(self.segments)).with_outputs(
                _HashFn.OCCURRENCES, main="keyed")
            lost = (
                hashed[_HashFn.OCCURRENCES]
                | "GroupOccurrences" >> beam.GroupByKey()
                | "DocumentsLosingHash" >> beam.ParDo(_LosersFn(self.mode))
            )
            return (
                {"doc": hashed.keyed, "lost": lost}
                | "JoinDocumentsWithLostHashes" >> beam.CoGroupByKey()
                | "DropDuplicateLines" >> beam.ParDo(_DropLinesFn())
            )

    return DedupParagraphsOnce


def apply(names) -> list[str]:
    """Monkeypatch the named fixes into the pipeline modules (before pipeline.main is imported)."""
    names = [n for n in names if n]
    unknown = [n for n in names if n not in PATCHES]
    if unknown:
        raise ValueError(f"unknown patch(es) {unknown}; known: {', '.join(PATCHES)}")
    if "normalize" in names:
        import pipeline.normalize

        _keep_table()
        pipeline.normalize.strip_accents = fast_strip_accents
    if "dedup" in names:
        import pipeline.dedup

        patched = _dedup_transform()
        pipeline.dedup.DedupParagraphs = patched
        if "pipeline.main" in sys.modules:  # already bound by `from pipeline.dedup import ...`
            sys.modules["pipeline.main"].DedupParagraphs = patched
    return names


def apply_from_env() -> list[str]:
    return apply(os.environ.get(ENV, "").split(","))


def check(texts) -> int:
    """The normalize patch must equal cc_net's definition on every text; returns how many were
    checked, raises AssertionError naming the first difference."""
    n = 0
    for text in texts:
        slow = "".join(c for c in unicodedata.normalize("NFD", text) if unicodedata.category(c) != "Mn")
        assert fast_strip_accents(text) == slow, f"fast_strip_accents differs on {text[:60]!r}"
        n += 1
    return n
