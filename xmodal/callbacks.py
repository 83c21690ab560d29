"""Lightning callbacks xmodal adds by default."""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Any, Sequence

import pytorch_lightning as pl
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
        rows = []
        for batch in predictions if predictions and isinstance(predictions[0], dict) else []:
            columns = list(batch)
            rows.extend(zip(*(batch[c] for c in columns)))
        if not rows:
            return
        if trainer.world_size > 1:
            path = Path(self._path(trainer)).with_suffix(f".rank{trainer.global_rank}.csv")
        else:
            path = Path(self._path(trainer))
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        with tmp.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(columns)
            writer.writerows(rows)
        os.replace(tmp, path)
        self.written = path
        print(f"predictions: {len(rows)} rows written to {path}")

    def _path(self, trainer: pl.Trainer) -> str:
        if self.output:
            return self.output
        return str(Path(trainer.log_dir or ".") / "predictions.csv")
