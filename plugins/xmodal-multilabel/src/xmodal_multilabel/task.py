"""Multi-label classification: one sigmoid per label, thresholds tuned per label.

A fixed 0.5 threshold is rarely right for every label (rare labels want a lower
one), so after each validation epoch the threshold of each label is set to the one
that maximises that label's F1 on the validation split. The thresholds are a buffer:
they are saved in the checkpoint and used by ``test`` and ``predict``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from xmodal.tasks import BaseTask

CANDIDATES = torch.linspace(0.05, 0.95, 19)


class MultiLabelTask(BaseTask):
    """Tag each input with any subset of ``class_names`` (labels are multi-hot).

    Args:
        dropout: dropout before the linear layer.
        pos_weight: weight of positive examples in the BCE loss (for rare labels).
        **kwargs: see :class:`xmodal.tasks.BaseTask`.
    """

    def __init__(self, *args: Any, dropout: float = 0.2, pos_weight: float = 1.0, **kwargs: Any) -> None:
        self._dropout = dropout
        super().__init__(*args, **kwargs)
        self.loss_fn = nn.BCEWithLogitsLoss(pos_weight=torch.tensor(pos_weight))
        self._val_outputs: list[tuple[torch.Tensor, torch.Tensor]] = []

    def configure_head(self, in_features: int, num_outputs: int) -> nn.Module:
        self.register_buffer("thresholds", torch.full((num_outputs,), 0.5))
        return nn.Sequential(nn.Dropout(self._dropout), nn.Linear(in_features, num_outputs))

    @staticmethod
    def targets(batch: dict[str, Any]) -> torch.Tensor:
        """Multi-hot targets ``(B, L)``: labels collate as one tensor per label."""
        labels = batch["label"]
        if isinstance(labels, (list, tuple)):
            labels = torch.stack([torch.as_tensor(v) for v in labels], dim=1)
        return labels.float()

    def _step(self, batch: dict[str, Any], stage: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        logits = self(batch["input"])
        target = self.targets(batch)
        loss = self.loss_fn(logits, target)
        self.log(f"{stage}/loss", loss, prog_bar=stage != "train", batch_size=target.shape[0])
        return loss, torch.sigmoid(logits.detach().float()), target

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train")[0]

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        _, probs, target = self._step(batch, "val")
        self._val_outputs.append((probs.cpu(), target.cpu()))

    def on_validation_epoch_end(self) -> None:
        if not self._val_outputs:
            return
        probs = torch.cat([p for p, _ in self._val_outputs])
        target = torch.cat([t for _, t in self._val_outputs])
        self._val_outputs.clear()
        if not self.trainer.sanity_checking:
            self.thresholds.copy_(best_thresholds(probs, target).to(self.thresholds))
        self.log("val/f1", f1_scores(probs, target, self.thresholds.cpu()).mean())
        # ModelCheckpoint / EarlyStopping in xmodal's defaults watch val/acc
        self.log("val/acc", exact_match(probs, target, self.thresholds.cpu()))

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        _, probs, target = self._step(batch, "test")
        predicted = probs >= self.thresholds
        size = target.shape[0]
        self.log("test/acc", (predicted == target.bool()).all(dim=1).float().mean(), batch_size=size)
        self.log("test/f1", f1_scores(probs, target, self.thresholds).mean(), batch_size=size)

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, Any]:
        probs = torch.sigmoid(self(batch["input"]).float())
        names = self.hparams.class_names
        chosen = probs >= self.thresholds
        return {
            "path": list(batch["name"]),
            "labels": [";".join(n for n, on in zip(names, row) if on) for row in chosen.tolist()],
            **{f"p_{name}": probs[:, i].tolist() for i, name in enumerate(names)},
        }


def f1_scores(probs: torch.Tensor, target: torch.Tensor, thresholds: torch.Tensor) -> torch.Tensor:
    """Per-label F1 of ``probs >= thresholds`` against 0/1 ``target`` (``(B, L)`` each)."""
    predicted = (probs >= thresholds).float()
    tp = (predicted * target).sum(0)
    fp = (predicted * (1 - target)).sum(0)
    fn = ((1 - predicted) * target).sum(0)
    return 2 * tp / (2 * tp + fp + fn).clamp_min(1e-8)


def best_thresholds(probs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """For each label, the candidate threshold with the highest F1 (ties: the lowest)."""
    scores = torch.stack([f1_scores(probs, target, torch.full((probs.shape[1],), float(c)))
                          for c in CANDIDATES])  # (candidates, labels)
    return CANDIDATES[scores.argmax(dim=0)]


def exact_match(probs: torch.Tensor, target: torch.Tensor, thresholds: torch.Tensor) -> torch.Tensor:
    """Share of inputs whose whole label set is predicted right."""
    return ((probs >= thresholds) == target.bool()).all(dim=1).float().mean()
