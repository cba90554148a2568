"""XLMRTokenizer: SentencePiece ids -> XLM-R / fairseq ids, checked against transformers."""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import pytest

from train.tokenizer import XLMRTokenizer
from train.vocab import MODEL_NAME, VocabConfig, train_sentencepiece

# Lines of several scripts; the test sentence is built from lines the model was trained on,
# so every character is in the vocabulary (no <unk>; the exported directory is checked on far more
# text, uncovered characters and both byte-fallback settings in tests/model/test_tokenizer_export.py).
REFERENCE_LANGS = {
    "en": 300,
    "de": 300,
    "ru": 300,
    "el": 200,
    "ar": 200,
    "hi": 200,
    "th": 200,
    "ko": 150,
    "ja": 80,
    "zh": 80,
}
OOV = "𓀀"  # an Egyptian hieroglyph: not in any reference text


def train_model(lines: list[str], tmp: Path, vocab_size: int, allow_smaller: bool = False,
                byte_fallback: bool = False) -> Path:
    sample = tmp / "sample.txt"
    sample.write_text("\n".join(lines) + "\n", encoding="utf-8")
    cfg = VocabConfig(
        corpus=tmp,
        output=tmp,
        vocab_size=vocab_size,
        threads=1,
        quiet=True,
        allow_smaller_vocab=allow_smaller,
        byte_fallback=byte_fallback,
    )
    out = tmp / "vocab"
    out.mkdir()
    (out / MODEL_NAME).write_bytes(train_sentencepiece(sample, cfg))
    return out


@pytest.fixture(scope="module")
def reference_lines(shared_data) -> dict[str, list[str]]:
    out = {}
    for lang, n in REFERENCE_LANGS.items():
        text = (shared_data / "reference" / f"{lang}.txt").read_text(encoding="utf-8")
        out[lang] = [line.strip() for line in text.splitlines() if line.strip()][:n]
    return out


@pytest.fixture(scope="module")
def vocab_dir(reference_lines, tmp_path_factory) -> Path:
    lines = [line for ls in reference_lines.values() for line in ls]
    return train_model(lines, tmp_path_factory.mktemp("tok"), vocab_size=4000)


@pytest.fixture(scope="module")
def tok(vocab_dir) -> XLMRTokenizer:
    return XLMRTokenizer(vocab_dir / MODEL_NAME)


@pytest.fixture(scope="module")
def multilingual(reference_lines) -> str:
    return " ".join(ls[7] for ls in reference_lines.values())


TINY_LINES = [
    "The quick brown fox jumps over the lazy dog.",
    "Der schnelle braune Fuchs.",
    "Быстрая коричневая лиса прыгает.",
    "Η γρήγορη καφέ αλεπού.",
    "素早い茶色の狐",
] * 20


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    """A model from a few hand-written lines (XLM-R's kind: no byte pieces): tests that need no
    shared data."""
    out = train_model(TINY_LINES, tmp_path_factory.mktemp("tiny"), vocab_size=400, allow_smaller=True)
    return out / MODEL_NAME


@pytest.fixture(scope="module")
def tiny_byte_model(tmp_path_factory) -> Path:
    """The same with `cc100 vocab --byte-fallback`."""
    out = train_model(TINY_LINES, tmp_path_factory.mktemp("tiny_bytes"), vocab_size=400,
                      allow_smaller=True, byte_fallback=True)
    return out / MODEL_NAME


@pytest.fixture
def hf():
    """transformers (a test dependency only). It reads sentencepiece.bpe.model through its own
    copy of SentencePiece's proto; sentencepiece is pinned to 0.2.1 because 0.2.3's copy needs
    protobuf >= 7, which apache-beam does not allow."""
    return pytest.importorskip("transformers")


def test_id_layout_is_xlmr(tiny_model):
    tok = XLMRTokenizer(tiny_model)
    n = tok.sp.get_piece_size()
    assert (tok.bos_id, tok.pad_id, tok.eos_id, tok.unk_id) == (0, 1, 2, 3)
    assert tok.vocab_size == n + 2 == len(tok)  # pieces + fairseq offset 1 + <mask>
    assert tok.mask_id == tok.vocab_size - 1
    assert [tok.id_to_piece(i) for i in (0, 1, 2, 3, tok.mask_id)] == [
        "<s>",
        "<pad>",
        "</s>",
        "<unk>",
        "<mask>",
    ]
    # every real piece k (>= 3 in SentencePiece) moves to k + 1
    for k in (3, 4, n // 2, n - 1):
        piece = tok.sp.id_to_piece(k)
        assert tok.piece_to_id(piece) == k + 1
        assert tok.id_to_piece(k + 1) == piece
    assert tok.piece_to_id("<unk>") == 3 and tok.piece_to_id("<mask>") == tok.mask_id
    assert tok.piece_to_id("no-such-piece-xyz") == tok.unk_id


def test_encode_adds_no_specials_and_decode_inverts(tiny_model):
    tok = XLMRTokenizer(tiny_model)
    text = "The quick brown fox. Быстрая лиса."
    ids = tok.encode(text)
    assert ids and not set(ids) & {tok.bos_id, tok.pad_id, tok.eos_id, tok.mask_id}
    assert all(4 <= i < tok.mask_id for i in ids)
    assert ids == [k + 1 for k in tok.sp.encode(text)]
    assert tok.decode(ids) == text
    # framing and padding are dropped on decode
    assert tok.decode([tok.bos_id, *ids, tok.eos_id, tok.pad_id, tok.mask_id]) == text
    with pytest.raises(ValueError, match="outside the vocabulary"):
        tok.decode([tok.vocab_size])


def test_encode_batch_matches_encode(tiny_model):
    tok = XLMRTokenizer(tiny_model)
    texts = ["Der schnelle braune Fuchs.", "", "Η γρήγορη καφέ αλεπού.", "素早い茶色の狐 fox"]
    assert tok.encode_batch(texts) == [tok.encode(t) for t in texts]
    assert tok.encode_batch(texts, num_threads=1) == [tok.encode(t) for t in texts]
    assert tok.encode("") == [] and tok.encode_batch([]) == []


def test_unknown_characters_are_unk_by_default_as_in_xlmr(tiny_model):
    tok = XLMRTokenizer(tiny_model)
    ids = tok.encode(f"fox {OOV} dog")
    assert ids.count(tok.unk_id) == 1
    assert not any(tok.id_to_piece(i).startswith("<0x") for i in range(tok.vocab_size))
    assert tok.decode(ids) == "fox  ⁇  dog"  # SentencePiece writes <unk> as " ⁇ "


def test_byte_fallback_encodes_unknown_characters_losslessly(tiny_byte_model):
    tok = XLMRTokenizer(tiny_byte_model)
    ids = tok.encode(f"fox {OOV}")
    assert tok.unk_id not in ids
    pieces = [tok.id_to_piece(i) for i in ids]
    assert [p for p in pieces if p.startswith("<0x")] == ["<0xF0>", "<0x93>", "<0x80>", "<0x80>"]
    assert tok.decode(ids) == f"fox {OOV}"


def test_pickles_for_worker_processes(tiny_model):
    tok = XLMRTokenizer(tiny_model)
    clone = pickle.loads(pickle.dumps(tok))
    assert clone.encode("lazy dog") == tok.encode("lazy dog") and clone.vocab_size == tok.vocab_size


def test_bad_model_files_give_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.model"):
        XLMRTokenizer(tmp_path / "missing.model")
    junk = tmp_path / "junk.model"
    junk.write_bytes(b"this is not a protobuf")
    with pytest.raises(ValueError, match="junk.model: not a SentencePiece model"):
        XLMRTokenizer(junk)


def test_other_id_layouts_are_refused(tmp_path):
    import sentencepiece as spm

    sample = tmp_path / "s.txt"
    sample.write_text("a b c d e f g h\n" * 50)
    spm.SentencePieceTrainer.train(
        input=str(sample),
        model_prefix=str(tmp_path / "llama"),
        vocab_size=30,
        unk_id=3,
        bos_id=1,
        eos_id=2,
        pad_id=0,
        minloglevel=2,
        hard_vocab_limit=False,
    )
    with pytest.raises(ValueError, match="expected SentencePiece ids <unk>=0"):
        XLMRTokenizer(tmp_path / "llama.model")


# -- the proof against transformers ---------------------------------------------------------


def assert_same_or_tie(tok: XLMRTokenizer, ours: list[list[int]], theirs: list[list[int]]) -> None:
    """Equal ids, except where two segmentations score exactly the same (a Viterbi tie such as
    "...." = "..." + "." or "." + "...", which SentencePiece and tokenizers break differently).
    Ties must be rare and must cover the same text."""

    def score(ids):
        return sum(tok.sp.get_score(int(tok._to_spm[i])) for i in ids)

    differ = [i for i, (a, b) in enumerate(zip(ours, theirs, strict=True)) if a != b]
    for i in differ:
        assert tok.decode(ours[i]) == tok.decode(theirs[i]), (i, ours[i], theirs[i])
        assert score(ours[i]) == pytest.approx(score(theirs[i]), abs=1e-4), (i, ours[i], theirs[i])
    assert len(differ) <= 0.01 * len(ours)


def test_transformers_encodes_a_multilingual_sentence_to_our_ids(hf, vocab_dir, tok, multilingual):
    ids = tok.encode(multilingual)
    assert not any(tok.id_to_piece(i).startswith("<0x") for i in ids)  # all characters covered
    assert len(ids) > 50

    slow = hf.XLMRobertaTokenizer.from_pretrained(str(vocab_dir))  # reads sentencepiece.bpe.model
    assert len(slow) == tok.vocab_size
    assert slow.mask_token_id == tok.mask_id
    assert (slow.bos_token_id, slow.pad_token_id, slow.eos_token_id, slow.unk_token_id) == (
        0,
        1,
        2,
        3,
    )
    assert slow(multilingual, add_special_tokens=False)["input_ids"] == ids
    assert slow(multilingual)["input_ids"] == [
        tok.bos_id,
        *ids,
        tok.eos_id,
    ]  # HF frames <s> ... </s>

    from transformers.convert_slow_tokenizer import convert_slow_tokenizer

    fast = convert_slow_tokenizer(slow)  # the Rust tokenizer built from the .model proto
    assert fast.get_vocab_size() == tok.vocab_size
    assert fast.encode(multilingual, add_special_tokens=False).ids == ids
    assert fast.encode(multilingual).ids == [tok.bos_id, *ids, tok.eos_id]
    assert fast.token_to_id("<mask>") == tok.mask_id


def test_transformers_agrees_line_by_line(hf, vocab_dir, tok, reference_lines):
    """250 training lines, 10 scripts: identical (coverage 0.9995 leaves a few rare characters
    out; they are <unk> in both)."""
    lines = [line for ls in reference_lines.values() for line in ls[:25]]
    ours = tok.encode_batch(lines)
    theirs = hf.XLMRobertaTokenizer.from_pretrained(str(vocab_dir))(
        lines, add_special_tokens=False
    )["input_ids"]
    covered = [
        i
        for i, ids in enumerate(ours)
        if not any(tok.id_to_piece(t).startswith("<0x") for t in ids)
    ]
    assert len(covered) >= 0.9 * len(lines)
    assert_same_or_tie(tok, [ours[i] for i in covered], [theirs[i] for i in covered])


def test_tokenizer_reads_the_file_under_any_name(tok, vocab_dir, tmp_path):
    copy = tmp_path / "renamed.model"
    shutil.copy(vocab_dir / MODEL_NAME, copy)
    assert XLMRTokenizer(copy).encode("Hello world") == tok.encode("Hello world")
