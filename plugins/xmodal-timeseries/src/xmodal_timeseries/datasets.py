"""UCR/UEA data sets in ``.ts`` format with their official train/test splits."""

from __future__ import annotations

from pathlib import Path

from xmodal.data import DatasetSpec, Item
from xmodal.errors import ConfigError

from xmodal_timeseries.tsfile import read_ts

#: Data sets registered under their own lower-case name (any other: ``ucr --data.options``).
NAMED = ("ArrowHead", "OSULeaf")


def ucr(root: Path | None, name: str = "ArrowHead", folder: str | None = None) -> DatasetSpec:
    """A UCR archive data set: ``<root>/ucr/<name>/<name>_{TRAIN,TEST}.ts``.

    Args:
        root: the data root (``--data.root`` or ``$XMODAL_DATA``).
        name: the data set's archive name, e.g. ``ArrowHead``.
        folder: a folder holding the two ``.ts`` files directly (overrides ``root``).
    """
    base = Path(folder) if folder else (Path(root) / "ucr" / name if root is not None else None)
    if base is None:
        raise ConfigError(f"UCR data set {name}: set XMODAL_DATA (or --data.root) to a folder "
                          f"that holds ucr/{name}/{name}_TRAIN.ts")
    files = {split: base / f"{name}_{split.upper()}.ts" for split in ("train", "test")}
    missing = [str(p) for p in files.values() if not p.is_file()]
    if missing:
        raise ConfigError(f"UCR data set {name}: missing {', '.join(missing)}")
    parsed = {split: read_ts(path) for split, path in files.items()}
    classes = parsed["train"].class_labels or sorted(
        {label for ts in parsed.values() for label in ts.labels}, key=_label_order)
    index = {label: i for i, label in enumerate(classes)}
    splits: dict[str, list[Item]] = {}
    bad = []
    for split, ts in parsed.items():
        bad.extend(ts.bad)
        items = []
        for series, label, line in zip(ts.series, ts.labels, ts.lines):
            if label not in index:
                raise ConfigError(f"{ts.path}:{line}: label {label!r} is not declared "
                                  f"in @classLabel ({' '.join(classes)})")
            items.append(Item(series, index[label], f"{ts.path.name}:{line}"))
        splits[split] = items
    return DatasetSpec(classes=list(classes), train=splits["train"], val=None, test=splits["test"],
                       modality="timeseries", bad=bad,
                       description=f"UCR {name} (official train/test split)")


def named(name: str):  # type: ignore[no-untyped-def]
    """A factory for one fixed UCR data set, e.g. ``arrowhead``."""

    def factory(root: Path | None, folder: str | None = None) -> DatasetSpec:
        return ucr(root, name=name, folder=folder)

    factory.__doc__ = f"UCR {name} with its official split (``ucr`` with name={name})."
    return factory


def _label_order(label: str) -> tuple[int, float | str]:
    try:
        return (0, float(label))
    except ValueError:
        return (1, label)
