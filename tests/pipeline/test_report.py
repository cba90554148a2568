"""`cc100 report`: the HTML/PNG report shows exactly what stats.json and the Parquet files hold."""

from __future__ import annotations

import json
import math
import random
import re
import shutil
import subprocess
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.writers import report
from pipeline.contracts import META_DIR
from pipeline.schema import PARQUET_SCHEMA, Document

# language -> {bucket: documents}; "it" has no LM: bucket "all", no perplexity.
LAYOUT = {
    "en": {"head": 31, "middle": 24, "tail": 40},
    "fr": {"head": 8, "middle": 6, "tail": 9},
    "zh": {"head": 5, "middle": 4, "tail": 6},
    "it": {"all": 4},
}
CUTS = {"en": (250.0, 480.0), "fr": (300.0, 520.0), "zh": (900.0, 1500.0)}  # (p30, p60)
DUPLICATE_LINES = [["We use cookies to improve your experience.", 41], ["Home", 77], ["© 2024 Example", 12]]


def _doc(lang: str, bucket: str, i: int, rng: random.Random) -> Document:
    if bucket == "all":
        perplexity = None
    else:
        p30, p60 = CUTS[lang]
        lo, hi = {"head": (p30 * 0.3, p30 * 0.99), "middle": (p30, p60 * 0.99), "tail": (p60, p60 * 4)}[bucket]
        perplexity = round(rng.uniform(lo, hi), 1)
    text = f"{lang} {bucket} document {i} " + "word " * rng.randrange(60, 400)
    return Document(
        url=f"https://{lang}.example/{bucket}/{i}", date_download="2024-05-18T00:00:00Z",
        digest="sha1:X", source_domain=f"{lang}.example", title="t", raw_content=text,
        length=len(text), nlines=1, cc_segment="seg", record_offset=i, original_nlines=3,
        original_length=len(text) + 50, line_ids=[0], language=lang,
        language_score=round(rng.uniform(0.5, 1.0), 2), perplexity=perplexity, bucket=bucket,
    )


def make_output(root: Path, cutoffs: bool = True, legacy: bool = False) -> Path:
    """A finished `cc100 corpus` output: Parquet tree, .cc100/stats.json, .cc100/cutoffs.csv
    (legacy: both at the top level, as older versions wrote them)."""
    rng = random.Random(0)
    out = root / "corpus"
    meta = out if legacy else out / META_DIR
    meta.mkdir(parents=True, exist_ok=True)
    rows_total = 0
    partitions = {}
    for lang, buckets in LAYOUT.items():
        for bucket, n in buckets.items():
            docs = [_doc(lang, bucket, i, rng) for i in range(n)]
            # en/head in two part files, like a multi-worker run
            chunks = [docs[: n // 2], docs[n // 2 :]] if (lang, bucket) == ("en", "head") else [docs]
            for k, chunk in enumerate(chunks):
                path = out / lang / bucket / f"part-{k:05d}-of-{len(chunks):05d}.parquet"
                path.parent.mkdir(parents=True, exist_ok=True)
                pq.write_table(pa.Table.from_pylist([d.to_row() for d in chunk], schema=PARQUET_SCHEMA), path)
            partitions[f"{lang}/{bucket}"] = {"documents": n, "files": len(chunks), "bytes": 1}
            rows_total += n
    counters = {
        "conversion_records": rows_total + 70,
        "docs_too_short": 30,
        "documents_read": rows_total + 40,
        "documents_emptied": 15,
        "documents_after_dedup": rows_total + 25,
        "duplicate_lines_removed": 912,
        "lid_dropped_threshold": 25,
        "lid_documents_out": rows_total,
        "documents_out": rows_total,
        **{f"documents:{k.replace('/', ':')}": v["documents"] for k, v in partitions.items()},
    }
    stats = {
        "command": "cc100 corpus", "config": {"min_len": 300, "lang_threshold": 0.5},
        "seconds": 12.5, "counters": counters, "partitions": partitions,
        "top_duplicate_lines": DUPLICATE_LINES,
    }
    (meta / "stats.json").write_text(json.dumps(stats))
    if cutoffs:
        langs = sorted(CUTS)
        lines = ["," + ",".join(langs)]
        for p in range(100):
            cells = []
            for lang in langs:
                p30, p60 = CUTS[lang]
                # piecewise linear through (30, p30) and (60, p60): strictly increasing
                cells.append(f"{p30 * (0.2 + 0.8 * p / 30) if p <= 30 else p30 + (p60 - p30) * (p - 30) / 30:.3f}")
            lines.append(f"{p}," + ",".join(cells))
        (meta / "cutoffs.csv").write_text("\n".join(lines) + "\n")
    return out


def parquet_truth(out: Path) -> dict[str, dict]:
    """Per-language documents/characters/buckets read independently of the report module."""
    truth: dict[str, dict] = {}
    for path in out.glob("*/*/part-*.parquet"):
        t = pq.read_table(path, columns=["language", "bucket", "length"]).to_pylist()
        for row in t:
            entry = truth.setdefault(row["language"], {"documents": 0, "characters": 0, "buckets": {}})
            entry["documents"] += 1
            entry["characters"] += row["length"]
            entry["buckets"][row["bucket"]] = entry["buckets"].get(row["bucket"], 0) + 1
    return truth


def cell(html_text: str, **attrs) -> str:
    selector = "".join(f'(?=[^>]*data-{k.replace("_", "-")}="{re.escape(v)}")' for k, v in attrs.items())
    m = re.search(rf"<td{selector}[^>]*>([^<]*)</td>", html_text)
    assert m, f"no cell {attrs}"
    return m.group(1)


def as_int(text: str) -> int:
    return int(text.replace(",", ""))


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    out = make_output(tmp_path_factory.mktemp("report"))
    assert report.main([str(out)]) == 0
    return out, (out / META_DIR / "report" / "index.html").read_text(encoding="utf-8")


def test_report_numbers_match_stats_and_parquet(rendered):
    out, page = rendered
    stats = json.loads((out / META_DIR / "stats.json").read_text())
    truth = parquet_truth(out)
    assert set(truth) == set(LAYOUT)
    for lang, entry in truth.items():
        assert as_int(cell(page, lang=lang, field="documents")) == entry["documents"]
        assert as_int(cell(page, lang=lang, field="characters")) == entry["characters"]
        for bucket, n in entry["buckets"].items():
            assert as_int(cell(page, lang=lang, field=f"bucket-{bucket}")) == n
    c = stats["counters"]
    expected_funnel = {
        "WET pages read": c["conversion_records"],
        "long enough": c["documents_read"],
        "after paragraph dedup": c["documents_after_dedup"],
        "language kept": c["lid_documents_out"],
        "written to Parquet": c["documents_out"],
    }
    for stage, value in expected_funnel.items():
        assert as_int(cell(page, funnel=stage)) == value
    assert 'data-funnel="after near-duplicate removal"' not in page  # optional, not in this run
    bucket_sums = {}
    for entry in truth.values():
        for bucket, n in entry["buckets"].items():
            bucket_sums[bucket] = bucket_sums.get(bucket, 0) + n
    for bucket, n in bucket_sums.items():
        assert as_int(cell(page, bucket=bucket)) == n
    assert as_int(cell(page, counter="duplicate_lines_removed")) == 912
    for line, count in DUPLICATE_LINES:
        assert re.search(rf">{re.escape(line)}</td><td data-duplicate-count=\"1\">{count:,}<", page)
    assert "data-warning" not in page


def test_report_draws_the_cutoffs_of_cutoffs_csv(rendered):
    out, page = rendered
    numbers = json.loads((out / META_DIR / "report" / "report.json").read_text())
    assert numbers["cutoffs_source"] == "cutoffs.csv"
    for lang, (p30, p60) in CUTS.items():
        assert numbers["cutoffs"][lang] == pytest.approx([p30, p60], abs=1e-3)
        assert float(cell(page, cutoff=f"{lang}-head").replace(",", "")) == pytest.approx(p30, abs=0.05)
        assert float(cell(page, cutoff=f"{lang}-tail").replace(",", "")) == pytest.approx(p60, abs=0.05)
    assert numbers["lang_threshold"] == 0.5


def test_report_writes_self_contained_html_and_pngs(rendered):
    out, page = rendered
    names = ["funnel.png", "languages.png", "perplexity.png", "language_score.png", "duplicate_lines.png",
             "lengths.png"]
    for name in names:
        data = (out / META_DIR / "report" / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000, name
    assert page.count('src="data:image/png;base64,') == len(names)
    assert "<img" in page and 'src="http' not in page  # nothing fetched from elsewhere


def test_report_without_cutoffs_derives_boundaries_from_buckets(tmp_path):
    out = make_output(tmp_path, cutoffs=False)
    assert report.main([str(out), "--output", str(tmp_path / "r")]) == 0
    numbers = json.loads((tmp_path / "r" / "report.json").read_text())
    assert numbers["cutoffs_source"] == "bucket boundaries"
    truth = report.load_corpus(out)
    for lang in CUTS:
        pp = {b: [p for l, bb, p in zip(truth.language, truth.bucket, truth.perplexity) if l == lang and bb == b]
              for b in ("head", "middle", "tail")}
        head_cut, tail_cut = numbers["cutoffs"][lang]
        assert max(pp["head"]) < head_cut < min(pp["middle"])
        assert max(pp["middle"]) < tail_cut < min(pp["tail"])
    assert "it" not in numbers["cutoffs"]  # no perplexity, no cutoffs


def test_report_flags_stats_that_disagree_with_parquet(tmp_path, capsys):
    out = make_output(tmp_path)
    stats = json.loads((out / META_DIR / "stats.json").read_text())
    stats["partitions"]["en/head"]["documents"] += 3
    stats["counters"]["documents_out"] += 3
    stats["counters"]["documents:zh:tail"] -= 1
    (out / META_DIR / "stats.json").write_text(json.dumps(stats))
    assert report.main([str(out)]) == 0
    page = (out / META_DIR / "report" / "index.html").read_text()
    assert "stats.json partition en/head: 34 documents, Parquet: 31" in page
    rows = sum(n for buckets in LAYOUT.values() for n in buckets.values())
    assert f"documents_out = {rows + 3}, but the Parquet files hold {rows} rows" in page
    assert "stats.json counter documents:zh:tail = 5, Parquet: 6" in page
    assert "warning: stats.json partition en/head" in capsys.readouterr().out


def test_report_survives_a_stats_json_without_known_keys(tmp_path):
    out = make_output(tmp_path)
    (out / META_DIR / "stats.json").write_text(json.dumps({"command": "cc100 corpus"}))
    assert report.main([str(out)]) == 0
    page = (out / META_DIR / "report" / "index.html").read_text()
    assert cell(page, funnel="WET pages read") == "n/a"
    assert "Not recorded by this run" in page
    assert as_int(cell(page, lang="en", field="documents")) == 95  # Parquet still counted
    assert not (out / META_DIR / "report" / "duplicate_lines.png").exists()


def test_report_writes_only_into_its_own_directory(tmp_path, capsys):
    out = make_output(tmp_path)
    mine = tmp_path / "slides"
    mine.mkdir()
    (mine / "index.html").write_text("my talk")
    assert report.main([str(out), "--output", str(mine)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"cc100 report: --output {mine}: not empty and has no .cc100/stage.json, so it was not "
                   f"written by cc100 report (or by a cc100 older than these markers): choose a new or empty "
                   f"directory; if it is an older cc100 report output, mark it with `python -m "
                   f"pipeline.contracts adopt {mine} --stage report` or delete it yourself"]
    assert sorted(p.name for p in mine.iterdir()) == ["index.html"] and (mine / "index.html").read_text() == "my talk"
    assert report.main([str(out)]) == 0 and report.main([str(out)]) == 0  # its own: rewritten


@pytest.mark.parametrize(
    "breakage, expected",
    [
        ("no_dir", "no such directory"),
        ("no_stats", "stats.json: not found"),
        ("bad_json", "stats.json: not readable JSON"),
        ("bad_parquet", "part-00000-of-00001.parquet: not a readable Parquet file"),
        ("bad_cutoffs", "cutoffs.csv: not a cc_net cutoff table"),
    ],
)
def test_report_bad_input_is_one_clear_line(tmp_path, capsys, breakage, expected):
    out = make_output(tmp_path)
    if breakage == "no_dir":
        out = tmp_path / "missing"
    elif breakage == "no_stats":
        (out / META_DIR / "stats.json").unlink()
    elif breakage == "bad_json":
        (out / META_DIR / "stats.json").write_text("{not json")
    elif breakage == "bad_parquet":
        (out / "fr" / "tail" / "part-00000-of-00001.parquet").write_bytes(b"PAR1 garbage")
    elif breakage == "bad_cutoffs":
        (out / META_DIR / "cutoffs.csv").write_text(",en\n0,5\n1,3\n")  # decreasing
    assert report.main([str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert expected in err[-1] and err[-1].startswith("cc100 report: ")
    assert not any("Traceback" in line for line in err)


def test_funnel_reads_the_first_candidate_that_exists():
    assert report.evaluate("a - b + c", {"a": 10, "b": 3, "c": 1}) == 8
    assert report.evaluate("a - missing", {"a": 10}) is None
    stats = {"counters": {"conversion_records": 100, "docs_too_short": 30, "documents_out": 50}}
    rows = {r["stage"]: r for r in report.funnel(stats)}
    assert rows["long enough"] == {"stage": "long enough", "documents": 70,
                                   "source": "conversion_records - docs_too_short"}
    assert rows["written to Parquet"]["documents"] == 50
    assert rows["language kept"]["documents"] is None
    assert "after near-duplicate removal" not in rows  # optional stage, absent
    stats["counters"]["documents_after_near_dedup"] = 60
    assert [r["documents"] for r in report.funnel(stats)][3] == 60


def test_cc100_dispatcher_runs_report(tmp_path):
    from cc100.cli import main as cc100

    out = make_output(tmp_path)
    assert cc100(["report", str(out), "--output", str(tmp_path / "via-cli")]) == 0
    assert (tmp_path / "via-cli" / "index.html").is_file()


def test_report_shows_dedup_tokens_lengths_domains_per_language(rendered):
    out, page = rendered
    numbers = json.loads((out / META_DIR / "report" / "report.json").read_text())
    rows = [r for p in sorted(out.glob("*/*/part-*.parquet")) for r in pq.read_table(p).to_pylist()]
    for lang, buckets in LAYOUT.items():
        mine = [r for r in rows if r["language"] == lang]
        # every test document had 3 paragraphs (2 removed) and a record 50 bytes longer (ASCII text)
        assert as_int(cell(page, dedup=f"{lang}-lines")) == 2 * len(mine)
        assert as_int(cell(page, dedup=f"{lang}-bytes")) == 50 * len(mine)
        assert as_int(cell(page, domain=f"{lang}-{lang}.example")) == len(mine)
        assert as_int(cell(page, tld=f"{lang}-example")) == len(mine)
        lengths = sorted(r["length"] for r in mine)
        assert as_int(cell(page, length=f"{lang}-p50")) == lengths[math.ceil(len(lengths) / 2) - 1]
        for bucket in buckets:
            texts = [r["raw_content"] for r in mine if r["bucket"] == bucket]
            assert as_int(cell(page, text=f"{lang}-{bucket}-tokens")) == sum(len(t.split()) for t in texts)
            assert as_int(cell(page, text=f"{lang}-{bucket}-characters")) == sum(map(len, texts))
            assert page.count(f'data-sample="{lang}-{bucket}"') == min(3, len(texts))
    funnel_lines = {r["stage"]: r["lines"] for r in numbers["text_funnel"]}
    assert funnel_lines == {"into paragraph dedup": None, "after paragraph dedup": None}  # no counters


def test_report_escapes_and_truncates_sample_documents(tmp_path):
    out = make_output(tmp_path)
    text = "<script>alert(1)</script> & more " + "z" * 2000
    doc = _doc("en", "head", 999, random.Random(1)).replace(
        raw_content=text, url="https://evil.example/?a=<b>", record_offset=999)
    path = out / "en" / "head" / "part-00009-of-00010.parquet"
    pq.write_table(pa.Table.from_pylist([doc.to_row()], schema=PARQUET_SCHEMA), path)
    assert report.main([str(out), "--samples", "200"]) == 0
    page = (out / META_DIR / "report" / "index.html").read_text()
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt; &amp; more" in page
    assert "https://evil.example/?a=&lt;b&gt;" in page
    assert "z" * report.SAMPLE_CHARS not in page and "z" * 500 in page  # cut, marked [...]


def test_report_reads_outputs_of_older_versions_with_a_deprecation_line(tmp_path, capsys):
    out = make_output(tmp_path, legacy=True)
    assert report.main([str(out), "--output", str(tmp_path / "r")]) == 0
    numbers = json.loads((tmp_path / "r" / "report.json").read_text())
    assert numbers["cutoffs_source"] == "cutoffs.csv" and numbers["funnel"][0]["documents"] is not None
    assert "deprecated" in capsys.readouterr().err


def test_report_out_is_the_deprecated_spelling_of_output(tmp_path, capsys):
    out = make_output(tmp_path)
    assert report.main([str(out), "--out", str(tmp_path / "old")]) == 0
    assert (tmp_path / "old" / "index.html").is_file()
    assert "--out is deprecated; use --output" in capsys.readouterr().err
    assert report.main([str(out), "--samples", "-1"]) == 2


def make_many_languages(root: Path, n: int = 100) -> Path:
    """A corpus of n languages (names like l000), 2-12 documents each, for the layout checks."""
    rng = random.Random(5)
    out = root / "many"
    partitions = {}
    for k in range(n):
        lang = f"l{k:03d}"
        docs = [_doc("en", "head", i, rng).replace(language=lang, source_domain=f"{lang}.example",
                                                   url=f"https://{lang}.example/{i}") for i in range(2 + k % 11)]
        path = out / lang / "head" / "part-00000-of-00001.parquet"
        path.parent.mkdir(parents=True)
        pq.write_table(pa.Table.from_pylist([d.to_row() for d in docs], schema=PARQUET_SCHEMA), path)
        partitions[f"{lang}/head"] = {"documents": len(docs), "files": 1, "bytes": 1}
    (out / META_DIR).mkdir()
    (out / META_DIR / "stats.json").write_text(json.dumps({"partitions": partitions, "counters": {
        "documents_out": sum(p["documents"] for p in partitions.values())}}))
    return out


CHROMIUM = next((shutil.which(name) for name in ("chromium", "chromium-browser", "google-chrome")
                 if shutil.which(name)), None)
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="no chromium (Debian: apt-get install -y chromium)")
def test_report_of_100_languages_renders_in_headless_chromium(tmp_path):
    """docs/report.md's browser check: the page parses, every language is a row, the long
    tables scroll inside a box and the per-language details start collapsed."""
    out = make_many_languages(tmp_path)
    assert report.main([str(out), "--max-languages", "24"]) == 0
    index = out / META_DIR / "report" / "index.html"
    common = [CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run([*common, "--dump-dom", index.as_uri()], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert dom.stdout.count('data-field="documents"') == 100
    assert dom.stdout.count('<details class="lang"') == 200 and len(re.findall(r'<details class="lang" open', dom.stdout)) == 1
    assert 'class="scroll"' in dom.stdout
    shot = tmp_path / "shot.png"
    proc = subprocess.run([*common, "--window-size=1280,2000", f"--screenshot={shot}", index.as_uri()],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and shot.is_file(), proc.stderr[-2000:]
    from PIL import Image

    colors = Image.open(shot).convert("RGB").getcolors(maxcolors=1 << 20)
    assert colors is not None and len(colors) > 50  # text and plots drawn, not a blank page


def test_report_counts_sentencepiece_pieces_with_a_model(tmp_path, capsys):
    import sentencepiece as spm

    out = make_output(tmp_path)
    rows = [r for p in sorted(out.glob("*/*/part-*.parquet")) for r in pq.read_table(p).to_pylist()]
    prefix = tmp_path / "sp"
    spm.SentencePieceTrainer.train(sentence_iterator=iter([r["raw_content"] for r in rows]),
                                   model_prefix=str(prefix), vocab_size=40, model_type="bpe")
    model = Path(f"{prefix}.model")
    assert report.main([str(out), "--sentencepiece", str(model)]) == 0
    page = (out / META_DIR / "report" / "index.html").read_text()
    sp = spm.SentencePieceProcessor(model_file=str(model))
    for lang, buckets in LAYOUT.items():
        for bucket in buckets:
            texts = [r["raw_content"] for r in rows if r["language"] == lang and r["bucket"] == bucket]
            assert as_int(cell(page, text=f"{lang}-{bucket}-pieces")) == sum(len(ids) for ids in sp.encode(texts))
    assert report.main([str(out), "--sentencepiece", str(tmp_path / "missing.model")]) == 2
    assert "--sentencepiece" in capsys.readouterr().err.strip().splitlines()[-1]
