"""Atomic checkpoint writes, the resumable sampler and ``--ckpt_path last`` lookup (fast)."""

from __future__ import annotations

import os
import random
import threading
import time
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from xmodal.checkpointing import (AtomicCheckpointIO, BestCheckpoint, ResumeState, atomic_torch_save,
                                  find_last_checkpoint)
from xmodal.data.resume import LengthGroupedSampler, ResumableLoader, ResumableSampler


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


def test_length_grouped_batches_are_alike_shuffled_and_resumable() -> None:
    lengths = torch.randint(1, 257, (203,), generator=torch.Generator().manual_seed(0)).tolist()
    sampler = LengthGroupedSampler(lengths, batch_size=8, seed=3, group=5)
    order = list(sampler)
    assert sorted(order) == list(range(203)) and list(sampler) == order
    batches = [order[i:i + 8] for i in range(0, 200, 8)]  # drop_last leaves the 3 after these

    def spread(batch: list[int]) -> int:
        return max(lengths[i] for i in batch) - min(lengths[i] for i in batch)

    random_order = ResumableSampler(203, seed=3).order()
    random_batches = [random_order[i:i + 8] for i in range(0, 200, 8)]
    assert sum(map(spread, batches)) < sum(map(spread, random_batches)) / 3
    firsts = [lengths[batch[0]] for batch in batches]
    assert firsts != sorted(firsts, reverse=True)  # batch order is shuffled, not long to short
    sampler.set_epoch(1)
    assert list(sampler) != order
    loader = ResumableLoader(list(range(203)), batch_size=8, drop_last=True,
                             sampler=LengthGroupedSampler(lengths, batch_size=8, seed=3, group=5))
    assert [batch.tolist() for batch in loader] == batches
    loader.load_state_dict({"epoch": 0, "batches": 10})
    assert [batch.tolist() for batch in loader] == batches[10:]


def test_a_saved_position_applies_to_its_own_epoch_only() -> None:
    data = list(range(20))

    def batches(loader: ResumableLoader) -> list[list[int]]:
        return [batch.tolist() for batch in loader]

    reference = ResumableLoader(data, batch_size=4, sampler=ResumableSampler(20, seed=5))
    reference.sampler.set_epoch(2)
    epoch_2 = batches(reference)
    loader = ResumableLoader(data, batch_size=4, sampler=ResumableSampler(20, seed=5))
    loader.load_state_dict({"epoch": 1, "batches": 2})
    loader.sampler.set_epoch(2)  # the saved epoch is not the one that runs: start at its beginning
    assert batches(loader) == epoch_2
    loader.load_state_dict({"epoch": 2, "batches": 5})  # a complete epoch: nothing to skip
    assert batches(loader) == epoch_2


def test_a_loader_whose_worker_prefetched_restarts_at_the_saved_position() -> None:
    """What ``ResumeState`` does: the iterator made before the checkpoint was read has a
    worker prefetching epoch 0 from its start; the state is applied and the loader
    iterated afresh."""
    data = list(range(20))
    reference = ResumableLoader(data, batch_size=4, sampler=ResumableSampler(20, seed=5))
    reference.sampler.set_epoch(1)
    expected = [batch.tolist() for batch in reference][2:]
    loader = ResumableLoader(data, batch_size=4, sampler=ResumableSampler(20, seed=5),
                             num_workers=1, persistent_workers=True)
    iter(loader)  # Lightning's early iterator (estimated_stepping_batches)
    loader.load_state_dict({"epoch": 1, "batches": 2})
    assert [batch.tolist() for batch in loader] == expected


def test_rng_states_survive_a_weights_only_checkpoint(tmp_path) -> None:
    callback = ResumeState()
    atomic_torch_save({"state": callback.state_dict()}, tmp_path / "last.ckpt")
    draws = torch.rand(3), np.random.rand(3), random.random()
    torch.manual_seed(123)  # what happens between the load and the first resumed batch
    np.random.seed(123)
    random.seed(123)
    resumed = ResumeState()
    resumed.load_state_dict(torch.load(tmp_path / "last.ckpt", weights_only=True)["state"])
    trainer = SimpleNamespace(fit_loop=SimpleNamespace(_combined_loader=None), lr_scheduler_configs=[])
    resumed.on_train_start(trainer, None)
    again = torch.rand(3), np.random.rand(3), random.random()
    assert torch.equal(draws[0], again[0]) and np.array_equal(draws[1], again[1]) and draws[2] == again[2]


def test_best_checkpoint_keeps_the_best_of_the_run_it_resumes(tmp_path) -> None:
    """A resumed run logs to a new version folder; the best score and file stay known."""
    old_dir, new_dir = tmp_path / "version_0", tmp_path / "version_1"
    old_dir.mkdir()
    best = old_dir / "best-epoch=00.ckpt"
    best.write_bytes(b"x")
    saved = BestCheckpoint(monitor="val/acc", mode="max", dirpath=str(old_dir))
    saved.best_model_path, saved.best_model_score = str(best), torch.tensor(0.75)
    saved.best_k_models, saved.kth_best_model_path, saved.kth_value = (
        {str(best): torch.tensor(0.75)}, str(best), torch.tensor(0.75))
    resumed = BestCheckpoint(monitor="val/acc", mode="max", dirpath=str(new_dir))
    resumed.load_state_dict(saved.state_dict())
    assert resumed.best_model_path == str(best) and float(resumed.best_model_score) == 0.75
    assert list(resumed.best_k_models) == [str(best)]
    best.unlink()  # the earlier run's best file is gone: nothing to compare against
    forgotten = BestCheckpoint(monitor="val/acc", mode="max", dirpath=str(new_dir))
    forgotten.load_state_dict(saved.state_dict())
    assert forgotten.best_model_score is None and forgotten.best_k_models == {}


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
