"""Atomic checkpoint writes, the resumable sampler and ``--ckpt_path last`` lookup (fast)."""

from __future__ import annotations

import os
import threading
import time

import pytest
import torch

from xmodal.checkpointing import AtomicCheckpointIO, atomic_torch_save, find_last_checkpoint
from xmodal.data.resume import ResumableLoader, ResumableSampler


class Unpicklable:
    def __reduce__(self):  # noqa: ANN204
        raise RuntimeError("disk full (simulated)")


def test_failed_save_keeps_the_previous_checkpoint(tmp_path) -> None:
    path = tmp_path / "last.ckpt"
    atomic_torch_save({"step": 1, "w": torch.ones(3)}, path)
    with pytest.raises(RuntimeError, match="disk full"):
        atomic_torch_save({"step": 2, "bad": Unpicklable()}, path)
    assert torch.load(path, weights_only=True)["step"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]  # no temp file left


def test_readers_never_see_a_torn_file(tmp_path) -> None:
    """A reader polling while a writer replaces the file only ever loads whole checkpoints."""
    path = tmp_path / "last.ckpt"
    io = AtomicCheckpointIO()
    io.save_checkpoint({"step": 0, "w": torch.zeros(200_000)}, path)
    stop, errors = threading.Event(), []

    def read() -> None:
        while not stop.is_set():
            try:
                step = torch.load(path, weights_only=True)["step"]
                assert 0 <= step < 20
            except Exception as exc:  # a torn file would fail to unpickle here
                errors.append(exc)

    reader = threading.Thread(target=read)
    reader.start()
    for step in range(1, 20):
        io.save_checkpoint({"step": step, "w": torch.full((200_000,), float(step))}, path)
    stop.set()
    reader.join()
    assert errors == []


def test_sampler_order_depends_only_on_seed_and_epoch() -> None:
    first, second = ResumableSampler(50, seed=3), ResumableSampler(50, seed=3)
    torch.manual_seed(0)
    a = list(first)
    torch.manual_seed(1)  # the global RNG plays no part
    assert list(second) == a and sorted(a) == list(range(50))
    second.set_epoch(1)
    assert list(second) != a


def test_loader_resumes_mid_epoch() -> None:
    data = list(range(20))
    loader = ResumableLoader(data, batch_size=4, sampler=ResumableSampler(20, seed=5))
    loader.sampler.set_epoch(2)
    full = [batch.tolist() for batch in loader]
    loader.position = lambda: 2  # two batches trained on when the checkpoint was written
    state = loader.state_dict()
    assert state == {"epoch": 2, "batches": 2}
    fresh = ResumableLoader(data, batch_size=4, sampler=ResumableSampler(20, seed=5))
    fresh.load_state_dict(state)
    assert [batch.tolist() for batch in fresh] == full[2:]
    assert [batch.tolist() for batch in fresh] == full  # the next pass is a whole epoch
    assert len(fresh) == 5


def test_find_last_checkpoint_takes_the_newest_run(tmp_path) -> None:
    assert find_last_checkpoint(tmp_path) is None
    old = tmp_path / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt"
    new = tmp_path / "lightning_logs" / "version_1" / "checkpoints" / "last.ckpt"
    for path in (old, new):
        path.parent.mkdir(parents=True)
        path.write_bytes(b"x")
    past = time.time() - 100
    os.utime(old, (past, past))
    assert find_last_checkpoint(tmp_path) == new
