"""Data efficiency: pretrained (best strategy) vs scratch at 5, 10, 25, 50 per class and all.

Acceptance (issue 6): on FSDD and hymenoptera the pretrained model beats the same
architecture trained from scratch at every size up to 50 examples per class, with the
same budget (the same number of optimizer steps for both, ``--max-steps``).

The pretrained strategy is the best one ``bench/strategies.py`` measured on the data
set (``--strategy`` overrides it). Settings as in ``bench/_fit.py``: small inputs,
10 validation items per class held out of train for early stopping and best-epoch
rollback, at most 150 test items per class, one thread.

Usage::

    XMODAL_DATA=../shared/data nice -n 10 .venv/bin/python bench/data_efficiency.py
    ... bench/data_efficiency.py --datasets hymenoptera --seeds 0   # smaller

Writes ``bench/results/data_efficiency.json`` (``rows``: ``dataset``, ``strategy``,
``per_class`` (``null`` = all), ``acc_mean``, ``train_seconds``; ``runs``; ``settings``;
``verdict``) and ``bench/results/data_efficiency.png`` (with ``--out X.json``: ``X.png``
beside it); resumes an interrupted run.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _fit import INPUTS, TEST_PER_CLASS, VAL_PER_CLASS, aggregate, fit_once, load_runs  # noqa: E402

HERE = Path(__file__).resolve().parent / "results"
RESULTS = HERE / "data_efficiency.json"
PLOT = HERE / "data_efficiency.png"
STRATEGIES = HERE / "strategies.json"
SIZES = (5, 10, 25, 50, None)


def best_strategy(dataset: str) -> str:
    """The best pretrained strategy of ``bench/strategies.py`` on ``dataset`` (not scratch)."""
    if STRATEGIES.is_file():
        rows = [r for r in json.loads(STRATEGIES.read_text())["rows"]
                if r["dataset"] == dataset and r["strategy"] != "scratch"]
        if rows:
            return max(rows, key=lambda r: r["acc_mean"])["strategy"]
    return "freeze_k"


def verdict(rows: list) -> dict:
    out = {}
    for dataset in sorted({r["dataset"] for r in rows}):
        sizes = {}
        for size in SIZES:
            pre = [r for r in rows if r["dataset"] == dataset and r["per_class"] == size and r["strategy"] != "scratch"]
            scr = [r for r in rows if r["dataset"] == dataset and r["per_class"] == size and r["strategy"] == "scratch"]
            if pre and scr:
                sizes[str(size or "all")] = {"pretrained": pre[0]["acc_mean"], "scratch": scr[0]["acc_mean"],
                                             "pretrained_wins": pre[0]["acc_mean"] > scr[0]["acc_mean"]}
        small = [v["pretrained_wins"] for k, v in sizes.items() if k != "all"]
        out[dataset] = {"sizes": sizes, "wins_at_every_size_up_to_50": bool(small) and all(small),
                        "sizes_up_to_50_measured": len(small)}
    return out


def save(path: Path, runs: list, settings: dict) -> dict:
    rows = aggregate(runs)
    result = {"rows": rows, "runs": runs, "settings": settings, "verdict": verdict(rows)}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2))
    return result


def print_table(result: dict) -> None:
    print("\ntest accuracy, mean over seeds (train seconds per run)")
    print(f"{'dataset':<13}{'per class':>10}{'pretrained':>28}{'scratch':>22}")
    for dataset, info in result["verdict"].items():
        for size, v in info["sizes"].items():
            pre = next(r for r in result["rows"] if r["dataset"] == dataset and str(r["per_class"] or "all") == size
                       and r["strategy"] != "scratch")
            scr = next(r for r in result["rows"] if r["dataset"] == dataset and str(r["per_class"] or "all") == size
                       and r["strategy"] == "scratch")
            print(f"{dataset:<13}{size:>10}{pre['strategy']:>14} {pre['acc_mean']:.3f} ({pre['train_seconds']:>4.0f}s)"
                  f"{scr['acc_mean']:>13.3f} ({scr['train_seconds']:>4.0f}s)  n{len(pre['seeds'])}/{len(scr['seeds'])}")
        print(f"{dataset}: pretrained wins at every size <= 50: {info['wins_at_every_size_up_to_50']} "
              f"({info['sizes_up_to_50_measured']} sizes measured)")
    print("settings:", json.dumps(result["settings"]))


def plot(result: dict, path: Path) -> Path:
    """Accuracy vs examples per class, one panel per data set (matplotlib)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets = list(result["verdict"])
    fig, axes = plt.subplots(1, max(1, len(datasets)), figsize=(max(7, 5 * len(datasets)), 4), squeeze=False)
    for ax, dataset in zip(axes[0], datasets):
        for kind, style in (("pretrained", "o-"), ("scratch", "s--")):
            rows = [r for r in result["rows"] if r["dataset"] == dataset
                    and ((r["strategy"] == "scratch") == (kind == "scratch"))]
            rows.sort(key=lambda r: r["per_class"] if r["per_class"] is not None else 10**6)
            labels = [str(r["per_class"] or "all") for r in rows]
            name = kind if kind == "scratch" or not rows else f"pretrained ({rows[0]['strategy']})"
            ax.errorbar(range(len(rows)), [r["acc_mean"] for r in rows], yerr=[r["acc_std"] for r in rows],
                        fmt=style, capsize=3, label=name)
            ax.set_xticks(range(len(rows)), labels)
        ax.set_title(dataset)
        ax.set_xlabel("training examples per class")
        ax.set_ylabel("test accuracy")
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle("pretrained vs scratch, same step budget")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["fsdd", "hymenoptera"])
    parser.add_argument("--sizes", nargs="+", default=["5", "10", "25", "50", "all"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--strategy", help="pretrained strategy (default: best of strategies.json)")
    parser.add_argument("--epochs", type=int, default=100, help="epoch cap (the step budget binds first)")
    parser.add_argument("--max-steps", type=int, default=150, help="optimizer steps per run: the budget")
    parser.add_argument("--patience", type=int, default=6, help="early-stopping patience (epochs)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--print-only", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    runs = load_runs(args.out)
    plot_path = PLOT if args.out == RESULTS else args.out.with_suffix(".png")  # beside the JSON
    sizes = [None if s == "all" else int(s) for s in args.sizes]
    settings = {"epochs_cap": args.epochs, "max_steps": args.max_steps, "early_stopping_patience": args.patience,
                "val_per_class": VAL_PER_CLASS, "test_per_class_max": TEST_PER_CLASS, "lr": 5e-3,
                "backbone_lr_scale": 0.2, "batch_size": 16, "backbone": "tf_efficientnet_lite0",
                "threads": args.threads, "inputs": INPUTS}
    if args.print_only and args.out.is_file():  # keep the settings the runs were measured with
        settings = json.loads(args.out.read_text()).get("settings", settings)
    if not args.print_only:
        for seed in args.seeds:
            for size in sizes:
                for dataset in args.datasets:
                    pretrained = args.strategy or best_strategy(dataset)
                    for strategy in (pretrained, "scratch"):
                        if any(r["dataset"] == dataset and r["strategy"] == strategy and r["seed"] == seed
                               and r["per_class"] == size for r in runs):
                            continue
                        started = time.strftime("%H:%M:%S")
                        run = fit_once(dataset, strategy, size, seed, args.epochs, max_steps=args.max_steps,
                                       patience=args.patience)
                        runs.append(run)
                        print(f"[{started}] {dataset:<12} {str(size or 'all'):>4}/class {strategy:<13} seed {seed}: "
                              f"acc {run['acc']:.3f} in {run['train_seconds']:.0f}s", flush=True)
                        result = save(args.out, runs, settings)
                        plot(result, plot_path)
    result = save(args.out, runs, settings)
    print_table(result)
    print("plot:", plot(result, plot_path))


if __name__ == "__main__":
    main()
