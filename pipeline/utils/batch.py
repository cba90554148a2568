"""Documents in batches, for the stages whose libraries work best on many documents at once.

fastText, SentencePiece and KenLM each keep large tables (lid.176: ~1M n-gram buckets; one
SentencePiece + KenLM model per language). Called once per document in turn, they evict each
other from the CPU caches: measured on the benchmark input, fastText alone took 2.5 s for 8,361
documents, but 5 s when each call alternated with SentencePiece + KenLM. So `IdentifyLanguage`
predicts a whole batch in one fastText call, and `ScorePerplexity` scores a batch language by
language. A batch is cut inside a bundle (Beam's `BatchElements`), so it costs no shuffle.
"""

from __future__ import annotations

import apache_beam as beam

BATCH_DOCUMENTS = 512  # documents per batch
BATCH_CHARS = 4 << 20  # ... and about this many characters at most (a batch holds its texts)


def BatchDocuments(max_documents: int = BATCH_DOCUMENTS, max_chars: int = BATCH_CHARS) -> beam.PTransform:
    """Documents -> lists of at most `max_documents` documents (fewer when they are long: a
    document weighs 1 + length // (max_chars // max_documents)). A document longer than the
    whole budget travels alone. The last batch of a bundle may be smaller; batches may be empty."""
    unit = max(1, max_chars // max_documents)
    return beam.BatchElements(
        min_batch_size=max_documents,
        max_batch_size=max_documents,
        element_size_fn=lambda doc: 1 + doc.length // unit,
        record_metrics=False,
    )
