"""`cc100 corpus --snapshot`: segments fetched inside the job, faults, failed segments, resume.

A CCServer on 127.0.0.1 serves a snapshot whose wet.paths.gz lists three real WET files (the two
CC-MAIN-2019-30 samples and the whirlwind file). One fault-free run is the reference; the other
runs inject faults (429 + Retry-After, 503, reset mid-body, truncated body, a gzip cut short,
permanently missing or failing segments) and are compared with it table by table. Backoff is
made tiny with the hidden --download-backoff flag; the one Retry-After costs one real second.
"""

from __future__ import annotations

import gzip
import json
import os
import pickle
import zlib
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from pipeline.readers.download import process_slots
from pipeline.writers.parquet import CorpusIOError
from pipeline.corpus import main
from pipeline.options import parse_args
from pipeline.schema import Document
from pipeline.readers.snapshot import cache_root
from pipeline.readers.segments import (
    SEGMENT_COUNTERS,
    Segment,
    SpoolWriter,
    check_work_dir,
    open_spool,
    prepare_work_dir,
    spool_key,
    spool_path,
    work_fingerprint,
)
from tests.pipeline.ccserver import (
    CCServer,
    build_crawl_tree,
    missing,
    no_length,
    reset,
    serve_body,
    throttle,
    truncate,
    unavailable,
)

SNAPSHOT = "CC-MAIN-2019-30"
WET_NAMES = ["CC-MAIN-2019-30-sample-00000.warc.wet.gz", "CC-MAIN-2019-30-sample-00001.warc.wet.gz",
             "cc_whirlwind_whirlwind.warc.wet.gz"]
LISTING = f"crawl-data/{SNAPSHOT}/wet.paths.gz"
PROXY_VARS = ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY")


# -- options and the work directory (fast) ------------------------------------------------------


@pytest.mark.parametrize("argv, message", [
    (["--input", "x", "--snapshot", SNAPSHOT, "--segments", "0"], "not allowed with argument"),
    (["--snapshot", SNAPSHOT], "--snapshot needs --segments"),
    (["--input", "x", "--segments", "0-3"], "--segments selects segments of a --snapshot"),
    (["--snapshot", "CC-MAIN-19-30", "--segments", "0"], "invalid snapshot name"),
    (["--snapshot", SNAPSHOT, "--segments", "5-3"], "ends before it starts"),
    (["--snapshot", SNAPSHOT, "--segments", "0", "--max-downloads", "0"], "--max-downloads must be >= 1"),
    (["--snapshot", SNAPSHOT, "--segments", "0", "--max-attempts", "0"], "--max-attempts must be >= 1"),
    (["--snapshot", SNAPSHOT, "--segments", "0", "--cc-base-url", "ftp://mirror/"], "invalid --cc-base-url"),
    (["--snapshot", SNAPSHOT, "--segments", "0", "--download-deadline", "0"], "--download-deadline must be > 0"),
    (["--snapshot", SNAPSHOT, "--segments", "0", "--max-retry-after", "-1"], "--max-retry-after must be >= 0"),
    (["--snapshot", SNAPSHOT, "--segments", "0", "--max-segment-bytes", "1.5G"], "--max-segment-bytes: invalid size '1.5G'"),
    (["--snapshot", SNAPSHOT, "--segments", "0", "--max-segment-bytes", "0"], "--max-segment-bytes must be >= 1"),
])
def test_bad_snapshot_flags_are_usage_errors(argv, message, capsys):
    with pytest.raises(SystemExit) as info:
        parse_args([*argv, "--output", "o"])
    assert info.value.code == 2 and message in capsys.readouterr().err


def test_snapshot_flags_reach_the_config():
    config, _ = parse_args(["--snapshot", SNAPSHOT, "--segments", "0-99", "--output", "gs://b/out",
                            "--cc-base-url", "http://mirror:8080/cc", "--max-downloads", "2",
                            "--max-attempts", "5", "--allow-failed-segments", "--keep-work"])
    assert (config.snapshot, config.segments, config.inputs) == (SNAPSHOT, "0-99", [])
    assert config.fetch.base_url == "http://mirror:8080/cc/" and config.work == "gs://b/out.work"
    assert config.fetch.policy.max_attempts == 5 and config.fetch.max_downloads == 2
    assert config.allow_failed_segments and config.keep_work
    policy = config.fetch.policy
    assert (policy.deadline, policy.retry_after_max, policy.max_bytes) == (3600, 120, 1 << 30)  # defaults


def test_download_bounds_reach_the_workers_and_credentials_stay_out_of_the_config():
    config, _ = parse_args(["--snapshot", SNAPSHOT, "--segments", "0", "--output", "o",
                            "--cc-base-url", "https://alice:s3cret@mirror/cc/", "--download-deadline", "900",
                            "--max-retry-after", "30", "--max-segment-bytes", "300MB", "--max-attempts", "3"])
    policy = config.fetch.policy
    assert (policy.deadline, policy.retry_after_max, policy.max_bytes, policy.max_attempts) == (
        900, 30, 300_000_000, 3)
    fetch = pickle.loads(pickle.dumps(config.fetch))
    assert fetch.policy == policy and fetch.base_url == "https://alice:s3cret@mirror/cc/"  # workers fetch with it
    assert "s3cret" not in json.dumps(config.to_dict())
    assert config.to_dict()["cc_base_url"] == "https://***@mirror/cc/"


def _doc(i: int, segment: str = "seg-a") -> Document:
    text = f"paragraph one of {i}\nparagraph two of {i}"
    return Document(url=f"http://x/{i}", date_download="2019-07-17T12:00:00Z", digest=f"sha1:{i}",
                    source_domain="x", title=f"t{i}", raw_content=text, length=len(text),
                    nlines=2, cc_segment=segment, record_offset=i)


def test_spool_is_invisible_until_committed_and_round_trips(tmp_path, monkeypatch):
    monkeypatch.setattr("pipeline.readers.segments.SPOOL_BATCH", 3)  # several row groups
    path = str(tmp_path / "segments" / "a.parquet")
    writer = SpoolWriter(path)
    docs = [_doc(i) for i in range(7)]
    for d in docs:
        writer.add(d)
    assert not os.path.exists(path)  # only a temporary name so far
    report = {"path": "seg-a", "records": 8, "documents": 7}
    writer.commit(report)
    assert sorted(os.listdir(tmp_path / "segments")) == ["a.parquet"]
    got_report, got = open_spool(path)
    assert got_report == report and list(got) == docs
    empty = SpoolWriter(str(tmp_path / "segments" / "b.parquet"))
    empty.commit({"path": "seg-b", "records": 0, "documents": 0})  # a segment without documents
    assert list(open_spool(str(tmp_path / "segments" / "b.parquet"))[1]) == []
    broken = SpoolWriter(str(tmp_path / "segments" / "c.parquet"))
    broken.add(_doc(1))
    broken.abort()
    assert sorted(os.listdir(tmp_path / "segments")) == ["a.parquet", "b.parquet"]


def test_spool_keys_are_stable_safe_and_follow_the_file():
    a = spool_key("crawl-data/CC-MAIN-2019-30/segments/1/wet/CC-MAIN-2019-0001.warc.wet.gz")
    assert a == spool_key("crawl-data/CC-MAIN-2019-30/segments/1/wet/CC-MAIN-2019-0001.warc.wet.gz")
    assert a.startswith("CC-MAIN-2019-0001-") and len(a.rsplit("-", 1)[1]) == 12
    assert a != spool_key("crawl-data/CC-MAIN-2019-30/segments/2/wet/CC-MAIN-2019-0001.warc.wet.gz")
    assert spool_key("/data/a b?.wet.gz", 10) != spool_key("/data/a b?.wet.gz", 11)  # a changed file
    assert "/" not in spool_key("/data/a b?.wet.gz", 10) and " " not in spool_key("/data/a b?.wet.gz", 10)


def test_work_dir_is_reused_only_with_the_same_settings(tmp_path):
    work = str(tmp_path / "out.work")
    fp = work_fingerprint(300)
    assert check_work_dir(work, fp, overwrite=False) == "new" and not os.path.exists(work)
    prepare_work_dir(work, fp, "new")
    seg = Segment("crawl-data/x/a.warc.wet.gz", spool_key("crawl-data/x/a.warc.wet.gz"), remote=True)
    SpoolWriter(spool_path(work, seg)).commit({"path": seg.name})
    assert check_work_dir(work, fp, overwrite=False) == "resume"
    with pytest.raises(CorpusIOError, match=r"--work-dir .*other settings \(min_len 300 -> 100\).*--overwrite"):
        check_work_dir(work, work_fingerprint(100), overwrite=False)
    assert check_work_dir(work, work_fingerprint(100), overwrite=True) == "reset"
    prepare_work_dir(work, work_fingerprint(100), "reset")
    assert not os.path.exists(spool_path(work, seg))  # spools of the old settings are gone
    assert check_work_dir(work, work_fingerprint(100), overwrite=False) == "resume"
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep")
    with pytest.raises(CorpusIOError, match="not a cc100 work directory"):
        check_work_dir(str(foreign), fp, overwrite=True)


def test_foreign_work_dir_is_refused_before_anything_is_created(tmp_path, capsys, shared_data):
    foreign = tmp_path / "work"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep")
    code = main(["--input", str(shared_data / "wet" / WET_NAMES[2]), "--output", str(tmp_path / "out"),
                 "--work-dir", str(foreign)])
    assert code == 2 and "not a cc100 work directory" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["work"] and os.listdir(foreign) == ["notes.txt"]


# -- against the local Common Crawl stand-in ------------------------------------------------------


@pytest.fixture(scope="module")
def crawl(shared_data, tmp_path_factory):
    """The served tree (built once) and the wet.paths lines; proxies off (the host is loopback)."""
    root = tmp_path_factory.mktemp("cc") / "host"
    paths = build_crawl_tree(root, SNAPSHOT, [shared_data / "wet" / n for n in WET_NAMES])
    saved = {k: os.environ.pop(k) for k in PROXY_VARS if k in os.environ}
    yield root, paths
    os.environ.update(saved)


@pytest.fixture
def server(crawl):
    root, _ = crawl
    with CCServer(root) as s:
        yield s
        assert s.wait_idle()


def _argv(server: CCServer, out: Path, *extra: str) -> list[str]:
    return ["--snapshot", SNAPSHOT, "--segments", "0-2", "--cc-base-url", server.base_url,
            "--output", str(out), "--download-backoff", "0.01", *extra]


def _run(argv: list[str], capsys) -> tuple[int, str, str]:
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture(scope="module")
def reference(crawl, tmp_path_factory):
    """An uninterrupted, fault-free run: what every resumed or retried run must reproduce."""
    root, _ = crawl
    out = tmp_path_factory.mktemp("reference") / "corpus"
    with CCServer(root) as s:
        assert main(_argv(s, out)) == 0
    return out


def _after_first_member(data: bytes) -> bytes:
    d = zlib.decompressobj(31)
    d.decompress(data)
    return d.unused_data


def _assert_same_output(out: Path, reference: Path) -> None:
    parts = sorted(p.relative_to(out) for p in out.glob("*/*/part-*.parquet"))
    assert parts == sorted(p.relative_to(reference) for p in reference.glob("*/*/part-*.parquet"))
    assert len(parts) > 10
    for part in parts:
        assert pq.read_table(out / part).equals(pq.read_table(reference / part)), part
    assert (out / ".cc100" / "cutoffs.csv").read_text() == (reference / ".cc100" / "cutoffs.csv").read_text()
    mine, theirs = (json.loads((d / ".cc100" / "stats.json").read_text())["counters"] for d in (out, reference))
    strip = lambda c: {k: v for k, v in c.items() if k not in SEGMENT_COUNTERS}  # noqa: E731
    assert strip(mine) == strip(theirs)


@pytest.mark.slow
def test_reference_run_downloads_every_segment_into_named_documents(reference, crawl):
    _, paths = crawl
    stats = json.loads((reference / ".cc100" / "stats.json").read_text())
    assert stats["inputs"]["files"] == paths and stats["inputs"]["snapshot"] == SNAPSHOT
    assert stats["segments"] == {"spool": 0, "download": 3, "file": 0, "failed": 0}
    assert stats["failed_segments"] == [] and stats["counters"]["segments_downloaded"] == 3
    segments = {r["cc_segment"] for p in reference.glob("*/*/part-*.parquet") for r in pq.read_table(p).to_pylist()}
    assert segments == set(paths)  # cc_segment is the wet.paths line, not a cache path or URL
    assert not Path(str(reference) + ".work").exists()  # downloads and spools removed after success


@pytest.mark.slow
def test_throttling_5xx_resets_and_truncation_are_survived(server, crawl, reference, tmp_path, capsys):
    _, paths = crawl
    body = (crawl[0] / paths[0]).read_bytes()
    member_end = len(body) - len(_after_first_member(body))  # a cut there is still valid gzip
    server.plan(paths[0], throttle(retry_after="1"), unavailable(503), no_length(after=member_end))
    server.plan(paths[1], reset(after=100_000), truncate(after=150_000))
    cut = (crawl[0] / paths[2]).read_bytes()[:2000]  # a gzip stream that ends inside a member
    server.plan(paths[2], serve_body(cut))
    out = tmp_path / "corpus"
    code, stdout, stderr = _run(_argv(server, out, "--max-downloads", "2"), capsys)
    assert code == 0, stderr
    assert process_slots().limit == 2  # --max-downloads reached the worker's download cap
    _assert_same_output(out, reference)

    # no Content-Length and a close at a member boundary: the length is asked for, the rest fetched
    assert [(r.method, r.status) for r in server.requests_for(paths[0])] == [
        ("GET", 429), ("GET", 503), ("GET", 200), ("HEAD", 200), ("GET", 206)]
    assert server.requests_for(paths[0])[-1].range == f"bytes={member_end}-"
    second = server.requests_for(paths[1])
    assert [r.status for r in second] == [200, 206, 206]
    assert second[0].range is None and all(r.range and r.range != "bytes=0-" for r in second[1:])  # Range resume
    assert [(r.status, r.range) for r in server.requests_for(paths[2])] == [(200, None), (200, None)]  # bad gzip: from 0
    stats = json.loads((out / ".cc100" / "stats.json").read_text())
    c = stats["counters"]
    assert (c["download_retries"], c["downloads_resumed"], c["segments_downloaded"]) == (6, 2, 3)
    reports = {json.loads(line)["path"]: json.loads(line) for line in (out / ".cc100" / "files.jsonl").read_text().splitlines()}
    assert [reports[p]["download"]["attempts"] for p in paths] == [4, 3, 2]
    assert "bad gzip" in reports[paths[2]]["download"]["retries"][0]
    assert reports[paths[0]]["download"]["retries"][2] == f"truncated body: have {member_end} of {len(body)} bytes (from HEAD)"
    assert "6 retries, 2 resumed with Range" in stdout
    assert "retry 2/8" in stderr and "Retry-After 1 s" in stderr  # the retries are logged


@pytest.mark.slow
def test_failed_segment_fails_the_run_and_the_rerun_fetches_only_it(server, crawl, reference, tmp_path, capsys):
    _, paths = crawl
    out = tmp_path / "corpus"
    work = tmp_path / "corpus.work"
    server.always(paths[1], missing())
    code, stdout, stderr = _run(_argv(server, out), capsys)
    assert code == 1
    assert not out.exists() and not list(tmp_path.glob("corpus.tmp-*"))  # nothing committed
    assert f"1 of 3 segments failed (listed above), so {out} was not written" in stderr
    assert "re-run the same command" in stderr and "--allow-failed-segments" in stderr
    assert f"{paths[1]}: HTTP 404 Not Found (after 1 attempts)" in stdout and "FAILED segments (1" in stdout
    stats = json.loads((work / "stats.json").read_text())
    assert stats["failed_segments"] == [{"segment": paths[1], "reason": "HTTP 404 Not Found", "attempts": 1, "status": 404}]
    assert stats["committed"] is False and len(list((work / "segments").glob("*.parquet"))) == 2

    # What a kill would also leave behind: a half-written spool and a broken download.
    (work / "segments" / "dead.parquet.tmp-0123456789ab").write_bytes(b"half a parquet file")
    body = (crawl[0] / paths[1]).read_bytes()
    part = cache_root(work / "downloads", server.base_url) / (paths[1] + ".part")  # an older version's name
    part.parent.mkdir(parents=True, exist_ok=True)
    part.write_bytes(body[:300_000])

    server.always(paths[1], None)  # the segment is back
    server.clear_log()
    code, stdout, stderr = _run(_argv(server, out), capsys)
    assert code == 0, stderr
    assert server.requests_for(paths[0]) == [] and server.requests_for(paths[2]) == []  # spooled: not fetched
    assert server.requests_for(LISTING) == []  # the listing is cached too
    assert [(r.range, r.status) for r in server.requests_for(paths[1])] == [("bytes=300000-", 206)]
    assert "2 from the work dir's spools (resumed), 1 downloaded" in stdout
    _assert_same_output(out, reference)
    stats = json.loads((out / ".cc100" / "stats.json").read_text())
    assert stats["segments"] == {"spool": 2, "download": 1, "file": 0, "failed": 0}
    assert (stats["counters"]["segments_from_spool"], stats["counters"]["downloads_resumed"]) == (2, 1)
    assert not work.exists()  # complete: spools, downloads and the stale temp file removed


@pytest.mark.slow
def test_allow_failed_segments_writes_the_rest_and_reports_the_failures(server, crawl, tmp_path, capsys):
    _, paths = crawl
    server.always(paths[1], unavailable(503))  # retried, never recovers
    server.always(paths[2], missing())  # permanent: not retried
    out = tmp_path / "corpus"
    code, stdout, stderr = _run(_argv(server, out, "--max-attempts", "3", "--allow-failed-segments"), capsys)
    assert code == 0, stderr
    stats = json.loads((out / ".cc100" / "stats.json").read_text())
    assert stats["failed_segments"] == [
        {"segment": paths[1], "reason": "HTTP 503 Service Unavailable", "attempts": 3, "status": 503},
        {"segment": paths[2], "reason": "HTTP 404 Not Found", "attempts": 1, "status": 404},
    ]
    assert stats["committed"] is True and stats["counters"]["segments_failed"] == 2
    assert [r.status for r in server.requests_for(paths[1])] == [503, 503, 503]
    assert len(server.requests_for(paths[2])) == 1
    rows = [r for p in out.glob("*/*/part-*.parquet") for r in pq.read_table(p).to_pylist()]
    assert rows and {r["cc_segment"] for r in rows} == {paths[0]}
    for p in paths[1:]:
        assert p in stdout  # both named in the summary
    reports = [json.loads(line) for line in (out / ".cc100" / "files.jsonl").read_text().splitlines()]
    assert sorted(r["path"] for r in reports if r.get("failed")) == paths[1:]
    assert len(list((tmp_path / "corpus.work" / "segments").glob("*.parquet"))) == 1  # kept for a later run


def test_listing_and_selection_errors_come_before_the_pipeline(server, crawl, tmp_path, capsys):
    out = tmp_path / "corpus"
    server.always(LISTING, missing())
    code, _, stderr = _run(_argv(server, out), capsys)
    assert code == 2
    assert stderr.strip() == (f"cc100 corpus: --snapshot {SNAPSHOT}: cannot download the segment list "
                              f"{server.base_url}{LISTING}: HTTP 404 Not Found (after 1 attempt)")
    assert list(tmp_path.iterdir()) == []  # no output, no work dir, no staging
    server.always(LISTING, None)
    code, _, stderr = _run(["--snapshot", SNAPSHOT, "--segments", "1,7", "--cc-base-url", server.base_url,
                            "--output", str(out)], capsys)
    assert code == 2 and "segment 7 does not exist, the snapshot lists 3 WET files (0-2)" in stderr
    assert not out.exists()


def test_listing_is_read_from_the_download_cache(crawl, tmp_path, capsys):
    """A listing in --download-cache (e.g. from `cc100 prefetch`) is used without any request."""
    _, paths = crawl
    cache = tmp_path / "cache"
    listing = cache_root(cache, "http://127.0.0.1:9/") / LISTING
    listing.parent.mkdir(parents=True)
    listing.write_bytes(gzip.compress("\n".join(paths).encode()))
    code, _, stderr = _run(["--snapshot", SNAPSHOT, "--segments", "9", "--cc-base-url", "http://127.0.0.1:9/",
                            "--download-cache", str(cache), "--output", str(tmp_path / "o")], capsys)
    assert code == 2 and "segment 9 does not exist, the snapshot lists 3 WET files" in stderr


# -- listings, bounds and credentials (#14 §2, #15 §2, §3) ------------------------------------------

OTHER = "CC-MAIN-2019-35"  # a snapshot whose listing each test writes itself


def _write_listing(root: Path, lines: list[str]) -> str:
    listing = f"crawl-data/{OTHER}/wet.paths.gz"
    (root / listing).parent.mkdir(parents=True, exist_ok=True)
    (root / listing).write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    return listing


def test_a_listing_line_naming_another_host_stops_the_run_before_any_download(server, crawl, tmp_path, capsys):
    root, paths = crawl
    with CCServer(root) as evil:
        foreign = evil.url(paths[1])
        listing = _write_listing(root, [paths[0], foreign, paths[2]])
        code, _, stderr = _run(["--snapshot", OTHER, "--segments", "all", "--cc-base-url", server.base_url,
                                "--output", str(tmp_path / "corpus")], capsys)
        assert evil.requests == []
    assert code == 2
    assert stderr.strip().splitlines()[-1] == (
        f"cc100 corpus: wet.paths.gz line 2 (segment 1) is not a relative Common Crawl path: an absolute "
        f"URL (segments are fetched only from --cc-base-url): {foreign!r}; nothing was "
        "downloaded (--allow-failed-segments reports such segments as failed instead)")
    assert [r.path for r in server.requests] == [listing]  # the listing only, no segment
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_refused_lines_sizes_and_non_warc_bodies_are_failed_segments_and_credentials_never_show(
        server, crawl, tmp_path, capsys):
    """--allow-failed-segments: each refused segment is listed with its reason, the others are written;
    the password in --cc-base-url appears in no output, log line, stats.json or Parquet file."""
    root, paths = crawl
    ok, html, large = paths[1], paths[2], paths[0]  # 519 kB; served as gzip-wrapped HTML; 705 kB
    server.always(html, serve_body(gzip.compress(b"<!DOCTYPE html><p>Access denied</p>")))
    base = server.base_url.replace("http://", "http://alice:s3cret@")
    out = tmp_path / "corpus"
    with CCServer(root) as evil:
        foreign = evil.url(paths[0])
        _write_listing(root, [ok, foreign, html, large])
        code, stdout, stderr = _run(["--snapshot", OTHER, "--segments", "all", "--cc-base-url", base,
                                     "--output", str(out), "--download-backoff", "0.01", "--max-attempts", "2",
                                     "--max-segment-bytes", "600KB", "--allow-failed-segments"], capsys)
        assert evil.requests == []
    assert code == 0, stderr
    stats = json.loads((out / ".cc100" / "stats.json").read_text())
    failed = {f["segment"]: f for f in stats["failed_segments"]}
    assert sorted(failed) == sorted([foreign, html, large])
    assert failed[foreign]["attempts"] == 0 and "not a relative Common Crawl path: an absolute URL" in failed[foreign]["reason"]
    assert failed[html]["attempts"] == 2 and failed[html]["reason"].startswith("not a WARC/WET file: it starts with b'<!DOCTYPE html>")
    assert failed[large]["attempts"] == 1 and failed[large]["reason"].startswith(
        "Content-Length 704799 bytes exceeds the size limit of 600000 bytes (--max-segment-bytes)")
    assert len(server.requests_for(large)) == 1  # a refused size is not asked for again
    rows = [r for p in out.glob("*/*/part-*.parquet") for r in pq.read_table(p).to_pylist()]
    assert rows and {r["cc_segment"] for r in rows} == {ok}
    assert all(r.headers.get("Authorization") for r in server.requests)  # the credentials were used
    assert stats["inputs"]["cc_base_url"].startswith("http://***@")
    written = b"".join(p.read_bytes() for p in out.rglob("*") if p.is_file())
    assert b"s3cret" not in written and "s3cret" not in stdout + stderr
