"""Exponent-alpha language sampling (XLM / XLM-R): q_i = p_i^alpha / sum_j p_j^alpha.

p_i is language i's share of the corpus. alpha = 1 keeps the raw shares, alpha = 0 samples
every language uniformly, and XLM-R's alpha = 0.3 gives small languages far more room than
their raw share. Pure functions only: `train/vocab.py` uses them to draw SentencePiece input,
the pretraining data loader to pick the language of each batch, so the two cannot drift apart.
"""

from __future__ import annotations

import math
from collections.abc import Mapping


def _check_alpha(alpha: float) -> None:
    if not isinstance(alpha, (int, float)) or math.isnan(alpha) or not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha!r}")


def _check_counts(counts: Mapping[str, float]) -> None:
    if not counts:
        raise ValueError("counts is empty: no languages to sample from")
    for lang, n in counts.items():
        if not isinstance(n, (int, float)) or math.isnan(n) or math.isinf(n) or n < 0:
            raise ValueError(f"counts[{lang!r}] must be a finite number >= 0, got {n!r}")
    if not any(n > 0 for n in counts.values()):
        raise ValueError("counts are all zero: no data to sample from")


def raw_shares(counts: Mapping[str, float]) -> dict[str, float]:
    """p_i = n_i / sum_j n_j (the share of each language before sampling)."""
    _check_counts(counts)
    total = float(sum(counts.values()))
    return {lang: n / total for lang, n in counts.items()}


def alpha_sampling_probs(counts: Mapping[str, float], alpha: float) -> dict[str, float]:
    """q_i = p_i^alpha / sum_j p_j^alpha, in the order of `counts`.

    `counts` are sizes in any unit (lines, characters, tokens); only their ratios matter.
    A language with no data gets probability 0 (even at alpha = 0, where 0^0 would be 1).
    """
    _check_alpha(alpha)
    _check_counts(counts)
    # In log space, from the counts (the total cancels): p_i itself can underflow to 0.
    logs = {lang: alpha * math.log(n) for lang, n in counts.items() if n > 0}
    top = max(logs.values())
    weights = {lang: math.exp(v - top) for lang, v in logs.items()}
    z = sum(weights.values())
    return {lang: weights.get(lang, 0.0) / z for lang in counts}


def allocate(total: int, probs: Mapping[str, float]) -> dict[str, int]:
    """Split `total` draws by `probs` into integers that sum exactly to `total`.

    Largest-remainder rounding (ties broken by name, so the split is deterministic): each
    language gets floor(total * q_i) and the leftover draws go to the largest fractions.
    """
    if isinstance(total, bool) or not isinstance(total, int) or total < 0:
        raise ValueError(f"total must be an integer >= 0, got {total!r}")
    if not probs:
        raise ValueError("probs is empty: no languages to allocate to")
    z = float(sum(probs.values()))
    if z <= 0 or any(q < 0 for q in probs.values()):
        raise ValueError("probs must be >= 0 with a positive sum")
    exact = {lang: total * q / z for lang, q in probs.items()}
    out = {lang: int(math.floor(x)) for lang, x in exact.items()}
    left = total - sum(out.values())
    by_remainder = sorted(exact, key=lambda lang: (-(exact[lang] - out[lang]), lang))
    for lang in by_remainder[:left]:
        out[lang] += 1
    return out


def upsampling_factors(counts: Mapping[str, float], alpha: float) -> dict[str, float]:
    """q_i / p_i: how many times more often language i is seen than in the raw corpus."""
    p = raw_shares(counts)
    q = alpha_sampling_probs(counts, alpha)
    return {lang: (q[lang] / p[lang] if p[lang] > 0 else 0.0) for lang in counts}


def sampling_table(
    counts: Mapping[str, float], alpha: float, budget: int
) -> dict[str, dict[str, float | int]]:
    """The per-language plan: raw_share, sampled_share (q_i) and sentences (draws of `budget`).

    This is the object written to VOCAB_DIR/sampling.json (keys in the order of `counts`).
    """
    p = raw_shares(counts)
    q = alpha_sampling_probs(counts, alpha)
    n = allocate(budget, q)
    return {
        lang: {"raw_share": p[lang], "sampled_share": q[lang], "sentences": n[lang]}
        for lang in counts
    }
