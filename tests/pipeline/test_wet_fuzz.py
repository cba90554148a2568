"""Fuzzing the WET reader (#15 §7): hypothesis mutates a real Common Crawl sample and checks
that the reader never raises and that every record is either read or counted.

The sample is CC-MAIN-2019-30-sample-00001 (341 records, one gzip member each). A mutation
says which original records it touched (the record whose bytes it changed) and which it
removed (truncation). The property, for every mutation:

* iter_wet_records never raises;
* every untouched record within --max-record-bytes is read byte for byte (headers and body):
  damage costs only the records it hits;
* every untouched record over the limit, and every touched record, is either read (perhaps
  altered) or counted: touched + too large <= extra records read + skips (+1 for a file that
  ends inside a gzip member, `report.error`). Two damaged records side by side may become
  one garbage range, counted once, so several bit flips hit records that are not neighbours;
* `report.records` is the number of records yielded.

CI runs CI_EXAMPLES examples per test, derandomized (the same ones every run, about a minute
in all on a loaded 2-core machine); `make fuzz` runs many more, random (CC100_FUZZ_EXAMPLES).
docs/fuzzing.md records the runs and what they found.
"""

from __future__ import annotations

import bisect
import collections
import gzip
import io
import os
import zlib
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, Phase, assume, given, settings
from hypothesis import strategies as st

from pipeline.readers.wet import MAX_RECORD_BYTES, WetFileReport, iter_wet_records
from tests.pipeline.corpus_helpers import member_offsets

SAMPLE = "CC-MAIN-2019-30-sample-00001.warc.wet.gz"
CI_EXAMPLES = 150  # per test (6 tests): about a minute in all
FUZZ_EXAMPLES = int(os.environ.get("CC100_FUZZ_EXAMPLES") or 0)
SETTINGS = settings(
    max_examples=FUZZ_EXAMPLES or CI_EXAMPLES,
    derandomize=not FUZZ_EXAMPLES,
    database=None if not FUZZ_EXAMPLES else settings.default.database,
    deadline=None,
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink],  # "explain" prints the whole sample
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
SMALL_LIMIT = 4096  # half of the sample's records are larger: exercises skipping them

# Bytes that mean something to the reader, mixed into random garbage.
FRAGMENTS = [b"WARC/1.0\r\n", b"WARC/1.", b"\r\n", b"\r\n\r\n", b"\n", b"\x1f\x8b\x08", b"\x1f\x8b",
             b"WARC-Type: conversion\r\n", b"Content-Length: 12\r\n", b"Content-Length: -3\r\n", b":", b"\x00"]
CONTENT_LENGTHS = ["", "-1", "-99999", "99999999999999999999", "abc", "1e5", " 12 ", "0", "١٢"]


@dataclass(frozen=True)
class Sample:
    gz: bytes
    starts: list[int]  # offset of each record's gzip member in `gz`
    records: list[bytes]  # each member's content: one WARC record and its blank line
    plain: bytes  # the records, uncompressed
    plain_starts: list[int]
    keys: list[tuple[str, bytes]]  # (WARC-Record-ID, body) of each record as read cleanly
    sizes: list[int]  # body length of each record

    def __repr__(self) -> str:  # hypothesis prints the arguments of a failing example
        return f"Sample({len(self.records)} records, {len(self.gz)} bytes gzipped)"


@dataclass
class Mutated:
    data: bytes
    touched: set[int]
    removed: set[int]
    what: str  # the mutation, for the failure message


@pytest.fixture(scope="module")
def sample(shared_data) -> Sample:
    gz = (shared_data / "wet" / SAMPLE).read_bytes()
    starts = member_offsets(gz)
    records = [zlib.decompressobj(wbits=31).decompress(gz[a:b]) for a, b in zip(starts, [*starts[1:], len(gz)])]
    plain_starts, pos = [], 0
    for record in records:
        plain_starts.append(pos)
        pos += len(record)
    clean = list(iter_wet_records(io.BytesIO(gz), SAMPLE))
    assert len(clean) == len(records) == 341
    keys = [(r.headers["warc-record-id"], r.body) for r in clean]
    return Sample(gz, starts, records, b"".join(records), plain_starts, keys, [len(r.body) for r in clean])


def _record_at(starts: list[int], offset: int) -> int:
    return bisect.bisect_right(starts, offset) - 1


def _inside(starts: list[int], offset: int, total: int) -> set[int]:
    """The record whose bytes surround `offset` (none at a record boundary or the end)."""
    if offset >= total or offset in starts:
        return set()
    return {_record_at(starts, offset)}


def _layout(s: Sample, plain: bool) -> tuple[bytes, list[int]]:
    return (s.plain, s.plain_starts) if plain else (s.gz, s.starts)


def check(s: Sample, m: Mutated, limit: int = MAX_RECORD_BYTES) -> None:
    report = WetFileReport("fuzz")
    records = list(iter_wet_records(io.BytesIO(m.data), "fuzz", report, max_record_bytes=limit))
    assert report.records == len(records)
    read = collections.Counter((r.headers.get("warc-record-id"), r.body) for r in records)
    untouched = [i for i in range(len(s.keys)) if i not in m.touched and i not in m.removed]
    large = [i for i in untouched if s.sizes[i] > limit]
    for i in untouched:
        if s.sizes[i] <= limit:
            assert read[s.keys[i]] > 0, f"{m.what}: untouched record {i} not read intact ({dict(report.skipped)})"
            read[s.keys[i]] -= 1
    accounted = sum(read.values()) + sum(report.skipped.values()) + (report.error is not None)
    assert len(m.touched) + len(large) <= accounted, (
        f"{m.what}: {len(m.touched)} touched + {len(large)} too large, but only {accounted} read or counted: "
        f"{dict(report.skipped)}, error={report.error}")


limits = st.sampled_from([MAX_RECORD_BYTES, SMALL_LIMIT])
junk = st.lists(st.one_of(st.binary(min_size=1, max_size=40), st.sampled_from(FRAGMENTS)), min_size=1, max_size=6).map(b"".join)


# -- byte-level mutations of the gzip file or of its plain form ------------------------------


@SETTINGS
@given(data=st.data(), plain=st.booleans(), limit=limits)
def test_bit_flips(sample, data, plain, limit):
    buf, starts = _layout(sample, plain)
    flips = data.draw(st.lists(st.tuples(st.integers(0, len(buf) - 1), st.integers(0, 7)), min_size=1, max_size=3))
    out = bytearray(buf)
    touched = set()
    for offset, bit in flips:
        out[offset] ^= 1 << bit
        touched.add(_record_at(starts, offset))
    # Two damaged neighbours can make one garbage range (counted once): keep them apart.
    assume(all(abs(a - b) >= 2 for a in touched for b in touched if a != b))
    check(sample, Mutated(bytes(out), touched, set(), f"flips {flips} plain={plain}"), limit)


@SETTINGS
@given(data=st.data(), plain=st.booleans())
def test_truncation(sample, data, plain):
    buf, starts = _layout(sample, plain)
    cut = data.draw(st.integers(0, len(buf)))
    removed = {i for i, start in enumerate(starts) if start >= cut}
    check(sample, Mutated(buf[:cut], _inside(starts, cut, len(buf)), removed, f"cut at {cut} plain={plain}"))


@SETTINGS
@given(data=st.data(), plain=st.booleans(), garbage=junk)
def test_inserted_garbage(sample, data, plain, garbage):
    """Anywhere: inside a record (or gzip member) it touches that one; between two, none."""
    buf, starts = _layout(sample, plain)
    at_boundary = data.draw(st.booleans())
    offset = starts[data.draw(st.integers(0, len(starts) - 1))] if at_boundary else data.draw(st.integers(0, len(buf)))
    check(sample, Mutated(buf[:offset] + garbage + buf[offset:], _inside(starts, offset, len(buf)), set(),
                          f"{garbage!r} at {offset} plain={plain}"))


# -- gzip-level mutations --------------------------------------------------------------------


@SETTINGS
@given(data=st.data(), content=junk)
def test_gzip_member_of_garbage_between_records(sample, data, content):
    """#15 §6: a valid gzip member holding non-WARC bytes costs no record."""
    s = sample
    i = data.draw(st.integers(0, len(s.starts)))
    offset = s.starts[i] if i < len(s.starts) else len(s.gz)
    member = gzip.compress(content, mtime=0)
    check(s, Mutated(s.gz[:offset] + member + s.gz[offset:], set(), set(), f"member of {content!r} at {offset}"))


@SETTINGS
@given(data=st.data(), limit=limits)
def test_gzip_members_cut_anywhere(sample, data, limit):
    """A piece cut out of a member (its header, its deflate data or its trailer)."""
    s = sample
    i = data.draw(st.integers(0, len(s.starts) - 1))
    end = s.starts[i + 1] if i + 1 < len(s.starts) else len(s.gz)
    a = data.draw(st.integers(s.starts[i], end - 1))
    b = data.draw(st.integers(a + 1, end))
    removed = {i} if (a, b) == (s.starts[i], end) else set()
    check(s, Mutated(s.gz[:a] + s.gz[b:], {i} - removed, removed, f"member {i}: cut {a}-{b}"), limit)


# -- record-level mutations (headers), in gzip or plain layout ---------------------------------


def _header_lines(record: bytes) -> tuple[list[bytes], bytes]:
    head, _, rest = record.partition(b"\r\n\r\n")
    return head.split(b"\r\n"), rest


def _content_length_edit(lines, data):
    i = next(k for k, line in enumerate(lines) if line.startswith(b"Content-Length:"))
    value = data.draw(st.one_of(st.sampled_from(CONTENT_LENGTHS + [None]), st.integers(0, 10**7).map(str)))
    if value is None:
        return lines[:i] + lines[i + 1 :]
    return lines[:i] + [b"Content-Length: " + value.encode()] + lines[i + 1 :]


def _duplicate_header(lines, data):
    i = data.draw(st.integers(1, len(lines) - 1))
    return lines[: i + 1] + [data.draw(st.sampled_from([lines[i], lines[i] + b"0"]))] + lines[i + 1 :]


def _remove_colon(lines, data):
    i = data.draw(st.integers(1, len(lines) - 1))
    return lines[:i] + [lines[i].replace(b":", b"", 1)] + lines[i + 1 :]


def _duplicate_block(lines, data):
    return lines + lines


EDITS = [_content_length_edit, _duplicate_header, _remove_colon, _duplicate_block]


@SETTINGS
@given(data=st.data(), plain=st.booleans(), edit=st.sampled_from(EDITS), limit=limits)
def test_header_mutations(sample, data, plain, edit, limit):
    """Huge, negative, missing or non-numeric Content-Length; duplicated header lines or
    blocks; header lines without a colon."""
    s = sample
    i = data.draw(st.integers(0, len(s.records) - 1))
    lines, rest = _header_lines(s.records[i])
    record = b"\r\n".join(edit(lines, data)) + b"\r\n\r\n" + rest
    if plain:
        mutated = s.plain[: s.plain_starts[i]] + record + s.plain[s.plain_starts[i] + len(s.records[i]) :]
    else:
        end = s.starts[i + 1] if i + 1 < len(s.starts) else len(s.gz)
        mutated = s.gz[: s.starts[i]] + gzip.compress(record, mtime=0) + s.gz[end:]
    check(s, Mutated(mutated, {i}, set(), f"record {i}: {edit.__name__} plain={plain}: {record[:600]!r}"), limit)
