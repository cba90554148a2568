"""MinHash near-duplicate document removal (`--near-dedup`): pure helpers and `NearDedup`.

Paragraph dedup (pipeline/dedup/paragraphs.py) removes exact repeats; a page copied with a few words
changed (a date, a name, a price) keeps all its paragraphs. This optional stage, run after it,
drops documents whose shingle sets are nearly equal (Jaccard >= threshold, default 0.8).

Per document (pure functions, numpy-vectorised, deterministic in every process):
  1. text: each line through `normalize_for_dedup` (cc_net's dedup key: lower case, digits -> 0),
     lines joined by spaces, Unicode punctuation and symbols removed;
  2. shingles: n-grams (default 5) of words, or of characters for text written without spaces
     (unit="auto": characters when >= 30% of the letters are Han/kana/Thai/Lao/Khmer/Myanmar/
     Tibetan, or the mean space-separated token is longer than 15 characters);
  3. MinHash: `num_perm` (112) seeded 64-bit permutations (splitmix64 of shingle XOR seed),
     the minimum per permutation; no Python `hash()`, so every worker gets the same numbers;
  4. LSH: `bands` (14) band keys of `rows` (8) values each. A pair with Jaccard s shares a
     band key with probability 1 - (1 - s^rows)^bands (the S-curve, `candidate_probability`).

Semantics (chosen, and independent of how documents are split over workers): a document is
dropped iff it has a *verified* near-duplicate (estimated Jaccard from the full signatures
>= threshold, among the candidates of its band buckets) with a smaller key
(cc_segment, record_offset). The smallest document of every cluster therefore survives. This is
not union-find over components: in a chain A~B~C with A !~ C all of B and C go (same as
components), but with A~C, B~C, A !~ B (A<B<C) B is kept where components would drop it.

How it scales (no global set; as pipeline/dedup/paragraphs.py, everything goes through the shuffle):
  1. `GroupByKey` on band keys ((band, 64-bit hash)) -> buckets of document keys, no text;
  2. in each bucket with >= 2 members, each member is paired with the bucket's `anchors` (8)
     smallest keys that are smaller than itself; two passes over the grouped values keep
     O(anchors) in memory, so a boilerplate bucket of n pages yields n*anchors pairs, not n^2.
     Buckets of <= anchors+1 members are compared exhaustively;
  3. `CoGroupByKey` joins each candidate with its signature, then with the anchor's signature,
     and checks the estimated Jaccard (signatures are 896-byte strings, shipped twice);
  4. a last `CoGroupByKey` joins each document with its "dropped" marks.
"""

from __future__ import annotations

import dataclasses
import hashlib
import heapq
import re
import sys
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import lru_cache

import apache_beam as beam
import numpy as np
from apache_beam.metrics import Metrics

from pipeline.utils.cliflags import option
from pipeline.normalize import normalize_for_dedup
from pipeline.schema import Document

NAMESPACE = "cc100"
UNITS = ("auto", "word", "char")

DocKey = tuple[str, int]  # Document.key: (cc_segment, record_offset)

# Scripts written without spaces between words: shingle them by characters.
NO_SPACE_SCRIPTS_RE = re.compile(
    "[\u0e00-\u0eff"  # Thai, Lao
    "\u0f00-\u0fff"  # Tibetan
    "\u1000-\u109f"  # Myanmar
    "\u1780-\u17ff"  # Khmer
    "\u3040-\u30ff"  # Hiragana, Katakana
    "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"  # Han
    "\U00020000-\U0003134f]"
)
CHAR_SCRIPT_SHARE = 0.3  # unit="auto": chars when at least this share of letters is such a script
CHAR_MEAN_TOKEN_LEN = 15.0  # ... or when space-separated tokens are this long on average

_U64 = np.uint64
_M1, _M2 = _U64(0xBF58476D1CE4E5B9), _U64(0x94D049BB133111EB)
_GOLDEN = _U64(0x9E3779B97F4A7C15)
_S30, _S27, _S31 = _U64(30), _U64(27), _U64(31)
_UNIT_SALT = {"word": _U64(0x5A17_0000_0000_0001), "char": _U64(0xC4A2_0000_0000_0002)}
_SHINGLE_BLOCK = 2048  # shingles per block of the (shingles x permutations) matrix


# -- configuration --------------------------------------------------------------------------


def bands_from_flag(bands: int) -> int | None:
    """--near-dedup-bands 0 (the flag's "chosen from the threshold") -> None."""
    return bands or None


@dataclass(frozen=True)
class NearDedupConfig:
    threshold: float = option(  # estimated Jaccard at or above which two documents are near-duplicates
        "--near-dedup-threshold", default=0.8, metavar="J", help="Jaccard threshold (default %(default)s)")
    num_perm: int = option(  # MinHash permutations = bands * rows
        "--near-dedup-num-perm", default=112, metavar="N", help="MinHash permutations (default %(default)s)")
    bands: int | None = option(  # LSH bands; None = chosen from the threshold (`optimal_bands`)
        "--near-dedup-bands", default=14, metavar="B", convert=bands_from_flag,
        help="LSH bands, must divide --near-dedup-num-perm (default 14 = 8 rows); 0: chosen from the threshold")
    ngram: int = option(  # shingle length, in words or characters
        "--near-dedup-ngram", default=5, metavar="N",
        help="shingle length in words or characters (default %(default)s)")
    unit: str = option(  # auto | word | char
        "--near-dedup-unit", default="auto", choices=UNITS,
        help="word, char, or auto: characters for Han/kana/Thai/... text (default)")
    anchors: int = 8  # per band bucket, members compared with up to this many smallest keys
    seed: int = 1  # seeds the permutations; changing it changes every signature

    def __post_init__(self):
        if not 0.0 < self.threshold <= 1.0:
            raise ValueError(f"threshold: must be in (0, 1], got {self.threshold}")
        if self.num_perm < 1:
            raise ValueError(f"num_perm: must be >= 1, got {self.num_perm}")
        if self.bands is not None and not (1 <= self.bands <= self.num_perm and self.num_perm % self.bands == 0):
            raise ValueError(f"bands: must divide num_perm={self.num_perm}, got {self.bands}")
        if self.ngram < 1:
            raise ValueError(f"ngram: must be >= 1, got {self.ngram}")
        if self.unit not in UNITS:
            raise ValueError(f"unit: must be one of {', '.join(UNITS)}, got {self.unit!r}")
        if self.anchors < 1:
            raise ValueError(f"anchors: must be >= 1, got {self.anchors}")
        if not 0 <= self.seed < 2**64:
            raise ValueError(f"seed: must be in [0, 2^64), got {self.seed}")

    @property
    def banding(self) -> tuple[int, int]:
        """(bands, rows) actually used; rows * bands <= num_perm."""
        if self.bands is None:
            return optimal_bands(self.threshold, self.num_perm)
        return self.bands, self.num_perm // self.bands


# -- the S-curve ------------------------------------------------------------------------------


def candidate_probability(s, bands: int, rows: int):
    """P(a pair with Jaccard s shares at least one band key) = 1 - (1 - s^rows)^bands."""
    return 1.0 - (1.0 - np.asarray(s, dtype=float) ** rows) ** bands


@lru_cache(maxsize=64)
def optimal_bands(threshold: float, num_perm: int, fp_weight: float = 0.5) -> tuple[int, int]:
    """(bands, rows) with bands*rows <= num_perm minimising the weighted area of false positives
    (P(candidate) for s < threshold) and false negatives (1 - P for s >= threshold), as
    datasketch's `_optimal_param`. Ties go to more permutations used, then fewer bands."""
    best, best_key = (1, num_perm), None
    for b in range(1, num_perm + 1):
        for r in range(1, num_perm // b + 1):
            lo = np.linspace(0.0, threshold, 201)
            hi = np.linspace(threshold, 1.0, 201)
            fp = np.trapezoid(candidate_probability(lo, b, r), lo)
            fn = np.trapezoid(1.0 - candidate_probability(hi, b, r), hi)
            key = (round(fp_weight * fp + (1 - fp_weight) * fn, 12), -b * r, b)
            if best_key is None or key < best_key:
                best, best_key = (b, r), key
    return best


# -- shingles and signatures ------------------------------------------------------------------


@lru_cache(maxsize=1)
def _strip_table() -> dict[int, str]:
    """Unicode punctuation (P*) and symbols (S*) -> space, for str.translate (faster here than
    a regex class of 8,000 characters); built once per process (~0.2 s)."""
    return {cp: " " for cp in range(sys.maxunicode + 1) if unicodedata.category(chr(cp))[0] in "PS"}


def shingle_text(raw_content: str) -> str:
    """The text shingles are taken from: every line normalised as for paragraph dedup, lines
    joined by a space (normalize_for_dedup drops "\\n"), punctuation and symbols -> space."""
    text = " ".join(normalize_for_dedup(line) for line in raw_content.split("\n"))
    return text.translate(_strip_table())


def choose_unit(text: str, unit: str = "auto") -> str:
    """"word" or "char" for `text` (already through `shingle_text`); see the module docstring."""
    if unit != "auto":
        return unit
    tokens = text.split()
    if not tokens:
        return "word"
    letters = sum(map(len, tokens))
    if len(NO_SPACE_SCRIPTS_RE.findall(text)) >= CHAR_SCRIPT_SHARE * letters:
        return "char"
    return "char" if letters / len(tokens) > CHAR_MEAN_TOKEN_LEN else "word"


def mix64(z: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: a bijection of uint64 with good avalanche (wraps mod 2^64)."""
    z = (z ^ (z >> _S30)) * _M1
    z = (z ^ (z >> _S27)) * _M2
    return z ^ (z >> _S31)


_WORD_CACHE: dict[str, int] = {}  # word -> hash, per process; frequent words are hashed once
_WORD_CACHE_MAX = 1 << 18  # cleared when full (~40 MB)


def _word_hash(word: str) -> int:
    digest = hashlib.blake2b(word.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def token_hashes(text: str, unit: str) -> np.ndarray:
    """uint64 per token: blake2b-64 of each word, or the mixed code point of each non-space
    character (salted by unit, so a word never collides with a character)."""
    if unit == "char":
        chars = "".join(text.split())
        codes = np.frombuffer(chars.encode("utf-32-le", "surrogatepass"), dtype="<u4").astype(np.uint64)
        return mix64(codes ^ _UNIT_SALT["char"])
    cache = _WORD_CACHE
    if len(cache) > _WORD_CACHE_MAX:
        cache.clear()
    hashes = [cache[w] if w in cache else cache.setdefault(w, _word_hash(w)) for w in text.split()]
    return np.array(hashes, dtype=np.uint64) ^ _UNIT_SALT["word"]


def shingle_hashes(tokens: np.ndarray, ngram: int) -> np.ndarray:
    """Distinct uint64 hashes of the n-grams of `tokens` (one n-gram of all tokens when there are
    fewer than `ngram`; none when there are no tokens). Order-sensitive: a b != b a."""
    n = min(ngram, len(tokens))
    if n == 0:
        return np.empty(0, dtype=np.uint64)
    count = len(tokens) - n + 1
    acc = np.full(count, _U64(n), dtype=np.uint64)
    for i in range(n):
        acc = mix64(acc ^ tokens[i : i + count])
    return np.unique(acc)


@lru_cache(maxsize=16)
def permutation_seeds(num_perm: int, seed: int = 1) -> np.ndarray:
    """One uint64 per MinHash permutation, derived from `seed` (same in every process)."""
    base = mix64(np.array([seed], dtype=np.uint64) ^ _GOLDEN)
    seeds = mix64(base + np.arange(1, num_perm + 1, dtype=np.uint64) * _GOLDEN)
    seeds.setflags(write=False)
    return seeds


def minhash(shingles: np.ndarray, num_perm: int, seed: int = 1) -> np.ndarray:
    """MinHash signature (uint64[num_perm]): permutation i is x -> mix64(x ^ seed_i)."""
    if len(shingles) == 0:
        raise ValueError("minhash: no shingles")
    seeds = permutation_seeds(num_perm, seed)
    sig = np.full(num_perm, np.iinfo(np.uint64).max, dtype=np.uint64)
    for start in range(0, len(shingles), _SHINGLE_BLOCK):
        block = shingles[start : start + _SHINGLE_BLOCK]
        np.minimum(sig, mix64(block[:, None] ^ seeds[None, :]).min(axis=0), out=sig)
    return sig


def signature(raw_content: str, config: NearDedupConfig) -> np.ndarray | None:
    """The document's MinHash signature; None when its text has no token (nothing to compare)."""
    text = shingle_text(raw_content)
    unit = choose_unit(text, config.unit)
    shingles = shingle_hashes(token_hashes(text, unit), config.ngram)
    if len(shingles) == 0:
        return None
    bands, rows = config.banding
    return minhash(shingles, bands * rows, config.seed)


def band_keys(sig: np.ndarray, bands: int, rows: int) -> list[tuple[int, int]]:
    """(band, int64 hash of the band's rows) for each band: equal keys = equal band values."""
    data = np.ascontiguousarray(sig[: bands * rows], dtype="<u8")
    keys = []
    for b in range(bands):
        digest = hashlib.blake2b(data[b * rows : (b + 1) * rows].tobytes(), digest_size=8).digest()
        keys.append((b, int.from_bytes(digest, "little", signed=True)))
    return keys


def estimated_jaccard(a: np.ndarray, b: np.ndarray) -> float:
    """Share of permutations whose minima agree: an unbiased estimate of the Jaccard index."""
    return float(np.count_nonzero(a == b)) / len(a)


def to_bytes(sig: np.ndarray) -> bytes:
    return np.ascontiguousarray(sig, dtype="<u8").tobytes()


def from_bytes(data: bytes) -> np.ndarray:
    return np.frombuffer(data, dtype="<u8")


def bucket_pairs(members: Iterable[DocKey], anchors: int) -> Iterator[tuple[DocKey, DocKey]]:
    """(member, anchor) candidate pairs of one band bucket: each member with every one of the
    `anchors` smallest keys below it. Iterates `members` twice; holds only the anchors."""
    smallest = heapq.nsmallest(anchors + 1, members)
    if len(smallest) < 2:
        return
    for member in members:
        for anchor in smallest[:anchors]:
            if anchor < member:
                yield member, anchor


# -- Beam wiring ------------------------------------------------------------------------------


class _SignFn(beam.DoFn):
    """Document -> (key, signature bytes) on the main output, (band key, doc key) on "bands"."""

    def __init__(self, config: NearDedupConfig):
        self.config = config
        self.docs_in = Metrics.counter(NAMESPACE, "near_dup_docs_in")
        self.no_shingles = Metrics.counter(NAMESPACE, "near_dup_docs_without_shingles")

    def setup(self):
        _strip_table()  # build the table once per worker, not inside the first bundle's timing

    def process(self, doc: Document):
        self.docs_in.inc()
        sig = signature(doc.raw_content, self.config)
        if sig is None:
            self.no_shingles.inc()  # kept: it cannot be compared with anything
            return
        key = doc.key
        yield key, to_bytes(sig)
        for band_key in band_keys(sig, *self.config.banding):
            yield beam.pvalue.TaggedOutput("bands", (band_key, key))


class _BucketPairsFn(beam.DoFn):
    def __init__(self, anchors: int):
        self.anchors = anchors
        self.buckets = Metrics.counter(NAMESPACE, "near_dup_buckets_shared")

    def process(self, element):
        _, members = element
        shared = False
        for member, anchor in bucket_pairs(members, self.anchors):
            shared = True
            yield member, anchor
        if shared:
            self.buckets.inc()


class _AttachMemberSignatureFn(beam.DoFn):
    """(member, {sig, anchors}) -> (anchor, (member, member's signature)), once per distinct pair."""

    def __init__(self):
        self.candidates = Metrics.counter(NAMESPACE, "near_dup_candidates")

    def process(self, element):
        member, joined = element
        anchors = set(joined["anchors"])  # the same pair may come from several bands
        if not anchors:
            return
        sig = next(iter(joined["sig"]))
        self.candidates.inc(len(anchors))
        for anchor in sorted(anchors):
            yield anchor, (member, sig)


class _VerifyFn(beam.DoFn):
    """(anchor, {sig, probes}) -> member keys whose estimated Jaccard with the anchor >= threshold."""

    def __init__(self, threshold: float):
        self.threshold = threshold
        self.verified = Metrics.counter(NAMESPACE, "near_dup_pairs_verified")

    def process(self, element):
        _, joined = element
        anchor_sig = from_bytes(next(iter(joined["sig"])))
        for member, member_sig in joined["probes"]:
            if estimated_jaccard(anchor_sig, from_bytes(member_sig)) >= self.threshold:
                self.verified.inc()
                yield member, True


class _DropMarkedFn(beam.DoFn):
    def __init__(self):
        self.removed = Metrics.counter(NAMESPACE, "near_dup_docs_removed")
        self.docs_out = Metrics.counter(NAMESPACE, "documents_after_near_dedup")

    def process(self, element):
        _, joined = element
        dropped = any(True for _ in joined["dropped"])
        for doc in joined["doc"]:
            if dropped:
                self.removed.inc()
            else:
                self.docs_out.inc()
                yield doc


class NearDedup(beam.PTransform):
    """Documents -> documents without near-duplicates (see the module docstring).

    Keyword arguments are the fields of `NearDedupConfig` (or pass `config=`).
    """

    def __init__(self, config: NearDedupConfig | None = None, **kwargs):
        super().__init__()
        if config is not None and kwargs:
            raise ValueError("NearDedup: give either config or keyword arguments, not both")
        config = config or NearDedupConfig(**kwargs)
        bands, rows = config.banding  # bands=None: resolved once here, not per document
        self.config = dataclasses.replace(config, bands=bands, num_perm=bands * rows)

    def expand(self, docs):
        config = self.config
        keyed = docs | "KeyByDocument" >> beam.Map(lambda d: (d.key, d))
        signed = docs | "MinHash" >> beam.ParDo(_SignFn(config)).with_outputs("bands", main="sigs")
        sigs = signed.sigs
        pairs = (
            signed.bands
            | "GroupByBandKey" >> beam.GroupByKey()
            | "PairWithAnchors" >> beam.ParDo(_BucketPairsFn(config.anchors))
        )
        probes = (
            {"sig": sigs, "anchors": pairs}
            | "JoinMemberSignature" >> beam.CoGroupByKey()
            | "DistinctCandidates" >> beam.ParDo(_AttachMemberSignatureFn())
        )
        dropped = (
            {"sig": sigs, "probes": probes}
            | "JoinAnchorSignature" >> beam.CoGroupByKey()
            | "VerifyJaccard" >> beam.ParDo(_VerifyFn(config.threshold))
        )
        return (
            {"doc": keyed, "dropped": dropped}
            | "JoinDocumentsWithMarks" >> beam.CoGroupByKey()
            | "DropNearDuplicates" >> beam.ParDo(_DropMarkedFn())
        )

