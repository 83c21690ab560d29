"""Decode cache: reused when nothing changed, rebuilt when settings or files change,
kept under its size limit, and epoch 2 never decodes."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from xmodal.adapters.audio import AudioAdapter
from xmodal.data.datamodule import ArrayDataset, XModalDataModule
from xmodal.data.paths import PACKAGED
from xmodal.data.scan import BadFiles, cache_entries, evict, scan
from xmodal.data.spec import Item

FSDD_SETTINGS = {"sample_rate": 8000, "duration": 0.5, "n_fft": 256, "hop_length": 64, "n_mels": 32}


class CountingAudio(AudioAdapter):
    """The real audio adapter, counting how often it decodes."""

    calls = 0

    def decode(self, source):  # type: ignore[no-untyped-def]
        CountingAudio.calls += 1
        return super().decode(source)


@pytest.fixture()
def clips(tmp_path: Path) -> list[Item]:
    """Six real FSDD recordings copied to a private folder (their mtime is ours to change)."""
    folder = tmp_path / "clips"
    folder.mkdir()
    sources = sorted((PACKAGED / "fsdd" / "recordings").iterdir())[:6]
    items = []
    for index, source in enumerate(sources):
        target = folder / source.name
        shutil.copy(source, target)
        items.append(Item(str(target), index % 2, str(target)))
    return items


def _scan(items: list[Item], cache_dir: Path, **settings):  # type: ignore[no-untyped-def]
    CountingAudio.calls = 0
    adapter = CountingAudio(**{**FSDD_SETTINGS, **settings})
    result = scan(items, adapter, "error", BadFiles(), num_workers=0, cache_dir=cache_dir)
    return result, CountingAudio.calls


def test_cache_reused_when_nothing_changed(clips: list[Item], tmp_path: Path) -> None:
    first, decoded = _scan(clips, tmp_path / "cache")
    assert decoded == len(clips)
    second, decoded_again = _scan(clips, tmp_path / "cache")
    assert decoded_again == 0
    assert isinstance(second.array, np.memmap)
    np.testing.assert_array_equal(np.asarray(first.array), np.asarray(second.array))


def test_cache_invalidated_by_settings_and_files(clips: list[Item], tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    _scan(clips, cache)
    resampled, decoded = _scan(clips, cache, sample_rate=4000)
    assert decoded == len(clips)
    assert resampled.array.shape[1] == 2000  # 0.5 s at the new rate, not the cached 8 kHz
    later = time.time() + 5
    os.utime(clips[0].source, (later, later))
    _, decoded = _scan(clips, cache)
    assert decoded == len(clips)


def test_size_limit_evicts_least_recently_used(clips: list[Item], tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    _scan(clips, cache)
    old = cache_entries(cache)
    assert len(old) == 1
    past = time.time() - 3600
    for path in old[0][2]:
        os.utime(path, (past, past))
    CountingAudio.calls = 0
    adapter = CountingAudio(**{**FSDD_SETTINGS, "sample_rate": 4000})
    scan(clips, adapter, "error", BadFiles(), num_workers=0, cache_dir=cache, cache_max_gb=1e-9)
    remaining = cache_entries(cache)
    assert len(remaining) == 1, "the older entry is evicted, the new one kept"
    assert remaining[0][2][0] != old[0][2][0]
    assert not evict(cache, 1e-9, keep=tuple(remaining[0][2]))


def test_epoch_two_does_no_decoding(tmp_path: Path) -> None:
    dm = XModalDataModule(modality="audio", per_class=2, val_fraction=0.02, batch_size=4, num_workers=0,
                          adapter={**FSDD_SETTINGS}, cache_dir=str(tmp_path / "cache"))
    dm.prepare_spec()
    settings = dm.adapter.config()
    settings.pop("modality")
    dm.adapter = CountingAudio(**settings)
    dm.setup("fit")
    assert isinstance(dm.datasets["train"], ArrayDataset)
    CountingAudio.calls = 0
    for _epoch in range(2):
        batches = [batch["input"].shape for batch in dm.train_dataloader()]
        assert batches and batches[0][1] == 4000
    assert CountingAudio.calls == 0
