"""``--profile`` report groups and the samples/s progress bar (no training needed)."""

from __future__ import annotations

import torch

from xmodal.cli import _expand_shortcuts
from xmodal.profiling import StageProfiler
from xmodal.progress import ThroughputProgressBar, batch_size


def test_profile_flag_selects_the_stage_profiler() -> None:
    args = _expand_shortcuts(["fit", "--modality", "audio", "--profile"])
    assert args == ["fit", "--data.modality", "audio", "--trainer.profiler=xmodal.profiling.StageProfiler"]


def test_report_groups_decode_transform_forward_backward() -> None:
    profiler = StageProfiler()
    profiler.recorded_durations.update({
        "[LightningDataModule]XModalDataModule.setup": [2.0],
        "[_TrainingEpochLoop].train_dataloader_next": [0.5, 0.5],
        "[Strategy]SingleDeviceStrategy.training_step": [3.0],
        "xmodal: device transform": [0.4],
        "xmodal: backbone": [2.0],
        "[Strategy]SingleDeviceStrategy.backward": [4.0],
        "[LightningModule]ClassificationTask.optimizer_step": [7.5],
    })
    totals = profiler.totals()
    assert totals["decode: data module setup (up-front decode or cache load)"] == 2.0
    assert totals["data loading: next batch (decode on access, collate)"] == 1.0
    assert totals["device transform (train + val)"] == 0.4
    assert totals["backward"] == 4.0
    assert abs(totals["optimizer step (without forward/backward)"] - 0.5) < 1e-9
    report = profiler.summary()
    assert "where the time went" in report and "device transform" in report


def test_samples_per_second_counts_every_rank() -> None:
    bar = ThroughputProgressBar()
    for when, size in [(0.0, 0), (1.0, 8), (2.0, 8)]:
        bar._marks.append((when, size))
    assert bar.samples_per_second() == 8.0
    assert bar.samples_per_second(world_size=2) == 16.0
    assert batch_size({"input": torch.zeros(5, 3), "label": torch.zeros(5)}) == 5
