"""Which inputs to embed or index: files and folders, a data set split, or a CSV manifest."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from xmodal.data.spec import Item
from xmodal.errors import ConfigError

SPLITS = ("train", "val", "test", "all")


@dataclass
class Sources:
    """Items to process, their class names and the data set's adapter defaults."""

    items: list[Item]
    class_names: list[str] = field(default_factory=list)
    adapter_defaults: dict[str, Any] = field(default_factory=dict)
    modality: str = ""
    split: str | None = None


def from_paths(paths: Sequence[str | Path]) -> Sources:
    """Files, and every non-hidden file under the given folders (sorted), unlabelled."""
    items: list[Item] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
            items.extend(Item(str(p), None, str(p)) for p in files)
        elif path.is_file():
            items.append(Item(str(path), None, str(path)))
        else:
            raise ConfigError(f"input {path} does not exist")
    if not items:
        raise ConfigError("no input files given")
    return Sources(items)


def from_dataset(dataset: str | None = None, split: str = "test", modality: str | None = None,
                 root: str | None = None, manifest: str | None = None,
                 options: dict[str, Any] | None = None) -> Sources:
    """One split (or ``all``) of a registered data set, a ``folder`` or a CSV manifest.

    ``val`` of a data set without its own validation split is the DataModule's seeded
    hold-out of ``train`` (and ``train`` the rest), exactly as in training.
    """
    from xmodal.data import XModalDataModule

    if split not in SPLITS:
        raise ConfigError(f"split must be one of {', '.join(SPLITS)}, not {split!r}")
    data = XModalDataModule(dataset=dataset, modality=modality, root=root, manifest=manifest,
                            options=options, num_workers=0)
    spec = data.prepare_spec()
    wanted = ["train", "val", "test"] if split == "all" else [split]
    items: list[Item] = []
    for name in wanted:
        if name == "test" and spec.test is None:
            if split == "all":
                continue
        items.extend(data.split_items(name))
    return Sources(items, list(spec.classes), dict(spec.adapter_defaults),
                   data.adapter.name if data.adapter else (modality or spec.modality), split)
