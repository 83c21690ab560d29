"""FSDD benchmark: configs/fsdd.yaml vs two baselines on the official split.

Prints one table and writes bench/results/fsdd.json. Baselines on the same split:
MFCC mean/std features + logistic regression, and frozen pretrained backbone features
(same spectrogram input) + logistic regression. Also trains once speaker-independently
(train on five speakers, test on ``theo``).

Usage: XMODAL_DATA=../shared/data python bench/fsdd.py [--seeds 0 1 2] [--max-epochs N]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from xmodal.cli import run_lightning  # noqa: E402
from xmodal.data import XModalDataModule  # noqa: E402


def fit_config(seed: int, extra: list[str], root_dir: Path) -> tuple[float, float]:
    """Train configs/fsdd.yaml with ``seed``; return (test accuracy, seconds)."""
    args = ["fit", "--config", str(REPO / "configs" / "fsdd.yaml"), "--seed_everything", str(seed),
            "--trainer.default_root_dir", str(root_dir), "--trainer.enable_progress_bar", "false",
            "--trainer.enable_model_summary", "false", *extra]
    start = time.perf_counter()
    cli = run_lightning(args)
    seconds = time.perf_counter() - start
    return float(cli.test_results["test/acc"]), seconds


def mfcc_logreg(data: XModalDataModule) -> float:
    """MFCC mean/std features + standardised logistic regression."""
    import librosa
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from xmodal.adapters.audio import read_audio

    def features(items):
        rows = []
        for item in items:
            signal, rate = read_audio(item.source)
            mfcc = librosa.feature.mfcc(y=signal, sr=rate, n_mfcc=20, n_fft=256, hop_length=64)
            rows.append(np.concatenate([mfcc.mean(axis=1), mfcc.std(axis=1)]))
        return np.stack(rows)

    spec = data.prepare_spec()
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000, C=1.0))
    clf.fit(features(spec.train), [i.label for i in spec.train])
    return float(clf.score(features(spec.test), [i.label for i in spec.test]))


def frozen_logreg(data: XModalDataModule) -> float:
    """Pooled features of the frozen pretrained backbone + logistic regression."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from xmodal.tasks import ClassificationTask

    spec = data.prepare_spec()
    model = ClassificationTask(input_adapter=data.adapter.config(), class_names=spec.classes).eval()

    def features(items):
        with torch.no_grad():
            batches = [torch.stack([data.adapter.decode(i.source) for i in items[s:s + 64]])
                       for s in range(0, len(items), 64)]
            return torch.cat([model.features(b) for b in batches]).numpy()

    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000, C=0.5))
    clf.fit(features(spec.train), [i.label for i in spec.train])
    return float(clf.score(features(spec.test), [i.label for i in spec.test]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--extra", nargs=argparse.REMAINDER, default=[],
                        help="extra xmodal fit overrides, e.g. --trainer.max_epochs 5")
    args = parser.parse_args()
    if not os.environ.get("XMODAL_DATA"):
        os.environ["XMODAL_DATA"] = str(REPO.parent / "shared" / "data")
    runs = Path(os.environ.get("XMODAL_BENCH_RUNS", "/tmp/xmodal-bench-fsdd"))

    data = XModalDataModule(dataset="fsdd")
    accs, seconds = [], []
    for seed in args.seeds:
        acc, secs = fit_config(seed, args.extra, runs / f"seed{seed}")
        accs.append(acc)
        seconds.append(secs)
        print(f"seed {seed}: test accuracy {acc:.4f} in {secs:.0f} s", flush=True)
    speaker_acc, _ = fit_config(0, ["--data.options", '{"holdout_speaker": "theo"}', *args.extra],
                                runs / "speaker-theo")
    mfcc_acc = mfcc_logreg(data)
    frozen_acc = frozen_logreg(data)

    result = {
        "xmodal_acc_mean": statistics.mean(accs),
        "xmodal_acc_std": statistics.stdev(accs) if len(accs) > 1 else 0.0,
        "xmodal_acc_per_seed": accs,
        "mfcc_logreg_acc": mfcc_acc,
        "frozen_logreg_acc": frozen_acc,
        "speaker_independent_acc": speaker_acc,
        "fit_seconds": statistics.mean(seconds),
        "seeds": args.seeds,
        "extra_overrides": args.extra,
        "machine": f"{os.cpu_count()} CPU cores" + (
            f", {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ""),
    }
    rows = [
        ("xmodal configs/fsdd.yaml", f"{result['xmodal_acc_mean']:.4f} ± {result['xmodal_acc_std']:.4f}"),
        ("MFCC mean/std + logistic regression", f"{mfcc_acc:.4f}"),
        ("frozen backbone features + logistic regression", f"{frozen_acc:.4f}"),
        ("xmodal speaker-independent (test on theo)", f"{speaker_acc:.4f}"),
        ("xmodal fit seconds (mean per seed)", f"{result['fit_seconds']:.0f}"),
    ]
    width = max(len(r[0]) for r in rows)
    print(f"\nFSDD official split (test = recording index 0-4, {len(data.prepare_spec().test)} clips)")
    for name, value in rows:
        print(f"  {name:<{width}}  {value}")
    out = REPO / "bench" / "results" / "fsdd.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
