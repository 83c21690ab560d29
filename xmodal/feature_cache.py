"""Frozen-prefix feature cache: run the frozen stages once, train the rest from memory.

When the first ``k`` stages of the backbone are frozen and the input is not augmented,
their output is the same in every epoch. :class:`FeatureCache` (a Lightning callback
that :class:`~xmodal.tasks.base.BaseTask` adds itself) computes it once at the start of
``fit`` for the training and validation splits, and the task then runs only the device
side of the rest: the trainable stages and the head. A linear probe (everything
frozen) is the extreme case: the cache holds the pooled features and an epoch trains a
single linear layer.

The split is found generically, never with hard-coded layer names: the boundary is the
``feature_info`` module of stage ``k`` (timm), the prefix output is captured with a
forward hook, and the suffix is a shallow view of the backbone in which every module
that ran before the boundary is replaced by ``nn.Identity`` (parameters are shared, so
training the view trains the model). The view is checked numerically against the full
backbone before use; architectures where that check fails (functional operations
between the stem and the boundary, e.g. ViT's position embedding) are trained normally.
"""

from __future__ import annotations

import copy
import math
import time
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import BaseFinetuning, Callback
from pytorch_lightning.utilities import rank_zero_info, rank_zero_warn
from pytorch_lightning.utilities.seed import isolate_rng
from torch import nn
from torch.utils.data import DataLoader, Dataset

from xmodal import backbones
from xmodal.errors import ConfigError

MODES = (True, False, "auto")


class _Stop(Exception):
    """Raised by the boundary hook to skip the rest of the backbone."""


class PrefixSplit:
    """A backbone cut after stage ``stages`` into a cached prefix and a trainable suffix.

    Args:
        backbone: a timm model with ``feature_info``.
        stages: number of frozen stages from the input side; ``None`` means the whole
            backbone (the prefix output is then the pooled feature vector).
        example: one example image batch, to learn the execution order of the modules.
    """

    def __init__(self, backbone: nn.Module, stages: int | None, example: torch.Tensor) -> None:
        self.backbone = backbone
        self.stages = stages
        self.boundary = None if stages is None else backbone.feature_info[stages - 1]["module"]
        self._pairs: list[tuple[nn.Module, nn.Module]] = []
        self.skipped: list[str] = []
        if self.boundary is None:
            self.suffix_module: nn.Module = nn.Identity()
        else:
            ends = _execution_ends(backbone, example[:1])
            if self.boundary not in ends:
                raise ConfigError(f"stage module {self.boundary!r} did not run in the forward pass")
            self.suffix_module = self._view(backbone, "", ends, ends[self.boundary])

    def _view(self, module: nn.Module, prefix: str, ends: dict[str, int], limit: int) -> nn.Module:
        clone = copy.copy(module)
        clone.__dict__["_modules"] = dict(module._modules)
        clone.__dict__["_compiled_call_impl"] = None  # a compiled original would run in full
        self._pairs.append((clone, module))
        for name, child in module.named_children():
            full = prefix + name
            if full == self.boundary or (full in ends and ends[full] < limit
                                         and not self.boundary.startswith(full + ".")):
                clone._modules[name] = nn.Identity()
                self.skipped.append(full)
            elif self.boundary.startswith(full + "."):
                clone._modules[name] = self._view(child, full + ".", ends, limit)
        return clone

    def in_prefix(self, name: str) -> bool:
        """True when module ``name`` belongs to the cached prefix."""
        if self.boundary is None:
            return True
        return any(name == s or name.startswith(s + ".") for s in self.skipped)

    @torch.no_grad()
    def prefix(self, images: torch.Tensor) -> torch.Tensor:
        """Output of the frozen prefix for an image batch."""
        if self.boundary is None:
            return self.backbone(images)
        captured: list[torch.Tensor] = []

        def hook(_module: nn.Module, _inputs: Any, output: torch.Tensor) -> None:
            captured.append(output)
            raise _Stop

        handle = self.backbone.get_submodule(self.boundary).register_forward_hook(hook)
        try:
            self.backbone(images)
        except _Stop:
            pass
        finally:
            handle.remove()
        return captured[0]

    def suffix(self, features: torch.Tensor) -> torch.Tensor:
        """The rest of the backbone on cached prefix features (pooled output)."""
        for clone, original in self._pairs:
            clone.training = original.training
        return self.suffix_module(features)

    @torch.no_grad()
    def check(self, images: torch.Tensor) -> float:
        """Largest relative difference between the split and the full backbone."""
        full = self.backbone(images).float()
        split = self.suffix(self.prefix(images)).float()
        return float((full - split).abs().max() / (full.abs().max() + 1e-6))


def _execution_ends(model: nn.Module, example: torch.Tensor) -> dict[str, int]:
    """Order in which each named module *finished* in one forward pass."""
    ends: dict[str, int] = {}
    handles = []
    for name, module in model.named_modules():
        if name:
            handles.append(module.register_forward_hook(
                lambda _m, _i, _o, name=name: ends.__setitem__(name, len(ends))))
    try:
        with torch.no_grad():
            model(example)
    finally:
        for handle in handles:
            handle.remove()
    return ends


def frozen_stage_count(backbone: nn.Module) -> int | None:
    """Stages frozen from the input side now; ``None`` when the whole backbone is frozen."""
    flags = [p.requires_grad for p in backbone.parameters()]
    if not any(flags):
        return None
    leading = flags.index(True)
    return sum(1 for end in backbones.stage_boundaries(backbone) if end <= leading)


def stochastic_modules(split: PrefixSplit) -> list[str]:
    """Modules in the prefix whose output differs between passes in training mode."""
    found = []
    if split.boundary is None and getattr(split.backbone, "drop_rate", 0):
        found.append("drop_rate")
    for name, module in split.backbone.named_modules():
        if list(module.children()) or not split.in_prefix(name):
            continue
        if isinstance(module, nn.modules.dropout._DropoutNd) and module.p > 0:
            found.append(name)
        elif getattr(module, "drop_prob", 0) or getattr(module, "drop_path_rate", 0):
            found.append(name)
        elif isinstance(module, nn.modules.batchnorm._BatchNorm) and not list(module.parameters()):
            found.append(name)  # no affine parameters: stays in train mode, statistics move
    return found


class GlyphPrefixMemo:
    """The frozen backbone prefix's output per glyph code point (text layout ``glyphs``).

    A glyph's image never changes, so while the first ``k`` stages are frozen their
    output for a code point is computed once and kept; each batch then runs only the
    trainable stages, on its distinct glyphs. With the whole backbone frozen (a linear
    probe) the kept value is the pooled feature itself. A different number of frozen
    stages (gradual unfreezing), stochastic prefix modules, new weights or a device move
    start over.
    """

    def __init__(self) -> None:
        self.split: PrefixSplit | None = None
        self.stages: int | None = -1
        self.kept: dict[int, torch.Tensor] = {}

    def clear(self) -> None:
        self.split, self.stages = None, -1
        self.kept.clear()

    def features(self, backbone: nn.Module, to_image: Any, distinct: torch.Tensor) -> torch.Tensor:
        """Pooled backbone features of the glyphs of ``distinct`` code points."""
        stages = frozen_stage_count(backbone)
        if stages == 0:
            self.clear()
            return backbone(to_image(distinct))
        if stages != self.stages:
            self.clear()
            self.stages = stages
            modes = {module: module.training for module in backbone.modules()}
            backbone.eval()  # tracing the module order must not move BatchNorm statistics
            try:
                split = PrefixSplit(backbone, stages, to_image(distinct[:1]))
            finally:
                for module, mode in modes.items():
                    module.training = mode
            # A stochastic prefix (dropout, drop-path) has no fixed output to keep: with
            # ``split`` left None this stage count runs the whole backbone, untraced again.
            self.split = None if stochastic_modules(split) else split
        if self.split is None:
            return backbone(to_image(distinct))
        codes = distinct.tolist()
        new = [code for code in codes if code not in self.kept]
        if new:
            with torch.no_grad():
                computed = self.split.prefix(to_image(torch.tensor(new, device=distinct.device)))
            self.kept.update(zip(new, computed))
        return self.split.suffix(torch.stack([self.kept[code] for code in codes]))


class FeatureDataset(Dataset):
    """Cached prefix features with the labels and names of the split they came from."""

    def __init__(self, features: torch.Tensor, labels: list[Any], names: list[str]) -> None:
        self.features, self.labels, self.names = features, labels, names

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return {"input": self.features[index], "label": self.labels[index], "name": self.names[index]}


class FeatureCache(Callback):
    """Serve the training and validation splits as cached frozen-prefix features.

    Args:
        mode: ``True`` (required: an error names the reason when it cannot apply),
            ``"auto"`` (used when it applies and pays off: at least two passes over the
            training data) or ``False``.
        max_gb: largest cache kept in memory; ``auto`` stays off above it.
        splits: data module splits to cache.
    """

    def __init__(self, mode: bool | str = "auto", max_gb: float = 4.0,
                 splits: tuple[str, ...] = ("train", "val")) -> None:
        if mode not in MODES:
            raise ConfigError(f"feature_cache must be true, false or auto, not {mode!r}")
        self.mode = mode
        self.max_gb = max_gb
        self.splits = splits
        self.split: PrefixSplit | None = None
        self.feature_shape: tuple[int, ...] | None = None
        self._originals: dict[str, Dataset] = {}
        self.seconds = 0.0

    # -- whether it applies -------------------------------------------------------------

    def reason_off(self, trainer: pl.Trainer, task: Any) -> str | None:
        """Why the cache cannot be used (``None``: it can)."""
        adapter = getattr(task, "adapter", None)
        if adapter is not None and adapter.sequence_input:
            return "the input is a glyph sequence (its distinct glyphs are encoded per batch)"
        if getattr(task, "active_augment", getattr(task, "augment", None)) is not None:
            return "input augmentation is on (e.g. spec_augment or time_shift)"
        if adapter is not None and adapter.decode_varies_in_training:
            return f"the {adapter.name} adapter decodes differently in training"
        datasets = getattr(trainer.datamodule, "datasets", None)
        if not isinstance(datasets, dict) or "train" not in datasets:
            return "the data module does not expose its datasets"
        if self._stages(trainer, task) == 0:
            return "no backbone stage is frozen"
        return None

    def _stages(self, trainer: pl.Trainer, task: Any) -> int | None:
        stages = frozen_stage_count(task.backbone)
        total = backbones.num_stages(task.backbone)
        for callback in trainer.callbacks:
            if isinstance(callback, BaseFinetuning):  # a schedule may unfreeze later
                least = getattr(callback, "min_frozen_groups", None)
                if least is None:
                    return 0
                groups = len(backbones.stage_parameter_groups(task.backbone))
                always = least(groups)
                always_stages = None if always >= groups else min(always, total)
                if always_stages is None or stages is None:
                    stages = always_stages if stages is None else stages
                else:
                    stages = min(stages, always_stages)
        return stages

    def _pays_off(self, trainer: pl.Trainer) -> str | None:
        epochs = trainer.max_epochs
        if trainer.fast_dev_run:
            return "fast_dev_run"
        if epochs is None or epochs < 0:
            return None
        limit = trainer.limit_train_batches
        fraction = 1.0
        if isinstance(limit, float):
            fraction = limit
        elif isinstance(limit, int):
            dm = trainer.datamodule
            batches = math.ceil(len(dm.datasets["train"]) / max(1, getattr(dm.hparams, "batch_size", 1)))
            fraction = min(1.0, limit / max(1, batches))
        passes = epochs * fraction
        if passes < 2 * max(1, trainer.world_size):
            return f"only {passes:g} pass(es) over the training data"
        return None

    # -- Lightning hooks ----------------------------------------------------------------

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.mode is False:
            return
        reason = self.reason_off(trainer, pl_module)
        if reason is None and self.mode == "auto":
            reason = self._pays_off(trainer)
        if reason is not None:
            if self.mode is True:
                raise ConfigError(f"feature_cache=true but it cannot apply: {reason}")
            return
        start = time.perf_counter()
        stages = self._stages(trainer, pl_module)
        datasets = trainer.datamodule.datasets
        was_training = pl_module.training
        pl_module.eval()
        try:
            with isolate_rng():  # caching must not change the run's random stream
                built = self._build(trainer, pl_module, stages, datasets)
        finally:
            pl_module.train(was_training)
        if built is None:
            return
        split, cached = built
        self._originals = {name: datasets[name] for name in cached}
        datasets.update(cached)
        # A step-based LR schedule (cosine, one-cycle) reads estimated_stepping_batches in
        # configure_optimizers, which makes Lightning load the train loader over the
        # decoded inputs before this hook; drop it so the fit loop loads the cached
        # features (same length, so the step count it estimated stays right).
        if getattr(trainer.fit_loop, "_combined_loader", None) is not None:
            trainer.fit_loop._combined_loader = None
        self.split = split
        self.feature_shape = tuple(cached["train"].features.shape[1:])
        pl_module.prefix_cache = self
        self.seconds = time.perf_counter() - start
        total = sum(len(d) for d in cached.values())
        mb = sum(d.features.numel() * d.features.element_size() for d in cached.values()) / 1e6
        where = "the whole backbone" if stages is None else f"stages 1-{stages}"
        rank_zero_info(f"xmodal: feature cache: {where} computed once for {total} samples "
                       f"({mb:.0f} MB, {self.seconds:.1f} s); training only the rest")

    def _build(self, trainer: pl.Trainer, pl_module: Any, stages: int | None,
               datasets: dict[str, Dataset]) -> tuple[PrefixSplit, dict[str, FeatureDataset]] | None:
        example = self._example_images(trainer, pl_module, datasets["train"])
        split = PrefixSplit(pl_module.backbone, stages, example)
        problem = None
        noisy = stochastic_modules(split)
        if noisy:
            problem = f"the frozen prefix has stochastic layers ({', '.join(noisy[:3])})"
        else:
            error = split.check(example)
            if error > 1e-3:
                problem = f"the backbone cannot be split after stage {stages} (difference {error:.2g})"
            else:
                size = self._estimate_bytes(split, example, datasets)
                if size > self.max_gb * 1e9:
                    problem = f"it would need {size / 1e9:.1f} GB (> max_gb {self.max_gb:g})"
        if problem is not None:
            if self.mode is True:
                raise ConfigError(f"feature_cache=true but it cannot apply: {problem}")
            rank_zero_info(f"xmodal: feature cache off: {problem}")
            return None
        cached = {name: self._compute(trainer, pl_module, split, datasets[name])
                  for name in self.splits if name in datasets and len(datasets[name])}
        return split, cached

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.release(trainer, pl_module)

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        self.release(trainer, pl_module)

    def release(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Put the data module's datasets back and drop the cache."""
        if self._originals:
            trainer.datamodule.datasets.update(self._originals)
        self._originals = {}
        self.split = None
        if getattr(pl_module, "prefix_cache", None) is self:
            pl_module.prefix_cache = None

    # -- serving ------------------------------------------------------------------------

    def serves(self, batch_inputs: torch.Tensor) -> bool:
        """True when ``batch_inputs`` are cached prefix features."""
        return self.split is not None and tuple(batch_inputs.shape[1:]) == self.feature_shape

    def suffix(self, features: torch.Tensor, channels_last: bool = False) -> torch.Tensor:
        if channels_last and features.ndim == 4:
            features = features.contiguous(memory_format=torch.channels_last)
        return self.split.suffix(features)

    # -- computing ----------------------------------------------------------------------

    def _loader(self, trainer: pl.Trainer, dataset: Dataset) -> DataLoader:
        dm = trainer.datamodule
        batch_size = getattr(dm.hparams, "batch_size", 32)
        decodes = type(dataset).__name__ == "DecodeDataset"
        workers = getattr(dm, "num_workers", 0) if decodes else 0
        return DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers,
                          pin_memory=torch.cuda.is_available())

    def _example_images(self, trainer: pl.Trainer, task: Any, dataset: Dataset) -> torch.Tensor:
        batch = next(iter(DataLoader(dataset, batch_size=min(2, len(dataset)))))
        with torch.no_grad(), trainer.precision_plugin.forward_context():
            return task.to_image(batch["input"].to(task.device))

    def _estimate_bytes(self, split: PrefixSplit, example: torch.Tensor, datasets: dict) -> float:
        with torch.no_grad():
            per_item = split.prefix(example[:1]).numel() * 4
        return per_item * sum(len(datasets[n]) for n in self.splits if n in datasets)

    @torch.no_grad()
    def _compute(self, trainer: pl.Trainer, task: Any, split: PrefixSplit, dataset: Dataset) -> FeatureDataset:
        chunks, labels, names = [], [], []
        for batch in self._loader(trainer, dataset):
            with trainer.precision_plugin.forward_context():
                images = task.to_image(batch["input"].to(task.device, non_blocking=True))
                chunks.append(split.prefix(images).float().cpu())
            label = batch["label"]
            labels.extend(label.tolist() if torch.is_tensor(label) else list(label))
            names.extend(batch["name"])
        return FeatureDataset(torch.cat(chunks), labels, names)
