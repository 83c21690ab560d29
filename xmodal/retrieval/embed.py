"""Embeddings: one float vector per input, from a checkpoint or a pretrained backbone.

:class:`Embedder` is the whole path ``decoded batch -> device transform -> backbone ->
(pooled stage | head)`` as one ``nn.Module``, so the same object embeds, builds an
index and exports to ONNX. :func:`embed_items` decodes inputs with the adapter
(bad files handled by the usual ``on_bad_file`` policy) and returns the vectors with
the items that produced them; :func:`write_embeddings` writes ``.npy`` + CSV, which
``numpy.load`` and ``pandas.read_csv`` read directly.
"""

from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from xmodal.adapters.base import ModalityAdapter, create_adapter
from xmodal.data.scan import BadFiles, DecodeAll, apply_policy, identity_collate
from xmodal.data.spec import Item
from xmodal.errors import BadInputError, ConfigError

LAYER_HELP = ("pooled (the backbone's global pool), stageN (global pool of feature stage N, "
              "1 = nearest the input), head (the task head's output: a hashing latent or logits), "
              "auto (head for hashing models, else pooled)")


class Embedder(nn.Module):
    """Decoded batch -> one vector per input.

    Args:
        transform: the adapter's device transform (decoded batch -> image batch), or
            ``None`` when inputs are image batches already.
        backbone: a timm model with ``num_classes=0``.
        layer: ``pooled``, ``stageN`` or ``head`` (see :data:`LAYER_HELP`).
        pool: ``avg`` or ``max`` for ``stageN`` layers.
        head: the task head (needed for ``layer="head"``).
    """

    def __init__(self, transform: nn.Module | None, backbone: nn.Module, layer: str = "pooled",
                 pool: str = "avg", head: nn.Module | None = None) -> None:
        super().__init__()
        self.transform = transform
        self.backbone = backbone
        self.layer = layer
        self.pool = pool
        self.head = head
        self.stage_index: int | None = None
        match = re.fullmatch(r"stage(\d+)", layer)
        if match:
            count = len(backbone.feature_info)
            stage = int(match.group(1))
            if not 1 <= stage <= count:
                raise ConfigError(f"layer {layer!r}: the backbone has stages 1..{count}")
            self.stage_index = stage - 1
        elif layer == "head":
            if head is None:
                raise ConfigError("layer 'head' needs a trained checkpoint (--checkpoint)")
        elif layer != "pooled":
            raise ConfigError(f"unknown layer {layer!r}; one of: {LAYER_HELP}")
        if pool not in ("avg", "max"):
            raise ConfigError(f"pool must be avg or max, not {pool!r}")

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        images = self.transform(inputs) if self.transform is not None else inputs
        if self.stage_index is not None:
            fmap = self.backbone.forward_intermediates(
                images, indices=[self.stage_index], intermediates_only=True, stop_early=True)[0]
            return fmap.amax(dim=(2, 3)) if self.pool == "max" else fmap.mean(dim=(2, 3))
        feats = self.backbone(images)
        return self.head(feats) if self.layer == "head" else feats


# -- models -------------------------------------------------------------------------------


def _read_checkpoint(path: Path) -> dict[str, Any]:
    """A Lightning checkpoint's contents, loaded with ``weights_only`` (no code runs)."""
    if not path.is_file():
        raise ConfigError(f"checkpoint {path} not found")
    try:
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ConfigError(f"cannot read checkpoint {path}: {str(exc).splitlines()[0]}") from None


def checkpoint_hparams(checkpoint: str | Path) -> dict[str, Any]:
    """The hyper-parameters saved in a Lightning checkpoint (tensors only, no code runs)."""
    return dict(_read_checkpoint(Path(checkpoint)).get("hyper_parameters") or {})


def load_task(checkpoint: str | Path) -> Any:
    """Load a trained xmodal head from a Lightning checkpoint.

    The class must be a registered head (``register_heads``): a checkpoint never makes
    xmodal import an arbitrary class.
    """
    from xmodal import plugins

    path = Path(checkpoint)
    state = _read_checkpoint(path)
    hparams = dict(state.get("hyper_parameters") or {})
    class_path = hparams.get("_class_path", "")
    heads = {name: plugins.heads().get(name) for name in plugins.heads().names()}
    by_path = {f"{cls.__module__}.{cls.__qualname__}": cls for cls in heads.values()}
    cls = by_path.get(class_path) or heads.get(class_path)
    if cls is None:
        keys = state.get("state_dict", {})
        cls = heads["hashing"] if any(k.startswith("head.encoder") for k in keys) else heads["classification"]
    task = cls.load_from_checkpoint(str(path), map_location="cpu", weights_only=True)
    return task.eval()


@dataclass
class EmbedModel:
    """An embedder and the adapter whose decoded inputs it takes."""

    embedder: Embedder
    adapter: ModalityAdapter
    info: dict[str, Any] = field(default_factory=dict)


def build_embed_model(
    checkpoint: str | None = None,
    adapter: dict[str, Any] | None = None,
    backbone: str | None = None,
    pretrained: bool = True,
    layer: str = "auto",
    pool: str = "avg",
) -> EmbedModel:
    """An :class:`EmbedModel` from a checkpoint (its own adapter settings) or a pretrained backbone.

    Args:
        checkpoint: a trained head's checkpoint; ``None`` uses the pretrained backbone.
        adapter: ``{"modality": ..., **settings}``; required without a checkpoint.
        backbone: timm model name for the pretrained path (default: xmodal's default).
        layer: see :data:`LAYER_HELP`.
    """
    from xmodal import backbones

    if checkpoint:
        task = load_task(checkpoint)
        if task.device_transform is None:
            raise ConfigError(f"checkpoint {checkpoint} has no adapter settings")
        from xmodal.tasks.hashing import HashingTask

        if layer == "auto":
            layer = "head" if isinstance(task, HashingTask) else "pooled"
        embedder = Embedder(task.device_transform, task.backbone, layer, pool, task.head)
        info = {"checkpoint": str(checkpoint), "backbone": task.hparams.backbone,
                "class_names": list(task.hparams.class_names or []), "task": type(task).__name__}
        return EmbedModel(embedder.eval(), task.adapter, {**info, "layer": layer, "pool": pool})
    if not adapter or not adapter.get("modality"):
        raise ConfigError("without --checkpoint, say which modality to embed (--modality NAME)")
    name = backbone or backbones.DEFAULT_BACKBONE
    net = backbones.create_backbone(name, pretrained=pretrained)
    built = create_adapter(adapter)
    layer = "pooled" if layer == "auto" else layer
    embedder = Embedder(built.device_transform(backbones.data_config(net)), net, layer, pool)
    info = {"checkpoint": None, "backbone": name, "pretrained": pretrained, "layer": layer, "pool": pool}
    return EmbedModel(embedder.eval(), built, info)


# -- inputs -------------------------------------------------------------------------------


def decoded_batches(items: Sequence[Item], adapter: ModalityAdapter, batch_size: int, num_workers: int,
             policy: str, report: BadFiles) -> Iterator[tuple[list[int], torch.Tensor]]:
    """Decoded inputs grouped into batches of equal shape (variable-size modalities too)."""
    loader = DataLoader(DecodeAll(items, adapter), batch_size=None, num_workers=num_workers,
                        collate_fn=identity_collate)
    pending: list[tuple[int, torch.Tensor]] = []
    for index, value, error in loader:
        if error is not None:
            apply_policy(error, policy, report)
            continue
        value = torch.as_tensor(value)
        if pending and (value.shape != pending[0][1].shape or len(pending) >= batch_size):
            yield [i for i, _ in pending], torch.stack([v for _, v in pending])
            pending = []
        pending.append((index, value))
    if pending:
        yield [i for i, _ in pending], torch.stack([v for _, v in pending])


@torch.no_grad()
def embed_items(
    model: EmbedModel,
    items: Sequence[Item],
    batch_size: int = 64,
    num_workers: int = 0,
    on_bad_file: str = "skip",
    report: BadFiles | None = None,
    device: str | torch.device = "cpu",
) -> tuple[np.ndarray, list[Item]]:
    """Vectors ``(N, D)`` float32 for the items that decode, and those items.

    Bad inputs follow ``on_bad_file`` (``error``, ``skip``, ``warn``) and are listed
    in ``report``.
    """
    report = report if report is not None else BadFiles()
    embedder = model.embedder.to(device).eval()
    vectors: list[np.ndarray] = []
    kept: list[Item] = []
    for indices, batch in decoded_batches(items, model.adapter, batch_size, num_workers, on_bad_file, report):
        out = embedder(batch.to(device)).float().cpu().numpy()
        vectors.append(out)
        kept.extend(items[i] for i in indices)
    if not vectors:
        raise ConfigError("no input could be embedded (all were unreadable or none given)")
    return np.concatenate(vectors).astype(np.float32), kept


# -- files --------------------------------------------------------------------------------


def write_embeddings(path: str | Path, vectors: np.ndarray, items: Sequence[Item],
                     class_names: Sequence[str] | None = None, split: str | None = None,
                     meta: dict[str, Any] | None = None) -> dict[str, Path]:
    """Write ``PATH.npy`` (vectors), ``PATH.csv`` (row, path, label[, split]) and ``PATH.json``.

    Row ``i`` of the CSV describes row ``i`` of the array, so
    ``pandas.read_csv("x.csv").assign(vec=list(np.load("x.npy")))`` lines them up.
    """
    base = Path(path)
    if base.suffix in (".npy", ".csv", ".json"):
        base = base.with_suffix("")
    base.parent.mkdir(parents=True, exist_ok=True)
    npy, manifest, info = base.with_suffix(".npy"), base.with_suffix(".csv"), base.with_suffix(".json")
    np.save(npy, np.ascontiguousarray(vectors, dtype=np.float32), allow_pickle=False)
    with manifest.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["row", "path", "label"] + (["split"] if split else []))
        for row, item in enumerate(items):
            label = "" if item.label is None else (
                class_names[item.label] if class_names else item.label)
            writer.writerow([row, item.name, label] + ([split] if split else []))
    info.write_text(json.dumps({"rows": int(len(vectors)), "dim": int(vectors.shape[1]),
                                **(meta or {})}, indent=2, default=str))
    return {"vectors": npy, "manifest": manifest, "meta": info}


def read_embeddings(path: str | Path) -> tuple[np.ndarray, list[dict[str, str]]]:
    """The vectors and manifest rows written by :func:`write_embeddings`."""
    base = Path(path)
    if base.suffix in (".npy", ".csv", ".json"):
        base = base.with_suffix("")
    npy, manifest = base.with_suffix(".npy"), base.with_suffix(".csv")
    if not npy.is_file() or not manifest.is_file():
        raise ConfigError(f"no embeddings at {base}: expected {npy.name} and {manifest.name}")
    vectors = np.load(npy, allow_pickle=False)
    with manifest.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    if len(rows) != len(vectors):
        raise ConfigError(f"{manifest} has {len(rows)} rows but {npy} {len(vectors)} vectors")
    return vectors, rows
