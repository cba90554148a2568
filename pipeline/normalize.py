"""CCNet text normalisation: the one module every stage hashes and scores text with.

A faithful port of cc_net's `text_normalizer.py` (pure str -> str functions, tables and regexes
as module constants). Two entry points matter:

* `normalize_for_dedup(line)` - the key of paragraph deduplication: strip, lower-case, every
  digit -> "0", remove control characters and cc_net's Unicode punctuation. Accents are kept.
* `normalize(text)` - what KenLM/SentencePiece see: strip, lower-case, accents stripped,
  digits -> "0", Unicode punctuation *replaced* by ASCII, non-printing characters removed.
  Note that "\n" is a control character, so a multi-line document becomes one line (cc_net's
  behaviour, reproduced on purpose; see pipeline/quality/perplexity.py).

cc_net's bugs are not copied: its `strip_accents` compared a length with a string (harmless,
always took the slow path); the result here is the same.
"""

from __future__ import annotations

import functools
import hashlib
import re
import sys
import unicodedata

import numpy as np

UNICODE_PUNCT = {
    "，": ",",
    "。": ".",
    "、": ",",
    "„": '"',
    "”": '"',
    "“": '"',
    "«": '"',
    "»": '"',
    "１": '"',
    "」": '"',
    "「": '"',
    "《": '"',
    "》": '"',
    "´": "'",
    "∶": ":",
    "：": ":",
    "？": "?",
    "！": "!",
    "（": "(",
    "）": ")",
    "；": ";",
    "–": "-",
    "—": " - ",
    "．": ". ",
    "～": "~",
    "’": "'",
    "…": "...",
    "━": "-",
    "〈": "<",
    "〉": ">",
    "【": "[",
    "】": "]",
    "％": "%",
    "►": "-",
}
UNICODE_PUNCT_RE = re.compile("[" + "".join(UNICODE_PUNCT) + "]")

# Control characters: code points 0-31 and 127-159 ("\n" and "\t" included).
NON_PRINTING_CHARS = "".join(map(chr, [*range(0, 32), *range(127, 160)]))
NON_PRINTING_CHARS_RE = re.compile("[" + re.escape(NON_PRINTING_CHARS) + "]")
PUNCT_OR_NON_PRINTING_CHARS_RE = re.compile(
    "[" + "".join(UNICODE_PUNCT) + re.escape(NON_PRINTING_CHARS) + "]"
)
DIGIT_RE = re.compile(r"\d")  # Unicode digits, as cc_net (Arabic-Indic, Devanagari, ... -> "0")


def replace_unicode_punct(text: str) -> str:
    """Unicode punctuation -> ASCII. A regex finds the few characters to replace: 7x faster than
    `str.translate`, which looks up every character of the text in the table."""
    if text.isascii():
        return text
    return UNICODE_PUNCT_RE.sub(_ascii_punct, text)


def _ascii_punct(match: re.Match) -> str:
    return UNICODE_PUNCT[match.group()]


def remove_unicode_punct(text: str) -> str:
    return UNICODE_PUNCT_RE.sub("", text)


def slow_strip_accents(text: str) -> str:
    """The definition (cc_net's): NFD, then drop non-spacing marks (category Mn)."""
    nfd = unicodedata.normalize("NFD", text)
    return "".join(c for c in nfd if unicodedata.category(c) != "Mn")


@functools.cache
def _not_mn_table() -> np.ndarray:
    """Boolean table over all code points, False for category Mn (built once per process)."""
    keep = np.ones(sys.maxunicode + 1, dtype=bool)
    keep[[cp for cp in range(sys.maxunicode + 1) if unicodedata.category(chr(cp)) == "Mn"]] = False
    return keep


def strip_accents(text: str) -> str:
    """`slow_strip_accents` without a Python loop over characters (it was ~60% of `normalize`):
    the NFD text's code points index a table of non-spacing marks."""
    nfd = unicodedata.normalize("NFD", text)
    if nfd.isascii():
        return nfd
    try:
        codes = np.frombuffer(nfd.encode("utf-32-le"), dtype=np.uint32)
    except UnicodeEncodeError:  # lone surrogates cannot be encoded: the exact slow path
        return slow_strip_accents(text)
    keep = _not_mn_table()[codes]
    return nfd if keep.all() else codes[keep].tobytes().decode("utf-32-le")


def remove_non_printing_char(text: str) -> str:
    return NON_PRINTING_CHARS_RE.sub("", text)


def normalize(
    line: str, accent: bool = True, case: bool = True, numbers: bool = True, punct: int = 1
) -> str:
    """cc_net's `normalize`: the text KenLM and SentencePiece are trained on and score.

    punct=1 replaces Unicode punctuation with ASCII, punct=2 removes it, 0 keeps it.
    """
    line = line.strip()
    if not line:
        return line
    if case:
        line = line.lower()
    if accent:
        line = strip_accents(line)
    if numbers:
        line = DIGIT_RE.sub("0", line)
    if punct == 1:
        line = replace_unicode_punct(line)
    elif punct == 2:
        line = remove_unicode_punct(line)
    return remove_non_printing_char(line)


def slow_normalize_for_dedup(line: str) -> str:
    """The specification of `normalize_for_dedup`, built from the small pieces."""
    return normalize(line, accent=False, case=True, numbers=True, punct=2)


def normalize_for_dedup(line: str) -> str:
    """Fast path: one regex pass for punctuation and control characters."""
    line = line.strip()
    if not line:
        return line
    line = DIGIT_RE.sub("0", line.lower())
    return PUNCT_OR_NON_PRINTING_CHARS_RE.sub("", line)


def paragraph_hash(line: str) -> int:
    """cc_net's line hash: first 8 bytes of SHA-1 of the normalised UTF-8 line, as uint64.

    cc_net reinterprets the bytes with numpy's native (little-endian) uint64; so do we.
    """
    digest = hashlib.sha1(normalize_for_dedup(line).encode("utf-8", "surrogatepass")).digest()
    return int.from_bytes(digest[:8], "little")
