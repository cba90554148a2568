"""MinHash near-duplicate removal: the estimator and the S-curve on random sets, shingling,
and NearDedup against an all-pairs reference (one process and two worker processes), on
documents built from real reference text."""

from __future__ import annotations

import os
import random
import subprocess
import sys

import apache_beam as beam
import numpy as np
import pytest
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.runners.portability.fn_api_runner import FnApiRunner
from apache_beam.testing.util import assert_that, equal_to

from pipeline.dedup.near import (
    NearDedup,
    NearDedupConfig,
    band_keys,
    bucket_pairs,
    candidate_probability,
    choose_unit,
    estimated_jaccard,
    minhash,
    optimal_bands,
    shingle_hashes,
    shingle_text,
    signature,
    token_hashes,
)
from pipeline.options import CorpusConfig, make_runner, pipeline_options
from pipeline.schema import Document
from tests.conftest import REPO_ROOT
from tests.pipeline.corpus_helpers import segment_doc as doc




def reference_drops(docs: list[Document], config: NearDedupConfig) -> set[tuple[str, int]]:
    """The documented semantics, all pairs on one machine: a document goes iff another with a
    smaller key shares a band key with it and has estimated Jaccard >= threshold."""
    bands, rows = config.banding
    sigs = {d.key: signature(d.raw_content, config) for d in docs}
    bkeys = {k: set(band_keys(s, bands, rows)) for k, s in sigs.items() if s is not None}
    return {
        a for a in bkeys for b in bkeys
        if b < a and bkeys[a] & bkeys[b] and estimated_jaccard(sigs[a], sigs[b]) >= config.threshold
    }


def random_shingle_sets(rng: np.random.Generator, jaccard: float, union: int = 400):
    """Two sets of distinct random uint64 with exactly round(jaccard * union) common elements."""
    values = np.unique(rng.integers(0, 2**64 - 1, size=union + 50, dtype=np.uint64))[:union]
    rng.shuffle(values)
    common = int(round(jaccard * union))
    rest = values[common:]
    half = len(rest) // 2
    a = np.concatenate([values[:common], rest[:half]])
    b = np.concatenate([values[:common], rest[half:]])
    return a, b, common / union


def word(rng: random.Random) -> str:
    """A random lower-case word (no digits: normalisation maps every digit to 0)."""
    return "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(3, 9)))


def changed_words(text: str, k: int, rng: random.Random) -> str:
    """`text` with `k` words (spread out, not the first or last) replaced by new ones."""
    lines = [line.split(" ") for line in text.split("\n")]
    where = [(i, j) for i, ws in enumerate(lines) for j in range(len(ws))]
    for idx in rng.sample(range(5, len(where) - 5), k):
        i, j = where[idx]
        lines[i][j] = "zq" + word(rng)
    return "\n".join(" ".join(ws) for ws in lines)


def take_words(lines: list[str], start: int, n_words: int) -> tuple[str, int]:
    """Consecutive sentences from `start` until about `n_words` words; (text, next start)."""
    out, count, i = [], 0, start
    while count < n_words:
        out.append(lines[i])
        count += len(lines[i].split())
        i += 1
    return "\n".join(out), i


def counters(result, step_prefix: str = "") -> dict[str, int]:
    out: dict[str, int] = {}
    for c in result.metrics().query(MetricsFilter().with_namespace("cc100"))["counters"]:
        if c.key.step.startswith(step_prefix):
            out[c.key.metric.name] = out.get(c.key.metric.name, 0) + int(c.committed or 0)
    return out


# -- configuration and the S-curve ------------------------------------------------------------


@pytest.mark.parametrize("kwargs, field", [
    ({"threshold": 0}, "threshold"), ({"threshold": 1.5}, "threshold"), ({"num_perm": 0}, "num_perm"),
    ({"bands": 5}, "bands"), ({"bands": 0}, "bands"), ({"ngram": 0}, "ngram"), ({"unit": "byte"}, "unit"),
    ({"anchors": 0}, "anchors"), ({"seed": -1}, "seed"),
])
def test_config_rejects_bad_values_naming_the_field(kwargs, field):
    with pytest.raises(ValueError, match=f"^{field}:"):
        NearDedupConfig(**kwargs)
    with pytest.raises(ValueError, match=f"^{field}:"):
        NearDedup(**kwargs)


def test_candidate_probability_is_the_s_curve():
    b, r = NearDedupConfig().banding
    assert (b, r) == (14, 8)
    at_threshold = float(candidate_probability(0.8, b, r))
    assert at_threshold == pytest.approx(1 - (1 - 0.8**8) ** 14) and 0.92 < at_threshold < 0.93
    s = np.linspace(0, 1, 101)
    p = candidate_probability(s, b, r)
    assert p[0] == 0 and p[-1] == 1 and np.all(np.diff(p) >= 0)
    assert float(candidate_probability(0.5, b, r)) < 0.06  # unrelated-ish pairs rarely meet
    # the steepest point is near (1/b)^(1/r)
    assert abs(s[np.argmax(np.diff(p))] - (1 / b) ** (1 / r)) < 0.03


def test_share_of_pairs_meeting_in_a_band_follows_the_s_curve():
    rng = np.random.default_rng(3)
    b, r, n = 14, 8, 300
    for jaccard in (0.6, 0.75, 0.8):
        met = 0
        for _ in range(n):
            a, c, exact = random_shingle_sets(rng, jaccard, union=200)
            met += bool(set(band_keys(minhash(a, b * r), b, r)) & set(band_keys(minhash(c, b * r), b, r)))
        expected = float(candidate_probability(exact, b, r))
        sd = (expected * (1 - expected) / n) ** 0.5
        assert abs(met / n - expected) < 4 * sd + 0.01, (jaccard, met / n, expected)


def test_optimal_bands_beats_the_alternatives_on_its_own_objective():
    def error(b, r, t):  # the same weighted FP + FN areas, by a Riemann sum
        lo, hi = np.linspace(0, t, 4001), np.linspace(t, 1, 4001)
        fp = candidate_probability(lo, b, r).mean() * t
        fn = (1 - candidate_probability(hi, b, r)).mean() * (1 - t)
        return 0.5 * fp + 0.5 * fn

    for t in (0.7, 0.8, 0.9):
        b, r = optimal_bands(t, 112)
        assert b * r <= 112
        for alt in [(14, 8), (8, 14), (28, 4), (1, 112), (112, 1), (16, 7)]:
            assert error(b, r, t) <= error(*alt, t) + 1e-4, (t, (b, r), alt)
    config = NearDedupConfig(bands=None)
    assert config.banding == optimal_bands(0.8, 112)
    assert NearDedup(bands=None).config.num_perm == np.prod(optimal_bands(0.8, 112))


# -- MinHash ------------------------------------------------------------------------------------


def test_estimated_jaccard_is_close_to_the_true_jaccard_on_random_sets():
    rng = np.random.default_rng(11)
    errors = []
    for jaccard in np.linspace(0.05, 0.95, 19):
        for _ in range(10):
            a, b, exact = random_shingle_sets(rng, jaccard)
            est = estimated_jaccard(minhash(a, 112), minhash(b, 112))
            sd = (exact * (1 - exact) / 112) ** 0.5
            assert abs(est - exact) <= 4.5 * sd, (exact, est)
            errors.append(est - exact)
    assert abs(np.mean(errors)) < 0.01  # unbiased
    assert np.sqrt(np.mean(np.square(errors))) < 0.045  # about sqrt(J(1-J)/112) <= 0.047
    same = minhash(np.arange(1, 50, dtype=np.uint64), 112)
    assert estimated_jaccard(same, minhash(np.arange(49, 0, -1, dtype=np.uint64), 112)) == 1.0
    with pytest.raises(ValueError):
        minhash(np.empty(0, dtype=np.uint64), 112)


def test_signatures_are_the_same_in_another_process():
    """No Python hash(): a fresh interpreter with another PYTHONHASHSEED gets the same bits."""
    text = "Le chat dort.\nThe cat sleeps on the mat, again and again.\n猫が寝ている。"
    code = ("import sys; from pipeline.dedup.near import NearDedupConfig, signature, band_keys;"
            "s = signature(sys.stdin.read(), NearDedupConfig());"
            "print(s.tolist(), band_keys(s, 14, 8))")
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run([sys.executable, "-c", code], input=text, capture_output=True, text=True,
                         cwd=REPO_ROOT, env=env, check=True).stdout.strip()
    here = signature(text, NearDedupConfig())
    assert out == str(here.tolist()) + " " + str(band_keys(here, 14, 8))


def test_shingle_text_normalises_like_paragraph_dedup_and_keeps_lines_apart():
    assert shingle_text("Hello, World! 2024 — it's “fine”\nNext line.").split() == [
        "hello", "world", "0000", "it", "s", "fine", "next", "line"]
    hindi = "हिन्दी भाषा"  # vowel signs are marks, not punctuation: words stay whole
    assert shingle_text(hindi).split() == ["हिन्दी", "भाषा"]


def test_shingles_are_ordered_ngrams_and_short_texts_get_one():
    words = token_hashes("a b c d e f", "word")
    assert len(words) == 6 and len(shingle_hashes(words, 5)) == 2
    assert len(shingle_hashes(words[:3], 5)) == 1  # shorter than n: one shingle of everything
    assert len(shingle_hashes(words[:0], 5)) == 0
    swapped = token_hashes("a b c d e f", "word")[[1, 0, 2, 3, 4, 5]]
    assert set(shingle_hashes(swapped, 5)) != set(shingle_hashes(words, 5))
    assert len(shingle_hashes(token_hashes("x y x y x y x y", "word"), 2)) == 2  # distinct only
    assert len(token_hashes("猫が 寝る", "char")) == 4  # spaces are not characters
    assert signature(" ,.;!? \n —", NearDedupConfig()) is None  # nothing to compare


def test_auto_unit_uses_characters_for_scripts_without_spaces(shared_data):
    for lang, unit in [("zh", "char"), ("ja", "char"), ("th", "char"), ("en", "word"), ("ru", "word"),
                       ("ko", "word"), ("hi", "word"), ("vi", "word"), ("fi", "word"), ("ar", "word")]:
        lines = (shared_data / "reference" / f"{lang}.txt").read_text(encoding="utf-8").splitlines()
        text = shingle_text("\n".join(lines[:30]))
        assert choose_unit(text) == unit, lang
        assert choose_unit(text, "word") == "word" and choose_unit(text, "char") == "char"


def test_bucket_pairs_compare_small_buckets_fully_and_big_ones_with_anchors_only():
    small = [("s", 3), ("s", 1), ("s", 2)]
    assert sorted(bucket_pairs(small, anchors=8)) == [(("s", 2), ("s", 1)), (("s", 3), ("s", 1)), (("s", 3), ("s", 2))]
    assert list(bucket_pairs([("s", 1)], anchors=8)) == []
    big = [("s", i) for i in range(100, 0, -1)]
    pairs = list(bucket_pairs(big, anchors=3))
    assert len(pairs) == 1 + 2 + 3 * 97  # n * anchors, not n^2 / 2
    assert {anchor for _, anchor in pairs} == {("s", 1), ("s", 2), ("s", 3)}
    assert {member for member, _ in pairs} == {("s", i) for i in range(2, 101)}  # all but the smallest


# -- the Beam transform ------------------------------------------------------------------------


def reference_corpus(shared_data) -> tuple[list[Document], set[tuple[str, int]]]:
    """~400-word English and ~300-character Chinese documents from reference text, some with
    near-copies (2 words or 3 characters changed) and one exact copy. Returns (documents,
    keys that must go): in each cluster all but the smallest key."""
    rng = random.Random(5)
    en = (shared_data / "reference" / "en.txt").read_text(encoding="utf-8").splitlines()
    zh = (shared_data / "reference" / "zh.txt").read_text(encoding="utf-8").splitlines()
    docs, drop, offset, start = [], set(), 0, 0
    for i in range(16):
        text, start = take_words(en, start, 400)
        copies = [changed_words(text, 2, rng) for _ in range(i % 4)] + ([text] if i == 5 else [])
        cluster = [(f"seg{rng.randrange(3)}", offset + j) for j in range(len(copies) + 1)]
        rng.shuffle(cluster)  # the original is not always the smallest key
        for key, content in zip(cluster, [text, *copies]):
            docs.append(doc(key[0], key[1], content))
        drop |= set(sorted(cluster)[1:])
        offset += len(cluster)
    start = 0
    for i in range(6):
        chars = []
        while len("".join(chars)) < 300:
            chars.append(zh[start])
            start += 1
        text = "\n".join(chars)
        docs.append(doc("zh", i * 2, text))
        if i % 2:
            copy = list(text)
            for p in rng.sample([p for p, c in enumerate(copy) if c != "\n"], 3):
                copy[p] = "龘"
            docs.append(doc("zh", i * 2 + 1, "".join(copy)))
            drop.add(("zh", i * 2 + 1))
    return docs, drop


def chain_texts() -> tuple[str, str, str]:
    """X ~ Y ~ Z with X !~ Z at threshold 0.67 (Y has 8 words of X's first half changed, Z 8 of
    Y's second half: true Jaccard 0.76 for neighbours, 0.57 for X and Z)."""
    rng = random.Random(2)
    x = [word(rng) for _ in range(300)]
    y = list(x)
    for p in range(10, 150, 14)[:8]:
        y[p] = "y" + word(rng)
    z = list(y)
    for p in range(160, 300, 14)[:8]:
        z[p] = "z" + word(rng)
    return " ".join(x), " ".join(y), " ".join(z)


def random_clusters(seed: int = 9) -> list[Document]:
    """Clusters of copies with 0-12 changed words: some pairs far above, some near, some below
    the threshold; keys spread over segments so that the smallest key is random."""
    rng = random.Random(seed)
    vocab = [word(rng) for _ in range(3000)]
    docs, offset = [], 0
    for _ in range(30):
        base = " ".join(rng.choice(vocab) for _ in range(rng.randint(120, 250)))
        for text in [base] + [changed_words(base, rng.randint(0, 12), rng) for _ in range(rng.randint(0, 3))]:
            docs.append(doc(f"seg{rng.randrange(4)}", offset, text))
            offset += 1
    return docs


def kept_keys(docs, label: str, config: NearDedupConfig):
    return docs | f"NearDedup {label}" >> NearDedup(config) | f"Keys {label}" >> beam.Map(lambda d: d.key)


@pytest.mark.slow
def test_near_dedup_in_one_process(shared_data):
    """Real text: near-copies go, one per cluster survives; chains follow the documented rule;
    a big bucket is compared with anchors only; random clusters match the all-pairs reference."""
    real, real_drop = reference_corpus(shared_data)
    default = NearDedupConfig()
    assert reference_drops(real, default) == real_drop  # the LSH + estimate agree with the truth
    x, y, z = chain_texts()
    chain = NearDedupConfig(threshold=0.67, bands=28)
    sx, sy, sz = (signature(t, chain) for t in (x, y, z))
    assert estimated_jaccard(sx, sy) >= 0.67 and estimated_jaccard(sy, sz) >= 0.67 > estimated_jaccard(sx, sz)
    bx, by, bz = (set(band_keys(sig, 28, 4)) for sig in (sx, sy, sz))
    assert bx & by and by & bz
    chain_in_order = [doc("s", 0, x), doc("s", 1, y), doc("s", 2, z)]  # X < Y < Z: only X stays
    middle_last = [doc("s", 0, x), doc("s", 1, z), doc("s", 2, y)]  # Y has X: goes; Z has none: stays
    boiler = [doc("b", i, real[0].raw_content) for i in range(12)]
    clusters = random_clusters()
    expected_random = {d.key for d in clusters} - reference_drops(clusters, default)
    assert len(expected_random) < len(clusters) - 10  # something is removed

    p = beam.Pipeline(runner=FnApiRunner())
    assert_that(kept_keys(p | "real" >> beam.Create(real), "real", default),
                equal_to([d.key for d in real if d.key not in real_drop]), label="Check real")
    assert_that(kept_keys(p | "chain" >> beam.Create(chain_in_order), "chain", chain),
                equal_to([("s", 0)]), label="Check chain")
    assert_that(kept_keys(p | "middle" >> beam.Create(middle_last), "middle", chain),
                equal_to([("s", 0), ("s", 1)]), label="Check middle")
    assert_that(kept_keys(p | "boiler" >> beam.Create(boiler), "boiler", NearDedupConfig(anchors=2)),
                equal_to([("b", 0)]), label="Check boiler")
    assert_that(kept_keys(p | "random" >> beam.Create(clusters), "random", default),
                equal_to(sorted(expected_random)), label="Check random")
    result = p.run()
    result.wait_until_finish()

    c = counters(result, "NearDedup real")
    n_copies = len(real_drop)
    assert c["near_dup_docs_removed"] == n_copies and c["near_dup_docs_in"] == len(real)
    assert c["documents_after_near_dedup"] == len(real) - n_copies
    assert c["near_dup_pairs_verified"] >= n_copies and c["near_dup_candidates"] >= c["near_dup_pairs_verified"]
    b = counters(result, "NearDedup boiler")  # 12 copies, anchors=2: 1 + 2 * 10 pairs, not 66
    assert (b["near_dup_candidates"], b["near_dup_pairs_verified"], b["near_dup_docs_removed"]) == (21, 21, 11)


@pytest.mark.slow
def test_near_dedup_does_not_depend_on_the_number_of_workers():
    """The same corpus through the local runner with 2 worker processes (as `cc100 corpus
    --workers 2` builds it) gives the reference's documents and the same counters."""
    clusters = random_clusters(seed=21)
    config = NearDedupConfig()
    expected = sorted({d.key for d in clusters} - reference_drops(clusters, config))
    results = {}
    for workers in (1, 2):
        options = pipeline_options(CorpusConfig(inputs=["unused"], output="unused", workers=workers))
        p = beam.Pipeline(runner=make_runner(CorpusConfig(inputs=["unused"], output="unused"), options),
                          options=options)
        out = kept_keys(p | beam.Create(clusters, reshuffle=True), "w", config)
        assert_that(out, equal_to(expected))
        result = p.run()
        result.wait_until_finish()
        results[workers] = counters(result)
    assert results[1] == results[2]
    assert results[2]["near_dup_docs_removed"] == len(clusters) - len(expected) > 10
