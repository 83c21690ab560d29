"""What a data set factory returns: items per split, classes, default modality."""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Item:
    """One input: ``source`` is what the adapter decodes (a path, a text, an array).

    ``label`` is a class index (``None`` for unlabelled prediction inputs); ``name``
    identifies the item in reports (a path, or ``file.csv:row 12``).
    """

    source: Any
    label: int | None
    name: str
    group: str = ""  # e.g. the speaker, for group-aware splits


@dataclass
class DatasetSpec:
    """A data set as the DataModule sees it.

    ``val`` may be ``None``: the DataModule then splits ``val_fraction`` off ``train``
    (stratified, seeded). ``test`` may be ``None`` when there is no test split.
    """

    classes: list[str]
    train: list[Item]
    val: list[Item] | None = None
    test: list[Item] | None = None
    modality: str = ""
    adapter_defaults: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    #: rows or files found unusable while listing (e.g. manifest rows escaping the root)
    bad: list[Any] = field(default_factory=list)
    #: the bad-file policy when ``--data.on_bad_file`` is not given (error, skip, warn)
    on_bad_file: str = "error"


def split_off(items: list[Item], fraction: float, seed: int = 0) -> tuple[list[Item], list[Item]]:
    """Stratified split: (rest, held_out) with ``fraction`` of each class held out."""
    by_label: dict[Any, list[Item]] = defaultdict(list)
    for item in items:
        by_label[item.label].append(item)
    rng = random.Random(seed)
    rest, held = [], []
    for label in sorted(by_label, key=str):
        group = list(by_label[label])
        rng.shuffle(group)
        count = int(round(len(group) * fraction))
        if fraction > 0 and len(group) > 1:
            count = max(1, count)
        held.extend(group[:count])
        rest.extend(group[count:])
    return rest, held


def per_class_subset(items: list[Item], per_class: int, seed: int = 0) -> list[Item]:
    """At most ``per_class`` items of each class, chosen with a seeded shuffle."""
    by_label: dict[Any, list[Item]] = defaultdict(list)
    shuffled = list(items)
    random.Random(seed).shuffle(shuffled)
    for item in shuffled:
        if len(by_label[item.label]) < per_class:
            by_label[item.label].append(item)
    return [item for label in sorted(by_label, key=str) for item in by_label[label]]
