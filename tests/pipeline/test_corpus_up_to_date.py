"""`cc100 corpus` on an output it already wrote: up to date with the same settings and inputs
(exit 0, nothing touched), otherwise refused or replaced as before (pipeline/contracts.py)."""

from __future__ import annotations

import os

from pipeline.contracts import mark_complete, out_of_date
from pipeline.corpus import main
from pipeline.corpus_run import completion
from pipeline.options import parse_args
from tests.pipeline.corpus_helpers import gzip_members, warc_record
from tests.uptodate import assert_up_to_date, tree_state


def _wet(path, tag: str = "a", n: int = 5):
    body = " ".join(["alpha bravo charlie delta echo foxtrot golf hotel india juliet"] * 8)
    path.write_bytes(gzip_members([warc_record(f"{body} {tag} {i}\n" * 3, url=f"http://{tag}.example/{i}")
                                   for i in range(n)]))
    return path


def _decided(argv):
    config, _ = parse_args(argv)
    return completion(config, [config.inputs[0]])


def test_a_second_identical_run_is_up_to_date_and_a_changed_one_is_not(tmp_path, capsys):
    wet = _wet(tmp_path / "a.warc.wet.gz")
    out = tmp_path / "out"
    argv = ["--input", str(wet), "--output", str(out), "--lang-threshold", "0"]
    assert main(argv) == 0, capsys.readouterr().err
    capsys.readouterr()
    before = tree_state(out)
    for extra in ([], ["--overwrite"], ["--workers", "2"]):  # --overwrite replaces only what is stale
        rc = main(argv + extra)
        assert_up_to_date("corpus", out, rc, capsys.readouterr().out, before)
    assert not os.path.exists(f"{out}.work")

    # other settings: refused as before (the reason on stdout), replaced with --overwrite
    rc = main(argv + ["--min-len", "100"])
    captured = capsys.readouterr()
    assert rc == 2 and "already holds a finished cc100 corpus run" in captured.err
    assert "cc100 corpus: not up to date (config min_len: 300 -> 100)" in captured.out
    assert tree_state(out) == before
    # other inputs: the WET file (path, size, time), the LM directory (its completion record)
    os.utime(wet, ns=(wet.stat().st_atime_ns, wet.stat().st_mtime_ns + 10**9))
    assert out_of_date(out, "corpus", *_decided(argv)) == "input wet changed"
    lm = tmp_path / "lm"
    mark_complete(lm, "lm", {"order": 5}, {"en": "sha256:0"})
    assert out_of_date(out, "corpus", *_decided(argv + ["--lm-dir", str(lm)])) == "input lm is new; input wet changed"
    # --force runs it again, up to date or not
    assert main(argv + ["--force"]) == 0
    assert "--force given" in capsys.readouterr().out
    assert tree_state(out) != before
    # (an output on an object store is up to date the same way, through Beam's FileSystems:
    # tests/pipeline/test_dataflow.py::test_whole_job_runs_on_an_object_store_and_resumes_from_remote_spools)
