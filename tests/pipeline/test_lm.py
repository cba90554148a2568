"""`cc100 lm`: training text, tool lookup, and the command end to end on reference text."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pipeline.quality import lm
from pipeline.quality.lm import LmConfig, normalize_lines, read_text
from pipeline.quality.perplexity import load_kenlm, load_sentencepiece, score_document
from pipeline.utils.tools import ToolNotFoundError, find_tool


# -- pure pieces -----------------------------------------------------------------------------


def test_training_text_is_cc_net_normalised():
    lines = ["  Héllo, Wörld 2019!  ", "", "   ", "「引用」：１２３", "Tab\there…"]
    assert normalize_lines(lines) == ['hello, world 0000!', '"引用":000', "tabhere..."]


def test_read_text_names_the_file_on_bad_utf8(tmp_path):
    path = tmp_path / "xx.txt"
    path.write_bytes("fine\nstill fine\n".encode() + b"\xff\xfe broken\n")
    with pytest.raises(lm.LmError, match=f"{path}: not UTF-8 text \\(line 3"):
        read_text(str(path))
    path.write_text("a\nb\n", encoding="utf-8")
    assert read_text(str(path)) == ["a", "b"]


def test_config_is_validated_naming_the_field():
    for kwargs, field in [
        ({"order": 0}, "order"),
        ({"vocab_size": 5}, "vocab_size"),
        ({"memory": "lots"}, "memory"),
        ({"min_lines": 0}, "min_lines"),
    ]:
        with pytest.raises(ValueError, match=field):
            LmConfig(**kwargs)
    assert LmConfig(memory="20%").memory == "20%"


def test_find_tool_order_and_error(tmp_path, monkeypatch):
    env_dir, repo_bin = tmp_path / "env", tmp_path / "repo"
    for d in (env_dir, repo_bin):
        d.mkdir()
        tool = d / "lmplz"
        tool.write_text("#!/bin/sh\n")
        tool.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.setenv("CC100_KENLM_BIN", str(env_dir))
    assert find_tool("lmplz", tools_bin=repo_bin) == str(env_dir / "lmplz")
    monkeypatch.delenv("CC100_KENLM_BIN")
    assert find_tool("lmplz", tools_bin=repo_bin) == str(repo_bin / "lmplz")
    with pytest.raises(ToolNotFoundError, match="run `make tools`"):
        find_tool("build_binary", tools_bin=repo_bin)


# -- the command -----------------------------------------------------------------------------


def _reference(shared_data: Path, root: Path) -> Path:
    """en and fr (a few hundred sentences each), a 60-line language, a 10-line one."""
    ref = root / "reference"
    ref.mkdir()
    en = (shared_data / "reference" / "en.txt").read_text(encoding="utf-8").splitlines()
    fr = (shared_data / "reference" / "fr.txt").read_text(encoding="utf-8").splitlines()
    (ref / "en.txt").write_text("\n".join(en[:800]) + "\n", encoding="utf-8")
    (ref / "fr.txt").write_text("\n".join(fr[:600]) + "\n", encoding="utf-8")
    (ref / "sm.txt").write_text("\n".join(en[1000:1060]) + "\n", encoding="utf-8")
    (ref / "xx.txt").write_text("\n".join(en[2000:2010]) + "\n", encoding="utf-8")
    return ref


def test_lm_command_trains_models_in_cc_net_layout(kenlm_tools, shared_data, tmp_path, capsys):
    ref = _reference(shared_data, tmp_path)
    out = tmp_path / "lm"
    argv = ["--reference", str(ref), "--output", str(out), "--workers", "2", "--memory", "256M"]
    assert lm.main(argv) == 1  # xx has too little text: reported, the others are trained
    printed = capsys.readouterr().out
    assert sorted(os.listdir(out)) == [
        ".cc100", "en.arpa.bin", "en.sp.model", "fr.arpa.bin", "fr.sp.model", "sm.arpa.bin", "sm.sp.model"
    ]
    assert f"{ref / 'xx.txt'}: too little text" in printed
    assert "3/4 languages trained" in printed
    for lang in ("en", "fr", "sm"):  # one progress line per language, a summary row each
        assert f"] {lang}: " in printed
    rows = {line.split()[0]: line.split() for line in printed.splitlines() if line[:3] in ("en ", "fr ", "sm ", "xx ")}
    assert rows["xx"][-1] == "FAILED" and rows["en"][-1] == "ok"
    # the 60-line language got the vocabulary its text supports, not cc_net's 65536
    assert 0 < int(rows["sm"][3]) < 65536
    sp = load_sentencepiece(str(out / "sm.sp.model"))
    assert sp.get_piece_size() == int(rows["sm"][3])
    # the models score text: an English sentence is likelier than its reversal
    sp, model = load_sentencepiece(str(out / "en.sp.model")), load_kenlm(str(out / "en.arpa.bin"))
    sentence = "The president said on Monday that the government would present a new plan."
    reversed_words = " ".join(reversed(sentence.split()))
    assert score_document(sentence, sp, model) < score_document(reversed_words, sp, model)
    # --skip-existing keeps finished languages untouched
    before = (out / "en.arpa.bin").stat().st_mtime_ns
    assert lm.main(argv[:4] + ["--langs", "en", "--skip-existing"]) == 0
    assert "skipping 1 languages with existing models: en" in capsys.readouterr().out
    assert (out / "en.arpa.bin").stat().st_mtime_ns == before


def test_lm_retrains_only_changed_or_missing_languages_and_is_then_up_to_date(kenlm_tools, shared_data, tmp_path,
                                                                               capfd):
    """Incremental, from LM_DIR's completion record (pipeline/contracts.py): a language is
    retrained when its reference text changed or its models are missing; the others are kept.
    (capfd: SentencePiece, trained in this process for one language, needs real file descriptors.)"""
    from pipeline.contracts import content_fingerprint
    from tests.uptodate import assert_up_to_date, tree_state

    ref = tmp_path / "reference"
    ref.mkdir()
    en = (shared_data / "reference" / "en.txt").read_text(encoding="utf-8").splitlines()
    (ref / "en.txt").write_text("\n".join(en[:300]) + "\n", encoding="utf-8")
    (ref / "sm.txt").write_text("\n".join(en[1000:1060]) + "\n", encoding="utf-8")
    out = tmp_path / "lm"
    argv = ["--reference", str(ref), "--output", str(out), "--workers", "1", "--memory", "256M"]
    assert lm.main(argv) == 0
    capfd.readouterr()
    before = tree_state(out)
    rc = lm.main(argv)
    assert_up_to_date("lm", out, rc, capfd.readouterr().out, before)

    (ref / "sm.txt").write_text("\n".join(en[2000:2060]) + "\n", encoding="utf-8")  # a new text for sm
    assert lm.main(argv) == 0
    printed = capfd.readouterr().out
    assert "1 languages up to date, kept: en" in printed and "1 languages from" in printed
    after = tree_state(out)
    assert all(after[f"en{s}"] == before[f"en{s}"] for s in (".sp.model", ".arpa.bin"))  # untouched
    assert after["sm.arpa.bin"] != before["sm.arpa.bin"]
    (out / "en.sp.model").unlink()  # a missing model is trained again, alone
    config = lm.decisive_config(LmConfig(memory="256M"))
    texts = {lang: content_fingerprint(ref / f"{lang}.txt") for lang in ("en", "sm")}
    assert lm.languages_to_train(str(out), config, texts) == ["en"]
    assert lm.languages_to_train(str(out), lm.decisive_config(LmConfig(order=4)), texts) == ["en", "sm"]
    assert lm.languages_to_train(str(out), lm.decisive_config(LmConfig(memory="1G")), texts) == ["en"]


def test_lm_command_refuses_bad_arguments_before_training(kenlm_tools, tmp_path, capsys):
    ref = tmp_path / "ref"
    ref.mkdir()
    (ref / "en.txt").write_text("hello\n")
    out = tmp_path / "lm"
    assert lm.main(["--reference", str(ref), "--output", str(out), "--langs", "en,zz"]) == 2
    assert f"reference text not found: {ref / 'zz.txt'}" in capsys.readouterr().err
    assert lm.main(["--reference", str(tmp_path / "none"), "--output", str(out)]) == 2
    assert "no *.txt reference files found" in capsys.readouterr().err
    assert lm.main(["--reference", str(ref), "--output", str(out), "--vocab-size", "3"]) == 2
    assert "vocab_size" in capsys.readouterr().err
    assert not out.exists()
    # a directory the lm stage did not write (cc_net's models, say) is never written into
    out.mkdir()
    (out / "en.sp.model").write_text("cc_net's own")
    assert lm.main(["--reference", str(ref), "--output", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"cc100 lm: --output {out}: not empty and has no .cc100/stage.json")
    assert sorted(os.listdir(out)) == ["en.sp.model"] and (out / "en.sp.model").read_text() == "cc_net's own"


def test_lm_command_says_to_build_the_tools(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("pipeline.utils.tools.TOOLS_BIN", tmp_path / "no-tools")
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.delenv("CC100_KENLM_BIN", raising=False)
    ref = tmp_path / "ref"
    ref.mkdir()
    (ref / "en.txt").write_text("hello\n")
    assert lm.main(["--reference", str(ref), "--output", str(tmp_path / "lm")]) == 2
    assert "run `make tools`" in capsys.readouterr().err
