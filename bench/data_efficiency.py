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
from strategies import ADVISED  # noqa: E402

HERE = Path(__file__).resolve().parent / "results"
RESULTS = HERE / "data_efficiency.json"
PLOT = HERE / "data_efficiency.png"
STRATEGIES = HERE / "strategies.json"
SIZES = (5, 10, 25, 50, None)


def best_strategy(dataset: str) -> tuple[str, dict]:
    """The best pretrained strategy of ``bench/strategies.py`` on ``dataset`` and its arguments.

    The ``advised`` row of that bench trains advise's pick with advise's arguments
    (e.g. ``cut_at`` with ``cut_stage: 4``); when it is the best row, that pick is used.
    """
    if STRATEGIES.is_file():
        result = json.loads(STRATEGIES.read_text())
        rows = [r for r in result["rows"] if r["dataset"] == dataset and r["strategy"] != "scratch"]
        if rows:
            best = max(rows, key=lambda r: r["acc_mean"])["strategy"]
            if best == ADVISED:
                picked = result["advice"][dataset]
                return picked["strategy"], dict(picked.get("args", {}))
            return best, {}
    return "freeze_k", {}


def label(strategy: str, args: dict) -> str:
    """``cut_at(cut_stage=4, freeze=3)``: a strategy with non-default arguments, as a row name."""
    return strategy if not args else f"{strategy}({', '.join(f'{k}={v}' for k, v in args.items())})"


def verdict(rows: list, primary: dict[str, str] | None = None) -> dict:
    """Per data set and pretrained row name: does it beat scratch at every size <= 50?

    ``primary`` names, per data set, the pretrained row the acceptance is judged on (the
    best strategy of ``bench/strategies.py``); other pretrained rows are listed too.
    """
    out = {}
    for dataset in sorted({r["dataset"] for r in rows}):
        mine = [r for r in rows if r["dataset"] == dataset]
        names = list(dict.fromkeys(r["strategy"] for r in mine if r["strategy"] != "scratch"))
        per_name = {}
        for name in names:
            sizes = {}
            for size in SIZES:
                pre = [r for r in mine if r["per_class"] == size and r["strategy"] == name]
                scr = [r for r in mine if r["per_class"] == size and r["strategy"] == "scratch"]
                if pre and scr:
                    sizes[str(size or "all")] = {"pretrained": pre[0]["acc_mean"], "scratch": scr[0]["acc_mean"],
                                                 "pretrained_wins": pre[0]["acc_mean"] > scr[0]["acc_mean"]}
            small = [v["pretrained_wins"] for k, v in sizes.items() if k != "all"]
            per_name[name] = {"sizes": sizes, "wins_at_every_size_up_to_50": bool(small) and all(small),
                              "sizes_up_to_50_measured": len(small)}
        if not per_name:
            continue
        main = (primary or {}).get(dataset)
        main = main if main in per_name else names[-1]
        out[dataset] = {"strategy": main, **per_name[main], "all_pretrained": per_name}
    return out


def save(path: Path, runs: list, settings: dict, primary: dict[str, str]) -> dict:
    rows = aggregate(runs)
    result = {"rows": rows, "runs": runs, "settings": settings, "verdict": verdict(rows, primary)}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2))
    return result


def print_table(result: dict) -> None:
    print("\ntest accuracy, mean over seeds (train seconds per run)")
    print(f"{'dataset':<13}{'per class':>10}{'pretrained':>40}{'scratch':>22}")
    for dataset, info in result["verdict"].items():
        for name, judged in info["all_pretrained"].items():
            for size in judged["sizes"]:
                pre = next(r for r in result["rows"] if r["dataset"] == dataset and r["strategy"] == name
                           and str(r["per_class"] or "all") == size)
                scr = next(r for r in result["rows"] if r["dataset"] == dataset
                           and str(r["per_class"] or "all") == size and r["strategy"] == "scratch")
                print(f"{dataset:<13}{size:>10}{name:>32} {pre['acc_mean']:.3f} ({pre['train_seconds']:>4.0f}s)"
                      f"{scr['acc_mean']:>13.3f} ({scr['train_seconds']:>4.0f}s)  n{len(pre['seeds'])}/{len(scr['seeds'])}")
            print(f"{dataset} {name}: pretrained wins at every size <= 50: "
                  f"{judged['wins_at_every_size_up_to_50']} ({judged['sizes_up_to_50_measured']} sizes measured)"
                  + ("  <- judged (best strategy)" if name == info["strategy"] else ""))
    print("settings:", json.dumps(result["settings"]))


def plot(result: dict, path: Path) -> Path:
    """Accuracy vs examples per class, one panel per data set (matplotlib)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets = list(result["verdict"])
    fig, axes = plt.subplots(1, max(1, len(datasets)), figsize=(max(7, 5 * len(datasets)), 4), squeeze=False)
    for ax, dataset in zip(axes[0], datasets):
        names = [*result["verdict"][dataset]["all_pretrained"], "scratch"]
        for name, style in zip(names, [*["o-", "^-", "v-", "D-"][:len(names) - 1], "s--"]):
            rows = [r for r in result["rows"] if r["dataset"] == dataset and r["strategy"] == name]
            rows.sort(key=lambda r: r["per_class"] if r["per_class"] is not None else 10**6)
            labels = [str(r["per_class"] or "all") for r in rows]
            name = name if name == "scratch" else f"pretrained: {name}"
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
    parser.add_argument("--strategy-args", type=json.loads, default={},
                        help='its arguments as JSON, e.g. \'{"cut_stage": 4, "freeze": 3}\'')
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
    previous = json.loads(args.out.read_text()) if args.out.is_file() else {}
    # the judged pretrained row per data set: this run's picks, else those of the saved run
    primary = {k: v["strategy"] for k, v in previous.get("verdict", {}).items() if "strategy" in v}
    if args.print_only:  # keep the settings the runs were measured with
        settings = previous.get("settings", settings)
    if not args.print_only:
        picks = {d: (args.strategy, args.strategy_args) if args.strategy else best_strategy(d)
                 for d in args.datasets}
        primary.update({d: label(*pick) for d, pick in picks.items()})
        for seed in args.seeds:
            for size in sizes:
                for dataset in args.datasets:
                    for strategy, strategy_args in (picks[dataset], ("scratch", {})):
                        name = label(strategy, strategy_args)
                        if any(r["dataset"] == dataset and r["strategy"] == name and r["seed"] == seed
                               and r["per_class"] == size for r in runs):
                            continue
                        started = time.strftime("%H:%M:%S")
                        run = fit_once(dataset, strategy, size, seed, args.epochs, max_steps=args.max_steps,
                                       patience=args.patience, **strategy_args)
                        run.update(strategy=name, strategy_args=strategy_args)
                        runs.append(run)
                        print(f"[{started}] {dataset:<12} {str(size or 'all'):>4}/class {name:<13} seed {seed}: "
                              f"acc {run['acc']:.3f} in {run['train_seconds']:.0f}s", flush=True)
                        result = save(args.out, runs, settings, primary)
                        plot(result, plot_path)
    result = save(args.out, runs, settings, primary)
    print_table(result)
    print("plot:", plot(result, plot_path))


if __name__ == "__main__":
    main()
