"""Common Crawl WET files -> `Document`s: a small, forgiving WARC parser and cc_net's record rules.

Why a hand-written parser: warcio 1.8.1 and FastWARC 2.0.1 both stop at the first garbage bytes
between records or at a record whose Content-Length is too short, and both hand back the
half-record before the cut of a truncated gzip as if it were whole (measured; see the README).
Real crawls contain all of these now and then, and one bad record must not cost a whole file.
It is slower than FastWARC (about 0.5 s vs 0.2 s for 10k records / 46 MB here), which is small
next to the per-line hashing of dedup (about 2 s for the same records).

`iter_wet_records` reads the byte stream itself:

* gzip (multi-member, as Common Crawl writes one member per record) or plain, detected by a
  gzip member that decodes in the first read; decompressed with zlib. A member's output is
  held until its checksum is verified (up to the record limit), so a corrupt member costs its
  own record only (CORRUPT_GZIP) and reading resumes at the next member header after its start;
  bytes between members that are not a member are skipped to the next gzip header (GARBAGE);
  a cut inside the last member ends the file after the last complete record;
* records are split by Content-Length, and the split is checked: the body must be followed by
  the next record or the end (after line ends), or by a blank line with no record starting
  inside the body. If not, Content-Length lied (or is missing) and the body is re-delimited at
  the next `WARC/1.x` line;
* bytes between records that are not a record are skipped up to the next `WARC/1.x` line,
  wherever it starts; a bad header block is skipped from just after its version line;
* bodies over the record limit (`--max-record-bytes`) are skipped (RECORD_TOO_LARGE) while
  holding at most about the limit;
* headers are parsed by *name* (cc_net's positional parser broke on the 2024 layout).

Every problem is counted in a `WetFileReport`, which the Beam DoFn turns into counters.
`read_wet_file` is the one function that opens a file (through Beam's FileSystems, so gs://
works) and yields Documents.
"""

from __future__ import annotations

import collections
import re
import time
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import BinaryIO
from urllib.parse import urlsplit

from pipeline.schema import Document

GZIP_MAGIC = b"\x1f\x8b"
GZIP_MEMBER_START = b"\x1f\x8b\x08"  # magic + deflate method
READ_CHUNK = 64 << 10  # compressed bytes per read (small: zlib copies the unused tail per member)
MAX_INFLATE = 8 << 20  # decompressed bytes per zlib call (bounds memory on gzip bombs)
MAX_HEADER_BYTES = 64 << 10  # a WARC header block larger than this is not a header
# Larger record bodies are skipped (RECORD_TOO_LARGE); `--max-record-bytes`. Common Crawl
# truncates fetched pages at 1 MiB; the WET text of such a page may be larger after charset
# conversion to UTF-8 (a 1-byte-per-letter Thai or Cyrillic page grows 2-3x), hence 4 MiB.
MAX_RECORD_BYTES = 4 << 20
BOUNDARY_LOOKAHEAD = 64  # bytes checked after a body to confirm its Content-Length
VERSION_LINE_MAX = len(b"WARC/1.0\r\n")

# What may follow a body whose Content-Length is right: the next record (after line ends) or
# the end; or a blank line, then something else (garbage, checked further).
_NEXT_RECORD_RE = re.compile(rb"(?:\r?\n)*(?:WARC/1\.|\Z)")
_BLANK_LINE_RE = re.compile(rb"\r?\n\r?\n")
# The version line that starts a record. Anywhere is a record boundary: garbage or a damaged
# separator need not end with a line end.
_VERSION_RE = re.compile(rb"WARC/1\.\d\r?\n")

# Reasons a record or byte range is skipped (counter `bad_wet_record_<reason>`).
GARBAGE = "garbage"  # bytes between records (or between gzip members) that are not one
CORRUPT_GZIP = "corrupt_gzip"  # a gzip member that fails to decompress; its record is lost
BAD_HEADER = "bad_header"  # header block without "Name: value" lines / WARC-Type, or too long
TRUNCATED_RECORD = "truncated_record"  # the input ended (truncated gzip) inside this record
RECORD_TOO_LARGE = "record_too_large"  # a body larger than the record limit
MISSING_URL = "missing_url"  # a conversion record without WARC-Target-URI
SKIP_REASONS = (GARBAGE, CORRUPT_GZIP, BAD_HEADER, TRUNCATED_RECORD, RECORD_TOO_LARGE, MISSING_URL)


@dataclass
class WetRecord:
    headers: dict[str, str]  # header name, lower-cased -> value
    body: bytes
    index: int  # position among the records read from this file

    @property
    def warc_type(self) -> str:
        return self.headers.get("warc-type", "")


@dataclass
class WetFileReport:
    """What happened while reading one file: the source of counters and of stats.json."""

    path: str
    records: int = 0  # WARC records read (all types)
    conversion_records: int = 0
    non_conversion_records: int = 0
    documents: int = 0  # Documents yielded (long enough)
    too_short: int = 0
    invalid_utf8: int = 0  # records decoded with U+FFFD replacements (kept)
    content_length_mismatch: int = 0  # records re-delimited at the next boundary (kept)
    garbage_bytes: int = 0
    skipped: collections.Counter = field(default_factory=collections.Counter)  # reason -> n
    error: str | None = None  # why reading stopped early (truncated gzip, unreadable)
    unreadable: bool = False  # the file could not be opened or read at all (error says why)
    seconds: float = 0.0

    def skip(self, reason: str) -> None:
        self.skipped[reason] += 1

    @property
    def problems(self) -> list[str]:
        """Human-readable problems of this file; empty for a clean WET file."""
        out = []
        if self.error:
            out.append(self.error)
        for reason, n in sorted(self.skipped.items()):
            out.append(f"{n} skipped ({reason})")
        if self.content_length_mismatch:
            out.append(f"{_records(self.content_length_mismatch)} with a wrong Content-Length")
        if self.invalid_utf8:
            out.append(f"{_records(self.invalid_utf8)} with invalid UTF-8")
        if self.error is None and self.records == 0:
            out.append("empty file: no WARC records")
        elif self.records and self.conversion_records == 0:
            out.append("no conversion records (not a WET file?)")
        return out

    def to_dict(self) -> dict:
        return {
            "path": self.path,
            "records": self.records,
            "conversion_records": self.conversion_records,
            "non_conversion_records": self.non_conversion_records,
            "documents": self.documents,
            "too_short": self.too_short,
            "invalid_utf8": self.invalid_utf8,
            "content_length_mismatch": self.content_length_mismatch,
            "garbage_bytes": self.garbage_bytes,
            "skipped": dict(sorted(self.skipped.items())),
            "error": self.error,
            "seconds": round(self.seconds, 3),
            "problems": self.problems,
        }


def _records(n: int) -> str:
    return f"{n} record{'' if n == 1 else 's'}"


# -- byte stream ------------------------------------------------------------------------------


class InputError(Exception):
    """The byte stream ended abnormally (truncated gzip); earlier bytes are valid."""


class _Cut:
    """Marker in the decompressed stream: the gzip member whose first bytes were just passed on
    turned out corrupt (only members larger than the hold limit are passed on before their
    checksum is verified). The record in progress is lost; the bytes after the marker come from
    the next member."""


CUT = _Cut()


def _decompressed_chunks(fileobj: BinaryIO, report: WetFileReport, hold: int) -> Iterator[bytes | _Cut]:
    """Raw bytes -> decompressed bytes; gzip (any number of members) or plain (`_looks_gzipped`).

    Bytes between two gzip members that are not a member are skipped up to the next gzip header
    (GARBAGE). A member that fails to decompress (bad deflate data, wrong checksum) costs only
    itself: it is counted (CORRUPT_GZIP) and reading resumes at the next member header after its
    start. A member's output is held back until its checksum is verified, unless it grows past
    `hold` bytes (then it is passed on as it comes, and a corruption found later yields CUT). A
    cut inside the last member ends the stream (InputError) after passing on what it decoded.
    """
    data = fileobj.read(READ_CHUNK)
    if not data:
        return
    if not _looks_gzipped(data):
        while data:
            yield data
            data = fileobj.read(READ_CHUNK)
        return
    while True:
        if len(data) < len(GZIP_MEMBER_START):  # a member may end right at the end of a read
            data += fileobj.read(READ_CHUNK)
            if not data:
                return
        if data.startswith(GZIP_MEMBER_START) or GZIP_MEMBER_START.startswith(data):
            data = yield from _gzip_member(data, fileobj, report, hold)
        else:
            report.skip(GARBAGE)
            data, skipped = _skip_to_gzip_member(data, 1, fileobj)
            report.garbage_bytes += skipped


def _looks_gzipped(head: bytes) -> bool:
    """Is this gzip? Yes if a gzip member in the first read decodes (the first member may be
    damaged, or garbage may come first)."""
    i = head.find(GZIP_MEMBER_START)
    for _ in range(8):
        if i < 0:
            return False
        inflater = zlib.decompressobj(wbits=31)
        try:
            out = inflater.decompress(head[i:], 4096)
        except zlib.error:
            out = None
        if out is not None and (out or inflater.eof or len(head) - i < 1024):  # or a short file cut early
            return True
        i = head.find(GZIP_MEMBER_START, i + 1)
    return False


def _gzip_member(data: bytes, fileobj: BinaryIO, report: WetFileReport, hold: int):
    """Decompress the gzip member that starts `data`, passing its output on; returns the
    compressed bytes after it (after the next member header, when it is corrupt)."""
    inflater = zlib.decompressobj(wbits=31)
    member: list[bytes] | None = [data]  # its compressed bytes, to resynchronise from its start
    member_size = len(data)
    held: list[bytes] = []
    held_size, passed = 0, False
    while True:
        try:
            out = inflater.decompress(data, MAX_INFLATE)
        except zlib.error:
            report.skip(CORRUPT_GZIP)
            if passed:
                yield CUT
            if member is not None:  # search from just after this member's header
                data, start = b"".join(member), 1
            else:  # too large to keep: search from where decoding failed
                start = 0
            data, _ = _skip_to_gzip_member(data, start, fileobj)
            return data
        if out:
            held.append(out)
            held_size += len(out)
            if held_size > hold:
                yield from held
                held, held_size, passed = [], 0, True
        if inflater.eof:  # checksum verified; the next member may follow in `unused_data`
            if held:
                yield b"".join(held)
            return inflater.unused_data
        data = inflater.unconsumed_tail
        if not data:
            data = fileobj.read(READ_CHUNK)
            if not data:  # the file ends inside this member: what it decoded is still right
                try:
                    held.append(inflater.flush())
                except zlib.error:
                    pass
                yield from (chunk for chunk in held if chunk)
                raise InputError("truncated gzip (the file ends inside a gzip member)")
            if member is not None:
                member.append(data)
                member_size += len(data)
                if member_size > hold:
                    member = None


def _skip_to_gzip_member(data: bytes, start: int, fileobj: BinaryIO) -> tuple[bytes, int]:
    """(bytes from the next gzip member header at or after `start`, bytes skipped before it)."""
    skipped = 0
    while True:
        i = data.find(GZIP_MEMBER_START, start)
        if i >= 0:
            return data[i:], skipped + i
        keep = data[-(len(GZIP_MEMBER_START) - 1) :]  # a header may straddle two reads
        skipped += len(data) - len(keep)
        more = fileobj.read(READ_CHUNK)
        if not more:
            return b"", skipped + len(keep)
        data, start = keep + more, 0


class _Stream:
    """A byte buffer over an iterator of chunks, addressed relative to the read position.

    `eof` is set at the end of the input, at a stream error (`error`, the file ends early), and
    at a CUT (`cut`: the bytes before it belong to a corrupt gzip member; `resume` drops them
    and reads on).
    """

    def __init__(self, chunks: Iterator[bytes | _Cut]):
        self._chunks = chunks
        self.buf = b""
        self.pos = 0
        self.eof = False
        self.cut = False
        self.error: str | None = None

    @property
    def broken(self) -> bool:
        """The buffered bytes end abnormally: an incomplete record in them is lost."""
        return self.error is not None or self.cut

    def available(self) -> int:
        return len(self.buf) - self.pos

    def fill(self) -> bool:
        """Append the next chunk; False at the end of the input, a stream error, or a CUT."""
        if self.eof:
            return False
        try:
            chunk = next(self._chunks)
        except StopIteration:
            self.eof = True
            return False
        except InputError as e:
            self.eof, self.error = True, str(e)
            return False
        if chunk is CUT:
            self.eof, self.cut = True, True
            return False
        self.buf = self.buf[self.pos :] + chunk
        self.pos = 0
        return True

    def resume(self) -> bool:
        """After a CUT: drop what is buffered and read on; False if there was no CUT."""
        if not self.cut:
            return False
        self.buf, self.pos, self.eof, self.cut = b"", 0, False, False
        return True

    def drop(self) -> None:
        """Discard everything buffered (an incomplete record at a broken end)."""
        self.pos = len(self.buf)

    def ensure(self, n: int) -> bool:
        while self.available() < n:
            if not self.fill():
                return False
        return True

    def find(self, needle: bytes, start: int = 0, limit: int | None = None) -> int:
        """Offset (from pos) of `needle`, reading on as needed; -1 if absent within `limit`."""
        searched = start
        while True:
            i = self.buf.find(needle, self.pos + searched)
            if i >= 0:
                return i - self.pos
            searched = max(start, self.available() - len(needle) + 1)
            if limit is not None and self.available() > limit:
                return -1
            if not self.fill():
                return -1

    def search(self, pattern: re.Pattern, start: int, limit: int) -> re.Match | None:
        """First regex match at or after pos+start within `limit` bytes; offsets are absolute."""
        searched = start
        while True:
            m = pattern.search(self.buf, self.pos + searched)
            if m is not None and m.start() - self.pos <= limit:
                return m
            if m is not None or self.available() > limit:
                return None
            searched = max(start, self.available() - BOUNDARY_LOOKAHEAD)
            if not self.fill():
                return None

    def readline(self, limit: int) -> bytes | None:
        """One line with its terminator (or the rest at EOF); None at EOF or past `limit`."""
        i = self.find(b"\n", 0, limit)
        if i < 0:
            if self.available() > limit or self.available() == 0:
                return None
            i = self.available() - 1
        line = self.buf[self.pos : self.pos + i + 1]
        self.pos += i + 1
        return line

    def peek(self, n: int) -> bytes:
        self.ensure(n)
        return self.buf[self.pos : self.pos + n]

    def take(self, n: int) -> bytes:
        out = self.buf[self.pos : self.pos + n]
        self.pos += len(out)
        return out

    def skip_blank_lines(self) -> None:
        while True:
            head = self.peek(2)
            if head.startswith(b"\n"):
                self.pos += 1
            elif head == b"\r\n":
                self.pos += 2
            else:
                return

    def skip_to_record_start(self) -> int:
        """Skip to the next `WARC/1.x` version line, wherever it starts (garbage need not end
        with a line end); returns the number of bytes skipped.

        Streams: memory stays bounded however much garbage there is.
        """
        skipped = 0
        while True:
            m = _VERSION_RE.search(self.buf, self.pos)
            if m is not None:
                skipped += m.start() - self.pos
                self.pos = m.start()
                return skipped
            keep = min(self.available(), VERSION_LINE_MAX - 1)  # it may straddle two chunks
            skipped += self.available() - keep
            self.pos = len(self.buf) - keep
            if not self.fill():
                skipped += self.available()
                self.pos = len(self.buf)
                return skipped


# -- records ----------------------------------------------------------------------------------


_HEADER_END_RE = re.compile(rb"\r?\n\r?\n")
_HEADER_NAME_RE = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # RFC 9110 token


def _parse_headers(stream: _Stream) -> tuple[dict[str, str] | None, str | None]:
    """Header lines up to the blank line, by name: (headers, None) or (None, skip reason).

    Called just after the version line. A bad header block is not consumed, so that the caller
    resynchronises from just after the version line (a record may start inside the block).
    """
    for blank in (b"\n", b"\r\n"):
        if stream.peek(len(blank)) == blank:  # no header at all
            stream.take(len(blank))
            return None, BAD_HEADER
    m = stream.search(_HEADER_END_RE, 0, MAX_HEADER_BYTES)
    if m is None:
        if stream.eof and stream.available() <= MAX_HEADER_BYTES:  # the input ends in the header
            stream.drop()
            return None, TRUNCATED_RECORD
        return None, BAD_HEADER
    headers = _header_fields(stream.buf[stream.pos : m.start()])
    if headers is None:
        return None, BAD_HEADER
    stream.pos = m.end()
    return headers, None


def _header_fields(block: bytes) -> dict[str, str] | None:
    """"Name: value" lines (folded lines joined) -> {lower-cased name: value}; None if any line
    is not a header or WARC-Type is missing."""
    headers: dict[str, str] = {}
    last = None
    for line in block.split(b"\n"):
        if line[:1] in (b" ", b"\t") and last is not None:  # folded continuation line
            headers[last] += " " + line.strip().decode("utf-8", "replace")
            continue
        name, sep, value = line.partition(b":")
        if not sep or not _HEADER_NAME_RE.fullmatch(name):
            return None
        last = name.decode("ascii").lower()
        headers[last] = value.strip().decode("utf-8", "replace")
    return headers if "warc-type" in headers else None


def _body_end_is_clean(stream: _Stream, length: int) -> bool:
    """Does a body of `length` bytes end where a record should: the next record, or EOF (after
    line ends), or a blank line - then only if no record starts inside the body (a
    Content-Length that is too long can end on a blank line of the next record's header).

    The end of a corrupt gzip member (a CUT) is not a clean end.
    """
    stream.ensure(length + BOUNDARY_LOOKAHEAD)
    after = stream.buf[stream.pos + length : stream.pos + length + BOUNDARY_LOOKAHEAD]
    at_end = stream.available() <= length + len(after)  # the lookahead holds the rest
    m = _NEXT_RECORD_RE.match(after)
    if m is not None and (m.end() < len(after) or at_end):
        return not (at_end and stream.cut)
    if _BLANK_LINE_RE.match(after) is None:
        return False
    return _VERSION_RE.search(stream.buf, stream.pos, stream.pos + length) is None


def _content_length(headers: dict[str, str]) -> int:
    """The declared body length; -1 when missing, not a number, or negative."""
    value = headers.get("content-length", "").strip()
    return int(value) if value.isascii() and value.isdigit() else -1


def _read_body(stream: _Stream, headers: dict[str, str], report: WetFileReport, limit: int) -> bytes | None:
    """The record block: Content-Length bytes if they end cleanly, else up to the next boundary.

    Bodies over `limit` bytes are skipped (RECORD_TOO_LARGE), without ever holding more than
    about `limit` bytes; a Content-Length over the limit that lies (the next record starts
    within it) is re-delimited like any wrong Content-Length.
    """
    length = _content_length(headers)
    if 0 <= length <= limit:
        stream.ensure(length + BOUNDARY_LOOKAHEAD)
        if stream.available() < length and stream.broken:
            return _lost(stream, report)
        if stream.available() >= length and _body_end_is_clean(stream, length):
            return stream.take(length)
    # Content-Length is missing, lies, or is over the limit: the body ends at the next boundary.
    end = _next_boundary(stream, limit)
    if end is not None:
        report.content_length_mismatch += 1
        return stream.take(end)
    if stream.broken:
        return _lost(stream, report)
    if stream.available() > limit:
        report.skip(RECORD_TOO_LARGE)
        stream.skip_to_record_start()
        return None
    body = stream.take(stream.available()).rstrip(b"\r\n")  # the last record of the input
    if length != len(body):
        report.content_length_mismatch += 1
    return body


def _next_boundary(stream: _Stream, limit: int) -> int | None:
    """Offset (from pos) where the body ends if the next record starts within `limit` bytes:
    before the line ends that precede its version line."""
    m = stream.search(_VERSION_RE, 0, limit)
    if m is None:
        return None
    end = m.start()
    while end > stream.pos and stream.buf[end - 1] in b"\r\n":
        end -= 1
    return end - stream.pos


def _lost(stream: _Stream, report: WetFileReport) -> None:
    """The input breaks off inside this record: drop it (counted, unless its gzip member was
    corrupt: that is counted once as CORRUPT_GZIP)."""
    if not stream.cut:
        report.skip(TRUNCATED_RECORD)
    stream.drop()
    return None


def iter_wet_records(
    fileobj: BinaryIO, name: str, report: WetFileReport | None = None, max_record_bytes: int = MAX_RECORD_BYTES
) -> Iterator[WetRecord]:
    """All WARC records of one (gzip or plain) byte stream; problems are counted in `report`.

    `name` is only used for the report. Records before any problem are always yielded; a
    corrupt gzip member or a stretch of garbage costs only the records inside it. Record
    bodies over `max_record_bytes` are skipped and counted (RECORD_TOO_LARGE).
    """
    if max_record_bytes < 1:
        raise ValueError(f"max_record_bytes must be >= 1, got {max_record_bytes}")
    report = report if report is not None else WetFileReport(name)
    hold = max_record_bytes + MAX_HEADER_BYTES + BOUNDARY_LOOKAHEAD
    stream = _Stream(_decompressed_chunks(fileobj, report, hold))
    index = 0
    while True:
        stream.skip_blank_lines()
        if not stream.ensure(1):
            if stream.resume():  # a corrupt gzip member ended here: read on after it
                continue
            break
        if not _VERSION_RE.match(stream.peek(VERSION_LINE_MAX)):
            report.skip(GARBAGE)
            report.garbage_bytes += stream.skip_to_record_start()
            continue
        stream.readline(VERSION_LINE_MAX)
        headers, problem = _parse_headers(stream)
        if headers is None:
            if problem == TRUNCATED_RECORD:
                _lost(stream, report)
            else:
                report.skip(problem)
                stream.skip_to_record_start()
            continue
        body = _read_body(stream, headers, report, max_record_bytes)
        if body is None:
            continue
        report.records += 1
        yield WetRecord(headers=headers, body=body, index=index)
        index += 1
    if stream.error:
        report.error = stream.error


# -- record -> Document -------------------------------------------------------------------------


def source_domain(url: str) -> str:
    """cc_net's `source_domain`: the URL's netloc as written, port and "www." included ("" if
    unparsable)."""
    try:
        return urlsplit(url).netloc
    except ValueError:
        return ""


def split_lines(text: str) -> list[str]:
    """cc_net's lines: universal newlines (as its text-mode reader), each line stripped.

    A final line terminator does not start an extra empty line.
    """
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    lines = text.split("\n")
    if len(lines) > 1 and lines[-1] == "":
        lines.pop()
    return [line.strip() for line in lines]


def decode_body(body: bytes) -> tuple[str, bool]:
    """UTF-8 text of a record and whether bytes had to be replaced (U+FFFD)."""
    try:
        return body.decode("utf-8"), False
    except UnicodeDecodeError:
        return body.decode("utf-8", "replace"), True


def record_to_document(record: WetRecord, segment: str) -> tuple[Document | None, str | None, bool]:
    """A `conversion` record -> Document, as cc_net: title = first line, raw_content = the rest.

    Returns (document, skip reason, invalid UTF-8). Records that carry no document give
    (None, "non_conversion" or MISSING_URL, False). Invalid UTF-8 is replaced, not dropped.
    """
    if record.warc_type != "conversion":
        return None, "non_conversion", False
    url = record.headers.get("warc-target-uri", "")
    if not url:
        return None, MISSING_URL, False
    text, invalid_utf8 = decode_body(record.body)
    lines = split_lines(text)
    raw_content = "\n".join(lines[1:])
    doc = Document(
        url=url,
        date_download=record.headers.get("warc-date", ""),
        digest=record.headers.get("warc-block-digest", ""),
        source_domain=source_domain(url),
        title=lines[0] if lines else "",
        raw_content=raw_content,
        length=len(raw_content),
        nlines=raw_content.count("\n") + 1,
        cc_segment=segment,
        record_offset=record.index,
        # cc_net's original_length, the WARC Content-Length: the body's bytes as delimited (the
        # same number, unless the header was missing or wrong and the body was re-delimited)
        original_length=len(record.body),
    )
    return doc, None, invalid_utf8


def documents_from_records(
    records: Iterable[WetRecord], segment: str, min_len: int, report: WetFileReport
) -> Iterator[Document]:
    """Conversion records -> Documents at least `min_len` characters long (cc_net's filter).

    An empty raw_content is never kept, even with min_len=0 (cc_net drops it in dedup).
    """
    for record in records:
        doc, reason, invalid_utf8 = record_to_document(record, segment)
        if reason == "non_conversion":
            report.non_conversion_records += 1
            continue
        report.conversion_records += 1
        report.invalid_utf8 += invalid_utf8
        if doc is None:
            report.skip(reason)
            continue
        if doc.length < max(min_len, 1):
            report.too_short += 1
            continue
        report.documents += 1
        yield doc


def read_wet_file(
    path: str, min_len: int, report: WetFileReport, max_record_bytes: int = MAX_RECORD_BYTES
) -> Iterator[Document]:
    """Every Document of one WET file, through Beam's FileSystems (local, gs://, ...).

    Never raises for bad content: an unreadable file ends with `report.error` set.
    """
    from apache_beam.io.filesystem import CompressionTypes
    from apache_beam.io.filesystems import FileSystems

    start = time.perf_counter()
    try:
        fileobj = FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED)
    except Exception as e:  # noqa: BLE001 - any filesystem error: report it, read the others
        report.error, report.unreadable = f"cannot open: {type(e).__name__}: {e}", True
        return
    try:
        records = iter_wet_records(fileobj, path, report, max_record_bytes)
        yield from documents_from_records(records, path, min_len, report)
    except OSError as e:
        report.error, report.unreadable = f"read failed: {type(e).__name__}: {e}", True
    finally:
        fileobj.close()
        report.seconds = time.perf_counter() - start
