"""`cc100 evaluate`: Tatoeba retrieval (XTREME protocol) on the real LASER test set, held-out
masked-LM loss against the unigram baseline, and both reproduced with transformers alone."""

from __future__ import annotations

import contextlib
import io
import json
import shutil

import numpy as np
import pytest
import torch

from tests.capture import run_main
from tests.train.test_tokenize import build_world, other_vocab
from tests.train.test_trainer import one_thread  # noqa: F401  (autouse: one intra-op thread here too)
from train.evaluate import (EvalError, default_layer, find_tatoeba, length_batches, load_tatoeba,
                            retrieval_accuracy, unigram_entropy)
from train.evaluate import main as evaluate_main
from train.pretrain import main as pretrain_main

RUN_ARGS = ["--config", "tiny", "--max-len", "64", "--batch-tokens", "1024", "--micro-batch", "8",
            "--log-every", "5", "--eval-every", "10", "--eval-seqs", "6", "--checkpoint-every", "0",
            "--seed", "5", "--lr", "3e-3", "--warmup-steps", "2", "--steps", "20"]
LANGS = "deu,fra,rus,cmn,jpn,tgl"  # four in the test world's corpus (de fr ru zh), two not


@pytest.fixture(scope="module")
def tatoeba(shared_data):
    return shared_data / "eval" / "tatoeba_laser_xtreme36"


@pytest.fixture(scope="module")
def world(tmp_path_factory, shared_data):
    return build_world(tmp_path_factory, shared_data)


@pytest.fixture(scope="module")
def small_tatoeba(tatoeba, tmp_path_factory):
    """Two of the real pairs (fra is in the test world's corpus, jpn is not), for pretraining."""
    out = tmp_path_factory.mktemp("tatoeba-2")
    for lang in ("fra", "jpn"):
        for side in (lang, "eng"):
            shutil.copy(tatoeba / f"tatoeba.{lang}-eng.{side}", out)
    return out


@pytest.fixture(scope="module")
def run(world, small_tatoeba, tmp_path_factory):
    out = tmp_path_factory.mktemp("eval-run")
    argv = ["--shards", str(world.shards), "--vocab", str(world.vocab), "--output", str(out), *RUN_ARGS,
            "--eval-tatoeba", str(small_tatoeba)]
    with contextlib.redirect_stdout(io.StringIO()):
        assert pretrain_main(argv) == 0
    return out


def evaluate(*argv) -> tuple[int, str, str]:
    return run_main(evaluate_main, *argv)


@pytest.fixture(scope="module")
def result(run, tatoeba):
    rc, out, err = evaluate(run, "--tatoeba", tatoeba, "--langs", LANGS)
    assert rc == 0, err
    return json.loads((run / "eval" / "eval.json").read_text()), out


# -- pieces -------------------------------------------------------------------------------------

def test_retrieval_accuracy_counts_each_direction():
    x = np.eye(4)
    assert retrieval_accuracy(x, x.copy()) == (1.0, 1.0)
    # en 1 leans towards xx 0: every xx sentence still finds its translation (xx 1's nearest
    # English sentence is en 1), but en 1's nearest xx sentence is xx 0
    y = np.array([[1, 0, 0, 0], [1, 0.1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1.0]])
    xx_en, en_xx = retrieval_accuracy(x, y)
    assert (xx_en, en_xx) == (1.0, 0.75)
    # cosine, not dot product: scaling a vector changes nothing
    assert retrieval_accuracy(x * np.array([[1], [9], [0.1], [3]]), y) == (xx_en, en_xx)
    # the other way round: xx 0 and xx 1 crowd around en 0, so xx 1 finds en 0
    x2 = np.array([[1, 0.0], [1, 0.05], [0, 1]])
    y2 = np.array([[1, 0.0], [0.7, 0.7], [0, 1]])
    a, b = retrieval_accuracy(x2, y2)
    assert a == pytest.approx(2 / 3) and b == 1.0


def test_length_batches_cover_every_row_once_within_the_budget():
    rng = np.random.default_rng(0)
    lengths = rng.integers(3, 80, size=500).tolist() + [300]
    batches = length_batches(lengths, 256)
    flat = np.concatenate(batches)
    assert sorted(flat.tolist()) == list(range(len(lengths)))
    for b in batches:
        assert len(b) == 1 or len(b) * max(lengths[i] for i in b) <= 256
    assert [len(b) for b in batches if 300 in [lengths[i] for i in b]] == [1]


def test_default_layer_follows_xtreme_and_scales():
    assert default_layer(12) == 7 and default_layer(24) == 13  # scripts/run_tatoeba.sh
    assert default_layer(2) == 1 and default_layer(4) == 2 and default_layer(6) == 4
    assert all(0 <= default_layer(n) < n for n in range(1, 40))


def test_unigram_entropy_in_nats():
    assert unigram_entropy(np.arange(8)) == pytest.approx(np.log(8))
    assert unigram_entropy(np.array([5, 5, 5])) == 0.0
    assert unigram_entropy(np.array([1, 1, 2, 3])) == pytest.approx(-(0.5 * np.log(0.5) + 2 * 0.25 * np.log(0.25)))


def test_real_tatoeba_has_the_36_xtreme_languages(tatoeba, world):
    from train.tokenizer import XLMRTokenizer

    pairs = find_tatoeba(tatoeba)
    assert len(pairs) == 36 and {"deu", "cmn", "swh", "pes", "jav"} <= set(pairs)
    tok = XLMRTokenizer(world.vocab / "sentencepiece.bpe.model")
    (jav,) = load_tatoeba(tatoeba, tok, langs=["jav"])
    assert jav.iso == "jv" and len(jav.xx) == len(jav.en) == 205  # as upstream
    assert all(s[0] == tok.bos_id and s[-1] == tok.eos_id for s in jav.xx + jav.en)
    short = load_tatoeba(tatoeba, tok, max_len=8, langs=["deu"])[0]
    assert max(len(s) for s in short.xx) == 8


def test_bad_tatoeba_dirs_are_one_line_errors(tmp_path, tatoeba, world):
    from train.tokenizer import XLMRTokenizer

    with pytest.raises(EvalError, match="no tatoeba"):
        find_tatoeba(tmp_path)
    with pytest.raises(EvalError, match="xyz"):
        find_tatoeba(tatoeba, ["deu", "xyz"])
    (tmp_path / "tatoeba.deu-eng.deu").write_text("a\nb\n")
    (tmp_path / "tatoeba.deu-eng.eng").write_text("a\n")
    with pytest.raises(EvalError, match="not line-aligned"):
        load_tatoeba(tmp_path, XLMRTokenizer(world.vocab / "sentencepiece.bpe.model"))


# -- the command on a run -------------------------------------------------------------------------

def test_eval_json_tatoeba_part(result):
    res, out = result
    t = res["tatoeba"]
    assert t["layer"] == 1 and t["hidden_states_index"] == 2  # tiny: 2 blocks, round(7 * 2 / 12) = 1
    assert list(t["languages"]) == LANGS.split(",")
    marks = {lang: s["in_training"] for lang, s in t["languages"].items()}
    assert marks == {"deu": True, "fra": True, "rus": True, "cmn": True, "jpn": False, "tgl": False}
    for s in t["languages"].values():
        assert s["sentences"] == 1000 and 0 <= s["xx_en"] <= 1 and 0 <= s["en_xx"] <= 1
    assert t["average"]["mean"] == pytest.approx(np.mean([s["mean"] for s in t["languages"].values()]))
    assert t["average_in_training"]["mean"] == pytest.approx(
        np.mean([t["languages"][k]["mean"] for k in ("deu", "fra", "rus", "cmn")]))
    assert res["training_languages"] == ["az", "de", "en", "fr", "ru", "zh"]
    assert "NO" in out and "average of 6" in out


def test_mlm_loss_is_the_runs_validation_loss_next_to_the_unigram_baseline(result, run):
    res, out = result
    mlm = res["mlm"]
    assert (mlm["max_len"], mlm["sequences"], mlm["seed"]) == (64, 6, 5)  # the run's settings
    last_val = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()][-1]["val_loss"]
    assert set(mlm["languages"]) == set(last_val)
    for lang, s in mlm["languages"].items():
        assert s["loss"] == pytest.approx(last_val[lang], rel=1e-5), lang  # same sequences, same masks
        assert 0 < s["unigram_entropy"] < np.log(s["tokens"])
        assert s["below_unigram"] == (s["loss"] < s["unigram_entropy"])
    assert "unigram" in out and (run / "eval" / "eval.png").stat().st_size > 10_000


def test_two_runs_agree_and_the_export_gives_the_same_numbers(result, run, tatoeba, tmp_path):
    rc, _, err = evaluate(run / "hf", "--tatoeba", tatoeba, "--langs", LANGS, "--output", tmp_path / "hf-eval",
                          "--no-plot")
    assert rc == 0, err
    again = json.loads((tmp_path / "hf-eval" / "eval.json").read_text())
    res = result[0]
    assert again["model"]["kind"] == "hf"
    for lang, s in res["tatoeba"]["languages"].items():
        assert again["tatoeba"]["languages"][lang]["xx_en"] == pytest.approx(s["xx_en"], abs=1e-3)
        assert again["tatoeba"]["languages"][lang]["in_training"] == s["in_training"]
    for lang, s in res["mlm"]["languages"].items():
        assert again["mlm"]["languages"][lang]["loss"] == pytest.approx(s["loss"], rel=1e-5)


def test_transformers_alone_reproduces_the_numbers(result, run, tatoeba):
    """The docs' recipe: XLMRobertaModel hidden_states[L + 1], mean over the attention mask, cosine;
    XLMRobertaForMaskedLM on mlm_heldout.npz."""
    transformers = pytest.importorskip("transformers")
    res = result[0]
    t = res["tatoeba"]
    hf_dir = run / "hf"
    tok = transformers.AutoTokenizer.from_pretrained(hf_dir)
    enc = transformers.XLMRobertaModel.from_pretrained(hf_dir).eval()

    def embed(path):
        lines = [line.strip() for line in open(path, encoding="utf-8")]
        out = []
        for i in range(0, len(lines), 100):
            b = tok(lines[i:i + 100], padding=True, truncation=True, max_length=t["max_len"], return_tensors="pt")
            with torch.no_grad():
                h = enc(**b, output_hidden_states=True).hidden_states[t["hidden_states_index"]]
            m = b["attention_mask"].unsqueeze(-1).float()
            out.append(((h * m).sum(1) / m.sum(1)).numpy())
        x = np.concatenate(out)
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    for lang in ("deu", "jpn"):
        x, y = embed(tatoeba / f"tatoeba.{lang}-eng.{lang}"), embed(tatoeba / f"tatoeba.{lang}-eng.eng")
        sim = x @ y.T
        gold = np.arange(len(x))
        assert np.mean(sim.argmax(1) == gold) == pytest.approx(t["languages"][lang]["xx_en"], abs=2e-3)
        assert np.mean(sim.argmax(0) == gold) == pytest.approx(t["languages"][lang]["en_xx"], abs=2e-3)

    mlm = transformers.XLMRobertaForMaskedLM.from_pretrained(hf_dir).eval()
    batches = np.load(run / "eval" / "mlm_heldout.npz")
    for lang, s in res["mlm"]["languages"].items():
        x = torch.from_numpy(batches[f"{lang}.input_ids"]).long()
        y = torch.from_numpy(batches[f"{lang}.labels"]).long()
        with torch.no_grad():
            assert mlm(input_ids=x, labels=y).loss.item() == pytest.approx(s["loss"], rel=1e-4), lang
        tokens = np.where(y.numpy() != -100, y.numpy(), x.numpy())
        tokens = tokens[~np.isin(tokens, [0, 1, 2, 3, tok.mask_token_id])]
        p = np.unique(tokens, return_counts=True)[1] / tokens.size
        assert -(p * np.log(p)).sum() == pytest.approx(s["unigram_entropy"], rel=1e-9)


def test_export_elsewhere_with_languages_given_and_no_shards(run, tatoeba, tmp_path):
    hf = tmp_path / "some-model"
    shutil.copytree(run / "hf", hf)  # like a downloaded XLM-R: no run beside it
    (hf / "cc100_training.json").unlink()  # written by the run's export
    rc, out, err = evaluate(hf, "--tatoeba", tatoeba, "--langs", "deu,jpn", "--output", tmp_path / "e", "--no-plot")
    assert rc == 0, err
    res = json.loads((tmp_path / "e" / "eval.json").read_text())
    assert res["training_languages"] is None and res["tatoeba"]["languages"]["deu"]["in_training"] is None
    assert "skipped" in res["mlm"] and "unknown" in out
    rc, out, err = evaluate(hf, "--tatoeba", tatoeba, "--langs", "deu,jpn", "--output", tmp_path / "e2",
                            "--no-plot", "--train-langs", "de,en")
    res = json.loads((tmp_path / "e2" / "eval.json").read_text())
    assert [res["tatoeba"]["languages"][k]["in_training"] for k in ("deu", "jpn")] == [True, False]


# -- during pretraining ------------------------------------------------------------------------------

def test_pretraining_logs_tatoeba_with_each_validation(run, result):
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    with_val = [r for r in log if "val_loss" in r]
    assert [r["step"] for r in with_val] == [10, 20]
    assert all(set(r["tatoeba"]) == {"fra", "jpn"} for r in with_val)
    assert not any("tatoeba" in r for r in log if "val_loss" not in r)
    last = with_val[-1]
    assert last["tatoeba_accuracy"] == pytest.approx((last["tatoeba"]["fra"] + last["tatoeba"]["jpn"]) / 2)
    # the same model, embeddings and scoring as `cc100 evaluate` on the final checkpoint
    final = result[0]["tatoeba"]["languages"]
    assert last["tatoeba"]["fra"] == pytest.approx(final["fra"]["mean"], abs=1e-9)
    assert last["tatoeba"]["jpn"] == pytest.approx(final["jpn"]["mean"], abs=1e-9)


def test_plot_draws_tatoeba_beside_the_loss(run, tmp_path):
    from PIL import Image

    from train.plot import main as plot_main

    with contextlib.redirect_stdout(io.StringIO()):
        assert plot_main([str(run / "log.jsonl"), "--output", str(tmp_path / "curves.png")]) == 0
    assert Image.open(tmp_path / "curves.png").size[0] == 18 * 110  # three columns: loss, Tatoeba, accuracy


def test_bad_eval_tatoeba_stops_pretraining_before_the_first_step(world, tmp_path):
    argv = ["--shards", str(world.shards), "--vocab", str(world.vocab), "--output", str(tmp_path / "r"), *RUN_ARGS,
            "--eval-tatoeba", str(tmp_path)]
    e = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(e):
        assert pretrain_main(argv) == 2
    assert "--eval-tatoeba" in e.getvalue() and not (tmp_path / "r" / "log.jsonl").exists()


def test_cc100_export_records_the_training_languages(run, tatoeba, tmp_path):
    from model.export import main as export_main

    with contextlib.redirect_stdout(io.StringIO()):
        assert export_main(["--checkpoint", str(run), "--output", str(tmp_path / "hf")]) == 0
    recorded = json.loads((tmp_path / "hf" / "cc100_training.json").read_text())["languages"]
    assert set(recorded) == {"az", "de", "en", "fr", "ru", "zh"} and all(n > 0 for n in recorded.values())
    rc, _, err = evaluate(tmp_path / "hf", "--tatoeba", tatoeba, "--langs", "deu,jpn", "--output", tmp_path / "e",
                          "--no-plot")
    assert rc == 0, err
    res = json.loads((tmp_path / "e" / "eval.json").read_text())
    assert [res["tatoeba"]["languages"][k]["in_training"] for k in ("deu", "jpn")] == [True, False]


@pytest.mark.parametrize("case, message", [
    ("missing", "no such model directory"),
    ("not-a-model", "neither a run directory"),
    ("nothing", "nothing to evaluate"),
    ("layer", "--layer 2"),
    ("other-vocab", "another vocabulary"),
])
def test_bad_input_exits_2_with_one_line(case, message, run, world, tatoeba, tmp_path):
    args = {
        "missing": [tmp_path / "nope", "--tatoeba", tatoeba],
        "not-a-model": [tmp_path, "--tatoeba", tatoeba],
        "nothing": [run / "hf", "--output", tmp_path / "o"],
        "layer": [run, "--tatoeba", tatoeba, "--layer", "2", "--output", tmp_path / "o"],
        "other-vocab": [run, "--shards", _other_shards(world), "--output", tmp_path / "o"],
    }[case]
    if case == "nothing":
        shutil.copytree(run / "hf", tmp_path / "m")
        args[0] = tmp_path / "m"
    rc, out, err = evaluate(*args)
    assert rc == 2 and message in err and len(err.strip().splitlines()) == 1, err


def _other_shards(world):
    """Shards tokenized with a second vocabulary (built once per session)."""
    from tests.train.test_tokenize import run_tokenize

    out = world.root / "shards-vocab-1500"
    if not (out / "manifest.json").exists():
        rc, _, err = run_tokenize("--corpus", world.corpus, "--vocab", other_vocab(world), "--output", out,
                                  "--workers", 1, "--valid-fraction", 0.05)
        assert rc == 0, err
    return out


@pytest.mark.slow
def test_all_36_languages(run, tatoeba, tmp_path):
    rc, out, err = evaluate(run, "--tatoeba", tatoeba, "--output", tmp_path / "all", "--threads", "1")
    assert rc == 0, err
    res = json.loads((tmp_path / "all" / "eval.json").read_text())
    assert len(res["tatoeba"]["languages"]) == 36
    trained = {k for k, s in res["tatoeba"]["languages"].items() if s["in_training"]}
    assert trained == {"deu", "fra", "rus", "cmn"}


def test_evaluate_writes_only_into_its_own_output(run, small_tatoeba, tmp_path):
    """Like every stage, evaluate writes only into a new, empty or earlier evaluation directory."""
    foreign = tmp_path / "precious"
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("x")
    rc, _, err = evaluate(run, "--tatoeba", small_tatoeba, "--output", foreign, "--no-plot")
    assert rc == 2 and "precious" in err and len(err.strip().splitlines()) == 1, err
    assert sorted(p.name for p in foreign.iterdir()) == ["thesis.tex"]
    mine = tmp_path / "eval"
    for _ in range(2):  # the second run rewrites its own earlier evaluation
        rc, _, err = evaluate(run, "--tatoeba", small_tatoeba, "--output", mine, "--no-plot")
        assert rc == 0, err
    assert (mine / ".cc100" / "stage.json").is_file() and (mine / "eval.json").is_file()


def test_a_second_identical_evaluation_is_up_to_date_and_touches_nothing(run, small_tatoeba, tmp_path):
    """Up to date (pipeline/contracts.py): same settings, same model (the run's completion
    record), same Tatoeba files and shards."""
    from pipeline.contracts import out_of_date
    from tests.uptodate import assert_up_to_date, tree_state
    from train.evaluate import completion, parse_args

    out = tmp_path / "eval"
    argv = [str(run), "--tatoeba", str(small_tatoeba), "--output", str(out), "--no-plot", "--threads", "1"]
    rc, _, err = evaluate(*argv)
    assert rc == 0, err
    before = tree_state(out)
    rc, stdout, _ = evaluate(*argv[:-2])  # the threads do not change the numbers
    assert_up_to_date("evaluate", out, rc, stdout, before)
    assert out_of_date(out, "evaluate", *completion(parse_args([*argv, "--layer", "0"]))) == "config layer: null -> 0"
    other = parse_args([str(run / "hf"), *argv[1:]])
    assert out_of_date(out, "evaluate", *completion(other)) == "input model changed"
    (small_tatoeba / "tatoeba.fra-eng.fra").touch()  # the same size, a new time: looked at again
    assert out_of_date(out, "evaluate", *completion(parse_args(argv))) == "input tatoeba changed"
