"""Built-in audio modality and the FSDD data set."""

from __future__ import annotations

import csv
import re
from pathlib import Path

from xmodal.data.paths import PACKAGED
from xmodal.data.spec import DatasetSpec, Item
from xmodal.errors import ConfigError
from xmodal.hookspecs import hookimpl

FSDD_NAME = re.compile(r"^(\d)_([a-z]+)_(\d+)\.(wav|flac)$")
#: FSDD's clips are 8 kHz and at most ~2.3 s: keep them at 8 kHz, 1.5 s windows.
FSDD_ADAPTER = {"sample_rate": 8000, "duration": 1.0, "n_fft": 256, "hop_length": 64,
                "n_mels": 64}


@hookimpl
def register_modalities(register):
    from xmodal.adapters.audio import AudioAdapter

    register("audio", AudioAdapter)


@hookimpl
def register_datasets(register):
    register("fsdd", fsdd)


def fsdd(root: Path | None, holdout_speaker: str | None = None) -> DatasetSpec:
    """Free Spoken Digit Dataset with its official split (recording index 0-4 = test).

    Args:
        root: folder holding ``fsdd/recordings``; ``None`` uses the packaged
            900-clip sample, so the default command runs offline.
        holdout_speaker: speaker-independent evaluation: train on the other speakers,
            test on this one (e.g. ``theo``).
    """
    base = (root / "fsdd") if root is not None else PACKAGED / "fsdd"
    recordings = base / "recordings"
    if not recordings.is_dir():
        raise ConfigError(f"FSDD not found: no folder {recordings}. Point XMODAL_DATA (or "
                          "--data.root) at a folder that holds fsdd/recordings.")
    speakers = _speakers(base / "speakers.csv")
    if holdout_speaker is not None and speakers and holdout_speaker not in speakers:
        raise ConfigError(f"unknown FSDD speaker {holdout_speaker!r}; one of {', '.join(speakers)}")
    train, test = [], []
    for path in sorted(recordings.iterdir()):
        match = FSDD_NAME.match(path.name)
        if not match:
            continue
        digit, speaker, index = int(match.group(1)), match.group(2), int(match.group(3))
        item = Item(str(path), digit, str(path), group=speaker)
        if holdout_speaker is not None:
            (test if speaker == holdout_speaker else train).append(item)
        else:
            (test if index < 5 else train).append(item)
    return DatasetSpec(
        classes=[str(d) for d in range(10)], train=train, val=None, test=test,
        modality="audio", adapter_defaults=dict(FSDD_ADAPTER),
        description="Free Spoken Digit Dataset (CC BY-SA 4.0)",
    )


def _speakers(path: Path) -> list[str]:
    if not path.is_file():
        return []
    with path.open(newline="") as handle:
        return [row["speaker"] for row in csv.DictReader(handle)]
