"""`cc100 corpus --near-dedup` end to end on the bundled demo, whose truth.json names the planted
near-copies (an article republished on another site with a few words changed)."""

from __future__ import annotations

import json

import pyarrow.dataset as ds
import pytest

from pipeline.demo import main as demo_main
from pipeline.corpus import main as corpus_main

pytestmark = pytest.mark.slow


def _urls(out) -> set[str]:
    table = ds.dataset(str(out), format="parquet", exclude_invalid_files=True).to_table(columns=["url"])
    return set(table.column("url").to_pylist())


def test_near_dedup_removes_exactly_one_of_each_planted_pair(tmp_path):
    assert demo_main(["--output", str(tmp_path / "demo")]) == 0
    truth = json.loads((tmp_path / "demo" / "truth.json").read_text())
    pairs = [(p["url"], p["source_url"]) for p in truth["pages"] if p["kind"] == "near_duplicate"]
    assert len(pairs) >= 5

    wet = str(tmp_path / "demo" / "wet" / "*.warc.wet.gz")
    common = ["--input", wet, "--lang-threshold", "0"]
    assert corpus_main([*common, "--output", str(tmp_path / "plain")]) == 0
    assert corpus_main([*common, "--output", str(tmp_path / "near"), "--near-dedup"]) == 0

    removed = _urls(tmp_path / "plain") - _urls(tmp_path / "near")
    assert _urls(tmp_path / "near") <= _urls(tmp_path / "plain")
    for copy, source in pairs:  # the survivor is the smaller (segment, record); either may be first
        assert len({copy, source} & removed) == 1, (copy, source)
    assert len(removed) == len(pairs)  # nothing unrelated goes

    stats = json.loads((tmp_path / "near" / ".cc100" / "stats.json").read_text())
    assert stats["counters"]["near_dup_docs_removed"] == len(pairs)
    assert stats["config"]["near_dedup"] is True
    # the boilerplate dedup removed is recorded for the report, most frequent first
    top = stats["top_duplicate_lines"]
    assert top and all(top[i][1] >= top[i + 1][1] for i in range(len(top) - 1))
    assert any("cookies" in line.lower() for line, _ in top[:5])


def test_near_dedup_flags_are_validated(tmp_path, capsys):
    wet = str(tmp_path / "missing-but-never-read.warc.wet.gz")
    code = corpus_main(["--input", wet, "--output", str(tmp_path / "o"), "--near-dedup",
                        "--near-dedup-bands", "5"])
    assert code == 2
    assert "near_dedup_bands" in capsys.readouterr().err
