"""Benchmark: time-series images + an ImageNet backbone vs 1-NN Euclidean on UCR sets.

For each image transform of the plugin (``cwt``, ``gaf``, ``rp``, ``line``, ``stack``)
and each of ArrowHead and OSULeaf (official splits), test accuracy as the mean of 3
seeds, beside the 1-NN Euclidean baseline on the z-normalised raw series. Two
protocols:

- ``--mode finetune`` (default, the reference): xmodal's classification task
  fine-tunes the whole pretrained EfficientNet-Lite0 (the packaged ImageNet weights)
  on the full official train split for a fixed number of epochs (per data set,
  ``--epochs``) with AdamW, warm-up + cosine schedule and label smoothing, on
  series augmented by the adapter (random window, circular shift, reversal:
  ``--augment``). The last epoch's model is tested; its prediction is the mean
  log-probability over the adapter's deterministic test views (``--test-views``
  shifts, each also reversed), ``acc`` below. ``acc_single`` is the accuracy of the
  plain series alone. There is no validation split and no model selection on the
  test split.
- ``--mode probe``: the backbone stays frozen; a logistic regression is fitted on its
  pooled features of the train series plus ``--views`` augmented copies each.
  Minutes on a CPU.

Run (with the plugin installed, ``pip install plugins/xmodal-timeseries``)::

    XMODAL_DATA=../shared/data python plugins/xmodal-timeseries/bench.py [--mode probe]

Writes ``bench/results/timeseries.json``: per data set ``nn1_acc`` and per transform
``acc_mean`` (plus per-seed ``accs``, ``acc_single`` and seconds), the best
transform, and the settings used.
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
TRANSFORMS = ("cwt", "gaf", "rp", "line", "stack")
RESULTS = Path(__file__).resolve().parents[2] / "bench" / "results" / "timeseries.json"
#: Fine-tuning protocol defaults (per data set where the train split's size matters).
EPOCHS = {"arrowhead": 80, "osuleaf": 40}
BATCH = {"arrowhead": 16, "osuleaf": 32}
#: Series augmentation (adapter settings); ``roll`` and ``flip`` per data set from
#: :func:`invariances` unless ``--augment`` gives them.
AUGMENT = {"augment": True, "crop_scale": 0.8}


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


def invariances(name: str) -> dict:
    """Pick the augmentation's circular shift and reversal from the train split alone.

    Leave-one-out 1-NN accuracy on the z-normalised train series under four
    distances: Euclidean; the minimum over circular shifts (a contour traced from
    another start); the minimum over reversal (traced the other way round); the
    minimum over both. The most accurate wins (ties: the fewer invariances), and
    the augmentation uses ``roll`` (probability 1) and ``flip`` (0.5) accordingly.
    The test split is not looked at.
    """
    from xmodal_timeseries.datasets import NAMED, ucr
    from xmodal.data import data_root

    archive = {n.lower(): n for n in NAMED}[name]
    spec = ucr(data_root(), name=archive)
    x = np.stack([item.source for item in spec.train]).astype(np.float64)
    x = (x - x.mean(1, keepdims=True)) / x.std(1, keepdims=True)
    y = np.array([item.label for item in spec.train])
    energy = (x**2).sum(1)
    spectrum = np.fft.rfft(x, axis=1)

    def distance(other: np.ndarray, shifts: bool) -> np.ndarray:
        if not shifts:
            return energy[:, None] + (other**2).sum(1)[None] - 2 * x @ other.T
        cross = np.fft.irfft(spectrum[:, None] * np.conj(np.fft.rfft(other, axis=1))[None],
                             n=x.shape[1], axis=-1)
        return energy[:, None] + (other**2).sum(1)[None] - 2 * cross.max(-1)

    candidates = {
        (False, False): distance(x, False),
        (True, False): distance(x, True),
        (False, True): np.minimum(distance(x, False), distance(x[:, ::-1], False)),
        (True, True): np.minimum(distance(x, True), distance(x[:, ::-1], True)),
    }
    scores = {}
    for key, d in candidates.items():
        np.fill_diagonal(d, np.inf)
        scores[key] = float((y[d.argmin(1)] == y).mean())
    roll, flip = max(scores, key=lambda k: (scores[k], -sum(k)))
    return {"roll": 1.0 if roll else 0.0, "flip": 0.5 if flip else 0.0,
            "loo_1nn_train": {f"{'roll' if r else 'no roll'}, {'flip' if f else 'no flip'}": round(v, 4)
                              for (r, f), v in scores.items()}}


def adapter_settings(name: str, transform: str, args: argparse.Namespace) -> dict:
    settings = {"transform": transform, "image_size": args.image_size, "length": args.length}
    if transform == "stack" and args.stack:
        settings["channels"] = args.stack
    return {**settings, **args.augmentation[name]}


def train_once(name: str, transform: str, seed: int, args: argparse.Namespace) -> dict:
    """Fine-tune on the official train split; test accuracy of the last epoch's model."""
    import pytorch_lightning as pl
    import torch

    from xmodal import ClassificationTask, XModalDataModule

    pl.seed_everything(seed, workers=True)
    data = XModalDataModule(
        dataset=name, modality="timeseries", val_fraction=0.0, batch_size=args.batch_size[name],
        num_workers=0, seed=seed, cache=False, adapter=adapter_settings(name, transform, args),
    )
    model = ClassificationTask(backbone=args.backbone, pretrained=True, freeze=args.freeze,
                               lr=args.lr, weight_decay=args.weight_decay,
                               warmup_epochs=max(1, args.epochs[name] // 20),
                               label_smoothing=args.label_smoothing, channels_last=True,
                               early_stopping_patience=None, restore_best=False,
                               feature_cache=False)
    trainer = pl.Trainer(max_epochs=args.epochs[name], limit_val_batches=0, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, accelerator="auto", devices=1,
                         num_sanity_val_steps=0)
    trainer.fit(model, datamodule=data)
    spec, adapter = data.prepare_spec(), data.adapter
    model.eval()
    views = [adapter.test_views(item.source, args.test_views) for item in spec.test]
    labels = torch.tensor([item.label for item in spec.test])
    total, single = 0.0, None
    with torch.no_grad():
        for index in range(len(views[0])):
            batch = torch.stack([item_views[index] for item_views in views]).to(model.device)
            logp = torch.cat([model(chunk).log_softmax(-1) for chunk in batch.split(128)]).cpu()
            total = total + logp
            if single is None:
                single = float((logp.argmax(-1) == labels).float().mean())
    return {"acc": float((total.argmax(-1) == labels).float().mean()), "acc_single": single,
            "views": len(views[0])}


def probe_once(name: str, transform: str, seed: int, args: argparse.Namespace) -> dict:
    """Frozen pretrained backbone + logistic regression: the CPU-cheap protocol.

    Features of the test images and of the training images plus ``--views`` randomly
    augmented copies of each (the seed picks the copies) feed a logistic
    regression; nothing is fitted on the test split.
    """
    import torch
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from xmodal import XModalDataModule, create_backbone

    torch.manual_seed(seed)  # picks the augmented copies (the adapter draws from torch's RNG)
    data = XModalDataModule(dataset=name, modality="timeseries", val_fraction=0.0, num_workers=0,
                            cache=False, adapter=adapter_settings(name, transform, args))
    spec, adapter = data.prepare_spec(), data.adapter
    key = (name, args.backbone)
    if key not in _BACKBONES:
        _BACKBONES[key] = create_backbone(args.backbone, pretrained=True).eval()
    backbone = _BACKBONES[key]
    to_image = adapter.device_transform({})

    def features(items, views: int = 0):  # type: ignore[no-untyped-def]
        out = []
        with torch.no_grad():
            for view in range(views + 1):
                decode = adapter.decode_train if view else adapter.decode
                decoded = torch.stack([decode(item.source) for item in items])
                for chunk in decoded.split(64):
                    out.append(backbone(to_image(chunk)))
        return torch.cat(out).numpy()

    train_y = np.array([item.label for item in spec.train])
    train_x = features(spec.train, args.views)
    train_y = np.tile(train_y, args.views + 1)
    test_x = features(spec.test)
    test_y = np.array([item.label for item in spec.test])
    classifier = make_pipeline(StandardScaler(), LogisticRegression(C=args.C, max_iter=3000))
    classifier.fit(train_x, train_y)
    return {"acc": float(classifier.score(test_x, test_y))}


_BACKBONES: dict = {}


def per_dataset(text: str) -> tuple[str | None, int]:
    """argparse type: ``N`` for every data set or ``NAME=N`` for one."""
    name, sep, value = text.rpartition("=")
    if sep and name not in DATASETS:
        raise argparse.ArgumentTypeError(f"unknown data set {name!r} (one of {', '.join(DATASETS)})")
    return (name if sep else None, int(value))


def resolve(values: list, default: dict) -> dict:
    out = dict(default)
    for name, value in values or []:
        if name is None:
            out = {key: value for key in out}
        else:
            out[name] = value
    return out


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
    parser.add_argument("--epochs", nargs="+", type=per_dataset, metavar="[NAME=]N",
                        help=f"fine-tuning epochs (default {EPOCHS})")
    parser.add_argument("--batch-size", nargs="+", type=per_dataset, metavar="[NAME=]N",
                        help=f"batch size (default {BATCH})")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--length", type=int, default=128)
    parser.add_argument("--stack", nargs=3, default=None,
                        help="the three transforms of `stack` (adapter setting channels; "
                             "default the adapter's: cwt gaf rp)")
    parser.add_argument("--augment", type=json.loads, default={},
                        help=f"adapter augmentation settings as JSON over {json.dumps(AUGMENT)}; "
                             "roll and flip not given here are chosen per data set on its train "
                             "split (leave-one-out 1-NN, see invariances())")
    parser.add_argument("--test-views", type=int, default=4,
                        help="finetune: test-time views (adapter.test_views count); 1 with no roll: none")
    parser.add_argument("--backbone", default="tf_efficientnet_lite0")
    parser.add_argument("--freeze", default="0")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--weight-decay", type=float, default=0.05)
    parser.add_argument("--label-smoothing", type=float, default=0.1)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (1 avoids OpenMP spinning on a busy machine)")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    args.freeze = int(args.freeze) if args.freeze.isdigit() else args.freeze
    args.epochs = resolve(args.epochs, EPOCHS)
    args.batch_size = resolve(args.batch_size, BATCH)
    import torch

    torch.set_num_threads(args.threads)
    logging.getLogger("pytorch_lightning").setLevel(logging.ERROR)
    logging.getLogger("lightning").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    if not os.environ.get("XMODAL_DATA"):
        raise SystemExit("set XMODAL_DATA to the folder holding ucr/ (e.g. ../shared/data)")

    begin = time.time()
    settings = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    for key in (("epochs", "batch_size", "test_views", "lr", "weight_decay", "label_smoothing", "freeze")
                if args.mode == "probe" else ("views", "C")):
        settings.pop(key)
    results: dict = {"settings": settings}
    args.augmentation = {}
    for name in args.datasets:
        chosen = {**AUGMENT, **args.augment}
        if not {"roll", "flip"} <= set(chosen):
            check = invariances(name)
            chosen = {"roll": check["roll"], "flip": check["flip"], **chosen}
            results.setdefault("augment_choice", {})[name] = check
        args.augmentation[name] = chosen
    settings["augmentation"] = args.augmentation
    run = train_once if args.mode == "finetune" else probe_once
    for name in args.datasets:
        entry = {"nn1_acc": nn1_euclidean(name), "transforms": {}}
        for transform in args.transforms:
            start = time.time()
            runs = []
            for seed in args.seeds:
                began = time.time()
                runs.append({**run(name, transform, seed, args), "seconds": round(time.time() - began, 1)})
            accs = [r["acc"] for r in runs]
            row = {"acc_mean": float(np.mean(accs)), "acc_std": float(np.std(accs)), "accs": accs,
                   "seeds": args.seeds, "seconds": round(time.time() - start, 1)}
            if "acc_single" in runs[0]:
                row["acc_single"] = [r["acc_single"] for r in runs]
                row["acc_single_mean"] = float(np.mean(row["acc_single"]))
                row["test_views"] = runs[0]["views"]
            row["seconds_per_seed"] = [r["seconds"] for r in runs]
            entry["transforms"][transform] = row
            results[name] = {**entry, "complete": False}
            _write(args.output, results)  # partial results survive an interrupted run
            single = (f"  single view {row['acc_single_mean']:.4f}" if "acc_single" in row else "")
            print(f"{name:10s} {transform:6s} acc {np.mean(accs):.4f} ± {np.std(accs):.4f} "
                  f"({', '.join(f'{a:.4f}' for a in accs)}){single}  {time.time() - start:.0f}s", flush=True)
        best = max(entry["transforms"].items(), key=lambda kv: kv[1]["acc_mean"], default=(None, {}))
        entry["best_transform"] = best[0]
        entry["best_acc"] = best[1].get("acc_mean")
        entry["beats_nn1"] = bool(best[1] and best[1]["acc_mean"] > entry["nn1_acc"])
        entry["complete"] = True
        results[name] = entry
    results["seconds"] = round(time.time() - begin, 1)
    print(f"\n{'data set':10s} {'1-NN':>7s} " + " ".join(f"{t:>7s}" for t in args.transforms)
          + "    best")
    for name in args.datasets:
        row = results[name]
        print(f"{name:10s} {row['nn1_acc']:7.4f} "
              + " ".join(f"{row['transforms'][t]['acc_mean']:7.4f}" for t in args.transforms)
              + f"    {row['best_transform']} {row['best_acc']:.4f}")
    _write(args.output, results)
    print(f"wrote {args.output} ({results['seconds']:.0f} s)")


def _write(path: Path, results: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
