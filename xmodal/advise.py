"""Recommend a fine-tuning strategy from the data: size per class x domain similarity.

The classic transfer-learning matrix (Yosinski et al. 2014; CS231n's "transfer
learning" notes) places a data set by two measurements:

* **size**: training examples per class (the smallest class counts: it is the one
  that over-fits first);
* **similarity** to the backbone's pretraining data: how well a linear classifier
  separates the classes on *frozen*, pooled backbone features of a small sample
  (cross-validated logistic regression, scaled so chance = 0 and perfect = 1), and
  whether an intermediate stage separates them better than the last one (late
  ImageNet-specific features that do not fit the domain).

=========  ==========================  ===============================
size       similar                     different
=========  ==========================  ===============================
small      ``linear_probe``            ``cut_at`` (best probing stage)
large      ``freeze_k`` (k = 2)        ``full`` (layer-wise lr decay)
=========  ==========================  ===============================

A short scratch-vs-pretrained run (:func:`compare_scratch`) can warn of negative
transfer when training from scratch is cheap enough to try.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from xmodal import backbones
from xmodal.errors import BadInputError

#: fewer training examples than this in the smallest class = "small"
SMALL_PER_CLASS = 200
#: chance-corrected linear-probe accuracy of the final features at least this = "similar"
SIMILAR_SCORE = 0.6
#: an intermediate stage must probe this much better than the last to call the domain different
STAGE_MARGIN = 0.03

MATRIX = {
    ("small", "similar"): "linear_probe",
    ("small", "different"): "cut_at",
    ("large", "similar"): "freeze_k",
    ("large", "different"): "full",
}


@dataclass
class Advice:
    """A recommendation with the measurements behind it."""

    strategy: str
    args: dict[str, Any]
    size: str
    similarity: str
    per_class: dict[str, int]
    min_per_class: int
    probe_accuracy: float
    probe_score: float
    stage_accuracy: dict[int, float]
    chance: float
    sample_size: int
    seconds: float
    reasons: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    scratch_check: dict[str, float] | None = None

    def config_yaml(self) -> str:
        """The ``model.init_args`` lines for a config file."""
        lines = ["model:", "  init_args:", f"    strategy: {self.strategy}"]
        lines += [f"    {key}: {value}" for key, value in self.args.items()]
        return "\n".join(lines)

    def cli_flags(self) -> str:
        """The same as ``xmodal fit`` options."""
        flags = [f"--model.strategy {self.strategy}"]
        flags += [f"--model.{key} {value}" for key, value in self.args.items()]
        return " ".join(flags)

    def report(self) -> str:
        """A human-readable summary: placement, reasons, config lines, warnings."""
        stages = ", ".join(f"stage {s}: {a:.2f}" for s, a in sorted(self.stage_accuracy.items()))
        out = [
            f"data: {sum(self.per_class.values())} training examples, {len(self.per_class)} classes, "
            f"smallest class {self.min_per_class} -> {self.size}",
            f"frozen-feature linear probe on {self.sample_size} examples: accuracy "
            f"{self.probe_accuracy:.2f} (chance {self.chance:.2f}, score {self.probe_score:.2f}); "
            f"{stages} -> {self.similarity}",
            f"recommended strategy: {self.strategy}  ({self.size} x {self.similarity})",
            *[f"  - {reason}" for reason in self.reasons],
            "config:",
            *["  " + line for line in self.config_yaml().splitlines()],
            f"command line: xmodal fit {self.cli_flags()}",
        ]
        if self.scratch_check:
            out.append("scratch check: " + ", ".join(f"{k} {v:.3f}" for k, v in self.scratch_check.items()))
        out += [f"WARNING: {warning}" for warning in self.warnings]
        return "\n".join(out)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def place(min_per_class: int, probe_score: float, stage_accuracy: dict[int, float],
          final_accuracy: float) -> tuple[str, str, str, dict[str, Any], list[str]]:
    """The matrix cell and the strategy for the measurements (pure: easy to test).

    Returns:
        ``(size, similarity, strategy, args, reasons)``.
    """
    reasons = []
    size = "small" if min_per_class < SMALL_PER_CLASS else "large"
    reasons.append(
        f"{min_per_class} examples in the smallest class "
        + ("< " if size == "small" else ">= ")
        + f"{SMALL_PER_CLASS}: "
        + ("training many pretrained weights would over-fit" if size == "small"
           else "enough to adapt the pretrained layers"))
    best_stage = max(stage_accuracy, key=stage_accuracy.get) if stage_accuracy else None
    mid_better = best_stage is not None and stage_accuracy[best_stage] > final_accuracy + STAGE_MARGIN
    similar = probe_score >= SIMILAR_SCORE and not mid_better
    similarity = "similar" if similar else "different"
    if similar:
        reasons.append(f"frozen ImageNet features already separate the classes (score {probe_score:.2f} "
                       f">= {SIMILAR_SCORE}): the domain is close to the pretraining data")
    elif mid_better:
        reasons.append(f"stage {best_stage} features probe better ({stage_accuracy[best_stage]:.2f}) than "
                       f"the final ones ({final_accuracy:.2f}): the late, ImageNet-specific layers do "
                       "not fit this domain")
    else:
        reasons.append(f"frozen features separate the classes poorly (score {probe_score:.2f} < "
                       f"{SIMILAR_SCORE}): the domain is far from the pretraining data")
    strategy = MATRIX[(size, similarity)]
    args: dict[str, Any] = {}
    if strategy == "cut_at":
        stage = best_stage if best_stage is not None else 3
        args = {"cut_stage": int(stage), "freeze": max(0, int(stage) - 1)}
        reasons.append(f"cut after stage {stage} (the best-probing intermediate stage) and train "
                       "that stage with a new head: generic early features, few weights to fit")
    elif strategy == "linear_probe":
        reasons.append("train only a new head on the frozen backbone: nothing pretrained can over-fit")
    elif strategy == "freeze_k":
        args = {"freeze": 2}
        reasons.append("keep the generic first stages frozen and fine-tune the rest")
    elif strategy == "full":
        args = {"lr_decay": 0.7}
        reasons.append("fine-tune everything from the pretrained start, early stages more slowly "
                       "(layer-wise lr decay 0.7)")
    return size, similarity, strategy, args, reasons


def advise(
    datamodule: Any,
    backbone: str = backbones.DEFAULT_BACKBONE,
    weights: str | None = None,
    sample_per_class: int = 20,
    image_size: int | None = None,
    seed: int = 0,
    batch_size: int = 32,
    scratch_check: bool = False,
    scratch_epochs: int = 3,
) -> Advice:
    """Measure ``datamodule``'s training split and recommend a strategy.

    Args:
        datamodule: an :class:`xmodal.data.XModalDataModule` (not set up yet is fine).
        backbone: timm model whose pretrained features are probed.
        weights: local weights file for ``backbone``.
        sample_per_class: examples per class decoded for the linear probe.
        image_size: resize the network input to this square size (faster; ``None``
            keeps the adapter's size).
        seed: seed of the sample and the cross-validation folds.
        batch_size: forward batch size.
        scratch_check: also run :func:`compare_scratch` (short fits) and warn on
            negative transfer.
        scratch_epochs: epochs of each short fit.
    """
    from xmodal.data.spec import per_class_subset

    started = time.perf_counter()
    datamodule.prepare_spec()
    classes = datamodule.class_names
    train = datamodule.split_items("train")
    counts = Counter(item.label for item in train)
    per_class = {classes[label]: counts.get(label, 0) for label in range(len(classes))}
    present = [count for count in per_class.values() if count > 0]
    min_per_class = min(present) if present else 0

    model = backbones.create_backbone(backbone, pretrained=True, weights=weights).eval()
    sample = per_class_subset(train, sample_per_class, seed)
    features, labels = _frozen_features(model, datamodule.adapter, sample, image_size, batch_size)
    final = _probe(features.pop("final"), labels, seed)
    stage_accuracy = {stage: _probe(x, labels, seed) for stage, x in features.items()}
    chance = max(Counter(labels.tolist()).values()) / len(labels) if len(labels) else 1.0
    score = (final - chance) / max(1e-6, 1.0 - chance)
    size, similarity, strategy, args, reasons = place(min_per_class, score, stage_accuracy, final)
    advice = Advice(
        strategy=strategy, args=args, size=size, similarity=similarity, per_class=per_class,
        min_per_class=min_per_class, probe_accuracy=final, probe_score=score,
        stage_accuracy=stage_accuracy, chance=chance, sample_size=int(len(labels)),
        seconds=0.0, reasons=reasons,
    )
    if scratch_check:
        result = compare_scratch(datamodule, advice, backbone=backbone, weights=weights,
                                 per_class=sample_per_class, epochs=scratch_epochs, seed=seed)
        advice.scratch_check = result
        if result["scratch"] > result["pretrained"]:
            advice.warnings.append(
                f"negative transfer: scratch reached {result['scratch']:.3f} validation accuracy, "
                f"pretrained {strategy} {result['pretrained']:.3f} after {scratch_epochs} epochs on "
                f"{sample_per_class} examples per class; try --model.strategy scratch")
    advice.seconds = time.perf_counter() - started
    return advice


@torch.no_grad()
def _frozen_features(model: nn.Module, adapter: Any, items: list[Any], image_size: int | None,
                     batch_size: int) -> tuple[dict[Any, np.ndarray], np.ndarray]:
    """Globally pooled features of every stage from 2 on, and of the final layer."""
    transform = adapter.device_transform(backbones.data_config(model)).eval()
    decoded, labels = [], []
    for item in items:
        try:
            decoded.append(adapter.decode(item.source))
        except BadInputError:
            continue  # the same file fails loudly in fit; a probe just skips it
        labels.append(item.label)
    stages = list(range(1, len(model.feature_info)))  # 0-based indices: stage 2 .. last
    chunks: dict[Any, list[np.ndarray]] = {"final": [], **{s + 1: [] for s in stages}}
    same_shape = len({tuple(x.shape) for x in decoded}) <= 1
    step = batch_size if same_shape else 1
    for start in range(0, len(decoded), step):
        images = transform(torch.stack(decoded[start:start + step]))
        if image_size:
            images = nn.functional.interpolate(images, size=(image_size, image_size), mode="bilinear",
                                               align_corners=False)
        last, inter = model.forward_intermediates(images, indices=stages)
        chunks["final"].append(model.forward_head(last, pre_logits=True).numpy())
        for stage, x in zip(stages, inter):
            chunks[stage + 1].append(x.mean(dim=(2, 3)).numpy())
    return {k: np.concatenate(v) for k, v in chunks.items() if v}, np.asarray(labels)


def _probe(features: np.ndarray, labels: np.ndarray, seed: int) -> float:
    """Cross-validated accuracy of a standardised logistic regression."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    counts = Counter(labels.tolist())
    folds = min(5, min(counts.values())) if counts else 0
    if len(counts) < 2 or folds < 2:
        return float("nan")
    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500, C=0.5))
    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    return float(np.mean(cross_val_score(probe, features, labels, cv=cv)))


def compare_scratch(datamodule: Any, advice: Advice, backbone: str = backbones.DEFAULT_BACKBONE,
                    weights: str | None = None, per_class: int = 20, epochs: int = 3,
                    seed: int = 0) -> dict[str, float]:
    """Short fits of the advised strategy and of ``scratch`` on the same subset and budget.

    Returns:
        ``{"pretrained": val_acc, "scratch": val_acc}`` (best validation accuracy).
    """
    import pytorch_lightning as pl

    from xmodal.data import XModalDataModule
    from xmodal.tasks.classification import ClassificationTask

    hp = dict(datamodule.hparams)
    hp.update(per_class=per_class, seed=seed)
    result = {}
    for label, strategy, args in (("pretrained", advice.strategy, advice.args), ("scratch", "scratch", {})):
        pl.seed_everything(seed, verbose=False)
        data = XModalDataModule(**hp)
        task = ClassificationTask(backbone=backbone, weights=weights, strategy=strategy, **args)
        trainer = pl.Trainer(max_epochs=epochs, logger=False, enable_checkpointing=False,
                             enable_progress_bar=False, enable_model_summary=False,
                             num_sanity_val_steps=0)
        trainer.fit(task, data)
        restore = [c for c in trainer.callbacks if type(c).__name__ == "RestoreBest"]
        result[label] = float(restore[0].best_score) if restore and restore[0].best_score is not None else 0.0
    return result
