"""A rich progress bar that also shows training throughput (samples/s)."""

from __future__ import annotations

import time
from collections import deque
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import RichProgressBar


def batch_size(batch: Any) -> int:
    """Samples in a batch: the first dimension of its first tensor."""
    if torch.is_tensor(batch):
        return int(batch.shape[0]) if batch.ndim else 1
    if isinstance(batch, dict):
        batch = list(batch.values())
    if isinstance(batch, (list, tuple)):
        for value in batch:
            size = batch_size(value)
            if size:
                return size
    return 0


class ThroughputProgressBar(RichProgressBar):
    """:class:`RichProgressBar` with ``samples/s`` over the last ``window`` batches.

    The rate counts every rank (``world_size`` times one rank's samples), so it is the
    whole job's throughput under DDP.

    Args:
        window: batches the moving rate is measured over.
        **kwargs: see :class:`~pytorch_lightning.callbacks.RichProgressBar`.
    """

    def __init__(self, window: int = 20, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._marks: deque[tuple[float, int]] = deque(maxlen=window + 1)

    def samples_per_second(self, world_size: int = 1) -> float | None:
        if len(self._marks) < 2:
            return None
        seconds = self._marks[-1][0] - self._marks[0][0]
        samples = sum(n for _, n in list(self._marks)[1:])
        return world_size * samples / seconds if seconds > 0 else None

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_train_epoch_start(trainer, pl_module)
        self._marks.clear()
        self._marks.append((time.perf_counter(), 0))

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any,
                           batch: Any, batch_idx: int) -> None:
        self._marks.append((time.perf_counter(), batch_size(batch)))
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)

    def get_metrics(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> dict[str, Any]:
        items = super().get_metrics(trainer, pl_module)
        rate = self.samples_per_second(trainer.world_size)
        if rate is not None:
            items["samples/s"] = f"{rate:.1f}"
        return items
