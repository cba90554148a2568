"""Quiet logs: no Beam import or worker start-up chatter, one format with 1 and N workers, and
the corpus job's progress line (files i/N, documents/s) in what Airflow or CI would capture."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT

NOISE = ("apitools", "semi_persistent_directory", "Logging handler created", "WARNING:root")
LINE = re.compile(r"^\d\d:\d\d:\d\d (INFO|WARNING|ERROR) \S")


def cc100(*argv, env=None):
    return subprocess.run([sys.executable, "-m", "cc100.cli", *map(str, argv)], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(REPO_ROOT), **(env or {})})


@pytest.mark.parametrize("command", ["lm", "corpus", "report", "prefetch"])
def test_help_prints_no_warning(command):
    r = cc100(command, "--help")
    assert r.returncode == 0 and r.stdout.startswith(f"usage: cc100 {command}")
    assert r.stderr == "", r.stderr


@pytest.mark.slow
@pytest.mark.parametrize("workers", [1, 2])
def test_corpus_logs_one_format_and_progress(shared_data, tmp_path, workers):
    r = cc100("corpus", "--input", shared_data / "wet" / "CC-MAIN-2019-30-sample-*.warc.wet.gz",
              "--output", tmp_path / "out", "--workers", workers,
              env={"CC100_PROGRESS_EVERY_S": "3600"})
    assert r.returncode == 0, r.stderr[-2000:]
    lines = r.stderr.splitlines()
    assert not [x for x in lines if any(n in x for n in NOISE)]
    assert [x for x in lines if not LINE.match(x)] == []
    reads = [x for x in lines if " INFO read " in x]
    assert len(reads) == 2  # one per WET file, logged by the worker processes in our format
    progress = [x for x in lines if " files " in x]
    assert len(progress) == 1, progress  # a long `every`: only the line saying it is done
    assert re.search(r"INFO files 2/2 \(100%\), [\d,]+ documents/s, done in 0:\d\d:\d\d$",
                     progress[0])
