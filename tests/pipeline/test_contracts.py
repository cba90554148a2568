"""pipeline/contracts.py: a stage writes and deletes only directories that carry its own marker."""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys

import pytest

from pipeline.contracts import (
    MARKER_FILE,
    META_DIR,
    STAGE_FORMATS,
    OwnershipError,
    check_claimable,
    check_owned,
    claim,
    clean,
    describe_os_error,
    find_os_error,
    main,
    read_marker,
    remove_owned_tree,
    write_marker,
)
from tests.conftest import REPO_ROOT


def test_claim_takes_a_new_or_empty_directory_and_keeps_its_own(tmp_path):
    new = tmp_path / "a" / "new"
    claim(new, "vocab")
    assert json.loads((new / META_DIR / MARKER_FILE).read_text()) == {"stage": "vocab", "format_version": 1}
    claim(new, "vocab")  # again: its own
    empty = tmp_path / "empty"
    empty.mkdir()
    claim(empty, "tokenize")
    assert read_marker(empty)["stage"] == "tokenize"


@pytest.mark.parametrize("setup, message", [
    (lambda d: (d / "thesis.tex").write_text("x"), "not empty and has no .cc100/stage.json"),
    (lambda d: write_marker(d, "corpus"), "holds the output of cc100 corpus (.cc100/stage.json), not of cc100 vocab"),
    (lambda d: (d / META_DIR).mkdir() or (d / META_DIR / MARKER_FILE).write_text("{not json"),
     "is unreadable or not a cc100 marker"),
    (lambda d: (d / META_DIR).mkdir() or (d / META_DIR / MARKER_FILE).write_text(
        json.dumps({"stage": "vocab", "format_version": STAGE_FORMATS["vocab"] + 1})), "written by a newer cc100"),
])
def test_anything_else_is_refused_with_one_line_naming_it(tmp_path, setup, message):
    d = tmp_path / "out"
    d.mkdir()
    setup(d)
    before = sorted(p.relative_to(d) for p in d.rglob("*"))
    with pytest.raises(OwnershipError) as e:
        claim(d, "vocab")
    assert str(e.value).startswith(f"{d}: ") and message in str(e.value)
    assert "\n" not in str(e.value)
    assert sorted(p.relative_to(d) for p in d.rglob("*")) == before  # nothing touched


def test_a_file_or_a_symlink_is_not_a_directory_to_replace(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(OwnershipError, match="exists and is not a directory"):
        check_claimable(f, "lm")
    real = tmp_path / "real"
    write_marker(real, "lm")
    (tmp_path / "link").symlink_to(real)
    check_claimable(tmp_path / "link", "lm")  # writing through a link is fine...
    with pytest.raises(OwnershipError, match="is a symbolic link"):
        check_owned(tmp_path / "link", "lm")  # ... replacing or deleting it is not
    with pytest.raises(OwnershipError, match="is a symbolic link"):
        remove_owned_tree(tmp_path / "link", "lm")
    assert read_marker(real)["stage"] == "lm"


def test_removal_never_follows_a_link_out_of_the_tree(tmp_path):
    outside = tmp_path / "outside"
    (outside / "deep").mkdir(parents=True)
    (outside / "deep" / "precious.txt").write_text("keep")
    out = tmp_path / "out"
    write_marker(out, "pretrain")
    (out / "sub").mkdir()
    (out / "sub" / "to-dir").symlink_to(outside)
    (out / "to-file").symlink_to(outside / "deep" / "precious.txt")
    assert remove_owned_tree(out, "pretrain") is True
    assert not out.exists()
    assert (outside / "deep" / "precious.txt").read_text() == "keep"
    assert remove_owned_tree(out, "pretrain") is False  # nothing there: nothing to do


def test_removal_refuses_what_the_stage_did_not_write(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "x").write_text("x")
    with pytest.raises(OwnershipError, match="not empty and has no"):
        remove_owned_tree(out, "export")
    write_marker(out, "report")
    with pytest.raises(OwnershipError, match="output of cc100 report"):
        remove_owned_tree(out, "export")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(OwnershipError, match="has no .cc100/stage.json"):
        remove_owned_tree(empty, "export")  # even an empty directory: it is not ours to delete
    assert (out / "x").is_file() and empty.is_dir()


def _tree(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def test_clean_removes_cc100_outputs_and_their_emptied_containers(tmp_path):
    out = tmp_path / "out"
    write_marker(out / "corpus", "corpus")
    (out / "corpus" / "en").mkdir()
    write_marker(out / "demo" / "lm", "lm")
    write_marker(out / "demo" / "input", "demo-input")
    (out / "demo" / "empty").mkdir()
    assert sorted(clean([str(out)])) == [str(out / "corpus"), str(out / "demo" / "input"), str(out / "demo" / "lm")]
    assert not out.exists()
    assert clean([str(tmp_path / "missing")]) == []


def test_clean_removes_nothing_when_anything_foreign_is_there(tmp_path):
    out = tmp_path / "out"
    write_marker(out / "corpus", "corpus")
    (out / "notes").mkdir()
    (out / "notes" / "thesis.tex").write_text("x")
    (out / "link").symlink_to(tmp_path)
    before = _tree(out)
    with pytest.raises(OwnershipError, match=r"out/link \(and 1 more\): not written by cc100"):
        clean([str(out)])
    assert _tree(out) == before


def test_command_line_for_make(tmp_path, capsys):
    out = tmp_path / "out"
    (out / "mine").mkdir(parents=True)
    (out / "mine" / "a.txt").write_text("x")
    assert main(["clean", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("cc100: ") and len(err.strip().splitlines()) == 1
    assert main(["remove", str(out / "mine"), "--stage", "lm"]) == 2
    assert main(["check", str(out / "mine"), "--stage", "lm"]) == 2
    capsys.readouterr()
    assert main(["adopt", str(out / "mine"), "--stage", "lm"]) == 0  # the user says it is an old lm output
    assert read_marker(out / "mine") == {"stage": "lm", "format_version": 1, "adopted": True}
    assert main(["adopt", str(out / "mine"), "--stage", "vocab"]) == 2  # someone else's now
    assert main(["remove", str(out / "mine"), "--stage", "lm"]) == 0
    assert main(["claim", str(out / "new"), "--stage", "airflow-home"]) == 0
    assert main(["clean", str(out)]) == 0 and not out.exists()


def test_the_module_runs_without_the_projects_dependencies(tmp_path):
    """`make clean` runs it with the system python: standard library only."""
    code = ("import sys; sys.modules['apache_beam'] = sys.modules['torch'] = None; "
            "from pipeline.contracts import main; sys.exit(main(['claim', sys.argv[1], '--stage', 'lm']))")
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path / "x")], cwd=REPO_ROOT,
                          capture_output=True, text=True, env={"PATH": os.environ.get("PATH", "")})
    assert proc.returncode == 0, proc.stderr
    assert read_marker(tmp_path / "x")["stage"] == "lm"


def test_os_errors_are_described_in_one_line_naming_the_file():
    assert describe_os_error(OSError(errno.ENOSPC, "No space left on device", "/o/x.bin")) == \
        "no space left on device writing /o/x.bin"
    assert describe_os_error(PermissionError(errno.EACCES, "Permission denied", "/o/\udcff")) == \
        r"Permission denied: '/o/\udcff'"
    try:
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError:
            raise RuntimeError("[enforce fail at inline_container.cc] unexpected pos")  # as torch.save does
    except RuntimeError as e:
        assert find_os_error(e).errno == errno.ENOSPC
    assert find_os_error(ValueError("x")) is None


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_corpus_overwrites_only_when_asked():
    def corpus_command(*extra):
        proc = subprocess.run(["make", "-n", "-o", ".venv/.installed", "corpus", "INPUT=x.wet.gz", *extra],
                              cwd=REPO_ROOT, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        return next(line for line in proc.stdout.splitlines() if " corpus " in line)

    assert "--overwrite" not in corpus_command()
    assert "--overwrite" in corpus_command("OVERWRITE=1")


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_clean_removes_only_what_cc100_wrote(tmp_path):
    """`make clean` in a copy of the Makefile and the module it runs (never this checkout's out/)."""
    shutil.copy(REPO_ROOT / "Makefile", tmp_path / "Makefile")
    (tmp_path / "pipeline" / "utils").mkdir(parents=True)
    # the package __init__ imports utils/logs
    for name in ("__init__.py", "utils/__init__.py", "utils/logs.py", "contracts.py"):
        shutil.copy(REPO_ROOT / "pipeline" / name, tmp_path / "pipeline" / name)
    out = tmp_path / "out"
    write_marker(out / "corpus", "corpus")
    (out / "corpus" / "en").mkdir()
    (out / "thesis.tex").write_text("years of work")

    def make_clean():
        return subprocess.run(["make", "--no-print-directory", "clean", f"PYTHON={sys.executable}"],
                              cwd=tmp_path, capture_output=True, text=True)

    proc = make_clean()
    assert proc.returncode != 0 and "cc100: out/thesis.tex: not written by cc100" in proc.stderr
    assert (out / "thesis.tex").is_file() and (out / "corpus" / "en").is_dir()
    (out / "thesis.tex").unlink()
    proc = make_clean()
    assert proc.returncode == 0, proc.stderr
    assert not out.exists()


# -- completion records: a stage up to date, like make ------------------------------------------
# (the skip/run/rebuild decisions dags/cc100_stages.py made with its own stamps, now the stages')


def test_up_to_date_only_with_the_same_config_and_inputs_and_says_what_changed(tmp_path):
    from pipeline.contracts import clear_completion, mark_complete, out_of_date, read_completion

    out = tmp_path / "vocab"
    config, inputs = {"vocab_size": 1000, "data": {"seed": 0}}, {"corpus": "record:k1"}
    assert out_of_date(out, "vocab", config, inputs) == "no output yet"  # run
    claim(out, "vocab")
    (out / "sentencepiece.bpe.model").write_text("built outside a completion record")
    assert out_of_date(out, "vocab", config, inputs) == "no completion record"  # not trusted as done
    mark_complete(out, "vocab", config, inputs)
    assert read_completion(out) == {"stage": "vocab", "format_version": 1, "config": config, "inputs": inputs}
    assert out_of_date(out, "vocab", dict(config), dict(inputs)) is None  # same request: nothing to do
    assert out_of_date(out, "vocab", {**config, "vocab_size": 2000}, inputs) == "config vocab_size: 1000 -> 2000"
    assert out_of_date(out, "vocab", {**config, "data": {"seed": 1}}, inputs) == "config data.seed: 0 -> 1"
    assert out_of_date(out, "vocab", config, {"corpus": "record:k2"}) == "input corpus changed"
    assert out_of_date(out, "vocab", config, {**inputs, "lm": "x"}) == "input lm is new"
    assert out_of_date(out, "tokenize", config, inputs) == "completion record of cc100 vocab"
    clear_completion(out)  # a stage rewriting its output in place: interrupted, not complete
    assert out_of_date(out, "vocab", config, inputs) == "no completion record"
    shutil.rmtree(out)  # deleted by hand: just run
    assert out_of_date(out, "vocab", config, inputs) == "no output yet"


def test_fingerprints_chain_through_completion_records(tmp_path):
    from pipeline.contracts import fingerprint, mark_complete, stat_fingerprint

    corpus = tmp_path / "corpus"
    (corpus / "en" / "head").mkdir(parents=True)
    part = corpus / "en" / "head" / "part-00000.parquet"
    part.write_bytes(b"docs")
    raw = fingerprint(corpus)  # no record: path, size and time of its own files
    assert raw.startswith("stat:") and raw == stat_fingerprint([part])
    claim(corpus / "report", "report")  # a nested cc100 output is not part of it
    (corpus / "report" / "index.html").write_text("x")
    assert fingerprint(corpus) == raw
    mark_complete(corpus, "corpus", {"min_len": 300}, {})
    first = fingerprint(corpus)
    assert first.startswith("record:")  # the hash of the record: gigabytes are never re-read
    mark_complete(corpus, "corpus", {"min_len": 100}, {})  # rebuilt with other settings
    assert fingerprint(corpus) != first
    text = tmp_path / "en.txt"
    text.write_text("hello\n")
    assert fingerprint(text).startswith("sha256:")  # raw inputs such as reference text: content
    assert fingerprint(tmp_path / "missing") == "missing"


def test_the_stages_check_logs_one_line_and_force_skips_it(tmp_path):
    from pipeline.contracts import decisive, mark_complete, pop_force, skip_if_up_to_date

    out, lines = tmp_path / "eval", []
    claim(out, "evaluate")
    mark_complete(out, "evaluate", {"layer": 7}, {})
    assert skip_if_up_to_date(out, "evaluate", {"layer": 7}, {}, log=lines.append)
    assert not skip_if_up_to_date(out, "evaluate", {"layer": 6}, {}, log=lines.append)
    assert not skip_if_up_to_date(out, "evaluate", {"layer": 7}, {}, force=True, log=lines.append)
    assert lines == [f"cc100 evaluate: up to date ({out})", "cc100 evaluate: not up to date (config layer: 7 -> 6)",
                     "cc100 evaluate: --force given: running whether up to date or not"]
    assert not skip_if_up_to_date(tmp_path / "new", "evaluate", {}, {}, log=lines.append) and len(lines) == 3
    assert pop_force(["--output", "x", "--force"]) == (True, ["--output", "x"])
    assert pop_force(["--output", "x"]) == (False, ["--output", "x"])
    assert decisive({"workers": 2, "data": {"workers": 1, "seed": 0}}, ["workers"]) == {"data": {"seed": 0}}
