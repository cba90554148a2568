"""Checkpoint writes leave nothing behind: a later save removes a killed save's temporary file."""

from __future__ import annotations

import os
import subprocess
import sys

from train.checkpoint import CHECKPOINT, load_checkpoint, remove_dead_temporaries, save_checkpoint


def _bundle(step: int) -> dict:
    return {"model": {}, "model_config": {}, "optimizer": {}, "scheduler": {}, "data": {}, "step": step,
            "train_config": {}}


def test_a_save_removes_the_temporaries_of_dead_writers_only(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()  # a writer that is gone, as after a kill during torch.save
    dead = tmp_path / f".{CHECKPOINT}.tmp{proc.pid}"
    dead.write_bytes(b"half a checkpoint")
    live = tmp_path / f".{CHECKPOINT}.tmp{os.getppid()}"  # a live process (pytest's parent)
    live.write_bytes(b"being written")
    other = tmp_path / f".{CHECKPOINT}.tmp{proc.pid}.keep"  # not our name
    other.write_bytes(b"x")
    save_checkpoint(tmp_path / CHECKPOINT, _bundle(3))
    assert load_checkpoint(tmp_path / CHECKPOINT)["step"] == 3
    assert not dead.exists() and live.exists() and other.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([CHECKPOINT, live.name, other.name])
    assert remove_dead_temporaries(tmp_path / CHECKPOINT) == []
