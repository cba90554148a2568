"""BatchDocuments (the batches LID, perplexity and writing work on) and the bytes form in which
batches of documents cross a shuffle."""

from __future__ import annotations

import apache_beam as beam
from apache_beam.runners.portability.fn_api_runner import FnApiRunner
from apache_beam.testing.util import assert_that

from pipeline.utils.batch import BatchDocuments
from pipeline.schema import Document, documents_from_bytes, documents_to_bytes
from tests.pipeline.corpus_helpers import make_doc


def test_batches_hold_every_document_once_and_a_huge_one_alone():
    """A document longer than a batch's character budget travels alone (BatchElements may then
    emit an empty batch before it: the stages accept empty batches)."""
    docs = [make_doc("x" * 10, i) for i in range(9)]
    docs.insert(4, make_doc("y" * 5_000, 100))  # weighs 1 + 5000 // 250: over the budget of 4

    def check(batches):
        batches = list(batches)
        offsets = sorted(d.record_offset for batch in batches for d in batch)
        assert offsets == sorted(d.record_offset for d in docs)
        assert all(len(batch) <= 4 for batch in batches)
        (huge,) = [batch for batch in batches if any(d.record_offset == 100 for d in batch)]
        assert len(huge) == 1

    with beam.Pipeline(runner=FnApiRunner()) as p:
        batches = p | beam.Create(docs, reshuffle=False) | BatchDocuments(max_documents=4, max_chars=1_000)
        assert_that(batches, check)


def test_documents_round_trip_through_bytes_with_every_field_kind():
    docs = [
        make_doc("a\nb", 3, language="fr").replace(
            line_ids=[0, 2], original_nlines=3, original_length=9, language_score=0.91,
            line_languages=["fr", "en"], line_language_scores=[0.9, 0.5], perplexity=123.4,
            bucket="head"),
        make_doc("é\ud800 lone surrogate and ctrl \x01", 4),  # None fields, odd text
    ]
    back = documents_from_bytes(documents_to_bytes(docs))
    assert back == docs and all(type(d) is Document for d in back)
    assert documents_from_bytes(documents_to_bytes([])) == []
