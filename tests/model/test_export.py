"""`cc100 export`: a training checkpoint -> a directory transformers loads, model and tokenizer."""

from __future__ import annotations

import dataclasses
import io

import numpy as np
import pytest
import torch

from model.export import main
from model.xlmr import XLMRForMaskedLM

from .conftest import SENTENCES, fairseq_ids

transformers = pytest.importorskip("transformers")


def trained_model(cfg) -> XLMRForMaskedLM:
    torch.manual_seed(0)
    model = XLMRForMaskedLM(cfg)
    with torch.no_grad():  # move every weight off its initial value (biases 0, LayerNorm 1)
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return model.eval()


def write_checkpoint(path, model, cfg, prefix="", vocab_file=None, **extra):
    """The bundle train/checkpoint.py writes (only the keys export relies on, plus some others)."""
    state = {prefix + k: v for k, v in model.state_dict().items()}
    bundle = {"model": state, "model_config": dataclasses.asdict(cfg), "vocab_file": vocab_file,
              "optimizer": {"state": {}, "param_groups": []}, "step": 123, **extra}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(bundle, path)
    return path


def hf_logits(out_dir, ids, mask):
    hf = transformers.XLMRobertaForMaskedLM.from_pretrained(out_dir).eval()
    with torch.no_grad():
        return hf(input_ids=ids, attention_mask=mask).logits


@pytest.mark.parametrize("prefix", ["", "_orig_mod.", "module.", "module._orig_mod."])
def test_export_loads_in_transformers_with_equal_logits(tmp_path, capsys, tiny_config,
                                                        multilingual_batch, prefix):
    ids, mask = multilingual_batch
    model = trained_model(tiny_config)
    ckpt = write_checkpoint(tmp_path / "run" / "checkpoint.pt", model, tiny_config, prefix=prefix)
    out = tmp_path / "hf"
    assert main(["--checkpoint", str(ckpt), "--output", str(out)]) == 0
    with torch.no_grad():
        ours = model(ids, mask).logits
    assert (hf_logits(out, ids, mask) - ours).abs().max().item() <= 1e-5
    printed = capsys.readouterr().out
    assert "exported XLMRobertaForMaskedLM" in printed and "(step 123)" in printed
    assert "tokenizer    none" in printed  # no vocabulary known: said so


def test_compiled_model_state_dict_exports(tmp_path, tiny_config, multilingual_batch):
    """The real prefix, from a torch.compile wrapper, not one written by hand."""
    ids, mask = multilingual_batch
    model = trained_model(tiny_config)
    compiled = torch.compile(model, backend="aot_eager")
    assert all(k.startswith("_orig_mod.") for k in compiled.state_dict())
    torch.save({"model": compiled.state_dict(), "model_config": dataclasses.asdict(tiny_config)},
               tmp_path / "c.pt")
    assert main(["--checkpoint", str(tmp_path / "c.pt"), "--output", str(tmp_path / "hf")]) == 0
    with torch.no_grad():
        ours = model(ids, mask).logits
    assert (hf_logits(tmp_path / "hf", ids, mask) - ours).abs().max().item() <= 1e-5


def test_run_directory_and_recorded_vocab_give_a_working_tokenizer(
        tmp_path, spm_model, tiny_config):
    vocab_path, sp = spm_model
    model = trained_model(tiny_config)
    write_checkpoint(tmp_path / "run" / "checkpoint.pt", model, tiny_config, vocab_file=str(vocab_path))
    out = tmp_path / "hf"
    # through the `cc100` dispatcher, with the run directory instead of the file
    from cc100.cli import main as cc100
    assert cc100(["export", "--checkpoint", str(tmp_path / "run"), "--output", str(out)]) == 0
    assert (out / "sentencepiece.bpe.model").read_bytes() == vocab_path.read_bytes()
    tok = transformers.XLMRobertaTokenizer.from_pretrained(out)
    assert len(tok) == tiny_config.vocab_size
    assert (tok.bos_token_id, tok.pad_token_id, tok.eos_token_id, tok.unk_token_id,
            tok.mask_token_id) == (0, 1, 2, 3, tiny_config.vocab_size - 1)
    for text in SENTENCES:
        assert tok(text)["input_ids"] == fairseq_ids(sp, text), text
    # the tokenizer's batch goes straight into the exported model
    enc = tok(SENTENCES[:3], padding=True, return_tensors="pt")
    hf = transformers.XLMRobertaForMaskedLM.from_pretrained(out).eval()
    with torch.no_grad():
        diff = hf(**enc).logits - model(enc["input_ids"], enc["attention_mask"]).logits
    assert diff.abs().max().item() <= 1e-5


def test_vocab_flag_takes_a_directory_and_wins(tmp_path, spm_model, tiny_config):
    vocab_path, _ = spm_model
    ckpt = write_checkpoint(tmp_path / "c.pt", trained_model(tiny_config), tiny_config,
                            vocab_file=str(tmp_path / "moved-away.model"))
    out = tmp_path / "hf"
    assert main(["--checkpoint", str(ckpt), "--output", str(out), "--vocab", str(vocab_path.parent)]) == 0
    assert (out / "sentencepiece.bpe.model").read_bytes() == vocab_path.read_bytes()
    # re-running over the same output is fine (idempotent for the DAG)
    assert main(["--checkpoint", str(ckpt), "--output", str(out), "--vocab", str(vocab_path)]) == 0


def test_latest_pointer_and_non_tensor_state(tmp_path, capsys, tiny_config, multilingual_batch):
    ids, mask = multilingual_batch
    model = trained_model(tiny_config)
    write_checkpoint(tmp_path / "run" / "step_000100.pt", model, tiny_config,
                     rng={"numpy": np.random.default_rng(0).bit_generator.state, "arr": np.zeros(3)})
    (tmp_path / "run" / "latest").write_text("step_000100.pt\n")
    assert main(["--checkpoint", str(tmp_path / "run"), "--output", str(tmp_path / "hf")]) == 0
    assert "weights_only=False" in capsys.readouterr().err
    with torch.no_grad():
        ours = model(ids, mask).logits
    assert (hf_logits(tmp_path / "hf", ids, mask) - ours).abs().max().item() <= 1e-5


def test_missing_recorded_vocab_is_a_warning(tmp_path, capsys, tiny_config):
    ckpt = write_checkpoint(tmp_path / "c.pt", trained_model(tiny_config), tiny_config,
                            vocab_file=str(tmp_path / "gone" / "sentencepiece.bpe.model"))
    assert main(["--checkpoint", str(ckpt), "--output", str(tmp_path / "hf")]) == 0
    captured = capsys.readouterr()
    assert "gone" in captured.err and "tokenizer    none" in captured.out
    assert not (tmp_path / "hf" / "sentencepiece.bpe.model").exists()


def _bad(tmp_path, tiny_config, case):
    model = trained_model(tiny_config)
    cfg = dataclasses.asdict(tiny_config)
    p = tmp_path / "c.pt"
    if case == "missing":
        return tmp_path / "nope.pt", [], "checkpoint not found"
    if case == "empty dir":
        (tmp_path / "run").mkdir()
        return tmp_path / "run", [], "no checkpoint in this directory"
    if case == "not torch":
        p.write_text("hello")
        return p, [], "not a readable torch checkpoint"
    if case == "not a dict":
        torch.save([1, 2], p)
        return p, [], "expected a checkpoint dict"
    if case == "no model_config":
        torch.save({"model": model.state_dict()}, p)
        return p, [], "model_config"
    if case == "bad model_config":
        torch.save({"model": model.state_dict(), "model_config": {**cfg, "hidden_size": 0}}, p)
        return p, [], "hidden_size"
    if case == "weights mismatch":
        torch.save({"model": model.state_dict(), "model_config": {**cfg, "vocab_size": 999}}, p)
        return p, [], "do not match"
    if case == "bad vocab":
        write_checkpoint(p, model, tiny_config)
        return p, ["--vocab", str(tmp_path / "nothing.model")], "--vocab not found"
    if case == "output is a file":
        write_checkpoint(p, model, tiny_config)
        (tmp_path / "hf").write_text("x")
        return p, [], "not a directory"
    if case == "output not an export":
        write_checkpoint(p, model, tiny_config)
        (tmp_path / "hf").mkdir()
        (tmp_path / "hf" / "config.json").write_text("someone else's model")
        return p, [], f"--output {tmp_path / 'hf'}: not empty and has no .cc100/stage.json"
    if case == "vocab of another size":
        write_checkpoint(p, model, tiny_config)
        other = tmp_path / "other.model"
        pieces = small_spm(other, vocab_size=tiny_config.vocab_size - 20)
        assert pieces + 2 != tiny_config.vocab_size
        return p, ["--vocab", str(other)], (f"--vocab {other}: {pieces} pieces give {pieces + 2} ids, but the "
                                            f"checkpoint's model has {tiny_config.vocab_size}")
    if case == "vocab not sentencepiece":
        write_checkpoint(p, model, tiny_config)
        (tmp_path / "v.model").write_bytes(b"\x08\x01 not a model")
        return p, ["--vocab", str(tmp_path / "v.model")], "v.model: not a SentencePiece model"
    raise AssertionError(case)


def small_spm(path, vocab_size: int) -> int:
    """A SentencePiece model of another size than the test model's; returns its piece count."""
    import sentencepiece as spm

    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(SENTENCES * 4), model_writer=buf,
                                   vocab_size=vocab_size, model_type="unigram", hard_vocab_limit=False,
                                   character_coverage=0.98, minloglevel=2)
    path.write_bytes(buf.getvalue())
    return spm.SentencePieceProcessor(model_file=str(path)).get_piece_size()


@pytest.mark.parametrize("case", ["missing", "empty dir", "not torch", "not a dict", "no model_config",
                                  "bad model_config", "weights mismatch", "bad vocab", "output is a file",
                                  "output not an export", "vocab of another size", "vocab not sentencepiece"])
def test_bad_input_is_one_line_naming_the_file(tmp_path, capsys, tiny_config, case):
    ckpt, extra, message = _bad(tmp_path, tiny_config, case)
    out = tmp_path / "hf"
    before = sorted(p.name for p in out.iterdir()) if out.is_dir() else out.exists()
    rc = main(["--checkpoint", str(ckpt), "--output", str(out), *extra])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    assert err[-1].startswith("cc100 export: ") and message in err[-1], err
    assert "Traceback" not in "\n".join(err)
    assert (sorted(p.name for p in out.iterdir()) if out.is_dir() else out.exists()) == before  # nothing written


def test_exported_fast_tokenizer_keeps_byte_fallback(tmp_path, tiny_config):
    """A character the vocabulary lacks must reach transformers as the same UTF-8 byte pieces our
    tokenizer (and so the model in training) used, not as <unk>; and decode back to the text."""
    import sentencepiece as spm

    from train.tokenizer import XLMRTokenizer

    vocab = tmp_path / "byte.model"
    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(SENTENCES * 4), model_writer=buf, vocab_size=700,
        model_type="unigram", character_coverage=0.98, byte_fallback=True,
        hard_vocab_limit=False, minloglevel=2)
    vocab.write_bytes(buf.getvalue())
    ours = XLMRTokenizer(vocab)
    cfg = dataclasses.replace(tiny_config, vocab_size=ours.vocab_size)
    write_checkpoint(tmp_path / "ckpt.pt", trained_model(cfg), cfg, vocab_file=str(vocab))
    out = tmp_path / "hf"
    assert main(["--checkpoint", str(tmp_path / "ckpt.pt"), "--output", str(out)]) == 0
    assert (out / "tokenizer.json").is_file()

    text = "Price: 5€ ✓ — déjà vu"  # €, ✓ and — are not in the vocabulary (coverage 0.98)
    assert ours.unk_id not in ours.encode(text)
    tok = transformers.AutoTokenizer.from_pretrained(out)
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert ids == ours.encode(text)
    assert tok.decode(ids) == text == ours.decode(ids)
    assert tok(text)["input_ids"] == [0, *ids, 2]
    assert (tok.pad_token_id, tok.mask_token_id, len(tok)) == (1, cfg.vocab_size - 1, cfg.vocab_size)


def test_a_second_identical_export_is_up_to_date_and_touches_nothing(tmp_path, capsys, spm_model, tiny_config):
    """Up to date (pipeline/contracts.py): the same checkpoint (its run's completion record, or
    the file's size and time) and the same --vocab."""
    import os

    from model.export import completion
    from pipeline.contracts import mark_complete, out_of_date
    from tests.uptodate import assert_up_to_date, tree_state

    vocab_path, _ = spm_model
    ckpt = write_checkpoint(tmp_path / "run" / "checkpoint.pt", trained_model(tiny_config), tiny_config,
                            vocab_file=str(vocab_path))
    out = tmp_path / "hf"
    argv = ["--checkpoint", str(tmp_path / "run"), "--output", str(out)]
    assert main(argv) == 0
    capsys.readouterr()
    before = tree_state(out)
    rc = main(argv)
    assert_up_to_date("export", out, rc, capsys.readouterr().out, before)
    assert out_of_date(out, "export", *completion(ckpt, str(vocab_path))) == "input vocab changed"
    os.utime(ckpt, ns=(ckpt.stat().st_atime_ns, ckpt.stat().st_mtime_ns + 10**9))  # a new checkpoint
    assert out_of_date(out, "export", *completion(ckpt, None)) == "input checkpoint changed"
    assert main(argv) == 0 and "not up to date (input checkpoint changed)" in capsys.readouterr().out
    mark_complete(tmp_path / "run", "pretrain", {"steps": 10}, {})  # the run finished: its record counts
    assert out_of_date(out, "export", *completion(ckpt, None)) == "input checkpoint changed"
