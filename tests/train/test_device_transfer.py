"""Host-to-device batches: pinned memory from the prefetch thread, asynchronous copies."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.train.test_data import shards, stream  # noqa: F401 - the module-scoped shards fixture
from train.data import PINNED_KEYS, Prefetcher, pin_arrays

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def test_prefetcher_pins_the_token_arrays_on_its_thread(shards, monkeypatch):  # noqa: F811
    """With pin_memory the token arrays leave the prefetch thread as pinned tensors, the same
    values as the plain stream's; the other fields are untouched. (A CPU-only torch cannot
    allocate page-locked memory, so `pin_memory` is replaced by a recorder here.)"""
    import threading

    pinned_on = []

    def fake_pin(self):
        pinned_on.append(threading.current_thread().name)
        return self.clone()

    monkeypatch.setattr(torch.Tensor, "pin_memory", fake_pin)
    plain = stream(shards)
    fetcher = Prefetcher(stream(shards), pin_memory=True)
    try:
        for _ in range(3):
            got, want = fetcher.next_batch(), plain.next_batch()
            for key in PINNED_KEYS:
                assert isinstance(got[key], torch.Tensor)
                np.testing.assert_array_equal(got[key].numpy(), want[key])
            assert got["languages"] == want["languages"]
        assert fetcher.state_dict() == plain.state_dict()
    finally:
        fetcher.close()
    assert pinned_on and all(name.startswith("mlm-prefetch") for name in pinned_on)


def test_unpinned_prefetcher_hands_out_numpy(shards):  # noqa: F811
    fetcher = Prefetcher(stream(shards))
    try:
        assert all(isinstance(fetcher.next_batch()[k], np.ndarray) for k in PINNED_KEYS)
    finally:
        fetcher.close()


@cuda
def test_pinned_batch_copies_asynchronously():
    batch = pin_arrays({"input_ids": np.arange(64).reshape(2, 32), "labels": np.zeros((2, 32), np.int64),
                        "languages": ["xx", "yy"]})
    assert batch["input_ids"].is_pinned() and batch["labels"].is_pinned()
    x = batch["input_ids"].to("cuda", non_blocking=True)
    torch.cuda.synchronize()
    assert torch.equal(x.cpu(), batch["input_ids"])
