"""Shared machinery of ``bench/strategies.py`` and ``bench/data_efficiency.py``.

Small CPU-sized runs: every data set is shrunk to small images, a capped training set,
a validation set held out of *train* (never the test split: hymenoptera's val split
is its test split) and a capped, stratified test set. Early stopping and best-epoch
rollback pick the weights on that validation set; the test set is touched once.
"""

from __future__ import annotations

import json
import time
import warnings
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch

from xmodal.data import XModalDataModule
from xmodal.data.spec import Item, per_class_subset, split_off

#: validation items per class held out of train; test items per class at most
VAL_PER_CLASS = 10
TEST_PER_CLASS = 150
#: what the inputs are, for the results' settings
INPUTS = "fsdd 64x64 log-mel, hymenoptera 96 px, texts 48x160 px"

#: small network inputs per data set (the bench is sized for 2 shared CPU cores)
SMALL_ADAPTERS: dict[str, dict[str, Any]] = {
    "fsdd": {"image_size": [64, 64]},
    "hymenoptera": {"image_size": 96, "train_size": 96, "crop_scale": [0.35, 1.0]},
    "sms_spam": {"image_size": [48, 160], "font_size": 9},
    "chnsenticorp": {"image_size": [48, 160], "cell_size": 10, "font_size": 9},
    # held-out data sets (xmodal-timeseries plugin): checks of the advise rule, never reported
    "arrowhead": {"transform": "rp", "length": 128, "image_size": 64, "roll": 0.0, "flip": 0.0},
    "osuleaf": {"transform": "line", "length": 128, "image_size": 64, "roll": 1.0, "flip": 0.5},
}


class BenchData(XModalDataModule):
    """A data module whose val split is held out of train and whose test split is capped.

    Args:
        val_per_class: validation items per class, taken out of train first.
        test_per_class: at most this many test items per class (seeded, fixed across runs).
        **kwargs: :class:`XModalDataModule` arguments (``per_class`` caps train).
    """

    def __init__(self, val_per_class: int = VAL_PER_CLASS, test_per_class: int = TEST_PER_CLASS,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.val_per_class = val_per_class
        self.test_per_class = test_per_class

    def split_items(self, split: str) -> list[Item]:
        spec = self.prepare_spec()
        if split in ("train", "val"):
            pool = list(spec.train)
            by_class = {}
            for item in pool:
                by_class.setdefault(item.label, []).append(item)
            fraction = self.val_per_class / max(1, min(len(v) for v in by_class.values()))
            rest, val = split_off(pool, min(0.5, fraction), seed=1234)  # same val for every seed
            val = per_class_subset(val, self.val_per_class, seed=1234)
            if split == "val":
                return val
            per_class = self.hparams.per_class
            return per_class_subset(rest, per_class, self.hparams.seed) if per_class else rest
        if split == "test":
            return per_class_subset(spec.test, self.test_per_class, seed=1234)
        return super().split_items(split)


def make_data(dataset: str, per_class: int | None, seed: int, batch_size: int = 16,
              val_per_class: int = VAL_PER_CLASS, test_per_class: int = TEST_PER_CLASS) -> BenchData:
    return BenchData(dataset=dataset, adapter=SMALL_ADAPTERS.get(dataset, {}), per_class=per_class,
                     seed=seed, batch_size=batch_size, num_workers=0, val_per_class=val_per_class,
                     test_per_class=test_per_class)


def fit_once(dataset: str, strategy: str, per_class: int | None, seed: int, epochs: int,
             max_steps: int = -1, lr: float = 5e-3, backbone_lr_scale: float = 0.2,
             patience: int = 3, val_per_class: int = VAL_PER_CLASS, **strategy_args: Any) -> dict[str, Any]:
    """Train one strategy on one subset and test the rolled-back best weights."""
    from xmodal.tasks.classification import ClassificationTask

    pl.seed_everything(seed, verbose=False)
    data = make_data(dataset, per_class, seed, val_per_class=val_per_class)
    task = ClassificationTask(strategy=strategy, lr=lr, backbone_lr_scale=backbone_lr_scale,
                              warmup_epochs=0, early_stopping_patience=patience, **strategy_args)
    trainer = pl.Trainer(max_epochs=epochs, max_steps=max_steps, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, num_sanity_val_steps=0, deterministic=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        data.setup("fit")  # decode (cached) before timing
        started, cpu_started = time.perf_counter(), time.process_time()
        trainer.fit(task, data)
        seconds = time.perf_counter() - started
        cpu_seconds = time.process_time() - cpu_started  # comparable under a shared, loaded CPU
        result = trainer.test(task, data, verbose=False)[0]
    return {"dataset": dataset, "strategy": strategy, "per_class": per_class, "seed": seed,
            "acc": float(result["test/acc"]), "train_seconds": seconds, "cpu_seconds": cpu_seconds,
            "epochs_run": int(trainer.current_epoch), "train_items": len(data.datasets["train"]),
            "test_items": len(data.datasets["test"])}


def load_runs(path: Path) -> list[dict[str, Any]]:
    if path.is_file():
        return json.loads(path.read_text()).get("runs", [])
    return []


def aggregate(runs: list[dict[str, Any]], keys: tuple[str, ...] = ("dataset", "strategy", "per_class")
              ) -> list[dict[str, Any]]:
    """Mean accuracy and train time over seeds, one row per ``keys``."""
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for run in runs:
        groups.setdefault(tuple(run[k] for k in keys), []).append(run)
    rows = []
    for key, items in groups.items():
        accs = torch.tensor([r["acc"] for r in items])
        rows.append({**dict(zip(keys, key)), "acc_mean": round(float(accs.mean()), 4),
                     "acc_std": round(float(accs.std()) if len(items) > 1 else 0.0, 4),
                     "train_seconds": round(sum(r["train_seconds"] for r in items) / len(items), 1),
                     "cpu_seconds": round(sum(r.get("cpu_seconds", float("nan")) for r in items) / len(items), 1),
                     "seeds": sorted(r["seed"] for r in items)})
    return rows
