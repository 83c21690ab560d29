"""BaseTask: adapter device transform -> timm backbone -> task head.

The model owns the adapter's *settings* (a plain dict saved in the checkpoint's
hyper-parameters), so a checkpoint alone rebuilds the whole pipeline for predict,
embed and export. Settings left ``None`` (classes, adapter) are taken from the data
module in ``setup``: the usual case when training from a config.
"""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
import torch
from torch import nn

from xmodal import backbones
from xmodal.adapters import create_adapter


class BaseTask(pl.LightningModule):
    """Shared machinery of every head: backbone, freezing, device transform, optimiser.

    Args:
        backbone: timm model name.
        pretrained: load ImageNet weights (packaged offline weights first).
        weights: a local weights file for the backbone (safetensors or a tensor-only
            ``.pth``), overriding ``pretrained``'s source.
        freeze: stages frozen from the input side (timm ``feature_info``), ``"all"``
            or ``"none"``.
        lr: peak learning rate of the head.
        backbone_lr_scale: the backbone's learning rate as a fraction of ``lr``.
        weight_decay: AdamW weight decay.
        scheduler: ``cosine``, ``onecycle`` or ``none``.
        warmup_epochs: linear warm-up before the cosine decay.
        input_adapter: the modality adapter's full settings (``{"modality": ...,
            ...}``), saved in checkpoints; taken from the data module when ``None``.
        class_names: target classes; taken from the data module when ``None``.
        channels_last: use the channels-last memory format (faster on GPU).
        compile: wrap the backbone in ``torch.compile``.
    """

    def __init__(
        self,
        backbone: str = backbones.DEFAULT_BACKBONE,
        pretrained: bool = True,
        weights: str | None = None,
        freeze: int | str = 2,
        lr: float = 1e-3,
        backbone_lr_scale: float = 1.0,
        weight_decay: float = 1e-2,
        scheduler: str = "cosine",
        warmup_epochs: int = 0,
        input_adapter: dict[str, Any] | None = None,
        class_names: list[str] | None = None,
        channels_last: bool = False,
        compile: bool = False,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.backbone = backbones.create_backbone(backbone, pretrained=pretrained, weights=weights)
        self.data_config = backbones.data_config(self.backbone)
        self.num_features = self.backbone.num_features
        self.device_transform: nn.Module | None = None
        self.augment: nn.Module | None = None
        self.head: nn.Module | None = None
        self.apply_freeze()
        if input_adapter is not None:
            self._build_transform(input_adapter)
        if class_names is not None:
            self._build_head()

    # -- construction ---------------------------------------------------------------

    def apply_freeze(self) -> None:
        backbones.freeze_stages(self.backbone, self.hparams.freeze)

    def _build_transform(self, adapter_config: dict[str, Any]) -> None:
        self.adapter = create_adapter(adapter_config)
        self.hparams.input_adapter = self.adapter.config()
        self.device_transform = self.adapter.device_transform(self.data_config)
        self.augment = self.adapter.train_augment()

    def _build_head(self) -> None:
        self.head = self.configure_head(self.num_features, len(self.hparams.class_names))

    def configure_head(self, in_features: int, num_outputs: int) -> nn.Module:
        """The layers on top of the pooled backbone features (override per task)."""
        raise NotImplementedError

    def setup(self, stage: str) -> None:
        datamodule = getattr(self.trainer, "datamodule", None)
        if self.device_transform is None:
            if datamodule is None or getattr(datamodule, "adapter", None) is None:
                raise RuntimeError("the model has no adapter settings and no data module gives one")
            self._build_transform(datamodule.adapter.config())
        if self.head is None:
            if datamodule is None or not getattr(datamodule, "class_names", None):
                raise RuntimeError("the model has no class names and no data module gives them")
            self.hparams.class_names = list(datamodule.class_names)
            self._build_head()

    # -- forward ----------------------------------------------------------------------

    def to_image(self, batch_inputs: torch.Tensor) -> torch.Tensor:
        """Decoded batch -> normalised image batch, augmented in training."""
        images = self.device_transform(batch_inputs)
        if self.training and self.augment is not None:
            images = self.augment(images)
        if self.hparams.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        return images

    def features(self, batch_inputs: torch.Tensor) -> torch.Tensor:
        """Pooled backbone features ``(B, num_features)``."""
        return self.backbone(self.to_image(batch_inputs))

    def forward(self, batch_inputs: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(batch_inputs))

    def train(self, mode: bool = True) -> "BaseTask":
        super().train(mode)
        if mode:
            backbones.set_frozen_bn_eval(self.backbone)
        return self

    # -- optimisation -----------------------------------------------------------------

    def parameter_groups(self) -> list[dict[str, Any]]:
        """AdamW groups: the head at ``lr``, trainable backbone at ``lr * backbone_lr_scale``."""
        lr = self.hparams.lr
        head = [p for p in self.head.parameters() if p.requires_grad]
        body = [p for p in self.backbone.parameters() if p.requires_grad]
        groups = [{"params": head, "lr": lr, "name": "head"}]
        if body:
            groups.append({"params": body, "lr": lr * self.hparams.backbone_lr_scale, "name": "backbone"})
        return groups

    def configure_optimizers(self) -> Any:
        groups = self.parameter_groups()
        optimizer = torch.optim.AdamW(groups, weight_decay=self.hparams.weight_decay)
        kind = self.hparams.scheduler
        if kind == "none":
            return optimizer
        total = max(1, int(self.trainer.estimated_stepping_batches))
        if kind == "onecycle":
            scheduler = torch.optim.lr_scheduler.OneCycleLR(
                optimizer, max_lr=[g["lr"] for g in groups], total_steps=total
            )
        elif kind == "cosine":
            warmup = 0
            if self.hparams.warmup_epochs and self.trainer.max_epochs:
                warmup = int(total * self.hparams.warmup_epochs / self.trainer.max_epochs)

            def factor(step: int) -> float:
                if step < warmup:
                    return (step + 1) / (warmup + 1)
                progress = (step - warmup) / max(1, total - warmup)
                return 0.5 * (1.0 + torch.cos(torch.tensor(torch.pi * min(1.0, progress))).item())

            scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        else:
            raise ValueError(f"scheduler must be cosine, onecycle or none, not {kind!r}")
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
