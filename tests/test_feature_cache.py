"""Frozen-prefix feature cache: the split matches the full backbone, training from the
cache gives the same weights as training without it, and it stays off when it must."""

from __future__ import annotations

from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch

from xmodal import backbones
from xmodal.data.datamodule import XModalDataModule
from xmodal.errors import ConfigError
from xmodal.feature_cache import FeatureCache, PrefixSplit
from xmodal.tasks.classification import ClassificationTask

NO_AUGMENT = {"spec_augment": False, "time_shift": 0.0, "duration": 0.5, "n_mels": 32}


@pytest.mark.parametrize("stages", [1, 3, None])
def test_split_matches_full_backbone(stages: int | None) -> None:
    model = backbones.create_backbone(pretrained=False).eval()
    images = torch.randn(2, 3, 32, 64)
    split = PrefixSplit(model, stages, images)
    assert split.check(images) < 1e-4
    if stages is not None:  # the cut is at timm's feature_info module for that stage
        assert split.boundary == model.feature_info[stages - 1]["module"]
        assert split.prefix(images).shape[1] == model.feature_info[stages - 1]["num_chs"]
    assert model(images).shape == split.suffix(split.prefix(images)).shape


def _data(tmp_path: Path, adapter=None) -> XModalDataModule:  # type: ignore[no-untyped-def]
    return XModalDataModule(modality="audio", per_class=2, val_fraction=0.02, batch_size=8, num_workers=0,
                            adapter=adapter or NO_AUGMENT, cache_dir=str(tmp_path / "decoded"))


def _fit(tmp_path: Path, feature_cache: bool | str, freeze: int | str = 2, adapter=None):  # type: ignore[no-untyped-def]
    pl.seed_everything(0)
    dm = _data(tmp_path, adapter)
    task = ClassificationTask(freeze=freeze, feature_cache=feature_cache,
                              early_stopping_patience=None, restore_best=False)
    trainer = pl.Trainer(max_epochs=1, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0)
    trainer.fit(task, dm)
    return task, dm, trainer


def test_training_from_cache_equals_training_without(tmp_path: Path) -> None:
    _data(tmp_path).setup("fit")  # decode once, so both runs see the same random stream
    plain, _, _ = _fit(tmp_path, False)
    cached, dm, trainer = _fit(tmp_path, True)
    callback = next(c for c in trainer.callbacks if isinstance(c, FeatureCache))
    assert callback.seconds > 0, "the cache was built"
    assert type(dm.datasets["train"]).__name__ == "ArrayDataset", "datasets restored after fit"
    assert cached.prefix_cache is None
    for a, b in zip(plain.parameters(), cached.parameters()):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)
    trained = [p for p in cached.backbone.parameters() if p.requires_grad]
    assert trained, "freeze=2 leaves later stages trainable (they train from the cache)"


@pytest.mark.parametrize("scheduler", ["cosine", "none"])
def test_training_steps_never_run_the_cached_prefix(tmp_path: Path, scheduler: str) -> None:
    """The train loader serves cached features even when a step-based schedule made
    Lightning load it before the cache was built (cosine reads estimated_stepping_batches)."""
    pl.seed_everything(0)
    task = ClassificationTask(freeze=2, feature_cache=True, scheduler=scheduler,
                              early_stopping_patience=None, restore_best=False)
    stem_calls = []
    task.backbone.conv_stem.register_forward_hook(lambda *_: stem_calls.append(task.training))
    trainer = pl.Trainer(max_epochs=2, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0)
    trainer.fit(task, _data(tmp_path))
    assert stem_calls, "the cache itself runs the prefix"
    assert not any(stem_calls), "a training step ran the frozen prefix instead of reading the cache"


def test_off_when_input_is_augmented(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="augmentation"):
        _fit(tmp_path, True, adapter={"duration": 0.5, "n_mels": 32})
