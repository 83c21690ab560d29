"""``xmodal check-data``: decode every input of a data set once, report the bad ones.

Takes the same ``--config`` as ``xmodal fit`` (only its ``data:`` section is read) and
the same ``--data.*`` options, decodes all splits (train, val, test and
``--data.predict_root``) with the modality adapter, and prints the report a
``fit --data.on_bad_file skip`` run would give: one line per bad input (file,
modality, reason), ``bad_files.csv`` and a count. Nothing is trained or cached.

Exit status: 0 when every input is usable, 1 when some are not, 2 on a config error.

Examples:
    xmodal check-data --config configs/fsdd.yaml
    xmodal check-data --data.dataset folder --data.root my_clips --data.modality audio
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import yaml

from xmodal.data.scan import BadFiles, scan
from xmodal.data.spec import Item
from xmodal.errors import BadInputError, ConfigError


def _data_section(config_path: str) -> dict[str, Any]:
    """The ``data:`` mapping of a fit config, read with YAML's safe loader."""
    path = Path(config_path)
    if not path.is_file():
        raise ConfigError(f"config {path} not found")
    try:
        config = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:  # includes !!python/object tags: never constructed
        first = str(exc).strip().splitlines()[0]
        raise ConfigError(f"{path}: not a plain YAML config ({first})") from None
    if not isinstance(config, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    data = config.get("data") or {}
    if isinstance(data, dict) and "init_args" in data:  # class_path / init_args form
        data = data["init_args"] or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: 'data' must be a mapping")
    return data


def _parse(argv: list[str]) -> Any:
    from jsonargparse import ArgumentParser

    from xmodal.data.datamodule import XModalDataModule

    parser = ArgumentParser(prog="xmodal check-data", description=__doc__, exit_on_error=False)
    parser.add_argument("--config", action="append", default=[],
                        help="an xmodal fit config (YAML); its data: section is used")
    parser.add_class_arguments(XModalDataModule, "data", instantiate=False)
    parser.add_argument("--output", default=".", help="folder for bad_files.csv")
    argv = list(argv)
    configs, rest = [], []
    iterator = iter(argv)
    for arg in iterator:  # --config files are merged here, safely, before the overrides
        if arg == "--config":
            configs.append(next(iterator, ""))
        elif arg.startswith("--config="):
            configs.append(arg.split("=", 1)[1])
        elif arg == "--modality":
            rest += ["--data.modality", next(iterator, "")]
        else:
            rest.append(arg)
    merged: dict[str, Any] = {}
    for config in configs:
        merged.update(_data_section(config))
    prefix = ["--data", json.dumps(merged)] if merged else []
    try:
        return parser.parse_args(prefix + rest)
    except Exception as exc:  # jsonargparse's ArgumentError and friends
        raise ConfigError(" ".join(str(exc).split())[:500]) from None


def split_items(data: Any) -> dict[str, list[Item]]:
    """Every item of every split, before any subsetting (``per_class``)."""
    spec = data.prepare_spec()
    splits: dict[str, list[Item]] = {"train": list(spec.train)}
    if spec.val:
        splits["val"] = list(spec.val)
    if spec.test:
        splits["test"] = list(spec.test)
    if data.hparams.predict_root:
        splits["predict"] = data.split_items("predict")
    return splits


def check(data: Any, report: BadFiles) -> dict[str, tuple[int, int]]:
    """Decode every input of ``data`` (an XModalDataModule); ``split -> (good, bad)``."""
    spec = data.prepare_spec()
    for error in spec.bad:  # rows the reader already refused (manifest paths, duplicates)
        report.add(error if isinstance(error, BadInputError) else BadInputError("?", str(error)))
    counts = {}
    for split, items in split_items(data).items():
        before = len(report.rows)
        result = scan(items, data.adapter, "skip", report, data.num_workers, cache_dir=None, keep=False)
        counts[split] = (len(result.items), len(report.rows) - before)
    return counts


def main(argv: list[str]) -> int:
    from xmodal.data.datamodule import XModalDataModule

    args = _parse(argv)
    options = {key: value for key, value in vars(args.data).items() if not key.startswith("__")}
    data = XModalDataModule(**options)
    report = BadFiles()
    counts = check(data, report)
    modality = data.adapter.name
    print(f"data set: {data._dataset_name()} ({modality})")
    for split, (good, bad) in counts.items():
        print(f"  {split:<8} {good:>7} usable  {bad:>5} bad")
    listing = len(data.prepare_spec().bad)
    if listing:
        print(f"  {'listing':<8} {'':>7}         {listing:>5} bad rows")
    for source, reason in report.rows:
        print(f"xmodal: bad input: {source} ({modality}): {reason}", file=sys.stderr)
    if not report.rows:
        print("all inputs are usable")
        return 0
    path = report.write(Path(args.output) / "bad_files.csv")
    print(f"xmodal: {len(report.rows)} bad input(s); list in {path}", file=sys.stderr)
    return 1
