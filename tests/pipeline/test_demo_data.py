"""The bundled offline demo: real WET format, all languages, deterministic, CCNet-shaped content."""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import unicodedata
import zlib
from collections import Counter, defaultdict
from pathlib import Path

import pytest
from warcio.archiveiterator import ArchiveIterator

from pipeline import demo
from pipeline.contracts import part_files
from pipeline.normalize import normalize_for_dedup

# Scripts the reference text must cover (first word of the Unicode character name).
REQUIRED_SCRIPTS = {"LATIN", "CYRILLIC", "GREEK", "ARABIC", "DEVANAGARI", "CJK", "HIRAGANA"}


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("demo") / "out"
    assert demo.main(["--output", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def records(generated) -> dict[str, list[dict]]:
    """file name -> records parsed by warcio (independent of the project's reader)."""
    out = {}
    for name in demo.WET_FILES:
        with open(generated / "wet" / name, "rb") as f:
            rows = []
            for rec in ArchiveIterator(f):
                body = rec.content_stream().read()
                rows.append({"type": rec.rec_type, "headers": dict(rec.rec_headers.headers), "body": body})
        out[name] = rows
    return out


@pytest.fixture(scope="module")
def truth(generated) -> dict:
    return json.loads((generated / "truth.json").read_text(encoding="utf-8"))


def gzip_members(data: bytes) -> int:
    n = 0
    while data:
        d = zlib.decompressobj(31)
        d.decompress(data)
        assert d.eof, "truncated gzip member"
        data = d.unused_data
        n += 1
    return n


def test_wet_files_are_common_crawl_shaped(generated, records, truth):
    pages_per_file = Counter(p["file"] for p in truth["pages"])
    ids = set()
    for name, recs in records.items():
        data = (generated / "wet" / name).read_bytes()
        assert gzip_members(data) == len(recs), "one gzip member per record"
        assert recs[0]["type"] == "warcinfo"
        assert recs[0]["headers"]["WARC-Filename"] == name
        conversions = recs[1:]
        assert conversions and all(r["type"] == "conversion" for r in conversions)
        assert len(conversions) == pages_per_file[name]
        for r in conversions:
            h = r["headers"]
            assert h["Content-Type"] == "text/plain"
            assert int(h["Content-Length"]) == len(r["body"])  # bytes of the UTF-8 body
            digest = "sha1:" + base64.b32encode(hashlib.sha1(r["body"]).digest()).decode()
            assert h["WARC-Block-Digest"] == digest
            assert h["WARC-Target-URI"].startswith("http")
            assert h["WARC-Date"].endswith("Z") and h["WARC-Refers-To"].startswith("<urn:uuid:")
            ids.add(h["WARC-Record-ID"])
            r["body"].decode("utf-8")  # valid UTF-8
        layout = truth["layouts"][name]
        has_2024_headers = ["WARC-Payload-Digest" in r["headers"] for r in conversions]
        assert all(has_2024_headers) if layout == "2024" else not any(has_2024_headers)
    assert len(ids) == sum(pages_per_file.values()), "record ids are unique"
    assert 200 <= sum(pages_per_file.values()) <= 400


def test_project_reader_reads_every_record_without_problems(generated, truth):
    from pipeline.readers.wet import WetFileReport, read_wet_file

    kinds = Counter(p["kind"] for p in truth["pages"])
    documents, too_short = 0, 0
    for name in demo.WET_FILES:
        report = WetFileReport(path=name)
        documents += sum(1 for _ in read_wet_file(str(generated / "wet" / name), 300, report))
        assert report.problems == []
        assert report.non_conversion_records == 1  # the warcinfo record
        too_short += report.too_short
    assert too_short == kinds["short"] > 0  # exactly the short pages fall under 300 characters
    assert documents == len(truth["pages"]) - kinds["short"]


def test_generation_is_byte_identical_and_seeded(generated, tmp_path):
    again = tmp_path / "again"
    assert demo.main(["--output", str(again)]) == 0
    files = sorted(p.relative_to(generated) for p in generated.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(again) for p in again.rglob("*") if p.is_file())
    for rel in files:
        assert (generated / rel).read_bytes() == (again / rel).read_bytes(), rel
    other = tmp_path / "seed1"
    assert demo.main(["--output", str(other), "--seed", "1"]) == 0
    assert (other / "wet" / demo.WET_FILES[0]).read_bytes() != (generated / "wet" / demo.WET_FILES[0]).read_bytes()


def scripts_of(text: str) -> set[str]:
    names = (unicodedata.name(c, "") for c in text if c.isalpha())
    return {n.split()[0] for n in names if n}


def test_reference_text_covers_many_languages_and_scripts(generated):
    bundle = demo.load_bundle()
    assert len(bundle.reference) >= 8
    covered = set()
    for lang, sentences in bundle.reference.items():
        assert len(sentences) >= 145, lang
        assert len(set(sentences)) == len(sentences), f"{lang}: repeated sentence"
        covered |= scripts_of(" ".join(sentences))
        written = (generated / "reference" / f"{lang}.txt").read_text(encoding="utf-8").splitlines()
        assert written == sentences
    assert REQUIRED_SCRIPTS <= covered
    size = sum(f.stat().st_size for f in Path(demo.__file__).parent.joinpath("demo_data").rglob("*") if f.is_file())
    assert size < 600_000


def test_web_text_is_not_reference_text():
    bundle = demo.load_bundle()
    for lang, blocks in bundle.blocks.items():
        web = {normalize_for_dedup(s) for b in blocks for s in b.sentences}
        ref = {normalize_for_dedup(s) for s in bundle.reference.get(lang, [])}
        assert not web & ref, f"{lang}: page sentences repeat reference sentences"


def test_bundled_text_is_not_copied_from_shared_data(shared_data):
    """The bundle is written for this repository: no sentence equals one of the shared corpora."""
    bundle = demo.load_bundle()
    for lang, sentences in bundle.reference.items():
        ours = {normalize_for_dedup(s) for s in sentences} | {
            normalize_for_dedup(s) for b in bundle.blocks[lang] for s in b.sentences
        }
        for folder in ("reference", "reference_leipzig"):
            path = shared_data / folder / f"{lang}.txt"
            if path.is_file():
                theirs = {normalize_for_dedup(line) for line in path.read_text(encoding="utf-8").splitlines()}
                assert not ours & theirs, f"{lang}: shares sentences with {folder}/{lang}.txt"


def page_texts(records) -> dict[str, str]:
    return {
        r["headers"]["WARC-Target-URI"]: r["body"].decode("utf-8")
        for recs in records.values()
        for r in recs[1:]
    }


def test_language_mix_is_skewed_like_common_crawl(truth):
    articles = Counter(p["lang"] for p in truth["pages"] if p["kind"] == "article")
    ranked = articles.most_common()
    assert ranked[0][0] == "en" and ranked[0][1] >= 3 * ranked[1][1]
    assert len([lang for lang in articles if lang in demo.ISO639_3]) >= 10
    kinds = Counter(p["kind"] for p in truth["pages"])
    for kind in ("article", "near_duplicate", "short", "word_salad", "keyword_spam", "table", "mixed"):
        assert kinds[kind] > 0, kind


def test_boilerplate_repeats_within_sites_and_short_pages_are_short(records, truth):
    texts = page_texts(records)
    lines_by_site: dict[str, Counter] = defaultdict(Counter)
    for p in truth["pages"]:
        if p["kind"] in ("article", "near_duplicate"):
            lines_by_site[p["site"]].update(set(texts[p["url"]].splitlines()[1:]))
        if p["kind"] == "short":
            assert len("\n".join(texts[p["url"]].splitlines()[1:])) < 300
        else:
            assert len("\n".join(texts[p["url"]].splitlines()[1:])) >= 300, p["url"]
    for site, counts in lines_by_site.items():
        repeated = [line for line, n in counts.items() if n >= 2]
        # menu, cookie notice, newsletter, copyright and links lines are on every page of a site
        assert len(repeated) >= 5, site
        assert any(line.startswith("©") for line in repeated), site


def test_planted_duplicates_are_what_the_dedup_stages_expect(records, truth):
    texts = page_texts(records)
    by_url = {p["url"]: p for p in truth["pages"]}

    def content(url: str) -> str:
        """What survives paragraph dedup here: lines that occur on no other page."""
        return "\n".join(line for line in texts[url].splitlines()[1:] if line_pages[normalize_for_dedup(line)] == 1)

    line_pages = Counter()
    for text in texts.values():
        line_pages.update({normalize_for_dedup(line) for line in text.splitlines()[1:]})
    near = [p for p in truth["pages"] if p["kind"] == "near_duplicate"]
    assert len(near) >= 8
    for p in near:
        src = by_url[p["source_url"]]
        assert src["lang"] == p["lang"] and src["kind"] == "article"
        a, b = content(p["url"]), content(src["url"])
        assert a and b and a != b  # paragraph dedup keeps both copies ...
        assert demo.jaccard(demo.shingles(a, p["lang"]), demo.shingles(b, p["lang"])) >= 0.85  # ... MinHash finds them
    for lang in {p["lang"] for p in near}:
        arts = [p["url"] for p in truth["pages"] if p["kind"] == "article" and p["lang"] == lang]
        shingled = {u: demo.shingles(content(u), lang) for u in arts}
        worst = max(demo.jaccard(shingled[x], shingled[y]) for x, y in itertools.combinations(arts, 2))
        assert worst < 0.7, f"{lang}: two unrelated articles look like near-duplicates ({worst:.2f})"
    syndicated = [(p["site"], par) for p in truth["pages"] for par in p["syndicated_paragraphs"]]
    assert syndicated
    for site, paragraph in syndicated:
        holders = {q["site"] for q in truth["pages"] if paragraph in texts[q["url"]].splitlines()}
        assert len(holders) >= 2 and site in holders  # the same paragraph on several sites


def test_bad_output_argument_is_one_clear_line(tmp_path, capsys):
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    assert demo.main(["--output", str(not_a_dir)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("demo: --output") and "not a directory" in err and "\n" not in err


def test_block_parser_rejects_malformed_pages_text():
    with pytest.raises(demo.DemoDataError, match="pages:1: sentence before"):
        demo.parse_blocks("orphan sentence\n## Title\na\nb\nc\nd\n")
    with pytest.raises(demo.DemoDataError, match="fewer than 4"):
        demo.parse_blocks("## Title\na\nb\n")
    blocks = demo.parse_blocks("## One\na\nb\nc\nd\n\n## Two\ne\nf\ng\nh\n")
    assert [b.headline for b in blocks] == ["One", "Two"] and blocks[1].sentences == ("e", "f", "g", "h")


@pytest.mark.slow
def test_corpus_job_removes_the_demo_boilerplate_and_reports_it(generated, truth, tmp_path):
    """End to end on the demo input: `cc100 corpus` (CCNet dedup) then `cc100 report`."""
    import pyarrow.parquet as pq

    from pipeline.writers import report
    from pipeline.corpus import main as corpus

    out = tmp_path / "corpus"
    assert corpus(["--input", str(generated / "wet" / "*.warc.wet.gz"), "--output", str(out)]) == 0
    stats = json.loads((out / ".cc100" / "stats.json").read_text())
    kinds = Counter(p["kind"] for p in truth["pages"])
    assert stats["counters"]["docs_too_short"] == kinds["short"]
    rows = [r for f in part_files(out) for r in pq.read_table(f).to_pylist()]
    assert len(rows) == stats["counters"]["documents_out"]
    bundle = demo.load_bundle()
    boilerplate = set()
    for template in bundle.sites.values():
        boilerplate |= {template[k] for k in ("cookie", "newsletter", "share", "links", "skip", "search")}
        boilerplate |= set(template["menu"]) | {" | ".join(template["menu"])}
    surviving = [line for r in rows for line in r["raw_content"].split("\n")]
    assert not boilerplate & set(surviving), "site boilerplate survived paragraph dedup"
    assert not [line for line in surviving if line.startswith("©")]
    urls = {r["url"] for r in rows}
    for p in truth["pages"]:
        if p["kind"] == "near_duplicate":  # both copies survive exact dedup (near-dedup's job)
            assert p["url"] in urls and p["source_url"] in urls

    assert report.main([str(out)]) == 0
    numbers = json.loads((out / ".cc100" / "report" / "report.json").read_text())
    assert numbers["documents"] == len(rows)
    stages = {s["stage"]: s["documents"] for s in numbers["funnel"]}
    assert stages["WET pages read"] == len(truth["pages"])
    assert stages["long enough"] == len(truth["pages"]) - kinds["short"]
    assert not numbers["warnings"]


def test_summary_lists_every_artifact_and_fails_when_one_is_missing(generated, tmp_path, capsys):
    root = tmp_path / "demo"
    root.mkdir()
    (root / "input").symlink_to(generated, target_is_directory=True)
    (root / "lm").mkdir()
    (root / "lm" / "en.arpa.bin").write_bytes(b"x")
    (root / "corpus" / ".cc100" / "report").mkdir(parents=True)
    (root / "corpus" / ".cc100" / "stats.json").write_text(json.dumps(
        {"counters": {"documents_out": 7}, "partitions": {"en/head": {}, "fr/all": {}}}))
    (root / "corpus" / ".cc100" / "report" / "index.html").write_text("<html></html>")
    (root / "vocab").mkdir()
    (root / "vocab" / "sentencepiece.bpe.model").write_bytes(b"x")
    (root / "shards").mkdir()
    (root / "shards" / "manifest.json").write_text("{}")
    (root / "run" / "hf").mkdir(parents=True)
    (root / "run" / "log.jsonl").write_text('{"step": 1, "loss": 8.3}\n{"step": 300, "loss": 6.6}\n')
    assert demo.main(["--summary", str(root)]) == 0
    text = capsys.readouterr().out
    assert f"{len(truth_pages(generated))} pages in 2 files" in text
    assert "1 languages" in text and "7 documents, 2 languages (en, fr)" in text
    assert "loss 8.30 -> 6.60" in text and "MISSING" not in text
    (root / "run" / "hf").rmdir()
    assert demo.main(["--summary", str(root)]) == 1
    assert f"MISSING: {root / 'run' / 'hf'}" in capsys.readouterr().out


def truth_pages(generated: Path) -> list[dict]:
    return json.loads((generated / "truth.json").read_text(encoding="utf-8"))["pages"]
