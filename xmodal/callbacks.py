"""Lightning callbacks xmodal adds by default."""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Any, Sequence

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import BasePredictionWriter


class PredictionCSVWriter(BasePredictionWriter):
    """Write ``predictions.csv`` (path, label, probability) after ``xmodal predict``.

    Args:
        output: CSV path; default ``predictions.csv`` in the run's log folder.
    """

    def __init__(self, output: str | None = None) -> None:
        super().__init__(write_interval="epoch")
        self.output = output
        self.written: Path | None = None

    def write_on_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                           predictions: Sequence[Any], batch_indices: Sequence[Any]) -> None:
        """Write one CSV; under DDP every rank's shard is gathered to rank 0 first.

        Each rank predicts a shard (Lightning's unrepeated distributed sampler); the
        rows are put back in data set order using the sample indices of each batch.
        """
        path = Path(self._path(trainer))  # on every rank: log_dir is a collective call
        columns, rows = _rows(predictions, batch_indices)
        if trainer.world_size > 1 and torch.distributed.is_available() and torch.distributed.is_initialized():
            shards: list[Any] = [None] * trainer.world_size if trainer.is_global_zero else None
            torch.distributed.gather_object((columns, rows), shards, dst=0)
            if not trainer.is_global_zero:
                return
            columns = next((c for c, _ in shards if c), columns)
            rows = [row for _, shard in shards for row in shard]
        if not rows:
            return
        if all(index is not None for index, _ in rows):
            rows.sort(key=lambda row: row[0])
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        with tmp.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(columns)
            writer.writerows(row[1] for row in rows)
        os.replace(tmp, path)
        self.written = path
        print(f"predictions: {len(rows)} rows written to {path}")

    def _path(self, trainer: pl.Trainer) -> str:
        if self.output:
            return self.output
        return str(Path(trainer.log_dir or ".") / "predictions.csv")


def _rows(predictions: Sequence[Any], batch_indices: Sequence[Any]) -> tuple[list[str], list[tuple[Any, tuple]]]:
    """``(columns, [(sample index or None, row), ...])`` from one dataloader's batches."""
    columns: list[str] = []
    rows: list[tuple[Any, tuple]] = []
    if not predictions or not isinstance(predictions[0], dict):
        return columns, rows
    if batch_indices and batch_indices[0] and isinstance(batch_indices[0][0], (list, tuple)):
        batch_indices = batch_indices[0]  # Lightning nests them per dataloader
    indices = batch_indices if batch_indices and len(batch_indices) == len(predictions) else None
    for number, batch in enumerate(predictions):
        columns = list(batch)
        batch_rows = list(zip(*(batch[c] for c in columns)))
        ids = list(indices[number]) if indices is not None and indices[number] is not None else []
        if len(ids) != len(batch_rows):
            ids = [None] * len(batch_rows)
        rows.extend(zip(ids, batch_rows))
    return columns, rows
