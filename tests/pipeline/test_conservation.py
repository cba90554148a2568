"""Nothing lost between stages (issue #14): the local runner's data plane keeps every byte, the
conservation checks fail a run whose counters disagree, and a segment is read entirely or not
at all (issue #15 §5)."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from pipeline.utils.conservation import check_conservation
from pipeline.corpus import main
from tests.pipeline.corpus_helpers import page, write_wet

# -- the local runner's data plane ------------------------------------------------------------


def test_local_runner_data_plane_keeps_what_is_written_while_a_flush_waits():
    """Beam's timed flush clears what the runner writes while the flush callback waits on a
    full send queue (docs/beam_data_plane_race.md). The runner cc100 builds must not lose it."""
    from apache_beam.runners.portability.fn_api_runner import worker_handlers
    from apache_beam.runners.worker import data_plane

    from pipeline.options import CorpusConfig, make_runner, pipeline_options

    config = CorpusConfig(inputs=["x"], output="o", workers=2)
    make_runner(config, pipeline_options(config))
    channel = data_plane.BeamFnDataServicer(worker_handlers.DATA_BUFFER_TIME_LIMIT_MS).get_conn_by_worker_id("w")
    sent = []

    def slow_enqueue(elem):  # a busy worker: the send queue is full for a while
        sent.append(elem.data)
        if elem.data:
            time.sleep(0.2)

    channel._enqueue_to_send = slow_enqueue
    stream = channel.output_stream("bundle-1", "transform-1")
    chunk, written = b"x" * 1000, 0
    until = time.monotonic() + 1.6  # past the first tick of Beam's 1 s flush timer
    while time.monotonic() < until:
        stream.write(chunk)
        written += len(chunk)
        time.sleep(0.002)
    stream.close()
    assert sum(len(d) for d in sent) == written


# -- the checks -------------------------------------------------------------------------------


def _balanced() -> tuple[dict, list[dict]]:
    counters = {
        "documents_read": 10, "dedup_documents_in": 10, "dedup_occurrences_out": 40,
        "dedup_occurrences_in": 40, "dedup_loss_rows_out": 7, "dedup_loss_rows_applied": 7,
        "documents_after_dedup": 9, "documents_emptied": 1, "lid_documents_in": 9,
        "lid_documents_out": 8, "lid_dropped_threshold": 1, "perplexity_scored": 6,
        "perplexity_no_model": 2, "documents:en:head": 5, "documents:de:all": 3,
        "documents_to_write:en:head": 5, "documents_to_write:de:all": 3, "parquet_files_written": 2,
    }
    parts = [{"language": "en", "bucket": "head", "documents": 5}, {"language": "de", "bucket": "all", "documents": 3}]
    return counters, parts


def test_balanced_counters_pass():
    counters, parts = _balanced()
    assert check_conservation(counters, parts, segment_reports=2, segments=2, near_dedup=False) == []
    assert check_conservation({}, [], 0, 0, near_dedup=False) == []  # an input without documents


@pytest.mark.parametrize("change, stage", [
    ({"documents_read": 11}, "ReadSegments -> DedupParagraphs"),
    ({"dedup_occurrences_in": 39}, "DedupParagraphs hash shuffle"),
    ({"dedup_loss_rows_applied": 0}, "DedupParagraphs losses"),
    ({"documents_emptied": 0}, "DedupParagraphs join"),
    ({"lid_documents_in": 8, "lid_dropped_threshold": 0}, "-> IdentifyLanguage"),
    ({"perplexity_no_model": 1}, "IdentifyLanguage -> ScorePerplexity"),
    ({"documents:de:all": 2}, "ScorePerplexity -> AssignBuckets"),
    ({"documents_to_write:en:head": 6}, "WriteByLanguage en/head"),
    ({"parquet_files_written": 1}, "WriteByLanguage files"),
])
def test_each_boundary_names_its_stage(change, stage):
    counters, parts = _balanced()
    imbalances = check_conservation({**counters, **change}, parts, 2, 2, near_dedup=False)
    assert [i.stage for i in imbalances] == [stage]
    assert imbalances[0].line().startswith(f"{stage}: ")


def test_rows_missing_from_a_partition_and_missing_reports_are_caught():
    counters, parts = _balanced()
    parts[0] = {**parts[0], "documents": 4}
    lines = [i.line() for i in check_conservation(counters, parts, 1, 2, near_dedup=False)]
    assert lines == ["WriteByLanguage en/head: documents_to_write 5 != Parquet rows 4",
                     "ReadSegments reports: segments 2 != files.jsonl lines 1"]


def test_near_dedup_boundaries_are_checked_when_it_runs():
    counters, parts = _balanced()
    near = {**counters, "near_dup_docs_in": 9, "documents_after_near_dedup": 9, "near_dup_docs_removed": 0}
    assert check_conservation(near, parts, 2, 2, near_dedup=True) == []
    lost = {**near, "documents_after_near_dedup": 8}
    assert [i.stage for i in check_conservation(lost, parts, 2, 2, near_dedup=True)] == ["NearDedup", "-> IdentifyLanguage"]


# -- end to end: a mismatch fails the run, a failed read keeps none of its documents -----------

LINE = "A paragraph long enough to make this page pass the minimum length of the corpus job, {}."


def _word(*numbers: int) -> str:
    """Numbers spelled in letters (dedup normalises digits to 0, letters stay distinct)."""
    return "".join(chr(ord("a") + int(c)) for n in numbers for c in f"{n:02d}")


def _wet(root: Path, name: str, n: int) -> Path:
    pages = [(f"http://{name}.example/{i}",
              page(f"{name} {_word(i)}", *(LINE.format(f"{name} {_word(i, j)}") for j in range(4))))
             for i in range(n)]
    return write_wet(root / f"{name}.warc.wet.gz", pages)


@pytest.fixture
def inputs(tmp_path):
    d = tmp_path / "wet"
    d.mkdir()
    _wet(d, "alpha", 6)
    _wet(d, "beta", 5)
    return d


def _lose_last_document_of_each_batch(monkeypatch):
    """The join receives every batch of documents but its last document (zip() keeps the other
    documents aligned with their hashes): documents vanish uncounted, as Beam's runner lost them."""
    import pipeline.dedup.paragraphs

    real = pipeline.dedup.paragraphs.documents_from_bytes
    monkeypatch.setattr(pipeline.dedup.paragraphs, "documents_from_bytes", lambda data: real(data)[:-1])


def _lose_a_row_in_the_writer(monkeypatch):
    """A Parquet file is written without its first row, and the writer believes it wrote all."""
    import pipeline.writers.parquet

    real = pipeline.writers.parquet.write_parquet
    def write_one_short(path, docs, schema):
        rows, bad_dates = real(path, docs[1:], schema)
        return rows + 1, bad_dates

    monkeypatch.setattr(pipeline.writers.parquet, "write_parquet", write_one_short)


@pytest.mark.parametrize("lose, stage", [
    (_lose_last_document_of_each_batch, "DedupParagraphs join"),
    (_lose_a_row_in_the_writer, "WriteByLanguage "),
])
def test_documents_lost_between_stages_fail_the_run_and_commit_nothing(inputs, tmp_path, monkeypatch, capsys, lose, stage):
    lose(monkeypatch)
    out = tmp_path / "out"
    code = main(["--input", str(inputs / "*"), "--output", str(out), "--lang-threshold", "0"])
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("cc100 corpus:")]
    assert code == 1 and not out.exists() and not list(tmp_path.glob("out.tmp-*"))
    assert len(lines) == 1 and "conservation check failed" in lines[0] and f": {stage}" in lines[0], lines
    stats = json.loads((tmp_path / "out.work" / "stats.json").read_text())
    assert stats["committed"] is False and stats["conservation"]["failed"][0]["stage"].startswith(stage)


class _BreaksAfter:
    """A file object whose reads fail with OSError after `limit` bytes (a disk or network error)."""

    def __init__(self, f, limit: int):
        self.f, self.left = f, limit

    def read(self, n=-1):
        if self.left <= 0:
            raise OSError(5, "Input/output error")
        data = self.f.read(self.left if n is None or n < 0 else min(n, self.left))
        self.left -= len(data)
        return data

    def __getattr__(self, name):
        return getattr(self.f, name)


@pytest.fixture
def breaking_beta(inputs, monkeypatch):
    """Reading beta.warc.wet.gz fails after its first records (in-process runner, --workers 1)."""
    from apache_beam.io.filesystems import FileSystems

    real_open = FileSystems.open
    beta = str(inputs / "beta.warc.wet.gz")
    limit = len((inputs / "beta.warc.wet.gz").read_bytes()) // 2

    def open_(path, *args, **kwargs):
        f = real_open(path, *args, **kwargs)
        return _BreaksAfter(f, limit) if path == beta else f

    monkeypatch.setattr(FileSystems, "open", staticmethod(open_))
    return beta


def test_a_read_failing_part_way_keeps_none_of_the_segment_and_fails_the_run(inputs, breaking_beta, tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["--input", str(inputs / "*"), "--output", str(out), "--lang-threshold", "0"])
    captured = capsys.readouterr()
    assert code == 1 and not out.exists()
    assert "1 of 2 segments failed" in captured.err
    stats = json.loads((tmp_path / "out.work" / "stats.json").read_text())
    assert [f["segment"] for f in stats["failed_segments"]] == [breaking_beta]
    assert "Input/output error" in stats["failed_segments"][0]["reason"]


def test_allow_failed_segments_writes_the_others_without_a_partial_segment(inputs, breaking_beta, tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["--input", str(inputs / "*"), "--output", str(out), "--lang-threshold", "0",
                 "--allow-failed-segments"])
    captured = capsys.readouterr()
    assert code == 0
    rows = [r for p in sorted(out.glob("*/*/part-*.parquet")) for r in pq.read_table(p).to_pylist()]
    assert {r["cc_segment"] for r in rows} == {str(inputs / "alpha.warc.wet.gz")}  # none of beta's
    assert len(rows) == 6
    stats = json.loads((out / ".cc100" / "stats.json").read_text())
    assert [f["segment"] for f in stats["failed_segments"]] == [breaking_beta]
    assert stats["counters"]["segments_failed"] == 1 and stats["conservation"] == {"failed": []}
    assert "beta.warc.wet.gz" in captured.out  # the summary lists it
