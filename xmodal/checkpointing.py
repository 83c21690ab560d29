"""Checkpoints that survive a kill and load nothing but data.

* :class:`AtomicCheckpointIO` writes each checkpoint to a temporary file in the same
  folder, fsyncs it and renames it over the target: a run killed mid-write leaves the
  previous ``last.ckpt`` intact, never a truncated one.
* :class:`LastCheckpoint` refreshes ``last.ckpt`` every N training steps, so a killed
  run loses at most N steps.
* :class:`ResumeState` saves the global RNG states (torch, numpy, random) in the
  checkpoint and restores them (and the schedulers' learning rates) right before the
  first resumed batch, so a resumed run draws the same dropout and augmentation masks
  and steps with the same learning rates as an uninterrupted one.
* :func:`find_last_checkpoint` makes ``--ckpt_path last`` find the newest ``last.ckpt``
  of earlier runs (each run logs to a new ``version_N`` folder).
* :func:`check_checkpoint` loads a checkpoint with ``weights_only=True`` before
  Lightning sees it: a file that would run code on unpickling is refused.
"""

from __future__ import annotations

import os
import random
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO
from pytorch_lightning.callbacks import Callback, ModelCheckpoint

from xmodal.errors import XModalError


class UnsafeCheckpoint(XModalError):
    """A checkpoint or weights file holds more than tensors and plain values."""


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save`` to a temp file beside ``path``, fsync, then ``os.replace``.

    The rename is atomic on POSIX file systems, so readers (and a resumed run) see
    either the old file or the complete new one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as stream:
            torch.save(obj, stream)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    return path


def _fsync_dir(folder: Path) -> None:
    """Persist the rename itself (the directory entry); best effort off POSIX."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning CheckpointIO plugin: temp file + fsync + rename for every save."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None) -> None:
        if storage_options is not None:
            raise TypeError("AtomicCheckpointIO takes no storage_options")
        if "://" in str(path):  # remote file systems: fall back to Lightning's writer
            super().save_checkpoint(checkpoint, path, storage_options)
            return
        atomic_torch_save(checkpoint, path)


class LastCheckpoint(ModelCheckpoint):
    """Refresh ``last.ckpt`` every ``every_n_train_steps`` steps (no top-k files).

    Args:
        every_n_train_steps: steps between saves; ``0`` turns it off (``last.ckpt`` is
            then written only at the end of each epoch by the main checkpoint).
    """

    def __init__(self, every_n_train_steps: int = 50) -> None:
        # no version counter: both this and the main checkpoint write the one last.ckpt
        super().__init__(monitor=None, save_top_k=0, save_last=True, enable_version_counter=False,
                         every_n_train_steps=max(0, every_n_train_steps) or None)


class ResumeState(Callback):
    """Make a resumed run continue exactly where the saved one was.

    * Global RNG states are saved with each checkpoint and restored at the first
      training batch after loading, not when the checkpoint is read: the sanity check
      and loader start-up in between draw random numbers a never-interrupted run
      would not have drawn at that point.
    * The training loader's position inside the epoch is applied before the first
      resumed batch is drawn (see :mod:`xmodal.data.resume`).
    * Learning rates are re-applied from the restored schedulers at that batch:
      Lightning's ``BaseFinetuning`` (the fine-tuning strategies) restores the
      optimiser's parameter groups as they were at the *first* epoch, which would
      train the first resumed step with a stale learning rate.
    """

    def __init__(self) -> None:
        self._pending: dict[str, Any] | None = None

    def state_dict(self) -> dict[str, Any]:
        numpy_state = np.random.get_state()
        return {
            "torch": torch.get_rng_state(),
            # plain ints and tensors only, so the checkpoint loads with weights_only=True
            "numpy": [numpy_state[0], torch.from_numpy(numpy_state[1].astype(np.int64)),
                      int(numpy_state[2]), int(numpy_state[3]), float(numpy_state[4])],
            "python": _plain_python_state(random.getstate()),
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._pending = dict(state_dict)

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Lightning builds the training loader early (for estimated_stepping_batches) and
        # then never hands it its saved position; do it before the first batch is drawn.
        fit_loop = trainer.fit_loop
        if getattr(fit_loop, "_combined_loader_states_to_load", None):
            fit_loop._load_combined_loader_states()

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                             batch: Any, batch_idx: int) -> None:
        if self._pending is None:
            return
        state, self._pending = self._pending, None
        torch.set_rng_state(state["torch"])
        name, keys, pos, has_gauss, cached = state["numpy"]
        np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
        version, internal, gauss = state["python"]
        random.setstate((version, tuple(internal), gauss))
        for config in trainer.lr_scheduler_configs:
            scheduler = config.scheduler
            rates = getattr(scheduler, "_last_lr", None)
            groups = scheduler.optimizer.param_groups
            if rates is not None and len(rates) == len(groups):
                for group, rate in zip(groups, rates):
                    group["lr"] = rate


def _plain_python_state(state: tuple) -> list[Any]:
    version, internal, gauss = state
    return [version, list(internal), gauss]


def find_last_checkpoint(root: str | os.PathLike) -> Path | None:
    """The most recently written ``last*.ckpt`` below ``root`` (all earlier runs)."""
    root = Path(root)
    if not root.is_dir():
        return None
    candidates = [p for p in root.rglob("last*.ckpt") if p.is_file()]
    return max(candidates, key=lambda p: p.stat().st_mtime_ns, default=None)


def check_checkpoint(path: str | os.PathLike) -> Path:
    """Refuse a checkpoint that does not load with ``torch.load(weights_only=True)``.

    ``weights_only`` unpickles only tensors and plain containers, so a file crafted
    to run code when unpickled (``os.system`` in ``__reduce__``) fails here with a
    clear message instead of executing, whatever the torch default or
    ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD`` say.
    """
    text = str(path)
    if "://" in text:
        raise UnsafeCheckpoint(
            f"refusing remote checkpoint {text}: download it first (xmodal.download checks "
            "its sha256) and pass the local file"
        )
    path = Path(text).expanduser()
    if not path.is_file():
        raise XModalError(f"checkpoint {path} not found")
    try:
        torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UnsafeCheckpoint(
            f"refusing to load {path}: it does not load with weights_only=True ({first[:200]}). "
            "xmodal loads only tensors and plain values from checkpoints, never pickled code."
        ) from None
    return path
