"""Snapshot listing, segment selection and SegmentFetcher (cache, failures, resume) on 127.0.0.1."""

from __future__ import annotations

import gzip
import pickle
import threading
import time
from pathlib import Path

import pytest

from pipeline.readers.download import DownloadError, RetryPolicy
from pipeline.readers.snapshot import (
    SegmentFetcher,
    cache_root,
    listing_problem,
    main,
    parse_segments,
    paths_url,
    read_paths,
    segment_url,
    select_segments,
    validate_base_url,
    validate_snapshot,
    warc_problem,
    wet_paths,
)
from tests.pipeline.ccserver import CCServer, build_crawl_tree, missing, pause, reset, serve_body, throttle

SNAPSHOT = "CC-MAIN-2019-30"
WET_NAMES = [
    "CC-MAIN-2019-30-sample-00000.warc.wet.gz",
    "CC-MAIN-2019-30-sample-00001.warc.wet.gz",
    "cc_whirlwind_whirlwind.warc.wet.gz",
]
POLICY = RetryPolicy(max_attempts=3, backoff=0.1, timeout=5.0)


class Sleeps(list):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture
def crawl(shared_data, tmp_path):
    root = tmp_path / "host"
    paths = build_crawl_tree(root, SNAPSHOT, [shared_data / "wet" / n for n in WET_NAMES])
    with CCServer(root) as server:
        yield server, root, paths
        assert server.wait_idle()


def make_fetcher(server, cache, sleeps=None, **kw) -> SegmentFetcher:
    return SegmentFetcher(str(cache), server.base_url, policy=kw.pop("policy", POLICY),
                          sleep=sleeps if sleeps is not None else Sleeps(),
                          opener_factory=CCServer.opener, rng_seed=0, **kw)


# -- names, specs, URLs -----------------------------------------------------------------------


def test_validate_snapshot():
    assert validate_snapshot("CC-MAIN-2019-30") == "CC-MAIN-2019-30"
    for bad in ("CC-MAIN-2019-3", "cc-main-2019-30", "CC-MAIN-2019-54", "CC-MAIN-1999-10",
                "CC-MAIN-2019-30/../x", "2019-30", ""):
        with pytest.raises(ValueError, match="invalid snapshot name .*CC-MAIN-YYYY-WW"):
            validate_snapshot(bad)


def test_parse_segments():
    assert parse_segments("0-99") == list(range(100))
    assert parse_segments("3,5,10-12") == [3, 5, 10, 11, 12]
    assert parse_segments(" 7 , 2-3,3 ") == [2, 3, 7]
    assert parse_segments("all") == []
    for bad in ("", "a", "1-", "-3", "1,,2", "5-3", "1.5"):
        with pytest.raises(ValueError, match="invalid --segments"):
            parse_segments(bad)


def test_select_segments():
    paths = [f"crawl-data/p{i}.gz" for i in range(5)]
    assert select_segments(paths, "4,0-1") == [paths[0], paths[1], paths[4]]
    assert select_segments(paths, "all") == paths
    with pytest.raises(ValueError, match=r"segment 5 does not exist.*5 WET files \(0-4\)"):
        select_segments(paths, "3-5")


def test_urls():
    path = "crawl-data/CC-MAIN-2019-30/segments/1/wet/a.warc.wet.gz"
    cc = "https://data.commoncrawl.org/"
    assert segment_url(cc.rstrip("/"), path) == cc + path
    assert segment_url("http://mirror:8080/cc/", path) == "http://mirror:8080/cc/" + path
    assert paths_url(SNAPSHOT) == cc + "crawl-data/CC-MAIN-2019-30/wet.paths.gz"
    for unsafe in ("../etc/passwd", "/abs/path", "crawl-data/../../b", " ", "https://elsewhere/a.gz"):
        with pytest.raises(ValueError, match="unsafe segment path"):
            segment_url("http://x/", unsafe)
    for bad in ("gs://bucket/", "http://x/a/../b/", "http://x/?q=1", "http://x:port/", "http:///x"):
        with pytest.raises(ValueError, match="--cc-base-url"):
            segment_url(bad, path)
    with pytest.raises(ValueError) as info:
        validate_base_url("ftp://alice:s3cret@mirror/")
    assert "s3cret" not in str(info.value) and "***@mirror" in str(info.value)


def test_cache_root_separates_hosts_ports_and_prefixes(tmp_path):
    roots = {cache_root(tmp_path, url) for url in (
        "https://data.commoncrawl.org/", "http://data.commoncrawl.org:8080/", "http://mirror/",
        "http://mirror/cc/", "http://u:p@mirror/cc2/")}
    assert len(roots) == 5 and all(tmp_path in r.parents for r in roots)
    assert cache_root(tmp_path, "https://Data.CommonCrawl.org") == tmp_path / "data.commoncrawl.org"
    assert cache_root(tmp_path, "http://u:p@mirror/cc2/") == tmp_path / "mirror" / "cc2"  # no credentials
    assert cache_root(tmp_path, "http://[::1]:81/") == tmp_path / "__1_81"


def test_read_paths_keeps_every_line_in_place(tmp_path):
    (tmp_path / "ok.gz").write_bytes(gzip.compress(b"a/b.gz\n\nc/d.gz\r\n"))
    assert read_paths(tmp_path / "ok.gz") == ["a/b.gz", "", "c/d.gz"]  # line 3 stays segment 2
    (tmp_path / "empty.gz").write_bytes(gzip.compress(b"\n"))
    with pytest.raises(ValueError, match="empty.gz is empty"):
        read_paths(tmp_path / "empty.gz")
    (tmp_path / "broken.gz").write_bytes(b"\x1f\x8bnot really")
    with pytest.raises(ValueError, match="cannot read WET path listing .*broken.gz"):
        read_paths(tmp_path / "broken.gz")


# -- against the local server -----------------------------------------------------------------


def test_wet_paths_downloads_once_then_uses_cache(crawl, tmp_path):
    server, _, paths = crawl
    listing = f"crawl-data/{SNAPSHOT}/wet.paths.gz"
    kw = dict(opener=CCServer.opener(), sleep=Sleeps())
    assert wet_paths(SNAPSHOT, server.base_url, tmp_path / "cache", **kw) == paths
    assert wet_paths(SNAPSHOT, server.base_url, tmp_path / "cache", **kw) == paths
    assert len(server.requests_for(listing)) == 1
    with pytest.raises(DownloadError) as info:
        wet_paths("CC-MAIN-2099-01", server.base_url, tmp_path / "cache", **kw)
    assert info.value.status == 404 and "CC-MAIN-2099-01/wet.paths.gz" in str(info.value)
    n = len(server.requests)
    with pytest.raises(ValueError, match="invalid snapshot name"):
        wet_paths("CC-MAIN-19-30", server.base_url, tmp_path / "cache", **kw)
    assert len(server.requests) == n  # rejected before any request


def test_fetcher_survives_faults_reports_missing_and_rerun_skips_finished(crawl, tmp_path):
    server, root, paths = crawl
    cache = tmp_path / "cache"
    server.plan(paths[0], throttle(retry_after="3"))
    server.plan(paths[1], reset(after=100_000))
    server.always(paths[2], missing())
    sleeps = Sleeps()
    fetcher = make_fetcher(server, cache, sleeps)
    local = [fetcher.try_fetch(p) for p in paths]

    assert local[0].read_bytes() == (root / paths[0]).read_bytes()
    assert local[1].read_bytes() == (root / paths[1]).read_bytes()
    assert local[2] is None
    assert 3.0 in sleeps
    assert any(r.range and r.status == 206 for r in server.requests_for(paths[1]))
    summary = fetcher.summary()
    assert summary["failed_segments"] == [paths[2]]
    assert "HTTP 404" in summary["failure_reasons"][paths[2]]
    assert (summary["downloaded"], summary["cached"], summary["resumed"]) == (2, 0, 1)
    assert summary["download_retries"] == 2

    # Re-run (the missing segment has appeared): only it is requested again.
    server.always(paths[2], None)
    server.clear_log()
    again = make_fetcher(server, cache)
    assert [again.fetch(p) for p in paths] == [cache_root(cache, server.base_url) / p for p in paths]
    assert [len(server.requests_for(p)) for p in paths] == [0, 0, 1]
    assert again.summary()["cached"] == 2 and again.summary()["failed_segments"] == []
    assert again.local_path(paths[2]).read_bytes() == (root / paths[2]).read_bytes()


def test_killed_download_resumes_in_the_next_run(crawl, tmp_path):
    server, root, paths = crawl
    cache = tmp_path / "cache"
    server.plan(paths[0], reset(after=200_000))
    first = make_fetcher(server, cache, policy=RetryPolicy(max_attempts=1))
    with pytest.raises(DownloadError, match="connection lost"):
        first.fetch(paths[0])
    (part,) = first.local_path(paths[0]).parent.glob("*.part-*")
    kept = part.stat().st_size
    assert 0 < kept <= 200_000 and not first.is_cached(paths[0])

    server.clear_log()
    second = make_fetcher(server, cache)
    assert second.fetch(paths[0]).read_bytes() == (root / paths[0]).read_bytes()
    assert [r.range for r in server.requests_for(paths[0])] == [f"bytes={kept}-"]
    assert second.downloaded[paths[0]].resumed and not part.exists()


def test_fetcher_is_picklable_and_validates(crawl, tmp_path):
    server, _, paths = crawl
    server.always(paths[2], missing())
    fetcher = make_fetcher(server, tmp_path / "cache")
    fetcher.try_fetch(paths[2])
    clone = pickle.loads(pickle.dumps(fetcher))
    assert clone.summary()["failed_segments"] == [paths[2]]
    assert clone.failures[paths[2]].status == 404
    with pytest.raises(ValueError, match="cache_dir"):
        SegmentFetcher("gs://bucket/cache")
    with pytest.raises(ValueError, match="max_concurrent"):
        SegmentFetcher(str(tmp_path), max_concurrent=0)
    with pytest.raises(ValueError, match="unsafe"):
        fetcher.local_path("../outside.gz")


def test_cli_lists_downloads_and_reports_failures(crawl, tmp_path, capsys, monkeypatch):
    for name in ("http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    server, root, paths = crawl
    common = ["--snapshot", SNAPSHOT, "--cc-base-url", server.base_url,
              "--download-cache", str(tmp_path / "cache"), "--max-attempts", "2"]

    assert main(common + ["--segments", "0,2", "--list"]) == 0
    assert capsys.readouterr().out.split() == [server.url(paths[0]), server.url(paths[2])]

    server.always(paths[1], missing())
    assert main(common + ["--segments", "0-2"]) == 1
    out = capsys.readouterr().out
    assert "3 segments, 2 downloaded" in out and "1 failed" in out
    assert f"failed: {server.url(paths[1])}: HTTP 404" in out
    assert main(common + ["--segments", "0-2", "--allow-failed-segments"]) == 0
    assert "2 already cached, 1 failed" in capsys.readouterr().out

    assert main(["--snapshot", "CC-MAIN-2019", "--download-cache", str(tmp_path)]) == 2
    assert "invalid snapshot name 'CC-MAIN-2019'" in capsys.readouterr().err
    assert main(common + ["--segments", "7"]) == 2
    assert "segment 7 does not exist" in capsys.readouterr().err


# -- a listing cannot steer downloads (#15 §2) --------------------------------------------------

GOOD = "crawl-data/CC-MAIN-2019-30/segments/1/wet/a.warc.wet.gz"


@pytest.mark.parametrize("line, reason", [
    ("http://evil.example/crawl-data/x.warc.wet.gz", "an absolute URL"),
    ("https://127.0.0.1:1/crawl-data/x.gz", "an absolute URL"),
    ("//evil.example/crawl-data/x.gz", "an absolute URL"),
    ("javascript:alert(1)", "an absolute URL"),
    ("/crawl-data/x.gz", "an absolute path"),
    ("crawl-data/../../etc/passwd", "'..'"),
    ("crawl-data\\..\\x.gz", "a backslash"),
    ("crawl-data/a\0b.gz", "a NUL byte"),
    ("crawl-data/a\x1bb.gz", "a control character"),
    ("", "an empty line"),
    ("crawl-data//x.gz", "not a normalised path"),
    ("crawl-data/./x.gz", "not a normalised path"),
    ("etc/passwd", "not a Common Crawl path"),
])
def test_listing_lines_that_are_not_relative_common_crawl_paths_are_refused(line, reason):
    assert reason in listing_problem(line)
    paths = [GOOD, line, GOOD.replace("a.warc", "b.warc")]
    with pytest.raises(ValueError) as info:
        select_segments(paths, "0-2")
    message = str(info.value)
    assert message.startswith("wet.paths.gz line 2 (segment 1) is not a relative Common Crawl path: ")
    assert reason in message and repr(line) in message and "nothing was downloaded" in message
    assert select_segments(paths, "0,2") == [paths[0], paths[2]]  # an unselected line is harmless
    assert select_segments(paths, "0-2", allow_invalid=True) == paths
    assert listing_problem(GOOD) is None


def test_fetcher_refuses_bad_lines_without_a_request(crawl, tmp_path):
    server, _, _ = crawl
    fetcher = make_fetcher(server, tmp_path / "cache")
    line = server.url("crawl-data/x.warc.wet.gz")  # same host, but absolute: still never fetched
    assert fetcher.try_fetch(line) is None
    error = fetcher.failures[line]
    assert (error.attempts, error.permanent) == (0, True)
    assert "not a relative Common Crawl path: an absolute URL" in error.reason
    assert str(error).endswith("(not fetched)") and server.requests == []
    assert fetcher.summary()["failed_segments"] == [line]


def test_listing_naming_another_host_never_reaches_it(crawl, tmp_path, capsys, monkeypatch):
    """The issue's case: a listing line with another host's URL made that host receive a request."""
    for name in ("http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    server, root, paths = crawl
    with CCServer(root) as evil:
        listing = [paths[0], evil.url(paths[1]), paths[2]]
        (root / f"crawl-data/{SNAPSHOT}/wet.paths.gz").write_bytes(gzip.compress("\n".join(listing).encode()))
        common = ["--snapshot", SNAPSHOT, "--cc-base-url", server.base_url, "--segments", "0-2",
                  "--download-cache", str(tmp_path / "cache"), "--max-attempts", "2"]
        assert main(common) == 2
        err = capsys.readouterr().err
        assert "wet.paths.gz line 2 (segment 1) is not a relative Common Crawl path: an absolute URL" in err
        assert [r.path for r in server.requests] == [f"crawl-data/{SNAPSHOT}/wet.paths.gz"]  # no segment

        assert main(common + ["--allow-failed-segments"]) == 0
        out = capsys.readouterr().out
        assert "3 segments, 2 downloaded" in out and "1 failed" in out and "an absolute URL" in out
        assert evil.requests == []
        assert sorted(p.relative_to(tmp_path / "cache") for p in (tmp_path / "cache").rglob("*.gz")) == sorted(
            Path(cache_root("", server.base_url)) / p for p in [f"crawl-data/{SNAPSHOT}/wet.paths.gz", paths[0], paths[2]])


def test_same_path_from_two_hosts_lands_on_two_cache_files(crawl, tmp_path, shared_data):
    server, _, paths = crawl
    other_root = tmp_path / "other"
    other_root.joinpath(paths[0]).parent.mkdir(parents=True)
    other = (shared_data / "wet" / "cc_whirlwind_whirlwind.warc.wet.gz").read_bytes()
    other_root.joinpath(paths[0]).write_bytes(other)  # another host: other bytes at the same path
    cache = tmp_path / "cache"
    with CCServer(other_root) as mirror:
        first = make_fetcher(server, cache).fetch(paths[0])
        second = SegmentFetcher(str(cache), mirror.base_url, policy=POLICY, sleep=Sleeps(),
                                opener_factory=CCServer.opener).fetch(paths[0])
        assert len(mirror.requests) == 1  # not "already cached" from the first host
    assert first != second and second.read_bytes() == other
    assert first.read_bytes() == (crawl[1] / paths[0]).read_bytes()


# -- a body that is not WARC is a failed download (#14 §2) ------------------------------------


def test_gzip_wrapped_html_is_a_failed_segment_not_an_empty_one(crawl, tmp_path):
    server, _, paths = crawl
    page = b"<!DOCTYPE html><html><body>Please enable cookies</body></html>"
    server.always(paths[0], serve_body(gzip.compress(page)))
    fetcher = make_fetcher(server, tmp_path / "cache")
    assert fetcher.try_fetch(paths[0]) is None
    error = fetcher.failures[paths[0]]
    assert error.reason == f"not a WARC/WET file: it starts with {page[:40]!r}"
    assert error.attempts == POLICY.max_attempts and not fetcher.is_cached(paths[0])
    assert list(fetcher.local_path(paths[0]).parent.iterdir()) == []  # nor a partial file
    # the check itself, on real files and on non-WARC ones
    assert warc_problem(crawl[1] / paths[2]) is None
    (tmp_path / "plain.txt").write_bytes(b"")
    assert warc_problem(tmp_path / "plain.txt") == "not a WARC/WET file: it is empty"


# -- two runs sharing a download cache (#15 §5) -----------------------------------------------


def test_two_fetchers_sharing_a_cache_both_get_the_segment(crawl, tmp_path):
    server, root, paths = crawl
    server.plan(paths[0], pause(after=100_000, seconds=1.0))
    cache = tmp_path / "cache"
    fetchers = [make_fetcher(server, cache), make_fetcher(server, cache)]
    got, errors = [None, None], []

    def run(i):
        try:
            got[i] = fetchers[i].fetch(paths[0])
        except Exception as e:  # reported below
            errors.append(e)

    first = threading.Thread(target=run, args=(0,))
    first.start()
    for _ in range(500):  # until the first download is inside its pause
        if any(r.sent >= 100_000 for r in server.requests_for(paths[0])):
            break
        time.sleep(0.01)
    second = threading.Thread(target=run, args=(1,))
    second.start()
    first.join()
    second.join()
    assert errors == [] and got[0] == got[1]
    assert got[0].read_bytes() == (root / paths[0]).read_bytes()
    assert [p.name for p in got[0].parent.iterdir()] == [got[0].name]  # no partial left behind
    # the second run downloaded it; the first found it finished and counts it as cached (the
    # downloading run owns the file and removes it after use)
    assert (fetchers[0].summary()["cached"], fetchers[1].summary()["downloaded"]) == (1, 1)


def test_cli_never_shows_credentials(crawl, tmp_path, capsys, monkeypatch):
    for name in ("http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    server, _, paths = crawl
    base = server.base_url.replace("http://", "http://alice:s3cret@")
    server.always(paths[1], missing())
    common = ["--snapshot", SNAPSHOT, "--cc-base-url", base, "--download-cache", str(tmp_path / "cache"),
              "--segments", "0-1", "--max-attempts", "1"]
    assert main(common + ["--list"]) == 0
    listed = capsys.readouterr().out.split()
    assert listed == [server.url(p).replace("http://", "http://***@") for p in paths[:2]]
    assert main(common) == 1
    captured = capsys.readouterr()
    assert "HTTP 404" in captured.out and "s3cret" not in captured.out + captured.err
    assert all(r.headers.get("Authorization") for r in server.requests)


def test_two_prefetch_processes_sharing_a_cache_both_succeed(crawl, tmp_path):
    """Two runs (processes) download the same segment into one cache at the same time: the one
    still downloading when the other has finished uses the finished file; both exit 0."""
    import os
    import subprocess
    import sys

    server, root, paths = crawl
    cache = tmp_path / "cache"
    assert main(["--snapshot", SNAPSHOT, "--cc-base-url", server.base_url, "--download-cache", str(cache),
                 "--segments", "0", "--list"]) == 0  # the listing is cached: only the segment is raced
    server.clear_log()
    server.plan(paths[0], pause(after=100_000, seconds=1.5))
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    argv = [sys.executable, "-m", "pipeline.readers.snapshot", "--snapshot", SNAPSHOT, "--segments", "0",
            "--cc-base-url", server.base_url, "--download-cache", str(cache), "--max-attempts", "2"]
    first = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for _ in range(1000):  # until the first run is inside its pause
        if any(r.sent >= 100_000 for r in server.requests_for(paths[0])):
            break
        time.sleep(0.01)
    second = subprocess.run(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            timeout=60)
    out_first = first.communicate(timeout=60)[0]
    assert (first.returncode, second.returncode) == (0, 0), out_first + second.stdout
    assert "0 failed" in out_first and "0 failed" in second.stdout
    local = cache_root(cache, server.base_url) / paths[0]
    assert local.read_bytes() == (root / paths[0]).read_bytes()
    assert [p.name for p in local.parent.iterdir()] == [local.name]
    assert len(server.requests_for(paths[0])) == 2
