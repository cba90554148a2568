"""Shared pieces for the model tests: tiny configs, a padded multilingual batch, HF helpers."""

from __future__ import annotations

import dataclasses
import io

import pytest
import torch

from model.xlmr import XLMRConfig, config_for

# The same sentence in ten languages / eight scripts, so the batch has very different lengths.
SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "Le vif renard brun saute par-dessus le chien paresseux.",
    "Der schnelle braune Fuchs springt über den faulen Hund, schneller als je zuvor.",
    "Быстрая коричневая лиса прыгает через ленивую собаку.",
    "敏捷的棕色狐狸跳过了懒狗。",
    "素早い茶色の狐がのろまな犬を飛び越える。",
    "الثعلب البني السريع يقفز فوق الكلب الكسول.",
    "तेज़ भूरी लोमड़ी आलसी कुत्ते के ऊपर कूदती है।",
    "Η γρήγορη καφέ αλεπού πηδά πάνω από το τεμπέλικο σκυλί.",
    "빠른 갈색 여우가 게으른 개를 뛰어넘는다.",
]


def train_spm(path, sentences=SENTENCES, vocab_size=200):
    """A small SentencePiece unigram model (XLM-R layout: <unk>=0, <s>=1, </s>=2), written to path."""
    import sentencepiece as spm

    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(sentences * 4), model_writer=buf, vocab_size=vocab_size,
        model_type="unigram", character_coverage=1.0, hard_vocab_limit=False, minloglevel=2)
    path.write_bytes(buf.getvalue())
    return spm.SentencePieceProcessor(model_file=str(path))


def fairseq_ids(sp, text: str) -> list[int]:
    """<s> text </s> in XLM-R ids: spm <unk>(0) -> 3, every other piece k -> k + 1."""
    return [0] + [3 if k == 0 else k + 1 for k in sp.encode(text)] + [2]


def pad_batch(rows: list[list[int]], pad: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    T = max(len(r) for r in rows)
    ids = torch.full((len(rows), T), pad, dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r)
    return ids, ids.ne(pad).long()


@pytest.fixture(scope="session")
def spm_model(tmp_path_factory):
    path = tmp_path_factory.mktemp("vocab") / "sentencepiece.bpe.model"
    return path, train_spm(path)


@pytest.fixture(scope="session")
def tiny_config(spm_model) -> XLMRConfig:
    _, sp = spm_model
    return config_for("tiny", vocab_size=len(sp) + 2)  # + <pad> and <mask>, as XLM-R


@pytest.fixture(scope="session")
def multilingual_batch(spm_model) -> tuple[torch.Tensor, torch.Tensor]:
    """(input_ids, attention_mask) for the ten sentences, right-padded with <pad>=1."""
    _, sp = spm_model
    return pad_batch([fairseq_ids(sp, s) for s in SENTENCES])


def hf_config(cfg: XLMRConfig):
    """The transformers XLMRobertaConfig of one of ours, field by field."""
    from transformers import XLMRobertaConfig

    return XLMRobertaConfig(**dataclasses.asdict(cfg))
