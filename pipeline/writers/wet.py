"""Common Crawl WET files, written: a `warcinfo` record, then `conversion` records, one gzip member each.

Pure and deterministic -- the caller gives every date and record id, and gzip members carry
mtime 0 -- for the offline demo input (pipeline/demo.py) and the benchmarks' synthetic input
(bench/synth_wet.py); pipeline/readers/wet.py reads them like Common Crawl's own. Two header
layouts, as Common Crawl wrote them:

* "2019" (CC-MAIN-2019-30; cc_net's positional parser relies on it): Content-Type then
  Content-Length last;
* "2024": the warcinfo record adds WARC-Block-Digest; a conversion record adds
  WARC-Identified-Content-Language (ISO 639-3 codes, when known) before Content-Type and
  WARC-Payload-Digest after Content-Length.
"""

from __future__ import annotations

import base64
import hashlib
import random
import uuid
import zlib
from collections.abc import Iterable, Sequence

LAYOUTS = ("2019", "2024")


def block_digest(payload: bytes) -> str:
    """WARC-Block-Digest as Common Crawl writes it: the base32 SHA-1 of the record's payload."""
    return "sha1:" + base64.b32encode(hashlib.sha1(payload).digest()).decode("ascii")


def record_id(rng: random.Random) -> str:
    """A WARC-Record-ID drawn from `rng` (a UUID4 URN), so a seed gives the same ids."""
    return f"<urn:uuid:{uuid.UUID(int=rng.getrandbits(128), version=4)}>"


def warc_record(headers: Sequence[tuple[str, str]], payload: bytes) -> bytes:
    """One WARC/1.0 record: the headers in the order given, the payload, the blank-line trailer."""
    head = "WARC/1.0\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers) + "\r\n"
    return head.encode("utf-8") + payload + b"\r\n\r\n"


def _check_layout(layout: str) -> None:
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")


def warcinfo_record(filename: str, date: str, record: str, fields: Sequence[tuple[str, str]],
                    layout: str = "2019") -> bytes:
    """The `warcinfo` record that opens a WET file; `fields` are its payload ("name: value" lines)."""
    _check_layout(layout)
    payload = "".join(f"{k}: {v}\r\n" for k, v in fields).encode("utf-8")
    headers = [
        ("WARC-Type", "warcinfo"),
        ("WARC-Date", date),
        ("WARC-Filename", filename),
        ("WARC-Record-ID", record),
        ("Content-Type", "application/warc-fields"),
        ("Content-Length", str(len(payload))),
    ]
    if layout == "2024":
        headers.append(("WARC-Block-Digest", block_digest(payload)))
    return warc_record(headers, payload)


def conversion_record(url: str, date: str, record: str, refers_to: str, text: str,
                      layout: str = "2019", languages: Iterable[str] = ()) -> bytes:
    """One page's extracted text; `languages` (ISO 639-3) are written in the 2024 layout only."""
    _check_layout(layout)
    payload = text.encode("utf-8")
    digest = block_digest(payload)
    headers = [
        ("WARC-Type", "conversion"),
        ("WARC-Target-URI", url),
        ("WARC-Date", date),
        ("WARC-Record-ID", record),
        ("WARC-Refers-To", refers_to),
        ("WARC-Block-Digest", digest),
    ]
    languages = list(languages)
    if layout == "2024" and languages:
        headers.append(("WARC-Identified-Content-Language", ",".join(languages)))
    headers += [("Content-Type", "text/plain"), ("Content-Length", str(len(payload)))]
    if layout == "2024":
        headers.append(("WARC-Payload-Digest", digest))
    return warc_record(headers, payload)


def gzip_member(record: bytes, level: int = 9) -> bytes:
    """One gzip member (mtime 0, so the same record gives the same bytes)."""
    return zlib.compress(record, level=level, wbits=31)


def wet_bytes(records: Iterable[bytes], level: int = 9) -> bytes:
    """A WET file's bytes: one gzip member per record, as Common Crawl writes them."""
    return b"".join(gzip_member(record, level) for record in records)
