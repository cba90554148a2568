"""Small WET files built by the tests, and an independent in-memory port of cc_net's dedup.

The reference dedup is written from cc_net's code (FlatHashSet.add checks a whole document's
hashes before inserting them; finalize_doc drops removed lines and in-document repeats), not
from pipeline/dedup/paragraphs.py, so comparing the Beam transform with it checks the semantics.
"""

from __future__ import annotations

import gzip
import hashlib
from collections.abc import Callable, Sequence
from pathlib import Path

from pipeline.writers.wet import block_digest
from pipeline.normalize import paragraph_hash
from pipeline.schema import Document


def warc_record(
    body: bytes | str,
    warc_type: str = "conversion",
    url: str = "http://example.com/",
    date: str = "2019-07-17T12:15:59Z",
    content_length: int | None = None,
    header_order: Sequence[str] | None = None,
    extra: dict[str, str] | None = None,
) -> bytes:
    """One WARC record as Common Crawl writes it (CRLF headers, body, blank line)."""
    if isinstance(body, str):
        body = body.encode("utf-8")
    digest = block_digest(body)
    headers = {
        "WARC-Type": warc_type,
        "WARC-Target-URI": url,
        "WARC-Date": date,
        "WARC-Record-ID": f"<urn:uuid:{hashlib.md5(body + url.encode()).hexdigest()}>",
        "WARC-Block-Digest": digest,
        "Content-Type": "text/plain",
        "Content-Length": str(len(body) if content_length is None else content_length),
        **(extra or {}),
    }
    names = list(header_order) if header_order else list(headers)
    head = "WARC/1.0\r\n" + "".join(f"{n}: {headers[n]}\r\n" for n in names) + "\r\n"
    return head.encode("utf-8") + body + b"\r\n\r\n"


def warcinfo() -> bytes:
    return warc_record("isPartOf: TEST\r\n", warc_type="warcinfo", url="")


def gzip_members(records: Sequence[bytes]) -> bytes:
    """One gzip member per record, like Common Crawl's .warc.wet.gz."""
    return b"".join(gzip.compress(r, mtime=0) for r in records)


def member_offsets(data: bytes) -> list[int]:
    """Start offsets of the gzip members of a (valid) multi-member gzip file."""
    import zlib

    starts, pos = [], 0
    while pos < len(data):
        starts.append(pos)
        inflater = zlib.decompressobj(wbits=31)
        inflater.decompress(data[pos:])
        pos = len(data) - len(inflater.unused_data)
    return starts


def page(title: str, *lines: str) -> str:
    return "\n".join((title, *lines)) + "\n"


def write_wet(path: Path, pages: Sequence[tuple[str, str]], gz: bool = True) -> Path:
    """A WET file: a warcinfo record, then one conversion record per (url, text)."""
    records = [warcinfo()] + [warc_record(text, url=url) for url, text in pages]
    path.write_bytes(gzip_members(records) if gz else b"".join(records))
    return path


# -- reference deduplication ----------------------------------------------------------------


def _hashes(content: str) -> list[int]:
    return [paragraph_hash(line) for line in content.split("\n")]


def ccnet_reference(contents: Sequence[str]) -> list[list[int]]:
    """cc_net's DuplicatesRemover over one group: kept line ids per document ([] = dropped)."""
    table: dict[int, bool] = {}
    for content in contents:  # HashesCollector: FlatHashSet.add(doc_hashes)
        hashes = _hashes(content)
        contains = [h in table for h in hashes]  # looked up before any of them is inserted
        for h, c in zip(hashes, contains):
            table[h] = c
    kept_ids = []
    for content in contents:  # DuplicatesRemover.do + finalize_doc
        hashes = [0 if table[h] else h for h in _hashes(content)]
        seen: set[int] = set()
        kept = []
        for i, h in enumerate(hashes):
            if h not in seen and h != 0:
                kept.append(i)
            seen.add(h)
        kept_ids.append(kept)
    return kept_ids


def keep_first_reference(contents: Sequence[str]) -> list[list[int]]:
    """Keep the first copy of every paragraph, in the order given (segment, record, line)."""
    seen: set[int] = set()
    kept_ids = []
    for content in contents:
        kept = []
        for i, h in enumerate(_hashes(content)):
            if h not in seen:
                kept.append(i)
            seen.add(h)
        kept_ids.append(kept)
    return kept_ids


def reference_dedup(
    docs: Sequence[dict], mode: str, group_of: Callable[[dict], int] = lambda d: 0
) -> dict[tuple[str, int], list[int]]:
    """{(cc_segment, record_offset): kept line_ids} for the documents that survive.

    `docs` are dicts with cc_segment, record_offset, raw_content (as read, before dedup).
    """
    groups: dict[int, list[dict]] = {}
    for d in sorted(docs, key=lambda d: (d["cc_segment"], d["record_offset"])):
        groups.setdefault(group_of(d), []).append(d)
    algorithm = ccnet_reference if mode == "ccnet" else keep_first_reference
    out = {}
    for members in groups.values():
        for d, kept in zip(members, algorithm([d["raw_content"] for d in members])):
            if kept:
                out[(d["cc_segment"], d["record_offset"])] = kept
    return out


def make_doc(text: str, offset: int = 0, language: str | None = None, segment: str = "seg") -> Document:
    """A Document as the WET reader would make it, for stage tests that start after reading."""
    return Document(
        url=f"http://{segment}/{offset}", date_download="2019-07-16T00:00:00Z", digest="sha1:X",
        source_domain=segment, title="t", raw_content=text, length=len(text),
        nlines=text.count("\n") + 1, cc_segment=segment, record_offset=offset, language=language,
    )


def segment_doc(segment: str, offset: int, content: str) -> Document:
    """`make_doc` keyed the way dedup orders documents: (segment, record offset)."""
    return make_doc(content, offset, segment=segment)


def beam_counters(result, namespace: str = "cc100") -> dict[str, int]:
    """The committed counters of a finished Beam pipeline result, summed by name."""
    from apache_beam.metrics.metric import MetricsFilter

    out: dict[str, int] = {}
    for c in result.metrics().query(MetricsFilter().with_namespace(namespace))["counters"]:
        out[c.key.metric.name] = out.get(c.key.metric.name, 0) + int(c.committed or 0)
    return out
