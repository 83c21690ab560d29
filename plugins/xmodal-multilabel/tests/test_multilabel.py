"""Tests of the multi-label head: threshold tuning, metrics, and a tiny real fit."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import xmodal
from xmodal_multilabel.datasets import fsdd_attributes, tags
from xmodal_multilabel.task import MultiLabelTask, best_thresholds, exact_match, f1_scores

SAMPLE = Path(xmodal.__file__).parent / "sample_data" / "fsdd" / "recordings"


def test_thresholds_are_tuned_per_label():
    # label 0: positives score 0.3, negatives 0.1 -> a threshold in (0.1, 0.3] is perfect;
    # label 1: positives 0.9, negatives 0.6 -> (0.6, 0.9]
    probs = torch.tensor([[0.3, 0.9], [0.1, 0.6], [0.3, 0.6], [0.1, 0.9]])
    target = torch.tensor([[1, 1], [0, 0], [1, 0], [0, 1]]).float()
    thresholds = best_thresholds(probs, target)
    assert 0.1 < thresholds[0] <= 0.3 and 0.6 < thresholds[1] <= 0.9
    assert torch.allclose(f1_scores(probs, target, thresholds), torch.ones(2))
    assert exact_match(probs, target, thresholds) == 1.0
    assert f1_scores(probs, target, torch.full((2,), 0.5))[0] == 0.0  # 0.5 misses label 0


def test_tags_and_data_set():
    assert tags(2) == (1, 1, 0) and tags(7) == (0, 1, 1) and tags(9) == (0, 0, 1)
    spec = fsdd_attributes(None, recordings=str(SAMPLE))
    assert spec.classes == ["even", "prime", "large"] and spec.modality == "audio"
    assert spec.train and spec.test and all(len(item.label) == 3 for item in spec.train)


def test_tiny_fit_tunes_thresholds(tmp_path):
    pl = pytest.importorskip("pytorch_lightning")
    from xmodal import plugins
    from xmodal.data import XModalDataModule

    if "fsdd_attributes" not in plugins.datasets().names():
        pytest.skip("xmodal-multilabel is not installed (pip install plugins/xmodal-multilabel)")
    torch.set_num_threads(1)
    data = XModalDataModule(dataset="fsdd_attributes", options={"recordings": str(SAMPLE)},
                            per_class=2, batch_size=8, num_workers=0, val_fraction=0.3,
                            cache_dir=str(tmp_path / "cache"),
                            adapter={"n_mels": 32, "duration": 0.5})
    model = MultiLabelTask(backbone="test_efficientnet", pretrained=False, lr=1e-2)
    trainer = pl.Trainer(max_epochs=2, limit_train_batches=2, limit_val_batches=2, limit_test_batches=2,
                         logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, num_sanity_val_steps=0,
                         default_root_dir=str(tmp_path))
    trainer.fit(model, datamodule=data)
    assert model.thresholds.shape == (3,)
    assert not torch.equal(model.thresholds, torch.full((3,), 0.5))  # tuned on validation
    result = trainer.test(model, datamodule=data, verbose=False)[0]
    assert 0.0 <= result["test/f1"] <= 1.0 and "test/acc" in result
