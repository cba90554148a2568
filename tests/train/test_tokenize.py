"""`cc100 tokenize`: real reference text -> Parquet corpus -> token shards.

Also home of `build_world`, the small real-text world (corpus, vocabulary, shards) that the
trainer and DDP tests reuse: six languages of UD sentences grouped into documents.
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.schema import PARQUET_SCHEMA, Document
from train.shards import MANIFEST, TokenStream, load_manifest
from train.tokenize import encode_documents, is_valid_doc
from train.tokenize import main as tokenize_main

# language -> sentences taken from reference/{lang}.txt (az is small on purpose: alpha upsampling)
WORLD_LANGS = {"en": 800, "fr": 600, "de": 600, "ru": 400, "zh": 400, "az": 140}
DOC_LINES = 8
VALID_FRACTION = 0.05


def documents(reference: Path, lang: str, n: int, skip: int = 0) -> list[list[str]]:
    lines = reference.joinpath(f"{lang}.txt").read_text(encoding="utf-8").splitlines()[skip:skip + n]
    return [lines[i:i + DOC_LINES] for i in range(0, len(lines), DOC_LINES)]


def write_parquet(path: Path, lang: str, bucket: str, docs: list[list[str]]) -> None:
    rows = []
    for i, d in enumerate(docs):
        text = "\n".join(d)
        rows.append(Document(url=f"https://{lang}.example/{path.stem}/{i}", date_download="2019-07-17T00:00:00Z",
                             digest=f"sha1:{i}", source_domain=f"{lang}.example", title="", raw_content=text,
                             length=len(text), nlines=len(d), cc_segment="test", record_offset=i,
                             language=lang, bucket=bucket).to_row())
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=PARQUET_SCHEMA), path)


def write_corpus(reference: Path, corpus: Path) -> dict[str, list[tuple[str, list[list[str]]]]]:
    """CORPUS/{lang}/head/part-0000{0,1}.parquet (+ en/tail); returns lang -> [(file, docs)]."""
    files: dict[str, list] = {}
    for lang, n in WORLD_LANGS.items():
        docs = documents(reference, lang, n)
        half = len(docs) // 2
        for part, chunk in enumerate((docs[:half], docs[half:])):
            path = corpus / lang / "head" / f"part-{part:05d}.parquet"
            write_parquet(path, lang, "head", chunk)
            files.setdefault(lang, []).append((str(path), chunk))
    tail = documents(reference, "en", 80, skip=WORLD_LANGS["en"])
    write_parquet(corpus / "en" / "tail" / "part-00000.parquet", "en", "tail", tail)
    files["en"].append((str(corpus / "en" / "tail" / "part-00000.parquet"), tail))
    return files


def train_vocab(reference: Path, out_dir: Path, vocab_size: int = 2000) -> Path:
    """A small SentencePiece model in XLM-R's id layout (unk 0, s 1, /s 2, no pad), byte fallback."""
    import sentencepiece as spm

    text = [line for lang, n in WORLD_LANGS.items()
            for line in reference.joinpath(f"{lang}.txt").read_text(encoding="utf-8").splitlines()[:n]]
    out_dir.mkdir(parents=True, exist_ok=True)
    spm.set_random_generator_seed(1)
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(text), model_prefix=str(out_dir / "sentencepiece.bpe"), model_type="unigram",
        vocab_size=vocab_size, character_coverage=0.995, byte_fallback=True, unk_id=0, bos_id=1, eos_id=2,
        pad_id=-1, minloglevel=2, num_threads=1)
    return out_dir / "sentencepiece.bpe.model"


def other_vocab(world) -> Path:
    """A second, smaller vocabulary (for mismatch tests), trained once per session."""
    out = world.root / "vocab-1500"
    if not (out / "sentencepiece.bpe.model").exists():
        train_vocab(world.reference, out, vocab_size=1500)
    return out


def run_tokenize(*argv) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = tokenize_main([str(a) for a in argv])
    return rc, out.getvalue(), err.getvalue()


def build_world(tmp_path_factory, shared_data: Path) -> SimpleNamespace:
    """Corpus + vocabulary + shards, built once per test session and shared by the test modules."""
    root = tmp_path_factory.getbasetemp() / "h5-world"
    reference = shared_data / "reference"
    world = SimpleNamespace(root=root, corpus=root / "corpus", vocab=root / "vocab", shards=root / "shards",
                            reference=reference)
    if not (root / "ready").exists():
        shutil.rmtree(root, ignore_errors=True)
        world.files = write_corpus(reference, world.corpus)
        train_vocab(reference, world.vocab)
        rc, out, err = run_tokenize("--corpus", world.corpus, "--vocab", world.vocab, "--output", world.shards,
                                    "--workers", 1, "--valid-fraction", VALID_FRACTION)
        assert rc == 0, err
        (root / "files.json").write_text(json.dumps(world.files))
        (root / "ready").touch()
    world.files = json.loads((root / "files.json").read_text())
    return world


@pytest.fixture(scope="module")
def world(tmp_path_factory, shared_data):
    return build_world(tmp_path_factory, shared_data)


@pytest.fixture(scope="module")
def tok(world):
    from train.tokenizer import XLMRTokenizer

    return XLMRTokenizer(world.vocab / "sentencepiece.bpe.model")


def shard_documents(shards: Path, lang: str, split: str) -> list[list[int]]:
    m = load_manifest(shards)
    info = m.languages[lang][split]
    return [d.tolist() for d in TokenStream(info.files, m.dtype).documents()]


# -- pure pieces --------------------------------------------------------------------------------

def test_encode_documents_ends_every_paragraph_with_eos(tok):
    """fairseq binarises one line per paragraph, each ending with </s> (blank lines dropped)."""
    docs = encode_documents(tok, ["Hello world.\n\nSecond paragraph.", "", None, " \n\t"])
    assert docs[0] == (tok.encode("Hello world.") + [tok.eos_id]
                       + tok.encode("Second paragraph.") + [tok.eos_id])
    assert docs[1:] == [None, None, None], "empty documents are skipped, not written"


def test_valid_split_is_a_stable_fraction():
    texts = [f"document number {i}" for i in range(20000)]
    share = np.mean([is_valid_doc(t, 0.05) for t in texts])
    assert share == pytest.approx(0.05, abs=0.006)
    assert [is_valid_doc(t, 0.05) for t in texts[:500]] == [is_valid_doc(t, 0.05) for t in texts[:500]]
    assert not any(is_valid_doc(t, 0.0) for t in texts[:500])


# -- the command ----------------------------------------------------------------------------------

def test_shards_hold_every_document_exactly(world, tok):
    m = load_manifest(world.shards)
    assert sorted(m.languages) == sorted(WORLD_LANGS)
    assert m.vocab_size == tok.vocab_size and m.dtype == np.uint16
    assert m.special_ids == {"bos": 0, "pad": 1, "eos": 2, "unk": 3, "mask": tok.mask_id}
    n_valid = 0
    for lang, files in world.files.items():
        # manifest order is by part name: head.part-00000, head.part-00001, tail.part-00000
        expected = {"train": [], "valid": []}
        for _, docs in sorted(files, key=lambda f: (Path(f[0]).parent.name, Path(f[0]).name)):
            for d in docs:
                text = "\n".join(d)
                ids = [t for p in d for t in tok.encode(p) + [tok.eos_id]]
                expected["valid" if is_valid_doc(text, VALID_FRACTION) else "train"].append(ids)
        for split in ("train", "valid"):
            got = shard_documents(world.shards, lang, split)
            assert got == expected[split], f"{lang}/{split}"
            info = m.languages[lang][split]
            assert info.tokens == sum(map(len, got)) and info.docs == len(got)
            # </s> ends every paragraph (the index keeps the documents)
            assert sum(d.count(tok.eos_id) for d in got) == sum(
                len([p for p in docs if p.strip()]) for _, ds in files for docs in ds
                if ("valid" if is_valid_doc("\n".join(docs), VALID_FRACTION) else "train") == split)
            assert all(d[-1] == tok.eos_id for d in got)
        n_valid += len(expected["valid"])
    assert n_valid > 0, "some documents are held out"


def test_parallel_workers_write_identical_shards(world, tmp_path):
    rc, out, err = run_tokenize("--corpus", world.corpus, "--vocab", world.vocab, "--output", tmp_path,
                                "--workers", 2, "--valid-fraction", VALID_FRACTION)
    assert rc == 0, err
    assert "2 workers" in out
    ours = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*.bin"))
    theirs = sorted(p.relative_to(world.shards) for p in world.shards.rglob("*.bin"))
    assert ours == theirs and len(ours) == 2 * 13
    for rel in ours:
        assert (tmp_path / rel).read_bytes() == (world.shards / rel).read_bytes(), rel
    a = json.loads((tmp_path / MANIFEST).read_text())
    b = json.loads((world.shards / MANIFEST).read_text())
    assert a["languages"] == b["languages"] and a["vocab"] == b["vocab"]


def test_rerun_resumes_per_input_file(world, tmp_path):
    out_dir = tmp_path / "shards"
    shutil.copytree(world.shards, out_dir)
    before = {p: p.stat().st_mtime_ns for p in out_dir.rglob("*.bin")}
    rc, out, _ = run_tokenize("--corpus", world.corpus, "--vocab", world.vocab, "--output", out_dir,
                              "--workers", 1, "--valid-fraction", VALID_FRACTION, "--force")
    assert rc == 0 and "13 files (13 already done)" in out
    assert {p: p.stat().st_mtime_ns for p in out_dir.rglob("*.bin")} == before, "done files are not rewritten"
    # a part interrupted before its commit marker is redone, and only that one
    (out_dir / "fr" / "head.part-00001.done.json").unlink()
    (out_dir / "fr" / "head.part-00001.train.bin").write_bytes(b"partial")
    rc, out, _ = run_tokenize("--corpus", world.corpus, "--vocab", world.vocab, "--output", out_dir,
                              "--workers", 1, "--valid-fraction", VALID_FRACTION, "--force")
    assert rc == 0 and "13 files (12 already done)" in out and "[1/1] fr/head/part-00001.parquet" in out
    assert shard_documents(out_dir, "fr", "train") == shard_documents(world.shards, "fr", "train")
    load_manifest(out_dir)  # sizes check out again


def test_a_second_identical_run_is_up_to_date_and_touches_nothing(world, tmp_path):
    """Up to date (pipeline/contracts.py): same settings, same corpus and vocabulary records.
    (With --force the run goes on, reusing the finished parts, as in the test above.)"""
    from pipeline.contracts import mark_complete, out_of_date
    from tests.uptodate import assert_up_to_date, tree_state
    from train.tokenize import completion

    out_dir = tmp_path / "shards"
    shutil.copytree(world.shards, out_dir)
    before = tree_state(out_dir)
    rc, out, _ = run_tokenize("--corpus", world.corpus, "--vocab", world.vocab, "--output", out_dir,
                              "--workers", 2, "--valid-fraction", VALID_FRACTION)
    assert_up_to_date("tokenize", out_dir, rc, out, before)
    changed = completion(world.corpus, world.vocab, valid_fraction=0.5)
    assert out_of_date(out_dir, "tokenize", *changed) == f"config valid_fraction: {VALID_FRACTION} -> 0.5"
    vocab = tmp_path / "vocab"  # a rebuilt vocabulary: its completion record changed
    shutil.copytree(world.vocab, vocab)
    mark_complete(vocab, "vocab", {"vocab_size": 1999}, {})
    assert out_of_date(out_dir, "tokenize", *completion(world.corpus, vocab, valid_fraction=VALID_FRACTION)) \
        == "input vocab changed"


def test_shards_of_the_old_format_are_refused_then_redone(world, tmp_path):
    """Format 1 glued a document's paragraphs with one </s>: training refuses it, saying what to
    do, and `cc100 tokenize` over the same --output redoes every old part."""
    from train.shards import ShardError

    out_dir = tmp_path / "shards"
    shutil.copytree(world.shards, out_dir)
    for path in [out_dir / MANIFEST, *out_dir.rglob("*.done.json")]:
        rec = json.loads(path.read_text())
        path.write_text(json.dumps({**rec, "version": 1}))
    with pytest.raises(ShardError, match=r"format version 1, .*re-run `cc100 tokenize`"):
        load_manifest(out_dir)
    rc, out, err = run_tokenize("--corpus", world.corpus, "--vocab", world.vocab, "--output", out_dir,
                                "--workers", 1, "--valid-fraction", VALID_FRACTION)
    assert rc == 0, err
    assert "13 files (0 already done)" in out
    assert load_manifest(out_dir).raw["version"] == 2
    assert shard_documents(out_dir, "de", "train") == shard_documents(world.shards, "de", "train")


def test_bad_input_file_is_reported_and_blocks_the_manifest(world, tmp_path):
    corpus = tmp_path / "corpus"
    shutil.copytree(world.corpus, corpus)
    (corpus / "de" / "head" / "part-00007.parquet").write_bytes(b"not parquet at all")
    out_dir = tmp_path / "shards"
    rc, out, err = run_tokenize("--corpus", corpus, "--vocab", world.vocab, "--output", out_dir, "--workers", 1)
    assert rc == 1
    assert "FAILED de/head/part-00007.parquet" in out
    assert "1 of 14 files failed" in err and "no manifest written" in err
    assert not (out_dir / MANIFEST).exists()
    assert len(list(out_dir.rglob("*.done.json"))) == 13, "the good files are kept for the rerun"
    (corpus / "de" / "head" / "part-00007.parquet").unlink()
    rc, out, _ = run_tokenize("--corpus", corpus, "--vocab", world.vocab, "--output", out_dir, "--workers", 1)
    assert rc == 0 and "13 files (13 already done)" in out
    assert (out_dir / MANIFEST).exists()


def test_bucket_and_language_selection(world, tmp_path):
    rc, _, err = run_tokenize("--corpus", world.corpus, "--vocab", world.vocab, "--output", tmp_path,
                              "--workers", 1, "--buckets", "head", "--langs", "en,az",
                              "--valid-fraction", 0)
    assert rc == 0, err
    m = load_manifest(tmp_path)
    assert sorted(m.languages) == ["az", "en"]
    head_docs = sum(len(docs) for path, docs in world.files["en"] if "/head/" in path)
    assert m.languages["en"]["train"].docs == head_docs and m.languages["en"]["valid"].docs == 0


def test_metadata_and_hidden_directories_are_not_corpus_files(tmp_path):
    """OUTPUT/.cc100/ (run metadata, the report) and _-prefixed names are never read as data,
    even when a Parquet file sits there; the readers of train/ agree on it."""
    from train.corpus_reader import list_languages
    from train.tokenize import discover

    docs = [["a b c"], ["d e f"]]
    write_parquet(tmp_path / "en" / "head" / "part-00000.parquet", "en", "head", docs)
    write_parquet(tmp_path / ".cc100" / "report" / "x.parquet", "xx", "report", docs)
    write_parquet(tmp_path / "_staging" / "head" / "part-00000.parquet", "yy", "head", docs)
    write_parquet(tmp_path / "en" / "head" / "_part.parquet", "en", "head", docs)
    assert [(j["language"], j["bucket"]) for j in discover(tmp_path, None, None)] == [("en", "head")]
    assert list_languages(tmp_path) == {"en": {"head": [tmp_path / "en" / "head" / "part-00000.parquet"]}}


def test_clear_errors(world, tmp_path):
    rc, _, err = run_tokenize("--corpus", world.corpus, "--vocab", tmp_path, "--output", tmp_path / "s")
    assert rc == 2 and "no sentencepiece.bpe.model" in err
    rc, _, err = run_tokenize("--corpus", tmp_path, "--vocab", world.vocab, "--output", tmp_path / "s")
    assert rc == 2 and "no {lang}/{bucket}/*.parquet files" in err
    rc, _, err = run_tokenize("--corpus", tmp_path / "nope", "--vocab", world.vocab, "--output", tmp_path / "s")
    assert rc == 2 and "not a directory" in err
    # shards made with another vocabulary are not silently mixed with new ones
    other = other_vocab(world)
    out_dir = tmp_path / "mixed"
    shutil.copytree(world.shards, out_dir)
    rc, _, err = run_tokenize("--corpus", world.corpus, "--vocab", other, "--output", out_dir)
    assert rc == 2 and "different vocabulary" in err
    # a directory tokenize did not write is not written into (nor its manifest.json removed)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / MANIFEST).write_text("someone else's")
    rc, _, err = run_tokenize("--corpus", world.corpus, "--vocab", world.vocab, "--output", foreign)
    assert rc == 2 and err.count("\n") == 1
    assert err.startswith(f"cc100 tokenize: error: --output {foreign}: not empty and has no .cc100/stage.json")
    assert sorted(p.name for p in foreign.iterdir()) == [MANIFEST] and (foreign / MANIFEST).read_text() == "someone else's"
