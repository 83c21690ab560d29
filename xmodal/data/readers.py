"""Generic readers: folder-per-class trees and CSV manifests (path,label)."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Iterable

from xmodal.data.spec import DatasetSpec, Item
from xmodal.errors import BadInputError, ConfigError
from xmodal.data.paths import inside

SPLIT_NAMES = ("train", "val", "test")


def _class_folders(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def _files(folder: Path) -> Iterable[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))


def read_folder(root: str | Path, modality: str = "") -> DatasetSpec:
    """``root/CLASS/*`` or ``root/{train,val,test}/CLASS/*`` -> DatasetSpec.

    Every file is listed; files an adapter cannot read are reported by the scan,
    under the ``on_bad_file`` policy, never silently dropped here.
    """
    root = Path(root)
    if not root.is_dir():
        raise ConfigError(f"data folder {root} does not exist")
    split_dirs = {name: root / name for name in SPLIT_NAMES if (root / name).is_dir()}
    layout = split_dirs or {"train": root}
    classes = sorted({c.name for folder in layout.values() for c in _class_folders(folder)})
    if not classes:
        raise ConfigError(f"no class folders under {root} (expected {root}/CLASS/file)")
    index = {name: i for i, name in enumerate(classes)}
    splits: dict[str, list[Item]] = {}
    for split, folder in layout.items():
        splits[split] = [
            Item(str(path), index[class_dir.name], str(path))
            for class_dir in _class_folders(folder)
            for path in _files(class_dir)
        ]
    return DatasetSpec(classes, splits["train"], splits.get("val"), splits.get("test"), modality)


def read_manifest(
    manifest: str | Path,
    path_column: str = "path",
    label_column: str = "label",
    split_column: str = "split",
    root: str | Path | None = None,
    modality: str = "",
) -> DatasetSpec:
    """CSV with ``path,label`` (and optional ``split``) columns -> DatasetSpec.

    Relative paths are resolved against ``root`` (default: the manifest's folder) and
    may not escape it (``../../etc/passwd`` is reported as a bad row).
    """
    manifest = Path(manifest)
    if not manifest.is_file():
        raise ConfigError(f"manifest {manifest} not found")
    base = Path(root) if root else manifest.parent
    try:
        with manifest.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            columns = reader.fieldnames or []
            for column in (path_column, label_column):
                if column not in columns:
                    raise ConfigError(
                        f"{manifest}: no column {column!r}; columns are {', '.join(columns) or 'none'}"
                    )
            rows = list(reader)
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{manifest}: not UTF-8 text (byte {exc.start}); save it as UTF-8") from None
    except csv.Error as exc:
        raise ConfigError(f"{manifest}: not a readable CSV file ({exc})") from None
    has_split = split_column in columns

    def split_of(row: dict) -> str:
        return (row.get(split_column) or "train").strip() if has_split else "train"

    def label_of(row: dict) -> str:
        return (row.get(label_column) or "").strip()

    # classes come from the training rows: a label seen only at val/test time has
    # nothing to learn from and is reported as a bad row, not made a dead class
    train_labels = {label_of(row) for row in rows if split_of(row) == "train" and label_of(row)}
    classes = sorted(train_labels or {label_of(row) for row in rows if label_of(row)})
    index = {name: i for i, name in enumerate(classes)}
    splits: dict[str, list[Item]] = {name: [] for name in SPLIT_NAMES}
    bad: list[BadInputError] = []
    seen: set[Path] = set()
    for number, row in enumerate(rows, start=2):  # line 1 is the header
        where = f"{manifest}:{number}"
        raw = (row.get(path_column) or "").strip()
        path = Path(raw) if Path(raw).is_absolute() else base / raw
        if not raw:
            bad.append(BadInputError(where, "empty path"))
            continue
        if not Path(raw).is_absolute() and not inside(path, base):
            bad.append(BadInputError(where, f"path {raw!r} escapes the data root {base}"))
            continue
        if path.resolve() in seen:
            bad.append(BadInputError(where, f"duplicate path {raw!r}"))
            continue
        seen.add(path.resolve())
        split = split_of(row)
        if split not in splits:
            bad.append(BadInputError(where, f"unknown split {split!r} (train, val or test)"))
            continue
        label = label_of(row)
        if not label:
            bad.append(BadInputError(where, "empty label"))
            continue
        if label not in index:
            bad.append(BadInputError(where, f"label {label!r} does not occur in the training rows "
                                            f"(known: {', '.join(classes)})"))
            continue
        splits[split].append(Item(str(path), index[label], str(path)))
    return DatasetSpec(classes, splits["train"], splits["val"] or None, splits["test"] or None,
                       modality, bad=bad)
