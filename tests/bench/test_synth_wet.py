"""bench/synth_wet.py: a parseable WET with the requested size and language mix, reproducibly."""

from __future__ import annotations

import base64
import collections
import gzip
import hashlib
import io

import pytest

from bench.synth_wet import (SynthConfig, apportion, language_weights, load_sentences, main,
                             read_manifest, synthesize)
from pipeline.readers.wet import WetFileReport, documents_from_records, iter_wet_records

# cc_net's parse_doc reads the headers by position: this is the order of CC-MAIN-2019-30's WET.
CONVERSION_HEADERS = ["warc-type", "warc-target-uri", "warc-date", "warc-record-id", "warc-refers-to",
                      "warc-block-digest", "content-type", "content-length"]

SUBJECTS = {
    "en": ("The committee", "Our neighbour", "The old bakery", "A young teacher", "The city council"),
    "de": ("Der Ausschuss", "Unser Nachbar", "Die alte Bäckerei", "Eine junge Lehrerin", "Der Stadtrat"),
    "fr": ("Le comité", "Notre voisin", "La vieille boulangerie", "Une jeune enseignante", "Le conseil"),
}
VERBS = {
    "en": ("announced the plan", "opened a new shop", "wrote a long letter", "sold the house"),
    "de": ("kündigte den Plan an", "eröffnete einen Laden", "schrieb einen Brief", "verkaufte das Haus"),
    "fr": ("a annoncé le projet", "a ouvert une boutique", "a écrit une lettre", "a vendu la maison"),
}


def tiny_reference(root) -> dict[str, list[str]]:
    """reference_leipzig/{en,de,fr}.txt: 60 distinct sentences each, no sentence shared."""
    pools = {}
    directory = root / "reference_leipzig"
    directory.mkdir(parents=True)
    for lang in SUBJECTS:
        lines = [f"{s} {v} in {year}." for s in SUBJECTS[lang] for v in VERBS[lang] for year in (1990, 2001, 2012)]
        (directory / f"{lang}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
        pools[lang] = lines
    return pools


def read_records(path):
    report = WetFileReport(str(path))
    with open(path, "rb") as f:
        records = list(iter_wet_records(f, str(path), report))
    return records, report


def test_tiny_world_wet_is_valid_and_has_the_requested_documents(tmp_path):
    pools = tiny_reference(tmp_path / "data")
    out = tmp_path / "out" / "synth.warc.wet.gz"
    config = SynthConfig(docs=300, seed=7, english_share=0.5, docs_per_site=10)
    summary = synthesize(out, config, tmp_path / "data")

    records, report = read_records(out)
    assert report.error is None and not report.skipped
    assert report.content_length_mismatch == 0 and report.garbage_bytes == 0 and report.invalid_utf8 == 0
    assert [r.warc_type for r in records] == ["warcinfo"] + ["conversion"] * 300
    for r in records[1:]:
        assert list(r.headers) == CONVERSION_HEADERS
        digest = "sha1:" + base64.b32encode(hashlib.sha1(r.body).digest()).decode()
        assert r.headers["warc-block-digest"] == digest
    # one gzip member per record, as Common Crawl writes them
    raw = out.read_bytes()
    assert raw.count(b"\x1f\x8b\x08") >= 301
    with gzip.open(io.BytesIO(raw)) as f:
        assert f.read().count(b"WARC/1.0\r\n") == 301

    manifest = read_manifest(out)
    assert len(manifest) == summary.docs == 300
    langs = collections.Counter(row["language"] for row in manifest)
    assert langs == collections.Counter(summary.languages)
    assert langs["en"] == 150  # exactly english_share of the documents
    assert langs["de"] > langs["fr"] > 0  # de ranks before fr, as in Common Crawl
    assert [row["url"] for row in manifest] == [r.headers["warc-target-uri"] for r in records[1:]]

    # the text of each record is in its manifest language: its sentences come from that pool
    for row, record in zip(manifest, records[1:]):
        text = record.body.decode("utf-8")
        hits = {lang: sum(s in text for s in pool) for lang, pool in pools.items()}
        if row["kind"] in ("normal", "duplicate"):
            assert max(hits, key=hits.get) == row["language"], (row, hits)


def test_tiny_world_has_boilerplate_short_pages_and_recrawls(tmp_path):
    tiny_reference(tmp_path / "data")
    out = tmp_path / "synth.warc.wet.gz"
    synthesize(out, SynthConfig(docs=400, seed=3, docs_per_site=10, short_share=0.1, duplicate_share=0.05),
               tmp_path / "data")
    records, report = read_records(out)
    manifest = read_manifest(out)
    kinds = collections.Counter(row["kind"] for row in manifest)
    assert kinds["short"] > 20 and kinds["duplicate"] > 5

    docs = list(documents_from_records(iter(records), str(out), 300, report))
    assert report.too_short >= kinds["short"]  # short pages fall under cc_net's 300 characters
    # boilerplate: many lines recur in several documents of the same site
    holders = collections.Counter(line for d in docs for line in set(d.raw_content.split("\n")))
    repeated = sum(1 for d in docs for line in d.raw_content.split("\n") if holders[line] >= 2)
    total = sum(d.nlines for d in docs)
    assert 0.15 < repeated / total < 0.8
    # a re-crawl repeats an earlier page's text exactly, under another URL
    texts = {}
    for row, record in zip(manifest, records[1:]):
        if row["kind"] == "duplicate":
            assert record.body in texts.values() and record.headers["warc-target-uri"] not in texts
        texts[record.headers["warc-target-uri"]] = record.body


def test_same_seed_same_bytes_other_seed_other_file(tmp_path):
    tiny_reference(tmp_path / "data")
    paths = [tmp_path / d / "synth.warc.wet.gz" for d in ("a", "b", "c")]  # the name is in warcinfo
    for path, seed in zip(paths, (11, 11, 12)):
        synthesize(path, SynthConfig(docs=120, seed=seed), tmp_path / "data")
    assert paths[0].read_bytes() == paths[1].read_bytes()
    assert read_manifest(paths[0]) == read_manifest(paths[1])
    assert paths[0].read_bytes() != paths[2].read_bytes()


def test_language_weights_are_common_crawl_shaped():
    langs = ["en", "de", "ru", "fr", "es", "ja", "zh", "sw", "zu", "yo", "is"]
    w = language_weights(langs, english_share=0.45, zipf=2.0)
    assert sum(w.values()) == pytest.approx(1.0)
    assert w["en"] == pytest.approx(0.45)
    assert min(w[x] for x in ("de", "ru", "fr", "es", "ja", "zh")) > max(w[x] for x in ("sw", "zu", "yo", "is"))
    assert w["is"] > w["sw"] > w["zu"]  # the tail follows TAIL_RANKING down a Zipf curve
    counts = apportion(w, 1001)
    assert sum(counts.values()) == 1001 and counts["en"] in (450, 451)
    assert all(abs(counts.get(lang, 0) - w[lang] * 1001) < 1 for lang in langs)


@pytest.mark.parametrize("field,kwargs", [("docs", {"docs": 0}), ("english_share", {"english_share": 1.5}),
                                          ("short_share", {"short_share": -0.1}), ("zipf", {"zipf": -1})])
def test_config_errors_name_the_field(field, kwargs):
    with pytest.raises(ValueError, match=field):
        SynthConfig(**kwargs)


def test_cli_errors_are_one_line(tmp_path, capsys):
    assert main(["--output", str(tmp_path / "x.warc.wet.gz"), "--data", str(tmp_path / "missing")]) == 2
    assert "data directory not found" in capsys.readouterr().err
    tiny_reference(tmp_path / "data")
    assert main(["--output", str(tmp_path / "x.warc.wet.gz"), "--data", str(tmp_path / "data"),
                 "--langs", "en,xx"]) == 2
    assert "no reference text for xx" in capsys.readouterr().err


def test_real_reference_text_gives_a_common_crawl_mix(tmp_path, shared_data):
    """On the real 75+ languages: Common Crawl's shape, headers exactly as the real WET sample."""
    out = tmp_path / "synth.warc.wet.gz"
    summary = synthesize(out, SynthConfig(docs=2000, seed=0), shared_data)
    assert len(summary.languages) >= 70
    assert summary.languages["en"] == 900
    top = list(summary.languages)[1:8]
    assert set(top) >= {"de", "ru", "fr", "es", "ja", "zh"}
    assert set(load_sentences(shared_data)) >= {"en", "de", "ja", "zh", "sw", "zu"}

    sample = shared_data / "wet" / "CC-MAIN-2019-30-sample-00000.warc.wet.gz"
    real, _ = read_records(sample)
    ours, report = read_records(out)
    assert list(ours[1].headers) == list(real[1].headers)
    assert list(ours[0].headers) == list(real[0].headers)
    docs = list(documents_from_records(iter(ours), str(out), 300, report))
    assert report.problems == [] and 1500 < len(docs) < 2000
