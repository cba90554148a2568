"""Snapshot listing, segment selection and SegmentFetcher (cache, failures, resume) on 127.0.0.1."""

from __future__ import annotations

import gzip
import pickle

import pytest

from pipeline.download import DownloadError, RetryPolicy
from pipeline.snapshot import (
    SegmentFetcher,
    main,
    parse_segments,
    paths_url,
    read_paths,
    segment_url,
    select_segments,
    validate_snapshot,
    wet_paths,
)
from tests.pipeline.ccserver import CCServer, build_crawl_tree, missing, reset, throttle

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
    paths = [f"p{i}" for i in range(5)]
    assert select_segments(paths, "4,0-1") == ["p0", "p1", "p4"]
    assert select_segments(paths, "all") == paths
    with pytest.raises(ValueError, match=r"segment 5 does not exist.*5 WET files \(0-4\)"):
        select_segments(paths, "3-5")


def test_urls():
    path = "crawl-data/CC-MAIN-2019-30/segments/1/wet/a.warc.wet.gz"
    cc = "https://data.commoncrawl.org/"
    assert segment_url(cc.rstrip("/"), path) == cc + path
    assert segment_url("http://mirror:8080/cc/", path) == "http://mirror:8080/cc/" + path
    assert segment_url("http://x/", "https://elsewhere/a.gz") == "https://elsewhere/a.gz"
    assert paths_url(SNAPSHOT) == cc + "crawl-data/CC-MAIN-2019-30/wet.paths.gz"
    for unsafe in ("../etc/passwd", "/abs/path", "a/../../b", " "):
        with pytest.raises(ValueError, match="unsafe or empty segment path"):
            segment_url("http://x/", unsafe)
    with pytest.raises(ValueError, match="--cc-base-url"):
        segment_url("gs://bucket/", path)


def test_read_paths_rejects_bad_listings(tmp_path):
    (tmp_path / "ok.gz").write_bytes(gzip.compress(b"a/b.gz\n\nc/d.gz\n"))
    assert read_paths(tmp_path / "ok.gz") == ["a/b.gz", "c/d.gz"]
    (tmp_path / "empty.gz").write_bytes(gzip.compress(b"\n"))
    with pytest.raises(ValueError, match="empty.gz is empty"):
        read_paths(tmp_path / "empty.gz")
    (tmp_path / "evil.gz").write_bytes(gzip.compress(b"../../x.gz\n"))
    with pytest.raises(ValueError, match="unsafe"):
        read_paths(tmp_path / "evil.gz")
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
    assert [again.fetch(p) for p in paths] == [cache / p for p in paths]
    assert [len(server.requests_for(p)) for p in paths] == [0, 0, 1]
    assert again.summary()["cached"] == 2 and again.summary()["failed_segments"] == []
    assert (cache / paths[2]).read_bytes() == (root / paths[2]).read_bytes()


def test_killed_download_resumes_in_the_next_run(crawl, tmp_path):
    server, root, paths = crawl
    cache = tmp_path / "cache"
    server.plan(paths[0], reset(after=200_000))
    first = make_fetcher(server, cache, policy=RetryPolicy(max_attempts=1))
    with pytest.raises(DownloadError, match="connection lost"):
        first.fetch(paths[0])
    part = cache / (paths[0] + ".part")
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
