"""Fine-tuning strategies: what to freeze, when to unfreeze, how fast each stage learns.

Every strategy is a Lightning callback (:class:`~pytorch_lightning.callbacks.BaseFinetuning`)
that a task returns from ``configure_callbacks``, plus the optimiser's parameter groups.
Stages are timm's ``feature_info`` stages (see :func:`xmodal.backbones.stage_parameter_groups`):
group 0 is the stem with stage 1, the last group is whatever follows the last stage
(e.g. EfficientNet's ``conv_head``). Freezing ``n`` groups freezes the first ``n`` of them.

Every backbone group a strategy may ever train is in the optimiser from the start, so
unfreezing on a schedule only flips ``requires_grad``: AdamW skips parameters without a
gradient (no update, no weight decay), and the learning-rate schedule keeps one lambda
per group. Frozen BatchNorm layers stay in eval mode (:meth:`BaseTask.train` calls
:func:`xmodal.backbones.set_frozen_bn_eval`), and the learning rate of every group is
logged as ``lr/<group>``.

Use from Python::

    task = ClassificationTask(strategy="gradual", unfreeze_every=2)
    # or: strategy = make_strategy("full", lr_decay=0.6)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import BaseFinetuning, Callback
from torch import nn

from xmodal import backbones
from xmodal.errors import ConfigError

#: The strategy names ``model.strategy`` accepts (``auto`` asks :mod:`xmodal.advise`).
STRATEGY_NAMES = ("linear_probe", "freeze_k", "two_stage", "gradual", "full", "scratch", "cut_at")


class Strategy(BaseFinetuning):
    """Base strategy: freeze the first :meth:`frozen_groups` groups at each epoch.

    Args:
        freeze: stages frozen from the input side where the strategy freezes a fixed
            prefix (``freeze_k``, ``two_stage`` after its head phase, ``cut_at``).
        lr_decay: layer-wise learning-rate decay: the group ``d`` groups below the top
            learns at ``lr * backbone_lr_scale * lr_decay ** d``. ``None``: the
            strategy's default.
    """

    name: ClassVar[str] = ""
    #: load pretrained weights (only ``scratch`` does not)
    pretrained: ClassVar[bool] = True
    #: apply the adapter's batched train-time augmentation (``linear_probe`` does not)
    augments_input: ClassVar[bool] = True
    default_lr_decay: ClassVar[float] = 1.0

    def __init__(self, freeze: int | str = 2, lr_decay: float | None = None) -> None:
        super().__init__()
        self.freeze = freeze
        self.lr_decay = self.default_lr_decay if lr_decay is None else float(lr_decay)
        if not 0 < self.lr_decay <= 1:
            raise ConfigError(f"lr_decay must be in (0, 1], not {lr_decay!r}")

    # -- what is frozen -----------------------------------------------------------------

    def frozen_groups(self, epoch: int, num_groups: int) -> int:
        """How many backbone groups (from the input side) are frozen during ``epoch``."""
        return _freeze_count(self.freeze, num_groups)

    def min_frozen_groups(self, num_groups: int) -> int:
        """Groups frozen in every epoch: those never enter the optimiser."""
        return self.frozen_groups(0, num_groups)

    def apply(self, backbone: nn.Module, epoch: int) -> int:
        """Set ``requires_grad`` for ``epoch``; returns the number of frozen groups."""
        groups = backbones.stage_parameter_groups(backbone)
        frozen = self.frozen_groups(epoch, len(groups))
        for index, group in enumerate(groups):
            for param in group:
                param.requires_grad_(index >= frozen)
        return frozen

    # -- model surgery ------------------------------------------------------------------

    def configure_backbone(self, backbone: nn.Module) -> nn.Module:
        """Change the backbone before training (``cut_at`` truncates it)."""
        return backbone

    # -- optimiser ------------------------------------------------------------------------

    def backbone_lr_scale(self, task: pl.LightningModule) -> float:
        return float(task.hparams.backbone_lr_scale)

    def parameter_groups(self, task: pl.LightningModule) -> list[dict[str, Any]]:
        """The head at ``lr``; each backbone group the strategy may train at its decayed lr."""
        lr = float(task.hparams.lr)
        head = list(task.head.parameters())
        if getattr(task, "sequence_pool", None) is not None:
            head += list(task.sequence_pool.parameters())
        out = [{"params": head, "lr": lr, "name": "head"}]
        groups = backbones.stage_parameter_groups(task.backbone)
        top = len(groups) - 1
        scale = self.backbone_lr_scale(task)
        for index in range(self.min_frozen_groups(len(groups)), len(groups)):
            decay = self.lr_decay ** (top - index)
            out.append({"params": groups[index], "lr": lr * scale * decay, "name": f"stage{index}"})
        return out

    # -- Lightning hooks ----------------------------------------------------------------

    def freeze_before_training(self, pl_module: pl.LightningModule) -> None:
        self.apply(pl_module.backbone, 0)
        pl_module.train(pl_module.training)

    def finetune_function(self, pl_module: pl.LightningModule, epoch: int, optimizer: Any) -> None:
        groups = len(backbones.stage_parameter_groups(pl_module.backbone))
        before = sum(p.requires_grad for p in pl_module.backbone.parameters())
        frozen = self.apply(pl_module.backbone, epoch)
        after = sum(p.requires_grad for p in pl_module.backbone.parameters())
        if after != before:
            pl_module.train(pl_module.training)  # unfrozen BatchNorm back to train mode
            pl.utilities.rank_zero_info(
                f"{self.name}: epoch {epoch}: {groups - frozen} of {groups} backbone groups trainable"
            )

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # A run resumed mid-epoch gets no on_train_epoch_start for that epoch, so
        # apply its freezing here (a no-op for a fresh run: epoch 0 is applied already).
        if trainer.optimizers:
            self.finetune_function(pl_module, trainer.current_epoch, trainer.optimizers[0])

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                             batch: Any, batch_idx: int) -> None:
        optimizer = trainer.optimizers[0] if trainer.optimizers else None
        if optimizer is None:
            return
        rates = {f"lr/{g.get('name', i)}": float(g["lr"]) for i, g in enumerate(optimizer.param_groups)}
        pl_module.log_dict(rates, on_step=True, on_epoch=False, batch_size=1)

    def describe(self) -> dict[str, Any]:
        """The settings to print or save (name + arguments)."""
        return {"strategy": self.name, "freeze": self.freeze, "lr_decay": self.lr_decay}


def _freeze_count(freeze: int | str | None, num_groups: int) -> int:
    """``freeze`` stages -> groups frozen (``all``: every group, ``none``: 0)."""
    if freeze in ("all", -1):
        return num_groups
    if freeze in ("none", None):
        return 0
    count = int(freeze)
    if not 0 <= count < num_groups:
        raise ConfigError(f"freeze must be 0..{num_groups - 1}, 'all' or 'none', not {freeze!r}")
    return count


class LinearProbe(Strategy):
    """The backbone frozen whole (BatchNorm statistics included); only the new head learns.

    Frozen features do not change, so they can be computed once (``xmodal advise`` does
    exactly that with a logistic regression). The adapter's batched train-time
    augmentation (SpecAugment, time shift) is off: a frozen backbone maps masked or
    shifted inputs to features the clean test inputs never produce, and the head learns
    those instead (FSDD, 50 clips per class: 0.34 test accuracy with SpecAugment, 0.57
    without); without it the features are cached once. Decode-time augmentation
    (image crops and flips, text jitter) follows the adapter's own ``augment`` setting.
    """

    name = "linear_probe"
    augments_input = False

    def frozen_groups(self, epoch: int, num_groups: int) -> int:
        return num_groups


class FreezeK(Strategy):
    """The first ``freeze`` stages frozen for the whole run, the rest trained."""

    name = "freeze_k"


class TwoStage(Strategy):
    """Head first on a frozen backbone, then the stages after ``freeze`` at a lower lr.

    Args:
        head_epochs: epochs of head-only training. The randomly initialised head gives
            large, noisy gradients at first; training it alone first keeps them out of
            the pretrained layers.
        stage2_lr_scale: backbone learning rate after the head phase, as a fraction of
            the head's. A lower ``backbone_lr_scale`` wins; the two do not multiply
            (0.1 x 0.2 = 1e-4 at lr 5e-3 left FSDD spectrograms, far from ImageNet, at
            0.22 test accuracy after 12 epochs; 1e-3 reached 0.71).
    """

    name = "two_stage"

    def __init__(self, freeze: int | str = 2, lr_decay: float | None = None,
                 head_epochs: int = 1, stage2_lr_scale: float = 0.2) -> None:
        super().__init__(freeze, lr_decay)
        if head_epochs < 0:
            raise ConfigError(f"head_epochs must be >= 0, not {head_epochs}")
        self.head_epochs = head_epochs
        self.stage2_lr_scale = stage2_lr_scale

    def frozen_groups(self, epoch: int, num_groups: int) -> int:
        if epoch < self.head_epochs:
            return num_groups
        return _freeze_count(self.freeze, num_groups)

    def min_frozen_groups(self, num_groups: int) -> int:
        return _freeze_count(self.freeze, num_groups)

    def backbone_lr_scale(self, task: pl.LightningModule) -> float:
        return min(super().backbone_lr_scale(task), self.stage2_lr_scale)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "head_epochs": self.head_epochs,
                "stage2_lr_scale": self.stage2_lr_scale}


class Gradual(Strategy):
    """ULMFiT-style gradual unfreezing: head only, then one more group every N epochs.

    During epoch ``e`` the top ``e // unfreeze_every`` backbone groups are trainable,
    with discriminative (layer-wise decayed) learning rates.

    Args:
        unfreeze_every: epochs between two unfreezing steps.
    """

    name = "gradual"
    default_lr_decay = 0.7

    def __init__(self, freeze: int | str = 0, lr_decay: float | None = None,
                 unfreeze_every: int = 1) -> None:
        super().__init__(freeze, lr_decay)
        if unfreeze_every < 1:
            raise ConfigError(f"unfreeze_every must be >= 1, not {unfreeze_every}")
        self.unfreeze_every = unfreeze_every

    def frozen_groups(self, epoch: int, num_groups: int) -> int:
        return max(0, num_groups - epoch // self.unfreeze_every)

    def min_frozen_groups(self, num_groups: int) -> int:
        return 0

    def describe(self) -> dict[str, Any]:
        return {"strategy": self.name, "lr_decay": self.lr_decay, "unfreeze_every": self.unfreeze_every}


class Full(Strategy):
    """Everything trained, with layer-wise learning-rate decay towards the input."""

    name = "full"
    default_lr_decay = 0.7

    def frozen_groups(self, epoch: int, num_groups: int) -> int:
        return 0

    def describe(self) -> dict[str, Any]:
        return {"strategy": self.name, "lr_decay": self.lr_decay}


class Scratch(Full):
    """The same architecture randomly initialised, everything trained: the control."""

    name = "scratch"
    pretrained = False
    default_lr_decay = 1.0


class CutAt(Strategy):
    """Features of an intermediate stage (global-pooled) + a new head.

    For data far from ImageNet: early stages hold generic edges and textures, late
    ones ImageNet-specific parts. Stages after ``cut_stage`` are removed; the first
    ``min(freeze, cut_stage)`` kept stages stay frozen.

    Args:
        cut_stage: the last stage kept, 1-based over timm's ``feature_info``.
    """

    name = "cut_at"

    def __init__(self, freeze: int | str = 2, lr_decay: float | None = None, cut_stage: int = 3) -> None:
        super().__init__(freeze, lr_decay)
        if cut_stage < 1:
            raise ConfigError(f"cut_stage must be >= 1, not {cut_stage}")
        self.cut_stage = cut_stage

    def frozen_groups(self, epoch: int, num_groups: int) -> int:
        if self.freeze in ("all", -1):
            return num_groups
        if self.freeze in ("none", None):
            return 0
        return min(int(self.freeze), num_groups)

    def configure_backbone(self, backbone: nn.Module) -> nn.Module:
        if isinstance(backbone, CutBackbone):
            return backbone
        return CutBackbone(backbone, self.cut_stage)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "cut_stage": self.cut_stage}


class CutBackbone(nn.Module):
    """A timm model truncated after one ``feature_info`` stage, global-average pooled.

    Uses timm's ``prune_intermediate_layers`` / ``forward_intermediates``; the stages
    it keeps are listed in ``feature_info`` (module names relative to this wrapper), so
    stage-wise freezing works on it as on any timm model.
    """

    def __init__(self, model: nn.Module, cut_stage: int) -> None:
        super().__init__()
        total = len(model.feature_info)
        if not 1 <= cut_stage <= total:
            raise ConfigError(f"cut_stage must be 1..{total} for this backbone, not {cut_stage}")
        self.index = cut_stage - 1
        self.pretrained_cfg = getattr(model, "pretrained_cfg", {})
        self.default_cfg = self.pretrained_cfg
        kept = [dict(info) for info in model.feature_info[:cut_stage]]
        model.prune_intermediate_layers(indices=[self.index], prune_head=True, prune_norm=True)
        self.model = model
        for info in kept:
            info["module"] = "model." + info["module"]
        self.feature_info = kept
        self.num_features = int(kept[-1]["num_chs"])
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(1))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        stage = self.model.forward_intermediates(images, indices=[self.index], intermediates_only=True)[0]
        return self.pool(stage)


STRATEGIES: dict[str, type[Strategy]] = {
    cls.name: cls for cls in (LinearProbe, FreezeK, TwoStage, Gradual, Full, Scratch, CutAt)
}


def make_strategy(name: str, **kwargs: Any) -> Strategy:
    """Build a strategy by name; arguments it does not take are ignored.

    Args:
        name: one of :data:`STRATEGY_NAMES`.
        **kwargs: ``freeze``, ``lr_decay``, ``head_epochs``, ``stage2_lr_scale``,
            ``unfreeze_every``, ``cut_stage``; ``None`` values mean "the default".
    """
    import inspect

    if name not in STRATEGIES:
        raise ConfigError(f"unknown strategy {name!r}; one of {', '.join(STRATEGY_NAMES)} or auto")
    cls = STRATEGIES[name]
    accepted = inspect.signature(cls.__init__).parameters
    return cls(**{k: v for k, v in kwargs.items() if k in accepted and v is not None})


class RestoreBest(Callback):
    """Keep the weights of the best validation epoch in memory and roll back to them
    when fit ends, so a model used from Python after ``trainer.fit`` is the best one,
    not the last (over-fitted) one. Needs no checkpoint files and no logger.

    Args:
        monitor: logged metric to track.
        mode: ``max`` or ``min``.
    """

    def __init__(self, monitor: str = "val/acc", mode: str = "max") -> None:
        if mode not in ("max", "min"):
            raise ConfigError(f"mode must be max or min, not {mode!r}")
        self.monitor, self.mode = monitor, mode
        self.best_score: float | None = None
        self.best_epoch: int | None = None
        self._best_state: dict[str, torch.Tensor] | None = None

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or self.monitor not in trainer.callback_metrics:
            return
        score = float(trainer.callback_metrics[self.monitor])
        better = self.best_score is None or (
            score > self.best_score if self.mode == "max" else score < self.best_score)
        if better:
            self.best_score, self.best_epoch = score, trainer.current_epoch
            self._best_state = {k: v.detach().to("cpu", copy=True) for k, v in pl_module.state_dict().items()}

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._best_state is None and self.best_epoch is not None:
            self._best_state = self._saved_best(trainer)  # the best epoch came before a resume
        if self._best_state is None:
            return
        pl_module.load_state_dict(self._best_state)
        pl.utilities.rank_zero_info(
            f"restored the weights of epoch {self.best_epoch} ({self.monitor}={self.best_score:.4f})")

    def _saved_best(self, trainer: pl.Trainer) -> dict[str, torch.Tensor] | None:
        """The best epoch's weights from a checkpoint callback that tracks the same metric.

        A resumed run knows the best score and epoch (saved in the checkpoint) but not
        the weights, which were only in the killed process's memory; the best checkpoint
        of a ``ModelCheckpoint`` with the same ``monitor`` and ``mode`` holds them.
        """
        for callback in trainer.checkpoint_callbacks:
            path = getattr(callback, "best_model_path", "")
            same = (getattr(callback, "monitor", None), getattr(callback, "mode", None)) == (self.monitor,
                                                                                           self.mode)
            if not same or not path or not Path(path).is_file():
                continue
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
            if checkpoint.get("epoch") == self.best_epoch and "state_dict" in checkpoint:
                return checkpoint["state_dict"]
        pl.utilities.rank_zero_warn(
            f"the weights of the best epoch ({self.best_epoch}, before the resume) are not in a "
            f"checkpoint that tracks {self.monitor}; keeping the last weights")
        return None

    def state_dict(self) -> dict[str, Any]:
        return {"best_score": self.best_score, "best_epoch": self.best_epoch}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.best_score = state_dict.get("best_score")
        self.best_epoch = state_dict.get("best_epoch")
