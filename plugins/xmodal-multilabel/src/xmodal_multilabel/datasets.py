"""A multi-label view of spoken digits: each clip is tagged even / prime / large."""

from __future__ import annotations

import re
from pathlib import Path

from xmodal.data import DatasetSpec, Item
from xmodal.errors import ConfigError

ATTRIBUTES = ("even", "prime", "large")
NAME = re.compile(r"^(\d)_([a-z]+)_(\d+)\.(wav|flac)$")


def tags(digit: int) -> tuple[int, ...]:
    """The multi-hot label of a digit: (even, prime, >= 5)."""
    return (int(digit % 2 == 0), int(digit in (2, 3, 5, 7)), int(digit >= 5))


def fsdd_attributes(root: Path | None, recordings: str | None = None) -> DatasetSpec:
    """FSDD clips with multi-hot labels; official split (recording index 0-4 = test).

    Labels are tuples of 0/1, one per attribute in ``classes``.

    Args:
        root: data root holding ``fsdd/recordings`` (``$XMODAL_DATA``).
        recordings: a folder of FSDD-named clips, overriding ``root``.
    """
    folder = Path(recordings) if recordings else (Path(root) / "fsdd" / "recordings" if root else None)
    if folder is None or not folder.is_dir():
        raise ConfigError(f"no FSDD recordings folder ({folder}); set XMODAL_DATA or "
                          "--data.options '{recordings: DIR}'")
    train, test = [], []
    for path in sorted(folder.iterdir()):
        match = NAME.match(path.name)
        if match:
            item = Item(str(path), tags(int(match.group(1))), str(path), group=match.group(2))
            (test if int(match.group(3)) < 5 else train).append(item)
    return DatasetSpec(classes=list(ATTRIBUTES), train=train, test=test, modality="audio",
                       adapter_defaults={"sample_rate": 8000, "n_fft": 256, "hop_length": 64},
                       description="FSDD digits tagged even / prime / large")
