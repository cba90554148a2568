"""The run object of `cc100 corpus`, phase by phase, on two tiny WET files: what preflight refuses
(and that a refusal leaves nothing behind), what commit writes, and what a failure cleans up."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import apache_beam as beam
import pytest
from apache_beam.runners.portability.fn_api_runner import FnApiRunner

from pipeline.quality.buckets import read_cutoffs
from pipeline.contracts import (
    COMPLETE_FILE,
    CUTOFFS_FILE,
    DATASET_CARD,
    FILES_REPORT,
    MARKER_FILE,
    META_DIR,
    STATS_FILE,
    TOP_LINES_FILE,
)
from pipeline.corpus_run import CorpusRun, RunFailed, RunRefused, RunReports, WriteRunReports
from pipeline.corpus import build_pipeline
from pipeline.options import parse_args
from pipeline.utils.leftovers import host_tag
from tests.pipeline.corpus_helpers import page, write_wet

LINE = "A paragraph long enough to make this page pass the minimum length of the corpus job, {}."
SHARED = "Cookies help us deliver our services; by using them you agree to our use of cookies."


@pytest.fixture
def inputs(tmp_path) -> Path:
    d = tmp_path / "wet"
    d.mkdir()
    for name in ("alpha", "beta"):
        pages = [(f"http://{name}.example/{i}", page(f"{name} {i}", SHARED, *(LINE.format(f"{name} {i} {j}") for j in "abc")))
                 for i in "xyz"]
        write_wet(d / f"{name}.warc.wet.gz", pages)
    return d


def _run(tmp_path, *flags: str, inputs: Path | None = None) -> CorpusRun:
    pattern = str((inputs or tmp_path / "wet") / "*")
    config, _ = parse_args(["--input", pattern, "--output", str(tmp_path / "out"), "--lang-threshold", "0", *flags])
    return CorpusRun(config)


def _left_beside_output(tmp_path) -> list[str]:
    return sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("out"))


# -- preflight ----------------------------------------------------------------------------------


def test_preflight_refuses_a_glob_that_matches_nothing_and_creates_nothing(tmp_path):
    corpus = _run(tmp_path, inputs=tmp_path / "missing")
    with pytest.raises(RunRefused, match="matches no files"):
        corpus.preflight()
    assert corpus.staging is None and _left_beside_output(tmp_path) == []


def test_preflight_refuses_an_output_it_did_not_write(tmp_path, inputs):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "thesis.tex").write_text("mine")
    with pytest.raises(RunRefused, match="--output"):
        _run(tmp_path).preflight()
    assert _left_beside_output(tmp_path) == ["out"] and (tmp_path / "out" / "thesis.tex").read_text() == "mine"


def test_preflight_refuses_a_foreign_work_dir(tmp_path, inputs):
    (tmp_path / "out.work").mkdir()
    (tmp_path / "out.work" / "notes.txt").write_text("mine")
    with pytest.raises(RunRefused, match="not a cc100 work directory"):
        _run(tmp_path).preflight()
    assert _left_beside_output(tmp_path) == ["out.work"]


def test_preflight_claims_a_staging_dir_and_the_work_dir(tmp_path, inputs):
    corpus = _run(tmp_path)
    assert corpus.preflight() is True
    staging = Path(corpus.staging)
    assert staging.parent == tmp_path and staging.name.startswith("out.tmp-")
    assert json.loads((staging / META_DIR / MARKER_FILE).read_text())["stage"] == "corpus"
    assert (tmp_path / "out.work" / "work.json").is_file()
    assert [Path(s.name).name for s in corpus.segments] == ["alpha.warc.wet.gz", "beta.warc.wet.gz"]
    assert not (tmp_path / "out").exists()  # the output is only written by the commit
    corpus.abort()
    assert not staging.exists() and (tmp_path / "out.work" / "work.json").is_file()


def test_an_up_to_date_run_removes_only_what_a_killed_run_left(tmp_path, inputs, capsys):
    first = _run(tmp_path)
    first.preflight()
    assert first.commit(first.run(build_pipeline)) == 0
    stats = tmp_path / "out" / META_DIR / STATS_FILE
    before = stats.stat().st_mtime_ns
    killed = subprocess.Popen([sys.executable, "-c", "pass"])
    killed.wait()
    staging = tmp_path / f"out.tmp-{host_tag()}-{killed.pid}-{'0' * 12}"
    (staging / "en" / "head").mkdir(parents=True)
    (staging / "en" / "head" / "part-00000-of-00001.parquet").write_bytes(b"PAR1")
    again = _run(tmp_path)
    assert again.preflight() is False  # up to date: nothing to run, nothing claimed
    assert again.staging is None and not staging.exists() and stats.stat().st_mtime_ns == before
    assert _left_beside_output(tmp_path) == ["out"]


# -- run and commit -----------------------------------------------------------------------------


def test_commit_writes_the_reports_and_renames_staging_to_output(tmp_path, inputs, capsys):
    corpus = _run(tmp_path)
    corpus.preflight()
    staging = Path(corpus.staging)
    result = corpus.run(build_pipeline)
    assert (staging / META_DIR / TOP_LINES_FILE).is_file()  # the run's own side file, until the commit
    assert corpus.commit(result) == 0
    out = tmp_path / "out"
    assert not staging.exists() and _left_beside_output(tmp_path) == ["out"]  # work dir cleared too
    meta = out / META_DIR
    assert sorted(p.name for p in meta.iterdir()) == sorted([MARKER_FILE, STATS_FILE, FILES_REPORT, CUTOFFS_FILE,
                                                             COMPLETE_FILE])
    assert (out / DATASET_CARD).is_file()
    stats = json.loads((meta / STATS_FILE).read_text())
    assert stats["committed"] is True and stats["conservation"] == {"failed": []}
    assert stats["top_duplicate_lines"] == [[SHARED, 6]]
    reports = [json.loads(line) for line in (meta / FILES_REPORT).read_text().splitlines()]
    assert sorted(Path(r["path"]).name for r in reports) == ["alpha.warc.wet.gz", "beta.warc.wet.gz"]
    assert stats["counters"]["documents_out"] == sum(p["documents"] for p in stats["parts"]) == 6
    assert "documents" in capsys.readouterr().out  # the summary


def test_commit_refuses_counters_that_disagree_and_keeps_them_in_the_work_dir(tmp_path, inputs, capsys):
    corpus = _run(tmp_path, "--keep-work")
    corpus.preflight()
    result = corpus.run(build_pipeline)
    counters = {**result.counters, "documents_read": result.counters["documents_read"] + 1}
    with pytest.raises(RunFailed, match="conservation check failed.*ReadSegments -> DedupParagraphs"):
        corpus.commit(dataclasses.replace(result, counters=counters))
    assert _left_beside_output(tmp_path) == ["out.work"]  # no output, no staging
    stats = json.loads((tmp_path / "out.work" / "stats.json").read_text())
    assert stats["committed"] is False and stats["conservation"]["failed"][0]["stage"] == "ReadSegments -> DedupParagraphs"


def test_a_failing_run_leaves_the_spools_for_the_next_one(tmp_path, inputs):
    corpus = _run(tmp_path)
    corpus.preflight()

    def build_then_break(p, config, segments, root, work_dir):
        reports = build_pipeline(p, config, segments, root, work_dir)
        _ = reports.files | "Break" >> beam.Map(lambda r: 1 / 0)
        return reports

    with pytest.raises(Exception, match="division by zero"):
        corpus.run(build_then_break)
    corpus.abort()
    assert _left_beside_output(tmp_path) == ["out.work"]
    assert len(list((tmp_path / "out.work" / "segments").glob("*.parquet"))) == 2  # both segments finished


# -- the side reports, written in one place -----------------------------------------------------


def test_run_reports_are_written_into_the_staging_meta_dir(tmp_path):
    staging = tmp_path / "staging"
    with beam.Pipeline(runner=FnApiRunner()) as p:
        reports = RunReports(
            files=p | "Files" >> beam.Create([{"path": "b", "problems": ["é"]}, {"path": "a", "problems": []}]),
            top_lines=p | "Top" >> beam.Create([[["Menu", 3]]]),
            cutoffs=p | "Cutoffs" >> beam.Create([("en", {q: float(q) for q in range(100)})]),
        )
        _ = reports | WriteRunReports(str(staging))
    meta = staging / META_DIR
    lines = sorted((meta / FILES_REPORT).read_text(encoding="utf-8").splitlines())
    assert lines == ['{"path": "a", "problems": []}', '{"path": "b", "problems": ["é"]}']
    assert json.loads((meta / TOP_LINES_FILE).read_text()) == [["Menu", 3]]
    assert read_cutoffs(str(meta / CUTOFFS_FILE)) == {"en": {q: float(q) for q in range(100)}}
