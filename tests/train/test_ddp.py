"""2-process DDP (torchrun, gloo, CPU) equals 1 process with the same global batch.

Dropout is off: its masks depend on how rows are split into micro-batches, everything else
(data, masking, loss normalisation) is arranged to be independent of the split.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from tests.conftest import REPO_ROOT
from tests.train.test_tokenize import build_world

STEPS = 6
ARGS = ["--config", "tiny", "--max-len", "64", "--batch-tokens", "1024", "--micro-batch", "4",
        "--log-every", "1", "--eval-every", "3", "--eval-seqs", "4", "--checkpoint-every", "2",
        "--seed", "5", "--lr", "2e-3", "--warmup-steps", "2", "--dropout", "0", "--steps", str(STEPS)]


@pytest.fixture(scope="module")
def world(tmp_path_factory, shared_data):
    return build_world(tmp_path_factory, shared_data)


def run(world, out, nproc: int, *extra) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "train.pretrain"]
    if nproc > 1:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc),
               "-m", "train.pretrain"]
    cmd += ["--shards", str(world.shards), "--vocab", str(world.vocab), "--output", str(out), *ARGS,
            *map(str, extra)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO_ROOT), "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def read_log(run_dir) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def single(world, tmp_path_factory):
    out = tmp_path_factory.mktemp("single")
    run(world, out, 1)
    return out


def assert_same_run(a, b, rel=2e-5):
    la, lb = read_log(a), read_log(b)
    assert [r["step"] for r in la] == [r["step"] for r in lb] == list(range(1, STEPS + 1))
    for x, y in zip(la, lb):
        assert y["loss"] == pytest.approx(x["loss"], rel=rel), x["step"]
        assert y["lr"] == x["lr"]
        assert y["mlm_accuracy"] == pytest.approx(x["mlm_accuracy"], abs=0.01), x["step"]
        if "val_loss" in x:
            assert y["val_loss"] == pytest.approx(x["val_loss"], rel=rel), x["step"]
    ma = torch.load(a / "checkpoint.pt", weights_only=True)["model"]
    mb = torch.load(b / "checkpoint.pt", weights_only=True)["model"]
    for name in ma:
        torch.testing.assert_close(mb[name], ma[name], rtol=1e-4, atol=1e-5, msg=name)


def test_two_ranks_equal_one_process(world, single, tmp_path):
    # FULL-SENTENCES (the default): padded rows, split differently into micro-batches per rank
    assert max(r["pad_share"] for r in read_log(single)) > 0
    proc = run(world, tmp_path, 2)
    assert "2 rank(s) on cpu" in proc.stdout
    assert proc.stdout.count("cc100 pretrain: model") == 1, "only rank 0 prints"
    assert_same_run(single, tmp_path)
    # the losses changed over the run, so the comparison is not between constants
    losses = [r["loss"] for r in read_log(tmp_path)]
    assert len(set(losses)) == STEPS
    ck = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert ck["world_size"] == 2 and not any(k.startswith("module.") for k in ck["model"])


def test_resume_with_another_world_size(world, single, tmp_path):
    """The data cursor is global: a 2-rank run stopped at step 3 continues on 1 rank."""
    run(world, tmp_path, 2, "--stop-at-step", 3)
    assert torch.load(tmp_path / "checkpoint.pt", weights_only=True)["step"] == 2
    run(world, tmp_path, 1, "--resume")
    assert_same_run(single, tmp_path)


def test_two_ranks_equal_one_process_with_block_packing(world, tmp_path):
    run(world, tmp_path / "one", 1, "--packing", "blocks")
    run(world, tmp_path / "two", 2, "--packing", "blocks")
    assert all(r["pad_share"] == 0 for r in read_log(tmp_path / "two"))
    assert_same_run(tmp_path / "one", tmp_path / "two")
