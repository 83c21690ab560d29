"""Checkpoints that survive a kill and load nothing but data.

* :class:`AtomicCheckpointIO` writes each checkpoint to a temporary file in the same
  folder, fsyncs it and renames it over the target: a run killed mid-write leaves the
  previous ``last.ckpt`` intact, never a truncated one.
* :class:`BestCheckpoint` keeps the best score and files of the run it resumes.
* :class:`LastCheckpoint` refreshes ``last.ckpt`` every N training steps, so a killed
  run loses at most N steps.
* :class:`ResumeState` saves the global RNG states (torch, CUDA, numpy, random) in
  the checkpoint and, when training resumes, restores them, moves the training
  loader to its saved position inside the epoch and re-applies the schedulers'
  learning rates, all before the first resumed batch is fetched, so a resumed run
  sees the same batches, draws the same dropout and augmentation masks and steps
  with the same learning rates as an uninterrupted one.
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

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if state_dict.get("dirpath", self.dirpath) != self.dirpath:
            return  # a resumed run writes its own last.ckpt in its new folder: nothing to keep
        super().load_state_dict(state_dict)


class BestCheckpoint(ModelCheckpoint):
    """``ModelCheckpoint`` that remembers the earlier run's best checkpoints after a resume.

    A resumed run logs to a new ``version_N`` folder; Lightning's ``ModelCheckpoint``
    then forgets the best score and the top-k files (it keeps only
    ``best_model_path``), so the first validation after the resume always became the
    new "best", whatever its score. This one keeps them, so the resumed run picks the
    same best checkpoint as an uninterrupted run. Files of the earlier folder are never
    deleted (Lightning removes only files inside its own ``dirpath``).
    """

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        saved_dir = state_dict.get("dirpath", self.dirpath)
        if saved_dir == self.dirpath or state_dict.get("monitor") != self.monitor:
            super().load_state_dict(state_dict)
            return
        self.best_model_score = state_dict["best_model_score"]
        self.best_model_path = state_dict["best_model_path"]
        self.best_k_models = {path: score for path, score in state_dict.get("best_k_models", {}).items()
                              if Path(path).is_file()}
        if self.best_model_path and self.best_model_path not in self.best_k_models:
            self.best_model_score = None  # the file is gone: nothing to compare against
            self.best_model_path = ""
        if self.best_k_models:
            self.kth_best_model_path = state_dict.get("kth_best_model_path", self.kth_best_model_path)
            self.kth_value = state_dict.get("kth_value", self.kth_value)


class ResumeState(Callback):
    """Make a resumed run continue exactly where the saved one was.

    Everything happens in ``on_train_start``: after Lightning has restored the
    model, optimiser, schedulers and loops and run its sanity check, and before the
    first resumed batch is *fetched* (a batch is fetched before ``on_train_batch_start``,
    and decoding it may draw random numbers).

    * The training loader's saved position inside the epoch is applied and its
      iterator created afresh (see :mod:`xmodal.data.resume`). Lightning would never
      apply it itself: ``configure_optimizers`` asks for
      ``trainer.estimated_stepping_batches``, which builds the training loader
      before the checkpoint's loop state is read, and a run restarted mid-epoch gets
      no ``on_train_epoch_start``. Without this the resumed epoch started over
      from its first batch.
    * Global RNG states (torch CPU, CUDA when in use, numpy, random) are saved with
      each checkpoint and restored here, not when the checkpoint is read: the
      sanity check in between draws random numbers a never-interrupted run would
      not have drawn at that point.
    * Learning rates are re-applied from the restored schedulers, in case a
      fine-tuning callback (Lightning's ``BaseFinetuning``) replaced the
      optimiser's parameter groups.
    """

    def __init__(self) -> None:
        self._pending: dict[str, Any] | None = None

    def state_dict(self) -> dict[str, Any]:
        numpy_state = np.random.get_state()
        state = {
            "torch": torch.get_rng_state(),
            # plain ints and tensors only, so the checkpoint loads with weights_only=True
            "numpy": [numpy_state[0], torch.from_numpy(numpy_state[1].astype(np.int64)),
                      int(numpy_state[2]), int(numpy_state[3]), float(numpy_state[4])],
            "python": _plain_python_state(random.getstate()),
        }
        # device-side augmentation (SpecAugment masks, time shifts) draws from the CUDA
        # generators; an uninitialised CUDA has drawn nothing since seed_everything
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._pending = dict(state_dict)

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._pending is None:
            return
        state, self._pending = self._pending, None
        _position_training_loader(trainer)
        # after the loader: a loader without its own generator draws its seed from
        # the global RNG when its iterator is created
        _set_rng_states(state)
        for config in trainer.lr_scheduler_configs:
            scheduler = config.scheduler
            rates = getattr(scheduler, "_last_lr", None)
            groups = scheduler.optimizer.param_groups
            if rates is not None and len(rates) == len(groups):
                for group, rate in zip(groups, rates):
                    group["lr"] = rate


def _position_training_loader(trainer: pl.Trainer) -> None:
    """Apply the saved loader state of a run restarted mid-epoch, then restart its iterator."""
    fit_loop = trainer.fit_loop
    fetcher = getattr(fit_loop, "_data_fetcher", None)
    if fit_loop._combined_loader is None or fetcher is None:
        return
    if not fit_loop.restarted_mid_epoch or fit_loop.epoch_loop.batch_progress.is_last_batch:
        return  # resuming at an epoch boundary: the next epoch starts at its first batch
    if not fit_loop._combined_loader_states_to_load:
        return
    fit_loop._load_combined_loader_states()
    # the iterator made before the checkpoint was read may have prefetched (workers)
    # from the start of the epoch; the new one starts at the saved position
    iter(fetcher)


def _set_rng_states(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    cuda = state.get("cuda")
    if cuda and torch.cuda.is_available() and torch.cuda.device_count() == len(cuda):
        torch.cuda.set_rng_state_all(cuda)


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
