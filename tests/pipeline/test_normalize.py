"""normalize_for_dedup / paragraph_hash follow the issue's specification of cc_net's dedup key."""

from __future__ import annotations

import hashlib
import random

import numpy as np
import pytest

from pipeline.normalize import (
    NON_PRINTING_CHARS,
    UNICODE_PUNCT,
    normalize,
    normalize_for_dedup,
    paragraph_hash,
    replace_unicode_punct,
    slow_normalize_for_dedup,
    slow_strip_accents,
    strip_accents,
)

CCNET_PUNCT = "，。、„”“«»１」「《》´∶：？！（）；–—．～’…━〈〉【】％►"


@pytest.mark.parametrize(
    "line, expected",
    [
        # strip + lower-case
        ("  Hello World  ", "hello world"),
        # every digit -> 0, Unicode digits too (Arabic-Indic, Devanagari)
        ("Call 555-1234 in 2019", "call 000-0000 in 0000"),
        ("٢٠١٩ और २०२४", "0000 और 0000"),
        # cc_net's Unicode punctuation is removed; ASCII punctuation is kept
        ("你好，世界。「测试」【注意】", "你好世界测试注意"),
        ("«Bonjour» – dit-il… ¿qué?", "bonjour  dit-il ¿qué?"),
        ("don’t vs don't", "dont vs don't"),
        ("１００％ ！？", "000 "),  # fullwidth digits become 0 (digits first), then ％！？ go
        # control characters (0-31, 127-159) are removed, tab included
        ("a\x00b\x07c\x1fd\x7fe\x85f\x9fg\th", "abcdefgh"),
        # accents are kept (unlike `normalize`, which KenLM uses)
        ("Ünïcödé ÇA VA Straße", "ünïcödé ça va straße"),
        ("", ""),
        ("   \t  ", ""),
    ],
)
def test_normalize_for_dedup_on_hand_picked_lines(line, expected):
    assert normalize_for_dedup(line) == expected
    assert slow_normalize_for_dedup(line) == expected


def test_the_punctuation_and_control_sets_are_cc_nets():
    assert "".join(UNICODE_PUNCT) == CCNET_PUNCT
    assert [ord(c) for c in NON_PRINTING_CHARS] == [*range(0, 32), *range(127, 160)]
    for char in CCNET_PUNCT.replace("１", ""):  # "１" is a digit: it becomes "0"
        assert normalize_for_dedup(f"a{char}b") == "ab", repr(char)
    assert normalize_for_dedup("a１b") == "a0b"


def test_normalize_strips_accents_but_dedup_key_does_not():
    assert normalize("Ça Va") == "ca va"
    assert normalize_for_dedup("Ça Va") == "ça va"


def test_paragraph_hash_is_first_8_bytes_of_sha1_as_native_uint64():
    line = "Hello, World 2019！"
    key = normalize_for_dedup(line).encode("utf-8")
    digest = hashlib.sha1(key).digest()
    # cc_net: np.frombuffer(sha1[:8]) reinterpreted as uint64 (little-endian machines)
    assert paragraph_hash(line) == int(np.frombuffer(digest[:8], dtype="<u8")[0])
    assert 0 <= paragraph_hash(line) < 2**64


def test_lines_that_differ_only_in_case_digits_punct_hash_equal():
    assert paragraph_hash("Copyright 2019 «Acme»") == paragraph_hash("  COPYRIGHT 1984 Acme ")
    assert paragraph_hash("café") != paragraph_hash("cafe")  # accents matter


def test_fast_path_matches_specification_on_real_and_random_text(shared_data):
    lines = []
    for name in ("zh", "ja", "ar", "hi", "ru", "de", "th"):
        text = (shared_data / "reference_leipzig" / f"{name}.txt").read_text(encoding="utf-8")
        lines += text.splitlines()[:200]
    rng = random.Random(0)
    alphabet = CCNET_PUNCT + NON_PRINTING_CHARS + "aZ09 ٣é\u00a0\u2028'\"-."
    lines += ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 30))) for _ in range(2000)]
    mismatches = [line for line in lines if normalize_for_dedup(line) != slow_normalize_for_dedup(line)]
    assert mismatches == []


def test_strip_accents_matches_its_definition_on_every_language(shared_data):
    """The table-based strip_accents equals cc_net's per-character definition (NFD, drop Mn)."""
    texts = [p.read_text(encoding="utf-8") for p in sorted((shared_data / "reference_leipzig").glob("*.txt"))]
    assert len(texts) > 50
    for text in texts:
        for line in text.splitlines()[:300]:
            assert strip_accents(line) == slow_strip_accents(line), line
    rng = random.Random(1)
    marks = "\u0301\u0308\u0327\u093f\u0e34\u05b7\u064e"  # combining marks of several scripts
    alphabet = marks + "aeioucnAÉÑçøß ͅ\ud800日本ा"  # ͅ (U+0345) is Mn; a lone surrogate too
    for _ in range(2000):
        s = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 20)))
        assert strip_accents(s) == slow_strip_accents(s), repr(s)


@pytest.mark.parametrize("text, expected", [
    ("déjà vu", "deja vu"), ("Ñandú", "Nandu"), ("Ωμέγα", "Ωμεγα"), ("plain", "plain"), ("", ""),
    ("हिन्दी", "हिनदी"),  # the virama is a non-spacing mark (dropped); vowel signs are Mc (kept)
])
def test_strip_accents_by_hand(text, expected):
    assert strip_accents(text) == expected


def test_replace_unicode_punct_equals_the_translation_table(shared_data):
    """The regex-based replacement equals cc_net's definition: str.translate with the table."""
    table = str.maketrans(UNICODE_PUNCT)
    lines = []
    for name in ("zh", "ja", "fr", "de", "ru", "en"):
        text = (shared_data / "reference_leipzig" / f"{name}.txt").read_text(encoding="utf-8")
        lines += text.splitlines()[:300]
    rng = random.Random(2)
    alphabet = CCNET_PUNCT + "aZ09 é日\ud800'\"-."
    lines += ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 30))) for _ in range(2000)]
    assert sum(line != line.translate(table) for line in lines) > 500  # the test sees replacements
    assert [replace_unicode_punct(line) for line in lines] == [line.translate(table) for line in lines]
