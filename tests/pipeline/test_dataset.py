"""The corpus output as a dataset: metadata in .cc100/, the dataset card, the output schema,
and every Parquet reader users have (pandas, pyarrow, polars, duckdb, Hugging Face `datasets`)
on a real demo-sized run (the bundled demo input, KenLM models, `cc100 corpus`)."""

from __future__ import annotations

import hashlib
import json
import os
from datetime import datetime, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from pipeline import contracts, demo

from pipeline.writers import parquet as io
from pipeline.writers.card import configs, feature_type, render_card, size_category
from pipeline.schema import COLUMN_DOCS, OUTPUT_SCHEMA, Document, document_id, output_table, parse_date


def _doc(i: int, text: str = "x" * 10, **changes) -> Document:
    return Document(url=f"https://e.example/{i}", date_download="2019-07-17T12:15:59Z", digest=f"sha1:{i}",
                    source_domain="e.example", title="t", raw_content=text, length=len(text), nlines=1,
                    cc_segment="seg", record_offset=i, language="en", bucket="head").replace(**changes)


# -- contracts ---------------------------------------------------------------------------------


def test_find_meta_prefers_the_metadata_dir_and_still_reads_the_old_layout(tmp_path, capsys):
    assert contracts.find_meta(tmp_path, contracts.STATS_FILE) is None
    (tmp_path / "stats.json").write_text("{}")
    assert contracts.find_meta(tmp_path, contracts.STATS_FILE) == f"{tmp_path}/stats.json"
    assert "deprecated" in capsys.readouterr().err
    (tmp_path / ".cc100").mkdir()
    (tmp_path / ".cc100" / "stats.json").write_text("{}")
    assert contracts.find_meta(tmp_path, contracts.STATS_FILE) == f"{tmp_path}/.cc100/stats.json"
    assert contracts.meta_path("gs://b/corpus/", "cutoffs.csv") == "gs://b/corpus/.cc100/cutoffs.csv"


# -- schema ------------------------------------------------------------------------------------


def test_output_table_has_a_stable_id_and_a_timestamp_date():
    docs = [_doc(0), _doc(1, date_download="2019-07-17T12:15:59.250Z"), _doc(2, date_download="junk"),
            _doc(3, date_download="")]
    table, bad = output_table(docs)
    assert table.schema == OUTPUT_SCHEMA and bad == 1  # "" is absent, not unparsable
    assert table.schema.field("date_download").type == pa.timestamp("us", tz="UTC")
    dates = table.column("date_download").to_pylist()
    assert dates[0] == datetime(2019, 7, 17, 12, 15, 59, tzinfo=timezone.utc)
    assert dates[1].microsecond == 250_000 and dates[2] is None and dates[3] is None
    ids = table.column("id").to_pylist()
    assert ids[0] == hashlib.sha1(b"https://e.example/0\nsha1:0").hexdigest() == document_id(docs[0].url, "sha1:0")
    assert len(set(ids)) == 4 and output_table(docs)[0].column("id").to_pylist() == ids  # stable
    assert parse_date("2019-07-17T14:15:59+02:00") == dates[0]
    assert set(COLUMN_DOCS) == set(OUTPUT_SCHEMA.names)


def test_row_groups_are_bounded_by_rows_and_characters(tmp_path, monkeypatch):
    docs = [_doc(i, "y" * (500 if i == 7 else 10)) for i in range(25)]
    groups = io.row_groups(docs, max_rows=10, max_chars=100)
    assert [len(g) for g in groups] == [7, 1, 10, 7]  # 7 small ones fit, doc 7 alone (500 chars)
    assert [d for g in groups for d in g] == docs
    monkeypatch.setattr(io, "ROW_GROUP_ROWS", 4)
    path = tmp_path / "part.parquet"
    rows, bad = io.write_parquet(str(path), docs[::-1], io.parquet_schema({"stage": "corpus"}))
    meta = pq.ParquetFile(path).metadata
    assert (rows, bad, meta.num_rows, meta.num_row_groups) == (25, 0, 25, 7)
    assert pq.read_table(path).column("record_offset").to_pylist() == list(range(25))  # sorted


# -- the dataset card --------------------------------------------------------------------------


def _card_header(text: str) -> dict:
    assert text.startswith("---\n")
    return yaml.safe_load(text.split("\n---\n", 1)[0][4:])


def test_card_header_has_one_config_per_language_and_bucket_and_the_features():
    stats = {"partitions": {"en/head": {"documents": 3, "files": 1, "bytes": 10},
                            "en/tail": {"documents": 2, "files": 1, "bytes": 10},
                            "it/all": {"documents": 1500, "files": 2, "bytes": 10}},
             "inputs": {"snapshot": "CC-MAIN-2019-30", "segments": "0-9", "files": ["a"]},
             "config": {"min_len": 300, "dedup": "ccnet", "lang_threshold": 0.5}}
    text = render_card(stats)
    header = _card_header(text)
    names = [c["config_name"] for c in header["configs"]]
    assert names == ["default", "en", "en_head", "en_tail", "it", "it_all"]
    paths = {c["config_name"]: c["data_files"][0]["path"] for c in header["configs"]}
    assert paths["default"] == "*/*/*.parquet" and paths["en_head"] == "en/head/*.parquet"
    assert header["configs"][0]["default"] is True
    assert header["language"] == ["en", "it"] and header["size_categories"] == ["1K<n<10K"]
    assert header["license"] == "other" and "commoncrawl.org" in header["license_link"]
    features = {f["name"]: f for f in header["dataset_info"]["features"]}
    assert list(features) == OUTPUT_SCHEMA.names
    assert features["date_download"]["dtype"] == "timestamp[us, tz=UTC]" and features["line_ids"]["list"] == "int32"
    assert "CC-MAIN-2019-30" in text and "| en | 3 | 2 |  | 5 |" in text  # counts table
    for name in OUTPUT_SCHEMA.names:
        assert f"| `{name}` |" in text  # every column documented
    assert size_category(999) == "n<1K" and size_category(10**13) == "n>1T"
    assert feature_type(pa.list_(pa.float32())) == {"list": "float32"}
    assert configs({})[0]["name"] == "default"


# -- a real run, read by every reader ----------------------------------------------------------


@pytest.fixture(scope="module")
def demo_corpus(tmp_path_factory, kenlm_tools) -> Path:
    """`make demo`'s corpus step: the bundled demo input, its KenLM models, `cc100 corpus`."""
    from pipeline.quality.lm import main as lm
    from pipeline.corpus import main as corpus

    root = tmp_path_factory.mktemp("dataset")
    assert demo.main(["--output", str(root / "input")]) == 0
    assert lm(["--reference", str(root / "input" / "reference"), "--output", str(root / "lm")]) == 0
    out = root / "corpus"
    assert corpus(["--input", str(root / "input" / "wet" / "*.warc.wet.gz"), "--output", str(out),
                   "--lm-dir", str(root / "lm")]) == 0
    return out


def _stats(out: Path) -> dict:
    return json.loads((out / ".cc100" / "stats.json").read_text())


@pytest.mark.slow
def test_the_run_writes_a_card_and_keeps_metadata_out_of_the_readers_way(demo_corpus):
    out = demo_corpus
    assert sorted(p.name for p in out.iterdir() if not p.is_dir()) == ["README.md"]
    header = _card_header((out / "README.md").read_text())
    partitions = _stats(out)["partitions"]
    expected = {"default"} | {k.split("/")[0] for k in partitions} | {k.replace("/", "_") for k in partitions}
    assert {c["config_name"] for c in header["configs"]} == expected
    for part in out.glob("*/*/part-*.parquet"):
        f = pq.ParquetFile(part)
        assert f.schema_arrow.field("date_download").type == pa.timestamp("us", tz="UTC")
    ids = [i for p in out.glob("*/*/part-*.parquet") for i in pq.read_table(p, columns=["id"]).column("id").to_pylist()]
    assert len(ids) == len(set(ids)) == _stats(out)["counters"]["documents_out"]


@pytest.mark.slow
def test_every_reader_reads_the_whole_corpus_and_the_english_head_bucket(demo_corpus, monkeypatch):
    """The calls README "The corpus as a dataset" documents, one per reader."""
    import duckdb
    import pandas as pd
    import polars as pl
    import pyarrow.dataset as ds

    datasets = pytest.importorskip("datasets")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(demo_corpus.parent / "hf-home"))  # nothing from ~/.cache
    out = str(demo_corpus)
    stats = _stats(demo_corpus)
    total = stats["counters"]["documents_out"]
    en_head = stats["partitions"]["en/head"]["documents"]
    assert total > 200 and en_head > 10

    # Hugging Face datasets: the directory, the parquet builder, a config of the card
    assert datasets.load_dataset(out, split="train").num_rows == total
    assert datasets.load_dataset("parquet", data_dir=out, split="train").num_rows == total
    head = datasets.load_dataset(out, "en_head", split="train")
    assert head.num_rows == en_head and set(head["language"]) == {"en"} and set(head["bucket"]) == {"head"}
    assert datasets.load_dataset(out, "en", split="train").num_rows == sum(
        v["documents"] for k, v in stats["partitions"].items() if k.startswith("en/"))

    # pyarrow, pandas, polars: one bucket is a directory of Parquet files only
    en_head_dir = os.path.join(out, "en", "head")
    assert ds.dataset(en_head_dir).count_rows() == en_head
    assert len(pd.read_parquet(en_head_dir)) == en_head
    assert pl.scan_parquet(en_head_dir).select(pl.len()).collect().item() == en_head
    # the whole corpus: a glob (polars, duckdb) or the files (pyarrow, pandas) -- the card
    # README.md at the top is not Parquet, and these readers do not skip it by name
    parts = sorted(str(p) for p in demo_corpus.glob(contracts.PART_GLOB))
    assert ds.dataset(parts).count_rows() == total
    assert ds.dataset(out, exclude_invalid_files=True).count_rows() == total
    assert len(pd.read_parquet(parts)) == total
    assert pl.scan_parquet(f"{out}/*/*/*.parquet").select(pl.len()).collect().item() == total
    assert duckdb.sql(f"select count(*) from read_parquet('{out}/*/*/*.parquet')").fetchall() == [(total,)]
    assert duckdb.sql(f"select count(*) from read_parquet('{out}/en/head/*.parquet')").fetchall() == [(en_head,)]
    frame = pd.read_parquet(en_head_dir)
    assert str(frame["date_download"].dtype).startswith("datetime64") and frame["id"].is_unique
