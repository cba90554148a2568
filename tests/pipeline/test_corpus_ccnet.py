"""CCNet end to end through the `cc100` command: `cc100 lm`, then `cc100 corpus` with --lm-dir.

Models for en, es, fr, it (the four largest languages of the CC-MAIN-2019-30 samples with
reference text) are trained once; one corpus run over the two real samples is shared by most
asserts, and a second run feeds its cutoffs.csv back with --cutoffs and --langs en,es,fr.
The model-file errors run before any pipeline and cost about a second each.
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from pathlib import Path

import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from pipeline.quality.buckets import read_cutoffs
from pipeline.quality.lid import default_lid_model
from cc100.cli import main as cc100

pytestmark = pytest.mark.slow

LANGS_WITH_MODEL = ("en", "es", "fr", "it")
COLUMNS = ("language", "language_score", "perplexity", "bucket")


def _run(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cc100(argv)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def lm_dir(shared_data, tmp_path_factory, kenlm_tools):
    out = tmp_path_factory.mktemp("ccnet") / "lm"
    code, stdout, _ = _run(["lm", "--reference", str(shared_data / "reference"), "--output", str(out),
                            "--langs", ",".join(LANGS_WITH_MODEL), "--workers", "2", "--memory", "256M"])
    assert code == 0, stdout
    return out


@pytest.fixture(scope="module")
def samples(shared_data) -> str:
    return str(shared_data / "wet" / "CC-MAIN-2019-30-sample-*.warc.wet.gz")


@pytest.fixture(scope="module")
def corpus(lm_dir, samples):
    out = lm_dir.parent / "corpus"
    code, stdout, stderr = _run(["corpus", "--input", samples, "--output", str(out), "--lm-dir", str(lm_dir)])
    assert code == 0, stderr
    return out, stdout


@pytest.fixture(scope="module")
def corpus_from_cutoffs(corpus, samples, lm_dir):
    first, _ = corpus
    cutoffs = first.parent / "cutoffs-of-the-first-run.csv"
    shutil.copyfile(first / ".cc100" / "cutoffs.csv", cutoffs)
    out = first.parent / "corpus-cutoffs"
    code, stdout, stderr = _run(["corpus", "--input", samples, "--output", str(out), "--lm-dir", str(lm_dir),
                                 "--cutoffs", str(cutoffs), "--langs", "en,es,fr"])
    assert code == 0, stderr
    return out


def _parts(out: Path) -> list[Path]:
    return sorted(out.glob("*/*/part-*.parquet"))


def _docs(out: Path) -> dict[tuple[str, int], dict]:
    return {(r["cc_segment"], r["record_offset"]): r for p in _parts(out) for r in pq.read_table(p).to_pylist()}


def test_languages_each_in_their_own_directory_with_the_ccnet_columns(corpus):
    out, _ = corpus
    languages = sorted(p.name for p in out.iterdir() if p.is_dir() and p.name != ".cc100")
    assert len(languages) >= 20 and set(LANGS_WITH_MODEL) <= set(languages)
    for part in _parts(out):
        lang, bucket = part.parent.parent.name, part.parent.name
        table = pq.read_table(part)
        assert set(COLUMNS) <= set(table.column_names)
        assert set(table.column("language").to_pylist()) == {lang}
        assert set(table.column("bucket").to_pylist()) == {bucket}
        scores = table.column("language_score").to_pylist()
        assert all(0.5 <= s <= 1.0 for s in scores)  # the default --lang-threshold 0.5
        if lang in LANGS_WITH_MODEL:
            assert bucket in ("head", "middle", "tail")
            assert all(p is not None and p > 0 for p in table.column("perplexity").to_pylist())
        else:
            assert bucket == "all" and table.column("perplexity").null_count == table.num_rows
    for lang in LANGS_WITH_MODEL:
        assert sorted(p.name for p in (out / lang).iterdir()) == ["head", "middle", "tail"]


def test_the_tree_reads_with_pyarrow_dataset_duckdb_and_pandas(corpus):
    import duckdb
    import pandas as pd

    out, _ = corpus
    stats = json.loads((out / ".cc100" / "stats.json").read_text())
    n = stats["counters"]["documents_out"]
    dataset = ds.dataset(str(out), format="parquet", exclude_invalid_files=True)  # skips the card README.md
    table = dataset.to_table(columns=list(COLUMNS))
    assert table.num_rows == n > 300
    counted = {f"{r['language']}/{r['bucket']}": r["count"]
               for r in table.group_by(["language", "bucket"]).aggregate([("language", "count")])
               .rename_columns(["language", "bucket", "count"]).to_pylist()}
    assert counted == {k: v["documents"] for k, v in stats["partitions"].items()}
    rows = duckdb.sql(f"select language, bucket, count(*) from read_parquet('{out}/*/*/*.parquet') group by all").fetchall()
    assert {f"{lang}/{bucket}": c for lang, bucket, c in rows} == counted
    en = pd.read_parquet(out / "en")  # one language's directory, every bucket
    assert len(en) == stats["languages"]["documents_by_language"]["en"]["total"]
    assert set(en["bucket"]) == {"head", "middle", "tail"}


def test_buckets_are_30_30_40_by_the_cutoffs_computed_from_the_data(corpus):
    out, _ = corpus
    table = read_cutoffs(str(out / ".cc100" / "cutoffs.csv"))
    assert sorted(table) == list(LANGS_WITH_MODEL)
    docs = _docs(out)
    for lang in LANGS_WITH_MODEL:
        head, tail = table[lang][30], table[lang][60]
        mine = [d for d in docs.values() if d["language"] == lang]
        for d in mine:
            expected = "head" if d["perplexity"] < head else "middle" if d["perplexity"] < tail else "tail"
            assert d["bucket"] == expected
        pps = sorted(d["perplexity"] for d in mine)
        assert table[lang][0] == pps[0]  # the table is this run's own distribution
    en = [d["bucket"] for d in docs.values() if d["language"] == "en"]
    n = len(en)
    assert n >= 100  # enough documents for the proportions to mean something
    for bucket, share in (("head", 0.3), ("middle", 0.3), ("tail", 0.4)):
        assert abs(en.count(bucket) / n - share) <= 0.03, (bucket, en.count(bucket), n)


def test_stats_count_documents_per_language_and_bucket_and_every_drop(corpus):
    out, stdout = corpus
    stats = json.loads((out / ".cc100" / "stats.json").read_text())
    langs = stats["languages"]
    by_language = langs["documents_by_language"]
    for name, p in stats["partitions"].items():
        lang, bucket = name.split("/")
        assert by_language[lang][bucket] == p["documents"]
    c = stats["counters"]
    assert sum(v["total"] for v in by_language.values()) == c["documents_out"]
    assert langs["dropped_lang_threshold"] > 0  # real web text has low-confidence pages
    assert c["lid_documents_in"] == c["documents_after_dedup"]
    assert c["lid_documents_in"] == c["lid_documents_out"] + langs["dropped_lang_threshold"] + langs["dropped_lang_empty"]
    assert langs["dropped_language_filter"] == 0  # no --langs
    no_model = sum(v["total"] for k, v in by_language.items() if k not in LANGS_WITH_MODEL)
    assert langs["documents_without_model"] == no_model > 0
    assert langs["documents_without_model_by_language"]["de"] == by_language["de"]["all"]
    assert langs["perplexity_scored"] == sum(by_language[k]["total"] for k in LANGS_WITH_MODEL)
    assert "below the LID threshold" in stdout and f"{no_model} documents without a language model" in stdout
    en = by_language["en"]  # the printed table: language, head, middle, tail, all, total
    assert f"{'en':<10}{en['head']:>9}{en['middle']:>9}{en['tail']:>9}{0:>9}{en['total']:>9}" in stdout.splitlines()
    assert not (out.parent / "corpus.work").exists()


def test_cutoffs_fed_back_reproduce_the_buckets_and_langs_restricts(corpus, corpus_from_cutoffs):
    first, _ = corpus
    second = corpus_from_cutoffs
    assert sorted(p.name for p in second.iterdir() if p.is_dir() and p.name != ".cc100") == ["en", "es", "fr"]
    before, after = _docs(first), _docs(second)
    assert after and set(after) == {k for k, d in before.items() if d["language"] in ("en", "es", "fr")}
    for key, d in after.items():
        assert (d["bucket"], d["perplexity"], d["language"]) == (before[key]["bucket"], before[key]["perplexity"], before[key]["language"])
    assert (second / ".cc100" / "cutoffs.csv").read_text() == (first / ".cc100" / "cutoffs.csv").read_text()  # the table used
    s1 = json.loads((first / ".cc100" / "stats.json").read_text())["languages"]
    s2 = json.loads((second / ".cc100" / "stats.json").read_text())["languages"]
    kept = sum(s1["documents_by_language"][k]["total"] for k in ("en", "es", "fr"))
    assert s2["dropped_language_filter"] == s1["dropped_language_filter"] + (
        sum(v["total"] for v in s1["documents_by_language"].values()) - kept)
    assert s2["documents_without_model"] == 0 and s2["dropped_lang_threshold"] == s1["dropped_lang_threshold"]


def _broken_lm_dir(lm_dir: Path, root: Path, damage: str) -> tuple[Path, Path]:
    """A copy of the LM directory with one file damaged; returns (dir, the damaged file)."""
    copy = root / f"lm-{damage}"
    shutil.copytree(lm_dir, copy)
    if damage == "missing_kenlm":
        target = copy / "es.arpa.bin"
        target.unlink()
    elif damage == "corrupt_kenlm":
        target = copy / "fr.arpa.bin"
        target.write_bytes(target.read_bytes()[: 4096])
    elif damage == "corrupt_sentencepiece":
        target = copy / "it.sp.model"
        target.write_bytes(b"not a sentencepiece model at all\n" * 10)
    else:
        raise ValueError(damage)
    return copy, target


@pytest.mark.parametrize("damage", ["missing_lid", "corrupt_lid", "missing_kenlm", "corrupt_kenlm", "corrupt_sentencepiece"])
def test_bad_model_files_are_named_before_the_pipeline_starts(lm_dir, samples, tmp_path, damage):
    models = ["--lm-dir", str(lm_dir)]
    if damage == "missing_lid":
        bad = tmp_path / "nowhere" / "lid.176.bin"
        models += ["--lid-model", str(bad)]
    elif damage == "corrupt_lid":
        bad = tmp_path / "lid.176.ftz"
        data = Path(default_lid_model()).read_bytes()
        bad.write_bytes(data[: len(data) // 3])  # a cut download
        models += ["--lid-model", str(bad)]
    else:
        broken, bad = _broken_lm_dir(lm_dir, tmp_path, damage)
        models = ["--lm-dir", str(broken)]
    out = tmp_path / "out"
    code, stdout, stderr = _run(["corpus", "--input", samples, "--output", str(out), *models])
    assert code == 2
    assert len(stderr.strip().splitlines()) == 1 and str(bad) in stderr and "Traceback" not in stderr
    assert stderr.startswith("cc100 corpus: ")
    assert not out.exists() and not (tmp_path / "out.work").exists() and not list(tmp_path.glob("out.tmp-*"))
    assert stdout == ""


def test_langs_needs_models_for_every_listed_language_when_an_lm_dir_is_given(lm_dir, samples, tmp_path):
    code, _, stderr = _run(["corpus", "--input", samples, "--output", str(tmp_path / "out"),
                            "--lm-dir", str(lm_dir), "--langs", "en,de"])
    assert code == 2 and str(lm_dir / "de.sp.model") in stderr
    assert not (tmp_path / "out").exists()
