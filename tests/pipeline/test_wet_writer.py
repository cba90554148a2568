"""pipeline/writers/wet.py: the one WET writer of the demo input and the benchmarks' synthetic input."""

from __future__ import annotations

import gzip
import hashlib
import io
import random
import zlib

import pytest

from pipeline.readers.wet import iter_wet_records
from pipeline.writers import wet

PAGE = "Une page\nAvec deux lignes de texte, é et ü compris.\n"


def _file(layout: str, level: int = 9) -> bytes:
    rng = random.Random(0)
    info = wet.warcinfo_record("x.warc.wet.gz", "2024-05-17T00:00:00Z", wet.record_id(rng),
                               [("isPartOf", "CC-MAIN-TEST"), ("operator", "cc100 tests")], layout)
    page = wet.conversion_record("http://a.example/1", "2024-05-17T01:02:03Z", wet.record_id(rng),
                                 wet.record_id(rng), PAGE, layout, ["fra", "eng"])
    return wet.wet_bytes([info, page], level)


def _members(data: bytes) -> list[bytes]:
    out = []
    while data:
        d = zlib.decompressobj(31)
        out.append(d.decompress(data))
        data = d.unused_data
    return out


@pytest.mark.parametrize("layout", wet.LAYOUTS)
def test_the_reader_reads_what_the_writer_writes(layout):
    records = list(iter_wet_records(io.BytesIO(_file(layout)), "mem"))
    assert [r.warc_type for r in records] == ["warcinfo", "conversion"]
    page = records[1]
    assert page.body.decode("utf-8") == PAGE
    assert page.headers["warc-block-digest"] == wet.block_digest(PAGE.encode("utf-8"))
    assert page.headers["warc-target-uri"] == "http://a.example/1"


def test_one_gzip_member_per_record_with_mtime_0():
    data = _file("2019")
    members = _members(data)
    assert len(members) == 2 and b"".join(members) == gzip.decompress(data)
    assert data[4:8] == b"\0\0\0\0"  # gzip MTIME: the same record gives the same bytes


def test_the_two_header_layouts():
    heads = [m.split(b"\r\n\r\n", 1)[0].decode().split("\r\n")[1:] for m in _members(_file("2019"))]
    names = [[line.split(":", 1)[0] for line in head] for head in heads]
    assert names == [
        ["WARC-Type", "WARC-Date", "WARC-Filename", "WARC-Record-ID", "Content-Type", "Content-Length"],
        ["WARC-Type", "WARC-Target-URI", "WARC-Date", "WARC-Record-ID", "WARC-Refers-To",
         "WARC-Block-Digest", "Content-Type", "Content-Length"],
    ]  # CC-MAIN-2019-30's order (cc_net's positional parser relies on it); no languages
    heads = [m.split(b"\r\n\r\n", 1)[0].decode().split("\r\n")[1:] for m in _members(_file("2024"))]
    assert heads[0][-1].startswith("WARC-Block-Digest: sha1:")
    assert heads[1][6:] == ["WARC-Identified-Content-Language: fra,eng", "Content-Type: text/plain",
                            f"Content-Length: {len(PAGE.encode())}",
                            f"WARC-Payload-Digest: {wet.block_digest(PAGE.encode())}"]


def test_the_bytes_are_pinned():
    """The demo input and the benchmarks' synthetic WET must not change by accident."""
    pinned = {("2019", 9): "e9559a9790fc0ceb838aa84f86728a9da6e1a57729f3be66c0a0a1cda1a63d81",
              ("2024", 6): "5cf292b848cb73a6afad4394ab0f9dec93d813c7cd2b3cee5435fcf779323286"}
    assert {key: hashlib.sha256(_file(*key)).hexdigest() for key in pinned} == pinned


def test_an_unknown_layout_is_refused():
    with pytest.raises(ValueError, match="layout must be one of 2019, 2024"):
        wet.conversion_record("http://a/", "d", "<id>", "<ref>", "x", layout="2030")
