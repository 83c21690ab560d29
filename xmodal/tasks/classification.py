"""Single-label classification: cross-entropy, accuracy, macro-F1, confusion matrix."""

from __future__ import annotations

from typing import Any

import torch
import torchmetrics
from torch import nn

from xmodal.tasks.base import BaseTask


class ClassificationTask(BaseTask):
    """Classify each input into one of ``class_names``.

    Args:
        label_smoothing: cross-entropy label smoothing.
        dropout: dropout before the linear layer.
        **kwargs: see :class:`BaseTask`.
    """

    def __init__(self, *args: Any, label_smoothing: float = 0.0, dropout: float = 0.2, **kwargs: Any) -> None:
        self._label_smoothing = label_smoothing
        self._dropout = dropout
        super().__init__(*args, **kwargs)  # BaseTask saves this class's arguments too
        self.loss_fn = nn.CrossEntropyLoss(label_smoothing=label_smoothing)

    def configure_head(self, in_features: int, num_outputs: int) -> nn.Module:
        self._configure_metrics(num_outputs)
        return nn.Sequential(nn.Dropout(self._dropout), nn.Linear(in_features, num_outputs))

    def _configure_metrics(self, num_classes: int) -> None:
        def metrics() -> torchmetrics.MetricCollection:
            return torchmetrics.MetricCollection({
                "acc": torchmetrics.classification.MulticlassAccuracy(num_classes, average="micro"),
                "f1": torchmetrics.classification.MulticlassF1Score(num_classes, average="macro"),
            })

        self.train_metrics = metrics().clone(prefix="train/")
        self.val_metrics = metrics().clone(prefix="val/")
        self.test_metrics = metrics().clone(prefix="test/")
        self.test_confusion = torchmetrics.classification.MulticlassConfusionMatrix(num_classes)

    def _step(
        self, batch: dict[str, Any], metrics: torchmetrics.MetricCollection, stage: str
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if stage == "train" and self.hparams.get("adversarial") and self.sequence_pool is not None:
            loss, logits = self.adversarial_loss(batch["input"], lambda out: self.loss_fn(out, batch["label"]))
        else:
            logits = self(batch["input"])
            loss = self.loss_fn(logits, batch["label"])
        if stage == "train" and self.hparams.get("typo_consistency") and self.sequence_pool is not None:
            loss = loss + self.typo_consistency_loss(batch["input"], logits)
        metrics.update(logits.detach(), batch["label"])
        batch_size = batch["label"].shape[0]
        self.log(f"{stage}/loss", loss, prog_bar=stage != "train", batch_size=batch_size, sync_dist=stage != "train")
        self.log_dict(metrics, prog_bar=True, on_step=False, on_epoch=True, batch_size=batch_size)
        return loss, logits

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        loss, _ = self._step(batch, self.train_metrics, "train")
        return loss

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._step(batch, self.val_metrics, "val")

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        _, logits = self._step(batch, self.test_metrics, "test")
        self.test_confusion.update(logits, batch["label"])

    def on_test_epoch_end(self) -> None:
        matrix = self.test_confusion.compute().cpu()
        self.test_confusion.reset()
        self.confusion_matrix = matrix
        if self.trainer.is_global_zero and not self.trainer.sanity_checking:
            print_confusion(matrix, self.hparams.class_names)

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, Any]:
        probs = torch.softmax(self(batch["input"]).float(), dim=-1)
        confidence, index = probs.max(dim=-1)
        names = self.hparams.class_names
        return {
            "path": list(batch["name"]),
            "label": [names[i] for i in index.tolist()],
            "probability": confidence.tolist(),
        }


def print_confusion(matrix: torch.Tensor, class_names: list[str]) -> None:
    """Print the confusion matrix as a rich table (rows: truth, columns: predicted)."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title="Confusion matrix (rows: true, columns: predicted)")
    table.add_column("")
    for name in class_names:
        table.add_column(str(name)[:8], justify="right")
    for name, row in zip(class_names, matrix.tolist()):
        table.add_row(str(name)[:12], *(str(int(v)) for v in row))
    Console().print(table)
