"""Paragraph deduplication: the pure helpers, and DedupParagraphs against an independent port of
cc_net's algorithm (tests/pipeline/corpus_helpers.py) on hand-made and random documents."""

from __future__ import annotations

import random

import apache_beam as beam
import numpy as np
import pytest
from apache_beam.runners.portability.fn_api_runner import FnApiRunner
from apache_beam.testing.util import assert_that, equal_to

from pipeline.dedup.paragraphs import (
    DedupParagraphs,
    apply_kept_lines,
    first_occurrences,
    OCCURRENCE,
    judge_occurrences,
    kept_line_ids,
    line_hashes,
    split_by_key,
    top_duplicated,
)
from pipeline.normalize import paragraph_hash
from pipeline.schema import Document
from tests.pipeline.corpus_helpers import reference_dedup
from tests.pipeline.corpus_helpers import segment_doc as doc




# A: in-document repeat ("unique a one"), B: the same boilerplate in another case,
# C and D share a menu line with A; D has nothing else.
HAND_MADE = [
    doc("seg0", 1, "menu home\nunique a one\nshared boiler\nunique a two\nunique a one"),
    doc("seg0", 2, "shared boiler\nunique b\nSHARED Boiler"),
    doc("seg1", 1, "Menu Home\nunique c"),
    doc("seg1", 2, "menu home"),
]
SEGMENTS = ["seg0", "seg1", "seg2"]


# -- pure helpers ------------------------------------------------------------------------------


def test_kept_line_ids_removes_listed_hashes_and_in_document_repeats():
    hashes = [1, 2, 3, 2, 4, 1]
    assert kept_line_ids(hashes, set()) == [0, 1, 2, 4]  # first copy of a repeat is kept
    assert kept_line_ids(hashes, {2}) == [0, 2, 4]
    assert kept_line_ids(hashes, {1, 2, 3, 4}) == []


def test_apply_kept_lines_records_cc_net_fields():
    d = doc("s", 3, "a\nb\nc\nd")
    out = apply_kept_lines(d, [1, 3])
    assert (out.raw_content, out.nlines, out.length) == ("b\nd", 2, 3)
    assert (out.original_nlines, out.original_length, out.line_ids) == (4, 7, [1, 3])
    again = apply_kept_lines(out, [1])  # a second pass keeps ids into the original text
    assert (again.raw_content, again.line_ids, again.original_nlines, again.original_length) == ("d", [3], 4, 7)
    assert apply_kept_lines(d, []) is None


def test_line_hashes_and_first_occurrences():
    hashes = line_hashes("X 1\nx 2\ny")
    assert hashes[0] == hashes[1] == paragraph_hash("x 0") and hashes[2] == paragraph_hash("y")
    assert first_occurrences(hashes) == {hashes[0]: 0, hashes[2]: 2}


def _occurrences(rows):
    return np.array(rows, dtype=OCCURRENCE)


def test_judge_ccnet_removes_everywhere_keep_first_spares_the_first_document():
    # hash 7 in three documents (first copy: segment 0, record 5, line 4), hash 9 in one
    occ = _occurrences([(7, 2, 1, 0), (9, 0, 5, 1), (7, 0, 9, 2), (7, 0, 5, 4), (2**64 - 1, 0, 9, 0)])
    losses, duplicated = judge_occurrences(occ, "ccnet")
    assert [tuple(r) for r in losses[["segment", "record", "hash"]]] == [(0, 5, 7), (0, 9, 7), (2, 1, 7)]
    assert [tuple(r) for r in duplicated] == [(7, 0, 5, 4, 3)]  # first location, 3 documents
    losses, duplicated = judge_occurrences(occ, "keep-first")
    assert [tuple(r) for r in losses[["segment", "record"]]] == [(0, 9), (2, 1)]
    assert len(duplicated) == 1
    losses, duplicated = judge_occurrences(occ[:2], "ccnet")  # nothing shared
    assert len(losses) == 0 and len(duplicated) == 0
    with pytest.raises(ValueError, match="dedup mode"):
        judge_occurrences(occ, "other")


def test_split_by_key_groups_rows_by_every_key_in_order():
    rows = np.arange(7)
    first = np.array([1, 0, 1, 0, 2, 1, 0])
    second = np.array([5, 5, 3, 5, 0, 5, 4])
    parts = [(key, part.tolist()) for key, part in split_by_key(rows, first, second)]
    assert parts == [((0, 4), [6]), ((0, 5), [1, 3]), ((1, 3), [2]), ((1, 5), [0, 5]), ((2, 0), [4])]
    assert [(key, part.tolist()) for key, part in split_by_key(rows, first)] == [
        ((0,), [1, 3, 6]), ((1,), [0, 2, 5]), ((2,), [4])]
    assert list(split_by_key(rows[:0], first[:0])) == []


def test_top_duplicated_orders_by_documents_then_hash():
    occ = _occurrences([(5, 0, 0, 0), (5, 0, 1, 0), (3, 0, 0, 1), (3, 0, 2, 3), (8, 0, 1, 1),
                        (8, 0, 2, 0), (8, 0, 3, 0)])
    _, duplicated = judge_occurrences(occ, "ccnet")
    assert top_duplicated(duplicated, 2) == [(3, 8, (0, 1, 1)), (2, 3, (0, 0, 1))]
    assert top_duplicated(duplicated, 0) == []


def test_reference_implements_the_issue_semantics():
    rows = [{"cc_segment": d.cc_segment, "record_offset": d.record_offset, "raw_content": d.raw_content} for d in HAND_MADE]
    assert reference_dedup(rows, "ccnet") == {("seg0", 1): [1, 3], ("seg0", 2): [1], ("seg1", 1): [1]}
    assert reference_dedup(rows, "keep-first") == {("seg0", 1): [0, 1, 2, 3], ("seg0", 2): [1], ("seg1", 1): [1]}
    by_segment = reference_dedup(rows, "ccnet", group_of=lambda r: SEGMENTS.index(r["cc_segment"]))
    assert by_segment == {("seg0", 1): [0, 1, 3], ("seg0", 2): [1], ("seg1", 1): [1]}


def test_bad_arguments_are_rejected():
    with pytest.raises(ValueError, match="dedup mode"):
        DedupParagraphs(SEGMENTS, mode="exact")
    with pytest.raises(ValueError, match="group_size"):
        DedupParagraphs(SEGMENTS, group_size=0)


# -- the Beam transform ------------------------------------------------------------------------


def random_corpus(seed: int = 7, n_docs: int = 80) -> list[Document]:
    rng = random.Random(seed)
    pool = [f"paragraph {chr(97 + i % 26)}{chr(97 + i // 26)}" for i in range(40)]
    docs = []
    for k in range(n_docs):
        lines = [rng.choice(pool[:8]) if rng.random() < 0.3 else rng.choice(pool) for _ in range(rng.randint(1, 9))]
        docs.append(doc(SEGMENTS[k % 3], k, "\n".join(lines)))
    return docs


def _as_rows(docs):
    return [(d.cc_segment, d.record_offset, d.raw_content) for d in docs]


def _expected(docs, mode, group_size=None):
    rows = [{"cc_segment": s, "record_offset": o, "raw_content": c} for s, o, c in _as_rows(docs)]
    group_of = (lambda r: SEGMENTS.index(r["cc_segment"]) // group_size) if group_size else (lambda r: 0)
    kept = reference_dedup(rows, mode, group_of)
    out = []
    for s, o, c in _as_rows(docs):
        if (s, o) in kept:
            lines = c.split("\n")
            ids = kept[(s, o)]
            out.append((s, o, "\n".join(lines[i] for i in ids), ids, len(lines), len(c)))
    return out


@pytest.mark.slow
def test_dedup_paragraphs_matches_the_reference():
    """One pipeline, several branches: hand-made and random documents x modes x group sizes."""
    cases = {
        "hand-ccnet": (HAND_MADE, "ccnet", None),
        "hand-keep-first": (HAND_MADE, "keep-first", None),
        "hand-ccnet-by-segment": (HAND_MADE, "ccnet", 1),
        "random-ccnet": (random_corpus(), "ccnet", None),
        "random-keep-first": (random_corpus(), "keep-first", None),
        "random-ccnet-groups-of-2": (random_corpus(), "ccnet", 2),
        "random-keep-first-groups-of-2": (random_corpus(), "keep-first", 2),
    }
    with beam.Pipeline(runner=FnApiRunner()) as p:
        for name, (docs, mode, group_size) in cases.items():
            out = (
                p
                | f"Create {name}" >> beam.Create(docs)
                | f"Dedup {name}" >> DedupParagraphs(SEGMENTS, mode, group_size)
                | f"Fields {name}" >> beam.Map(lambda d: (d.cc_segment, d.record_offset, d.raw_content, d.line_ids, d.original_nlines, d.original_length))
            )
            assert_that(out, equal_to(_expected(docs, mode, group_size)), label=f"Check {name}")
    # the hand-made expectations, spelled out (the reference is checked above too)
    assert [r[:4] for r in _expected(HAND_MADE, "ccnet")] == [
        ("seg0", 1, "unique a one\nunique a two", [1, 3]),
        ("seg0", 2, "unique b", [1]),
        ("seg1", 1, "unique c", [1]),
    ]
    assert len(_expected(random_corpus(), "ccnet")) < len(random_corpus())  # something was dropped


@pytest.mark.parametrize("mode", ["ccnet", "keep-first"])
def test_small_blocks_many_shards_and_early_flushes_change_nothing(monkeypatch, mode):
    """Blocks of 3 records, 64 hash shards and buffers emitted every few documents: the batches
    and shards split differently, the result is the same (in-process runner: the patched
    module constants are the ones the DoFns read)."""
    import pipeline.dedup.paragraphs as dedup

    monkeypatch.setattr(dedup, "BLOCK_RECORDS", 3)
    monkeypatch.setattr(dedup, "MIN_HASH_SHARDS", 64)
    monkeypatch.setattr(dedup, "FLUSH_OCCURRENCES", 10)
    docs = random_corpus(seed=3, n_docs=120)
    with beam.Pipeline(runner=FnApiRunner()) as p:
        out = (
            p
            | beam.Create(docs)
            | DedupParagraphs(SEGMENTS, mode)
            | beam.Map(lambda d: (d.cc_segment, d.record_offset, d.raw_content, d.line_ids, d.original_nlines, d.original_length))
        )
        assert_that(out, equal_to(_expected(docs, mode)))


def test_top_duplicated_lines_are_written_with_their_document_counts(tmp_path):
    """The boilerplate that dedup removed, for the report: first copy's text, documents holding it."""
    docs = [
        doc("a", 0, "Menu Home\nCookie notice\nreal a1"),
        doc("a", 1, "menu home\nreal a2\nCookie notice"),
        doc("b", 0, "MENU HOME\nunique line"),
        doc("b", 1, "only here\nonly here"),  # repeated inside one document: not a duplicate
    ]
    path = str(tmp_path / "top.json")
    with beam.Pipeline(runner=FnApiRunner()) as p:
        _ = p | beam.Create(docs) | DedupParagraphs(["a", "b"], top_lines_path=path, top_lines=5)
    import json

    # "real a1"/"real a2" normalise to the same key (digits -> 0): cc_net counts them as one paragraph
    top = json.loads(open(path).read())
    assert top[0] == ["Menu Home", 3]  # most documents first; ties in a fixed (hash) order
    assert sorted(top[1:]) == [["Cookie notice", 2], ["real a1", 2]]
