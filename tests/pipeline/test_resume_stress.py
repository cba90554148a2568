"""Stress (issue #14): re-runs that read every segment back from the work dir's spools, under CPU
load, with 2 and 4 worker processes, write exactly the rows of a fresh run, content included.

Before the fix, Beam's local runner lost chunks of a stage's input when its sending thread was
starved (docs/beam_data_plane_race.md): rows went missing in blocks of 250 records, or dedup
losses never reached their documents, and the run exited 0. A few minutes on 2 cores.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pyarrow.dataset as ds
import pytest

from bench.synth_wet import SynthConfig, synthesize
from pipeline.main import main

pytestmark = pytest.mark.slow

FILES, DOCS = 4, 600
RERUNS = {2: 2, 4: 2}  # --workers -> re-runs
BUSY_LOOPS = 2


def _rows(out) -> dict:
    table = ds.dataset(str(out), format="parquet", exclude_invalid_files=True).to_table(
        columns=["url", "cc_segment", "record_offset", "raw_content", "line_ids", "language", "bucket"])
    rows = {}
    for r in table.to_pylist():
        key = (r.pop("cc_segment"), r.pop("record_offset"))
        assert key not in rows, f"duplicate row {key}"
        rows[key] = r
    return rows


@pytest.fixture(scope="module")
def fresh(tmp_path_factory, shared_data):
    root = tmp_path_factory.mktemp("resume_stress")
    for seed in range(FILES):
        synthesize(root / "wet" / f"synth-{seed}.warc.wet.gz", SynthConfig(docs=DOCS, seed=seed), shared_data)
    argv = ["--input", str(root / "wet" / "*.warc.wet.gz"), "--output", str(root / "out"), "--workers", "2",
            "--keep-work"]
    assert main(argv) == 0
    return root, argv, _rows(root / "out")


@pytest.fixture
def cpu_load():
    loops = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(BUSY_LOOPS)]
    yield
    for loop in loops:
        loop.kill()
        loop.wait()


def test_reruns_from_spools_under_load_equal_a_fresh_run(fresh, cpu_load):
    root, argv, expected = fresh
    assert len(expected) > 1000
    for workers, reruns in RERUNS.items():
        for attempt in range(reruns):
            shutil.rmtree(root / "out")  # the work dir (all segments spooled) stays
            run = [*argv[:argv.index("--workers") + 1], str(workers), "--keep-work"]
            assert main(run) == 0, f"--workers {workers}, re-run {attempt}"
            stats = json.loads((root / "out" / "stats.json").read_text())
            assert stats["segments"]["spool"] == FILES and stats["conservation"] == {"failed": []}
            got = _rows(root / "out")
            assert got.keys() == expected.keys(), f"--workers {workers}: {len(expected.keys() - got.keys())} rows missing"
            assert got == expected, f"--workers {workers}: rows differ in content"
