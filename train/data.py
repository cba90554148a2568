"""Masked-LM batches from token shards: alpha-sampled languages, packed rows, dynamic masking.

Every optimizer step draws one *global* batch of `global_batch` sequences, a pure function of
(seed, step, cursor):

1. each row's language is drawn with probabilities q_i ∝ p_i^alpha over the languages' train
   token counts (XLM-R, alpha = 0.3);
2. each language stream (paragraphs, each ending with </s>) is cut into contiguous rows, visited
   in a fresh pseudo-random order each epoch (`row_bounds`):
   - packing "complete" (default; RoBERTa's FULL-SENTENCES, fairseq --sample-break-mode
     complete): whole paragraphs taken contiguously, across document boundaries, up to
     max_len - 1 tokens; a paragraph longer than that is split into full rows; the row is
     <s> paragraphs <pad>..., only the remainder padded;
   - packing "blocks": fixed blocks of max_len - 2 tokens cut anywhere, framed <s> block </s>;
3. the row is masked anew each time it is drawn (RoBERTa dynamic masking): 15% of its
   non-special tokens are targets, of which 80% -> <mask>, 10% -> a random token, 10% unchanged.
   Padding is special: never a target, and the model never attends to it (model/xlmr.py).

Rank r of W materialises only rows [r*G/W, (r+1)*G/W) of that global batch, so ranks see
disjoint data and the union over ranks is exactly the 1-process batch: a DDP run equals a
single-process run with the same global batch. (The masking randomness of row g is a fixed
slice of one per-step random stream, reached by jumping ahead, so it does not depend on W.) Every rank advances the same cursor (the number
of rows consumed per language), so rank 0's `state_dict()` restores all of them.

The epoch order comes from a keyed Feistel permutation: O(1) memory even for 10^8 rows.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np

from train.shards import Manifest, TokenStream

IGNORE_INDEX = -100
PACKINGS = ("complete", "blocks")
_SCAN_TOKENS = 1 << 24  # tokens read at a time when looking for paragraph ends
_TRAIN, _VALID, _LANGS, _PERM = 0, 1, 2, 3  # seed-sequence tags: one random stream per purpose
_M1, _M2, _GOLD = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB), np.uint64(0x9E3779B97F4A7C15)


def _lang_key(lang: str) -> int:
    return zlib.crc32(lang.encode("utf-8"))


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser on uint64 arrays (wrap-around arithmetic is intended)."""
    x = x + _GOLD
    x = (x ^ (x >> np.uint64(30))) * _M1
    x = (x ^ (x >> np.uint64(27))) * _M2
    return x ^ (x >> np.uint64(31))


def feistel_permute(i: np.ndarray, n: int, keys: np.ndarray) -> np.ndarray:
    """A keyed bijection of [0, n) applied to the indices `i` (4-round Feistel + cycle walking)."""
    i = np.asarray(i, dtype=np.uint64)
    if n <= 1:
        return np.zeros_like(i, dtype=np.int64)
    half = max(1, ((n - 1).bit_length() + 1) // 2)
    mask = np.uint64((1 << half) - 1)
    sh = np.uint64(half)

    def once(x: np.ndarray) -> np.ndarray:
        left, right = x >> sh, x & mask
        for k in keys:
            left, right = right, left ^ (_mix(right ^ np.uint64(k)) & mask)
        return (left << sh) | right

    y = once(i)
    out_of_range = y >= np.uint64(n)
    while out_of_range.any():  # cycle walking: the domain is < 4n, so this ends after a few rounds
        y[out_of_range] = once(y[out_of_range])
        out_of_range = y >= np.uint64(n)
    return y.astype(np.int64)


def epoch_keys(seed: int, lang: str, epoch: int) -> np.ndarray:
    return np.random.SeedSequence([seed, _PERM, _lang_key(lang), epoch]).generate_state(4, np.uint64)


@dataclass(frozen=True)
class Specials:
    bos: int
    pad: int
    eos: int
    unk: int
    mask: int
    vocab_size: int

    @classmethod
    def from_manifest(cls, m: Manifest) -> "Specials":
        s = m.special_ids
        return cls(s["bos"], s["pad"], s["eos"], s["unk"], s["mask"], m.vocab_size)

    @property
    def ids(self) -> np.ndarray:
        return np.array(sorted({self.bos, self.pad, self.eos, self.unk, self.mask}), dtype=np.int64)

    def table(self) -> np.ndarray:
        """is_special[id] for the whole vocabulary (a lookup beats np.isin on big batches)."""
        t = np.zeros(self.vocab_size, dtype=bool)
        t[self.ids] = True
        return t


def uniforms_per_row(max_len: int) -> int:
    """Random doubles one row's masking consumes: rounding, position scores, action, replacement."""
    return 3 * max_len + 1


def row_uniforms(entropy: list[int], first_row: int, n_rows: int, max_len: int) -> np.ndarray:
    """Rows [first_row, first_row + n_rows) of a (rows, 3 L + 1) matrix of U[0, 1) doubles.

    The matrix is one PCG64 stream keyed by `entropy`; jumping ahead (`advance`) to the first
    row makes a rank's rows identical to the same rows drawn by a single process.
    """
    per_row = uniforms_per_row(max_len)
    bitgen = np.random.PCG64(np.random.SeedSequence(entropy))
    bitgen.advance(first_row * per_row)  # one 64-bit draw per double
    return np.random.Generator(bitgen).random((n_rows, per_row))


def mask_batch(seqs: np.ndarray, u: np.ndarray, specials: Specials, is_special: np.ndarray,
               replacements: np.ndarray, mask_prob: float = 0.15, random_prob: float = 0.1,
               keep_prob: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """RoBERTa masking of sequences (R, L) -> (input_ids, labels with IGNORE_INDEX off-target).

    Per row, floor(mask_prob * candidates + u) targets (randomised rounding, as fairseq) among the
    non-special tokens, chosen uniformly; of those, random_prob get a random token from
    `replacements`, keep_prob stay unchanged and the rest become <mask>. `u` holds the row's
    randomness (see `row_uniforms`), so the result is a pure function of (seqs, u).
    """
    n_rows, length = seqs.shape
    if u.shape != (n_rows, uniforms_per_row(length)):
        raise ValueError(f"u must have shape {(n_rows, uniforms_per_row(length))}, got {u.shape}")
    cand = ~is_special[seqs]
    n_cand = cand.sum(axis=1)
    k = np.minimum(n_cand, (mask_prob * n_cand + u[:, 0]).astype(np.int64))
    scores = np.where(cand, u[:, 1:length + 1], 2.0)  # non-candidates sort last
    kth = np.take_along_axis(np.sort(scores, axis=1), np.maximum(k - 1, 0)[:, None], axis=1)
    target = (scores <= kth) & (k > 0)[:, None]  # the k smallest scores (float64: no ties)
    action = u[:, length + 1:2 * length + 1]
    pick = np.minimum((u[:, 2 * length + 1:] * len(replacements)).astype(np.int64), len(replacements) - 1)
    labels = np.where(target, seqs, IGNORE_INDEX).astype(np.int64)
    inputs = seqs.astype(np.int64, copy=True)
    to_mask = target & (action < 1.0 - random_prob - keep_prob)
    to_random = target & (action >= 1.0 - random_prob - keep_prob) & (action < 1.0 - keep_prob)
    inputs[to_mask] = specials.mask
    inputs[to_random] = replacements[pick[to_random]]
    return inputs, labels


def replacement_ids(specials: Specials) -> np.ndarray:
    """Token ids a masked position may be replaced by: the whole vocabulary but the specials."""
    return np.setdiff1d(np.arange(specials.vocab_size, dtype=np.int64), specials.ids)


def frame(block: np.ndarray, specials: Specials) -> np.ndarray:
    """<s> block </s> (XLM-R framing)."""
    return np.concatenate([[specials.bos], block, [specials.eos]]).astype(np.int64)


def paragraph_ends(stream: TokenStream, eos: int) -> np.ndarray:
    """End offsets (exclusive) of the stream's paragraphs: one past each </s>, plus the stream's end."""
    ends = []
    for start in range(0, stream.tokens, _SCAN_TOKENS):
        chunk = stream.slice(start, min(start + _SCAN_TOKENS, stream.tokens))
        ends.append(np.flatnonzero(chunk == eos) + start + 1)
    ends = np.concatenate(ends) if ends else np.zeros(0, dtype=np.int64)
    if not len(ends) or ends[-1] != stream.tokens:
        ends = np.append(ends, stream.tokens)
    return ends.astype(np.int64)


def pack_complete(ends: np.ndarray, capacity: int) -> np.ndarray:
    """Row boundaries [0, b_1, ..., n] packing whole paragraphs (ending at `ends`) into rows of at
    most `capacity` tokens, greedily and in order; a paragraph longer than a row is split into
    full rows and its remainder starts the next row."""
    bounds = [0]
    row_start = prev = 0
    for end in ends.tolist():
        if end - row_start > capacity:
            if prev > row_start:  # close the row before this paragraph
                bounds.append(prev)
                row_start = prev
            while end - row_start > capacity:  # split a paragraph longer than a row
                row_start += capacity
                bounds.append(row_start)
        prev = end
    if prev > row_start:
        bounds.append(prev)
    return np.asarray(bounds, dtype=np.int64)


def row_bounds(stream: TokenStream, specials: Specials, max_len: int, packing: str) -> np.ndarray:
    """Row k of the stream is tokens [bounds[k], bounds[k + 1])."""
    if packing == "blocks":
        block = max_len - 2
        return np.arange(stream.tokens // block + 1, dtype=np.int64) * block
    if packing == "complete":
        return pack_complete(paragraph_ends(stream, specials.eos), max_len - 1)
    raise ValueError(f"packing must be one of {PACKINGS}, got {packing!r}")


def frame_row(tokens: np.ndarray, specials: Specials, max_len: int, packing: str) -> np.ndarray:
    """The model's input row of length max_len: <s> block </s>, or <s> paragraphs <pad>..."""
    if packing == "blocks":
        return frame(tokens, specials)
    row = np.full(max_len, specials.pad, dtype=np.int64)
    row[0] = specials.bos
    row[1:1 + len(tokens)] = tokens
    return row


class MLMStream:
    """The training stream of one rank; `next_batch()` advances, `state_dict()` is its cursor."""

    def __init__(self, manifest: Manifest, *, max_len: int, global_batch: int, seed: int,
                 alpha: float = 0.3, rank: int = 0, world_size: int = 1, mask_prob: float = 0.15,
                 packing: str = "complete"):
        from train.sampling import alpha_sampling_probs

        if global_batch % world_size:
            raise ValueError(f"global batch of {global_batch} sequences is not divisible by "
                             f"world size {world_size}")
        if packing not in PACKINGS:
            raise ValueError(f"packing must be one of {PACKINGS}, got {packing!r}")
        self.max_len, self.global_batch, self.seed = max_len, global_batch, seed
        self.alpha, self.rank, self.world_size, self.mask_prob = alpha, rank, world_size, mask_prob
        self.packing = packing
        self.specials = Specials.from_manifest(manifest)
        self.is_special = self.specials.table()
        self.replacements = replacement_ids(self.specials)
        train_tokens = manifest.tokens("train")
        streams = {lang: TokenStream(manifest.languages[lang]["train"].files, manifest.dtype)
                   for lang in train_tokens}
        bounds = {lang: row_bounds(s, self.specials, max_len, packing) for lang, s in streams.items()}
        self.skipped = {lang: n for lang, n in train_tokens.items() if len(bounds[lang]) < 2}
        self.languages = [lang for lang in train_tokens if lang not in self.skipped]
        if not self.languages:
            need = f"max_len - 2 = {max_len - 2}" if packing == "blocks" else "any"
            raise ValueError(f"no language has {need} train tokens in "
                             f"{manifest.root}: use a smaller --max-len or more data")
        self.streams = {lang: streams[lang] for lang in self.languages}
        self.bounds = {lang: bounds[lang] for lang in self.languages}
        self.tokens = {lang: train_tokens[lang] for lang in self.languages}
        self.num_rows = {lang: len(self.bounds[lang]) - 1 for lang in self.languages}
        q = alpha_sampling_probs(self.tokens, alpha)
        self.probs = np.array([q[lang] for lang in self.languages])
        self.step = 0
        self.consumed = {lang: 0 for lang in self.languages}

    # -- the cursor ---------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {"step": self.step, "consumed": dict(self.consumed), "seed": self.seed,
                "alpha": self.alpha, "max_len": self.max_len, "global_batch": self.global_batch,
                "mask_prob": self.mask_prob, "tokens": dict(self.tokens), "packing": self.packing}

    def load_state_dict(self, state: dict) -> None:
        state = {"packing": "blocks", **state}  # cursors saved before packing existed: blocks
        for key in ("seed", "alpha", "max_len", "global_batch", "mask_prob", "tokens", "packing"):
            mine = self.state_dict()[key]
            if state.get(key) != mine:
                what = "train tokens per language (the shards changed)" if key == "tokens" else key
                raise ValueError(f"data cursor mismatch in {what}: checkpoint has "
                                 f"{state.get(key)!r}, this run {mine!r}")
        self.step = int(state["step"])
        self.consumed = {lang: int(state["consumed"][lang]) for lang in self.languages}

    # -- drawing --------------------------------------------------------------------------------
    def plan(self, step: int, consumed: dict[str, int]) -> tuple[np.ndarray, np.ndarray, dict]:
        """The global batch of `step`: (language index, row index) per row, and the new cursor."""
        rng = np.random.default_rng([self.seed, _LANGS, step])
        langs = rng.choice(len(self.languages), size=self.global_batch, p=self.probs)
        row_ids = np.empty(self.global_batch, dtype=np.int64)
        after = dict(consumed)
        for li, lang in enumerate(self.languages):
            rows = np.flatnonzero(langs == li)
            if not len(rows):
                continue
            n = self.num_rows[lang]
            counter = consumed[lang] + np.arange(len(rows), dtype=np.int64)
            epochs, within = counter // n, counter % n
            for epoch in np.unique(epochs):
                sel = epochs == epoch
                row_ids[rows[sel]] = feistel_permute(within[sel], n, epoch_keys(self.seed, lang, int(epoch)))
            after[lang] = consumed[lang] + len(rows)
        return langs, row_ids, after

    def rows(self) -> range:
        per_rank = self.global_batch // self.world_size
        return range(self.rank * per_rank, (self.rank + 1) * per_rank)

    def next_batch(self) -> dict:
        """This rank's rows of the next global batch: input_ids, labels (int64 [R, max_len]),
        languages, and padding (the <pad> positions per row, so the trainer needs no scan)."""
        langs, row_ids, after = self.plan(self.step, self.consumed)
        rows = self.rows()
        seqs = np.empty((len(rows), self.max_len), dtype=np.int64)
        names = []
        for k, g in enumerate(rows):
            lang = self.languages[langs[g]]
            start, stop = self.bounds[lang][row_ids[g]:row_ids[g] + 2]
            seqs[k] = frame_row(self.streams[lang].slice(int(start), int(stop)), self.specials,
                                self.max_len, self.packing)
            names.append(lang)
        u = row_uniforms([self.seed, _TRAIN, self.step], rows.start, len(rows), self.max_len)
        inputs, labels = mask_batch(seqs, u, self.specials, self.is_special, self.replacements,
                                    self.mask_prob)
        self.step += 1
        self.consumed = after
        return {"input_ids": inputs, "labels": labels, "languages": names,
                "padding": (seqs == self.specials.pad).sum(axis=1)}


def validation_sets(manifest: Manifest, *, max_len: int, max_seqs: int, seed: int, rank: int = 0,
                    world_size: int = 1, mask_prob: float = 0.15,
                    packing: str = "complete") -> dict[str, dict]:
    """Fixed held-out batches per language: the first `max_seqs` valid rows, masked once.

    The same sequences and masks at every evaluation, so the numbers are comparable over time;
    rank r keeps rows r, r+W, ... (the trainer sums over ranks).
    """
    specials = Specials.from_manifest(manifest)
    is_special, replacements = specials.table(), replacement_ids(specials)
    out = {}
    for lang, splits in manifest.languages.items():
        info = splits["valid"]
        stream = TokenStream(info.files, manifest.dtype)
        bounds = row_bounds(stream, specials, max_len, packing)[:max_seqs + 1]
        n = len(bounds) - 1
        if n <= 0:
            continue
        mine = list(range(rank, n, world_size))
        seqs = np.zeros((len(mine), max_len), dtype=np.int64)
        u = np.zeros((len(mine), uniforms_per_row(max_len)))
        for k, j in enumerate(mine):
            seqs[k] = frame_row(stream.slice(int(bounds[j]), int(bounds[j + 1])), specials, max_len,
                                packing)
            u[k] = row_uniforms([seed, _VALID, _lang_key(lang)], j, 1, max_len)[0]
        inputs, labels = mask_batch(seqs, u, specials, is_special, replacements, mask_prob)
        out[lang] = {"input_ids": inputs, "labels": labels, "sequences": n}
    return out


PINNED_KEYS = ("input_ids", "labels")


def pin_arrays(batch: dict) -> dict:
    """The batch's token arrays as tensors in page-locked host memory: only from there is a
    `.to("cuda", non_blocking=True)` copy asynchronous (from pageable memory it is synchronous)."""
    import torch

    return {k: torch.from_numpy(v).pin_memory() if k in PINNED_KEYS else v for k, v in batch.items()}


class Prefetcher:
    """Draws the next batch on a background thread while the device works on the current one
    (and, with `pin_memory`, copies it into page-locked memory there, off the training thread).

    `state_dict()` is the cursor after the last batch *handed out*, not after the one being
    prefetched, so a checkpoint taken between steps resumes exactly.
    """

    def __init__(self, stream: MLMStream, pin_memory: bool = False):
        from concurrent.futures import ThreadPoolExecutor

        self.stream = stream
        self.pin_memory = pin_memory
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mlm-prefetch")
        self._state = stream.state_dict()
        self._pending = self._pool.submit(self._draw)

    def _draw(self) -> tuple[dict, dict]:
        batch = self.stream.next_batch()
        if self.pin_memory:
            batch = pin_arrays(batch)
        return batch, self.stream.state_dict()

    def next_batch(self) -> dict:
        batch, self._state = self._pending.result()
        self._pending = self._pool.submit(self._draw)
        return batch

    def state_dict(self) -> dict:
        return dict(self._state)

    def load_state_dict(self, state: dict) -> None:
        self._pending.result()
        self.stream.load_state_dict(state)
        self._state = self.stream.state_dict()
        self._pending = self._pool.submit(self._draw)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
