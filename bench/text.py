"""Text benchmark: rendered-text xmodal vs a char 1-4-gram TF-IDF + logistic regression.

On ``sms_spam`` and ``chnsenticorp`` with the built-in split (data row index % 5 == 0 is
test), prints per data set: test accuracy and macro-F1 of xmodal (mean over seeds) and
of the baseline, the spam F1 on SMS, and the accuracy drop of both models on a
perturbed copy of the test set (10 % of characters swapped with a neighbour, dropped,
or replaced by a look-alike: Latin a/e/o/p/c -> Cyrillic а/е/о/р/с, 0 <-> O, ...).
Also measures render throughput cold (Pillow) and cached (the decode cache).
Writes ``bench/results/text.json``.

Each data set trains as its shipped config says (``configs/NAME.yaml``: adapter,
strategy, epochs, learning rate; the *recipe*, saved with the results), so
``xmodal fit --config configs/NAME.yaml`` gives the measured model; flags override it.

Usage::

    XMODAL_DATA=../shared/data nice -n 10 python bench/text.py [--seeds 0 1 2]
        [--datasets sms_spam chnsenticorp] [--max-epochs N] [--strategy S] [--adapter JSON]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from xmodal import plugins  # noqa: E402
from xmodal.adapters import create_adapter  # noqa: E402
from xmodal.data import XModalDataModule, data_root  # noqa: E402
from xmodal.data.scan import BadFiles, scan  # noqa: E402

#: Look-alikes: Latin -> Cyrillic/Greek homoglyphs, digits <-> letters, and a few
#: Chinese characters that differ by one stroke.
LOOKALIKES = {
    "a": "а", "e": "е", "o": "о", "p": "р", "c": "с", "x": "х", "y": "у", "i": "і",
    "A": "А", "B": "В", "C": "С", "E": "Е", "H": "Н", "K": "К", "M": "М", "O": "0",
    "P": "Р", "T": "Т", "X": "Х", "0": "O", "1": "l", "l": "1", "s": "ѕ", "S": "Ѕ",
    "己": "已", "已": "己", "未": "末", "末": "未", "土": "士", "士": "土", "日": "曰",
    "人": "入", "入": "人", "大": "太", "太": "大", "天": "夭", "干": "千", "千": "干",
    "处": "外", "很": "狠", "好": "妤", "问": "间", "间": "问", "木": "本", "本": "木",
}


def perturb(text: str, rng: random.Random, rate: float = 0.1) -> str:
    """Perturb ``rate`` of the non-space characters: swap, drop or look-alike."""
    chars = list(text)
    positions = [i for i, ch in enumerate(chars) if not ch.isspace()]
    count = max(1, round(len(positions) * rate)) if positions else 0
    for index in sorted(rng.sample(positions, count), reverse=True):
        if index >= len(chars):
            continue
        ops = ["swap", "drop"] + (["lookalike"] * 2 if chars[index] in LOOKALIKES else [])
        op = rng.choice(ops)
        if op == "lookalike":
            chars[index] = LOOKALIKES[chars[index]]
        elif op == "drop":
            del chars[index]
        elif index + 1 < len(chars):
            chars[index], chars[index + 1] = chars[index + 1], chars[index]
    return "".join(chars)


def metrics(truth: list[int], pred: list[int], positive: int | None = None) -> dict[str, float]:
    from sklearn.metrics import accuracy_score, f1_score

    out = {"acc": float(accuracy_score(truth, pred)),
           "macro_f1": float(f1_score(truth, pred, average="macro"))}
    if positive is not None:
        out["pos_f1"] = float(f1_score(truth, pred, pos_label=positive, average="binary"))
    return out


def tfidf_baseline(train_texts, train_labels, test_texts, perturbed_sets):  # type: ignore[no-untyped-def]
    """Char 1-4-gram TF-IDF (sublinear tf) + logistic regression (C=10): predictions on
    the test set and on each perturbed copy of it."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    model = make_pipeline(
        TfidfVectorizer(analyzer="char", ngram_range=(1, 4), sublinear_tf=True, min_df=2),
        LogisticRegression(C=10.0, max_iter=3000),
    )
    model.fit(train_texts, train_labels)
    return model.predict(test_texts).tolist(), [model.predict(p).tolist() for p in perturbed_sets]


@torch.no_grad()
def predict(model, adapter, texts: list[str], batch_size: int = 128) -> list[int]:  # type: ignore[no-untyped-def]
    """Predicted class per text; batches of like-length texts (glyph sequences are cut at
    a batch's longest text, so this is several times faster and gives the same answers)."""
    model.eval()
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    out = [0] * len(texts)
    for start in range(0, len(texts), batch_size):
        chunk = order[start:start + batch_size]
        batch = torch.stack([adapter.decode(texts[i]) for i in chunk])
        for i, label in zip(chunk, model(batch).argmax(-1).tolist()):
            out[i] = label
    return out


#: Model settings a recipe may set (``model.init_args`` of the config).
RECIPE_MODEL_KEYS = ("backbone", "strategy", "freeze", "lr", "weight_decay", "scheduler",
                     "warmup_epochs", "sequence_hidden", "glyph_dropout", "char_embedding", "pair_embedding",
                     "triple_embedding", "adversarial", "typo_noise", "gram_dropout", "typo_consistency",
                     "label_smoothing", "dropout")


def load_recipe(name: str, args: argparse.Namespace) -> dict:
    """What ``xmodal fit --config configs/NAME.yaml`` trains, with command-line overrides.

    The bench measures the shipped config, so a user running it gets the measured model.
    """
    import yaml

    path = args.config_dir / f"{name}.yaml"
    config = yaml.safe_load(path.read_text()) if path.is_file() else {}
    data, trainer = config.get("data", {}), config.get("trainer", {})
    init = config.get("model", {}).get("init_args", {})
    recipe = {"config": path.resolve().relative_to(REPO).as_posix() if path.is_file() else None,
              "adapter": {**(data.get("adapter") or {}), "augment": False},
              "batch_size": data.get("batch_size", 64),
              "group_by_length": bool(data.get("group_by_length", False)),
              **({"val_fraction": data["val_fraction"]} if "val_fraction" in data else {}),
              "max_epochs": trainer.get("max_epochs", 6),
              "model": {key: init[key] for key in RECIPE_MODEL_KEYS if key in init}}
    recipe["adapter"].update(args.adapter or {})
    for key, value in (("batch_size", args.batch_size), ("max_epochs", args.max_epochs),
                       ("group_by_length", args.group_by_length), ("val_fraction", args.val_fraction)):
        if value is not None:
            recipe[key] = value
    for key in RECIPE_MODEL_KEYS:  # those with a command-line flag
        value = getattr(args, key, None)
        if value is not None:
            recipe["model"][key] = int(value) if key == "freeze" and str(value).isdigit() else value
    return recipe


def train_xmodal(name: str, seed: int, recipe: dict, args: argparse.Namespace, workdir: Path):  # type: ignore[no-untyped-def]
    """Fit the classification task on ``name``'s train split; return (model, adapter, seconds)."""
    import pytorch_lightning as pl

    from xmodal.tasks.classification import ClassificationTask

    pl.seed_everything(seed, workers=True)
    data = XModalDataModule(dataset=name, modality="text", adapter=recipe["adapter"],
                            batch_size=recipe["batch_size"], on_bad_file="warn", seed=0,
                            group_by_length=recipe.get("group_by_length", False),
                            val_fraction=recipe.get("val_fraction", 0.1),
                            cache_dir=str(workdir / "decoded"), per_class=args.per_class)
    settings = {"pretrained": True, "weight_decay": 0.01, "scheduler": "cosine",
                "label_smoothing": 0.0, "dropout": 0.1, **recipe["model"]}
    model = ClassificationTask(**settings, feature_cache="auto", early_stopping_patience=None,
                               restore_best=True)
    trainer = pl.Trainer(max_epochs=recipe["max_epochs"], default_root_dir=str(workdir / "runs"),
                         enable_progress_bar=False, enable_model_summary=False, logger=False,
                         enable_checkpointing=False, deterministic=False, num_sanity_val_steps=0)
    start = time.perf_counter()
    trainer.fit(model, datamodule=data)
    return model, data.adapter, time.perf_counter() - start


def summarise(row: dict) -> None:
    """Means over the seeds of ``row["runs"]`` into the ``xmodal_*`` keys."""
    runs = sorted(row["runs"], key=lambda r: r["seed"])
    row["runs"] = runs
    if not runs:
        return
    row.update({
        "xmodal_acc": statistics.mean(r["acc"] for r in runs),
        "xmodal_macro_f1": statistics.mean(r["macro_f1"] for r in runs),
        "xmodal_drop": statistics.mean(r["drop"] for r in runs),
        "xmodal_perturbed_acc": statistics.mean(r["perturbed_acc"] for r in runs),
        "seeds": [r["seed"] for r in runs],
    })
    if all("drops" in r for r in runs):
        row["xmodal_drop_draws_mean"] = statistics.mean(statistics.mean(r["drops"]) for r in runs)
    if all(r.get("spam_f1") is not None for r in runs):
        row["xmodal_spam_f1"] = statistics.mean(r["spam_f1"] for r in runs)


def merge(results: dict, others: list[Path], datasets: list[str]) -> None:
    """Take the xmodal runs of other result files (seeds or data sets run in parallel)."""
    for other in others:
        extra = json.loads(other.read_text())
        for name in datasets:
            if name not in extra:
                continue
            if name in results and extra[name].get("recipe") != results[name].get("recipe"):
                raise SystemExit(f"{other}: {name} measured with another recipe "
                                 f"({extra[name].get('recipe')} vs {results[name].get('recipe')})")
            if name not in results:
                results[name] = {**extra[name], "runs": []}
            seen = {r["seed"] for r in results[name]["runs"]}
            results[name]["runs"] += [r for r in extra[name]["runs"] if r["seed"] not in seen]
            summarise(results[name])


def _draws(drop: float | None, n_test: int) -> str:
    return "" if drop is None else f"{drop:.4f}/{drop * n_test:.1f}"


def print_table(results: dict, datasets: list[str], out: Path) -> None:
    """The results table. ``drop``: on the first perturbed copy of the test set (the one
    ``*_drop`` has always been); ``texts``: that drop as test texts (net, mean over
    seeds), which says whether two drops differ by more than rounding; ``all draws``:
    the drop (and texts) averaged over all the perturbed copies, which a single draw of
    the perturbation (a few texts either way) does not decide."""
    print()
    header = f"{'data set':<14}{'model':<8}{'acc':>8}{'macro-F1':>10}{'spam-F1':>9}{'pert. acc':>11}{'drop':>8}{'texts':>7}{'all draws':>13}"
    print(header)
    print("-" * len(header))
    for name in (d for d in datasets if d in results):
        row = results[name]
        for model in ("xmodal", "tfidf") if row["runs"] else ("tfidf",):
            spam = row.get(f"{model}_spam_f1")
            print(f"{name:<14}{model:<8}{row[f'{model}_acc']:>8.4f}{row[f'{model}_macro_f1']:>10.4f}"
                  f"{'' if spam is None else f'{spam:.4f}':>9}"
                  f"{row[f'{model}_perturbed_acc']:>11.4f}{row[f'{model}_drop']:>8.4f}"
                  f"{row[f'{model}_drop'] * row['n_test']:>7.1f}"
                  f"{_draws(row.get(f'{model}_drop_draws_mean'), row['n_test']):>13}")
        recipe = row.get("recipe")
        if recipe:
            print(f"{'':<14}recipe {recipe['config']}: layout {recipe['adapter'].get('layout', 'lines')}, "
                  + ", ".join(f"{k} {v}" for k, v in recipe["model"].items() if k in ("strategy", "freeze"))
                  + f", {recipe['max_epochs']} epochs")
        if row["runs"]:
            print(f"{'':<14}seeds {row['seeds']}: acc " + " / ".join(f"{r['acc']:.4f}" for r in row["runs"])
                  + ", drop " + " / ".join(f"{r['drop']:.4f}" for r in row["runs"]))
    print(f"\nrender ({results.get('render_layout', 'lines')}): {results['render_per_s_cold']:.0f} texts/s cold, "
          f"{results['render_per_s_cached']:.0f} texts/s cached; results in {out}")


def render_throughput(root: Path | None, count: int, workdir: Path, adapter_settings: dict) -> dict[str, float]:
    """Texts/s from text to what the network sees, cold (a fresh process: Pillow draws
    everything) and cached (the decode cache; ``glyphs``: glyphs already drawn).

    For ``lines``/``grid`` that is the page render; for ``glyphs`` the code-point decode
    plus the glyph images of each text through the :class:`GlyphAtlas`.
    """
    spec = plugins.datasets().get("sms_spam")(root)
    items = spec.train[:count]
    adapter = create_adapter({"modality": "text", **adapter_settings, "augment": False})
    atlas = adapter.device_transform({}) if adapter.sequence_input else None
    cache = workdir / "render-cache"

    def to_images(array: np.ndarray, batch: int = 64) -> None:
        for start in range(0, array.shape[0], batch):  # batches, as training sees them
            decoded = torch.from_numpy(np.array(array[start:start + batch]))
            if atlas is not None:
                atlas(torch.unique(decoded.long()))

    start = time.perf_counter()
    to_images(scan(items, adapter, "warn", BadFiles(), num_workers=0, cache_dir=cache).array)
    cold = len(items) / (time.perf_counter() - start)
    start = time.perf_counter()
    to_images(scan(items, adapter, "warn", BadFiles(), num_workers=0, cache_dir=cache).array)
    cached = len(items) / (time.perf_counter() - start)
    return {"render_per_s_cold": cold, "render_per_s_cached": cached, "render_count": len(items),
            "render_layout": adapter.layout}


def _flag(value: str) -> bool:
    """A true/false command-line value."""
    return value.lower() in ("1", "true", "yes")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["sms_spam", "chnsenticorp"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--config-dir", type=Path, default=REPO / "configs",
                        help="each data set trains as configs/NAME.yaml says (the recipe)")
    parser.add_argument("--max-epochs", type=int, default=None, help="override the recipe")
    parser.add_argument("--freeze", default=None, help="override: frozen backbone stages")
    parser.add_argument("--backbone", default=None, help="override the recipe")
    parser.add_argument("--strategy", default=None, help="override: fine-tuning strategy")
    parser.add_argument("--adapter", type=json.loads, default=None,
                        help='override text adapter settings, as JSON: {"layout": "grid"}')
    parser.add_argument("--sequence-hidden", type=int, default=None,
                        help="override: glyphs layout n-gram encoder width")
    parser.add_argument("--glyph-dropout", type=float, default=None,
                        help="override: glyphs layout, character positions blanked in training")
    parser.add_argument("--char-embedding", type=_flag,
                        default=None, help="override: a learned vector per seen character (glyphs)")
    parser.add_argument("--pair-embedding", type=_flag,
                        default=None, help="override: a learned vector per seen character pair (glyphs)")
    parser.add_argument("--triple-embedding", type=_flag,
                        default=None, help="override: a learned vector per seen run of three characters (glyphs)")
    parser.add_argument("--adversarial", type=float, default=None,
                        help="override: glyphs layout, adversarial move of the character vectors")
    parser.add_argument("--typo-noise", type=float, default=None,
                        help="override: glyphs layout, characters dropped or swapped in training")
    parser.add_argument("--gram-dropout", type=float, default=None,
                        help="override: glyphs layout, pair/triple vectors left out in training")
    parser.add_argument("--typo-consistency", type=float, default=None,
                        help="override: weight of the clean/typo'd agreement term (with --typo-noise)")
    parser.add_argument("--lr", type=float, default=None, help="override the recipe")
    parser.add_argument("--dropout", type=float, default=None, help="override: dropout before the head")
    parser.add_argument("--batch-size", type=int, default=None, help="override the recipe")
    parser.add_argument("--group-by-length", type=_flag,
                        default=None, help="override: like-length batches (true/false)")
    parser.add_argument("--val-fraction", type=float, default=None,
                        help="override: share of train held out for validation (0: none, last epoch kept)")
    parser.add_argument("--per-class", type=int, default=None, help="subsample train (smoke runs)")
    parser.add_argument("--perturb-draws", type=int, default=5,
                        help="perturbed copies of the test set (drop: the first; all draws: their mean)")
    parser.add_argument("--render-count", type=int, default=1000)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "text.json")
    parser.add_argument("--merge", nargs="+", type=Path, default=[],
                        help="with --print-only: add the runs of these result files (parallel runs)")
    parser.add_argument("--print-only", action="store_true", help="print (and merge into) the saved results")
    args = parser.parse_args()
    if args.print_only:
        results = json.loads(args.out.read_text())
        merge(results, args.merge, args.datasets)
        args.out.write_text(json.dumps(results, indent=2))
        print_table(results, args.datasets, args.out)
        return
    # OMP_NUM_THREADS (e.g. 1 under a CPU-slot wrapper or the docs test) wins over the default
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS") or max(1, min(4, os.cpu_count() or 1))))
    root = data_root()
    workdir = Path(tempfile.mkdtemp(prefix="xmodal-bench-text-"))
    results: dict = {"settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}}
    results["settings"]["cpu_threads"] = torch.get_num_threads()
    results["split"] = ("data row index % 5 == 0 is test, rest train (xmodal holds out the recipe's "
                        "val_fraction of train as val, 10 % unless it says; 0: none, last epoch kept)")

    results.update(render_throughput(root, args.render_count, workdir,
                                     load_recipe("sms_spam", args)["adapter"]))
    print(f"render throughput (sms_spam, {results['render_layout']}, {results['render_count']} texts): "
          f"cold {results['render_per_s_cold']:.0f}/s, cached {results['render_per_s_cached']:.0f}/s")

    prepared = {}
    for name in args.datasets:  # the baseline first: it is cheap and seed-free
        spec = plugins.datasets().get(name)(root)
        texts = [item.source for item in spec.test]
        truth = [item.label for item in spec.test]
        positive = spec.classes.index("spam") if "spam" in spec.classes else None
        perturbed_sets = []
        for draw in range(args.perturb_draws):  # draw 0: the copy the bench always used
            rng = random.Random(1234 + draw)
            perturbed_sets.append([perturb(t, rng) for t in texts])
        start = time.perf_counter()
        base_pred, base_perts = tfidf_baseline([i.source for i in spec.train],
                                               [i.label for i in spec.train], texts, perturbed_sets)
        base = metrics(truth, base_pred, positive)
        base_perturbed_accs = [metrics(truth, p)["acc"] for p in base_perts]
        base_drops = [base["acc"] - acc for acc in base_perturbed_accs]
        row = {"recipe": load_recipe(name, args), "tfidf_acc": base["acc"], "tfidf_macro_f1": base["macro_f1"],
               "tfidf_perturbed_acc": base_perturbed_accs[0], "tfidf_drop": base_drops[0],
               "tfidf_drops": base_drops, "tfidf_drop_draws_mean": statistics.mean(base_drops),
               "perturb_draws": args.perturb_draws,
               "tfidf_seconds": time.perf_counter() - start,
               "n_train": len(spec.train), "n_test": len(texts), "runs": []}
        if positive is not None:
            row["tfidf_spam_f1"] = base["pos_f1"]
        results[name] = row
        prepared[name] = (texts, truth, perturbed_sets, positive)
        print(f"{name}: tf-idf acc {base['acc']:.4f} macro-F1 {base['macro_f1']:.4f} "
              f"perturbed acc {base_perturbed_accs[0]:.4f}", flush=True)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2))  # a cut-short run keeps these

    for seed in args.seeds:  # seed-major: a cut-short run still covers every data set
        for name in args.datasets:
            texts, truth, perturbed_sets, positive = prepared[name]
            model, adapter, seconds = train_xmodal(name, seed, results[name]["recipe"], args, workdir)
            clean = metrics(truth, predict(model, adapter, texts), positive)
            perturbed_accs = [metrics(truth, predict(model, adapter, p))["acc"] for p in perturbed_sets]
            drops = [clean["acc"] - acc for acc in perturbed_accs]
            row = results[name]
            row["runs"].append({"seed": seed, "acc": clean["acc"], "macro_f1": clean["macro_f1"],
                                "spam_f1": clean.get("pos_f1"), "perturbed_acc": perturbed_accs[0],
                                "drop": drops[0], "drops": drops, "fit_seconds": seconds})
            summarise(row)
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(results, indent=2))
            print(f"  {name} seed {seed}: acc {clean['acc']:.4f} macro-F1 {clean['macro_f1']:.4f} "
                  f"perturbed acc {perturbed_accs[0]:.4f}, drop over {len(drops)} draws "
                  f"{statistics.mean(drops):.4f} ({seconds:.0f} s)", flush=True)

    print_table(results, args.datasets, args.out)


if __name__ == "__main__":
    main()
