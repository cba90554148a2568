"""`cc100 pretrain` on CPU with the tiny model: exact resume, checkpoints, clear errors, learning,
and the transformers export."""

from __future__ import annotations

import contextlib
import errno
import io
import json
import math
import os
import re
import shutil

import numpy as np
import pytest
import torch

from tests.train.test_tokenize import build_world, other_vocab
from train.pretrain import main as pretrain_main
from train.trainer import lr_lambda, param_groups

BASE = ["--config", "tiny", "--max-len", "64", "--batch-tokens", "1024", "--micro-batch", "8",
        "--log-every", "1", "--eval-every", "5", "--eval-seqs", "4", "--checkpoint-every", "3",
        "--seed", "3", "--lr", "2e-3", "--warmup-steps", "3"]
STEPS = 10


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Two shared cores: one intra-op thread is faster and keeps runs bit-reproducible."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def world(tmp_path_factory, shared_data):
    return build_world(tmp_path_factory, shared_data)


def pretrain(world, out, *extra, shards=None, vocab=None) -> tuple[int, str, str]:
    argv = ["--shards", str(shards or world.shards), "--vocab", str(vocab or world.vocab), "--output", str(out),
            *BASE, *[str(e) for e in extra]]
    if "--steps" not in argv:
        argv += ["--steps", str(STEPS)]
    o, e = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(o), contextlib.redirect_stderr(e):
        rc = pretrain_main(argv)
    return rc, o.getvalue(), e.getvalue()


def read_log(run_dir) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def reference(world, tmp_path_factory):
    """An uninterrupted 10-step run."""
    out = tmp_path_factory.mktemp("reference")
    rc, stdout, err = pretrain(world, out)
    assert rc == 0, err
    return out


# -- pieces -----------------------------------------------------------------------------------

def test_weight_decay_only_on_matrices():
    from model.xlmr import XLMRForMaskedLM, config_for

    model = XLMRForMaskedLM(config_for("tiny", vocab_size=100))
    decay, no_decay = param_groups(model, 0.01)
    assert decay["weight_decay"] == 0.01 and no_decay["weight_decay"] == 0.0
    names = {id(p): n for n, p in model.named_parameters()}
    assert all(p.ndim >= 2 for p in decay["params"])
    no_decay_names = {names[id(p)] for p in no_decay["params"]}
    assert "encoder.layers.0.ln_attn.weight" in no_decay_names and "lm_head.bias" in no_decay_names
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(model.parameters()))


def test_schedule_warms_up_then_decays_linearly_to_zero():
    f = lr_lambda(4, 12)
    assert [f(s) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert f(4) == 1.0 and f(8) == pytest.approx(0.5) and f(12) == 0.0
    assert lr_lambda(0, 10)(0) == 1.0


# -- the run ------------------------------------------------------------------------------------

def test_log_and_outputs(reference):
    log = read_log(reference)
    assert [r["step"] for r in log] == list(range(1, STEPS + 1))
    for r in log:
        assert {"step", "loss", "lr", "tokens_per_s", "mlm_accuracy"} <= set(r)
        assert math.isfinite(r["loss"]) and 0 <= r["mlm_accuracy"] <= 1 and r["tokens_per_s"] > 0
        assert "mfu" not in r, "no MFU on CPU"
    # FULL-SENTENCES rows: only the remainder padded, so the resume tests below see padded batches
    assert 0 < max(r["pad_share"] for r in log) < 0.5
    # 3 warmup steps to the peak, then linear decay to 0 at step 10
    assert [r["lr"] for r in log[:6]] == pytest.approx([2e-3 / 3, 4e-3 / 3, 2e-3, 2e-3, 2e-3 * 6 / 7, 2e-3 * 5 / 7])
    evals = [r for r in log if "val_loss" in r]
    assert [r["step"] for r in evals] == [5, 10]
    assert set(evals[0]["val_loss"]) == {"en", "fr", "de", "ru", "zh", "az"}
    assert (reference / "checkpoint.pt").is_file()
    assert {p.name for p in (reference / "hf").iterdir()} >= {"config.json", "model.safetensors",
                                                              "sentencepiece.bpe.model"}
    # RUN/hf is an export: `cc100 export` (make export's default output) may rewrite it
    assert json.loads((reference / "hf" / ".cc100" / "stage.json").read_text())["stage"] == "export"


def test_checkpoint_bundle(reference):
    from model.xlmr import XLMRConfig, XLMRForMaskedLM

    ck = torch.load(reference / "checkpoint.pt", weights_only=True)
    assert ck["step"] == STEPS and ck["data"]["step"] == STEPS
    assert ck["vocab_file"].endswith("sentencepiece.bpe.model")
    assert not any(k.startswith(("module.", "_orig_mod.")) for k in ck["model"])
    model = XLMRForMaskedLM(XLMRConfig.from_dict(ck["model_config"]))
    model.load_state_dict(ck["model"])  # the contract `cc100 export` relies on
    groups = ck["optimizer"]["param_groups"]
    assert [g["weight_decay"] for g in groups] == [0.01, 0.0]
    assert all(g["betas"] == (0.9, 0.98) and g["eps"] == 1e-6 for g in groups)
    assert ck["train_config"]["steps"] == STEPS and ck["train_config"]["data"]["max_len"] == 64


def test_kill_and_resume_gives_the_same_losses_step_by_step(world, reference, tmp_path):
    from pipeline.contracts import read_completion

    run = tmp_path / "run"
    # "killed" right after step 7: the last checkpoint is step 6, log.jsonl already has step 7
    rc, out, err = pretrain(world, run, "--stop-at-step", 7)
    assert rc == 0, err
    assert "stopping after step 7" in out
    assert torch.load(run / "checkpoint.pt", weights_only=True)["step"] == 6
    assert read_completion(run) is None  # stopped early: not complete, so not up to date
    assert [r["step"] for r in read_log(run)] == list(range(1, 8))
    with open(run / "log.jsonl", "a") as f:
        f.write('{"step": 8, "loss": 7.1')  # and a line cut in the middle by the kill
    rc, out, err = pretrain(world, run, "--resume")
    assert rc == 0, err
    assert "steps 6 -> 10" in out
    assert read_completion(run)["config"]["steps"] == STEPS  # reached its steps: complete
    ref, got = read_log(reference), read_log(run)
    assert [r["step"] for r in got] == list(range(1, STEPS + 1))
    for a, b in zip(ref, got):
        for key in ("loss", "mlm_accuracy", "lr", "grad_norm", "val_loss"):
            assert a.get(key) == b.get(key), f"step {a['step']}: {key} {a.get(key)} != {b.get(key)}"
    ck_ref = torch.load(reference / "checkpoint.pt", weights_only=True)
    ck_got = torch.load(run / "checkpoint.pt", weights_only=True)
    for name, tensor in ck_ref["model"].items():
        assert torch.equal(tensor, ck_got["model"][name]), name
    assert ck_ref["data"] == ck_got["data"]


def test_kill_and_resume_with_block_packing(world, tmp_path):
    """`--packing blocks` (no padding at all) resumes exactly too."""
    ref, run = tmp_path / "ref", tmp_path / "run"
    assert pretrain(world, ref, "--packing", "blocks", "--steps", 6)[0] == 0
    assert pretrain(world, run, "--packing", "blocks", "--steps", 6, "--stop-at-step", 4)[0] == 0
    rc, out, err = pretrain(world, run, "--packing", "blocks", "--steps", 6, "--resume")
    assert rc == 0, err
    assert "steps 3 -> 6" in out and "packing blocks" in out
    a, b = read_log(ref), read_log(run)
    assert all(r["pad_share"] == 0 for r in a)
    assert [r["loss"] for r in a] == [r["loss"] for r in b]
    assert torch.load(ref / "checkpoint.pt", weights_only=True)["data"]["packing"] == "blocks"


def test_loss_curve_depends_on_the_seed(world, reference, tmp_path):
    """Guards the resume test against passing trivially (e.g. a constant loss)."""
    rc, _, err = pretrain(world, tmp_path, "--steps", 3, "--seed", 4)
    assert rc == 0, err
    assert [r["loss"] for r in read_log(tmp_path)] != [r["loss"] for r in read_log(reference)[:3]]


def test_plot_writes_a_png(reference, tmp_path):
    from train.plot import main as plot_main

    with contextlib.redirect_stdout(io.StringIO()):
        assert plot_main([str(reference / "log.jsonl"), "--output", str(tmp_path / "curves.png")]) == 0
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# -- clear errors before training ----------------------------------------------------------------

def _corrupt_shards(world, tmp_path):
    shards = tmp_path / "shards"
    shutil.copytree(world.shards, shards)
    victim = shards / "fr" / "head.part-00000.train.bin"
    victim.write_bytes(victim.read_bytes()[:-10])
    return shards


@pytest.mark.parametrize("case, message", [
    ("missing shards", "shards directory not found"),
    ("corrupt shard", r"head.part-00000.train.bin: .*truncated or corrupt"),
    ("max_len over positions", "--max-len 600 exceeds the model's 512 positions"),
    ("batch below max_len", "cannot fit one sequence of max_len 64"),
    ("resume without checkpoint", "no checkpoint to resume from"),
    ("output already used", "already holds checkpoint.pt: pass --resume"),
    ("incompatible resume", "incompatible with this command: data.max_len: checkpoint 64, now 32"),
    ("other steps on resume", "steps: checkpoint 10, now 20"),
    ("other packing on resume", "data.packing: checkpoint 'complete', now 'blocks'"),
    ("vocabulary mismatch", "is not the vocabulary the shards"),
    ("micro-batch 0", "micro_batch must be an integer >= 1, got 0"),
    ("batch-tokens 0", "batch_tokens must be an integer >= 1, got 0"),
    ("max-len 0", "max_len must be an integer >= 1, got 0"),
    ("foreign output", r"--output .*/run: not empty and has no \.cc100/stage\.json"),
    ("output of an older cc100", r"--output .*/run: not empty and has no \.cc100/stage\.json"),
    ("output not utf-8", r"--output '.*/run\\udcff': the path is not valid UTF-8"),
])
def test_clear_errors_before_training(world, reference, tmp_path, case, message):
    run = tmp_path / "run"
    kw, extra = {}, []
    if case == "missing shards":
        kw["shards"] = tmp_path / "nope"
    elif case == "corrupt shard":
        kw["shards"] = _corrupt_shards(world, tmp_path)
    elif case == "max_len over positions":
        extra = ["--max-len", 600, "--batch-tokens", 6000]
    elif case == "batch below max_len":
        extra = ["--batch-tokens", 32]
    elif case == "resume without checkpoint":
        extra = ["--resume"]
    elif case in ("output already used", "incompatible resume", "other steps on resume",
                  "other packing on resume"):
        shutil.copytree(reference, run)
        # (the identical command is up to date instead: test_a_finished_run_is_up_to_date...)
        extra = {"output already used": ["--seed", 1], "incompatible resume": ["--resume", "--max-len", 32],
                 "other steps on resume": ["--resume", "--steps", 20],
                 "other packing on resume": ["--resume", "--packing", "blocks"]}[case]
    elif case == "vocabulary mismatch":
        kw["vocab"] = other_vocab(world)
    elif case.endswith(" 0"):  # a zero was silently replaced by the preset's value
        extra = [f"--{case.split()[0]}", 0]
    elif case == "foreign output":
        run.mkdir()
        (run / "log.jsonl").write_text("someone else's\n")
    elif case == "output of an older cc100":
        shutil.copytree(reference, run)
        shutil.rmtree(run / ".cc100")
        extra = ["--resume"]
    elif case == "output not utf-8":
        run = tmp_path / os.fsdecode(b"run\xff")
    before = sorted(p.name for p in run.iterdir()) if run.is_dir() else None
    rc, out, err = pretrain(world, run, *extra, **kw)
    assert rc == 2, (out, err)
    assert err.startswith("cc100 pretrain: error: ") and err.count("\n") == 1, err
    assert re.search(message, err), err
    assert "step 1/" not in out, "no training step ran"
    assert (sorted(p.name for p in run.iterdir()) if run.is_dir() else None) == before


def test_a_finished_run_is_up_to_date_and_touches_nothing(world, reference, tmp_path):
    """The same command again (with or without --resume): up to date, exit 0, nothing touched;
    other settings or rebuilt shards are not (pipeline/contracts.py completion records)."""
    from pipeline.contracts import mark_complete, out_of_date
    from tests.uptodate import assert_up_to_date, tree_state
    from train.pretrain import parse_args
    from train.trainer import completion

    before = tree_state(reference)
    for extra in ([], ["--resume"]):
        rc, out, err = pretrain(world, reference, *extra)
        assert_up_to_date("pretrain", reference, rc, out, before)
    argv = ["--shards", str(world.shards), "--vocab", str(world.vocab), "--output", str(reference),
            *BASE, "--steps", str(STEPS)]
    longer = parse_args([*argv[:-1], str(STEPS + 5)])[0]
    assert out_of_date(reference, "pretrain", *completion(longer)) == f"config steps: {STEPS} -> {STEPS + 5}"
    shards = tmp_path / "shards"
    shutil.copytree(world.shards, shards)
    mark_complete(shards, "tokenize", {"valid_fraction": 0.5}, {})  # tokenized again, otherwise
    rebuilt = parse_args([*argv[:1], str(shards), *argv[2:]])[0]
    assert out_of_date(reference, "pretrain", *completion(rebuilt)) == "input shards changed"


def test_full_disk_is_one_line_and_keeps_the_last_checkpoint(world, tmp_path, monkeypatch):
    """ENOSPC simulated by a checkpoint file whose writes fail from the second save on (torch
    reports it as a RuntimeError raised while handling the OSError)."""
    import train.checkpoint

    saves = []

    class FullDisk:
        def __init__(self, path, mode):
            self.f = open(path, mode)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

        def write(self, data):
            if len(saves) > 1:
                raise OSError(errno.ENOSPC, "No space left on device")
            return self.f.write(data)

        def flush(self):
            self.f.flush()

        def fileno(self):
            return self.f.fileno()

    def open_checkpoint(path, mode):
        saves.append(path)
        return FullDisk(path, mode)

    monkeypatch.setattr(train.checkpoint, "open", open_checkpoint, raising=False)
    run = tmp_path / "run"
    rc, out, err = pretrain(world, run)  # checkpoints at step 3 (kept), 6 (the disk is full)
    assert rc == 1, err
    assert err == (f"cc100 pretrain: error: cannot save the checkpoint: no space left on device writing "
                   f"{run / 'checkpoint.pt'} (the previous checkpoint.pt, if any, is kept)\n")
    assert torch.load(run / "checkpoint.pt", weights_only=True)["step"] == 3
    assert sorted(p.name for p in run.iterdir()) == [".cc100", "checkpoint.pt", "log.jsonl"]  # no temp file
    monkeypatch.undo()
    rc, out, err = pretrain(world, run, "--resume")  # space freed: the run continues
    assert rc == 0 and "steps 3 -> 10" in out, err


# -- learning, and the export ----------------------------------------------------------------------

@pytest.mark.slow
def test_loss_falls_and_the_export_predicts_masks(world, tmp_path):
    import transformers

    from train.data import IGNORE_INDEX, validation_sets
    from train.shards import load_manifest
    from train.tokenizer import XLMRTokenizer

    run = tmp_path / "run"
    rc, out, err = pretrain(world, run, "--steps", 300, "--micro-batch", 16, "--log-every", 10,
                            "--eval-every", 100, "--eval-seqs", 8, "--checkpoint-every", 0,
                            "--warmup-steps", 20)
    assert rc == 0, err
    log = read_log(run)
    tok = XLMRTokenizer(world.vocab / "sentencepiece.bpe.model")
    uniform = math.log(tok.vocab_size)
    assert log[0]["loss"] == pytest.approx(uniform, abs=0.3), "starts near the uniform loss"
    late = np.mean([r["loss"] for r in log[-5:]])
    assert late < log[0]["loss"] - 1.5, f"train loss only went {log[0]['loss']:.2f} -> {late:.2f}"
    final_val = log[-1]["val_loss"]
    assert np.mean(list(final_val.values())) < uniform - 1.5, final_val
    assert all(v < uniform - 0.4 for v in final_val.values()), final_val

    # the Hugging Face export gives the same predictions on the held-out masked positions
    hf = transformers.XLMRobertaForMaskedLM.from_pretrained(run / "hf").eval()
    valid = validation_sets(load_manifest(world.shards), max_len=64, max_seqs=8, seed=3)
    correct = total = 0
    for lang, v in valid.items():
        x, y = torch.from_numpy(v["input_ids"]), torch.from_numpy(v["labels"])
        with torch.no_grad():
            logits = hf(input_ids=x, attention_mask=(x != tok.pad_id).long()).logits  # padded rows
        targets = y != IGNORE_INDEX
        loss = torch.nn.functional.cross_entropy(logits[targets], y[targets]).item()
        assert loss == pytest.approx(final_val[lang], abs=1e-4), lang
        correct += (logits[targets].argmax(-1) == y[targets]).sum().item()
        total += targets.sum().item()
    print(f"held-out top-1 accuracy at masked positions: {correct / total:.3f} ({total} targets)")
    assert correct / total > 0.03, "far above chance (1/2002), though a tiny model after 300 steps"
    # and fills a <mask> in a sentence with a real token
    ids = [tok.bos_id] + tok.encode("The house is") + [tok.mask_id] + tok.encode("big.") + [tok.eos_id]
    with torch.no_grad():
        pred = hf(input_ids=torch.tensor([ids])).logits[0, ids.index(tok.mask_id)].argmax().item()
    assert pred not in (tok.bos_id, tok.pad_id, tok.eos_id, tok.mask_id) and pred < tok.vocab_size
    assert tok.id_to_piece(pred), "a piece of the vocabulary"


def test_overwrite_replaces_a_run_that_cannot_be_continued_and_resumes_one_that_can(world, reference, tmp_path):
    """--overwrite (the DAG's rebuild_changed): a run with other settings is replaced by a fresh
    one; with --resume a compatible run is continued, not replaced; the refusals stay without it."""
    run = tmp_path / "run"
    shutil.copytree(reference, run)
    rc, out, err = pretrain(world, run, "--resume", "--seed", 1)
    assert rc == 2 and "incompatible with this command" in err
    rc, out, err = pretrain(world, run, "--resume", "--seed", 1, "--overwrite")
    assert rc == 0, err
    assert f"--overwrite: replacing the run in {run}" in out
    steps = [r["step"] for r in read_log(run) if "loss" in r]
    assert steps[0] == 1 and steps[-1] == STEPS  # a fresh run, not the reference continued
    assert read_log(run) != read_log(reference)

    # a compatible, unfinished run is continued (--resume wins over --overwrite)
    partial = tmp_path / "partial"
    rc, out, err = pretrain(world, partial, "--stop-at-step", 4, "--checkpoint-every", 2)
    rc, out, err = pretrain(world, partial, "--resume", "--overwrite")
    assert rc == 0, err
    assert "replacing" not in out
    assert [r["loss"] for r in read_log(partial) if "loss" in r][-1] == \
        [r["loss"] for r in read_log(reference) if "loss" in r][-1]
