"""The one text -> ids encoder of the project, in XLM-R / fairseq id space.

A SentencePiece model trained by `cc100 vocab` (or XLM-R's own sentencepiece.bpe.model) has
<unk>=0, <s>=1, </s>=2 and no <pad>. fairseq's dictionary, and `transformers`'
`XLMRobertaTokenizer` after it, put four specials first and shift every real piece by one:

    fairseq:  <s>=0  <pad>=1  </s>=2  <unk>=3  piece k (k >= 3) -> k + 1  ...  <mask> = last
    spm:      <unk>=0  <s>=1  </s>=2           piece k

so vocab_size = pieces + FAIRSEQ_OFFSET + 1 (250000 pieces -> 250002 ids for XLM-R).
`encode` adds no specials (the tokenize stage frames sequences itself); `decode` drops them.

A character outside the vocabulary is <unk>, as in XLM-R's model; a model trained with
`cc100 vocab --byte-fallback` encodes it as its UTF-8 byte pieces instead. `cc100 export` writes
a Hugging Face tokenizer that gives these same ids in both cases (model/hf.py `write_tokenizer`,
tests/model/test_tokenizer_export.py).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

FAIRSEQ_OFFSET = 1
# The SentencePiece ids the mapping relies on (XLM-R's sentencepiece.bpe.model layout).
SPM_UNK, SPM_BOS, SPM_EOS = 0, 1, 2


class XLMRTokenizer:
    """SentencePiece model -> XLM-R ids (as `transformers.XLMRobertaTokenizer` computes them)."""

    bos_id = 0
    pad_id = 1
    eos_id = 2
    unk_id = 3

    def __init__(self, model_file: str | os.PathLike):
        import sentencepiece as spm

        self.model_file = str(model_file)
        if not Path(self.model_file).is_file():
            raise FileNotFoundError(f"{self.model_file}: SentencePiece model not found")
        try:
            self.sp = spm.SentencePieceProcessor(model_file=self.model_file)
        except (OSError, RuntimeError) as e:
            raise ValueError(f"{self.model_file}: not a SentencePiece model ({e})") from None
        got = (self.sp.unk_id(), self.sp.bos_id(), self.sp.eos_id())
        if got != (SPM_UNK, SPM_BOS, SPM_EOS):
            raise ValueError(
                f"{self.model_file}: expected SentencePiece ids <unk>=0 <s>=1 </s>=2 "
                f"(XLM-R layout), got unk={got[0]} bos={got[1]} eos={got[2]}"
            )
        self.num_pieces = self.sp.get_piece_size()
        self.mask_id = self.num_pieces + FAIRSEQ_OFFSET
        self.vocab_size = self.num_pieces + FAIRSEQ_OFFSET + 1
        # spm id -> fairseq id, and back (fairseq specials without an spm piece -> -1).
        to_xlmr = np.arange(self.num_pieces, dtype=np.int64) + FAIRSEQ_OFFSET
        to_xlmr[[SPM_UNK, SPM_BOS, SPM_EOS]] = [self.unk_id, self.bos_id, self.eos_id]
        self._to_xlmr = to_xlmr
        to_spm = np.full(self.vocab_size, -1, dtype=np.int64)
        to_spm[to_xlmr] = np.arange(self.num_pieces)
        self._to_spm = to_spm

    def __len__(self) -> int:
        return self.vocab_size

    def __reduce__(self):
        # SentencePieceProcessor does not pickle everywhere; rebuild from the file instead
        # (DataLoader workers, Beam DoFns).
        return (type(self), (self.model_file,))

    def __repr__(self) -> str:
        return f"XLMRTokenizer({self.model_file!r}, vocab_size={self.vocab_size})"

    @property
    def special_ids(self) -> frozenset[int]:
        return frozenset({self.bos_id, self.pad_id, self.eos_id, self.unk_id, self.mask_id})

    def encode(self, text: str) -> list[int]:
        """Text -> XLM-R ids, without <s> / </s>."""
        return self._to_xlmr[self.sp.encode(text)].tolist()

    def encode_batch(self, texts: Sequence[str], num_threads: int | None = None) -> list[list[int]]:
        """Like `encode` for many texts; SentencePiece encodes them on `num_threads` threads."""
        if not texts:
            return []
        batch = self.sp.encode(list(texts), num_threads=num_threads or -1)
        lut = self._to_xlmr
        return [lut[ids].tolist() if ids else [] for ids in batch]

    def decode(self, ids: Iterable[int]) -> str:
        """XLM-R ids -> text; <s>, <pad>, </s> and <mask> are dropped, <unk> stays as ' ⁇ '."""
        ids = np.asarray(list(ids), dtype=np.int64)
        if ids.size and (ids.min() < 0 or ids.max() >= self.vocab_size):
            bad = ids[(ids < 0) | (ids >= self.vocab_size)][0]
            raise ValueError(f"id {int(bad)} is outside the vocabulary [0, {self.vocab_size})")
        spm_ids = self._to_spm[ids]
        return self.sp.decode(_keep(spm_ids))

    def id_to_piece(self, i: int) -> str:
        if i == self.pad_id:
            return "<pad>"
        if i == self.mask_id:
            return "<mask>"
        return self.sp.id_to_piece(int(self._to_spm[i]))

    def piece_to_id(self, piece: str) -> int:
        if piece == "<pad>":
            return self.pad_id
        if piece == "<mask>":
            return self.mask_id
        return int(self._to_xlmr[self.sp.piece_to_id(piece)])


def _keep(spm_ids: np.ndarray) -> list[int]:
    """Drop the framing specials (<s>, </s>) and fairseq-only ids (-1); keep <unk>."""
    keep = (spm_ids >= 0) & (spm_ids != SPM_BOS) & (spm_ids != SPM_EOS)
    return spm_ids[keep].tolist()
