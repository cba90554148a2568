"""`cc100 finetune xnli`: the XNLI TSV formats, per-language accuracy, and Trainer end to end on
the real 15-language XNLI sample with an export of our model."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tests.capture import run_main
from train.finetune import FinetuneError, accuracy_by_language, read_nli_tsv
from train.finetune import main as finetune_main

XNLI_LANGS = ["ar", "bg", "de", "el", "en", "es", "fr", "hi", "ru", "sw", "th", "tr", "ur", "vi", "zh"]


@pytest.fixture(scope="module")
def xnli(shared_data):
    return shared_data / "eval" / "xnli_sample"


def test_reads_the_real_xnli_tsv(xnli):
    dev = read_nli_tsv(xnli / "xnli.dev.sample.tsv", "en")
    assert dev.languages == XNLI_LANGS and len(dev) == 15 and dev.skipped == 0
    assert set(dev.labels) <= {0, 1, 2}
    en = read_nli_tsv(xnli / "xnli.dev.sample.tsv", "en", only_language="en")
    assert len(en) == 1 and en.languages == ["en"] and en.premises[0] == dev.premises[4]


def test_multinli_and_xnli_mt_layouts(tmp_path):
    mnli = tmp_path / "multinli.tsv"
    mnli.write_text("gold_label\tsentence1\tsentence2\tgenre\n"
                    "entailment\tA man \"sleeps\".\tSomeone sleeps.\tfiction\n"
                    "-\tNo consensus.\tNone.\tfiction\n"
                    "contradiction\tIt rains.\tIt is dry.\tfiction\n", encoding="utf-8")
    d = read_nli_tsv(mnli, "en")
    assert d.labels == [0, 2] and d.skipped == 1 and d.languages == ["en", "en"]
    assert d.premises[0] == 'A man "sleeps".'  # quotes are text, not CSV quoting
    mt = tmp_path / "multinli.train.de.tsv"
    mt.write_text("premise\thypo\tlabel\nEs regnet.\tEs ist trocken.\tcontradictory\n", encoding="utf-8")
    assert read_nli_tsv(mt, "de").labels == [2]
    bad = tmp_path / "bad.tsv"
    bad.write_text("a\tb\n1\t2\n")
    with pytest.raises(FinetuneError, match="not an XNLI"):
        read_nli_tsv(bad, "en")
    with pytest.raises(FinetuneError, match="no labelled rows in language 'fr'"):
        read_nli_tsv(mnli, "en", only_language="fr")


def test_accuracy_by_language_averages_languages_not_rows():
    acc = accuracy_by_language([0, 1, 1, 2, 2, 2], [0, 1, 0, 2, 2, 2], ["de", "de", "de", "fr", "fr", "fr"])
    assert acc == {"de": pytest.approx(2 / 3), "fr": 1.0, "average": pytest.approx(5 / 6)}


@pytest.fixture(scope="module")
def export(tmp_path_factory, shared_data):
    """A tiny export of our model with a real vocabulary (random weights: the mechanics only)."""
    from model.hf import save_pretrained
    from model.xlmr import XLMRForMaskedLM, config_for
    from tests.train.test_tokenize import build_world
    from train.tokenizer import XLMRTokenizer

    world = build_world(tmp_path_factory, shared_data)
    vocab = world.vocab / "sentencepiece.bpe.model"
    torch.manual_seed(0)
    model = XLMRForMaskedLM(config_for("tiny", vocab_size=XLMRTokenizer(vocab).vocab_size))
    out = tmp_path_factory.mktemp("xnli-export") / "hf"
    save_pretrained(model, out, vocab_file=vocab)
    return out


def finetune(*argv) -> tuple[int, str, str]:
    return run_main(finetune_main, *argv)


def test_finetune_xnli_end_to_end(export, xnli, tmp_path):
    pytest.importorskip("accelerate")
    import transformers

    torch.set_num_threads(1)
    rc, out, err = finetune("xnli", "--model", export, "--train", xnli / "xnli.dev.sample.tsv",
                            "--eval", xnli / "xnli.dev.sample.tsv", "--test", xnli / "xnli.test.sample.tsv",
                            "--output", tmp_path, "--epochs", 2, "--lr", 1e-3)
    assert rc == 0, err
    res = json.loads((tmp_path / "xnli.json").read_text())
    assert res["train"]["rows"] == 1 and res["train"]["steps"] == 2  # English only: one pair, two epochs
    for split in ("eval", "test"):
        assert list(res[split]["accuracy"]) == [*XNLI_LANGS, "average"]
    assert "average" in out and not (tmp_path / "checkpoints").exists()

    # the saved classifier gives the reported per-language test accuracy with transformers alone
    tok = transformers.AutoTokenizer.from_pretrained(tmp_path / "model")
    clf = transformers.AutoModelForSequenceClassification.from_pretrained(tmp_path / "model").eval()
    test = read_nli_tsv(xnli / "xnli.test.sample.tsv", "en")
    batch = tok(test.premises, test.hypotheses, truncation=True, max_length=128, padding=True, return_tensors="pt")
    with torch.no_grad():
        pred = clf(**batch).logits.argmax(-1).numpy()
    expected = accuracy_by_language(pred, np.array(test.labels), test.languages)
    assert res["test"]["accuracy"] == pytest.approx(expected)


def test_bad_input_is_one_line(export, xnli, tmp_path):
    rc, _, err = finetune("xnli", "--model", tmp_path, "--train", xnli / "xnli.dev.sample.tsv",
                          "--eval", xnli / "xnli.dev.sample.tsv", "--output", tmp_path / "o")
    assert rc == 2 and "no config.json" in err
    rc, _, err = finetune("xnli", "--model", export, "--train", tmp_path / "missing.tsv",
                          "--eval", xnli / "xnli.dev.sample.tsv", "--output", tmp_path / "o")
    assert rc == 2 and "missing.tsv: no such file" in err and len(err.strip().splitlines()) == 1


def test_output_it_did_not_write_is_refused_before_any_work(export, xnli, tmp_path):
    foreign = tmp_path / "precious"
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("x")
    rc, _, err = finetune("xnli", "--model", export, "--train", xnli / "xnli.dev.sample.tsv",
                          "--eval", xnli / "xnli.dev.sample.tsv", "--output", foreign)
    assert rc == 2 and "precious" in err and len(err.strip().splitlines()) == 1, err
    assert sorted(p.name for p in foreign.iterdir()) == ["thesis.tex"]
