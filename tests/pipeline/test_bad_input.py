"""Every bad input of the issue: a clear one-line error before the pipeline starts, or a skip
that is counted and reported - never a traceback, never a silent loss."""

from __future__ import annotations

import gzip
import io
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.contracts import part_files, write_marker
from pipeline.corpus import main
from pipeline.readers.wet import (
    BAD_HEADER,
    CORRUPT_GZIP,
    GARBAGE,
    READ_CHUNK,
    RECORD_TOO_LARGE,
    TRUNCATED_RECORD,
    WetFileReport,
    documents_from_records,
    iter_wet_records,
    read_wet_file,
)
from tests.pipeline.corpus_helpers import gzip_members, member_offsets, warc_record, warcinfo


WORDS = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet"]


def _body(tag: str, i: int) -> str:
    """A page whose paragraphs are unique to (tag, i) even after digits are normalised to 0."""
    lines = [f"{tag} title {i}"] + [f"{tag} record {WORDS[i]} paragraph {WORDS[j]}: " + "text " * 12 for j in range(8)]
    return "\n".join(lines) + "\n"


def _records(tag: str, n: int = 5) -> list[bytes]:
    return [warc_record(_body(tag, i), url=f"http://{tag}.example/{i}") for i in range(n)]


def _parse(data: bytes) -> tuple[list, WetFileReport]:
    report = WetFileReport("mem")
    return list(iter_wet_records(io.BytesIO(data), "mem", report)), report


def _urls(records) -> list[str]:
    return [r.headers.get("warc-target-uri") for r in records]


# -- truncated / corrupt gzip ---------------------------------------------------------------


@pytest.mark.parametrize("cut_member", [2, 4])
def test_truncated_gzip_keeps_the_records_before_the_cut(cut_member):
    members = [gzip.compress(r, mtime=0) for r in _records("t")]
    data = b"".join(members[:cut_member]) + members[cut_member][: len(members[cut_member]) // 2]
    records, report = _parse(data)
    assert _urls(records) == [f"http://t.example/{i}" for i in range(cut_member)]
    assert records[-1].body == _body("t", cut_member - 1).encode()  # complete, not cut
    assert report.skipped[TRUNCATED_RECORD] == 1
    assert report.error.startswith("truncated gzip")
    assert any("truncated gzip" in p for p in report.problems)


def test_corrupt_gzip_member_is_skipped_when_caught_at_its_start():
    members = [gzip.compress(r, mtime=0) for r in _records("c")]
    bad = bytearray(members[3])
    bad[20:40] = b"\xff" * 20  # destroy the deflate stream of a small member
    records, report = _parse(b"".join(members[:3]) + bytes(bad) + b"".join(members[4:]))
    assert _urls(records) == ["http://c.example/0", "http://c.example/1", "http://c.example/2", "http://c.example/4"]
    assert report.skipped == {CORRUPT_GZIP: 1} and report.garbage_bytes == 0
    assert report.error is None


def _big_text(n: int, seed: int = 1) -> str:
    rng = random.Random(seed)
    return "Big page\n" + "".join(rng.choice("abcdefghijklmnopqrstuvwxyz \n") for _ in range(n))


def test_corruption_deep_inside_a_large_member_costs_that_member_only():
    """The damaged member straddles several 64 KiB reads (the error shows up late): reading
    resumes at the next member, which is kept."""
    members = [gzip.compress(r, mtime=0) for r in _records("d", 2)]
    big = bytearray(gzip.compress(warc_record(_big_text(300_000), url="http://d.example/big"), mtime=0))
    assert len(big) > 2 * 64 * 1024  # decompressed over several reads
    big[150_000:150_100] = b"\x00" * 100
    records, report = _parse(b"".join(members) + bytes(big) + members[0])
    assert _urls(records) == ["http://d.example/0", "http://d.example/1", "http://d.example/0"]
    assert report.skipped == {CORRUPT_GZIP: 1}
    assert report.error is None and "1 skipped (corrupt_gzip)" in report.problems


def test_a_corrupt_member_larger_than_the_hold_limit_costs_the_record_in_progress():
    """A member that holds many records (not Common Crawl's layout) is passed on as it is
    decoded once it is large; the records decoded before the damage are kept, the one in
    progress is dropped, and the next member is read. (Deflate may decode some garbage before
    it notices the damage: skipped and counted like any garbage.)"""
    texts = [_big_text(3000, seed=i) for i in range(40)]
    one_member = gzip.compress(b"".join(warc_record(t, url=f"http://m.example/{i}") for i, t in enumerate(texts)), mtime=0)
    damaged = bytearray(one_member)
    damaged[len(damaged) * 3 // 4] ^= 0x55
    after = gzip.compress(warc_record(_body("n", 0), url="http://n.example/0"), mtime=0)
    report = WetFileReport("mem")
    records = list(iter_wet_records(io.BytesIO(bytes(damaged) + after), "mem", report, max_record_bytes=4096))
    urls = _urls(records)
    assert urls[-1] == "http://n.example/0"
    kept = urls[:-1]
    assert 10 < len(kept) < 40 and kept == [f"http://m.example/{i}" for i in range(len(kept))]
    assert all(r.body == texts[i].encode() for i, r in enumerate(records[:-1]))
    assert report.skipped[CORRUPT_GZIP] == 1 and report.error is None


def test_one_flipped_bit_in_a_real_sample_costs_one_record(shared_data):
    """#14 §3: a flipped bit in a member that straddles a 64 KiB read used to end the whole file.

    Here: one bit flipped in the deflate data of every 10th member of the real sample, one at a
    time; exactly that member's record is lost, every other record is read byte for byte."""
    data = (shared_data / "wet" / "CC-MAIN-2019-30-sample-00000.warc.wet.gz").read_bytes()
    starts = member_offsets(data)
    original, _ = _parse(data)
    assert len(starts) == len(original) == 341
    straddling = [i for i in range(len(starts) - 1) if starts[i] // READ_CHUNK != starts[i + 1] // READ_CHUNK]
    for i in sorted(set(range(1, len(starts), 10)) | set(straddling[:5])):
        end = starts[i + 1] if i + 1 < len(starts) else len(data)
        damaged = bytearray(data)
        damaged[(starts[i] + 10 + end) // 2] ^= 0x10  # inside the deflate data
        records, report = _parse(bytes(damaged))
        expected = original[:i] + original[i + 1 :]
        assert [(r.headers, r.body) for r in records] == [(r.headers, r.body) for r in expected], i
        assert report.skipped == {CORRUPT_GZIP: 1} and report.error is None


@pytest.mark.parametrize("prefix", [b"x", b"WARC/1.0\n", b"\x1e\x8b\x08"])
def test_a_member_that_ends_exactly_at_a_read_boundary_does_not_end_the_file(shared_data, prefix):
    """Found by the fuzzer: garbage before the first member (even a version line, or a damaged
    gzip magic) shifts a member end onto a 64 KiB read boundary; every record is still read."""
    data = (shared_data / "wet" / "CC-MAIN-2019-30-sample-00000.warc.wet.gz").read_bytes()
    starts = member_offsets(data)
    j = next(k for k in range(1, len(starts)) if READ_CHUNK - starts[k] > len(prefix))
    garbage = prefix + b"x" * (READ_CHUNK - starts[j] - len(prefix))  # member j - 1 ends at 64 KiB
    records, report = _parse(garbage + data)
    assert len(records) == 341 and report.skipped == {GARBAGE: 1} and report.garbage_bytes == len(garbage)


# -- garbage ----------------------------------------------------------------------------------


@pytest.mark.parametrize("compressed", [True, False])
def test_garbage_between_records_is_skipped_and_counted(compressed):
    records = _records("g")
    garbage = b"\x00\xff\xfeNOT A RECORD\r\nstill garbage\r\n\r\n"
    parts = [b"junk at the start\n", *records[:2], garbage, *records[2:], b"trailing junk"]
    data = gzip_members(parts) if compressed else b"".join(parts)
    parsed, report = _parse(data)
    assert _urls(parsed) == [f"http://g.example/{i}" for i in range(5)]
    assert report.skipped[GARBAGE] == 3
    assert report.garbage_bytes == len(b"junk at the start\n") + len(garbage) + len(b"trailing junk")


def test_raw_garbage_between_gzip_members_is_skipped_and_counted():
    members = [gzip.compress(r, mtime=0) for r in _records("z")]
    garbage = b"\x00\x01not gzip at all\x1f\x8b but no member" * 3  # even a stray magic
    parsed, report = _parse(b"".join(members[:2]) + garbage + b"".join(members[2:]) + b"\xff" * 5)
    assert _urls(parsed) == [f"http://z.example/{i}" for i in range(5)]
    assert report.skipped[GARBAGE] == 2 and report.garbage_bytes == len(garbage) + 5
    assert report.error is None


@pytest.mark.parametrize("compressed", [True, False])
@pytest.mark.parametrize("garbage", [b"no newline before the next record", b"\x00\xff", b"WARC/1.0 but not a version line",
                                     b"WARC/1.0\r\nnot: a\r\nheader block"])
def test_garbage_without_a_line_end_does_not_swallow_the_next_record(compressed, garbage):
    """#14 §3 / #15 §6: garbage (plain, or a gzip member of its own) that does not end with a
    line end right before the next `WARC/1.0`; even a fake version line inside it."""
    records = _records("n")
    parts = [*records[:2], garbage, *records[2:]]
    parsed, report = _parse(gzip_members(parts) if compressed else b"".join(parts))
    assert _urls(parsed) == [f"http://n.example/{i}" for i in range(5)]
    assert all(r.body == _body("n", i).encode() for i, r in enumerate(parsed))
    assert sum(report.skipped.values()) == 1 and report.content_length_mismatch == 0


def test_a_bad_header_block_resynchronises_right_after_its_version_line():
    """A header block that runs into the next record (its blank line is missing) costs itself only."""
    records = _records("b")
    broken = b"WARC/1.0\r\nWARC-Type: conversion\r\nno colon here\r\n"  # no blank line, no body
    parsed, report = _parse(b"".join([records[0], broken, *records[1:]]))
    assert _urls(parsed) == [f"http://b.example/{i}" for i in range(5)]
    assert report.skipped == {BAD_HEADER: 1}


def test_malformed_header_skips_one_record_only():
    records = _records("h")
    broken = records[1].replace(b"WARC-Date: ", b"WARC-Date ")  # a header line without ':'
    parsed, report = _parse(gzip_members([records[0], broken, *records[2:]]))
    assert _urls(parsed) == ["http://h.example/0", "http://h.example/2", "http://h.example/3", "http://h.example/4"]
    assert report.skipped[BAD_HEADER] == 1


# -- lying Content-Length ----------------------------------------------------------------------


@pytest.mark.parametrize("length", ["too_short", "too_long", "much_too_long", "missing", "not_a_number"])
def test_wrong_content_length_is_repaired_and_counted(length):
    body = _body("liar", 1)
    n = len(body.encode())
    value = {"too_short": n - 100, "too_long": n + 40, "much_too_long": n + 5000, "missing": None, "not_a_number": "12ab"}[length]
    liar = warc_record(body, url="http://liar.example/1", content_length=0)
    if value is None:
        liar = liar.replace(b"Content-Length: 0\r\n", b"")
    else:
        liar = liar.replace(b"Content-Length: 0\r\n", f"Content-Length: {value}\r\n".encode())
    records = _records("ok")
    parsed, report = _parse(gzip_members([records[0], liar, *records[1:]]))
    assert _urls(parsed) == ["http://ok.example/0", "http://liar.example/1"] + [f"http://ok.example/{i}" for i in range(1, 5)]
    assert parsed[1].body.rstrip(b"\n") == body.encode().rstrip(b"\n")  # only the line end may differ
    assert all(r.body == _body("ok", i).encode() for r, i in zip(parsed[2:], range(1, 5)))
    assert report.content_length_mismatch == 1
    assert sum(report.skipped.values()) == 0


def test_a_correct_content_length_over_the_limit_is_counted_only_as_too_large():
    """#15 §4/§6: a record over --max-record-bytes is skipped and counted once, as too large
    (not also as a wrong Content-Length); the records around it are kept."""
    records = _records("big")
    large = warc_record(_body("large", 0) * 40, url="http://large.example/")  # about 17 KB, correct length
    for parts in ([records[0], large, *records[1:]], [*records, large]):
        report = WetFileReport("mem")
        parsed = list(iter_wet_records(io.BytesIO(gzip_members(parts)), "mem", report, max_record_bytes=8192))
        assert _urls(parsed) == [f"http://big.example/{i}" for i in range(5)]
        assert report.skipped == {RECORD_TOO_LARGE: 1} and report.content_length_mismatch == 0
    parsed, report = _parse(gzip_members([records[0], large, *records[1:]]))  # within the default limit
    assert len(parsed) == 6 and not report.skipped


@pytest.mark.parametrize("value", ["99999999999999999999", "-5", "1e9", ""])
def test_a_huge_or_negative_content_length_that_lies_is_repaired(value):
    records = _records("h")
    liar = warc_record(_body("hl", 0), url="http://hl.example/", content_length=0).replace(
        b"Content-Length: 0\r\n", f"Content-Length: {value}\r\n".encode())
    parsed, report = _parse(gzip_members([records[0], liar, *records[1:]]))
    assert _urls(parsed) == ["http://h.example/0", "http://hl.example/"] + [f"http://h.example/{i}" for i in range(1, 5)]
    assert report.content_length_mismatch == 1 and not report.skipped


def test_max_record_bytes_must_be_positive():
    with pytest.raises(ValueError, match="max_record_bytes must be >= 1"):
        list(iter_wet_records(io.BytesIO(b""), "mem", max_record_bytes=0))


def test_wrong_content_length_of_the_last_record():
    records = _records("end", 2)
    last = records[1].replace(b"Content-Length: ", b"Content-Length: 9")  # far too long
    parsed, report = _parse(b"".join([records[0], last]))
    assert _urls(parsed) == ["http://end.example/0", "http://end.example/1"]
    assert parsed[1].body.rstrip(b"\r\n") == _body("end", 1).encode().rstrip(b"\n")
    assert report.content_length_mismatch == 1


# -- invalid UTF-8, empty files, non-WET WARC ---------------------------------------------------


def test_invalid_utf8_is_replaced_counted_and_kept():
    body = _body("u", 0).encode().replace(b"paragraph delta", b"paragraph \xff\xfedelta caf\xe9")
    report = WetFileReport("mem")
    records = iter_wet_records(io.BytesIO(gzip_members([warc_record(body, url="http://u/")])), "mem", report)
    (doc,) = documents_from_records(records, "mem", 0, report)
    assert report.invalid_utf8 == 1
    assert "paragraph \ufffd\ufffddelta caf\ufffd" in doc.raw_content
    assert any("invalid UTF-8" in p for p in report.problems)


@pytest.mark.parametrize("content", [b"", gzip.compress(b""), b"\r\n\r\n"])
def test_empty_file_reads_zero_records_and_is_reported(tmp_path, content):
    path = tmp_path / "empty.warc.wet.gz"
    path.write_bytes(content)
    report = WetFileReport(str(path))
    assert list(read_wet_file(str(path), 0, report)) == []
    assert report.records == 0 and report.error is None
    assert report.problems == ["empty file: no WARC records"]


def test_non_wet_warc_gives_no_documents_and_says_so(shared_data):
    path = shared_data / "wet" / "cc_resiliparse_warcfile.warc.gz"  # request/response/metadata
    report = WetFileReport(str(path))
    assert list(read_wet_file(str(path), 0, report)) == []
    assert report.records == 50 and report.conversion_records == 0
    assert report.non_conversion_records == 50
    assert report.problems == ["no conversion records (not a WET file?)"]


def test_unreadable_path_is_reported_not_raised(tmp_path):
    report = WetFileReport("x")
    assert list(read_wet_file(str(tmp_path / "gone.warc.wet.gz"), 0, report)) == []
    assert report.error.startswith("cannot open")


# -- before the pipeline starts: errors naming the argument ------------------------------------


def _main(argv, capsys):
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_glob_matching_nothing_is_a_clear_error(tmp_path, capsys):
    good = tmp_path / "a.warc.wet.gz"
    good.write_bytes(gzip_members(_records("a")))
    out = tmp_path / "out"
    code, _, err = _main(["--input", str(good), "--input", str(tmp_path / "nope-*.wet.gz"), "--output", str(out)], capsys)
    assert code == 2
    assert err.strip() == f"cc100 corpus: --input {str(tmp_path / 'nope-*.wet.gz')!r} matches no files"
    assert sorted(os.listdir(tmp_path)) == ["a.warc.wet.gz"]  # nothing created
    code, _, err = _main(["--input", str(tmp_path), "--output", str(out)], capsys)
    assert code == 2 and "is a directory; give a glob such as" in err


def test_unwritable_output_is_a_clear_error(tmp_path, capsys):
    good = tmp_path / "a.warc.wet.gz"
    good.write_bytes(gzip_members(_records("a")))
    blocker = tmp_path / "file"
    blocker.write_text("a file, not a directory")
    code, _, err = _main(["--input", str(good), "--output", str(blocker / "out")], capsys)
    assert code == 2
    assert err.startswith(f"cc100 corpus: --output {blocker / 'out'}: cannot write there")
    assert len(err.strip().splitlines()) == 1
    if os.geteuid() != 0:  # permissions do not stop root
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        code, _, err = _main(["--input", str(good), "--output", str(locked / "out")], capsys)
        assert code == 2 and "cannot write there" in err


def test_output_holding_a_finished_run_or_other_files_is_refused(tmp_path, capsys):
    good = tmp_path / "a.warc.wet.gz"
    good.write_bytes(gzip_members(_records("a")))
    finished = tmp_path / "finished"
    write_marker(finished, "corpus")
    (finished / ".cc100" / "stats.json").write_text("{}")
    code, _, err = _main(["--input", str(good), "--output", str(finished)], capsys)
    assert code == 2 and "already holds a finished cc100 corpus run" in err and "--overwrite" in err
    older = tmp_path / "older"  # an output of an older version: no marker, stats.json at the top level
    older.mkdir()
    (older / "stats.json").write_text("{}")
    for flags in ([], ["--overwrite"]):
        code, _, err = _main(["--input", str(good), "--output", str(older), *flags], capsys)
        assert code == 2 and "has no .cc100/stage.json" in err
        assert f"python -m pipeline.contracts adopt {older} --stage corpus" in err
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    code, _, err = _main(["--input", str(good), "--output", str(other), "--overwrite"], capsys)
    assert code == 2 and "has no .cc100/stage.json, so it was not written by cc100 corpus" in err
    assert (other / "notes.txt").read_text() == "mine"
    assert not list(tmp_path.glob("*.tmp-*"))  # no staging left behind


def test_overwrite_replaces_only_a_directory_the_corpus_job_wrote(tmp_path, capsys):
    """The issue's case: a stats.json is not proof; only the stage's own marker is."""
    good = tmp_path / "a.warc.wet.gz"
    good.write_bytes(gzip_members(_records("a")))
    precious = tmp_path / "precious"
    (precious / "sub").mkdir(parents=True)
    (precious / "stats.json").write_text('{"tool": "other"}')
    (precious / "sub" / "thesis.tex").write_text("x")
    code, _, err = _main(["--input", str(good), "--output", str(precious), "--overwrite"], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert f"--output {precious}: not empty and has no .cc100/stage.json" in err
    assert (precious / "sub" / "thesis.tex").read_text() == "x"

    vocab = tmp_path / "vocab"  # another stage's output
    write_marker(vocab, "vocab")
    code, _, err = _main(["--input", str(good), "--output", str(vocab), "--overwrite"], capsys)
    assert code == 2 and "holds the output of cc100 vocab (.cc100/stage.json), not of cc100 corpus" in err

    real = tmp_path / "real"  # a link to a corpus output: never followed to replace its target
    write_marker(real, "corpus")
    (real / "stats.json").write_text("{}")
    (tmp_path / "link").symlink_to(real)
    code, _, err = _main(["--input", str(good), "--output", str(tmp_path / "link"), "--overwrite"], capsys)
    assert code == 2 and "is a symbolic link" in err
    assert (real / "stats.json").read_text() == "{}"
    assert not list(tmp_path.glob("*.tmp-*"))


def test_input_file_name_that_is_not_utf8_is_refused_before_any_work(tmp_path, capsys):
    bad = os.path.join(os.fsencode(tmp_path), b"seg\xff.warc.wet.gz")
    with open(bad, "wb") as f:
        f.write(gzip_members(_records("a")))
    out = tmp_path / "out"
    code, _, err = _main(["--input", str(tmp_path / "*.warc.wet.gz"), "--output", str(out)], capsys)
    assert code == 2
    assert err.strip().endswith(r"the file name '" + str(tmp_path) + r"/seg\udcff.warc.wet.gz' is not valid "
                                "UTF-8; rename the file")
    assert not out.exists() and not (tmp_path / "out.work").exists()
    good = tmp_path / "a.warc.wet.gz"
    good.write_bytes(gzip_members(_records("a")))
    for flag in ("--output", "--work-dir"):  # recorded in stats.json: refused before the run, not after it
        argv = ["--input", str(good), "--output", str(out), flag, os.fsdecode(os.fsencode(tmp_path) + b"/o\xff")]
        code, _, err = _main(argv, capsys)
        assert code == 2 and err == f"cc100 corpus: {flag} '{tmp_path}/o\\udcff': the path is not valid UTF-8; choose another name\n"
    assert sorted(os.listdir(tmp_path)) == ["a.warc.wet.gz", os.fsdecode(b"seg\xff.warc.wet.gz")]


REPO_ROOT = Path(__file__).resolve().parents[2]
FULL_DISK = """
import errno, sys
import pipeline.writers.parquet
from pipeline.corpus import main

def full_disk(path, docs, schema):
    raise OSError(errno.ENOSPC, "No space left on device", path)

pipeline.writers.parquet.write_parquet = full_disk  # the in-process runner calls it
sys.exit(main(sys.argv[1:]))
"""


def test_full_disk_is_one_line_and_keeps_the_previous_output(tmp_path):
    """ENOSPC simulated by patching the Parquet write, in a process of its own: the logging a
    user sees is the command's (in-process, pytest's log capture would hide Beam's traceback)."""
    good = tmp_path / "a.warc.wet.gz"
    good.write_bytes(gzip_members(_records("a")))
    previous = tmp_path / "out"
    write_marker(previous, "corpus")
    (previous / "stats.json").write_text('{"run": "previous"}')

    proc = subprocess.run([sys.executable, "-c", FULL_DISK, "--input", str(good), "--output", str(previous),
                           "--overwrite", "--lang-threshold", "0", "--workers", "1"],
                          capture_output=True, text=True, timeout=600, cwd=REPO_ROOT)
    code, out, err = proc.returncode, proc.stdout, proc.stderr
    assert code == 1, out + err
    failed = [line for line in err.splitlines() if line.startswith("cc100 corpus:")]
    assert len(failed) == 1 and "Traceback" not in err
    assert failed[0].startswith(f"cc100 corpus: failed: no space left on device writing {previous}.tmp-")
    assert failed[0].endswith(".parquet")
    assert (previous / "stats.json").read_text() == '{"run": "previous"}'
    assert sorted(p.name for p in previous.iterdir()) == [".cc100", "stats.json"]
    assert not list(tmp_path.glob("*.tmp-*")) and not list(tmp_path.glob("*.old-*"))


@pytest.mark.parametrize("what", ["not-a-table", "header-only", "no-30-60", "empty-lm-dir"])
def test_model_flags_that_would_be_silently_wrong_are_refused_before_any_work(tmp_path, capsys, what):
    good = tmp_path / "a.warc.wet.gz"
    good.write_bytes(gzip_members(_records("a")))
    table = tmp_path / "table.csv"
    table.write_text({"not-a-table": "myhost\n", "header-only": ",en,fr\n",
                      "no-30-60": ",en\n0,1\n1,2\n"}.get(what, ""))
    empty = tmp_path / "lm"
    empty.mkdir()
    flags = ["--lm-dir", str(empty)] if what == "empty-lm-dir" else ["--cutoffs", str(table)]
    out = tmp_path / "out"
    code, _, err = _main(["--input", str(good), "--output", str(out), *flags], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1
    expected = {"not-a-table": f"{table}: not a cutoff table: line 1 names no language column",
                "header-only": f"{table}: percentiles 30 and 60 missing for en, fr",
                "no-30-60": f"{table}: percentiles 30 and 60 missing for en",
                "empty-lm-dir": f"{empty}: no scoring models in the LM directory"}[what]
    assert err.startswith(f"cc100 corpus: {expected}")
    assert not out.exists() and not list(tmp_path.glob("out.*"))


def test_worker_traceback_becomes_its_last_exception_line():
    """Portable runners report a worker's exception as the text of its traceback."""
    from pipeline.corpus import failure_line

    worker = ("Traceback (most recent call last):\n  File \"apache_beam/runners/worker/operations.py\", "
              "line 1, in process\nOSError: [Errno 28] No space left on device: '/o.tmp-1/en/all/"
              "part-00000-of-00001.parquet' [while running 'WriteByLanguage/WriteParquet']\n")
    assert failure_line(RuntimeError(worker)) == ("no space left on device writing "
                                                  "/o.tmp-1/en/all/part-00000-of-00001.parquet")
    other = "Traceback (most recent call last):\n  File \"x\", line 1\nKeyError: 'lang'\n"
    assert failure_line(RuntimeError(other)) == "KeyError: 'lang'"
    assert failure_line(ValueError("first\nsecond")) == "ValueError: first"


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--workers", "0"], "--workers must be >= 1"),
        (["--min-len", "-1"], "--min-len must be >= 0"),
        (["--max-record-bytes", "0"], "--max-record-bytes must be >= 1"),
        (["--dedup-group-size", "0"], "--dedup-group-size must be >= 1"),
        (["--dedup", "exact"], "invalid choice: 'exact'"),
        (["--min_len", "5"], "unrecognized arguments (neither cc100 corpus flags nor Beam options): --min_len"),
    ],
)
def test_bad_flags_are_usage_errors(tmp_path, capsys, flags, message):
    code, _, err = _main(["--input", "x", "--output", str(tmp_path / "o"), *flags], capsys)
    assert code == 2 and message in err


# -- end to end, through the console script ---------------------------------------------------


@pytest.mark.slow
def test_console_script_reports_every_bad_file_and_keeps_the_good_records(tmp_path):
    """`cc100 corpus` as a user runs it, on a directory holding one file of each bad kind."""
    wet = tmp_path / "wet"
    wet.mkdir()
    good = _records("good")
    members = [gzip.compress(r, mtime=0) for r in _records("trunc")]
    (wet / "01-good.warc.wet.gz").write_bytes(gzip_members([warcinfo(), *good]))
    (wet / "02-truncated.warc.wet.gz").write_bytes(b"".join(members[:3]) + members[3][: len(members[3]) // 2])
    (wet / "03-garbage.warc.wet.gz").write_bytes(gzip_members([*_records("garb")[:2], b"\x00garbage\xff\r\n", *_records("garb")[2:]]))
    liar = warc_record(_body("liar", 9), url="http://liar.example/9", content_length=17)
    (wet / "04-liar.warc.wet.gz").write_bytes(gzip_members([_records("l2")[0], liar, *_records("l2")[1:]]))
    utf8 = warc_record(_body("utf", 0).encode().replace(b"text", b"t\xffxt", 1), url="http://utf.example/0")
    (wet / "05-utf8.warc.wet.gz").write_bytes(gzip_members([utf8]))
    (wet / "06-empty.warc.wet.gz").write_bytes(b"")
    (wet / "07-response.warc.gz").write_bytes(gzip_members([warc_record("HTTP/1.1 200 OK\r\n\r\n<html>", warc_type="response")]))

    cc100 = Path(sys.executable).with_name("cc100")
    assert cc100.exists(), "the cc100 console script is missing: run `make setup`"
    out = tmp_path / "out"
    # --lang-threshold 0: LID keeps every document (this test is about reading, not LID).
    proc = subprocess.run([str(cc100), "corpus", "--input", str(wet / "*"), "--output", str(out), "--min-len", "100",
                           "--lang-threshold", "0"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "read " in proc.stderr and "records/s" in proc.stderr  # progress lines

    stats = json.loads((out / ".cc100" / "stats.json").read_text())
    c = stats["counters"]
    assert c["files_read"] == 7
    assert c["files_truncated"] == 1 and c["bad_wet_record_truncated_record"] == 1
    assert c["bad_wet_record_garbage"] == 1
    assert c["content_length_mismatch"] == 1
    assert c["invalid_utf8_records"] == 1
    assert c["files_empty"] == 1
    assert c["files_without_conversion_records"] == 1
    problems = {Path(p["path"]).name: " ".join(p["problems"]) for p in stats["problem_files"]}
    assert set(problems) == {"02-truncated.warc.wet.gz", "03-garbage.warc.wet.gz", "04-liar.warc.wet.gz",
                             "05-utf8.warc.wet.gz", "06-empty.warc.wet.gz", "07-response.warc.gz"}
    assert "truncated gzip" in problems["02-truncated.warc.wet.gz"]
    assert "not a WET file" in problems["07-response.warc.gz"]
    for name in problems:  # the summary names every file with a problem
        assert name in proc.stdout

    table = pa.concat_tables([pq.read_table(p) for p in part_files(out)])
    urls = set(table.column("url").to_pylist())
    expected = {f"http://good.example/{i}" for i in range(5)} | {f"http://trunc.example/{i}" for i in range(3)}
    expected |= {f"http://garb.example/{i}" for i in range(5)} | {f"http://l2.example/{i}" for i in range(5)}
    expected |= {"http://liar.example/9", "http://utf.example/0"}
    assert urls == expected
    assert c["documents_out"] == len(expected) == table.num_rows


@pytest.mark.slow
def test_max_record_bytes_flag_skips_and_counts_a_large_record_end_to_end(tmp_path, capsys):
    """--max-record-bytes reaches the reader: the large record is counted once, as too large."""
    wet = tmp_path / "a.warc.wet.gz"
    large = warc_record(_body("large", 0) * 40, url="http://large.example/")  # about 17 KB
    wet.write_bytes(gzip_members([warcinfo(), *_records("e")[:2], large, *_records("e")[2:]]))
    out = tmp_path / "out"
    code = main(["--input", str(wet), "--output", str(out), "--min-len", "100", "--lang-threshold", "0",
                 "--max-record-bytes", "8192"])
    assert code == 0, capsys.readouterr().err
    stats = json.loads((out / ".cc100" / "stats.json").read_text())
    c = stats["counters"]
    assert c["bad_wet_record_record_too_large"] == 1 and c["bad_wet_record"] == 1
    assert c.get("content_length_mismatch", 0) == 0
    assert c["documents_read"] == 5 and stats["config"]["max_record_bytes"] == 8192
    assert "1 too large" in capsys.readouterr().out
