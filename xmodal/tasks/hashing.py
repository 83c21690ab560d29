"""Semantic hashing: a K-bit latent layer on the backbone, trained to be near-binary.

The head standardises the pooled features (a BatchNorm without learned scale or shift:
running mean and variance), maps them to ``bits`` values through ``tanh`` (or
``sigmoid``), and a quantisation loss pulls them towards ±1 (0/1), so their signs lose
little when packed into a binary code. The standardisation matters: pooled features
of a ReLU-family network are all positive around a large shared mean, so without
centring a freshly initialised latent layer puts most items on the same side of most
hyperplanes, and with few classes the objective below needs only a few directions,
leaving the other bits uninformative (hymenoptera val, 64 bits: mAP@10 0.79 without,
0.94 with, against 0.90 for float cosine). What gives the bits meaning is the objective:

* ``classification`` (Lin et al., 2015, "Deep learning of binary hash codes"): a
  linear classifier on the latent with the class labels, so items of one class share
  codes;
* ``autoencoder``: reconstruct the (L2-normalised, detached) pretrained features from
  the latent, no labels needed; a linear probe on the detached latent still reports
  ``val/acc`` when labels exist.

``forward`` returns the latent (``(B, bits)``, centred on 0), so the model is an
embedder: its sign is the code, and ``xmodal embed`` / ``xmodal export`` use it as is.
"""

from __future__ import annotations

from typing import Any

import torch
import torchmetrics
from torch import nn

from xmodal.errors import ConfigError
from xmodal.tasks.base import BaseTask

OBJECTIVES = ("classification", "autoencoder")
ACTIVATIONS = ("tanh", "sigmoid")


class HashingHead(nn.Module):
    """Standardise -> Linear -> tanh/sigmoid latent, plus the classifier (or decoder)
    used in training.

    ``forward`` returns the latent centred on 0 (``2 * sigmoid - 1`` for sigmoid), so
    ``latent > 0`` is the bit in both cases. ``norm`` (``BatchNorm1d`` without affine
    parameters, or ``None``) centres and scales the input features with batch
    statistics in training and their running averages in evaluation.
    """

    def __init__(self, in_features: int, bits: int, num_classes: int, activation: str,
                 objective: str, dropout: float, input_norm: bool = True) -> None:
        super().__init__()
        self.activation = activation
        self.norm = nn.BatchNorm1d(in_features, affine=False) if input_norm else None
        self.encoder = nn.Sequential(nn.Dropout(dropout), nn.Linear(in_features, bits))
        self.classifier = nn.Linear(bits, num_classes)
        self.decoder = nn.Linear(bits, in_features) if objective == "autoencoder" else None

    def standardise(self, features: torch.Tensor) -> torch.Tensor:
        norm = self.norm
        if norm is None:
            return features
        if self.training and features.shape[0] < 2:  # no batch statistics from one item
            return nn.functional.batch_norm(features, norm.running_mean, norm.running_var,
                                            training=False, eps=norm.eps)
        return norm(features)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        z = self.encoder(self.standardise(features))
        if self.activation == "sigmoid":
            return 2.0 * torch.sigmoid(z) - 1.0
        return torch.tanh(z)


class HashingTask(BaseTask):
    """Learn ``bits``-bit binary codes for retrieval by Hamming distance.

    Args:
        bits: code length K (16..256, a multiple of 8 so codes pack into bytes).
        objective: ``classification`` (uses labels) or ``autoencoder`` (unsupervised
            from the pretrained features).
        activation: ``tanh`` or ``sigmoid`` latent.
        quant_weight: weight of the quantisation loss ``mean((|u| - 1)^2)``.
        balance_weight: weight of the bit-balance loss ``mean(mean_batch(u)^2)`` that
            keeps each bit on for about half the items (more information per bit).
        dropout: dropout before the latent layer.
        input_norm: standardise the pooled features before the latent layer (running
            mean and variance, no learned scale); ``False`` is the plain linear layer.
        **kwargs: see :class:`BaseTask` (``freeze: all`` trains only the head).
    """

    def __init__(self, *args: Any, bits: int = 64, objective: str = "classification",
                 activation: str = "tanh", quant_weight: float = 0.1, balance_weight: float = 0.01,
                 dropout: float = 0.1, input_norm: bool = True, **kwargs: Any) -> None:
        if bits < 8 or bits % 8 or bits > 4096:
            raise ConfigError(f"bits must be a multiple of 8 (16..256 typical), not {bits}")
        if objective not in OBJECTIVES:
            raise ConfigError(f"objective must be one of {', '.join(OBJECTIVES)}, not {objective!r}")
        if activation not in ACTIVATIONS:
            raise ConfigError(f"activation must be tanh or sigmoid, not {activation!r}")
        self._bits, self._objective, self._activation = bits, objective, activation
        self._dropout, self._input_norm = dropout, input_norm
        for option in ("adversarial", "typo_consistency"):  # refused before the backbone loads
            if kwargs.get(option):
                raise ConfigError(f"{option} training is implemented for classification "
                                  "(ClassificationTask), not for hashing")
        super().__init__(*args, **kwargs)  # BaseTask saves this class's arguments too

    def configure_head(self, in_features: int, num_outputs: int) -> nn.Module:
        def accuracy() -> torchmetrics.Metric:
            return torchmetrics.classification.MulticlassAccuracy(num_outputs, average="micro")

        self.train_acc, self.val_acc, self.test_acc = accuracy(), accuracy(), accuracy()
        return HashingHead(in_features, self._bits, num_outputs, self._activation,
                           self._objective, self._dropout, self._input_norm)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Checkpoints saved before the head standardised its input load as they were."""
        state = checkpoint.get("state_dict", {})
        if self.head is not None and self.head.norm is not None and "head.norm.running_mean" not in state:
            self.head.norm = None
            self.hparams.input_norm = False

    # -- forward ----------------------------------------------------------------------

    def pooled(self, batch: dict[str, Any]) -> torch.Tensor:
        """Pooled features of a batch; a ``features`` entry (precomputed) skips the backbone."""
        if "features" in batch:
            return batch["features"].float()
        return self.features(batch["input"])

    def losses(self, batch: dict[str, Any]) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
        """All loss terms, the latent and the classifier logits for one batch."""
        feats = self.pooled(batch)
        latent = self.head(feats)
        hp = self.hparams
        terms: dict[str, torch.Tensor] = {
            "quant": hp.quant_weight * ((latent.abs() - 1.0) ** 2).mean(),
            "balance": hp.balance_weight * (latent.mean(dim=0) ** 2).mean(),
        }
        labels = batch.get("label")
        has_labels = labels is not None and bool((labels >= 0).all())
        if hp.objective == "classification":
            if not has_labels:
                raise ConfigError("objective 'classification' needs labelled data; use "
                                  "--model.objective autoencoder for unlabelled inputs")
            logits = self.head.classifier(latent)
            terms["cls"] = nn.functional.cross_entropy(logits, labels)
        else:
            target = nn.functional.normalize(feats.detach(), dim=1)
            recon = nn.functional.normalize(self.head.decoder(latent), dim=1)
            terms["recon"] = (1.0 - (recon * target).sum(dim=1)).mean()
            logits = self.head.classifier(latent.detach())  # a probe: reports, never shapes codes
            if has_labels:
                terms["probe"] = nn.functional.cross_entropy(logits, labels)
        return terms, latent, logits

    def _step(self, batch: dict[str, Any], stage: str, accuracy: torchmetrics.Metric) -> torch.Tensor:
        terms, latent, logits = self.losses(batch)
        loss = torch.stack(list(terms.values())).sum()
        size = latent.shape[0]
        labels = batch.get("label")
        if labels is not None and bool((labels >= 0).all()):
            accuracy.update(logits.detach(), labels)
            self.log(f"{stage}/acc", accuracy, prog_bar=True, on_step=False, on_epoch=True, batch_size=size)
        self.log(f"{stage}/loss", loss, prog_bar=stage != "train", batch_size=size)
        for name, value in terms.items():
            self.log(f"{stage}/{name}", value, batch_size=size)
        with torch.no_grad():
            self.log(f"{stage}/bits_saturated", (latent.abs() > 0.9).float().mean(), batch_size=size)
        return loss

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train", self.train_acc)

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._step(batch, "val", self.val_acc)

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._step(batch, "test", self.test_acc)

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, Any]:
        from xmodal.retrieval.codes import pack_codes

        latent = self.head(self.pooled(batch)).float().cpu().numpy()
        codes = pack_codes(latent)
        return {"path": list(batch["name"]), "code": [row.tobytes().hex() for row in codes]}

    @torch.no_grad()
    def encode(self, batch_inputs: torch.Tensor) -> torch.Tensor:
        """Packed uint8 codes ``(B, bits/8)`` for a decoded batch."""
        from xmodal.retrieval.codes import pack_codes

        latent = self(batch_inputs).float().cpu().numpy()
        return torch.from_numpy(pack_codes(latent))

    def parameter_groups(self) -> list[dict[str, Any]]:
        groups = super().parameter_groups()
        return [g for g in groups if g["params"]]
