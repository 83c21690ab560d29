"""Benchmark: time-series images + an ImageNet backbone vs 1-NN Euclidean on UCR sets.

For each image transform of the plugin (``cwt``, ``gaf``, ``rp``, ``stack``) and each
of ArrowHead and OSULeaf (official splits), test accuracy as the mean of 3 seeds,
beside the 1-NN Euclidean baseline on the z-normalised raw series. Two protocols:

- ``--mode finetune`` (default, the reference): xmodal's classification task
  fine-tunes the whole pretrained EfficientNet-Lite0 on the full official train split
  for a fixed number of epochs; the last epoch's model is tested (no validation
  split, no model selection on the test split).
- ``--mode probe``: the backbone stays frozen; a logistic regression is fitted on its
  pooled features of the train series plus ``--views`` window-sliced copies each.
  Minutes on a CPU, where fine-tuning 18 runs takes hours.

Run (with the plugin installed, ``pip install plugins/xmodal-timeseries``)::

    XMODAL_DATA=../shared/data python plugins/xmodal-timeseries/bench.py [--mode probe]

Writes ``bench/results/timeseries.json``: per data set ``nn1_acc`` and per transform
``acc_mean`` (plus per-seed ``accs``), the best transform, and the settings used.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
import warnings
from pathlib import Path

import numpy as np

DATASETS = ("arrowhead", "osuleaf")
TRANSFORMS = ("cwt", "gaf", "rp", "stack")
RESULTS = Path(__file__).resolve().parents[2] / "bench" / "results" / "timeseries.json"


def nn1_euclidean(name: str) -> float:
    """Test accuracy of 1-NN with Euclidean distance on the z-normalised raw series."""
    from xmodal_timeseries.datasets import NAMED, ucr
    from xmodal.data import data_root

    archive = {n.lower(): n for n in NAMED}[name]
    spec = ucr(data_root(), name=archive)

    def stack(items):  # type: ignore[no-untyped-def]
        x = np.stack([item.source for item in items]).astype(np.float64)
        x = (x - x.mean(1, keepdims=True)) / x.std(1, keepdims=True)
        return x, np.array([item.label for item in items])

    train_x, train_y = stack(spec.train)
    test_x, test_y = stack(spec.test)
    distance = ((test_x[:, None, :] - train_x[None, :, :]) ** 2).sum(-1)
    return float((train_y[distance.argmin(1)] == test_y).mean())


def train_once(name: str, transform: str, seed: int, args: argparse.Namespace) -> float:
    """Fit on the official train split, return test accuracy of the last epoch."""
    import pytorch_lightning as pl

    from xmodal import ClassificationTask, XModalDataModule

    pl.seed_everything(seed, workers=True)
    data = XModalDataModule(
        dataset=name, modality="timeseries", val_fraction=0.0, batch_size=args.batch_size,
        num_workers=0, seed=seed,
        adapter={"transform": transform, "image_size": args.image_size, "length": args.length},
    )
    model = ClassificationTask(backbone=args.backbone, pretrained=True, freeze=args.freeze,
                               lr=args.lr, weight_decay=args.weight_decay, warmup_epochs=1,
                               label_smoothing=0.1)
    trainer = pl.Trainer(max_epochs=args.epochs, limit_val_batches=0, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, accelerator="auto", devices=1)
    trainer.fit(model, datamodule=data)
    result = trainer.test(model, datamodule=data, verbose=False)
    return float(result[0]["test/acc"])


def probe_once(name: str, transform: str, seed: int, args: argparse.Namespace) -> float:
    """Frozen pretrained backbone + logistic regression: the CPU-cheap protocol.

    Features of the test images and of the training images plus ``--views`` randomly
    window-sliced copies of each (the seed picks the copies) feed a logistic
    regression; nothing is fitted on the test split.
    """
    import torch
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from xmodal import XModalDataModule, create_backbone

    torch.manual_seed(seed)
    data = XModalDataModule(
        dataset=name, modality="timeseries", val_fraction=0.0, num_workers=0, cache=False,
        adapter={"transform": transform, "image_size": args.image_size, "length": args.length},
    )
    spec, adapter = data.prepare_spec(), data.adapter
    key = (name, args.backbone)
    if key not in _BACKBONES:
        _BACKBONES[key] = create_backbone(args.backbone, pretrained=True).eval()
    backbone = _BACKBONES[key]
    to_image, augment = adapter.device_transform({}), adapter.train_augment()

    def features(items, views: int = 0):  # type: ignore[no-untyped-def]
        decoded = torch.stack([adapter.decode(item.source) for item in items])
        out = []
        with torch.no_grad():
            for view in range(views + 1):
                for chunk in decoded.split(64):
                    images = to_image(chunk)
                    if view and augment is not None:
                        images = augment(images)
                    out.append(backbone(images))
        return torch.cat(out).numpy()

    train_y = np.array([item.label for item in spec.train])
    train_x = features(spec.train, args.views)
    train_y = np.tile(train_y, args.views + 1)
    test_x = features(spec.test)
    test_y = np.array([item.label for item in spec.test])
    classifier = make_pipeline(StandardScaler(), LogisticRegression(C=args.C, max_iter=3000))
    classifier.fit(train_x, train_y)
    return float(classifier.score(test_x, test_y))


_BACKBONES: dict = {}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS))
    parser.add_argument("--transforms", nargs="+", default=list(TRANSFORMS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--mode", choices=["finetune", "probe"], default="finetune",
                        help="finetune the whole network (the reference protocol) or fit a "
                             "logistic regression on frozen features (minutes on a CPU)")
    parser.add_argument("--views", type=int, default=4, help="probe: augmented copies per train series")
    parser.add_argument("--C", type=float, default=0.1, help="probe: inverse L2 strength")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--length", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--backbone", default="tf_efficientnet_lite0")
    parser.add_argument("--freeze", default="0")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--weight-decay", type=float, default=1e-2)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (1 avoids OpenMP spinning on a busy machine)")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    args.freeze = int(args.freeze) if args.freeze.isdigit() else args.freeze
    import torch

    torch.set_num_threads(args.threads)
    logging.getLogger("pytorch_lightning").setLevel(logging.ERROR)
    logging.getLogger("lightning").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    if not os.environ.get("XMODAL_DATA"):
        raise SystemExit("set XMODAL_DATA to the folder holding ucr/ (e.g. ../shared/data)")

    results: dict = {"settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}}
    for name in args.datasets:
        entry = {"nn1_acc": nn1_euclidean(name), "transforms": {}}
        for transform in args.transforms:
            start = time.time()
            run = train_once if args.mode == "finetune" else probe_once
            accs = [run(name, transform, seed, args) for seed in args.seeds]
            entry["transforms"][transform] = {
                "acc_mean": float(np.mean(accs)), "acc_std": float(np.std(accs)),
                "accs": accs, "seconds": round(time.time() - start, 1),
            }
            results[name] = {**entry, "complete": False}
            _write(args.output, results)  # partial results survive an interrupted run
            print(f"{name:10s} {transform:6s} acc {np.mean(accs):.4f} ± {np.std(accs):.4f} "
                  f"({', '.join(f'{a:.3f}' for a in accs)})  {time.time() - start:.0f}s", flush=True)
        best = max(entry["transforms"].items(), key=lambda kv: kv[1]["acc_mean"], default=(None, {}))
        entry["best_transform"] = best[0]
        entry["best_acc"] = best[1].get("acc_mean")
        entry["beats_nn1"] = bool(best[1] and best[1]["acc_mean"] > entry["nn1_acc"])
        entry["complete"] = True
        results[name] = entry
    print(f"\n{'data set':10s} {'1-NN':>7s} " + " ".join(f"{t:>7s}" for t in args.transforms))
    for name in args.datasets:
        row = results[name]
        print(f"{name:10s} {row['nn1_acc']:7.4f} "
              + " ".join(f"{row['transforms'][t]['acc_mean']:7.4f}" for t in args.transforms))
    _write(args.output, results)
    print(f"wrote {args.output}")


def _write(path: Path, results: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
