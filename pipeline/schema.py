"""The one record type of the corpus: `Document`, and its Parquet schemas.

Every stage of the Beam job takes and yields `Document`s. `PARQUET_SCHEMA` is a Document as it
is (the resume spools of pipeline/readers/segments.py use it); `WriteByLanguage` writes the corpus in
`OUTPUT_SCHEMA` (`output_table`): the same columns, with `date_download` as a UTC timestamp,
plus a stable document `id`. Field names follow cc_net's JSON output, so tools written for
cc_net (or for the released CC-100 metadata) read ours unchanged. Every output column is
described in COLUMN_DOCS (the README and the dataset card show it).
"""

from __future__ import annotations

import dataclasses
import hashlib
import operator
import pickle
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone

import pyarrow as pa


@dataclass
class Document:
    # -- from the WET record (pipeline/readers/wet.py) ----------------------------------------------
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
    # -- after paragraph deduplication (pipeline/dedup/paragraphs.py) ----------------------------------
    original_nlines: int = 0  # nlines before dedup
    line_ids: list[int] = field(default_factory=list)  # indices of the kept lines
    # -- after language identification (pipeline/quality/lid.py) ------------------------------------
    language: str | None = None
    language_score: float | None = None
    line_languages: list[str] | None = None  # only with --lid per-paragraph
    line_language_scores: list[float] | None = None
    # -- after perplexity scoring (pipeline/quality/perplexity.py) ----------------------------------
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


# The corpus output: the Document columns with date_download as a timestamp, and `id` first.
DATE_TYPE = pa.timestamp("us", tz="UTC")
OUTPUT_SCHEMA = pa.schema(
    [pa.field("id", pa.string())]
    + [pa.field(f.name, DATE_TYPE) if f.name == "date_download" else f for f in PARQUET_SCHEMA]
)
DERIVED_COLUMNS = ("id",)  # in OUTPUT_SCHEMA, computed from a Document's fields

# What every output column holds (README "Columns", the dataset card's feature list).
COLUMN_DOCS = {
    "id": "stable document id: SHA-1 hex of url + newline + digest (same document, same id in every run)",
    "url": "the page's URL (WARC-Target-URI)",
    "date_download": "when Common Crawl fetched the page (WARC-Date), UTC timestamp; null if unparsable",
    "digest": "WARC-Block-Digest of the record, e.g. sha1:Y42I... (cc_net's `digest`)",
    "source_domain": "the URL's netloc as written (www. and port kept), as cc_net",
    "title": "first line of the record's text",
    "raw_content": "the document: its kept paragraphs, joined by newlines",
    "length": "characters of raw_content (after dedup: of the kept lines)",
    "nlines": "paragraphs (lines) of raw_content",
    "original_nlines": "paragraphs before paragraph deduplication",
    "original_length": "the WARC record's Content-Length: bytes of the page text as read (title included), as cc_net",
    "line_ids": "indices (in the original text) of the kept paragraphs",
    "cc_segment": "the WET file the record came from",
    "record_offset": "index of the record in its WET file",
    "language": "fastText LID-176 language code (also the directory name)",
    "language_score": "probability of that language",
    "line_languages": "per-paragraph languages (only with --lid per-paragraph, else null)",
    "line_language_scores": "per-paragraph language probabilities (only with --lid per-paragraph)",
    "perplexity": "KenLM perplexity of raw_content under its language's model (null without one)",
    "bucket": "perplexity bucket: head, middle, tail (all: no model or cutoffs); the directory name",
}
assert set(COLUMN_DOCS) == set(OUTPUT_SCHEMA.names), "COLUMN_DOCS and OUTPUT_SCHEMA drifted apart"


def document_id(url: str, digest: str) -> str:
    """The stable `id` of a document: SHA-1 hex of url + "\n" + digest."""
    return hashlib.sha1(f"{url}\n{digest}".encode("utf-8", "surrogatepass")).hexdigest()


def parse_date(value: str | None) -> datetime | None:
    """A WARC-Date ("2019-07-17T12:15:59Z", fractions allowed) -> aware UTC datetime; None if
    empty or unparsable (the column is then null; `output_table` counts those)."""
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)).astimezone(timezone.utc)


def output_table(docs: Sequence[Document], schema: pa.Schema = OUTPUT_SCHEMA) -> tuple[pa.Table, int]:
    """Documents -> (a table of OUTPUT_SCHEMA, how many dates could not be parsed)."""
    rows, bad_dates = [], 0
    for doc in docs:
        row = doc.to_row()
        row["date_download"] = parse_date(doc.date_download)
        bad_dates += row["date_download"] is None and bool(doc.date_download)
        row["id"] = document_id(doc.url, doc.digest)
        rows.append(row)
    return pa.Table.from_pylist(rows, schema=schema), bad_dates


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
