"""A later run removes what killed runs of the corpus stage left, and nothing else (issue #14)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from pipeline.utils.leftovers import committed_run_left_work_dir, host_tag, remove_dead_staging, staging_path, staging_dirs


@pytest.fixture
def dead_pid():
    """The pid of a process that has exited (and was reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _staging(output, pid, host=None, files=("files.jsonl",), tag="0"):
    path = output.with_name(f"{output.name}.tmp-{host or host_tag()}-{pid}-{tag * 12}")
    (path / "en" / "head").mkdir(parents=True)
    (path / "en" / "head" / "part-00000-of-00001.parquet").write_bytes(b"PAR1")
    for name in files:
        (path / name).write_text("x")
    return path


def test_staging_names_say_whose_they_are(tmp_path):
    name = os.path.basename(staging_path(str(tmp_path / "out")))
    assert name.startswith(f"out.tmp-{host_tag()}-{os.getpid()}-")


def test_only_dead_recognisable_staging_dirs_are_removed(tmp_path, dead_pid):
    out = tmp_path / "out"
    dead = _staging(out, dead_pid)
    alive = _staging(out, os.getpid(), files=("cutoffs.csv",), tag="1")
    other_host = _staging(out, dead_pid, host="ffffffff")
    foreign = _staging(out, dead_pid, files=("thesis.tex",), tag="2")
    old_format = tmp_path / "out.tmp-0123456789ab"
    old_format.mkdir()
    unrelated = tmp_path / "out.tmp-notes"
    unrelated.mkdir()
    states = dict((os.path.basename(p), s) for p, s in staging_dirs(str(out)))
    assert states == {dead.name: "dead", alive.name: "alive", other_host.name: "alive",
                      foreign.name: "unknown", old_format.name: "unknown"}
    assert remove_dead_staging(str(out)) == [str(dead)]
    assert not dead.exists()
    assert all(p.exists() for p in (alive, other_host, foreign, old_format, unrelated))


def _committed(tmp_path, keep_work=False, failed=()):
    out, work = tmp_path / "out", tmp_path / "out.work"
    (work / "segments").mkdir(parents=True)
    (work / "work.json").write_text("{}")
    (work / "segments" / "s.parquet").write_bytes(b"x")
    out.mkdir()
    stats = {"committed": True, "failed_segments": list(failed), "work_dir": str(work),
             "config": {"keep_work": keep_work}}
    (out / "stats.json").write_text(json.dumps(stats))
    return out, work


def test_work_dir_of_a_committed_run_is_a_leftover(tmp_path):
    out, work = _committed(tmp_path)
    assert committed_run_left_work_dir(str(out), str(out / "stats.json"), str(work), "work.json")


@pytest.mark.parametrize("case", ["keep_work", "failed", "newer_file", "live_staging", "not_ours"])
def test_work_dir_is_kept_when_it_may_still_be_wanted(tmp_path, case):
    out, work = _committed(tmp_path, keep_work=case == "keep_work", failed=["s"] if case == "failed" else ())
    if case == "newer_file":  # something wrote into it after the commit
        later = os.stat(out / "stats.json").st_mtime + 5
        os.utime(work / "segments" / "s.parquet", (later, later))
    if case == "live_staging":
        _staging(out, os.getpid())
    if case == "not_ours":
        (work / "work.json").unlink()
    assert not committed_run_left_work_dir(str(out), str(out / "stats.json"), str(work), "work.json")


@pytest.mark.slow
def test_a_later_run_removes_a_killed_runs_staging_and_the_work_dir_left_after_a_commit(tmp_path, shared_data, dead_pid):
    from pipeline.corpus import main

    wet = str(shared_data / "wet" / "cc_whirlwind_whirlwind.warc.wet.gz")
    out = tmp_path / "out"
    killed = _staging(out, dead_pid)
    argv = ["--input", wet, "--output", str(out), "--min-len", "10", "--keep-work"]
    assert main(argv) == 0
    assert not killed.exists() and (tmp_path / "out.work").is_dir()
    # as if killed right after its commit: the run did not ask to keep its work dir
    stats = json.loads((out / ".cc100" / "stats.json").read_text())
    stats["config"]["keep_work"] = False
    (out / ".cc100" / "stats.json").write_text(json.dumps(stats))
    # another --min-len: not up to date, so refused (the output is finished); the leftover is removed anyway
    assert main([*argv[:-1], "--min-len", "11"]) == 2
    assert not (tmp_path / "out.work").exists()
