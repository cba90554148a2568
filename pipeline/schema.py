"""The one record type of the corpus: `Document`, and its Parquet schema.

Every stage of the Beam job takes and yields `Document`s; `WriteByLanguage` turns them into
rows of `PARQUET_SCHEMA`. Field names follow cc_net's JSON output, so tools written for
cc_net (or for the released CC-100 metadata) read ours unchanged.
"""

from __future__ import annotations

import dataclasses
import operator
import pickle
from collections.abc import Sequence
from dataclasses import dataclass, field

import pyarrow as pa


@dataclass
class Document:
    # -- from the WET record (pipeline/wet.py) ----------------------------------------------
    url: str
    date_download: str  # WARC-Date, as written in the record (ISO 8601, UTC)
    digest: str  # WARC-Block-Digest, e.g. "sha1:Y42IJIUOVQKKDZTLUA6674WDSQI5HWJR"
    source_domain: str  # netloc of `url` as written ("www." and port kept), as cc_net
    title: str  # first line of the record's text
    raw_content: str  # the other lines, stripped, "\n"-joined
    length: int  # len(raw_content) in characters (after dedup: of the kept lines), as cc_net's output
    nlines: int  # raw_content.count("\n") + 1
    cc_segment: str  # the WET file this record came from (path or URL as given)
    record_offset: int = 0  # index of the record inside its WET file (deterministic order)
    original_length: int = 0  # WARC Content-Length of the record, in bytes, as cc_net
    # -- after paragraph deduplication (pipeline/dedup.py) ----------------------------------
    original_nlines: int = 0  # nlines before dedup
    line_ids: list[int] = field(default_factory=list)  # indices of the kept lines
    # -- after language identification (pipeline/lid.py) ------------------------------------
    language: str | None = None
    language_score: float | None = None
    line_languages: list[str] | None = None  # only with --lid per-paragraph
    line_language_scores: list[float] | None = None
    # -- after perplexity scoring (pipeline/perplexity.py) ----------------------------------
    perplexity: float | None = None
    bucket: str | None = None  # head | middle | tail | all

    @property
    def key(self) -> tuple[str, int]:
        """Stable identity of a document inside one run: (segment, record index)."""
        return (self.cc_segment, self.record_offset)

    def replace(self, **changes) -> "Document":
        return dataclasses.replace(self, **changes)

    def to_row(self) -> dict:
        return {name: getattr(self, name) for name in PARQUET_SCHEMA.names}


# The output schema. Columns pinned by the issues (other tools rely on them): url, raw_content,
# line_ids, original_nlines, language, language_score, perplexity, bucket.
PARQUET_SCHEMA = pa.schema(
    [
        pa.field("url", pa.string()),
        pa.field("date_download", pa.string()),
        pa.field("digest", pa.string()),
        pa.field("source_domain", pa.string()),
        pa.field("title", pa.string()),
        pa.field("raw_content", pa.string()),
        pa.field("length", pa.int64()),
        pa.field("nlines", pa.int32()),
        pa.field("original_nlines", pa.int32()),
        pa.field("original_length", pa.int64()),
        pa.field("line_ids", pa.list_(pa.int32())),
        pa.field("cc_segment", pa.string()),
        pa.field("record_offset", pa.int64()),
        pa.field("language", pa.string()),
        pa.field("language_score", pa.float32()),
        pa.field("line_languages", pa.list_(pa.string())),
        pa.field("line_language_scores", pa.list_(pa.float32())),
        pa.field("perplexity", pa.float64()),
        pa.field("bucket", pa.string()),
    ]
)

DOCUMENT_FIELDS = tuple(f.name for f in dataclasses.fields(Document))
assert set(PARQUET_SCHEMA.names) == set(DOCUMENT_FIELDS), "schema and Document drifted apart"


def document_from_row(row: dict) -> Document:
    """Inverse of `Document.to_row` (for readers of the Parquet output)."""
    return Document(**{name: row.get(name) for name in DOCUMENT_FIELDS})


_FIELD_VALUES = operator.attrgetter(*DOCUMENT_FIELDS)


def documents_to_bytes(docs: Sequence[Document]) -> bytes:
    """Documents as one bytes value, for the batches the Beam job shuffles: pickled tuples of
    field values. Twice as fast both ways as pickling each Document, and a runner moves bytes
    without decoding them (Beam's local runner decodes and re-encodes other values at every
    GroupByKey)."""
    return pickle.dumps([_FIELD_VALUES(doc) for doc in docs], protocol=pickle.HIGHEST_PROTOCOL)


def documents_from_bytes(data: bytes) -> list[Document]:
    """Inverse of `documents_to_bytes`."""
    return [Document(*values) for values in pickle.loads(data)]
