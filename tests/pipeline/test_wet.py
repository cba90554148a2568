"""WET parsing: both Common Crawl header layouts, headers by name, cc_net's document fields."""

from __future__ import annotations

import base64
import gzip
import hashlib
import io

import pytest

from pipeline.readers.wet import (
    WetFileReport,
    documents_from_records,
    iter_wet_records,
    read_wet_file,
    record_to_document,
    source_domain,
    split_lines,
)
from tests.pipeline.corpus_helpers import gzip_members, page, warc_record, warcinfo


def _read(path, min_len=0):
    report = WetFileReport(str(path))
    docs = list(read_wet_file(str(path), min_len, report))
    return docs, report


def _block_digest(body: bytes) -> str:
    return "sha1:" + base64.b32encode(hashlib.sha1(body).digest()).decode()


def test_2024_layout_real_file(shared_data):
    """CC-MAIN-2024-22: extra headers (Identified-Content-Language, Payload-Digest) after Content-Length."""
    path = shared_data / "wet" / "cc_whirlwind_whirlwind.warc.wet.gz"
    with open(path, "rb") as f:
        records = list(iter_wet_records(f, str(path)))
    assert [r.warc_type for r in records] == ["warcinfo", "conversion"]
    # Content-Length delimited the body exactly: the block digest matches
    assert _block_digest(records[1].body) == records[1].headers["warc-block-digest"]

    docs, report = _read(path)
    assert len(docs) == 1 and report.problems == []
    doc = docs[0]
    assert doc.url == "https://an.wikipedia.org/wiki/Escopete"
    assert doc.date_download == "2024-05-18T01:58:10Z"
    assert doc.digest == "sha1:RDTSR52RUHWDA7QK4BK7OUHU3EXTXYUL"
    assert doc.source_domain == "an.wikipedia.org"
    assert doc.title == "Escopete - Biquipedia, a enciclopedia libre"
    assert doc.raw_content.startswith("Ir al contenido\nMenú principal\n")
    assert doc.length == len(doc.raw_content)
    assert doc.nlines == doc.raw_content.count("\n") + 1
    assert doc.cc_segment == str(path) and doc.record_offset == 1
    # cc_net's original_length: the WARC Content-Length in bytes (title and UTF-8 included)
    assert doc.original_length == int(records[1].headers["content-length"]) == len(records[1].body)
    assert doc.original_length > len(doc.title) + 1 + doc.length


def test_2019_layout_real_sample(shared_data):
    path = shared_data / "wet" / "CC-MAIN-2019-30-sample-00000.warc.wet.gz"
    with open(path, "rb") as f:
        records = list(iter_wet_records(f, str(path)))
    conversions = [r for r in records if r.warc_type == "conversion"]
    assert len(records) == 341 and len(conversions) == 340
    assert all(_block_digest(r.body) == r.headers["warc-block-digest"] for r in conversions)

    docs, report = _read(path, min_len=300)
    assert report.problems == []
    assert report.conversion_records == 340 and report.documents + report.too_short == 340
    assert all(d.length >= 300 for d in docs)
    first = docs[0]
    assert first.url == "http://16thfleet.wikidot.com/chatter:anewhome"
    assert first.date_download == "2019-07-17T12:15:59.000Z"
    assert first.digest == "sha1:Y42IJIUOVQKKDZTLUA6674WDSQI5HWJR"
    assert first.title == "A New Home?"
    assert first.raw_content.startswith("March 03, 2018 - After a great deal of discussion")
    offsets = [d.record_offset for d in docs]
    assert offsets == sorted(offsets) and len(set(offsets)) == len(offsets)


def test_cc_net_sample_with_lf_endings_and_wrong_lengths(shared_data):
    """cc_net's own test file: LF line ends, Content-Length counted in characters (wrong)."""
    docs, report = _read(shared_data / "wet" / "ccnet_sample.warc.txt")
    assert [d.url for d in docs] == ["http://sample_english.com", "http://sample_chinese.zh", "http://sample_russian.ru"]
    english = docs[0]
    assert english.title == "Famous Mark Twain Quotes"
    assert english.raw_content.split("\n") == [
        "Don't part with your illusions. When they are gone you may still exist, but you have ceased to live.",
        "Education: that which reveals to the wise, and conceals from the stupid, the vast limits of their knowledge.",
        "",
        "Facts are stubborn things, but statistics are more pliable.",
        "Fiction is obliged to stick to possibilities. Truth isn't.",
    ]
    assert "WARC" not in docs[1].raw_content and "WARC" not in docs[2].raw_content
    assert report.content_length_mismatch >= 2  # re-delimited at the next record, and counted


def test_headers_are_parsed_by_name_not_position():
    body = page("Title", "some text here")
    order = ["Content-Length", "WARC-Block-Digest", "X-Extra", "WARC-Date", "Content-Type",
             "WARC-Record-ID", "WARC-Target-URI", "WARC-Type"]
    shuffled = warc_record(body, url="http://www.Example.org:8080/a", header_order=order,
                           extra={"X-Extra": "whatever: with colon"})
    lower = warc_record(body, url="http://www.Example.org:8080/a").replace(b"WARC-Type:", b"warc-type:")
    for raw in (shuffled, lower):
        records = list(iter_wet_records(io.BytesIO(gzip_members([warcinfo(), raw])), "mem"))
        doc, reason, _ = record_to_document(records[1], "seg")
        assert reason is None
        assert (doc.url, doc.title, doc.raw_content) == ("http://www.Example.org:8080/a", "Title", "some text here")
        assert doc.source_domain == "www.Example.org:8080"  # cc_net: urlparse(url).netloc
        assert doc.original_length == len(body.encode("utf-8"))
        assert doc.date_download == "2019-07-17T12:15:59Z"


def test_folded_header_lines_are_joined():
    raw = warc_record(page("T", "x")).replace(b"Content-Type: text/plain\r\n", b"Content-Type: text/plain\r\n  ; charset=utf-8\r\n")
    (record,) = iter_wet_records(io.BytesIO(raw), "mem")
    assert record.headers["content-type"] == "text/plain ; charset=utf-8"


def test_plain_and_single_member_gzip_inputs_read_the_same():
    records = [warcinfo()] + [warc_record(page(f"T{i}", f"line {i}"), url=f"http://e{i}.com/") for i in range(3)]
    variants = [b"".join(records), gzip_members(records), gzip.compress(b"".join(records))]
    parsed = []
    for data in variants:
        parsed.append([(r.warc_type, r.headers.get("warc-target-uri"), r.body) for r in iter_wet_records(io.BytesIO(data), "m")])
    assert parsed[0] == parsed[1] == parsed[2] and len(parsed[0]) == 4


def test_split_lines_is_cc_nets_line_reading():
    assert split_lines("Title\n  a  \nb\n") == ["Title", "a", "b"]  # final newline: no extra line
    assert split_lines("Title\n\nb") == ["Title", "", "b"]  # inner blank lines are lines
    assert split_lines("T\r\na\rb") == ["T", "a", "b"]  # universal newlines, as text-mode files
    assert split_lines("only") == ["only"]


@pytest.mark.parametrize(
    "url, domain",
    [
        ("https://www.example.com/x", "www.example.com"),
        ("http://News.BBC.co.uk:80/a?b", "News.BBC.co.uk:80"),
        ("http://user@host.org/", "user@host.org"),
        ("http://[bad", ""),
        ("not a url", ""),
    ],
)
def test_source_domain(url, domain):
    assert source_domain(url) == domain


def test_min_len_filter_counts_short_and_empty_documents():
    records = [warc_record(page("T", "x" * 299), url="http://a/"), warc_record(page("T", "y" * 300), url="http://b/"),
               warc_record("Title only\n", url="http://c/"), warc_record(page("T", "z"), warc_type="response")]
    report = WetFileReport("m")
    recs = iter_wet_records(io.BytesIO(gzip_members(records)), "m", report)
    docs = list(documents_from_records(recs, "m", 300, report))
    assert [d.url for d in docs] == ["http://b/"]
    assert (report.too_short, report.non_conversion_records, report.conversion_records) == (2, 1, 3)
    report0 = WetFileReport("m")
    recs = iter_wet_records(io.BytesIO(gzip_members(records)), "m", report0)
    docs0 = list(documents_from_records(recs, "m", 0, report0))
    assert [d.url for d in docs0] == ["http://a/", "http://b/"]  # min_len 0 still drops empty text


def test_source_domain_is_ccnets_on_its_released_output(shared_data):
    """cc_net's own output (shared sample): our source_domain of its url is its source_domain."""
    import json

    rows = [json.loads(line)["metadata"] for path in sorted((shared_data / "ccnet_output").glob("*.jsonl.gz"))
            for line in gzip.open(path, "rt", encoding="utf-8")]
    assert len(rows) >= 20
    for m in rows:
        assert source_domain(m["url"]) == m["source_domain"], m["url"]
        assert m["original_length"] > m["length"]  # bytes as read vs characters kept


def test_original_length_is_the_bytes_of_the_record_even_when_content_length_lies():
    """original_length is cc_net's Content-Length; a record whose header lies is re-delimited at
    the next record, and original_length is then the bytes it really has."""
    body = page("Titre", "déjà vu " * 40)
    true_length = len(body.encode("utf-8"))
    raw = [warcinfo(), warc_record(body, url="http://a.example/", content_length=true_length + 7),
           warc_record(page("T", "next page"), url="http://b.example/")]
    records = list(iter_wet_records(io.BytesIO(b"".join(raw)), "mem"))
    doc, reason, _ = record_to_document(records[1], "seg")
    assert reason is None and doc.title == "Titre"
    assert doc.original_length == len(records[1].body) > len(doc.raw_content) + len(doc.title)
    # (re-delimited, the page's final newline is taken for part of the record separator)
    assert true_length - 1 <= doc.original_length <= true_length < true_length + 7
    ok, _, _ = record_to_document(records[2], "seg")
    assert ok.original_length == len(page("T", "next page").encode("utf-8"))
