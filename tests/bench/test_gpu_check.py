"""The pieces of the GPU check (bench/gpu_check.sh) that run anywhere: the data-path benchmark's
target and timing, and the step-by-step comparison of an unbroken and a resumed run."""

from __future__ import annotations

import json

import pytest

from bench.bench_data import required_tokens_per_s, time_stream
from bench.compare_runs import compare, main as compare_main, read_log
from tests.train.test_data import shards  # noqa: F401 - module-scoped shards fixture


def write_log(run, records, tail=""):
    run.mkdir()
    (run / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records) + tail)


def test_base_consumption_at_45_percent_mfu_of_an_h200():
    need = required_tokens_per_s("base", 512, 0.15, 989e12, 0.45)
    # 6 N (85M encoder weights) + attention + the tied head on the masked 15 %: about 0.74 GFLOP/token
    assert 0.7e9 < need["flops_per_token"] < 0.8e9
    assert need["gpu_tokens_per_s"] == pytest.approx(989e12 * 0.45 / need["flops_per_token"])


def test_time_stream_measures_the_real_stream(shards):  # noqa: F811
    rates = time_stream(str(shards.root), max_len=32, batch=8, batches=3, repeats=2, seed=0)
    assert len(rates) == 2 and all(r > 0 for r in rates)


def test_identical_runs_compare_equal_and_a_drift_is_found(tmp_path):
    recs = [{"step": s, "loss": 8.0 - s / 10, "grad_norm": 1.0, "val_loss": {"en": 7.0, "fr": 7.5}}
            for s in range(1, 11)]
    write_log(tmp_path / "a", recs)
    write_log(tmp_path / "b", recs, tail='{"step": 11, "loss": 7.')  # a line cut by a kill is skipped
    same = compare(read_log(tmp_path / "a"), read_log(tmp_path / "b"), from_step=6)
    assert same["steps_compared"] == 5 and same["loss"]["identical"] and same["val_loss"]["identical"]
    drift = [dict(r) for r in recs]
    drift[7]["loss"] += 0.01
    drift[8]["val_loss"] = {"en": 7.0, "fr": 7.52}
    write_log(tmp_path / "c", drift)
    got = compare(read_log(tmp_path / "a"), read_log(tmp_path / "c"))
    assert got["loss"]["max_abs_diff"] == pytest.approx(0.01) and got["loss"]["at_step"] == 8
    assert got["val_loss"]["max_abs_diff"] == pytest.approx(0.02) and got["val_loss"]["at_step"] == 9
    del drift[9]["val_loss"]["fr"]  # a language missing on one side is an infinite difference
    write_log(tmp_path / "d", drift)
    assert compare(read_log(tmp_path / "a"), read_log(tmp_path / "d"))["val_loss"]["max_abs_diff"] == float("inf")


def test_compare_runs_fails_without_common_steps(tmp_path):
    write_log(tmp_path / "a", [{"step": 1, "loss": 1.0}])
    write_log(tmp_path / "b", [{"step": 2, "loss": 1.0}])
    assert compare_main([str(tmp_path / "a"), str(tmp_path / "b")]) == 1
    assert compare_main([str(tmp_path / "a"), str(tmp_path / "missing")]) == 2
