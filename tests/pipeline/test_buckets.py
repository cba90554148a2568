"""Buckets: cc_net's rule, its cutoff table format, and the Beam stage with and without a table."""

from __future__ import annotations

import csv
import random

import apache_beam as beam
import pytest
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline
from apache_beam.testing.util import assert_that, equal_to

from pipeline.quality.buckets import (
    AssignBuckets,
    bucket_of,
    format_cutoffs,
    format_language_table,
    head_tail,
    parse_cutoffs,
    percentiles_from_quantiles,
    read_cutoffs,
    summarize_counters,
    write_cutoffs,
)
from pipeline.schema import Document
from pipeline.utils.tools import ModelFileError


def make_doc(lang: str | None, pp: float | None, offset: int) -> Document:
    return Document(
        url=f"u{offset}", date_download="", digest="", source_domain="", title="",
        raw_content="x", length=1, nlines=1, cc_segment="seg", record_offset=offset,
        language=lang, perplexity=pp,
    )


def test_bucket_rule_is_cc_nets():
    cutoffs = {"en": (100.0, 200.0)}
    assert bucket_of(99.9, "en", cutoffs) == "head"
    assert bucket_of(100.0, "en", cutoffs) == "middle"  # head is strictly below the 30th
    assert bucket_of(199.9, "en", cutoffs) == "middle"
    assert bucket_of(200.0, "en", cutoffs) == "tail"
    assert bucket_of(None, "en", cutoffs) == "all"  # no model, no perplexity
    assert bucket_of(-1, "en", cutoffs) == "all"  # cc_net's default of -1
    assert bucket_of(50.0, "sw", cutoffs) == "all"  # language without cutoffs


def test_cc_nets_own_table_is_read_exactly(shared_data):
    path = shared_data / "ccnet_cutoff.csv"
    table = read_cutoffs(str(path))
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    langs = rows[0][1:]
    assert len(langs) == 48 and sorted(table) == sorted(langs)
    for row in rows[1:]:
        for lang, cell in zip(langs, row[1:]):
            assert table[lang][int(row[0])] == float(cell)
    assert all(sorted(values) == list(range(100)) for values in table.values())
    # written back in the same format, it reads back identically
    assert parse_cutoffs(format_cutoffs(table)) == table


def test_table_round_trip_keeps_full_precision(tmp_path):
    table = {"en": {p: 100 + p / 3 for p in range(100)}, "fr": {p: float(p) for p in range(100)}}
    path = tmp_path / "out" / "cutoffs.csv"
    write_cutoffs(table, str(path))
    assert read_cutoffs(str(path)) == table
    text = path.read_text()
    assert text.splitlines()[0] == ",en,fr" and text.splitlines()[31].startswith("30,110,30")
    assert not [p for p in path.parent.iterdir() if ".tmp-" in p.name]


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "empty cutoff table"),
        (",en,en\n0,1,2\n", "line 1: header needs distinct language names"),
        (",en\n0,1,2\n", "line 2: 3 columns, expected 2"),
        (",en\nx,1\n", "line 2: first column must be a percentile"),
        (",en\n0,1\n1,abc\n", "line 3, column 'en': not a number"),
        (",en\n0,5\n1,4\n", "column 'en': percentiles are not increasing"),
    ],
)
def test_malformed_tables_are_named(tmp_path, text, message):
    path = tmp_path / "cut.csv"
    path.write_text(text)
    with pytest.raises(ModelFileError, match=f"{path}: {message}"):
        read_cutoffs(str(path))


def test_missing_table_is_named_before_the_job(tmp_path):
    with pytest.raises(ModelFileError, match=f"{tmp_path / 'none.csv'}: perplexity cutoff table not found"):
        AssignBuckets(cutoffs=str(tmp_path / "none.csv"))
    short = tmp_path / "short.csv"
    short.write_text(",en\n0,1\n1,2\n")
    with pytest.raises(ModelFileError, match="percentiles 30 and 60 missing for en"):
        AssignBuckets(cutoffs=str(short))
    for text in ("0\n1\n2\n", "my-hostname\n"):  # parse (a run without models writes such a table)...
        short.write_text(text)
        assert read_cutoffs(str(short)) == {}
        with pytest.raises(ModelFileError, match="not a cutoff table: line 1 names no language column"):
            AssignBuckets(cutoffs=str(short))  # ... but bucket nothing: refused as --cutoffs
    with pytest.raises(ValueError, match="head/tail percentiles"):
        AssignBuckets(head=70, tail=60)


def test_percentiles_from_quantiles():
    assert percentiles_from_quantiles(list(range(101))) == {p: float(p) for p in range(100)}
    with pytest.raises(ValueError, match="101 quantiles"):
        percentiles_from_quantiles([1, 2])


def test_cc_net_table_is_honoured_in_the_job(shared_data):
    table = read_cutoffs(str(shared_data / "ccnet_cutoff.csv"))
    (en_head, en_tail), (de_head, _) = head_tail(table)["en"], head_tail(table)["de"]
    docs = [
        make_doc("en", en_head - 0.1, 0),
        make_doc("en", en_head, 1),
        make_doc("en", en_tail, 2),
        make_doc("de", de_head - 1, 3),
        make_doc("sw", 10.0, 4),  # not in cc_net's table
        make_doc("en", None, 5),  # no model
    ]
    with BeamTestPipeline(runner="FnApiRunner") as p:
        out = (
            p
            | beam.Create(docs)
            | AssignBuckets(cutoffs=str(shared_data / "ccnet_cutoff.csv"))
            | beam.Map(lambda d: (d.record_offset, d.bucket))
        )
        assert_that(out, equal_to([(0, "head"), (1, "middle"), (2, "tail"), (3, "head"), (4, "all"), (5, "all")]))


def test_cutoffs_from_data_split_30_30_40_and_are_written(tmp_path):
    rng = random.Random(7)
    docs = [make_doc("en", round(rng.lognormvariate(5, 1), 1), i) for i in range(2000)]
    docs += [make_doc("fr", round(rng.uniform(10, 500), 1), 10_000 + i) for i in range(700)]
    docs += [make_doc("sw", None, 20_000 + i) for i in range(5)]
    cutoffs, assigned = tmp_path / "cutoffs.csv", tmp_path / "assigned.txt"
    p = BeamTestPipeline(runner="FnApiRunner")
    _ = (
        p
        | beam.Create(docs)
        | AssignBuckets(cutoffs_output=str(cutoffs))
        | beam.Map(lambda d: f"{d.record_offset}\t{d.bucket}")
        | beam.io.WriteToText(str(assigned), shard_name_template="")
    )
    result = p.run()
    result.wait_until_finish()
    got = dict(line.split("\t") for line in assigned.read_text().splitlines())
    assert len(got) == len(docs)
    # the table written out is the one the job used: recomputing every bucket from it agrees
    table = read_cutoffs(str(cutoffs))
    assert sorted(table) == ["en", "fr"] and all(len(v) == 100 for v in table.values())
    limits = head_tail(table)
    for d in docs:
        assert got[str(d.record_offset)] == bucket_of(d.perplexity, d.language, limits)
    # each percentile is a data value of about the right rank; buckets are 30/30/40
    for lang, n in (("en", 2000), ("fr", 700)):
        values = sorted(d.perplexity for d in docs if d.language == lang)
        assert table[lang][0] == values[0]
        for q in (10, 30, 60, 90):
            assert table[lang][q] in values
            assert abs(sum(v < table[lang][q] for v in values) / n - q / 100) <= 0.01
        shares = [sum(got[str(d.record_offset)] == b for d in docs if d.language == lang) / n for b in ("head", "middle", "tail")]
        assert shares == pytest.approx([0.3, 0.3, 0.4], abs=0.01), (lang, shares)
    assert {got[str(20_000 + i)] for i in range(5)} == {"all"}
    query = result.metrics().query(MetricsFilter().with_namespace("cc100"))
    names = {c.key.metric.name: c.committed for c in query["counters"]}
    assert names["documents:sw:all"] == 5
    assert names["documents:en:head"] + names["documents:en:middle"] + names["documents:en:tail"] == 2000


def test_summary_of_counters():
    counters = {
        "documents:en:head": 3, "documents:en:tail": 5, "documents:sw:all": 2,
        "lid_dropped_threshold": 7, "lid_dropped_language_filter": 4, "lid_dropped_empty": 1,
        "perplexity_no_model": 2, "perplexity_no_model:sw": 2, "perplexity_scored": 8,
        "files_read": 2,
    }
    summary = summarize_counters(counters)
    assert summary["documents_by_language"] == {"en": {"head": 3, "tail": 5, "total": 8}, "sw": {"all": 2, "total": 2}}
    assert summary["documents_by_bucket"] == {"all": 2, "head": 3, "tail": 5}
    assert summary["dropped_lang_threshold"] == 7 and summary["dropped_language_filter"] == 4
    assert summary["documents_without_model"] == 2
    assert summary["documents_without_model_by_language"] == {"sw": 2}
    table = format_language_table(summary).splitlines()
    assert table[1].split() == ["en", "3", "0", "5", "0", "8"]
    assert "7 below the LID threshold, 4 by --langs" in table[-1]
