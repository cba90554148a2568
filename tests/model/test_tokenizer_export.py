"""The exported directory's tokenizer gives the ids training used, in every transformers class.

A vocabulary trained by `cc100 vocab` (with and without --byte-fallback) on UDHR and Tatoeba text,
exported by `cc100 export`, then loaded with AutoTokenizer, XLMRobertaTokenizer and
XLMRobertaTokenizerFast (`from_pretrained(dir)`): on held-out lines of 400+ languages in 20+
scripts, plus emoji, rare CJK, mathematical alphanumerics, literal "<0x41>", "<s>" and "<mask>"
written as text, tabs and runs of spaces, the ids equal XLMRTokenizer's (SentencePiece's) except for
Viterbi ties, which must be rare (< 0.5 % of lines).
"""

from __future__ import annotations

import csv
import dataclasses
import gzip
import unicodedata
from pathlib import Path

import pytest

from tests.model.test_export import trained_model, write_checkpoint
from train.tokenizer import XLMRTokenizer
from train.vocab import MODEL_NAME, VocabConfig, train_sentencepiece

transformers = pytest.importorskip("transformers")

# Lines no vocabulary trained here covers completely, and text SentencePiece keeps as text.
HARD_LINES = [
    "I ❤️ 🦀 and 👍🏽 — emoji, with skin tone and ZWJ: 👩‍👩‍👧",
    "Rare CJK: 𠜎𠜱𠝹𠱓 𪚥 龘 and 鬱",
    "Mathematical alphanumerics: 𝐀𝐁𝐂 𝔸𝔹ℂ 𝓧𝓨 𝟘𝟙𝟚",
    "A literal <0x41> and <0xE2> are characters, not byte pieces",
    "<s> starts, <mask> hides and </s> ends: written as text",
    "<unk> <pad> as text too",
    "tab\tseparated\t\tcolumns\t",
    "runs    of     spaces   inside  ",
    "   leading spaces",
    "✓ done ✗ not done ☃ snow",
    "Ꭿꭲꮎꭲ Cherokee, 𐌰𐌱𐌲 Gothic, 𓀀 hieroglyph",
]


def udhr(shared_data: Path) -> dict[str, list[str]]:
    """Paragraphs per declaration (UDHR in 500+ language varieties)."""
    out: dict[str, list[str]] = {}
    with gzip.open(shared_data / "udhr" / "udhr_paragraphs.tsv.gz", "rt", encoding="utf-8") as f:
        for row in csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE):
            out.setdefault(row["udhr_code"], []).append(row["text"])
    return out


def tatoeba(shared_data: Path) -> dict[str, list[str]]:
    folder = shared_data / "eval" / "tatoeba_laser_xtreme36"
    return {p.name: [line for line in p.read_text(encoding="utf-8").splitlines() if line.strip()]
            for p in sorted(folder.glob("tatoeba.*-eng.*")) if not p.name.endswith(".eng")}


def script(line: str) -> str | None:
    """The Unicode script (first word of the character name) of a line's first letter."""
    for ch in line:
        if ch.isalpha():
            return unicodedata.name(ch, "?").split()[0]
    return None


@pytest.fixture(scope="module")
def corpus(shared_data) -> tuple[list[str], list[str]]:
    """(training lines, held-out test lines)."""
    declarations, sentences = udhr(shared_data), tatoeba(shared_data)
    train = [p for ps in declarations.values() for p in ps[:25]]
    train += [s for ss in sentences.values() for s in ss[:200]]
    test = [p for ps in declarations.values() for p in ps[25:27]]
    test += [s for ss in sentences.values() for s in ss[200:210]]
    return train, test + HARD_LINES


def export(tmp: Path, train: list[str], byte_fallback: bool, tiny_config, capfd) -> tuple[Path, Path]:
    """`cc100 vocab`'s trainer, then `cc100 export` of a tiny model with that vocabulary."""
    from model.export import main as export_main

    sample = tmp / "sample.txt"
    sample.write_text("\n".join(train) + "\n", encoding="utf-8")
    cfg = VocabConfig(corpus=tmp, output=tmp, vocab_size=8000, threads=2, quiet=True,
                      allow_smaller_vocab=True, byte_fallback=byte_fallback)
    vocab = tmp / MODEL_NAME
    vocab.write_bytes(train_sentencepiece(sample, cfg))
    n_ids = XLMRTokenizer(vocab).vocab_size
    model_cfg = dataclasses.replace(tiny_config, vocab_size=n_ids)
    ckpt = write_checkpoint(tmp / "ckpt.pt", trained_model(model_cfg), model_cfg, vocab_file=str(vocab))
    out = tmp / "hf"
    capfd.readouterr()
    assert export_main(["--checkpoint", str(ckpt), "--output", str(out)]) == 0
    printed = "\n".join(capfd.readouterr())
    assert "byte fallback" not in printed.lower() and "warning" not in printed.lower(), printed
    return vocab, out


def differences(tok: XLMRTokenizer, lines, ours, theirs) -> list[int]:
    """Lines whose ids differ; each must be a Viterbi tie: the same text, the same total score."""

    def score(ids):
        return sum(tok.sp.get_score(int(tok._to_spm[i])) for i in ids)

    differ = [i for i, (a, b) in enumerate(zip(ours, theirs, strict=True)) if a != b]
    for i in differ:
        assert tok.decode(ours[i]) == tok.decode(theirs[i]), (lines[i], ours[i], theirs[i])
        assert score(ours[i]) == pytest.approx(score(theirs[i]), abs=1e-4), (lines[i], ours[i], theirs[i])
    return differ


@pytest.mark.slow
@pytest.mark.parametrize("byte_fallback", [False, True], ids=["xlmr-unk", "byte-fallback"])
def test_every_transformers_class_gives_the_training_ids(corpus, byte_fallback, tiny_config, tmp_path,
                                                         capfd):
    train, lines = corpus
    assert len(lines) >= 1000
    scripts = {script(line) for line in lines} - {None}
    assert len(scripts) >= 20, scripts
    vocab, out = export(tmp_path, train, byte_fallback, tiny_config, capfd)
    assert {p.name for p in out.iterdir()} == {".cc100", "config.json", "model.safetensors", MODEL_NAME,
                                               "tokenizer_config.json", "tokenizer.json"}  # .cc100: the stage marker
    tok = XLMRTokenizer(vocab)
    ours = tok.encode_batch(lines)
    bytes_used = sum(tok.id_to_piece(i).startswith("<0x") for ids in ours for i in ids)
    unks = sum(ids.count(tok.unk_id) for ids in ours)
    if byte_fallback:  # the hard lines do need the fallback, and nothing is <unk>
        assert bytes_used > 20 and unks == 0
    else:  # XLM-R's behaviour: no byte pieces at all, uncovered characters are <unk>
        assert bytes_used == 0 and unks > 20
        assert not any(tok.id_to_piece(i).startswith("<0x") for i in range(tok.vocab_size))

    for cls in (transformers.AutoTokenizer, transformers.XLMRobertaTokenizer,
                transformers.XLMRobertaTokenizerFast):
        hf = cls.from_pretrained(out)
        assert "XLMRoberta" in type(hf).__name__, type(hf)
        assert (hf.bos_token_id, hf.pad_token_id, hf.eos_token_id, hf.unk_token_id,
                hf.mask_token_id, len(hf)) == (0, 1, 2, 3, tok.mask_id, tok.vocab_size)
        theirs = hf(lines, add_special_tokens=False)["input_ids"]
        differ = differences(tok, lines, ours, theirs)
        print(f"{cls.__name__} byte_fallback={byte_fallback}: {len(lines)} lines, {len(scripts)} scripts, "
              f"{len(differ)} Viterbi ties")
        assert len(differ) < 0.005 * len(lines)
        hard = lines.index(HARD_LINES[0])
        for i in range(hard, len(lines)):  # the hard lines exactly, no tie allowed
            assert theirs[i] == ours[i], (cls.__name__, lines[i])
        assert hf(lines[hard])["input_ids"] == [tok.bos_id, *ours[hard], tok.eos_id]
        if byte_fallback:  # byte pieces decode back to the characters
            assert hf.decode(ours[hard]) == tok.decode(ours[hard]) == lines[hard]
