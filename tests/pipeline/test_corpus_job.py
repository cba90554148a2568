"""The whole `cc100 corpus` job, in-process: real WET samples plus two hand-made files.

Three pipeline runs (module fixtures): ccnet with 1 worker, ccnet with 2 workers (both with at
most 50 documents per Parquet file, so the larger languages are split), and keep-first in groups of 2 files
written over a copy of the first output with --overwrite. These runs are about dedup, so they use
--lang-threshold 0: language identification labels every document and drops none, and the union
of all {language}/{bucket}/ partitions is exactly what dedup kept.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from pipeline.contracts import part_files
from pipeline.writers.parquet import PARQUET_METADATA_KEY
from pipeline.corpus import main
from pipeline.schema import OUTPUT_SCHEMA
from pipeline.readers.wet import WetFileReport, read_wet_file
from tests.pipeline.corpus_helpers import page, reference_dedup, write_wet

pytestmark = pytest.mark.slow

# A long boilerplate paragraph found in two files (one document each, and alone in a third).
P = "Subscribe to our newsletter and never miss an offer:" + " deals, coupons and discounts every week!" * 7
R = "This sentence is repeated inside one document only, and nowhere else in the corpus."
X = page("Crafted X", "The first unique paragraph of document X talks about rivers and mountains in spring.",
         R, P, "The second unique paragraph of document X is about a small village near the sea.", R,
         "A third unique paragraph of X closes the page with thanks to the reader for reading.")
Y = page("Crafted Y", "Document Y opens with a unique paragraph about trains, stations and old timetables.",
         P, "Document Y closes with its own paragraph, on bicycles and quiet country roads.",
         "Another line of Y that exists only here, about baking bread early in the morning.")
Z = page("Crafted Z", P)


def _crafted(root: Path) -> Path:
    d = root / "crafted"
    d.mkdir()
    write_wet(d / "c1.warc.wet.gz", [("http://crafted.example/x", X)])
    write_wet(d / "c2.warc.wet.gz", [("http://crafted.example/y", Y), ("http://crafted.example/z", Z)], gz=False)
    return d


def _run(argv: list[str]) -> None:
    assert main(argv) == 0


@pytest.fixture(scope="module")
def job(tmp_path_factory, shared_data):
    root = tmp_path_factory.mktemp("corpus_job")
    crafted = _crafted(root)
    inputs = ["--input", str(crafted / "*"), "--input", str(shared_data / "wet" / "CC-MAIN-2019-30-sample-*.warc.wet.gz"),
              "--input", str(shared_data / "wet" / "cc_whirlwind_whirlwind.warc.wet.gz"), "--docs-per-file", "50",
              "--lang-threshold", "0"]
    _run([*inputs, "--output", str(root / "w1")])
    return root, inputs


@pytest.fixture(scope="module")
def job_two_workers(job):
    root, inputs = job
    _run([*inputs, "--output", str(root / "w2"), "--workers", "2"])
    return root / "w2"


@pytest.fixture(scope="module")
def job_keep_first(job, shared_data):
    root, _ = job
    target = root / "kf"
    shutil.copytree(root / "w1", target)
    (target / "en" / "all" / "stale-from-the-old-run.parquet").write_bytes(b"old")
    _run(["--input", str(root / "crafted" / "*"),
          "--input", str(shared_data / "wet" / "CC-MAIN-2019-30-sample-*.warc.wet.gz"),
          "--output", str(target), "--overwrite", "--dedup", "keep-first", "--dedup-group-size", "2",
          "--lang-threshold", "0"])
    return target


def _parts(out: Path) -> list[Path]:
    return part_files(out)


def _rows(out: Path) -> list[dict]:
    """Every document of every {language}/{bucket} partition."""
    rows = []
    for part in _parts(out):
        rows += pq.read_table(part).to_pylist()
    return rows


def _read_documents(files: list[str]) -> list[dict]:
    docs = []
    for f in files:
        docs += [d.to_row() for d in read_wet_file(f, 300, WetFileReport(f))]
    return docs


def _check_against_reference(out: Path, mode: str, group_size: int | None) -> dict:
    stats = json.loads((out / ".cc100" / "stats.json").read_text())
    files = stats["inputs"]["files"]
    group_of = (lambda d: files.index(d["cc_segment"]) // group_size) if group_size else (lambda d: 0)
    read = _read_documents(files)
    kept = reference_dedup(read, mode, group_of)
    rows = _rows(out)
    assert {(r["cc_segment"], r["record_offset"]): r["line_ids"] for r in rows} == kept
    originals = {(d["cc_segment"], d["record_offset"]): d for d in read}
    for r in rows:
        lines = originals[(r["cc_segment"], r["record_offset"])]["raw_content"].split("\n")
        assert r["raw_content"] == "\n".join(lines[i] for i in r["line_ids"])
        assert (r["nlines"], r["length"], r["original_nlines"]) == (len(r["line_ids"]), len(r["raw_content"]), len(lines))
    return stats


def test_layout_schema_metadata_and_stats(job):
    root, _ = job
    out = root / "w1"
    assert sorted(p.name for p in out.iterdir() if p.is_file()) == ["README.md"]  # the dataset card
    assert sorted(p.name for p in (out / ".cc100").iterdir()) == ["complete.json", "cutoffs.csv", "files.jsonl",
                                                                   "stage.json", "stats.json"]
    assert json.loads((out / ".cc100" / "stage.json").read_text()) == {"stage": "corpus", "format_version": 1}
    languages = sorted(p.name for p in out.iterdir() if p.is_dir() and not p.name.startswith("."))
    assert len(languages) > 20 and "en" in languages and "und" not in languages
    for lang in languages:  # no --lm-dir: no perplexity, every document in bucket "all"
        assert [p.name for p in (out / lang).iterdir()] == ["all"]
    by_partition: dict[str, list[Path]] = {}
    for part in _parts(out):
        by_partition.setdefault(part.parent.parent.name, []).append(part)
    for lang, parts in by_partition.items():  # ceil(documents / 50) files per partition
        n = len(parts)
        assert [p.name for p in parts] == [f"part-{i:05d}-of-{n:05d}.parquet" for i in range(n)]
        assert n == max(1, math.ceil(sum(pq.ParquetFile(p).metadata.num_rows for p in parts) / 50))
    assert len(by_partition["en"]) >= 2  # the largest language is split
    for part in _parts(out):
        f = pq.ParquetFile(part)
        assert f.schema_arrow.remove_metadata().equals(OUTPUT_SCHEMA)
        assert f.metadata.row_group(0).column(0).compression == "ZSTD"
        meta = json.loads(f.schema_arrow.metadata[PARQUET_METADATA_KEY])
        assert meta["config"]["dedup"] == "ccnet" and meta["config"]["min_len"] == 300
        table = pq.read_table(part).to_pylist()
        keys = [(r["cc_segment"], r["record_offset"]) for r in table]
        assert keys == sorted(keys) and 0 < len(keys) <= 75  # sorted rows; shards of similar size
        lang = part.parent.parent.name
        assert all(r["language"] == lang and r["bucket"] == "all" and r["perplexity"] is None for r in table)
        assert all(0.0 <= r["language_score"] <= 1.0 for r in table)
    rows = _rows(out)
    keys = [(r["cc_segment"], r["record_offset"]) for r in rows]
    assert len(set(keys)) == len(keys)  # each document in exactly one file

    stats = json.loads((out / ".cc100" / "stats.json").read_text())
    assert stats["output"] == str(out) and len(stats["inputs"]["files"]) == 5
    expected = {}
    for part in _parts(out):
        entry = expected.setdefault(f"{part.parent.parent.name}/all", {"documents": 0, "files": 0, "bytes": 0})
        entry["documents"] += pq.ParquetFile(part).metadata.num_rows
        entry["files"] += 1
        entry["bytes"] += part.stat().st_size
    assert stats["partitions"] == expected
    assert sum(p["documents"] for p in expected.values()) == len(rows)
    reports = [json.loads(line) for line in (out / ".cc100" / "files.jsonl").read_text().splitlines()]
    assert sorted(r["path"] for r in reports) == stats["inputs"]["files"]
    assert {r["source"] for r in reports} == {"file"} and stats["failed_segments"] == []
    assert not list(root.glob("w1.tmp-*"))  # staging renamed away
    assert not (root / "w1.work").exists()  # the segment spools are removed after a complete run


def test_ccnet_dedup_equals_cc_nets_algorithm_on_real_data(job):
    root, _ = job
    stats = _check_against_reference(root / "w1", "ccnet", None)
    assert stats["counters"]["duplicate_lines_removed"] > 1000  # real boilerplate was found


def test_paragraph_in_two_files_disappears_from_both_and_repeats_keep_first_copy(job):
    root, _ = job
    rows = {r["url"]: r for r in _rows(root / "w1")}
    assert not any(P in r["raw_content"].split("\n") for r in rows.values())
    x, y = rows["http://crafted.example/x"], rows["http://crafted.example/y"]
    x_lines = X.split("\n")[1:]
    assert x["raw_content"].split("\n").count(R) == 1
    assert x["line_ids"] == [0, 1, 3, 5]  # R kept at its first position (1), P (2) and the repeat (4) gone
    assert y["line_ids"] == [0, 2, 3] and P not in y["raw_content"].split("\n")
    assert x["original_nlines"] == len(x_lines) - 1  # the final newline does not make a line
    assert "http://crafted.example/z" not in rows  # P was all it had: emptied, dropped


def test_counters_add_up(job):
    root, _ = job
    stats = json.loads((root / "w1" / ".cc100" / "stats.json").read_text())
    c = stats["counters"]
    rows = _rows(root / "w1")
    assert c["files_read"] == 5
    assert c["records_read"] == c["conversion_records"] + c["non_conversion_records"]
    assert c["conversion_records"] == c["docs_too_short"] + c["documents_read"]
    assert c["documents_read"] == c["documents_after_dedup"] + c["documents_emptied"]
    assert c["lid_documents_in"] == c["documents_after_dedup"]  # --lang-threshold 0: LID drops nothing
    assert c.get("lid_dropped_threshold", 0) == 0 and c["lid_documents_out"] == c["lid_documents_in"]
    assert c["documents_out"] == c["documents_after_dedup"] == len(rows)
    assert c["lines_in"] - c["duplicate_lines_removed"] == sum(r["nlines"] for r in rows)
    assert c["documents_emptied"] >= 1 and c["docs_too_short"] > 0
    assert c["conversion_records"] == 340 + 340 + 1 + 3


def test_one_and_two_workers_give_identical_output(job, job_two_workers):
    root, _ = job
    one, two = _parts(root / "w1"), _parts(job_two_workers)
    assert [p.relative_to(root / "w1") for p in one] == [p.relative_to(job_two_workers) for p in two]
    for a, b in zip(one, two):  # same documents in the same file, in the same order
        assert pq.read_table(a).equals(pq.read_table(b)), a.name
    s1 = json.loads((root / "w1" / ".cc100" / "stats.json").read_text())
    s2 = json.loads((job_two_workers / ".cc100" / "stats.json").read_text())
    assert s1["counters"] == s2["counters"] and s1["counters"]["documents_out"] > 400
    assert s2["config"]["workers"] == 2


def test_keep_first_in_groups_over_an_overwritten_output(job_keep_first):
    out = job_keep_first
    assert not (out / "en" / "all" / "stale-from-the-old-run.parquet").exists()  # replaced whole
    stats = _check_against_reference(out, "keep-first", 2)
    assert stats["config"]["dedup"] == "keep-first" and stats["dedup_groups"] == 2
    rows = _rows(out)
    holders = [r["url"] for r in rows for line in r["raw_content"].split("\n") if line == P]
    assert holders == ["http://crafted.example/x"]  # exactly one copy: the first by (segment, record)
    meta = json.loads(pq.ParquetFile(_parts(out)[0]).schema_arrow.metadata[PARQUET_METADATA_KEY])
    assert meta["config"]["dedup"] == "keep-first" and meta["config"]["dedup_group_size"] == 2
