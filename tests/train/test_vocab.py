"""`cc100 vocab`: measuring the corpus, alpha sampling, drawing lines, training, bad input."""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import io
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.contracts import claim
from pipeline.schema import PARQUET_SCHEMA, Document
from train import vocab
from cc100 import cli
from train.corpus_reader import list_languages, measure_language
from train.sampling import alpha_sampling_probs
from train.tokenizer import XLMRTokenizer
from train.vocab import (
    CONFIG_NAME,
    MODEL_NAME,
    SAMPLING_NAME,
    SPM_LOG,
    DrawStats,
    SentencePieceLog,
    VocabConfig,
    draw_language,
    main,
    sampling_plan,
    select_languages,
    split_draws,
    truncate_utf8,
)

# Skewed sizes (paragraph lines) across scripts; th has no KenLM model, so bucket `all`.
REFERENCE_SIZES = {"en": 1200, "de": 500, "ru": 250, "ar": 100, "hi": 50, "zh": 40, "th": 20}
BUCKET_CYCLE = ("head", "middle", "tail")


def doc(lang: str, i: int, paragraphs: list[str], bucket: str) -> dict:
    raw = "\n".join(paragraphs)
    return Document(
        url=f"https://example.{lang}/{i}",
        date_download="2019-07-17T12:00:00Z",
        digest=f"sha1:{lang}{i}",
        source_domain=f"example.{lang}",
        title="",
        raw_content=raw,
        length=len(raw),
        nlines=raw.count("\n") + 1,
        cc_segment="test",
        record_offset=i,
        language=lang,
        bucket=bucket,
    ).to_row()


def write_corpus(root: Path, docs_by_lang: dict[str, list[dict]], row_group_size: int = 10) -> Path:
    """OUTPUT/{lang}/{bucket}/part-00000.parquet, as the corpus stage writes it."""
    for lang, docs in docs_by_lang.items():
        for bucket in sorted({d["bucket"] for d in docs}):
            rows = [d for d in docs if d["bucket"] == bucket]
            (root / lang / bucket).mkdir(parents=True, exist_ok=True)
            pq.write_table(
                pa.Table.from_pylist(rows, schema=PARQUET_SCHEMA),
                root / lang / bucket / "part-00000.parquet",
                row_group_size=row_group_size,
            )
    return root


def synthetic_corpus(
    root: Path, sizes: dict[str, int], per_doc: int = 4, row_group_size: int = 10
) -> Path:
    """Unique, recognisable lines ("xx 17") so draws can be counted line by line."""
    docs = {}
    for lang, n in sizes.items():
        lines = [f"{lang} {i}" for i in range(n)]
        docs[lang] = [doc(lang, j, lines[j : j + per_doc], "head") for j in range(0, n, per_doc)]
    return write_corpus(root, docs, row_group_size)


def run_cli(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(argv)
    return rc, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def corpus(shared_data, tmp_path_factory) -> Path:
    docs = {}
    for lang, n in REFERENCE_SIZES.items():
        text = (shared_data / "reference" / f"{lang}.txt").read_text(encoding="utf-8")
        lines = [line.strip() for line in text.splitlines() if line.strip()][:n]
        docs[lang] = [
            doc(lang, j, lines[j : j + 5], "all" if lang == "th" else BUCKET_CYCLE[(j // 5) % 3])
            for j in range(0, len(lines), 5)
        ]
    return write_corpus(tmp_path_factory.mktemp("corpus"), docs)


@pytest.fixture(scope="module")
def trained(corpus, tmp_path_factory):
    """One real run: alpha 0.3, 6000 lines, 2000 pieces."""
    out = tmp_path_factory.mktemp("vocab") / "v"
    rc, stdout, stderr = run_cli(
        [
            "--corpus",
            str(corpus),
            "--output",
            str(out),
            "--vocab-size",
            "2000",
            "--sentences",
            "6000",
            "--seed",
            "7",
            "--quiet",
        ]
    )
    assert rc == 0, stderr
    return out, stdout


def head_middle_lines(corpus: Path, lang: str) -> int:
    return sum(
        pq.read_table(f, columns=["nlines"]).column("nlines").to_numpy().sum()
        for b in ("head", "middle", "all")
        for f in (corpus / lang / b).glob("*.parquet")
    )


# -- the sampling table ----------------------------------------------------------------------


def test_sampling_json_matches_the_formula(trained, corpus):
    out, _ = trained
    table = json.loads((out / SAMPLING_NAME).read_text())
    assert set(table) == set(REFERENCE_SIZES)
    lines = {lang: int(head_middle_lines(corpus, lang)) for lang in REFERENCE_SIZES}
    total = sum(lines.values())
    q = alpha_sampling_probs(lines, 0.3)
    for lang, row in table.items():
        assert {"raw_share", "sampled_share", "sentences"} <= set(row)
        assert row["lines"] == lines[lang]
        assert row["raw_share"] == pytest.approx(lines[lang] / total)
        assert row["sampled_share"] == pytest.approx(q[lang])
        assert row["sentences"] == pytest.approx(6000 * q[lang], abs=1)
    assert sum(row["sentences"] for row in table.values()) == 6000


def test_small_language_gets_more_than_its_raw_share(trained):
    out, _ = trained
    table = json.loads((out / SAMPLING_NAME).read_text())
    smallest = min(table, key=lambda lang: table[lang]["raw_share"])
    largest = max(table, key=lambda lang: table[lang]["raw_share"])
    assert smallest == "th" and largest == "en"
    assert table["th"]["sentences"] / 6000 > 3 * table["th"]["raw_share"]
    assert table["th"]["sentences"] > table["th"]["lines"]  # upsampled by repetition
    assert table["en"]["sentences"] / 6000 < table["en"]["raw_share"]


@pytest.mark.parametrize("alpha", [0.0, 1.0])
def test_alpha_bounds_give_uniform_and_raw_shares(corpus, alpha):
    cfg = VocabConfig(corpus=corpus, output=corpus / "unused", alpha=alpha, sentences=7000)
    plan = sampling_plan(select_languages(cfg), cfg)
    for row in plan.values():
        expected = 1 / len(plan) if alpha == 0.0 else row["raw_share"]
        assert row["sampled_share"] == pytest.approx(expected)
        assert row["sentences"] == pytest.approx(7000 * expected, abs=1)


def test_buckets_select_files_and_all_is_always_read(corpus):
    default = select_languages(VocabConfig(corpus=corpus, output=corpus))
    with_tail = select_languages(
        VocabConfig(corpus=corpus, output=corpus, buckets=("head", "middle", "tail"))
    )
    head_only = select_languages(VocabConfig(corpus=corpus, output=corpus, buckets=("head",)))
    assert head_only["en"].lines < default["en"].lines < with_tail["en"].lines == 1200
    assert default["th"].lines == head_only["th"].lines == 20  # th lives in bucket `all`
    langs = select_languages(VocabConfig(corpus=corpus, output=corpus, langs=("ru", "zh")))
    assert list(langs) == ["ru", "zh"]


def test_share_by_chars_uses_the_length_column(corpus):
    cfg = VocabConfig(corpus=corpus, output=corpus, share_by="chars", alpha=1.0)
    data = select_languages(cfg)
    plan = sampling_plan(data, cfg)
    total = sum(d.chars for d in data.values())
    assert all(plan[k]["raw_share"] == pytest.approx(d.chars / total) for k, d in data.items())


# -- drawing lines ---------------------------------------------------------------------------


def test_split_draws_is_exact_and_feasible():
    rng = np.random.default_rng(0)
    sizes = [10, 0, 25, 5, 60]
    for m in (0, 1, 37, 100):
        c = split_draws(sizes, m, rng)
        assert sum(c) == m and all(0 <= x <= s for x, s in zip(c, sizes, strict=True))
    # numpy's hypergeometric stops at 10^9 items: the binomial stand-in keeps the invariants
    big = [2 * 10**9, 3 * 10**9, 5]
    c = split_draws(big, 10**6, rng)
    assert sum(c) == 10**6 and c[2] <= 5
    assert c[0] == pytest.approx(0.4 * 10**6, rel=0.01)
    with pytest.raises(ValueError, match="cannot draw 101 of 100"):
        split_draws([100], 101, rng)


def draw(corpus: Path, lang: str, k: int, seed: int) -> tuple[list[str], DrawStats]:
    data = measure_language(lang, list_languages(corpus)[lang]["head"])
    stats = DrawStats()
    return list(draw_language(data, k, seed, stats)), stats


def test_upsampling_repeats_every_line_evenly(tmp_path):
    corpus = synthetic_corpus(tmp_path, {"yo": 40})
    lines, stats = draw(corpus, "yo", 100, seed=3)  # 100 = 2 * 40 + 20
    counts = Counter(lines)
    assert len(lines) == stats.written == stats.planned == 100
    assert set(counts) == {f"yo {i}" for i in range(40)}
    assert sorted(Counter(counts.values()).items()) == [(2, 20), (3, 20)]


def test_downsampling_draws_distinct_lines_and_skips_row_groups(tmp_path):
    corpus = synthetic_corpus(
        tmp_path, {"en": 4000}, per_doc=4, row_group_size=10
    )  # 100 row groups
    lines, stats = draw(corpus, "en", 30, seed=1)
    assert len(lines) == len(set(lines)) == 30
    assert stats.row_groups_read <= 30 and stats.row_groups_skipped >= 70  # unread text
    again, _ = draw(corpus, "en", 30, seed=1)
    other, _ = draw(corpus, "en", 30, seed=2)
    assert again == lines and other != lines


def test_blank_and_overlong_lines(tmp_path):
    long_line = "ж" * 3000  # 6000 UTF-8 bytes: SentencePiece would skip it, we cut it
    docs = [doc("kk", 0, ["first", "", long_line], "head")]
    corpus = write_corpus(tmp_path, {"kk": docs})
    lines, stats = draw(corpus, "kk", 3, seed=0)
    assert stats.empty == 1 and stats.truncated == 1
    assert lines[0] == "first" and lines[1] == "ж" * 2096  # 4192 bytes, on a character boundary
    assert truncate_utf8("aé", 2) == "a" and truncate_utf8("abc", 5) == "abc"


# -- the trained model -----------------------------------------------------------------------


def test_run_writes_model_table_and_config(trained):
    out, stdout = trained
    tok = XLMRTokenizer(out / MODEL_NAME)
    assert tok.num_pieces == 2000 and tok.vocab_size == 2002 and tok.mask_id == 2001
    config = json.loads((out / CONFIG_NAME).read_text())
    assert config["config"]["alpha"] == 0.3 and config["config"]["seed"] == 7
    assert config["summary"]["sentences"] == 6000 and config["summary"]["pieces"] == 2000
    # the printed table and summary
    assert "raw_share" in stdout and "sampled" in stdout
    assert "2,000 pieces -> 2,002 XLM-R ids" in stdout
    for text in ("Привет, как дела?", "The weather is nice today.", "مرحبا بالعالم"):
        ids = tok.encode(text)
        assert tok.decode(ids) == text and tok.unk_id not in ids


def test_byte_fallback_is_off_as_in_xlmr_and_a_flag_turns_it_on(corpus, trained, tmp_path):
    out, _ = trained
    tok = XLMRTokenizer(out / MODEL_NAME)
    assert not any(tok.id_to_piece(i).startswith("<0x") for i in range(tok.vocab_size))
    assert tok.encode("a 𓀀 b").count(tok.unk_id) == 1
    assert json.loads((out / CONFIG_NAME).read_text())["config"]["byte_fallback"] is False

    rc, _, err = run_cli(["--corpus", str(corpus), "--output", str(tmp_path), "--vocab-size", "2000",
                          "--sentences", "6000", "--seed", "7", "--quiet", "--byte-fallback"])
    assert rc == 0, err
    tok = XLMRTokenizer(tmp_path / MODEL_NAME)
    assert sum(tok.id_to_piece(i).startswith("<0x") for i in range(tok.vocab_size)) == 256
    ids = tok.encode("a 𓀀 b")
    assert tok.unk_id not in ids and tok.decode(ids) == "a 𓀀 b"
    assert json.loads((tmp_path / CONFIG_NAME).read_text())["config"]["byte_fallback"] is True


def test_identical_seeds_give_identical_model_files(corpus, trained, tmp_path):
    out, _ = trained
    rc, _, err = run_cli(
        [
            "--corpus",
            str(corpus),
            "--output",
            str(tmp_path / "again"),
            "--vocab-size",
            "2000",
            "--sentences",
            "6000",
            "--seed",
            "7",
            "--quiet",
        ]
    )
    assert rc == 0, err
    assert (tmp_path / "again" / MODEL_NAME).read_bytes() == (out / MODEL_NAME).read_bytes()
    assert (tmp_path / "again" / SAMPLING_NAME).read_text() == (out / SAMPLING_NAME).read_text()


def test_too_large_vocab_fails_before_the_long_part_and_says_the_largest_size(corpus, tmp_path):
    args = ["--corpus", str(corpus), "--sentences", "1500", "--langs", "en,de,ru"]
    rc, stdout, err = run_cli([*args, "--output", str(tmp_path / "a"), "--vocab-size", "100000"])
    assert rc == 2
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "--vocab-size 100000 is too large for this sample" in err
    bound = int(err.split("at most ")[1].split()[0])
    # stopped at SentencePiece's seed pieces, before the EM rounds (the long part)
    assert "seed pieces" in stdout and "EM round 1:" not in stdout
    assert not (tmp_path / "a").exists()

    rc, stdout, err = run_cli(
        [*args, "--output", str(tmp_path / "c"), "--vocab-size", "100000", "--allow-smaller-vocab",
         "--quiet"]
    )
    assert rc == 0, err
    largest = XLMRTokenizer(tmp_path / "c" / MODEL_NAME).num_pieces
    assert f"{largest:,} pieces obtained (asked 100,000" in stdout
    assert 1000 < largest <= bound
    rc, _, err = run_cli([*args, "--output", str(tmp_path / "b"), "--vocab-size", str(largest),
                          "--quiet"])
    assert rc == 0, err
    assert XLMRTokenizer(tmp_path / "b" / MODEL_NAME).num_pieces == largest


def test_a_repetitive_sample_is_checked_on_its_distinct_lines_first(corpus, tmp_path):
    # 20,000 lines drawn from ~1,300: SentencePiece never reads the big sample
    args = ["--corpus", str(corpus), "--sentences", "20000", "--langs", "en,de,ru"]
    rc, stdout, err = run_cli([*args, "--output", str(tmp_path / "a"), "--vocab-size", "100000"])
    assert rc == 2 and err.count("\n") == 1
    assert "--vocab-size 100000 is too large for this sample" in err and "one-word lines" in err
    assert "[vocab] SentencePiece read" not in stdout
    bound = int(err.split("at most ")[1].split()[0])
    rc, stdout, err = run_cli([*args, "--output", str(tmp_path / "b"), "--vocab-size", "2000",
                               "--quiet"])
    assert rc == 0, err
    assert f"--vocab-size 2,000 is within reach: the " in stdout
    rc, stdout, err = run_cli([*args, "--output", str(tmp_path / "c"), "--vocab-size", "100000",
                               "--allow-smaller-vocab", "--quiet"])
    assert rc == 0, err
    assert XLMRTokenizer(tmp_path / "c" / MODEL_NAME).num_pieces <= bound  # the bound holds


def test_sentencepiece_log_is_condensed_and_kept_whole(trained):
    out, stdout = trained  # a --quiet run: no SentencePiece lines at all on the terminal
    assert "LOG(INFO)" not in stdout and "[vocab] SentencePiece" not in stdout
    full = (out / SPM_LOG).read_text()
    assert full.count("LOG(INFO)") > 20 and "Initialized" in full  # (no byte meta pieces by default)


def test_sentencepiece_log_lines_and_the_early_verdict():
    cfg = VocabConfig(corpus=Path("c"), output=Path("o"), vocab_size=5000)
    said = []
    watch = SentencePieceLog(cfg, said.append, clock=lambda: 0.0)
    lines = [
        "trainer_interface.cc(541) LOG(INFO) all chars count=35400178",
        "trainer_interface.cc(562) LOG(INFO) Alphabet size=100",
        "trainer_interface.cc(594) LOG(INFO) Done! preprocessed 200000 sentences.",
        "unigram_model_trainer.cc(312) LOG(INFO) Initialized 9000 seed sentencepieces",
        "unigram_model_trainer.cc(618) LOG(INFO) EM sub_iter=0 size=7000 obj=21.5 num_tokens=1",
        "unigram_model_trainer.cc(618) LOG(INFO) EM sub_iter=1 size=6000 obj=19.3 num_tokens=1",
    ] + ["trainer_interface.cc(427) LOG(INFO) Adding meta_piece: <0x00>"] * 256
    assert [watch.feed(line) for line in lines] == [None] * len(lines)
    assert said == [
        "[vocab] SentencePiece read 200,000 sentences, 35,400,178 characters, alphabet 100 (0s)",
        "[vocab] SentencePiece 9,000 seed pieces; EM rounds until 5,000 remain (the long part) (0s)",
        "[vocab] SentencePiece EM round 1: 6,000 pieces, objective 19.3 (0s)",
    ]
    # 4,500 pieces + 100 characters + 3 special pieces < 5,000: cannot be reached
    verdict = watch.feed("unigram_model_trainer.cc(618) LOG(INFO) EM sub_iter=0 size=4500 obj=2")
    assert verdict.startswith("--vocab-size 5000 is too large for this sample: SentencePiece can "
                              "build at most 4603 pieces")
    # with --byte-fallback the bound has the 256 byte pieces too: 4,859
    with_bytes = SentencePieceLog(dataclasses.replace(cfg, byte_fallback=True), said.append)
    for line in lines[:4]:
        with_bytes.feed(line)
    verdict = with_bytes.feed("unigram_model_trainer.cc(618) LOG(INFO) EM sub_iter=0 size=4500 obj=2")
    assert "build at most 4859 pieces" in verdict and "259 special and byte pieces" in verdict
    relaxed = SentencePieceLog(VocabConfig(corpus=Path("c"), output=Path("o"), vocab_size=5000,
                                           allow_smaller_vocab=True), said.append)
    assert relaxed.feed("unigram_model_trainer.cc(312) LOG(INFO) Initialized 10 seed sentencepieces") is None


def test_too_small_vocab_is_a_clear_error(corpus, tmp_path):
    rc, _, err = run_cli(
        [
            "--corpus",
            str(corpus),
            "--output",
            str(tmp_path),
            "--vocab-size",
            "300",
            "--sentences",
            "1000",
            "--quiet",
        ]
    )
    assert rc == 2 and "--vocab-size 300 is too small" in err and "need at least" in err


# -- bad input -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--alpha", "1.5"], "alpha must be in [0, 1], got 1.5"),
        (["--alpha", "-0.1"], "alpha must be in [0, 1], got -0.1"),
        (
            ["--langs", "en,xx,yy"],
            "--langs: unknown language(s) xx, yy (the corpus has: en, sw)",
        ),
        (["--buckets", "head,best"], "unknown bucket(s) best"),
        (["--sentences", "0"], "sentences must be >= 1"),
    ],
)
def test_bad_arguments_are_one_line_errors(tmp_path, extra, message):
    corpus = synthetic_corpus(tmp_path / "c", {"en": 40, "sw": 8})
    rc, _, err = run_cli(["--corpus", str(corpus), "--output", str(tmp_path / "v"), *extra])
    assert rc == 2
    assert err.startswith("cc100 vocab: error: ") and message in err and err.count("\n") == 1
    assert not (tmp_path / "v").exists()


def test_output_is_checked_before_the_long_part(tmp_path, monkeypatch):
    corpus = synthetic_corpus(tmp_path / "c", {"en": 40})
    monkeypatch.setattr(vocab, "train_sentencepiece", lambda *a, **k: pytest.fail("trained anyway"))
    existing = tmp_path / "file"
    existing.write_text("not a directory")
    rc, _, err = run_cli(["--corpus", str(corpus), "--output", str(existing)])
    assert rc == 2 and err == f"cc100 vocab: error: --output {existing}: exists and is not a directory\n"
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "sentencepiece.bpe.model").write_text("someone else's")
    rc, _, err = run_cli(["--corpus", str(corpus), "--output", str(foreign)])
    assert rc == 2 and "not empty and has no .cc100/stage.json" in err and err.count("\n") == 1
    assert (foreign / "sentencepiece.bpe.model").read_text() == "someone else's"


def test_full_disk_is_one_line_and_keeps_the_previous_model(tmp_path, monkeypatch):
    """ENOSPC simulated by monkeypatching the model file's write."""
    corpus = synthetic_corpus(tmp_path / "c", {"en": 40})
    out = tmp_path / "v"
    claim(out, "vocab")
    (out / MODEL_NAME).write_bytes(b"previous model")
    monkeypatch.setattr(vocab, "train_sentencepiece", lambda *a, **k: b"new model")
    real_write = Path.write_bytes

    def full_disk(self, data):
        if self.name.endswith(".tmp"):
            real_write(self, data[:3])
            raise OSError(errno.ENOSPC, "No space left on device", str(self))
        return real_write(self, data)

    monkeypatch.setattr(Path, "write_bytes", full_disk)
    rc, _, err = run_cli(["--corpus", str(corpus), "--output", str(out), "--vocab-size", "16"])
    assert rc == 1
    assert err == f"cc100 vocab: error: no space left on device writing {out / 'sentencepiece.bpe.tmp'}\n"
    assert (out / MODEL_NAME).read_bytes() == b"previous model"
    assert sorted(p.name for p in out.iterdir()) == [".cc100", MODEL_NAME]


def test_empty_corpora_are_refused(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    rc, _, err = run_cli(["--corpus", str(empty), "--output", str(tmp_path / "v")])
    assert rc == 2 and "empty corpus" in err
    no_rows = write_corpus(tmp_path / "no_rows", {"en": []})
    (no_rows / "en" / "head").mkdir(parents=True)
    pq.write_table(
        pa.Table.from_pylist([], schema=PARQUET_SCHEMA),
        no_rows / "en" / "head" / "part-00000.parquet",
    )
    rc, _, err = run_cli(["--corpus", str(no_rows), "--output", str(tmp_path / "v")])
    assert rc == 2 and "empty corpus: no paragraph lines" in err
    rc, _, err = run_cli(["--corpus", str(tmp_path / "nowhere"), "--output", str(tmp_path / "v")])
    assert rc == 2 and "nowhere: no such corpus directory" in err


def test_unreadable_parquet_names_the_file(tmp_path):
    corpus = synthetic_corpus(tmp_path, {"en": 40})
    bad = corpus / "en" / "middle" / "part-00000.parquet"
    bad.parent.mkdir()
    bad.write_bytes(b"PAR1 truncated")
    rc, _, err = run_cli(["--corpus", str(corpus), "--output", str(tmp_path / "v")])
    assert rc == 2 and f"{bad}: not a readable Parquet file" in err and err.count("\n") == 1
    bad.unlink()
    pq.write_table(pa.table({"text": ["hello"]}), bad)
    rc, _, err = run_cli(["--corpus", str(corpus), "--output", str(tmp_path / "v")])
    assert rc == 2 and f"{bad}: missing column(s) nlines, length, raw_content" in err


def test_cc100_dispatcher_reaches_the_vocab_stage(tmp_path, capsys):
    assert (
        cli.main(
            ["vocab", "--corpus", str(tmp_path), "--output", str(tmp_path / "v"), "--alpha", "2"]
        )
        == 2
    )
    assert "alpha must be in [0, 1]" in capsys.readouterr().err


# -- up to date (pipeline/contracts.py completion records) -----------------------------------


def test_a_second_identical_run_is_up_to_date_and_touches_nothing(corpus, trained, tmp_path, monkeypatch):
    from pipeline.contracts import out_of_date
    from tests.uptodate import assert_up_to_date, tree_state

    out, _ = trained
    argv = ["--corpus", str(corpus), "--output", str(out), "--vocab-size", "2000",
            "--sentences", "6000", "--seed", "7", "--quiet"]
    before = tree_state(out)
    rc, stdout, _ = run_cli(argv)
    assert_up_to_date("vocab", out, rc, stdout, before)
    # a changed setting, or another corpus, is not up to date; the reason names it
    bigger = vocab.completion(vocab.parse_args([*argv[:5], "3000", *argv[6:]]))
    assert out_of_date(out, "vocab", *bigger) == "config vocab_size: 2000 -> 3000"
    other = synthetic_corpus(tmp_path / "c", {"en": 40})
    moved = vocab.completion(vocab.parse_args(["--corpus", str(other), *argv[2:]]))
    assert out_of_date(out, "vocab", *moved) == "input corpus changed"
    # --force runs it again (into its own output)
    runs = []
    monkeypatch.setattr(vocab, "run", lambda cfg, log=print: runs.append(cfg) or {})
    rc, stdout, _ = run_cli([*argv, "--force"])
    assert rc == 0 and len(runs) == 1 and "--force given" in stdout and "up to date (" not in stdout
