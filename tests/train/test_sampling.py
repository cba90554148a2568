"""The alpha formula q_i = p_i^a / sum_j p_j^a and the integer split of a budget."""

from __future__ import annotations

import math

import pytest

from train.sampling import (
    allocate,
    alpha_sampling_probs,
    raw_shares,
    sampling_table,
    upsampling_factors,
)

# Skewed sizes, like a web corpus: English dwarfs Yoruba by four orders of magnitude.
COUNTS = {"en": 5_000_000, "de": 800_000, "ru": 600_000, "hi": 20_000, "sw": 3_000, "yo": 400}


def direct_formula(counts, alpha):
    """The formula written out naively, as an independent reference."""
    total = sum(counts.values())
    p = {k: v / total for k, v in counts.items()}
    z = sum(x**alpha for x in p.values())
    return {k: x**alpha / z for k, x in p.items()}


@pytest.mark.parametrize("alpha", [0.0, 0.3, 0.5, 0.7, 1.0])
def test_matches_the_formula(alpha):
    q = alpha_sampling_probs(COUNTS, alpha)
    ref = direct_formula(COUNTS, alpha)
    assert list(q) == list(COUNTS)
    for lang in COUNTS:
        assert q[lang] == pytest.approx(ref[lang], rel=1e-12)
    assert sum(q.values()) == pytest.approx(1.0, abs=1e-12)


def test_alpha_one_reproduces_raw_shares():
    q = alpha_sampling_probs(COUNTS, 1.0)
    p = raw_shares(COUNTS)
    total = sum(COUNTS.values())
    for lang, n in COUNTS.items():
        assert p[lang] == pytest.approx(n / total)
        assert q[lang] == pytest.approx(p[lang], rel=1e-12)


def test_alpha_zero_is_uniform_and_empty_languages_get_nothing():
    q = alpha_sampling_probs({**COUNTS, "xx": 0}, 0.0)
    assert q["xx"] == 0.0  # 0 ** 0 would be 1: a language with no data must not be drawn
    for lang in COUNTS:
        assert q[lang] == pytest.approx(1 / len(COUNTS))


def test_small_languages_gain_and_large_lose_but_order_is_kept():
    p = raw_shares(COUNTS)
    q = alpha_sampling_probs(COUNTS, 0.3)
    assert q["yo"] > p["yo"] and q["sw"] > p["sw"] and q["hi"] > p["hi"]
    assert q["en"] < p["en"]
    ranked = sorted(COUNTS, key=COUNTS.get)
    assert sorted(q, key=q.get) == ranked
    f = upsampling_factors(COUNTS, 0.3)
    assert f["yo"] > f["sw"] > f["hi"] > 1 > f["en"]
    assert f["yo"] == pytest.approx(q["yo"] / p["yo"])


def test_only_ratios_matter_and_tiny_shares_do_not_underflow():
    scaled = {k: v * 1e-6 for k, v in COUNTS.items()}
    q1, q2 = alpha_sampling_probs(COUNTS, 0.3), alpha_sampling_probs(scaled, 0.3)
    assert all(q1[k] == pytest.approx(q2[k], rel=1e-9) for k in COUNTS)
    q = alpha_sampling_probs({"big": 1e300, "small": 1e-300}, 0.05)
    assert all(math.isfinite(v) for v in q.values()) and q["small"] > 0
    assert sum(q.values()) == pytest.approx(1.0)


@pytest.mark.parametrize("alpha", [-0.1, 1.01, float("nan"), "0.3"])
def test_alpha_outside_unit_interval_is_rejected(alpha):
    with pytest.raises(ValueError, match="alpha must be in"):
        alpha_sampling_probs(COUNTS, alpha)


@pytest.mark.parametrize(
    "counts, message",
    [
        ({}, "empty"),
        ({"en": 0, "de": 0}, "all zero"),
        ({"en": 10, "de": -1}, r"counts\['de'\]"),
        ({"en": float("inf")}, r"counts\['en'\]"),
    ],
)
def test_bad_counts_are_rejected(counts, message):
    with pytest.raises(ValueError, match=message):
        alpha_sampling_probs(counts, 0.3)


def test_allocate_sums_exactly_and_rounds_by_largest_remainder():
    q = {"a": 0.5, "b": 0.3, "c": 0.2}
    assert allocate(10, q) == {"a": 5, "b": 3, "c": 2}
    # 7 * q = 3.5, 2.1, 1.4 -> floors 3, 2, 1 and the one left goes to the largest fraction (a)
    assert allocate(7, q) == {"a": 4, "b": 2, "c": 1}
    # equal fractions: ties go by name, so the split never depends on dict order
    assert allocate(1, {"y": 0.5, "x": 0.5}) == {"y": 0, "x": 1}
    q = alpha_sampling_probs(COUNTS, 0.3)
    for total in (0, 1, 999, 1_000_003):
        n = allocate(total, q)
        assert sum(n.values()) == total
        assert all(abs(n[k] - total * q[k]) < 1 for k in q)


def test_allocate_rejects_bad_totals():
    with pytest.raises(ValueError, match="total"):
        allocate(-1, {"a": 1.0})
    with pytest.raises(ValueError, match="total"):
        allocate(2.5, {"a": 1.0})
    with pytest.raises(ValueError, match="probs"):
        allocate(3, {})


def test_sampling_table_is_consistent():
    table = sampling_table(COUNTS, 0.3, 100_000)
    q = alpha_sampling_probs(COUNTS, 0.3)
    assert list(table) == list(COUNTS)
    assert sum(r["sentences"] for r in table.values()) == 100_000
    for lang, row in table.items():
        assert set(row) == {"raw_share", "sampled_share", "sentences"}
        assert row["sampled_share"] == q[lang]
        assert row["raw_share"] == COUNTS[lang] / sum(COUNTS.values())
