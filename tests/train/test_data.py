"""Training data: alpha sampling, FULL-SENTENCES packing, dynamic masking, ranks and the cursor."""

from __future__ import annotations

import numpy as np
import pytest

from tests.train.test_shards import make_shards
from train.data import (IGNORE_INDEX, MLMStream, Prefetcher, Specials, epoch_keys, feistel_permute, mask_batch,
                        pack_complete, paragraph_ends, replacement_ids, row_uniforms, validation_sets)
from train.sampling import alpha_sampling_probs
from train.shards import load_manifest

SPECIALS = Specials(bos=0, pad=1, eos=2, unk=3, mask=999, vocab_size=1000)


# paragraph lengths (</s> included), in turn: some longer than a row of max_len 32 (31 tokens)
PARAGRAPH_LENS = (5, 12, 40, 3, 20, 31, 33, 9, 1 + 70)
PARAGRAPHS_PER_DOC = 3


def lang_docs(lang_id: int, n_tokens: int) -> list[list[int]]:
    """Documents of paragraphs, each ending with </s> (2), whose other tokens encode (language,
    position): token = 4 + (lang*100 + pos % 97) % 990.

    Positions are recoverable from a row, which lets the tests check contiguity."""
    docs, pos, k = [], 0, 0
    while pos < n_tokens:
        doc = []
        for _ in range(PARAGRAPHS_PER_DOC):
            n = min(PARAGRAPH_LENS[k % len(PARAGRAPH_LENS)], n_tokens - pos)
            k += 1
            if n <= 0:
                break
            doc += [4 + (lang_id * 100 + (pos + i) % 97) % 990 for i in range(n - 1)] + [2]
            pos += n
        docs.append(doc)
    return docs


def flat_streams() -> dict[str, np.ndarray]:
    """The train streams as written (parts concatenated), independent of TokenStream."""
    return {lang: np.concatenate([np.array(d) for d in lang_docs(i, n)])
            for i, (lang, n) in enumerate({"big": 60_000, "mid": 6_000, "small": 600}.items())}


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    root = tmp_path_factory.mktemp("shards")
    sizes = {"big": 60_000, "mid": 6_000, "small": 600}
    langs = {}
    for i, (lang, n) in enumerate(sizes.items()):
        docs = lang_docs(i, n)
        half = len(docs) // 2
        langs[lang] = [docs[:half], docs[half:]]  # two parts: blocks cross file boundaries
    make_shards(root, langs, valid={"big": lang_docs(0, 700), "mid": lang_docs(1, 100)})
    return load_manifest(root)


def stream(manifest, **kw):
    args = dict(max_len=32, global_batch=64, seed=1, alpha=0.3)
    args.update(kw)
    return MLMStream(manifest, **args)


# -- the shuffle --------------------------------------------------------------------------------

@pytest.mark.parametrize("n", [1, 2, 3, 5, 17, 1000, 4097])
def test_feistel_is_a_permutation(n):
    keys = epoch_keys(0, "xx", 0)
    perm = feistel_permute(np.arange(n), n, keys)
    assert sorted(perm.tolist()) == list(range(n))


def test_feistel_depends_on_key_and_shuffles():
    n = 1000
    a = feistel_permute(np.arange(n), n, epoch_keys(0, "xx", 0))
    b = feistel_permute(np.arange(n), n, epoch_keys(0, "xx", 1))
    assert (a != b).mean() > 0.9
    assert (a != np.arange(n)).mean() > 0.9
    # not a simple rotation or stride: consecutive outputs are not spaced evenly
    assert len(set(np.diff(a).tolist())) > 100


# -- masking ------------------------------------------------------------------------------------

def test_masking_rates_and_special_tokens():
    rng = np.random.default_rng(0)
    n_rows = 400
    seq = rng.integers(4, 999, size=(n_rows, 128))
    seq[:, 0], seq[:, -1] = 0, 2
    for row in seq:
        row[rng.integers(1, 127, size=5)] = 2  # document separators inside the block
        row[rng.integers(1, 127, size=2)] = 3  # <unk>
    u = row_uniforms([0], 0, n_rows, 128)
    x, y = mask_batch(seq, u, SPECIALS, SPECIALS.table(), replacement_ids(SPECIALS), mask_prob=0.15)
    special = np.isin(seq, [0, 1, 2, 3, 999])
    target = y != IGNORE_INDEX
    assert not (target & special).any(), "a special token became a target"
    assert (x[~target] == seq[~target]).all(), "a non-target token changed"
    assert (y[target] == seq[target]).all(), "labels must be the original tokens"
    per_row = target.sum(1) / (~special).sum(1)
    assert per_row.min() > 0.12 and per_row.max() < 0.18, "each row is masked at ~15%, not just on average"
    n_target = target.sum()
    assert n_target / (~special).sum() == pytest.approx(0.15, abs=0.003)
    assert (x[target] == 999).sum() / n_target == pytest.approx(0.80, abs=0.02)
    changed = target & (x != 999) & (x != seq)
    assert not np.isin(x[changed], [0, 1, 2, 3, 999]).any(), "random replacement was a special"
    # unchanged includes random draws that hit the original token (1/995 of them)
    assert changed.sum() / n_target == pytest.approx(0.10, abs=0.015)
    assert (target & (x == seq)).sum() / n_target == pytest.approx(0.10, abs=0.015)
    # the positions are spread over the whole row, not clustered at its start
    positions = np.nonzero(target)[1]
    assert positions.mean() == pytest.approx(63.5, abs=3)


def test_masking_is_dynamic():
    """The same block drawn twice gets different masks (RoBERTa dynamic masking)."""
    seq = np.tile(np.arange(4, 132), (2, 1))
    a = mask_batch(seq, row_uniforms([1, 0], 0, 2, 128), SPECIALS, SPECIALS.table(), replacement_ids(SPECIALS))[1]
    b = mask_batch(seq, row_uniforms([1, 1], 0, 2, 128), SPECIALS, SPECIALS.table(), replacement_ids(SPECIALS))[1]
    assert ((a != IGNORE_INDEX) != (b != IGNORE_INDEX)).any()
    assert ((a[0] != IGNORE_INDEX) != (a[1] != IGNORE_INDEX)).any(), "rows get their own masks"


def test_row_uniforms_jump_ahead_equals_drawing_all_rows():
    whole = row_uniforms([3, 0, 7], 0, 10, 16)
    np.testing.assert_array_equal(row_uniforms([3, 0, 7], 4, 3, 16), whole[4:7])


# -- sampling and packing -------------------------------------------------------------------------

def test_language_shares_follow_alpha(shards):
    s = stream(shards, global_batch=256)
    counts = dict.fromkeys(s.languages, 0)
    for _ in range(60):
        for lang in s.next_batch()["languages"]:
            counts[lang] += 1
    total = sum(counts.values())
    expected = alpha_sampling_probs(shards.tokens("train"), 0.3)
    for lang in counts:
        assert counts[lang] / total == pytest.approx(expected[lang], abs=0.015), lang
    # alpha matters: the small language gets far more than its raw share (600 / 66600)
    assert counts["small"] / total > 5 * 600 / 66_600
    s1 = stream(shards, global_batch=256, alpha=1.0)
    c1 = sum(lang == "big" for _ in range(20) for lang in s1.next_batch()["languages"])
    assert c1 / (20 * 256) == pytest.approx(60_000 / 66_600, abs=0.02)


def test_rows_are_framed_contiguous_blocks(shards):
    s = stream(shards, packing="blocks")
    flat = flat_streams()
    for _ in range(5):
        langs, blocks, _ = s.plan(s.step, s.consumed)
        b = s.next_batch()
        x, y = b["input_ids"], b["labels"]
        original = np.where(y != IGNORE_INDEX, y, x)  # undo the masking
        assert x.shape == (64, 32)
        assert (original[:, 0] == 0).all() and (original[:, -1] == 2).all()
        assert not (original == 1).any(), "no padding in packed blocks"
        for row, lang, li, block in zip(original, b["languages"], langs, blocks):
            assert s.languages[li] == lang
            np.testing.assert_array_equal(row[1:-1], flat[lang][block * 30:(block + 1) * 30])


@pytest.mark.parametrize("packing", ["complete", "blocks"])
def test_one_epoch_visits_every_row_once(shards, packing):
    s = stream(shards, global_batch=16, alpha=1.0, packing=packing)
    n = s.num_rows["small"]
    assert n == (20 if packing == "blocks" else 25)  # 600 // 30; whole paragraphs in rows of <= 31
    seen = []
    while s.consumed["small"] < n:
        before = s.consumed["small"]
        langs, blocks, _ = s.plan(s.step, s.consumed)
        seen += [int(b) for li, b in zip(langs, blocks) if s.languages[li] == "small"][: n - before]
        s.next_batch()
    assert sorted(seen) == list(range(n))


def test_same_seed_same_batches_other_seed_other_batches(shards):
    a, b, c = stream(shards, seed=5), stream(shards, seed=5), stream(shards, seed=6)
    for _ in range(3):
        ba, bb, bc = a.next_batch(), b.next_batch(), c.next_batch()
        np.testing.assert_array_equal(ba["input_ids"], bb["input_ids"])
        np.testing.assert_array_equal(ba["labels"], bb["labels"])
        assert (ba["input_ids"] != bc["input_ids"]).any()


def test_ranks_are_disjoint_and_make_up_the_global_batch(shards):
    whole = stream(shards)
    ranks = [stream(shards, rank=r, world_size=4) for r in range(4)]
    for _ in range(3):
        full = whole.next_batch()
        parts = [r.next_batch() for r in ranks]
        assert all(len(p["input_ids"]) == 16 for p in parts)
        np.testing.assert_array_equal(np.concatenate([p["input_ids"] for p in parts]), full["input_ids"])
        np.testing.assert_array_equal(np.concatenate([p["labels"] for p in parts]), full["labels"])
    assert all(r.state_dict() == whole.state_dict() for r in ranks), "every rank holds the same cursor"
    with pytest.raises(ValueError, match="not divisible by world size 3"):
        stream(shards, world_size=3)


def test_cursor_restores_the_stream_exactly(shards):
    s = stream(shards)
    for _ in range(7):
        s.next_batch()
    state = s.state_dict()
    expected = [s.next_batch() for _ in range(3)]
    t = stream(shards)
    t.load_state_dict(state)
    for e in expected:
        got = t.next_batch()
        np.testing.assert_array_equal(got["input_ids"], e["input_ids"])
        np.testing.assert_array_equal(got["labels"], e["labels"])
    other = stream(shards, seed=2)
    with pytest.raises(ValueError, match="seed"):
        other.load_state_dict(state)
    with pytest.raises(ValueError, match="max_len"):
        stream(shards, max_len=64).load_state_dict(state)


def test_epochs_continue_past_the_end_of_small_languages(shards):
    s = stream(shards, global_batch=128, alpha=0.0)
    for _ in range(5):
        s.next_batch()
    assert s.consumed["small"] > 2 * s.num_rows["small"], "the small language wrapped around"


def test_language_too_small_for_a_block_is_skipped(shards):
    s = stream(shards, max_len=1024, packing="blocks")
    assert "small" in s.skipped and "small" not in s.languages
    with pytest.raises(ValueError, match="no language has"):
        stream(shards, max_len=100_000, packing="blocks")
    assert "small" in stream(shards, max_len=1024).languages  # complete: one padded row is enough


def test_validation_sets_are_fixed_and_split_over_ranks(shards):
    v = validation_sets(shards, max_len=32, max_seqs=10, seed=0)
    assert set(v) == {"big", "mid"}  # "small" has no held-out tokens
    assert v["big"]["input_ids"].shape == (10, 32) and v["mid"]["sequences"] == 5  # 100 tokens: 3 blocks of 30, 5 rows of whole paragraphs
    again = validation_sets(shards, max_len=32, max_seqs=10, seed=0)
    np.testing.assert_array_equal(v["big"]["labels"], again["big"]["labels"])
    r0 = validation_sets(shards, max_len=32, max_seqs=10, seed=0, rank=0, world_size=2)
    r1 = validation_sets(shards, max_len=32, max_seqs=10, seed=0, rank=1, world_size=2)
    merged = np.empty_like(v["big"]["input_ids"])
    merged[0::2], merged[1::2] = r0["big"]["input_ids"], r1["big"]["input_ids"]
    np.testing.assert_array_equal(merged, v["big"]["input_ids"])


def test_prefetcher_hands_out_the_same_batches_and_cursor(shards):
    plain = stream(shards)
    fetcher = Prefetcher(stream(shards))
    try:
        for _ in range(3):
            np.testing.assert_array_equal(fetcher.next_batch()["labels"], plain.next_batch()["labels"])
        # one batch is already drawn ahead; the cursor must not include it
        assert fetcher.state_dict() == plain.state_dict()
        state = fetcher.state_dict()
        expected = plain.next_batch()
        fetcher.load_state_dict(state)
        np.testing.assert_array_equal(fetcher.next_batch()["input_ids"], expected["input_ids"])
    finally:
        fetcher.close()


# -- FULL-SENTENCES packing (the default) -------------------------------------------------------

def test_pack_complete_greedy_whole_paragraphs_and_splits_long_ones():
    # paragraphs [0,3) [3,5) [5,20) [20,22) [22,23); rows of at most 6 tokens
    assert pack_complete(np.array([3, 5, 20, 22, 23]), 6).tolist() == [0, 5, 11, 17, 23]
    assert pack_complete(np.array([6, 12]), 6).tolist() == [0, 6, 12]  # exact fits
    assert pack_complete(np.array([13]), 6).tolist() == [0, 6, 12, 13]
    assert pack_complete(np.array([0]), 6).tolist() == [0]  # an empty stream has no rows


def test_packing_invariants_on_the_shards(shards):
    """Rows cover the stream contiguously; a row ends at a paragraph end unless the paragraph
    alone is longer than a row; the greedy fill leaves no room for the next paragraph; and rows
    cross document boundaries."""
    s = stream(shards)
    cap = s.max_len - 1
    for lang in s.languages:
        bounds = s.bounds[lang]
        ends = paragraph_ends(s.streams[lang], 2)
        starts = np.concatenate([[0], ends[:-1]])
        assert bounds[0] == 0 and bounds[-1] == s.tokens[lang]
        assert (np.diff(bounds) > 0).all() and (np.diff(bounds) <= cap).all()
        at_end = np.isin(bounds[1:-1], ends)
        for b in bounds[1:-1][~at_end]:  # inside a paragraph: only when it is longer than a row
            k = np.searchsorted(ends, b, side="right")
            assert ends[k] - starts[k] > cap
        for a, b in zip(bounds[:-2], bounds[1:-1]):
            if b in ends:  # the next paragraph (or its first row's worth) did not fit
                k = np.searchsorted(ends, b, side="right")
                assert b - a + min(ends[k] - b, cap) > cap or ends[k] - starts[k] > cap
    doc_ends = np.cumsum([len(d) for part in [lang_docs(0, 60_000)] for d in part])
    crossing = [(a, b) for a, b in zip(s.bounds["big"][:-1], s.bounds["big"][1:])
                if ((doc_ends > a) & (doc_ends < b)).any()]
    assert len(crossing) > 100, "rows run across document boundaries"


def test_complete_rows_are_bos_paragraphs_then_padding_never_a_target(shards):
    s = stream(shards)
    flat = flat_streams()
    padded_rows = 0
    for _ in range(5):
        langs, row_ids, _ = s.plan(s.step, s.consumed)
        b = s.next_batch()
        x, y = b["input_ids"], b["labels"]
        original = np.where(y != IGNORE_INDEX, y, x)
        assert (original[:, 0] == 0).all()
        np.testing.assert_array_equal(b["padding"], (original == 1).sum(axis=1))
        for row, labels, lang, k in zip(original, y, b["languages"], row_ids):
            a, e = s.bounds[lang][k], s.bounds[lang][k + 1]
            n = e - a
            np.testing.assert_array_equal(row[1:1 + n], flat[lang][a:e])
            assert (row[1 + n:] == 1).all(), "only the remainder is padding"
            assert (labels[1 + n:] == IGNORE_INDEX).all(), "padding is never a target"
            assert row[n] == 2 or n == s.max_len - 1, "a row ends with </s> unless it is full"
            padded_rows += n < s.max_len - 1
    assert padded_rows > 0


def test_resume_and_ranks_hold_for_complete_packing_and_packing_is_checked(shards):
    s = stream(shards)
    for _ in range(4):
        s.next_batch()
    state = s.state_dict()
    assert state["packing"] == "complete"
    expected = s.next_batch()
    parts = []
    for r in range(4):
        t = stream(shards, rank=r, world_size=4)
        t.load_state_dict(state)
        parts.append(t.next_batch())
    np.testing.assert_array_equal(np.concatenate([p["input_ids"] for p in parts]), expected["input_ids"])
    np.testing.assert_array_equal(np.concatenate([p["labels"] for p in parts]), expected["labels"])
    with pytest.raises(ValueError, match="packing"):
        stream(shards, packing="blocks").load_state_dict(state)
    old = {k: v for k, v in stream(shards, packing="blocks").state_dict().items() if k != "packing"}
    stream(shards, packing="blocks").load_state_dict(old)  # a cursor from before packing: blocks
    with pytest.raises(ValueError, match="packing must be one of"):
        stream(shards, packing="fixed")
